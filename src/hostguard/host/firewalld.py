"""firewalld's zone configuration of a tree, turned into the netfilter model.

firewalld picks a zone per packet — a zone bound to the packet's source address first, then one bound to
its input interface, else the default zone — and inside the zone accepts its services and ports, then
applies the zone's target (``default`` rejects). Services are looked up in /etc/firewalld/services before
/usr/lib/firewalld/services, with the services they ``<include>``; a service's ``<destination>`` limits it
to the IP versions (and destination addresses) it names, as firewalld does. Rich rules of the simple form
(family, source, destination, port, service or protocol, action) are evaluated in firewalld's order
(negative priority, then drop/reject, then accept with the zone's ports and services, then positive
priority); any other rich rule — and any element that lets traffic in some other way (a zone's
``<source-port>`` or ``<forward-port>``, a source bound by ipset or MAC, a policy towards the host that does
more than allow ICMP) — is kept as an opaque rule, so the answer is "unknown" with the rule quoted rather
than a guess. A broken or missing definition raises :class:`RulesetSourceError`: the firewall cannot be
known, and the scan says so rather than guessing.

Rule texts are a contract with netfilter/fixes.py, which turns them into ``firewall-cmd`` steps:
``zone Z: port P/PROTO``, ``zone Z: service NAME (P/PROTO)``, ``zone Z: rich rule ...``, ``zone Z: target T``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable

from hostguard.host.base import Host
from hostguard.host.firewall import RulesetSourceError
from hostguard.netfilter.model import Chain, Match, Rule, Ruleset

ZONE_DIRS = ("/etc/firewalld/zones", "/usr/lib/firewalld/zones")
SERVICE_DIRS = ("/etc/firewalld/services", "/usr/lib/firewalld/services")
POLICY_DIRS = ("/etc/firewalld/policies", "/usr/lib/firewalld/policies")
TABLE = "firewalld"
ICMP = Match("l4proto", ("icmp", "ipv6-icmp"))
# Elements that say nothing about which TCP/UDP connections a zone or policy lets in.
INERT = {"short", "description", "forward", "masquerade", "icmp-block", "icmp-block-inversion", "interface",
         "source", "ingress-zone", "egress-zone"}


def _xml(host: Host, dirs: tuple[str, ...], name: str, what: str) -> ET.Element:
    for directory in dirs:
        text = host.read_optional(f"{directory}/{name}.xml")
        if text is None:
            continue
        try:
            return ET.fromstring(text.encode("utf-8", "surrogateescape"))
        except ET.ParseError as exc:
            raise RulesetSourceError(f"{directory}/{name}.xml: {exc}") from exc
    raise RulesetSourceError(f"firewalld {what} '{name}' is not defined in {' or '.join(dirs)}")


def _service_parts(host: Host, name: str, seen: set[str] | None = None) -> list[tuple[ET.Element, ET.Element]]:
    """(service element, the ``<destination>`` that applies to it) for a service and every one it includes.

    An included service keeps its own destination, as firewalld builds each included service on its own.
    """
    seen = set() if seen is None else seen
    if name in seen:
        return []
    seen.add(name)
    definition = _xml(host, SERVICE_DIRS, name, "service")
    destination = definition.find("destination")  # (an Element without children is false: compare to None)
    out = [(definition, destination if destination is not None else ET.Element("destination"))]
    for include in definition.findall("include"):
        out += _service_parts(host, include.get("service", ""), seen)
    return out


def _destination_variants(destination: ET.Element) -> list[tuple[Match, ...]]:
    """The match sets a service's ``<destination ipv4= ipv6=>`` gives: none when it names no address, else one
    per IP version it names (firewalld adds no rule at all for a version the destination leaves out)."""
    if not destination.attrib:
        return [()]
    return [(Match("nfproto", (family,)), Match("daddr", (destination.get(family, ""),)))
            for family in ("ipv4", "ipv6") if destination.get(family)]


def _accepting(element: ET.Element, extra: tuple[Match, ...], label: Callable[[str, str], str]) -> list[Rule]:
    """``<port>``, ``<protocol>`` and ``<source-port>`` children of a zone or service as accept rules, each named
    by ``label(kind, value)``."""
    rules = []
    for port in element.findall("port"):
        proto, number = port.get("protocol", "tcp"), port.get("port", "")
        rules.append(Rule((*extra, Match("l4proto", (proto,)), Match("dport", (number,))), "accept", None,
                          label("port", f"{number}/{proto}")))
    for protocol in element.findall("protocol"):
        value = protocol.get("value", "")
        rules.append(Rule((*extra, Match("l4proto", (value,))), "accept", None, label("protocol", value)))
    for port in element.findall("source-port"):
        # Matched by the *source* port, which any sender chooses: who gets in cannot be told from addresses.
        proto, number = port.get("protocol", "tcp"), port.get("port", "")
        rules.append(Rule((*extra, Match("l4proto", (proto,)), Match("sport", (number,))), "accept", None,
                          label("source-port", f"{number}/{proto}"), "accepts by source port, which the sender chooses"))
    return rules


def _port_rules(host: Host, element: ET.Element, zone: str) -> list[Rule]:
    """The zone's own ports (``zone Z: port P/PROTO``) and its services' (``zone Z: service NAME (P/PROTO)``)."""
    rules = _accepting(element, (), lambda kind, value: f"zone {zone}: {kind} {value}")
    for service in element.findall("service"):
        name = service.get("name", "")

        def label(kind: str, value: str, name: str = name) -> str:
            return f"zone {zone}: service {name} ({value if kind == 'port' else f'{kind} {value}'})"

        for definition, destination in _service_parts(host, name):
            for where in _destination_variants(destination):
                rules += _accepting(definition, where, label)
    return rules


def _rich_rule(host: Host, el: ET.Element, zone: str) -> list[Rule]:
    """A ``<rule>`` element (a rich rule as firewalld stores it), or one opaque rule quoting it."""
    quoted = f"zone {zone}: rich rule {ET.tostring(el, encoding='unicode').strip()}"
    opaque = [Rule((), "accept", None, quoted, "rich rule not evaluated")]
    matches: list[Match] = []
    if el.get("family"):
        matches.append(Match("nfproto", (el.get("family", ""),)))
    action = None
    ports: list[tuple[Match, ...]] = []
    for child in el:
        if child.tag == "source" and child.get("address"):
            matches.append(Match("saddr", (child.get("address", ""),), child.get("invert") in ("true", "yes")))
        elif child.tag == "destination" and child.get("address"):
            matches.append(Match("daddr", (child.get("address", ""),), child.get("invert") in ("true", "yes")))
        elif child.tag == "port":
            ports.append((Match("l4proto", (child.get("protocol", "tcp"),)), Match("dport", (child.get("port", ""),))))
        elif child.tag == "protocol":
            ports.append((Match("l4proto", (child.get("value", ""),)),))
        elif child.tag in ("icmp-type", "icmp-block"):
            ports.append((ICMP,))  # never a TCP or UDP connection
        elif child.tag == "service":
            for definition, destination in _service_parts(host, child.get("name", "")):
                if destination.attrib or definition.find("source-port") is not None:
                    return opaque
                ports += [(Match("l4proto", (p.get("protocol", "tcp"),)), Match("dport", (p.get("port", ""),)))
                          for p in definition.findall("port")]
                ports += [(Match("l4proto", (p.get("value", ""),)),) for p in definition.findall("protocol")]
        elif child.tag in ("accept", "drop", "reject") and not list(child):
            action = child.tag
        elif child.tag not in ("log", "audit"):
            return opaque
    if action is None or not ports:
        return opaque
    return [Rule((*matches, *port), action, None, quoted) for port in ports]


def _priority(el: ET.Element) -> int:
    try:
        return int(el.get("priority", "0"))
    except ValueError as exc:
        raise RulesetSourceError(f"firewalld rich rule priority {el.get('priority')!r} is not a number") from exc


def zone_chain(host: Host, name: str) -> tuple[Chain, ET.Element]:
    """One zone as a chain ending in the zone's target, in the order firewalld's own chains have: rich rules of
    negative priority, then drop/reject rich rules, then accepting ones with the ports and services, then rich
    rules of positive priority."""
    zone = _xml(host, ZONE_DIRS, name, "zone")
    rich = sorted(zone.findall("rule"), key=_priority)
    before: list[Rule] = []
    deny: list[Rule] = []
    allow: list[Rule] = []
    after: list[Rule] = []
    for el in rich:
        rules = _rich_rule(host, el, name)
        priority = _priority(el)
        if priority < 0:
            before += rules
        elif priority > 0:
            after += rules
        else:
            deny += [r for r in rules if r.verdict in ("drop", "reject")]
            allow += [r for r in rules if r.verdict not in ("drop", "reject")]
    for forward in zone.findall("forward-port"):
        # A port forward (DNAT) sends one port's connections to another port or host: who reaches which
        # listener through it is not evaluated.
        proto = forward.get("protocol", "tcp")
        before.append(Rule((Match("l4proto", (proto,)),), "accept", None,
                           f"zone {name}: forward-port {ET.tostring(forward, encoding='unicode').strip()}",
                           "port forwarding not evaluated"))
    rules = [*before, *deny, *allow, *_port_rules(host, zone, name), *after]
    target = zone.get("target", "default").strip("%").upper()
    verdict = {"ACCEPT": "accept", "DROP": "drop"}.get(target, "reject")
    rules.append(Rule((), verdict, None, f"zone {name}: target {zone.get('target', 'default')}"))
    return Chain("inet", TABLE, f"zone_{name}", tuple(rules), source="firewalld"), zone


def _policy_rules(host: Host) -> list[Rule]:
    """Policies towards this host (egress zone HOST) that could decide a TCP or UDP connection, as opaque rules.

    Stock firewalld ships one (allow-host-ipv6: ICMPv6 neighbour discovery only), which changes nothing here.
    """
    names = sorted({n[:-4] for d in POLICY_DIRS for n in host.listdir(d) if n.endswith(".xml")})
    out = []
    for name in names:
        policy = _xml(host, POLICY_DIRS, name, "policy")
        if not any(e.get("name") == "HOST" for e in policy.findall("egress-zone")):
            continue
        # a rich rule holds one element: an icmp-type or icmp-block one never matches TCP or UDP
        icmp_only = all(e.tag in INERT or (e.tag == "rule" and any(c.tag in ("icmp-type", "icmp-block") for c in e))
                        for e in policy)
        if policy.get("target", "CONTINUE") == "CONTINUE" and icmp_only:
            continue
        out.append(Rule((), "accept", None, f"policy {name}: {ET.tostring(policy, encoding='unicode')[:200]}",
                        "firewalld policy towards the host not evaluated"))
    return out


def firewalld_ruleset(host: Host) -> Ruleset:
    """The input path firewalld would build from the tree's configuration."""
    conf = host.read_optional("/etc/firewalld/firewalld.conf") or ""
    m = re.search(r"^\s*DefaultZone\s*=\s*\"?([^\s\"]+)", conf, re.M)
    default = m.group(1) if m else "public"
    chains: dict[tuple[str, str, str], Chain] = {}
    dispatch_sources: list[Rule] = []
    dispatch_ifaces: list[Rule] = []
    names = {n[:-4] for d in ZONE_DIRS for n in host.listdir(d) if n.endswith(".xml")} | {default}
    for name in sorted(names):
        chain, zone = zone_chain(host, name)
        chains[("inet", TABLE, chain.name)] = chain
        for src in zone.findall("source"):
            if src.get("address"):
                dispatch_sources.append(Rule((Match("saddr", (src.get("address", ""),)),), "goto", chain.name,
                                             f"source {src.get('address')} -> zone {name}"))
            else:  # bound by ipset or MAC address: which sources that is cannot be told from the tree
                what = ", ".join(f"{k} {v}" for k, v in sorted(src.attrib.items()))
                dispatch_sources.append(Rule((), "goto", chain.name, f"source {what} -> zone {name}",
                                             "zone source by ipset or MAC not evaluated"))
        for iface in zone.findall("interface"):
            dispatch_ifaces.append(Rule((Match("iif", (iface.get("name", ""),)),), "goto", chain.name,
                                        f"interface {iface.get('name')} -> zone {name}"))
    rules = [Rule((Match("ct_state", ("established", "related")),), "accept", None, "ct state established,related"),
             Rule((Match("iif", ("lo",)),), "accept", None, "iif lo accept"),
             *_policy_rules(host),
             *dispatch_sources, *dispatch_ifaces,
             Rule((), "goto", f"zone_{default}", f"default zone {default}")]
    chains[("inet", TABLE, "input")] = Chain("inet", TABLE, "input", tuple(rules), "input", 10, "accept",
                                             source="firewalld")
    return Ruleset(chains, {}, ("/etc/firewalld",))
