"""Firewall reachability: for every listening port, who can open a connection to it through the ruleset."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hostguard.checks.ports import allowed_ports, exposed_service
from hostguard.engine.context import Context
from hostguard.engine.registry import check
from hostguard.findings import Finding
from hostguard.host.firewall import FirewallFacts
from hostguard.host.sockets import Listener
from hostguard.netfilter.evaluate import (
    Answer,
    Query,
    forward_reachability,
    interfaces,
    reachability,
    split_dnat_target,
)
from hostguard.netfilter.model import AddrSet, Chain, Ruleset

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
        """{"IPv4": {interface: {"state", "sources"}}} for tools and tests."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (version, iface), a in sorted(self.answers.items()):
            entry: dict[str, Any] = {"state": a.state}
            if a.state == "sources":
                entry["sources"] = a.reach.cidrs()
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

    def evidence(self, facts: FirewallFacts) -> dict[str, Any]:
        """What was evaluated and what decided."""
        ev: dict[str, Any] = {"reachable_from": self.summary(), "decided_by": self.deciders()[:6],
                              "ruleset_sources": list(facts.sources), "reach": self.structured()}
        if self.process:
            ev["process"] = self.process
        if self.dnat:
            ev["dnat_to"] = self.dnat
        unknown = sorted({u for a in self.answers.values() for u in a.unknown})
        if unknown:
            ev["not_evaluated"] = unknown
        if facts.notes:
            ev["notes"] = list(facts.notes)
        return ev


def _ifaces(ruleset: Ruleset) -> list[str]:
    """Interfaces to evaluate: any other, loopback (connections from this host), and each one rules name."""
    return [OTHER, "lo", *interfaces(ruleset)]


def evaluate_listener(facts: FirewallFacts, listener: Listener) -> PortReach:
    """Who reaches the listener, per IP version it accepts and per input interface."""
    answers: dict[tuple[int, str], Answer] = {}
    daddr = None if listener.address in WILDCARDS else listener.address.split("%")[0]
    ifaces = _ifaces(facts.ruleset)
    for version in listener.families:
        for iface in ifaces:
            q = Query(version, listener.proto, listener.port, iface, daddr)
            answers[(version, iface)] = reachability(facts.ruleset, q)[0]
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


def evaluate_published(facts: FirewallFacts) -> list[PortReach]:
    """Ports published by DNAT (containers): reachability through prerouting and forward."""
    out = []
    routes = dict(facts.routes)
    ifaces = _ifaces(facts.ruleset)
    for proto, port in sorted(_dnat_ports(facts.ruleset)):
        answers: dict[tuple[int, str], Answer] = {}
        target_text = None
        for version in (4, 6):
            for iface in ifaces:
                q = Query(version, proto, port, iface)
                _, dnats = reachability(facts.ruleset, q)
                if not dnats:
                    continue
                reach = AddrSet(version)
                unknown: list[str] = []
                deciders: list[str] = []
                for sources, target, text in dnats:
                    addr, new_port = split_dnat_target(target, port)
                    target_text = f"{addr}:{new_port}"
                    fwd = forward_reachability(facts.ruleset, q, sources, addr, new_port, routes.get(addr))
                    reach = reach.union(fwd.reach)
                    unknown += fwd.unknown
                    deciders += [text, *fwd.deciders]
                answers[(version, iface)] = Answer(reach, tuple(unknown), tuple(deciders))
        if answers:
            out.append(PortReach(proto, port, f"dnat {target_text}", answers, dnat=target_text))
    return out


def collect_reach(host: Any, config: dict[str, Any], facts: Any) -> tuple[PortReach, ...]:
    """Derived fact "reach": every non-loopback listener and every published port, evaluated once."""
    fw: FirewallFacts = facts.get("firewall")
    result = [evaluate_listener(fw, x) for x in facts.get("listeners") if not x.loopback_only]
    return tuple(result + evaluate_published(fw))


def _first_accepting_chain(pr: PortReach, ruleset: Ruleset) -> Chain | None:
    for decider in pr.deciders():
        label = decider.split(":", 1)[0]
        for chain in ruleset.chains.values():
            if chain.label == label and chain.hook in ("input", "forward"):
                return chain
    return next(iter(ruleset.base_chains("input")), None)


def restrict_rule(pr: PortReach, ruleset: Ruleset) -> str:
    """The commands that limit the port to trusted sources, in the chain that lets it in."""
    chain = _first_accepting_chain(pr, ruleset)
    trusted = "TRUSTED_NET (e.g. 198.51.100.0/24)"
    if chain is None:
        return (f"No firewall is loaded. Create one: `nft add table inet filter`; `nft add chain inet filter input "
                "'{ type filter hook input priority 0; policy accept; }'`; then `nft add rule inet filter input "
                f"{pr.proto} dport {pr.port} ip saddr != {trusted} drop`, and save the ruleset to /etc/nftables.conf.")
    if chain.source.startswith("iptables"):
        tool = "iptables" if chain.family == "ip" else "ip6tables"
        table = chain.table.split(":")[-1]
        return (f"`{tool} -t {table} -I {chain.name} -p {pr.proto} --dport {pr.port} -j DROP` then "
                f"`{tool} -t {table} -I {chain.name} -p {pr.proto} -s {trusted} --dport {pr.port} -j ACCEPT` "
                "(inserted above, so trusted sources still get in); persist with netfilter-persistent or your front end.")
    saddr = "ip6 saddr" if chain.family == "ip6" else "ip saddr"
    return (f"`nft insert rule {chain.label} {pr.proto} dport {pr.port} {saddr} != {{ {trusted} }} drop` "
            f"(chain {chain.label} is where it is let in; for IPv6 in an inet table add the same with ip6 saddr), "
            "then add the rule to /etc/nftables.conf so it survives a reboot.")


def _reach_finding_title(pr: PortReach, name: str) -> str:
    deciders = pr.deciders()
    why = f" ({deciders[0].replace('`', '')})" if deciders else ""
    where = f"{pr.port}/{pr.proto}" + (f" (published to {pr.dnat})" if pr.dnat else "")
    return f"{name} {where} is reachable from any address{why}"


@check(id="firewall.reachability", family="firewall", severity="info",
       title="Who can reach each listening port", needs=("firewall", "listeners", "reach"))
def reachability_inventory(ctx: Context) -> Iterator[Finding]:
    """For every port open beyond loopback (and every port published by DNAT), the answer the ruleset gives:
    anyone, these source networks, nobody, or unknown (with the rule that could not be evaluated), per IP
    version and input interface. Every base chain on the path counts: a drop in any of them wins."""
    facts: FirewallFacts = ctx.fact("firewall")
    for pr in ctx.fact("reach"):
        what = pr.process or (f"published to {pr.dnat}" if pr.dnat else "unknown process")
        yield ctx.finding(f"{pr.port}/{pr.proto} on {pr.address} ({what}): {pr.summary()}", pr.key(),
                          evidence=pr.evidence(facts), remediation="Nothing to do if this is what you intend.")


@check(id="firewall.service_reachable", family="firewall", severity="high",
       title="Database, cache or FTP port reachable from any address", needs=("firewall", "listeners", "reach"))
def service_reachable(ctx: Context) -> Iterator[Finding]:
    """The checklist: databases and FTP only from chosen sources. A MySQL, PostgreSQL, Redis, MongoDB,
    Memcached, Elasticsearch or FTP port that the firewall lets anyone reach is attacked within minutes."""
    facts: FirewallFacts = ctx.fact("firewall")
    extra = ctx.config["ports"]["extra_services"]
    for pr in ctx.fact("reach"):
        svc = exposed_service(pr.process, pr.port, pr.proto, extra)
        if svc is None or pr.worst() != "anyone":
            continue
        yield ctx.finding(_reach_finding_title(pr, svc["name"]), pr.key(),
                          evidence={**pr.evidence(facts), "service": svc["name"]},
                          remediation=restrict_rule(pr, facts.ruleset) + " Better still: " + svc["fix"])


@check(id="firewall.port_reachable", family="firewall", severity="medium",
       title="Port outside the allowed list reachable from any address", needs=("firewall", "listeners", "reach"))
def port_reachable(ctx: Context) -> Iterator[Finding]:
    """Only the needed ports should be open to everyone (``ports.allowed``); any other port the firewall
    lets anyone reach is one more way in."""
    facts: FirewallFacts = ctx.fact("firewall")
    listeners = ctx.fact("listeners")
    allowed = allowed_ports(listeners, ctx.config["ports"]["allowed"])
    extra = ctx.config["ports"]["extra_services"]
    for pr in ctx.fact("reach"):
        if pr.port in allowed or exposed_service(pr.process, pr.port, pr.proto, extra) or pr.worst() != "anyone":
            continue
        yield ctx.finding(_reach_finding_title(pr, pr.process or "port"), pr.key(),
                          evidence=pr.evidence(facts), remediation=restrict_rule(pr, facts.ruleset))


@check(id="firewall.default_allow", family="firewall", severity="medium",
       title="Firewall lets anyone reach ports no rule names (no default deny)", needs=("firewall",))
def default_allow(ctx: Context) -> Iterator[Finding]:
    """Firewall everything but the needed ports: with no default deny, every service that starts listening
    later (a miner's proxy, a forgotten debug server) is reachable at once. Tested with a port no rule
    names, over IPv4 and IPv6; works on the live ruleset and on a tree's boot-time configuration."""
    facts: FirewallFacts = ctx.fact("firewall")
    probe_port = ctx.config["firewall"]["probe_port"]
    open_to: list[str] = []
    deciders: list[str] = []
    for version in (4, 6):
        answer, _ = reachability(facts.ruleset, Query(version, "tcp", probe_port, OTHER))
        if answer.state == "anyone":
            open_to.append(f"IPv{version}")
            deciders += answer.deciders
    if open_to:
        yield ctx.finding(f"any new listening port would be reachable from anyone over {' and '.join(open_to)}",
                          {"kind": "config", "config": "firewall", "path": ", ".join(facts.sources) or "(none)"},
                          evidence={"probe_port": probe_port, "decided_by": list(dict.fromkeys(deciders))[:4],
                                    "ruleset_sources": list(facts.sources), "notes": list(facts.notes)},
                          remediation="Make the input chain drop by default and accept only what is needed, e.g. in "
                                      "/etc/nftables.conf: `chain input { type filter hook input priority 0; policy "
                                      "drop; ct state established,related accept; iif lo accept; tcp dport { SSH_PORT, "
                                      "80, 443 } accept }` — allow your SSH port first, then `nft -f /etc/nftables.conf`.")
