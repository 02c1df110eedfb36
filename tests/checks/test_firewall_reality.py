"""Firewall prediction checked against reality.

Each case loads a real ruleset (nft, iptables-nft, iptables-legacy) into a server namespace made by the
test, starts listeners there, asks hostguard (running inside that namespace) who can reach each port, and
compares the answer with a real TCP connection from the client namespace and from the server's loopback.
Prediction and reality must agree on every port.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, need_tool
from tests.netns import CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6, Pair, netns_pair
from tests.ufw_helpers import write_ufw_config

OTHER = "(any other interface)"

CASES: dict[str, dict] = {
    "policy_drop_allow_list": {
        "nft": """
table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid drop
    iif lo accept
    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept
    tcp dport { 2222, 80 } accept
  }
}""",
        "ports": [2222, 80, 8080],
        "service_reachable": [], "port_reachable": [2222],
    },
    "source_restricted_database": {
        "nft": """
table inet filter {
  set dbclients { type ipv4_addr; flags interval; elements = { 198.51.100.0/28 } }
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iifname "lo" accept
    meta l4proto ipv6-icmp accept
    ip saddr @dbclients tcp dport 3306 accept
    ip saddr 192.0.2.0/24 tcp dport 5432 accept
    ip6 saddr 2001:db8:100::/64 tcp dport 6379 accept
  }
}""",
        "ports": [3306, 5432, 6379],
        "service_reachable": [], "port_reachable": [],
    },
    "policy_accept_with_drops": {
        "nft": """
table ip filter {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 11211 drop
    ip saddr 198.51.100.2 tcp dport 9200 reject with tcp reset
    tcp dport 27017 jump mongo
  }
  chain mongo {
    ip saddr 198.51.100.0/24 return
    drop
  }
}""",
        "ports": [11211, 9200, 27017, 8080],
        # 9200: everyone but one address; 11211 and 27017: an ip-family table leaves IPv6 unfiltered
        "service_reachable": [9200, 11211, 27017], "port_reachable": [8080],
    },
    "two_tables_on_input": {
        "nft": """
table inet open {
  chain input { type filter hook input priority 0; policy accept; }
}
table ip guard {
  chain input {
    type filter hook input priority 10; policy accept;
    tcp dport 6379 drop
  }
}
table ip raw {
  chain pre {
    type filter hook prerouting priority raw; policy accept;
    iifname != "lo" tcp dport 9200 drop
  }
}""",
        "ports": [6379, 3306, 9200],
        "service_reachable": [3306, 6379, 9200], "port_reachable": [],
    },
    "iptables_nft_conntrack_multiport": {
        "iptables": [
            "-P INPUT DROP",
            "-A INPUT -i lo -j ACCEPT",
            "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            "-A INPUT -p tcp -m multiport --dports 80,8080 -j ACCEPT",
            "-A INPUT -s 198.51.100.0/24 -p tcp -m tcp --dport 3306 -m state --state NEW -j ACCEPT",
            "-N SERVICES",
            "-A INPUT -j SERVICES",
            "-A SERVICES -p tcp --dport 5432 -j REJECT",
            "-A SERVICES -s 192.0.2.0/24 -p tcp --dport 6379 -j ACCEPT",
        ],
        "ports": [80, 8080, 3306, 5432, 6379, 2222],
        "service_reachable": [3306, 5432, 6379], "port_reachable": [2222, 8080],
    },
    "iptables_legacy_beside_nft": {
        "nft": """
table inet filter {
  chain input { type filter hook input priority 0; policy accept; }
}""",
        "legacy": ["-A INPUT -p tcp --dport 8081 -j DROP", "-A INPUT -p tcp ! -s 198.51.100.0/24 --dport 3306 -j DROP"],
        "ports": [8081, 3306, 80],
        "service_reachable": [3306], "port_reachable": [8081],
    },
    "ufw_front_end": {
        "ufw": ["-A ufw-user-input -p tcp --dport 2222 -j ACCEPT",
                "-A ufw-user-input -p tcp -s 198.51.100.0/24 --dport 3306 -j ACCEPT",
                "-A ufw-user-input -p tcp --dport 8080 -j DROP"],
        "ufw6": ["-A ufw-user-input -p tcp --dport 2222 -j ACCEPT",
                 "-A ufw-user-input -p tcp --dport 5432 -j ACCEPT"],
        "ports": [2222, 3306, 5432, 8080],
        "service_reachable": [5432], "port_reachable": [2222],
    },
}


def _load(pair: Pair, case: dict, tmp_path: Path) -> None:
    if "ufw" in case:
        data = tmp_path / "ufw-data"
        write_ufw_config(data / "etc", case["ufw"], case["ufw6"])
        r = pair.run(pair.server, ["/lib/ufw/ufw-init", "--datadir", str(data), "start"])
        assert r.returncode == 0, r.stderr
    if "nft" in case:
        r = pair.run(pair.server, ["nft", "-f", "-"], input=case["nft"])
        assert r.returncode == 0, r.stderr
    for line in case.get("iptables", []):
        r = pair.run(pair.server, ["iptables-nft", *line.split()])
        assert r.returncode == 0, (line, r.stderr)
    for line in case.get("legacy", []):
        r = pair.run(pair.server, ["iptables-legacy", *line.split()])
        assert r.returncode == 0, (line, r.stderr)


def _predicted(entry: dict[str, dict], iface: str, source: str) -> bool:
    answer = entry.get(iface) or entry[OTHER]
    assert answer["state"] != "unknown", answer
    if answer["state"] == "sources":
        import ipaddress

        return any(ipaddress.ip_address(source) in ipaddress.ip_network(n) for n in answer["sources"])
    return answer["state"] == "anyone"


def _scan(pair: Pair, tmp_path: Path) -> dict:
    r = pair.hostguard("--config", str(FIXTURES / "fast.toml"), "--state", str(tmp_path / "state"),
                       "scan", "--only", "firewall", "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    report = json.loads(r.stdout)
    assert report["skipped"] == [], report["skipped"]
    return report


@pytest.mark.parametrize("name", sorted(CASES))
def test_prediction_matches_real_connections(tmp_path: Path, name: str) -> None:
    need_tool("nft", "iptables-nft", "iptables-legacy")
    case = CASES[name]
    with netns_pair() as pair:
        _load(pair, case, tmp_path)
        pair.listen(*(f"tcp:[::]:{p}" for p in case["ports"]))
        report = _scan(pair, tmp_path)
        reach = {f["target"]["port"]: f["evidence"]["reach"] for f in report["findings"]
                 if f["id"] == "firewall.reachability"}
        assert sorted(reach) == sorted(case["ports"])
        for check in ("service_reachable", "port_reachable"):
            hits = sorted(f["target"]["port"] for f in report["findings"] if f["id"] == f"firewall.{check}")
            assert hits == case[check], check
        for port in case["ports"]:
            checks = [("IPv4", pair.server_if, CLIENT_V4, SERVER_V4, pair.client),
                      ("IPv6", pair.server_if, CLIENT_V6, SERVER_V6, pair.client),
                      ("IPv4", "lo", "127.0.0.1", "127.0.0.1", pair.server)]
            for version, iface, source, dest, ns in checks:
                predicted = _predicted(reach[port][version], iface, source)
                real = pair.connects(dest, port, ns=ns)
                assert predicted == real, f"{name}: port {port} {version} from {source}: predicted {predicted}, real {real}"


def test_dnat_published_port_follows_forward_chain(tmp_path: Path) -> None:
    need_tool("nft")
    ruleset = """
table ip nat {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    tcp dport 8080 dnat to 192.0.2.2:80
    tcp dport 8443 dnat to 192.0.2.2:443
  }
}
table inet filter {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
  }
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ip daddr 192.0.2.2 tcp dport 80 accept
    ip saddr 203.0.113.0/24 ip daddr 192.0.2.2 tcp dport 443 accept
  }
}"""
    with netns_pair() as pair:
        container = pair.add_container()
        pair.listen_in(container, "tcp:0.0.0.0:80", "tcp:0.0.0.0:443")
        r = pair.run(pair.server, ["nft", "-f", "-"], input=ruleset)
        assert r.returncode == 0, r.stderr
        report = _scan(pair, tmp_path)
        published = {f["target"]["port"]: f for f in report["findings"] if f["id"] == "firewall.reachability"}
        assert sorted(published) == [8080, 8443]  # no host listener: found through the DNAT rules
        for port in (8080, 8443):
            assert published[port]["evidence"]["dnat_to"] == f"192.0.2.2:{port - 8000}"
            predicted = _predicted(published[port]["evidence"]["reach"]["IPv4"], pair.server_if, CLIENT_V4)
            assert predicted == pair.connects(SERVER_V4, port), port
        assert [f["target"]["port"] for f in report["findings"] if f["id"] == "firewall.port_reachable"] == [8080]
