"""The owner's addresses, which hostguard never blocks: read from the live host.

Loopback, the machine's own addresses, its default gateways, its DNS resolvers (/etc/resolv.conf), the
peers of current SSH *sessions*, the configured ``[block] never`` list and the approved logon baseline.
A block that would cover any of them is refused with the reason, and all of them go into the kernel's allow
sets, evaluated before the drops. The reading is here (through the :class:`Host`, so files stay inside its
root and sockets and processes come from ``host/``); the parsers are pure functions, fuzzed in the tests.

A part that cannot be read (not root, ``ip`` missing) is named in :attr:`Protected.unknown`: blocking then
needs ``--force``, because an unknown owner address is exactly what must not be guessed.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from hostguard.data import load_toml
from hostguard.host.base import HostError, Unavailable

if TYPE_CHECKING:
    from hostguard.host.base import Host, ProcessInfo, SocketInfo

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class ProtectedNet:
    """One address or network that must never be blocked, and why (said when a block is refused)."""

    network: Network
    why: str


@dataclass(frozen=True)
class Protected:
    """Everything never blocked, and the parts that could not be read."""

    nets: tuple[ProtectedNet, ...] = ()
    unknown: tuple[str, ...] = field(default=())

    def overlapping(self, network: Network) -> list[ProtectedNet]:
        """The protected entries ``network`` covers or lies in (a block of it would drop them)."""
        return [p for p in self.nets if p.network.version == network.version and p.network.overlaps(network)]


def network_of(address: str) -> Network:
    """An address (with an optional ``%zone``, or IPv4-mapped IPv6) as the network of that one address."""
    addr = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return ipaddress.ip_network(addr)


def parse_resolv_conf(text: str) -> list[Network]:
    """The ``nameserver`` addresses of a resolv.conf (malformed lines are ignored, as the resolver does)."""
    out: list[Network] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                out.append(network_of(words[1]))
            except ValueError:
                continue
    return out


def _json_list(text: str, what: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text or "[]")
    except ValueError as exc:
        raise HostError(f"{what}: not JSON ({exc})") from exc
    if not isinstance(data, list):
        raise HostError(f"{what}: not a JSON list")
    return [d for d in data if isinstance(d, dict)]


def parse_ip_addr(text: str) -> list[tuple[Network, str]]:
    """``ip -j addr show``: every local address (as a one-address network) with its interface name."""
    out: list[tuple[Network, str]] = []
    for link in _json_list(text, "ip -j addr"):
        infos = link.get("addr_info")
        for info in infos if isinstance(infos, list) else ():
            if isinstance(info, dict) and isinstance(info.get("local"), str):
                try:
                    out.append((network_of(info["local"]), str(link.get("ifname", "?"))))
                except ValueError:
                    continue
    return out


def parse_ip_route(text: str) -> list[tuple[Network, str]]:
    """``ip -j route show default``: every default route's gateway (with its device)."""
    out: list[tuple[Network, str]] = []
    for route in _json_list(text, "ip -j route"):
        hops = [route, *(h for h in route.get("nexthops", []) if isinstance(h, dict))] \
            if isinstance(route.get("nexthops", []), list) else [route]
        for hop in hops:
            gateway = hop.get("gateway")
            if isinstance(gateway, str):
                try:
                    out.append((network_of(gateway), str(hop.get("dev", route.get("dev", "?")))))
                except ValueError:
                    continue
    return out


@cache
def _ssh_data() -> tuple[frozenset[str], re.Pattern[str]]:
    data = load_toml("block/block.toml")["ssh"]
    return frozenset(data["listeners"]), re.compile(data["session_title"])


def ssh_session_peers(sockets: Iterable[SocketInfo], processes: Iterable[ProcessInfo]) -> list[tuple[Network, str]]:
    """Peers of authenticated SSH sessions: established TCP connections to a port an sshd listens on, whose
    holding process or one of its children carries the post-authentication title (data/block/block.toml).

    A connection still authenticating is not a session, so a brute-forcer stays blockable. When the owner of
    a connection cannot be seen (pid unknown), it is counted as a session: the safe side.
    """
    listeners, title = _ssh_data()
    procs = {p.pid: p for p in processes}
    children: dict[int, list[ProcessInfo]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p)
    socks = list(sockets)
    ports = {s.port for s in socks if s.proto == "tcp" and s.status == "LISTEN" and s.pid is not None
             and s.pid in procs and procs[s.pid].name in listeners}

    def authenticated(pid: int) -> bool:
        family = [procs[pid], *children.get(pid, ())] if pid in procs else []
        return any(title.search(" ".join(p.cmdline) or p.name) for p in family)

    out: list[tuple[Network, str]] = []
    for s in socks:
        if s.proto != "tcp" or s.status != "ESTABLISHED" or s.port not in ports or not s.remote_address:
            continue
        if s.pid is None or authenticated(s.pid):
            try:
                out.append((network_of(s.remote_address), f"peer of a current SSH session (port {s.port})"))
            except ValueError:
                continue
    return out


def collect(host: Host, never: Iterable[str], baseline: Callable[[], Iterable[str]] | None = None) -> Protected:
    """Everything never blocked on the live ``host``: see the module docstring."""
    nets = [ProtectedNet(n, "loopback") for n in LOOPBACK]
    unknown: list[str] = []
    nets += [ProtectedNet(ipaddress.ip_network(n, strict=False), "in the [block] never list") for n in never]
    if baseline is not None:
        nets += [ProtectedNet(ipaddress.ip_network(n, strict=False), "an approved logon baseline address")
                 for n in baseline()]
    try:
        text = host.read_optional("/etc/resolv.conf") or ""
        nets += [ProtectedNet(n, "a DNS resolver in /etc/resolv.conf") for n in parse_resolv_conf(text)]
    except HostError as exc:
        unknown.append(f"DNS resolvers ({exc})")
    commands: tuple[tuple[str, list[str], Callable[[str], list[tuple[Network, str]]], str], ...] = (
        ("own addresses", ["ip", "-j", "addr", "show"], parse_ip_addr, "an address of this machine ({})"),
        ("IPv4 default gateways", ["ip", "-j", "-4", "route", "show", "default"], parse_ip_route,
         "a default gateway (via {})"),
        ("IPv6 default gateways", ["ip", "-j", "-6", "route", "show", "default"], parse_ip_route,
         "a default gateway (via {})"))
    for what, argv, parse, why in commands:
        try:
            done = host.run(argv)
            if done.returncode != 0:
                lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
                raise HostError(f"`{' '.join(argv)}` failed: {lines[0] if lines else done.returncode}")
            nets += [ProtectedNet(n, why.format(dev)) for n, dev in parse(done.stdout.decode("utf-8", "replace"))]
        except (Unavailable, HostError) as exc:
            unknown.append(f"{what} ({exc})")
    try:
        nets += [ProtectedNet(n, why) for n, why in ssh_session_peers(host.sockets(), host.processes())]
    except Unavailable as exc:
        unknown.append(f"SSH session peers ({exc})")
    return Protected(tuple(nets), tuple(unknown))
