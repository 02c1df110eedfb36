"""Listening sockets of the live host, each with its process.

The host lists sockets and processes (:meth:`Host.sockets`, :meth:`Host.processes`); this module joins
them by pid. ``ss -e`` adds what the socket listing cannot show: whether an IPv6 wildcard listener is
IPv6-only. A ``[::]`` listener counts as dual-stack (reachable over IPv4 too) unless ``ss`` shows
``v6only:1``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from hostguard.engine.facts import Fact
from hostguard.host.base import Host, ProcessInfo, SocketInfo, Unavailable
from hostguard.host.processes import PROCESSES, SOCKETS


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
    cmdline: tuple[str, ...] = ()  # to name what an interpreter runs; never put in evidence (it may hold secrets)

    @property
    def loopback_only(self) -> bool:
        """True when only this host can connect."""
        try:
            ip = ipaddress.ip_address(self.address.split("%")[0])
        except ValueError:
            return False
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None  # ::ffff:127.0.0.1
        return ip.is_loopback or (mapped is not None and mapped.is_loopback)

    def label(self) -> str:
        """How a skipped entry names this socket."""
        return f"{self.proto} {self.address}:{self.port}"

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


def collect_listeners(host: Host, sockets: tuple[SocketInfo, ...],
                      process_list: tuple[ProcessInfo, ...]) -> tuple[Listener, ...]:
    """Every listening socket of the running system, sorted by port.

    The process list (read after the sockets when nothing read it earlier) is joined by pid: a pid whose
    process has exited (or cannot be seen) keeps its pid with no process, rather than a second, racing lookup.
    """
    v6only = _v6only_map(host)
    processes = {p.pid: p for p in process_list}
    seen: dict[tuple[str, str, int], Listener] = {}
    for s in sockets:
        if s.proto == "tcp" and s.status != "LISTEN":
            continue
        if s.proto == "udp" and s.remote_address is not None:
            continue
        address, port = s.address, s.port
        families: tuple[int, ...] = (s.family,)
        if s.family == 6 and address == "::" and not v6only.get((s.proto, "::", port), False):
            families = (4, 6)
        if address.startswith("::ffff:"):
            families = (4,)
        process = processes.get(s.pid) if s.pid else None
        name, exe, user = (process.name, process.exe, process.user) if process else (None, None, None)
        key = (s.proto, address, port)
        if key not in seen or (seen[key].pid is None and s.pid):
            seen[key] = Listener(s.proto, address, port, families, s.pid, name, exe, user,
                                 process.cmdline if process else ())
    return tuple(sorted(seen.values(), key=lambda x: (x.port, x.proto, x.address)))


LISTENERS: Fact[tuple[Listener, ...]] = Fact("listeners", collect_listeners, inputs=(SOCKETS, PROCESSES))
