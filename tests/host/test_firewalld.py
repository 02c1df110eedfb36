"""firewalld's zones of a tree as a ruleset: zone dispatch by source, then interface, then default."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostguard.host.base import RootHost, Unavailable
from hostguard.host.firewall import collect_static
from hostguard.netfilter.evaluate import Query, reachability

PUBLIC = """<?xml version="1.0" encoding="utf-8"?>
<zone>
  <short>public</short>
  <service name="web"/>
  <port protocol="tcp" port="8000-8010"/>
  <rule family="ipv4"><source address="198.51.100.0/24"/><port port="3306" protocol="tcp"/><accept/></rule>
  {extra}
</zone>
"""
INTERNAL = """<?xml version="1.0" encoding="utf-8"?>
<zone target="ACCEPT"><source address="192.0.2.0/24"/></zone>
"""
DMZ = """<?xml version="1.0" encoding="utf-8"?>
<zone target="DROP"><interface name="eth1"/><service name="web"/></zone>
"""
WEB = """<?xml version="1.0" encoding="utf-8"?>
<service><short>web</short><port protocol="tcp" port="80"/><port protocol="tcp" port="443"/></service>
"""


def _tree(tmp_path: Path, extra: str = "", default: str = "public") -> RootHost:
    files = {
        "etc/firewalld/firewalld.conf": f"DefaultZone={default}\n",
        "etc/firewalld/zones/public.xml": PUBLIC.format(extra=extra),
        "etc/firewalld/zones/internal.xml": INTERNAL,
        "usr/lib/firewalld/zones/dmz.xml": DMZ,
        "usr/lib/firewalld/services/web.xml": WEB,
        "etc/systemd/system/multi-user.target.wants/firewalld.service": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return RootHost(str(tmp_path))


def _answer(host: RootHost, port: int, iface: str = "eth0", version: int = 4):
    return reachability(collect_static(host).ruleset, Query(version, "tcp", port, iface))[0]


def test_zones_services_ports_and_rich_rules(tmp_path: Path) -> None:
    host = _tree(tmp_path)
    assert _answer(host, 443).state == "anyone"
    assert _answer(host, 8005).state == "anyone"
    assert _answer(host, 3306).reach.cidrs() == ["192.0.2.0/24", "198.51.100.0/24"]
    assert _answer(host, 9).reach.cidrs() == ["192.0.2.0/24"]   # only the trusted source zone
    assert _answer(host, 3306, version=6).state == "nobody"     # the rich rule is IPv4-only
    dmz = _answer(host, 8005, iface="eth1")                      # eth1 belongs to the dmz zone (target DROP)
    assert dmz.reach.cidrs() == ["192.0.2.0/24"]
    assert _answer(host, 443, iface="eth1").state == "anyone"


def test_unsupported_rich_rule_makes_the_answer_unknown(tmp_path: Path) -> None:
    host = _tree(tmp_path, extra='<rule><forward-port port="22" protocol="tcp" to-port="2222"/></rule>')
    answer = _answer(host, 9)
    assert answer.state == "unknown" and "forward-port" in answer.unknown[0]


def test_accepting_default_zone_is_default_allow(tmp_path: Path) -> None:
    host = _tree(tmp_path, default="internal")
    (tmp_path / "etc/firewalld/zones/internal.xml").write_text('<zone target="ACCEPT"/>')
    assert _answer(host, 9).state == "anyone"


def test_missing_service_definition_is_an_error_not_a_guess(tmp_path: Path) -> None:
    host = _tree(tmp_path, extra='<service name="nosuch"/>')
    with pytest.raises(Unavailable, match="service 'nosuch' is not defined"):
        collect_static(host)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_included_services_open_their_ports_and_cycles_end(tmp_path: Path) -> None:
    """A service's <include> opens the included service's ports too (firewalld builds each one); a service
    including itself back is read once."""
    host = _tree(tmp_path, extra='<service name="bundle"/>')
    _write(tmp_path, {
        "etc/firewalld/services/bundle.xml": '<service><port protocol="tcp" port="7000"/><include service="inner"/>'
                                             "</service>",
        "usr/lib/firewalld/services/inner.xml": '<service><port protocol="tcp" port="7001"/>'
                                                '<include service="bundle"/></service>'})
    assert _answer(host, 7000).state == "anyone"
    assert _answer(host, 7001).state == "anyone"
    assert _answer(host, 7002).reach.cidrs() == ["192.0.2.0/24"]   # near miss: no service names it


def test_service_destination_limits_versions_and_addresses(tmp_path: Path) -> None:
    """<destination ipv6="fe80::/64"/> (as in DHCPv6 client services): no IPv4 rule at all, and over IPv6 only
    connections to a link-local address get in; a destination-less service is open to both."""
    host = _tree(tmp_path, extra='<service name="v6only"/>')
    _write(tmp_path, {"usr/lib/firewalld/services/v6only.xml":
                      '<service><port protocol="udp" port="546"/><destination ipv6="fe80::/64"/></service>'})
    ruleset = collect_static(host).ruleset

    def state(version: int, daddr: str | None) -> str:
        return reachability(ruleset, Query(version, "udp", 546, "eth0", daddr))[0].state

    assert state(6, "fe80::1") == "anyone"
    assert state(6, "2001:db8::1") == "nobody"
    assert reachability(ruleset, Query(4, "udp", 546, "eth0"))[0].reach.cidrs() == ["192.0.2.0/24"]  # source zone only
    assert state(6, None) == "unknown"   # a wildcard listener: which address is asked cannot be known


def test_zone_protocol_source_port_and_forward_port(tmp_path: Path) -> None:
    """A zone's <protocol> accepts the whole protocol; <source-port> and <forward-port> cannot be told from
    addresses, so the answer for that protocol is unknown with the element quoted; other protocols are not
    touched by them (near miss)."""
    host = _tree(tmp_path, extra='<protocol value="sctp"/><source-port port="5355" protocol="udp"/>')
    assert _answer_proto(host, "sctp", 9).state == "anyone"
    unknown = _answer_proto(host, "udp", 9)
    assert unknown.state == "unknown" and "source-port 5355/udp" in unknown.unknown[0]
    assert _answer(host, 9).reach.cidrs() == ["192.0.2.0/24"]
    host = _tree(tmp_path, extra='<forward-port port="80" protocol="tcp" to-port="8080"/>')
    forward = _answer(host, 8080)
    assert forward.state == "unknown" and "forward-port" in forward.unknown[0]
    assert _answer_proto(host, "udp", 8080).reach.cidrs() == ["192.0.2.0/24"]


def _answer_proto(host: RootHost, proto: str, port: int):
    return reachability(collect_static(host).ruleset, Query(4, proto, port, "eth0"))[0]


def test_rich_rules_follow_firewalld_order(tmp_path: Path) -> None:
    """firewalld runs drop/reject rich rules before accepting ones and the zone's ports, and rich rules of
    positive priority after them: a reject written after an accept still wins; one of priority 10 does not."""
    rules = ('<rule><source address="198.51.100.0/24"/><port port="8005" protocol="tcp"/><accept/></rule>'
             '<rule><source address="198.51.100.7"/><port port="8005" protocol="tcp"/><reject/></rule>'
             '<rule priority="10"><source address="198.51.100.9"/><port port="8006" protocol="tcp"/><drop/></rule>')
    host = _tree(tmp_path, extra=rules)
    reach = _answer(host, 8005).reach
    assert not reach.contains("198.51.100.7") and reach.contains("198.51.100.8") and reach.contains("203.0.113.1")
    assert _answer(host, 8006).state == "anyone"   # priority 10 comes after the zone's 8000-8010 port entry


def test_rich_rule_for_icmp_does_not_touch_tcp(tmp_path: Path) -> None:
    host = _tree(tmp_path, extra='<rule family="ipv6"><icmp-type name="echo-request"/><accept/></rule>')
    assert _answer(host, 443, version=6).state == "anyone"
    assert _answer(host, 9, version=6).state == "nobody"


def test_source_by_ipset_makes_the_answer_unknown(tmp_path: Path) -> None:
    host = _tree(tmp_path)
    (tmp_path / "etc/firewalld/zones/internal.xml").write_text('<zone target="ACCEPT"><source ipset="admins"/></zone>')
    answer = _answer(host, 9)
    assert answer.state == "unknown" and "ipset admins" in answer.unknown[0]


def test_policies_towards_the_host(tmp_path: Path) -> None:
    """firewalld's stock allow-host-ipv6 policy (ICMPv6 only, target CONTINUE) changes nothing for TCP; a policy
    that accepts a port towards the host is not evaluated, so answers become unknown rather than wrong."""
    host = _tree(tmp_path)
    _write(tmp_path, {"usr/lib/firewalld/policies/icmp.xml":
                      '<policy target="CONTINUE" priority="-15000"><ingress-zone name="ANY"/><egress-zone name="HOST"/>'
                      '<rule family="ipv6"><icmp-type name="neighbour-solicitation"/><accept/></rule></policy>',
                      "etc/firewalld/policies/out.xml":
                      '<policy target="ACCEPT"><ingress-zone name="HOST"/><egress-zone name="ANY"/></policy>'})
    assert _answer(host, 9).reach.cidrs() == ["192.0.2.0/24"]
    _write(tmp_path, {"etc/firewalld/policies/in.xml":
                      '<policy target="CONTINUE"><ingress-zone name="public"/><egress-zone name="HOST"/>'
                      '<port port="9" protocol="tcp"/></policy>'})
    answer = _answer(host, 9)
    assert answer.state == "unknown" and "policy in" in answer.unknown[0]
