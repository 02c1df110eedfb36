"""Firewall reachability: for every listening port, who can open a connection to it through the ruleset."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from hostguard.checks.ports import ALLOWED_PORTS, PortsConfig, exposed_service
from hostguard.config import setting
from hostguard.engine.context import Context
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding
from hostguard.host.firewall import FIREWALL, REACH, FirewallFacts
from hostguard.netfilter.evaluate import Query, reachability
from hostguard.netfilter.model import Chain, Ruleset
from hostguard.netfilter.reach import OTHER, PortReach


@dataclass(frozen=True)
class FirewallConfig:
    """[firewall]: how the default policy is probed."""

    probe_port: int = setting(9, "A port no rule should name: if anyone can reach it, the firewall has no default "
                                 "deny.", min=1, max=65535)


FAMILY = Family("firewall", __doc__ or "", FirewallConfig)


def _evidence(pr: PortReach, facts: FirewallFacts) -> dict[str, object]:
    return pr.evidence(facts.sources, facts.notes)


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


@check(id="firewall.reachability", severity="info",
       summary="Who can reach each listening port", needs=(FIREWALL,), each=REACH)
def reachability_inventory(pr: PortReach, ctx: Context) -> Iterator[Finding]:
    """For every port open beyond loopback (and every port published by DNAT), the answer the ruleset gives:
    anyone, these source networks, nobody, or unknown (with the rule that could not be evaluated), per IP
    version and input interface. Every base chain on the path counts: a drop in any of them wins."""
    what = pr.process or (f"published to {pr.dnat}" if pr.dnat else "unknown process")
    yield ctx.finding(f"{pr.port}/{pr.proto} on {pr.address} ({what}): {pr.summary()}", pr.key(),
                      evidence=_evidence(pr, ctx.fact(FIREWALL)), remediation="Nothing to do if this is what you intend.")


@check(id="firewall.service_reachable", severity="high",
       summary="Database, cache or FTP port reachable from any address", needs=(FIREWALL,), each=REACH,
       tags=("T1190",))
def service_reachable(pr: PortReach, ctx: Context) -> Iterator[Finding]:
    """The checklist: databases and FTP only from chosen sources. A MySQL, PostgreSQL, Redis, MongoDB,
    Memcached, Elasticsearch or FTP port that the firewall lets anyone reach is attacked within minutes."""
    facts = ctx.fact(FIREWALL)
    svc = exposed_service(pr.process, pr.port, pr.proto, ctx.config[PortsConfig].extra_services)
    if svc is None or pr.worst() != "anyone":
        return
    yield ctx.finding(_reach_finding_title(pr, svc.name), pr.key(),
                      evidence={**_evidence(pr, facts), "service": svc.name},
                      remediation=restrict_rule(pr, facts.ruleset) + " Better still: " + svc.fix)


@check(id="firewall.port_reachable", severity="medium",
       summary="Port outside the allowed list reachable from any address", needs=(FIREWALL, ALLOWED_PORTS), each=REACH,
       tags=("T1190",))
def port_reachable(pr: PortReach, ctx: Context) -> Iterator[Finding]:
    """Only the needed ports should be open to everyone (``ports.allowed``); any other port the firewall
    lets anyone reach is one more way in."""
    facts = ctx.fact(FIREWALL)
    extra = ctx.config[PortsConfig].extra_services
    if pr.port in ctx.fact(ALLOWED_PORTS) or exposed_service(pr.process, pr.port, pr.proto, extra) or \
            pr.worst() != "anyone":
        return
    yield ctx.finding(_reach_finding_title(pr, pr.process or "port"), pr.key(),
                      evidence=_evidence(pr, facts), remediation=restrict_rule(pr, facts.ruleset))


@check(id="firewall.default_allow", severity="medium",
       summary="Firewall lets anyone reach ports no rule names (no default deny)", needs=(FIREWALL,), tags=("T1190",))
def default_allow(ctx: Context) -> Iterator[Finding]:
    """Firewall everything but the needed ports: with no default deny, every service that starts listening
    later (a miner's proxy, a forgotten debug server) is reachable at once. Tested with a port no rule
    names, over IPv4 and IPv6; works on the live ruleset and on a tree's boot-time configuration."""
    facts = ctx.fact(FIREWALL)
    probe_port = ctx.config[FirewallConfig].probe_port
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
