"""systemd socket activation of sshd (``ssh.socket``): the ports it listens on, which ``sshd -T`` does not know.

Ubuntu 22.10+ and some Debian setups start sshd from ``ssh.socket``; there the port is the socket's
``ListenStream=`` (set in the unit or a drop-in), and ``Port`` in sshd_config is ignored. A firewall fix
that kept only sshd's own port would lock the owner out, so the firewall family reads this too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hostguard.engine.facts import Fact
from hostguard.host.base import Host

UNIT = "ssh.socket"
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


@dataclass(frozen=True)
class SshSocket:
    """Whether ssh.socket is enabled, its TCP ports, and ListenStream values that name no port."""

    enabled: bool
    ports: tuple[int, ...] = ()
    unknown: tuple[str, ...] = ()


def _enabled(host: Host) -> bool:
    for base in ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"):
        for wants in host.listdir(base):
            if wants.endswith(".wants") and UNIT in host.listdir(f"{base}/{wants}"):
                return True
    return False


def _unit_texts(host: Host) -> list[str]:
    """The unit file systemd uses (the first directory that has it), then its drop-ins in name order."""
    texts: list[str] = []
    for directory in UNIT_DIRS:
        text = host.read_optional(f"{directory}/{UNIT}")
        if text is not None:
            texts.append(text)
            break
    dropins: dict[str, str] = {}
    for directory in reversed(UNIT_DIRS):  # a drop-in in /etc overrides one of the same name in /usr/lib
        for name in host.listdir(f"{directory}/{UNIT}.d"):
            if name.endswith(".conf"):
                dropins[name] = f"{directory}/{UNIT}.d/{name}"
    texts += [host.read_optional(path) or "" for _, path in sorted(dropins.items())]
    return texts


def collect_ssh_socket(host: Host) -> SshSocket:
    """ssh.socket's ListenStream ports (an empty ``ListenStream=`` resets the list, as systemd reads it)."""
    if not _enabled(host):
        return SshSocket(False)
    values: list[str] = []
    for text in _unit_texts(host):
        section = ""
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("["):
                section = line
                continue
            m = re.match(r"ListenStream\s*=\s*(.*)$", line)
            if section == "[Socket]" and m:
                value = m.group(1).strip()
                values = [] if not value else [*values, value]
    ports: list[int] = []
    unknown: list[str] = []
    for value in values:
        port = value.rpartition(":")[2] if ":" in value else value
        if port.isdigit() and 0 < int(port) < 65536:
            ports.append(int(port))
        elif not value.startswith("/"):  # a unix socket is not reachable over the network
            unknown.append(value)
    return SshSocket(True, tuple(sorted(set(ports))), tuple(unknown))


SSH_SOCKET: Fact[SshSocket] = Fact("ssh_socket", collect_ssh_socket)
