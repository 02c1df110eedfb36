"""Listening sockets of the live host, each with its process.

psutil maps sockets to processes; ``ss -e`` adds what psutil cannot see: whether an IPv6 wildcard
listener is IPv6-only. A ``[::]`` listener counts as dual-stack (reachable over IPv4 too) unless ``ss``
shows ``v6only:1``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any

from hostguard.findings import SkipReason
from hostguard.host.base import Host, Unavailable


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket or bound UDP socket."""

    proto: str            # "tcp" or "udp"
    address: str          # "0.0.0.0", "::", "127.0.0.1", ...
    port: int
    families: tuple[int, ...]  # 4 and/or 6: who can connect to it
    pid: int | None
    process: str | None
    exe: str | None
    user: str | None

    @property
    def loopback_only(self) -> bool:
        """True when only this host can connect."""
        try:
            return ipaddress.ip_address(self.address.split("%")[0]).is_loopback
        except ValueError:
            return False

    def key(self) -> dict[str, Any]:
        """The canonical target of a finding about this socket (never the pid)."""
        return {"kind": "port", "port": self.port, "proto": self.proto, "address": self.address}

    def describe(self) -> dict[str, Any]:
        """Evidence about the socket and its owner."""
        return {"address": self.address, "port": self.port, "proto": self.proto, "ip_versions": list(self.families),
                "process": self.process, "pid": self.pid, "exe": self.exe, "user": self.user}


def _v6only_map(host: Host) -> dict[tuple[str, str, int], bool]:
    """(proto, address, port) -> v6only, from ``ss -Hlnue`` / ``ss -Hlnte``; empty when ss is missing."""
    out: dict[tuple[str, str, int], bool] = {}
    for proto, flag in (("tcp", "-Hltne"), ("udp", "-Hlune")):
        try:
            result = host.run(["ss", flag])
        except Unavailable:
            return {}
        for line in result.stdout.decode("utf-8", "replace").splitlines():
            m = re.search(r"v6only:(\d)", line)
            fields = line.split()
            if not m or len(fields) < 4:
                continue
            local = fields[3]
            addr, _, port = local.rpartition(":")
            addr = addr.strip("[]")
            addr = "::" if addr == "*" else addr
            if port.isdigit():
                out[(proto, addr, int(port))] = m.group(1) == "1"
    return out


def collect_listeners(host: Host, config: dict[str, Any]) -> tuple[Listener, ...]:
    """Every listening socket of the running system, sorted by port."""
    host.require_live("listening sockets")
    import psutil

    try:
        conns = psutil.net_connections(kind="inet")
    except psutil.AccessDenied as exc:
        raise Unavailable(SkipReason.NOT_ROOT, "seeing every socket's process needs root") from exc
    v6only = _v6only_map(host)
    seen: dict[tuple[str, str, int], Listener] = {}
    for c in conns:
        proto = "tcp" if c.type == socket.SOCK_STREAM else "udp"
        if proto == "tcp" and c.status != psutil.CONN_LISTEN:
            continue
        if proto == "udp" and c.raddr:
            continue
        if not c.laddr:
            continue
        address, port = c.laddr.ip, c.laddr.port
        families: tuple[int, ...] = (4,) if c.family == socket.AF_INET else (6,)
        if c.family == socket.AF_INET6 and address == "::" and not v6only.get((proto, "::", port), False):
            families = (4, 6)
        if address.startswith("::ffff:"):
            families = (4,)
        name = exe = user = None
        if c.pid:
            try:
                p = psutil.Process(c.pid)
                name, user = p.name(), p.username()
                exe = p.exe() or None
            except (psutil.Error, OSError):
                pass
        key = (proto, address, port)
        if key not in seen or (seen[key].pid is None and c.pid):
            seen[key] = Listener(proto, address, port, families, c.pid, name, exe, user)
    return tuple(sorted(seen.values(), key=lambda x: (x.port, x.proto, x.address)))
