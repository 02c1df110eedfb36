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
