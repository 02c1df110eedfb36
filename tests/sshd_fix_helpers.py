"""Helpers for the ssh fix tests: scan a tree with the ssh family, apply fixes, and ask the real sshd.

The real sshd reads absolute paths (Include, @includedir, HostKey), so it is run in a private mount
namespace with the patched tree's /etc/ssh bind-mounted over /etc/ssh: this machine's own /etc/ssh is
never read or touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from hostguard.engine.registry import default_registry
from hostguard.findings import Finding
from hostguard.host.base import RootHost
from hostguard.remediation import Edit, Step, Write
from hostguard.respond.apply import apply
from tests.conftest import HOSTS, build_tree, need_root, need_tool, run_one

FIXES = HOSTS / "fixes" / "ssh"
SSH_CHECKS = [s.id for s in default_registry().checks if s.id.startswith("ssh.")]
TREE_SSH_CHECKS = [c for c in SSH_CHECKS if c != "ssh.config_not_reloaded"]  # that one needs a running sshd
# connections sshd -T is asked about: root and an admin, from the outside probe addresses
SPECS = ("user=root,host=client.test,addr=192.0.2.10,laddr=127.0.0.1,lport=22",
         "user=root,host=client.test,addr=2001:db8::10,laddr=127.0.0.1,lport=22",
         "user=alice,host=client.test,addr=192.0.2.10,laddr=127.0.0.1,lport=22",
         "user=alice,host=client.test,addr=2001:db8::10,laddr=127.0.0.1,lport=22")


def fix_tree(dest: Path, case: str) -> Path:
    """The clean host tree with the fixes/ssh/<case> overlay."""
    return build_tree(dest, FIXES / case)


def ssh_scan(tree: Path) -> dict[str, Finding]:
    """Every ssh finding on the tree, by fingerprint."""
    out: dict[str, Finding] = {}
    for check_id in TREE_SSH_CHECKS:
        found, skipped = run_one(check_id, RootHost(str(tree)))
        assert skipped == [], skipped
        out.update({f.fingerprint: f for f in found})
    return out


def file_steps(finding: Finding) -> list[Step]:
    """The steps that change files."""
    return [s for s in finding.remediation.steps if isinstance(s, Edit | Write) or s.kind == "delete_line"]


def fix_all(tree: Path, limit: int = 10) -> list[Finding]:
    """Fix findings one at a time, scanning again after each (as ``hostguard fix`` re-plans), until none has
    file steps left. Returns the findings whose steps were applied, in order."""
    applied: list[Finding] = []
    for _ in range(limit):
        fixable = [f for f in ssh_scan(tree).values() if file_steps(f)]
        if not fixable:
            return applied
        apply(fixable[0].remediation.steps, str(tree))
        applied.append(fixable[0])
    raise AssertionError(f"still fixable after {limit} rounds: {[f.title for f in fixable]}")


def sshd_etc(tree: Path, dest: Path) -> Path:
    """A copy of the tree's /etc/ssh with a host key, for the real sshd (the tree itself stays as scanned)."""
    need_tool("sshd", "ssh-keygen", "unshare", "mount")
    need_root("sshd in a private mount namespace (bind mount over /etc/ssh, /run/sshd)")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    shutil.copytree(tree / "etc" / "ssh", dest, symlinks=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(dest / "ssh_host_ed25519_key")],
                   check=True)
    return dest


def sshd_isolated(etc_ssh: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``sshd ARGS`` with ``etc_ssh`` bind-mounted over /etc/ssh in a private mount namespace."""
    sshd = shutil.which("sshd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    assert sshd is not None
    script = 'mount --bind "$1" /etc/ssh && shift && exec "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                           str(etc_ssh), sshd, *args], capture_output=True, text=True, timeout=30)


def sshd_dump(etc_ssh: Path, spec: str | None = None) -> dict[str, list[str]]:
    """What the real ``sshd -T`` (``-C spec``) prints for the isolated config, as keyword -> values."""
    result = sshd_isolated(etc_ssh, "-T", *(["-C", spec] if spec else []))
    assert result.returncode == 0, result.stderr
    values: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key, []).append(value)
    return values
