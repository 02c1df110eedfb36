"""ssh checks on a live host: real ``sshd -T`` and a real sshd process on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from hostguard.config import Config
from hostguard.host.base import LiveHost
from tests.conftest import make_config, run_one
from tests.sshd_helpers import prepare_sshd


def _config(path: Path) -> Config:
    return make_config(ssh={"config_file": str(path)})


def _run(check_id: str, config: Config) -> list:
    found, skipped = run_one(check_id, LiveHost(), config)
    assert not skipped, skipped
    return found


def test_live_sshd_T_sees_match_for_root(tmp_path: Path) -> None:
    key = prepare_sshd(tmp_path)
    cfg = tmp_path / "sshd_config"
    cfg.write_text(f"HostKey {key}\nPermitRootLogin no\nPasswordAuthentication no\n"
                   "Match Address 192.0.2.0/24\n  PermitRootLogin yes\n  PasswordAuthentication yes\n")
    found = _run("ssh.root_password_login", _config(cfg))
    assert [f.evidence["source"] for f in found] == ["sshd -T"]
    assert found[0].evidence["connection"] == "user=root,addr=192.0.2.10"
    cfg.write_text(f"HostKey {key}\nPermitRootLogin no\nPasswordAuthentication yes\n")
    assert _run("ssh.root_password_login", _config(cfg)) == []


def test_live_keyboard_interactive_through_pam_counts_as_password(tmp_path: Path) -> None:
    key = prepare_sshd(tmp_path)
    cfg = tmp_path / "sshd_config"
    cfg.write_text(f"HostKey {key}\nPermitRootLogin yes\nPasswordAuthentication no\n"
                   "KbdInteractiveAuthentication yes\nUsePAM yes\n")
    found = _run("ssh.password_auth", _config(cfg))
    assert [(f.target["user"], f.evidence["via"]) for f in found] == [("root", ["keyboard-interactive (PAM)"])]
    cfg.write_text(f"HostKey {key}\nPermitRootLogin yes\nPasswordAuthentication no\n"
                   "KbdInteractiveAuthentication yes\nUsePAM no\n")
    assert _run("ssh.password_auth", _config(cfg)) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config_not_reloaded_hit_and_miss(tmp_path: Path) -> None:
    key = prepare_sshd(tmp_path)
    cfg = tmp_path / "sshd_config"
    port = _free_port()
    cfg.write_text(f"HostKey {key}\nListenAddress 127.0.0.1\nPort {port}\nPidFile {tmp_path}/sshd.pid\n")
    old = time.time() - 3600
    os.utime(cfg, (old, old))
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(cfg)])
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        assert _run("ssh.config_not_reloaded", _config(cfg)) == []  # files older than the process
        future = time.time() + 60
        os.utime(cfg, (future, future))
        found = _run("ssh.config_not_reloaded", _config(cfg))
        assert [f.evidence["pid"] for f in found] == [proc.pid]
        assert found[0].evidence["files"] == [str(cfg)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
