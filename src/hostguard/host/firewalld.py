"""firewalld's zone configuration of a tree, turned into the netfilter model.

firewalld picks a zone per packet — a zone bound to the packet's source address first, then one bound to
its input interface, else the default zone — and inside the zone accepts its services and ports, then
applies the zone's target (``default`` rejects). Services are looked up in /etc/firewalld/services before
/usr/lib/firewalld/services. Rich rules of the simple form (family, source, port or service, action) are
evaluated; any other rich rule is kept as an opaque rule, so the answer is "unknown" with the rule quoted.
A broken or missing definition raises :class:`RulesetSourceError`: the firewall cannot be known, and the
scan says so rather than guessing.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from hostguard.host.base import Host
from hostguard.host.firewall import RulesetSourceError
from hostguard.netfilter.model import Chain, Match, Rule, Ruleset

ZONE_DIRS = ("/etc/firewalld/zones", "/usr/lib/firewalld/zones")
SERVICE_DIRS = ("/etc/firewalld/services", "/usr/lib/firewalld/services")
TABLE = "firewalld"


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


def _port_rules(host: Host, element: ET.Element, zone: str, origin: str,
                extra: tuple[Match, ...] = ()) -> list[Rule]:
    rules = []
    for port in element.findall("port"):
        proto, number = port.get("protocol", "tcp"), port.get("port", "")
        rules.append(Rule((*extra, Match("l4proto", (proto,)), Match("dport", (number,))), "accept", None,
                          f'zone {zone}: {origin}port {number}/{proto}'))
    for service in element.findall("service"):
        name = service.get("name", "")
        definition = _xml(host, SERVICE_DIRS, name, "service")
        for port in definition.findall("port"):
            proto, number = port.get("protocol", "tcp"), port.get("port", "")
            rules.append(Rule((*extra, Match("l4proto", (proto,)), Match("dport", (number,))), "accept", None,
                              f"zone {zone}: {origin}service {name} ({number}/{proto})"))
    return rules


def _rich_rule(host: Host, el: ET.Element, zone: str) -> list[Rule]:
    """A ``<rule>`` element (a rich rule as firewalld stores it), or one opaque rule quoting it."""
    quoted = f"zone {zone}: rich rule {ET.tostring(el, encoding='unicode').strip()}"
    opaque = [Rule((), "accept", None, quoted, "rich rule not evaluated")]
    matches: list[Match] = []
    if el.get("family"):
        matches.append(Match("nfproto", (el.get("family", ""),)))
    action = None
    ports: list[tuple[str, str]] = []
    for child in el:
        if child.tag == "source" and child.get("address"):
            matches.append(Match("saddr", (child.get("address", ""),), child.get("invert") in ("true", "yes")))
        elif child.tag == "port":
            ports.append((child.get("protocol", "tcp"), child.get("port", "")))
        elif child.tag == "service":
            definition = _xml(host, SERVICE_DIRS, child.get("name", ""), "service")
            ports += [(p.get("protocol", "tcp"), p.get("port", "")) for p in definition.findall("port")]
        elif child.tag in ("accept", "drop", "reject") and not list(child):
            action = child.tag
        elif child.tag not in ("log", "audit"):
            return opaque
    if action is None or not ports:
        return opaque
    return [Rule((*matches, Match("l4proto", (proto,)), Match("dport", (port,))), action, None, quoted)
            for proto, port in ports]


def zone_chain(host: Host, name: str) -> tuple[Chain, ET.Element]:
    """One zone as a chain ending in the zone's target."""
    zone = _xml(host, ZONE_DIRS, name, "zone")
    rules: list[Rule] = []
    for rich in zone.findall("rule"):
        rules += _rich_rule(host, rich, name)
    rules += _port_rules(host, zone, name, "")
    target = zone.get("target", "default").strip("%").upper()
    verdict = {"ACCEPT": "accept", "DROP": "drop"}.get(target, "reject")
    rules.append(Rule((), verdict, None, f"zone {name}: target {zone.get('target', 'default')}"))
    return Chain("inet", TABLE, f"zone_{name}", tuple(rules), source="firewalld"), zone


def firewalld_ruleset(host: Host) -> Ruleset:
    """The input path firewalld would build from the tree's configuration."""
    conf = host.read_optional("/etc/firewalld/firewalld.conf") or ""
    m = re.search(r"^\s*DefaultZone\s*=\s*(\S+)", conf, re.M)
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
        for iface in zone.findall("interface"):
            dispatch_ifaces.append(Rule((Match("iif", (iface.get("name", ""),)),), "goto", chain.name,
                                        f"interface {iface.get('name')} -> zone {name}"))
    rules = [Rule((Match("ct_state", ("established", "related")),), "accept", None, "ct state established,related"),
             Rule((Match("iif", ("lo",)),), "accept", None, "iif lo accept"),
             *dispatch_sources, *dispatch_ifaces,
             Rule((), "goto", f"zone_{default}", f"default zone {default}")]
    chains[("inet", TABLE, "input")] = Chain("inet", TABLE, "input", tuple(rules), "input", 10, "accept",
                                             source="firewalld")
    return Ruleset(chains, {}, ("/etc/firewalld",))
