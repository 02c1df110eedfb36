"""Who can open a new connection to a local port: the ruleset evaluated symbolically over source addresses.

A new inbound packet crosses every base chain on its path (prerouting: raw, mangle, nat; then input, or
forward after a DNAT), in priority order, in every table of its family. An ``accept`` ends only the chain
it is in; a ``drop``/``reject`` anywhere is final. So the sources that get through are the intersection
over base chains of what each accepts. Each chain is walked with the *set* of source addresses still
undecided, so "policy drop; ip saddr 192.0.2.0/24 tcp dport 3306 accept" answers exactly 192.0.2.0/24.

A rule that cannot be evaluated (an unknown match or statement) and could see some of the undecided
sources makes the answer "unknown", with the rule quoted; the evaluator never guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostguard.netfilter.model import AddrSet, Chain, Match, Rule, Ruleset

MAX_DEPTH = 64
FAMILY_VERSIONS = {"ip": (4,), "ip6": (6,), "inet": (4, 6)}
PROTO_NUMBERS = {"tcp": "6", "udp": "17", "sctp": "132"}


@dataclass(frozen=True)
class Query:
    """A new connection: IP version, protocol, destination port, input interface, destination."""

    version: int
    proto: str
    port: int
    iif: str
    daddr: str | None = None   # the listener's address when it is specific
    oif: str | None = None     # output interface on the forward path (after DNAT)
    forward: bool = False      # routed through (after DNAT) rather than delivered to this host


@dataclass
class Outcome:
    """What one chain walk decided for a set of sources."""

    accepted: AddrSet
    dropped: AddrSet
    returned: AddrSet
    unknown: list[str] = field(default_factory=list)
    dnat: list[tuple[AddrSet, str, str]] = field(default_factory=list)  # (sources, "addr:port", rule text)
    deciders: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Answer:
    """The sources that reach the port, the rules that could not be evaluated, and what decided."""

    reach: AddrSet
    unknown: tuple[str, ...]
    deciders: tuple[str, ...]

    @property
    def state(self) -> str:
        """anyone, sources, nobody or unknown."""
        if self.unknown:
            return "unknown"
        if self.reach.is_full():
            return "anyone"
        return "sources" if self.reach else "nobody"

    def describe(self) -> str:
        """Human form: "anyone", "nobody", "192.0.2.0/24", "unknown (rule ...)"."""
        if self.state == "unknown":
            return f"unknown: cannot evaluate {'; '.join(self.unknown[:2])}"
        if self.state == "sources":
            cidrs = self.reach.cidrs()
            return ", ".join(cidrs[:8]) + (f" (+{len(cidrs) - 8} more)" if len(cidrs) > 8 else "")
        return self.state


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
    elif m.field == "never":
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


def reachability(ruleset: Ruleset, q: Query) -> tuple[Answer, list[tuple[AddrSet, str, str]]]:
    """Sources that reach a local listener for ``q``, and the DNATs that divert some sources elsewhere."""
    allowed = AddrSet.full(q.version)
    unknown: list[str] = []
    deciders: list[str] = []
    dnats: list[tuple[AddrSet, str, str]] = []
    for hook in ("prerouting", "input"):
        for chain in ruleset.base_chains(hook):
            if not _applies(chain, q.version) or not allowed:
                continue
            out = base_chain(ruleset, chain, q, allowed)
            unknown += out.unknown
            deciders += out.deciders
            for sources, target, text in out.dnat:
                if hook == "prerouting" and not _is_local_redirect(target):
                    allowed = allowed.minus(sources)
                    dnats.append((sources, target, text))
                elif _changes_port(target, q.port):
                    unknown.append(f"{text} (redirects to another local port)")
            allowed = allowed.intersect(out.accepted)
    if not any(_applies(c, q.version) for h in ("prerouting", "input") for c in ruleset.base_chains(h)):
        deciders.append(f"no firewall chain filters IPv{q.version} input")
    return Answer(allowed, tuple(dict.fromkeys(unknown)), tuple(dict.fromkeys(deciders))), dnats


def _is_local_redirect(target: str) -> bool:
    return target.startswith(":")


def _changes_port(target: str, port: int) -> bool:
    _, _, p = target.rpartition(":")
    return bool(p) and p != str(port)


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
    fq = Query(q.version, q.proto, port, q.iif, daddr, oif or None, forward=True)
    allowed = sources
    unknown: list[str] = []
    deciders: list[str] = []
    for chain in ruleset.base_chains("forward"):
        if not _applies(chain, q.version) or not allowed:
            continue
        out = base_chain(ruleset, chain, fq, allowed)
        unknown += out.unknown
        deciders += out.deciders
        allowed = allowed.intersect(out.accepted)
    return Answer(allowed, tuple(dict.fromkeys(unknown)), tuple(dict.fromkeys(deciders)))


def interfaces(ruleset: Ruleset) -> list[str]:
    """Interface names rules mention (besides lo), so each can be evaluated on its own."""
    names: set[str] = set()
    for chain in ruleset.chains.values():
        for rule in chain.rules:
            for m in rule.matches:
                if m.field == "iif":
                    names.update(v.rstrip("*") + ("0" if v.endswith("*") else "") for v in m.values)
    names.discard("lo")
    return sorted(names)
