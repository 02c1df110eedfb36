"""ssh.socket's ports: read the way systemd reads the unit and its drop-ins, only when the socket is enabled."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostguard.host.base import RootHost
from hostguard.host.ssh_socket import SshSocket, collect_ssh_socket

UNIT = "[Unit]\nDescription=OpenBSD Secure Shell server socket\n\n[Socket]\nListenStream=22\nAccept=yes\n"


def _tree(tmp_path: Path, enabled: bool, dropins: dict[str, str], unit: str = UNIT) -> RootHost:
    (tmp_path / "lib/systemd/system").mkdir(parents=True)
    (tmp_path / "lib/systemd/system/ssh.socket").write_text(unit)
    wants = tmp_path / "etc/systemd/system/sockets.target.wants"
    wants.mkdir(parents=True)
    if enabled:
        (wants / "ssh.socket").symlink_to("/lib/systemd/system/ssh.socket")
    for name, text in dropins.items():
        d = tmp_path / "etc/systemd/system/ssh.socket.d"
        d.mkdir(exist_ok=True)
        (d / name).write_text(text)
    return RootHost(str(tmp_path))


@pytest.mark.parametrize("dropins, expect", [
    ({}, SshSocket(True, (22,))),
    ({"listen.conf": "[Socket]\nListenStream=\nListenStream=2200\n"}, SshSocket(True, (2200,))),  # reset, then one
    ({"listen.conf": "[Socket]\nListenStream=0.0.0.0:2200\nListenStream=[::]:2201\n"}, SshSocket(True, (22, 2200, 2201))),
    ({"a.conf": "[Socket]\nListenStream=\n", "b.conf": "[Socket]\nListenStream=/run/sshd.sock\n"}, SshSocket(True)),
    ({"listen.conf": "[Socket]\nListenStream=\nListenStream=ssh-alt\n"}, SshSocket(True, (), ("ssh-alt",))),
    ({"other.conf": "[Unit]\nListenStream=9999\n"}, SshSocket(True, (22,))),  # not in [Socket]: ignored
])
def test_listen_stream_ports(tmp_path: Path, dropins: dict[str, str], expect: SshSocket) -> None:
    assert collect_ssh_socket(_tree(tmp_path, True, dropins)) == expect


def test_a_disabled_socket_says_nothing(tmp_path: Path) -> None:
    host = _tree(tmp_path, False, {"listen.conf": "[Socket]\nListenStream=\nListenStream=2200\n"})
    assert collect_ssh_socket(host) == SshSocket(False)
