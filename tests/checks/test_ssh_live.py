"""ssh checks on a live host: real ``sshd -T`` and a real sshd process on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from hostguard.checks.ssh import password_paths
from hostguard.config import Config
from hostguard.engine.facts import Facts
from hostguard.host.base import LiveHost
from hostguard.host.sshd import SSHD, SshdView
from tests.conftest import make_config, run_one
from tests.sshd_helpers import prepare_sshd


def _config(path: Path) -> Config:
    return make_config(ssh={"config_file": str(path)})


def _run(check_id: str, config: Config) -> list:
    found, skipped = run_one(check_id, LiveHost(), config)
    assert not skipped, skipped
    return found


def _root_view(config: Config, addr: str = "192.0.2.10") -> SshdView:
    """The view the live ``sshd -T -C user=root,addr=...`` gives (this machine's root password, locked or not,
    does not matter here: what the checks make of a view is tested on fixture trees)."""
    facts = Facts(LiveHost(), config).get(SSHD)
    assert facts.source == "sshd -T", facts.note
    [view] = [v for v in facts.views if v.spec is not None and (v.spec.user, v.spec.addr) == ("root", addr)]
    return view


def test_live_sshd_T_sees_match_for_root(tmp_path: Path) -> None:
    key = prepare_sshd(tmp_path)
    cfg = tmp_path / "sshd_config"
    cfg.write_text(f"HostKey {key}\nPermitRootLogin no\nPasswordAuthentication no\n"
                   "Match Address 192.0.2.0/24\n  PermitRootLogin yes\n  PasswordAuthentication yes\n")
    view = _root_view(_config(cfg))
    assert (view.get("permitrootlogin"), password_paths(view)) == ("yes", ["password"])
    cfg.write_text(f"HostKey {key}\nPermitRootLogin no\nPasswordAuthentication yes\n")
    assert _root_view(_config(cfg)).get("permitrootlogin") == "no"


def test_live_keyboard_interactive_through_pam_counts_as_password(tmp_path: Path) -> None:
    key = prepare_sshd(tmp_path)
    cfg = tmp_path / "sshd_config"
    cfg.write_text(f"HostKey {key}\nPermitRootLogin yes\nPasswordAuthentication no\n"
                   "KbdInteractiveAuthentication yes\nUsePAM yes\n")
    assert password_paths(_root_view(_config(cfg))) == ["keyboard-interactive (PAM)"]
    cfg.write_text(f"HostKey {key}\nPermitRootLogin yes\nPasswordAuthentication no\n"
                   "KbdInteractiveAuthentication yes\nUsePAM no\n")
    assert password_paths(_root_view(_config(cfg))) == []


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


def test_config_not_reloaded_is_not_checked_without_sshd_config(tmp_path: Path) -> None:
    """No sshd_config: "not looked" (skipped), never a silent "nothing found"."""
    config = make_config(ssh={"config_file": str(tmp_path / "sshd_config")})
    found, skipped = run_one("ssh.config_not_reloaded", LiveHost(), config)
    assert found == []
    assert [(s.reason, s.detail) for s in skipped] == [
        ("unsupported", f"{tmp_path / 'sshd_config'} does not exist (OpenSSH server not installed)")]
