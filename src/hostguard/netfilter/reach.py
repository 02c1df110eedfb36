"""Who can reach each listening port, and each port published by DNAT, through a ruleset.

The evaluator (``evaluate.py``) answers one query; this module asks it the questions an owner has: for
every socket listening beyond loopback, per IP version it accepts and per input interface (any other,
``lo``, each one the rules name), and for every DNAT-published port through prerouting and forward.

A listener that a REDIRECT (or a DNAT to a loopback address) feeds is also asked about the ports
redirected to it: its answer then says, per port a client connects to, who gets through ("port 22:
nobody, port 2222: anyone"), and who reaches it at all is the union.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hostguard.netfilter.evaluate import (
    LOOPBACK,
    Answer,
    Path,
    Query,
    forward_reachability,
    interfaces,
    landing_answer,
    reachability,
    redirect_ports,
    split_dnat_target,
    trace,
)
from hostguard.netfilter.model import AddrSet, Ruleset


class Listening(Protocol):
    """What reachability needs of a listening socket (host/sockets.py's Listener has it)."""

    @property
    def proto(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def address(self) -> str: ...
    @property
    def families(self) -> tuple[int, ...]: ...
    @property
    def process(self) -> str | None: ...
    @property
    def loopback_only(self) -> bool: ...


OTHER = "(any other interface)"
WILDCARDS = ("0.0.0.0", "::", "*")


@dataclass(frozen=True)
class PortReach:
    """Who can reach one port: per IP version and input interface."""

    proto: str
    port: int
    address: str
    answers: dict[tuple[int, str], Answer]
    process: str | None = None
    dnat: str | None = None

    def worst(self) -> str:
        """anyone > unknown > sources > nobody, over every version and interface (loopback aside).

        A source set covering more than half the address space ("anyone but these") counts as anyone.
        """
        states = {"anyone" if a.state == "sources" and a.reach.fraction() > 0.5 else a.state
                  for (_, i), a in self.answers.items() if i != "lo"}
        for s in ("anyone", "unknown", "sources", "nobody"):
            if s in states:
                return s
        return "nobody"

    def summary(self) -> str:
        """"IPv4: anyone; IPv6: nobody", split by interface only where they differ."""
        parts = []
        for version in sorted({v for v, _ in self.answers}):
            by_iface = {i: a for (v, i), a in self.answers.items() if v == version and i != "lo"}
            texts = {a.describe() for a in by_iface.values()}
            if len(texts) == 1:
                parts.append(f"IPv{version}: {texts.pop()}")
            else:
                parts.append(f"IPv{version}: " + "; ".join(f"via {i}: {a.describe()}" for i, a in sorted(by_iface.items())))
        return " | ".join(parts)

    def structured(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{"IPv4": {interface: {"state", "sources", "rate_limited", "by_port"}}} for tools and tests.

        ``sources`` only when the state is "sources"; ``rate_limited`` only when true; ``by_port`` (port a
        client connects to -> the same shape) only when a redirect feeds the listener from other ports.
        """
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (version, iface), a in sorted(self.answers.items()):
            entry = _entry(a)
            if a.by_port:
                entry["by_port"] = {str(p): _entry(sub) for p, sub in a.by_port}
            out.setdefault(f"IPv{version}", {})[iface] = entry
        return out

    def deciders(self) -> list[str]:
        """The rules and policies that decided, first ones first."""
        seen: dict[str, None] = {}
        for a in self.answers.values():
            seen.update(dict.fromkeys(a.deciders))
        return list(seen)

    def key(self) -> dict[str, Any]:
        """Finding target."""
        return {"kind": "port", "port": self.port, "proto": self.proto, "address": self.address}

    def label(self) -> str:
        """How a skipped entry names this port."""
        return f"{self.proto} {self.address}:{self.port}"

    def evidence(self, sources: Sequence[str], notes: Sequence[str]) -> dict[str, Any]:
        """What was evaluated and what decided."""
        ev: dict[str, Any] = {"reachable_from": self.summary(), "decided_by": self.deciders()[:6],
                              "ruleset_sources": list(sources), "reach": self.structured()}
        if self.process:
            ev["process"] = self.process
        if self.dnat:
            ev["dnat_to"] = self.dnat
        unknown = sorted({u for a in self.answers.values() for u in a.unknown})
        if unknown:
            ev["not_evaluated"] = unknown
        if notes:
            ev["notes"] = list(notes)
        return ev


def _entry(a: Answer) -> dict[str, Any]:
    entry: dict[str, Any] = {"state": a.state}
    if a.state == "sources":
        entry["sources"] = a.reach.cidrs()
    if a.limits and a.reach:
        entry["rate_limited"] = True
    return entry


def _ifaces(ruleset: Ruleset) -> list[str]:
    """Interfaces to evaluate: any other, loopback (connections from this host), and each one rules name."""
    return [OTHER, "lo", *interfaces(ruleset)]


class _Tracer:
    """Traces new connections once per (version, protocol, port, interface, destination) for every
    listener, and knows which ports a redirect can feed a listener from."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.paths: dict[Query, Path] = {}
        self.redirects: dict[str, tuple[set[int], list[tuple[int, str]]]] = {}

    def path(self, q: Query) -> Path:
        if q not in self.paths:
            self.paths[q] = trace(self.ruleset, q)
        return self.paths[q]

    def feeders(self, proto: str) -> tuple[set[int], list[tuple[int, str]]]:
        """Ports a local redirect names, and (target port, text) of the rules that redirect ports they do
        not list."""
        if proto not in self.redirects:
            ports, unlisted = redirect_ports(self.ruleset, proto)
            self.redirects[proto] = (ports, [(split_dnat_target(r.target or "", 0)[1],
                                              f"`{r.text}` (redirects ports it does not list)") for r in unlisted])
        return self.redirects[proto]

    def answer(self, q: Query) -> Answer:
        """Who reaches a listener on ``q.port``: directly, and through every port redirected to it."""
        direct = landing_answer(self.ruleset, q, self.path(q), q.port)
        ports, unlisted = self.feeders(q.proto)
        via: list[tuple[int, Answer]] = []
        for port in sorted(ports - {q.port}):
            aq = Query(q.version, q.proto, port, q.iif, q.daddr)
            path = self.path(aq)
            if q.port in path.landing or any(p == q.port for p, _ in path.unknown):
                via.append((port, landing_answer(self.ruleset, aq, path, q.port)))
        unknown = [*direct.unknown, *(u for _, a in via for u in a.unknown)]
        unknown += [text for port, text in unlisted if port == q.port]
        if not via:
            return Answer(direct.reach, tuple(dict.fromkeys(unknown)), direct.deciders, direct.limits)
        reach = direct.reach
        for _, a in via:
            reach = reach.union(a.reach)
        return Answer(reach, tuple(dict.fromkeys(unknown)),
                      tuple(dict.fromkeys([*direct.deciders, *(d for _, a in via for d in a.deciders)])),
                      tuple(dict.fromkeys([*direct.limits, *(x for _, a in via for x in a.limits)])),
                      ((q.port, direct), *via))


LOOPBACK_ADDRESS = {4: "127.0.0.1", 6: "::1"}


def evaluate_listener(ruleset: Ruleset, listener: Listening, tracer: _Tracer | None = None) -> PortReach:
    """Who reaches the listener, per IP version it accepts and per input interface."""
    tracer = tracer or _Tracer(ruleset)
    answers: dict[tuple[int, str], Answer] = {}
    daddr = None if listener.address in WILDCARDS else listener.address.split("%")[0]
    ifaces = _ifaces(ruleset)
    for version in listener.families:
        for iface in ifaces:
            # from this host, a connection to a wildcard listener goes to the loopback address
            to = daddr or (LOOPBACK_ADDRESS[version] if iface == LOOPBACK else None)
            answers[(version, iface)] = tracer.answer(Query(version, listener.proto, listener.port, iface, to))
    return PortReach(listener.proto, listener.port, listener.address, answers, listener.process)


def _dnat_ports(ruleset: Ruleset) -> set[tuple[str, int]]:
    """(proto, port) of every DNAT rule in prerouting (and the chains it jumps to) that names a port."""
    out: set[tuple[str, int]] = set()
    for chain in ruleset.chains.values():
        for rule in chain.rules:
            if rule.verdict != "dnat":
                continue
            protos = [v for m in rule.matches if m.field == "l4proto" and not m.negate for v in m.values] or ["tcp"]
            for m in rule.matches:
                if m.field == "dport" and not m.negate:
                    for v in m.values:
                        lo, _, hi = v.partition("-")
                        if lo.isdigit() and (not hi or int(hi) - int(lo) < 64):
                            for p in range(int(lo), int(hi or lo) + 1):
                                out.update((proto, p) for proto in protos if proto in ("tcp", "udp"))
    return out


def _published_from_here(ruleset: Ruleset, q: Query) -> tuple[Answer, str] | None:
    """This host's own connection to the published port on its loopback address, when a nat output chain
    sends it to the DNAT target (Docker with ``--userland-proxy=false``; with the proxy, Docker's output
    rule leaves 127.0.0.0/8 alone and docker-proxy's listener answers instead). None: no such DNAT."""
    path = trace(ruleset, q)
    if not path.local_dnats:
        return None
    reach = AddrSet(q.version)
    for sent, _, _ in path.local_dnats:
        reach = reach.union(sent)
    unknown = tuple(dict.fromkeys(u for p, u in path.unknown if p == q.port))
    deciders = tuple(dict.fromkeys([*(text for _, _, text in path.local_dnats),
                                    *(d for p, d in path.deciders if p == q.port)]))
    return Answer(reach, unknown, deciders), path.local_dnats[-1][1]


def evaluate_published(ruleset: Ruleset, routes: Mapping[str, str]) -> list[PortReach]:
    """Ports published by DNAT (containers): reachability through prerouting and forward.

    ``routes`` maps a DNAT target address to the interface the host sends it out of.
    """
    out = []
    ifaces = _ifaces(ruleset)
    for proto, port in sorted(_dnat_ports(ruleset)):
        answers: dict[tuple[int, str], Answer] = {}
        target_text = None
        for version in (4, 6):
            for iface in ifaces:
                if iface == LOOPBACK:
                    local = _published_from_here(ruleset, Query(version, proto, port, iface, LOOPBACK_ADDRESS[version]))
                    if local is not None:
                        answers[(version, iface)], target_text = local
                    continue
                q = Query(version, proto, port, iface)
                _, dnats = reachability(ruleset, q)
                if not dnats:
                    continue
                reach = AddrSet(version)
                unknown: list[str] = []
                deciders: list[str] = []
                for sources, target, text in dnats:
                    addr, new_port = split_dnat_target(target, port)
                    target_text = f"{addr}:{new_port}"
                    fwd = forward_reachability(ruleset, q, sources, addr, new_port, routes.get(addr))
                    reach = reach.union(fwd.reach)
                    unknown += fwd.unknown
                    deciders += [text, *fwd.deciders]
                answers[(version, iface)] = Answer(reach, tuple(unknown), tuple(deciders))
        if answers:
            out.append(PortReach(proto, port, f"dnat {target_text}", answers, dnat=target_text))
    return out


def reach_of(ruleset: Ruleset, routes: Mapping[str, str], listeners: Iterable[Listening]) -> tuple[PortReach, ...]:
    """Every non-loopback listener and every published port, evaluated once."""
    tracer = _Tracer(ruleset)
    result = [evaluate_listener(ruleset, x, tracer) for x in listeners if not x.loopback_only]
    return tuple(result + evaluate_published(ruleset, routes))
