"""Connections and raw sockets of the live host, each with the process that holds it.

:data:`CONNECTIONS` joins the inet socket listing with the process listing (both read once per scan) and
says which way each connection goes: a connection whose local address and port are those of a listening
socket was accepted (inbound); any other was made by the process (outbound). Without that, every client
of a web server would look like the server connecting out to the client's ephemeral port.

:data:`RAW_SOCKETS` lists packet sockets (``AF_PACKET``: they see every frame on an interface) and raw IP
sockets, which psutil does not list: the kernel's ``/proc/<pid>/net/{packet,raw,raw6}`` tables of each
network namespace in use, joined with the ``socket:[inode]`` links in ``/proc/<pid>/fd``.

Both are live only: under ``--root`` there is no running system to look at.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any

from hostguard.engine.facts import Fact
from hostguard.findings import SkipReason
from hostguard.host.base import Host, ProcessInfo, SocketInfo, Unavailable
from hostguard.host.processes import PROCESSES, SOCKETS

WILDCARDS = frozenset({"0.0.0.0", "::"})


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4-mapped loopback (``::ffff:127.0.0.1``)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


@dataclass(frozen=True)
class Connection:
    """One connected inet socket and its owner (owner fields None when it cannot be seen)."""

    proto: str
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    status: str
    inbound: bool               # accepted by a listener of this host (not made by the process)
    pid: int | None
    process: str | None
    exe: str | None
    user: str | None
    create_time: float = 0.0    # of the process, so a kill can check it is still the same one
    cmdline: tuple[str, ...] = ()  # to name what runs; never put in evidence (it may hold secrets)

    @property
    def remote_loopback(self) -> bool:
        """True when the other end is this host's loopback."""
        return is_loopback(self.remote_address)

    def label(self) -> str:
        """How a skipped entry names it."""
        return f"{self.proto} {self.local_address}:{self.local_port} -> {self.remote_address}:{self.remote_port}"

    def describe(self) -> dict[str, Any]:
        """Evidence: both ends, the state and direction, and the owner."""
        return {"proto": self.proto, "local": f"{self.local_address}:{self.local_port}",
                "remote_address": self.remote_address, "remote_port": self.remote_port, "status": self.status,
                "direction": "inbound" if self.inbound else "outbound", "pid": self.pid,
                "process": self.process, "exe": self.exe, "user": self.user}


def collect_connections(host: Host, sockets: tuple[SocketInfo, ...],
                        process_list: tuple[ProcessInfo, ...]) -> tuple[Connection, ...]:
    """Every inet socket with a remote end, with its direction and owner (joined by pid, once)."""
    listening = {(s.proto, s.address, s.port) for s in sockets
                 if (s.proto == "tcp" and s.status == "LISTEN") or (s.proto == "udp" and s.remote_address is None)}
    processes = {p.pid: p for p in process_list}
    out = []
    for s in sockets:
        if s.remote_address is None or s.remote_port is None or s.status == "LISTEN":
            continue
        inbound = any((s.proto, a, s.port) in listening for a in (s.address, *WILDCARDS))
        p = processes.get(s.pid) if s.pid else None
        out.append(Connection(s.proto, s.address, s.port, s.remote_address, s.remote_port, s.status, inbound,
                              s.pid, p.name if p else None, p.exe if p else None, p.user if p else None,
                              p.create_time if p else 0.0, p.cmdline if p else ()))
    return tuple(out)


CONNECTIONS: Fact[tuple[Connection, ...]] = Fact("connections", collect_connections, inputs=(SOCKETS, PROCESSES))


@dataclass(frozen=True)
class RawSocket:
    """A packet socket or raw IP socket, and the process holding it."""

    kind: str                   # "packet" or "raw"
    family: str                 # "packet", "ipv4" or "ipv6"
    protocol: int               # the ethertype (packet) or IP protocol number (raw)
    inode: int
    pid: int
    process: str
    exe: str | None
    user: str | None
    create_time: float

    @property
    def program(self) -> str:
        """The executable's base name (the process name when the executable cannot be read)."""
        return os.path.basename(self.exe) if self.exe else self.process

    def label(self) -> str:
        """How a skipped entry names it."""
        return f"{self.kind} socket of {self.program} (pid {self.pid})"

    def describe(self) -> dict[str, Any]:
        """Evidence about the socket and its holder."""
        return {"socket": self.kind, "family": self.family, "protocol": self.protocol, "pid": self.pid,
                "process": self.process, "exe": self.exe, "user": self.user}


def parse_packet_table(text: str) -> dict[int, int]:
    """``/proc/net/packet``: inode -> protocol (ethertype)."""
    out = {}
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) >= 9 and f[8].isdigit():
            out[int(f[8])] = int(f[3], 16)
    return out


def parse_raw_table(text: str) -> dict[int, int]:
    """``/proc/net/raw`` or ``raw6``: inode -> IP protocol (shown as the local "port")."""
    out = {}
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) >= 10 and f[9].isdigit():
            out[int(f[9])] = int(f[1].rpartition(":")[2], 16)
    return out


def _socket_inodes(pid: int) -> set[int]:
    """The socket inodes among ``pid``'s open files (empty when it exited meanwhile)."""
    out: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def collect_raw_sockets(host: Host, process_list: tuple[ProcessInfo, ...]) -> tuple[RawSocket, ...]:
    """Every packet and raw socket of every process, sorted by pid."""
    if not host.live:
        raise Unavailable(SkipReason.LIVE_ONLY, "raw sockets are only known on a running system, not under --root")
    if os.geteuid() != 0:
        raise Unavailable(SkipReason.NOT_ROOT, "seeing other processes' sockets needs root")
    tables: dict[int, dict[int, tuple[str, str, int]]] = {}  # netns inode -> socket inode -> (kind, family, proto)
    out = []
    for p in process_list:
        inodes = _socket_inodes(p.pid)
        if not inodes:
            continue
        try:
            netns = os.stat(f"/proc/{p.pid}/ns/net").st_ino
        except OSError:
            continue
        if netns not in tables:
            tables[netns] = _tables(p.pid)
        for inode in sorted(inodes & tables[netns].keys()):
            kind, family, proto = tables[netns][inode]
            out.append(RawSocket(kind, family, proto, inode, p.pid, p.name, p.exe, p.user, p.create_time))
    return tuple(out)


def _tables(pid: int) -> dict[int, tuple[str, str, int]]:
    """The packet and raw socket tables of ``pid``'s network namespace."""
    table: dict[int, tuple[str, str, int]] = {}
    for kind, family, name, parse in (("packet", "packet", "packet", parse_packet_table),
                                      ("raw", "ipv4", "raw", parse_raw_table),
                                      ("raw", "ipv6", "raw6", parse_raw_table)):
        for inode, proto in parse(_read(f"/proc/{pid}/net/{name}")).items():
            table[inode] = (kind, family, proto)
    return table


RAW_SOCKETS: Fact[tuple[RawSocket, ...]] = Fact("raw_sockets", collect_raw_sockets, inputs=(PROCESSES,))

