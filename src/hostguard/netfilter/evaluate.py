"""Who can open a new connection to a local port: the ruleset evaluated symbolically over source addresses.

A new packet crosses every base chain on its path, in priority order, in every table of its family:

* from another host: the ``ingress`` chains of the interface it arrives on (netdev and inet), then
  ``prerouting`` (raw, mangle, nat), then ``input`` — or ``forward`` after a DNAT to another host;
* from this host (loopback): ``output`` (raw, mangle, nat, filter), ``postrouting``, then, arriving on ``lo``,
  the ingress chains of ``lo``, the ``prerouting`` chains other than nat ones (a connection is NATed once, on
  its first hook) and ``input``. A nat ``output`` DNAT to another host sends it out instead: it crosses the
  remaining output and postrouting chains, never forward (Docker without its userland proxy).

An ``accept`` ends only the chain it is in; a ``drop``/``reject`` anywhere is final. So the sources that get
through are the intersection over base chains of what each accepts. Each chain is walked with the *set* of
source addresses still undecided, so "policy drop; ip saddr 192.0.2.0/24 tcp dport 3306 accept" answers
exactly 192.0.2.0/24. A DNAT or REDIRECT to a local port moves the sources it matches to that port: the
chains after it see the new port, and the listener there is reachable "via" the port they connected to.

A rule that cannot be evaluated (an unknown match or statement) and could see some of the undecided
sources makes the answer "unknown", with the rule quoted; the evaluator never guesses. Each rule is looked
at once per chain walk: the cost is linear in the ruleset (times the few ports a redirect adds).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from hostguard.netfilter.model import AddrSet, Chain, Match, Rule, Ruleset

MAX_DEPTH = 64
FAMILY_VERSIONS = {"ip": (4,), "ip6": (6,), "inet": (4, 6), "netdev": (4, 6)}
PROTO_NUMBERS = {"tcp": "6", "udp": "17", "sctp": "132"}
LOOPBACK = "lo"
MAX_REDIRECT_SPAN = 64  # a redirect from more ports than this is not enumerated (see redirect_ports)


@dataclass(frozen=True)
class Query:
    """A new connection: IP version, protocol, destination port, input interface, destination.

    ``iif`` is the interface it arrives on (``lo`` for a connection from this host). ``oif``/``local_out``
    describe the output path: a connection made by this host has no input interface there.
    """

    version: int
    proto: str
    port: int
    iif: str
    daddr: str | None = None   # the listener's address when it is specific
    oif: str | None = None     # output interface on the forward path (after DNAT) or the output path
    forward: bool = False      # routed through (after DNAT) rather than delivered to this host
    local_out: bool = False    # on the output path of a connection this host makes
    orig_port: int | None = None  # the port the client connected to, when a DNAT changed it (else ``port``)


@dataclass
class Outcome:
    """What one chain walk decided for a set of sources."""

    accepted: AddrSet
    dropped: AddrSet
    returned: AddrSet
    unknown: list[str] = field(default_factory=list)
    dnat: list[tuple[AddrSet, str, str]] = field(default_factory=list)  # (sources, "addr:port", rule text)
    deciders: list[str] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Answer:
    """The sources that reach the port, the rules that could not be evaluated, and what decided.

    ``by_port``: when a redirect makes the listener reachable through other ports, the answer for each
    port a client can connect to (the listener's own included); ``reach`` is then their union.
    ``limits``: rate limits that stop a source only after many new connections (the port stays reachable).
    """

    reach: AddrSet
    unknown: tuple[str, ...]
    deciders: tuple[str, ...]
    limits: tuple[str, ...] = ()
    by_port: tuple[tuple[int, Answer], ...] = ()

    @property
    def state(self) -> str:
        """anyone, sources, nobody or unknown."""
        if self.unknown:
            return "unknown"
        if self.reach.is_full():
            return "anyone"
        return "sources" if self.reach else "nobody"

    def _plain(self) -> str:
        if self.state == "unknown":
            return f"unknown: cannot evaluate {'; '.join(self.unknown[:2])}"
        text = self.state
        if self.state == "sources":
            cidrs = self.reach.cidrs()
            text = ", ".join(cidrs[:8]) + (f" (+{len(cidrs) - 8} more)" if len(cidrs) > 8 else "")
        if self.limits and self.reach:
            text += " (rate-limited)"
        return text

    def describe(self) -> str:
        """Human form: "anyone", "nobody", "192.0.2.0/24", "unknown (rule ...)", "port 22: nobody, port
        2222: anyone"."""
        if self.by_port and self.state != "unknown":
            return ", ".join(f"port {p}: {a._plain()}" for p, a in self.by_port)
        return self._plain()


def _port_in(values: tuple[str, ...], port: int) -> bool:
    for v in values:
        lo, _, hi = v.partition("-")
        try:
            if int(lo) <= port <= int(hi or lo):
                return True
        except ValueError:
            continue
    return False


def _iface_in(values: tuple[str, ...], name: str | None) -> bool | None:
    if name is None:
        return None
    return any(name == v or (v.endswith("*") and name.startswith(v[:-1])) for v in values)


def match_holds(m: Match, q: Query) -> bool | None:
    """Whether a non-address match holds for the query; None when it cannot be known."""
    if m.field == "l4proto":
        hit: bool | None = q.proto in m.values or PROTO_NUMBERS.get(q.proto) in m.values
    elif m.field == "dport":
        hit = _port_in(m.values, q.port)
    elif m.field == "orig_dport":
        hit = _port_in(m.values, q.port if q.orig_port is None else q.orig_port)
    elif m.field == "iif":
        hit = _iface_in(m.values, q.iif)
    elif m.field == "oif":
        hit = _iface_in(m.values, q.oif)
    elif m.field == "ct_state":
        hit = "new" in m.values
    elif m.field == "nfproto":
        hit = f"ipv{q.version}" in m.values or ("ipv4" if q.version == 4 else "ipv6") in m.values
    elif m.field == "dst_type":
        # A connection to this host is addressed to a "local" address; after DNAT it is "unicast".
        hit = ("unicast" if q.forward else "local") in m.values
    elif m.field in ("never", "rate_over"):
        hit = False
    elif m.field == "daddr":
        if q.daddr is None:
            return None
        hit = AddrSet.of(q.version, list(m.values)).contains(q.daddr)
    else:
        return None
    if hit is None:
        return None
    return not hit if m.negate else hit


def sources_of(rule: Rule, q: Query) -> tuple[AddrSet | None, bool]:
    """The sources a rule matches for ``q`` (None: none), and whether that is certain."""
    sources = AddrSet.full(q.version)
    certain = rule.opaque is None
    for m in rule.matches:
        if m.field == "saddr":
            s = AddrSet.of(q.version, list(m.values))
            sources = sources.intersect(s.complement() if m.negate else s)
            continue
        held = match_holds(m, q)
        if held is False:
            return None, True
        if held is None:
            certain = False
    return sources, certain


def _rate_limited(rule: Rule, q: Query, pending: AddrSet) -> bool:
    """A rule that blocks a source only once it opens connections too fast (``limit rate over``, ``-m recent
    --update --hitcount``, ``--hashlimit-above``) and whose other conditions hold for some pending source."""
    if rule.verdict not in ("drop", "reject", "jump", "goto") or rule.opaque is not None:
        return False
    if not any(m.field == "rate_over" for m in rule.matches):
        return False
    rest = replace(rule, matches=tuple(m for m in rule.matches if m.field != "rate_over"))
    sources, certain = sources_of(rest, q)
    return sources is not None and certain and bool(pending.intersect(sources))


def walk(ruleset: Ruleset, chain: Chain, q: Query, pending: AddrSet, depth: int = 0) -> Outcome:
    """Walk ``chain`` with the undecided ``pending`` sources."""
    empty = AddrSet(q.version)
    out = Outcome(empty, empty, empty)
    if depth > MAX_DEPTH:
        out.unknown.append(f"{chain.label}: jumps nested deeper than {MAX_DEPTH}")
        return out
    for rule in chain.rules:
        if not pending:
            break
        if _rate_limited(rule, q, pending):
            out.limits.append(f"{chain.label}: `{rule.text}`")
            continue
        sources, certain = sources_of(rule, q)
        if sources is None:
            continue
        hit = pending.intersect(sources)
        if not hit:
            continue
        if not certain:
            if rule.verdict is not None or rule.opaque:
                reason = f" ({rule.opaque})" if rule.opaque else ""
                out.unknown.append(f"{chain.label}: `{rule.text}`{reason}")
            continue
        where = f"{chain.label}: `{rule.text}`"
        if rule.verdict == "accept":
            out.accepted, pending = out.accepted.union(hit), pending.minus(hit)
            out.deciders.append(where)
        elif rule.verdict in ("drop", "reject"):
            out.dropped, pending = out.dropped.union(hit), pending.minus(hit)
            out.deciders.append(where)
        elif rule.verdict == "return":
            out.returned, pending = out.returned.union(hit), pending.minus(hit)
        elif rule.verdict == "dnat":
            out.dnat.append((hit, rule.target or "", where))
            out.accepted, pending = out.accepted.union(hit), pending.minus(hit)
        elif rule.verdict in ("jump", "goto"):
            target = ruleset.chains.get((chain.family, chain.table, rule.target or ""))
            if target is None:
                out.unknown.append(f"{where} (no chain {rule.target})")
                continue
            sub = walk(ruleset, target, q, hit, depth + 1)
            out.accepted = out.accepted.union(sub.accepted)
            out.dropped = out.dropped.union(sub.dropped)
            out.unknown += sub.unknown
            out.dnat += sub.dnat
            out.deciders += sub.deciders
            out.limits += sub.limits
            pending = pending.minus(hit)
            if rule.verdict == "jump":
                pending = pending.union(sub.returned)
            else:
                out.returned = out.returned.union(sub.returned)
    out.returned = out.returned.union(pending)
    return out


def _applies(chain: Chain, version: int) -> bool:
    return version in FAMILY_VERSIONS.get(chain.family, ())


def base_chain(ruleset: Ruleset, chain: Chain, q: Query, allowed: AddrSet) -> Outcome:
    """A base chain: what falls through meets the policy."""
    out = walk(ruleset, chain, q, allowed)
    rest = out.returned
    if chain.policy == "accept":
        out.accepted = out.accepted.union(rest)
        if rest:
            out.deciders.append(f"{chain.label}: policy accept")
    else:
        out.dropped = out.dropped.union(rest)
        if rest:
            out.deciders.append(f"{chain.label}: policy {chain.policy}")
    out.returned = AddrSet(q.version)
    return out


# -- the path of a new connection ----------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One base chain on the path, and where on the path it is (which decides the query it sees)."""

    chain: Chain
    hook: str
    outbound: bool  # on the output path of a connection this host makes (no input interface yet)


def _ingress(ruleset: Ruleset, iif: str, version: int) -> list[Stage]:
    """Ingress chains of the interface (a chain whose devices are not known applies to every interface:
    its effect is then reported as unknown by :func:`_run`)."""
    return [Stage(c, "ingress", False) for c in ruleset.base_chains("ingress")
            if _applies(c, version) and (c.devices is None or iif in c.devices)]


def stages(ruleset: Ruleset, q: Query) -> list[Stage]:
    """Every base chain a new connection for ``q`` crosses, in order."""
    def hook(name: str, outbound: bool = False, skip_nat: bool = False) -> list[Stage]:
        return [Stage(c, name, outbound) for c in ruleset.base_chains(name)
                if _applies(c, q.version) and not (skip_nat and c.type == "nat")]

    if q.iif == LOOPBACK:
        return [*hook("output", True), *hook("postrouting", True), *_ingress(ruleset, LOOPBACK, q.version),
                *hook("prerouting", skip_nat=True), *hook("input")]
    return [*_ingress(ruleset, q.iif, q.version), *hook("prerouting"), *hook("input")]


@dataclass
class Path:
    """Where the sources of one arriving port end up: delivered to a local port, or sent elsewhere.

    Unknown rules, deciders and rate limits are tagged with the port the connection had when the rule
    was met, so a listener is only told about the rules on its own way in.
    """

    landing: dict[int, AddrSet] = field(default_factory=dict)
    unknown: list[tuple[int, str]] = field(default_factory=list)
    deciders: list[tuple[int, str]] = field(default_factory=list)
    limits: list[tuple[int, str]] = field(default_factory=list)
    dnats: list[tuple[AddrSet, str, str]] = field(default_factory=list)  # to another host (forward path)
    # this host's own connections a nat output chain sends to another host (Docker without its
    # userland proxy): the sources the later output chains let out, the target, the rule
    local_dnats: list[tuple[AddrSet, str, str]] = field(default_factory=list)
    redirected: set[int] = field(default_factory=set)  # arriving ports whose sources moved to another port


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.strip("[]")).is_loopback
    except ValueError:
        return False


def _run(ruleset: Ruleset, path_stages: list[Stage], start: int, q: Query, sources: AddrSet, path: Path,
         natted: bool = False) -> None:
    """Walk ``sources`` through ``path_stages[start:]`` with ``q``; a redirect forks the walk."""
    port = q.port
    for i in range(start, len(path_stages)):
        if not sources:
            return
        stage = path_stages[i]
        chain = stage.chain
        if natted and chain.type == "nat" and stage.hook in ("prerouting", "output"):
            continue  # a connection is NATed by the first nat chain that translates it
        cq = replace(q, iif="", oif=LOOPBACK, local_out=True) if stage.outbound else q
        out = base_chain(ruleset, chain, cq, sources)
        unknown = out.unknown
        if stage.hook == "ingress" and chain.devices is None and out.dropped:
            unknown = [*unknown, f"{chain.label}: ingress chain on devices that are not known"]
        path.unknown += [(port, u) for u in unknown]
        path.deciders += [(port, d) for d in out.deciders]
        path.limits += [(port, x) for x in out.limits]
        passed = sources.intersect(out.accepted)
        for hit, target, text in out.dnat:
            hit = hit.intersect(passed)
            if not hit or chain.type != "nat" or stage.hook not in ("prerouting", "output"):
                continue
            addr, new_port = split_dnat_target(target, port)
            if target.startswith(":") or _is_loopback(addr):
                if new_port != port:
                    passed = passed.minus(hit)
                    path.redirected.add(port)
                    path.deciders.append((new_port, f"{text} (from port {port})"))
                    _run(ruleset, path_stages, i + 1, replace(q, port=new_port), hit, path, natted=True)
            elif stage.hook == "prerouting":
                passed = passed.minus(hit)
                path.dnats.append((hit, target, text))
            else:  # this host's own connection sent to another host
                passed = passed.minus(hit)
                path.deciders.append((port, f"{text} (sent to another host)"))
                sent = _leave(ruleset, [s for s in path_stages[i + 1:] if s.outbound],
                              replace(q, port=new_port, daddr=addr), hit, path, port)
                path.local_dnats.append((sent, f"{addr}:{new_port}", text))
        sources = passed
    if sources:
        path.landing[port] = path.landing.get(port, AddrSet(q.version)).union(sources)


def _leave(ruleset: Ruleset, rest: list[Stage], q: Query, sources: AddrSet, path: Path, port: int) -> AddrSet:
    """The sources of this host's own connection, DNATed on its output path to another host, that the
    remaining output and postrouting chains let out. It never crosses forward or input: it leaves by the
    route to the new address. Unknowns and deciders are told to the arriving ``port``."""
    for stage in rest:
        if not sources:
            break
        if stage.chain.type == "nat" and stage.hook == "output":
            continue  # NATed once already
        out = base_chain(ruleset, stage.chain, replace(q, iif="", oif=None, local_out=True), sources)
        path.unknown += [(port, u) for u in out.unknown]
        path.deciders += [(port, d) for d in out.deciders]
        sources = sources.intersect(out.accepted)
    return sources


def trace(ruleset: Ruleset, q: Query) -> Path:
    """Follow every source of a new connection for ``q`` to where it lands."""
    path = Path()
    _run(ruleset, stages(ruleset, q), 0, q, AddrSet.full(q.version), path)
    return path


def _filters(ruleset: Ruleset, version: int) -> bool:
    return any(_applies(c, version) for h in ("ingress", "prerouting", "input") for c in ruleset.base_chains(h))


def landing_answer(ruleset: Ruleset, q: Query, path: Path, port: int) -> Answer:
    """What ``path`` (traced for a connection to ``q.port``) delivers to local ``port``."""
    involved = {port} | ({q.port} if port != q.port else set())
    unknown = [u for p, u in path.unknown if p in involved]
    deciders = [d for p, d in path.deciders if p in involved]
    limits = [x for p, x in path.limits if p in involved]
    if not _filters(ruleset, q.version):
        deciders.append(f"no firewall chain filters IPv{q.version} input")
    return Answer(path.landing.get(port, AddrSet(q.version)), tuple(dict.fromkeys(unknown)),
                  tuple(dict.fromkeys(deciders)), tuple(dict.fromkeys(limits)))


def reachability(ruleset: Ruleset, q: Query) -> tuple[Answer, list[tuple[AddrSet, str, str]]]:
    """Sources whose connection to ``q.port`` reaches a local listener on that port, and the DNATs that
    divert some sources to other hosts."""
    path = trace(ruleset, q)
    return landing_answer(ruleset, q, path, q.port), path.dnats


def redirect_ports(ruleset: Ruleset, proto: str) -> tuple[set[int], list[Rule]]:
    """Ports that a DNAT/REDIRECT to a local port (``:port`` or a loopback address) names, and the rules
    that redirect ports they do not list one by one (a whole protocol, or a range wider than
    :data:`MAX_REDIRECT_SPAN`)."""
    ports: set[int] = set()
    unlisted: list[Rule] = []
    for chain in ruleset.chains.values():
        for rule in chain.rules:
            if rule.verdict != "dnat" or not rule.target:
                continue
            addr, _ = split_dnat_target(rule.target, 0)
            if not (rule.target.startswith(":") or _is_loopback(addr)):
                continue
            protos = {v for m in rule.matches if m.field == "l4proto" and not m.negate for v in m.values}
            if protos and proto not in protos and PROTO_NUMBERS.get(proto) not in protos:
                continue
            named = [v for m in rule.matches if m.field == "dport" and not m.negate for v in m.values]
            if not named:
                unlisted.append(rule)
            for v in named:
                lo, _, hi = v.partition("-")
                if lo.isdigit() and (not hi or (hi.isdigit() and int(hi) - int(lo) < MAX_REDIRECT_SPAN)):
                    ports.update(range(int(lo), int(hi or lo) + 1))
                else:
                    unlisted.append(rule)
    return ports, unlisted


def split_dnat_target(target: str, default_port: int) -> tuple[str, int]:
    """"192.0.2.2:80" -> ("192.0.2.2", 80); "[2001:db8::2]:80" and a missing port handled."""
    if target.startswith("["):
        addr, _, port = target[1:].partition("]:")
    elif target.count(":") == 1:
        addr, _, port = target.partition(":")
    else:
        addr, port = target, ""
    port = port.split("-")[0]
    return addr, int(port) if port.isdigit() else default_port


def forward_reachability(ruleset: Ruleset, q: Query, sources: AddrSet, daddr: str, port: int,
                         oif: str | None) -> Answer:
    """Sources (already DNATed to ``daddr:port``) that the forward chains let through."""
    fq = Query(q.version, q.proto, port, q.iif, daddr, oif or None, forward=True, orig_port=q.port)
    allowed = sources
    unknown: list[str] = []
    deciders: list[str] = []
    limits: list[str] = []
    for chain in ruleset.base_chains("forward"):
        if not _applies(chain, q.version) or not allowed:
            continue
        out = base_chain(ruleset, chain, fq, allowed)
        unknown += out.unknown
        deciders += out.deciders
        limits += out.limits
        allowed = allowed.intersect(out.accepted)
    return Answer(allowed, tuple(dict.fromkeys(unknown)), tuple(dict.fromkeys(deciders)), tuple(dict.fromkeys(limits)))


def interfaces(ruleset: Ruleset) -> list[str]:
    """Interface names rules and ingress chains mention (besides lo), so each can be evaluated on its own."""
    names: set[str] = set()
    for chain in ruleset.chains.values():
        if chain.hook == "ingress" and chain.devices:
            names.update(chain.devices)
        for rule in chain.rules:
            for m in rule.matches:
                if m.field == "iif":
                    names.update(v.rstrip("*") + ("0" if v.endswith("*") else "") for v in m.values)
    names.discard(LOOPBACK)
    names.discard("")
    return sorted(names)
