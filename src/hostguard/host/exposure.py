"""Who the firewall lets reach an address a configuration binds (a service's ``bind``, a panel's ``port=``),
whether or not anything listens there now: the live ruleset on a host, the boot-time one under ``--root``.

Each configured address becomes a socket-like record and goes through the firewall family's own evaluator
(:func:`hostguard.netfilter.reach.evaluate_listener`), so a configuration is judged exactly like a live
socket. "Unknown" is never taken for "nobody".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hostguard.host.firewall import FirewallFacts
from hostguard.netfilter.reach import Listening, PortReach, evaluate_listener

STATES = ("anyone", "unknown", "sources", "nobody")  # widest first, the order PortReach.worst() uses
ANY_ADDRESS = ("*", "::*", "", "0", "any")             # how the services write "every address"


@dataclass(frozen=True)
class Bound:
    """A configured address and port shaped like a listening socket, so the firewall evaluator
    (``netfilter.reach.evaluate_listener``) answers for it exactly as for a live socket."""

    proto: str
    port: int
    address: str
    families: tuple[int, ...]
    process: str | None = None
    loopback_only: bool = False


def bound(proto: str, address: str, port: int) -> tuple[Bound, str]:
    """The socket a service makes of ``address`` (as its configuration writes it), and a note when the
    evaluation had to widen it: a host name is not resolved (hostguard never asks DNS about a tree), so it is
    evaluated as every address of the host; ``::`` is dual-stack on Linux unless the service says otherwise."""
    text = address.strip().strip("[]").split("%", 1)[0].lower()
    if text in ANY_ADDRESS:
        return Bound(proto, port, "*", (4, 6)), ""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return Bound(proto, port, "*", (4, 6)), f"{address} is a name: evaluated as any address of this host"
    if ip.is_unspecified:
        return Bound(proto, port, str(ip), (4,) if ip.version == 4 else (4, 6)), ""
    return Bound(proto, port, str(ip), (ip.version,), loopback_only=ip.is_loopback), ""


@dataclass(frozen=True)
class Exposure:
    """Who the firewall lets reach a set of configured ports: the widest answer over all of them
    (``anyone``, ``sources``, ``nobody``, ``unknown``), each port's evaluation, and why it is unknown."""

    state: str
    ports: tuple[PortReach, ...] = ()
    why_unknown: tuple[str, ...] = ()
    ruleset_sources: tuple[str, ...] = ()
    live: bool = False
    notes: tuple[str, ...] = ()

    def deciders(self) -> list[str]:
        """The rules and policies that decided, for every port, first ones first."""
        return list(dict.fromkeys(d for pr in self.ports for d in pr.deciders()))

    def networks(self) -> list[str]:
        """The source networks let in where the answer is "these networks"."""
        return list(dict.fromkeys(c for pr in self.ports for (_, iface), a in sorted(pr.answers.items())
                                  if iface != "lo" and a.state == "sources" for c in a.reach.cidrs()))

    def phrase(self) -> str:
        """The answer as a title says it, with the rule that decided where one did."""
        deciders = self.deciders()
        rule = f" ({deciders[0].replace('`', '')})" if deciders else ""
        if self.state == "anyone":
            return f"reachable from anyone{rule}"
        if self.state == "sources":
            nets = self.networks()
            more = f" and {len(nets) - 3} more" if len(nets) > 3 else ""
            return f"reachable only from {', '.join(nets[:3])}{more}{rule}"
        if self.state == "nobody":
            return f"the firewall lets nobody reach it from the network{rule}"
        return "whether the firewall lets anyone reach it is unknown"

    def evidence(self) -> dict[str, Any]:
        """What was evaluated (which ruleset), the answer per port, and what decided or blocked the answer."""
        ev: dict[str, Any] = {"reachable_from": self.state,
                              "ruleset": ("live" if self.live else "boot-time") if self.ruleset_sources or self.ports
                              else "none",
                              "ruleset_sources": list(self.ruleset_sources),
                              "ports": {pr.label(): pr.summary() for pr in self.ports},
                              "decided_by": self.deciders()[:6]}
        if self.state == "sources":
            ev["networks"] = self.networks()
        if self.why_unknown:
            ev["why_unknown"] = list(self.why_unknown)
        if self.notes:
            ev["notes"] = list(self.notes)
        return ev


def exposure_of(firewall: FirewallFacts | None, listens: Iterable[tuple[str, str, int | None]]) -> Exposure:
    """The firewall's answer for every (proto, address, port) a service's configuration binds; loopback ones
    are left out (nobody else can connect to them)."""
    sockets: list[Listening] = []
    unknown: list[str] = []
    notes: list[str] = []
    for proto, address, port in listens:
        if not port or proto not in ("tcp", "udp") or address == "?":
            unknown.append(f"{proto} {address}:{port}: the configuration does not say where it listens")
            continue
        socket, note = bound(proto, address, port)
        sockets.append(socket)
        notes += [note] if note else []
    return exposure_of_sockets(firewall, sockets, unknown, notes)


def exposure_of_sockets(firewall: FirewallFacts | None, sockets: Iterable[Listening],
                        unknown: Iterable[str] = (), notes: Iterable[str] = ()) -> Exposure:
    """The firewall's answer for sockets (live listeners, or :class:`Bound` ones from a configuration), the
    widest over all; ``firewall`` None: the ruleset could not be read, so the answer is unknown (never
    "nobody"). Loopback-only sockets are left out."""
    if firewall is None:
        return Exposure("unknown", why_unknown=("the firewall ruleset could not be read (the firewall family's "
                                                "skipped entries say why)",))
    ports: list[PortReach] = []
    why = list(unknown)
    for socket in sockets:
        if socket.loopback_only:
            continue
        reach = evaluate_listener(firewall.ruleset, socket)
        ports.append(reach)
        if reach.worst() == "unknown":
            why += sorted({u for a in reach.answers.values() for u in a.unknown})
    states = {pr.worst() for pr in ports} | ({"unknown"} if why else set())
    state = next((s for s in STATES if s in states), "nobody")
    return Exposure(state, tuple(ports), tuple(dict.fromkeys(why)), firewall.sources, firewall.live,
                    tuple(dict.fromkeys([*notes, *firewall.notes])))
