"""A backend-neutral model of a netfilter ruleset: what nft's JSON and iptables-save both become.

Only what decides whether a new inbound connection reaches a local port is modelled: protocol,
destination port, source and destination addresses, input interface, conntrack state, verdicts and chain
jumps. Anything else in a rule makes that rule *opaque*: the evaluator answers "unknown" and quotes it
rather than guessing.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

V4_MAX = (1 << 32) - 1
V6_MAX = (1 << 128) - 1


@dataclass(frozen=True)
class AddrSet:
    """A set of addresses of one IP version as sorted, disjoint, inclusive integer intervals."""

    version: int
    spans: tuple[tuple[int, int], ...] = ()

    @classmethod
    def full(cls, version: int) -> AddrSet:
        """Every address of the version."""
        return cls(version, ((0, V4_MAX if version == 4 else V6_MAX),))

    @classmethod
    def of(cls, version: int, networks: list[str]) -> AddrSet:
        """The union of CIDRs, single addresses and ``a-b`` ranges of ``version`` (others ignored)."""
        spans = []
        for text in networks:
            try:
                if "-" in text:
                    lo, hi = (ipaddress.ip_address(x.strip()) for x in text.split("-", 1))
                    if lo.version == version:
                        spans.append((int(lo), int(hi)))
                    continue
                net = ipaddress.ip_network(text, strict=False)
            except ValueError:
                continue
            if net.version == version:
                spans.append((int(net.network_address), int(net.broadcast_address)))
        return cls(version, _normalise(spans))

    def __bool__(self) -> bool:
        return bool(self.spans)

    def union(self, other: AddrSet) -> AddrSet:
        """self ∪ other."""
        return AddrSet(self.version, _normalise([*self.spans, *other.spans]))

    def complement(self) -> AddrSet:
        """Every address not in self."""
        top = V4_MAX if self.version == 4 else V6_MAX
        out = []
        start = 0
        for lo, hi in self.spans:
            if lo > start:
                out.append((start, lo - 1))
            start = hi + 1
        if start <= top:
            out.append((start, top))
        return AddrSet(self.version, tuple(out))

    def intersect(self, other: AddrSet) -> AddrSet:
        """self ∩ other."""
        out = []
        i = j = 0
        a, b = self.spans, other.spans
        while i < len(a) and j < len(b):
            lo = max(a[i][0], b[j][0])
            hi = min(a[i][1], b[j][1])
            if lo <= hi:
                out.append((lo, hi))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return AddrSet(self.version, tuple(out))

    def minus(self, other: AddrSet) -> AddrSet:
        """self − other."""
        return self.intersect(other.complement())

    def fraction(self) -> float:
        """Share of the whole address space in the set."""
        size = sum(hi - lo + 1 for lo, hi in self.spans)
        return size / ((V4_MAX if self.version == 4 else V6_MAX) + 1)

    def contains(self, address: str) -> bool:
        """Whether one address is in the set."""
        ip = ipaddress.ip_address(address)
        return ip.version == self.version and any(lo <= int(ip) <= hi for lo, hi in self.spans)

    def is_full(self) -> bool:
        """True when this is every address of the version."""
        return self == AddrSet.full(self.version)

    def cidrs(self) -> list[str]:
        """The set as the fewest CIDRs."""
        cls = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        out: list[str] = []
        for lo, hi in self.spans:
            out.extend(str(n) for n in ipaddress.summarize_address_range(cls(lo), cls(hi)))
        return out


def _normalise(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


@dataclass(frozen=True)
class Match:
    """One condition of a rule.

    ``field``: ``l4proto`` (values: protocol names), ``dport`` (values: "N" or "N-M"), ``saddr``/``daddr``
    (values: CIDRs or ranges), ``iif`` (interface names, ``*`` wildcard suffix allowed), ``ct_state``,
    ``oif`` (output interface), ``nfproto`` ("ipv4"/"ipv6"), ``dst_type`` (addrtype/fib destination
    type: "local" for delivery to this host, "unicast" after DNAT), ``never``
    (a condition ordinary new connections never meet, such as an IPv6 type-0 routing header),
    ``orig_dport`` (conntrack's original destination port: the port the client connected to, before a
    DNAT changed it; Docker's documentation matches published ports in DOCKER-USER this way),
    ``rate_over`` (holds only once a source opens connections faster than a limit: ``limit rate over``,
    ``-m recent --update --hitcount``; a single new connection never meets it, so the rule that carries it
    rate-limits the port rather than closing it).
    """

    field: str
    values: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True)
class Rule:
    """Conditions and a verdict. ``opaque`` says why the rule cannot be evaluated, when it cannot."""

    matches: tuple[Match, ...]
    verdict: str | None        # accept, drop, reject, jump, goto, return, dnat; None = no verdict
    target: str | None = None  # chain for jump/goto, "addr:port" for dnat
    text: str = ""
    opaque: str | None = None
    handle: int | None = None


@dataclass(frozen=True)
class Chain:
    """A chain; base chains have a hook, a priority and a policy."""

    family: str               # ip, ip6, inet, arp, bridge, netdev
    table: str
    name: str
    rules: tuple[Rule, ...]
    hook: str | None = None
    priority: int = 0
    policy: str = "accept"
    type: str = "filter"
    source: str = "nftables"  # nftables, iptables-nft, iptables-legacy, static file
    devices: tuple[str, ...] | None = None  # ingress chains: the interfaces they hook (None: not known)

    @property
    def label(self) -> str:
        """``inet filter input`` — how nft names it."""
        return f"{self.family} {self.table} {self.name}"


@dataclass(frozen=True)
class Ruleset:
    """Every chain, keyed by (family, table, name), plus named sets."""

    chains: dict[tuple[str, str, str], Chain]
    sets: dict[tuple[str, str, str], tuple[str, ...]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def base_chains(self, hook: str) -> list[Chain]:
        """Base chains on ``hook``, in priority order."""
        return sorted((c for c in self.chains.values() if c.hook == hook), key=lambda c: (c.priority, c.label))
