"""Firewall reachability: for every listening port, who can open a connection to it through the ruleset."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from hostguard.checks.ports import ALLOWED_PORTS, LISTENER_SERVICES, ListenerServices, PortsConfig, unknown_service
from hostguard.config import setting
from hostguard.engine.context import Context
from hostguard.engine.facts import Fact, config_input
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding, SkipReason
from hostguard.host.base import Host, ProcessInfo
from hostguard.host.firewall import FIREWALL, REACH, FirewallFacts
from hostguard.host.processes import PROCESSES
from hostguard.host.sockets import LISTENERS, Listener
from hostguard.host.ssh_socket import SSH_SOCKET, SshSocket
from hostguard.host.sshd import SSHD, SshdFacts
from hostguard.netfilter.evaluate import Query, reachability
from hostguard.netfilter.fixes import KeepOpen, default_deny, drop_port
from hostguard.netfilter.reach import OTHER, PortReach
from hostguard.remediation import Remediation


@dataclass(frozen=True)
class FirewallConfig:
    """[firewall]: how the default policy is probed."""

    probe_port: int = setting(9, "A port no rule should name: if anyone can reach it, the firewall has no default "
                                 "deny.", min=1, max=65535)


FAMILY = Family("firewall", __doc__ or "", FirewallConfig, retired={
    "firewall.reachability": "who reaches each port is now evidence of that port's own finding "
                             "(firewall.port_reachable, firewall.service_reachable, firewall.default_allow); "
                             "`hostguard firewall reach` lists every port"})

def _evidence(pr: PortReach, facts: FirewallFacts) -> dict[str, object]:
    return pr.evidence(facts.sources, facts.notes)


@dataclass(frozen=True)
class KeepFacts:
    """What a firewall fix must keep open, and why it is unknown when it is."""

    keep: KeepOpen | None
    why_unknown: str = ""


DHCP_CLIENTS = ("dhclient", "dhcpcd", "systemd-networkd", "NetworkManager", "udhcpc")


def collect_keep_open(host: Host, sshd: SshdFacts | None, socket: SshSocket | None,
                      listeners: tuple[Listener, ...] | None, processes: tuple[ProcessInfo, ...] | None,
                      ports: PortsConfig) -> KeepFacts:
    """The SSH port(s) (always: sshd's own and ssh.socket's), the allowed ports that listen (all allowed ports
    when the listeners are not known, as under --root), and DHCPv6 when a DHCP client runs (or when that
    cannot be known)."""
    if sshd is None:
        return KeepFacts(None, "sshd's configuration could not be read")
    if socket is None:
        return KeepFacts(None, "whether sshd is started by ssh.socket (and on which port) could not be read")
    if socket.unknown:
        return KeepFacts(None, f"ssh.socket listens on {', '.join(socket.unknown)}, which names no port")
    ssh = tuple(sorted(set(sshd.global_view.listen_ports()) | set(socket.ports)))
    if not ssh:
        return KeepFacts(None, "sshd's configuration names no port")
    allowed = {int(p) for p in ports.allowed if isinstance(p, int) or p.isdigit()}
    if "ssh" in ports.allowed:
        allowed |= set(ssh)
    if listeners is None:
        tcp, udp = allowed, set()
    else:
        tcp = {x.port for x in listeners if x.proto == "tcp" and not x.loopback_only and x.port in allowed}
        udp = {x.port for x in listeners if x.proto == "udp" and not x.loopback_only and x.port in allowed}
    dhcp = processes is None or any(p.name in DHCP_CLIENTS for p in processes)
    return KeepFacts(KeepOpen(ssh, tuple(sorted(tcp - set(ssh))), tuple(sorted(udp)), dhcp))


KEEP_OPEN: Fact[KeepFacts] = Fact("firewall_keep_open", collect_keep_open,
                                  inputs=(SSHD.best_effort, SSH_SOCKET.best_effort, LISTENERS.best_effort,
                                          PROCESSES.best_effort, config_input("ports")))


def is_default(decider: str) -> bool:
    """A decider that is the ruleset's default, not a rule naming the port: a chain's ``policy accept``, or no
    chain filtering that IP version at all."""
    return decider.endswith(": policy accept") or decider.startswith("no firewall chain")


@dataclass(frozen=True)
class DefaultOpen:
    """The IP versions on which a port no rule names is open to anyone, and the listening ports that nothing
    but that default lets anyone reach (they are the default-deny finding's, not findings of their own)."""

    versions: tuple[int, ...]
    deciders: tuple[str, ...]
    ports: tuple[PortReach, ...] = ()

    def covers(self, pr: PortReach) -> bool:
        """Whether the default alone opens ``pr`` to anyone (so the default deny closes it)."""
        return any(p is pr or p.key() == pr.key() for p in self.ports)


def collect_default_open(host: Host, facts: FirewallFacts, reach: tuple[PortReach, ...] | None,
                         services: ListenerServices | None, cfg: FirewallConfig) -> DefaultOpen:
    """Probe a port no rule should name, over IPv4 and IPv6; then find the listening ports only it explains
    (a database, cache or FTP port keeps its own, more severe finding: firewall.service_reachable)."""
    versions: list[int] = []
    deciders: list[str] = []
    for version in (4, 6):
        answer, _ = reachability(facts.ruleset, Query(version, "tcp", cfg.probe_port, OTHER))
        if answer.state == "anyone":
            versions.append(version)
            deciders += answer.deciders
    ports = []
    for pr in reach or ():
        if services is not None and services.at(pr.proto, pr.address, pr.port, pr.process) is not None:
            continue
        wide = {v: a for (v, iface), a in pr.answers.items() if iface != "lo" and a.state == "anyone"}
        if wide and set(wide) <= set(versions) and all(is_default(d) for a in wide.values() for d in a.deciders):
            ports.append(pr)
    return DefaultOpen(tuple(versions), tuple(dict.fromkeys(deciders)), tuple(ports))


DEFAULT_OPEN: Fact[DefaultOpen] = Fact("firewall_default_open", collect_default_open,
                                       inputs=(FIREWALL, REACH.best_effort, LISTENER_SERVICES.best_effort,
                                               config_input("firewall")))


def _open_deciders(pr: PortReach) -> dict[int, list[str]]:
    """IP version -> the rules and policies that let anyone in, for each version the port is open on."""
    out: dict[int, list[str]] = {}
    for (version, iface), a in sorted(pr.answers.items()):
        wide = a.state == "anyone" or (a.state == "sources" and a.reach.fraction() > 0.5)
        if iface != "lo" and wide:
            out.setdefault(version, [])
            out[version] += [d for d in a.deciders if d not in out[version]]
    return out


def restrict_rule(pr: PortReach, facts: FirewallFacts, keep: KeepFacts) -> Remediation:
    """Drop the port for everyone but loopback where it is let in, for every IP version it is open on."""
    ssh = keep.keep.ssh if keep.keep else ()
    return drop_port(facts.ruleset, pr.proto, pr.port, _open_deciders(pr), ssh, dict(facts.files))


def _not_known(pr: PortReach, ctx: Context) -> None:
    """A port whose answer hangs on a rule the evaluator cannot read is "not looked", never "nobody": it goes
    to the report's skipped list with the rule, so the scan is not complete."""
    rules = sorted({u for a in pr.answers.values() for u in a.unknown})
    ctx.skip(SkipReason.UNSUPPORTED, f"who can reach {pr.port}/{pr.proto} depends on rules hostguard cannot "
                                     f"evaluate: {'; '.join(rules[:3]) or 'unknown'}", item=pr.label())


def _reach_finding_title(pr: PortReach, name: str) -> str:
    deciders = pr.deciders()
    why = f" ({deciders[0].replace('`', '')})" if deciders else ""
    where = f"{pr.port}/{pr.proto}" + (f" (published to {pr.dnat})" if pr.dnat else "")
    return f"{name} {where} is reachable from any address{why}"


@check(id="firewall.service_reachable", severity="high",
       summary="Database, cache or FTP port reachable from any address",
       needs=(FIREWALL, KEEP_OPEN, LISTENER_SERVICES, ALLOWED_PORTS), each=REACH, tags=("T1190",))
def service_reachable(pr: PortReach, ctx: Context) -> Iterator[Finding]:
    """The checklist: databases and FTP only from chosen sources. A MySQL, PostgreSQL, Redis, MongoDB,
    Memcached, Elasticsearch or FTP port that the firewall lets anyone reach is attacked within minutes. The
    service is named from its process (executable, package, script); a program only sitting on a database's
    usual port is "an unknown service on Redis's port", with a fix that fits any program."""
    facts = ctx.fact(FIREWALL)
    match = ctx.fact(LISTENER_SERVICES).at(pr.proto, pr.address, pr.port, pr.process)
    if match is None or (not match.confirmed and pr.port in ctx.fact(ALLOWED_PORTS)):
        return
    if pr.worst() == "unknown":
        _not_known(pr, ctx)
    if pr.worst() != "anyone":
        return
    fix = restrict_rule(pr, facts, ctx.fact(KEEP_OPEN))
    fix = replace(fix, manual=f"{fix.manual} Better still: {match.fix}")
    name = match.service.name if match.confirmed else f"{unknown_service(match.program)} on {match.service.name}'s port"
    yield ctx.finding(_reach_finding_title(pr, name[0].upper() + name[1:]), pr.key(),
                      evidence={**_evidence(pr, facts), **match.evidence()},
                      severity=None if match.confirmed else "medium", remediation=fix)


@check(id="firewall.port_reachable", severity="medium",
       summary="Port outside the allowed list reachable from any address",
       needs=(FIREWALL, ALLOWED_PORTS, KEEP_OPEN, LISTENER_SERVICES, DEFAULT_OPEN), each=REACH, tags=("T1190",))
def port_reachable(pr: PortReach, ctx: Context) -> Iterator[Finding]:
    """Only the needed ports should be open to everyone (``ports.allowed``); any other port the firewall
    lets anyone reach is one more way in. A port that nothing but the missing default deny opens is listed
    by firewall.default_allow (whose fix closes it) instead of a finding of its own."""
    facts = ctx.fact(FIREWALL)
    if pr.port in ctx.fact(ALLOWED_PORTS) or ctx.fact(LISTENER_SERVICES).at(pr.proto, pr.address, pr.port,
                                                                             pr.process) is not None:
        return
    if pr.worst() == "unknown":
        _not_known(pr, ctx)
    if pr.worst() != "anyone" or ctx.fact(DEFAULT_OPEN).covers(pr):
        return
    yield ctx.finding(_reach_finding_title(pr, pr.process or "port"), pr.key(),
                      evidence=_evidence(pr, facts), remediation=restrict_rule(pr, facts, ctx.fact(KEEP_OPEN)))


@check(id="firewall.default_allow", severity="medium",
       summary="Firewall lets anyone reach ports no rule names (no default deny)", needs=(FIREWALL, KEEP_OPEN, DEFAULT_OPEN),
       tags=("T1190",))
def default_allow(ctx: Context) -> Iterator[Finding]:
    """Firewall everything but the needed ports: with no default deny, every service that starts listening
    later (a miner's proxy, a forgotten debug server) is reachable at once. Tested with a port no rule
    names, over IPv4 and IPv6; works on the live ruleset and on a tree's boot-time configuration. Listening
    ports outside the allowed list that only this default opens are named here, not in findings of their
    own: the default deny closes them."""
    facts = ctx.fact(FIREWALL)
    default = ctx.fact(DEFAULT_OPEN)
    keep = ctx.fact(KEEP_OPEN)
    if not default.versions:
        return
    open_to = [f"IPv{v}" for v in default.versions]
    allowed = set(keep.keep.tcp_ports if keep.keep else ()) | set(keep.keep.udp if keep.keep else ())
    now = [pr for pr in default.ports if pr.port not in allowed]
    names = [f"{pr.port}/{pr.proto}" + (f" ({pr.process})" if pr.process else "") for pr in now]
    title = f"any new listening port would be reachable from anyone over {' and '.join(open_to)}"
    if names:
        title += f"; open now: {', '.join(names[:5])}" + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    yield ctx.finding(title,
                      {"kind": "config", "config": "firewall", "path": ", ".join(facts.sources) or "(none)"},
                      evidence={"probe_port": ctx.config[FirewallConfig].probe_port,
                                "decided_by": list(default.deciders)[:4], "ruleset_sources": list(facts.sources),
                                "notes": list(facts.notes),
                                "open_now": [{"port": pr.port, "proto": pr.proto, "address": pr.address,
                                              "process": pr.process, "reachable_from": pr.summary()}
                                             for pr in now]},
                      remediation=default_deny(facts.ruleset, list(default.versions), list(default.deciders),
                                               keep.keep, dict(facts.files), keep.why_unknown, facts.live))
