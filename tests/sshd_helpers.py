"""Helpers for tests that drive the real OpenSSH server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import need_root, need_tool


def prepare_sshd(tmp_path: Path) -> Path:
    """A host key for ``sshd -T`` and the privilege separation directory it insists on."""
    need_tool("sshd", "ssh-keygen")
    need_root("sshd -T (reads host keys, needs /run/sshd)")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    key = tmp_path / "ssh_host_ed25519_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def sshd_dump(config: Path, spec: str | None = None) -> dict[str, list[str]]:
    """What the real ``sshd -T`` prints, as keyword -> values."""
    argv = ["sshd", "-T", "-f", str(config)] + (["-C", spec] if spec else [])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    values: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key, []).append(value)
    return values
