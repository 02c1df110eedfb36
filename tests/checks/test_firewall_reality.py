"""Firewall prediction checked against reality.

Each case loads a real ruleset (nft, iptables-nft, iptables-legacy) into a server namespace made by the
test, starts listeners there, asks hostguard (running inside that namespace) who can reach each port, and
compares the answer with a real TCP connection from the client namespace and from the server's loopback.
Prediction and reality must agree on every port.

A case may name ``via`` ports: a client connecting to port P lands on listener L (``{P: L}``) when a
REDIRECT (or a DNAT to loopback) says so; hostguard's answer for L must then say who gets through via P.
``{server_if}`` in a ruleset is the server's veth (an ingress chain needs a device that exists).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, need_tool
from tests.netns import CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6, Pair, connects_many, netns_pair
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
        # 8080: open only because nothing denies by default, so it is firewall.default_allow's, not its own finding
        "service_reachable": [9200, 11211, 27017], "port_reachable": [], "default_allow_open": [8080],
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
        # 2222: IPv6 is not filtered at all (default); 8080: a rule accepts it
        "service_reachable": [3306, 5432, 6379], "port_reachable": [8080], "default_allow_open": [2222],
    },
    "iptables_legacy_beside_nft": {
        "nft": """
table inet filter {
  chain input { type filter hook input priority 0; policy accept; }
}""",
        "legacy": ["-A INPUT -p tcp --dport 8081 -j DROP", "-A INPUT -p tcp ! -s 198.51.100.0/24 --dport 3306 -j DROP"],
        "ports": [8081, 3306, 80],
        "service_reachable": [3306], "port_reachable": [], "default_allow_open": [8081],
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
    # A REDIRECT feeds the listener on 22 from port 2222 (and the raw table closes 22 itself): "nobody"
    # on 22 would hide that anyone gets in via 2222. Near misses: udp 2323 is redirected, tcp 2323 is not;
    # nat prerouting never applies to this host's own connections (lo -> 2222 lands on nothing), while nat
    # output does (lo -> 8081 lands on 8443), but not for a destination other than loopback (9000).
    "nft_redirect_and_loopback_nat": {
        "nft": """
table inet raw {
  chain pre {
    type filter hook prerouting priority raw; policy accept;
    tcp dport 22 drop
  }
}
table inet nat {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    tcp dport 2222 redirect to :22
    udp dport 2323 redirect to :23
  }
  chain out {
    type nat hook output priority -100; policy accept;
    tcp dport 8081 redirect to :8443
    ip daddr 192.0.2.50 tcp dport 9000 redirect to :8443
  }
}""",
        "ports": [22, 23, 8443],
        "via": {2222: 22, 2323: 23, 8081: 8443, 9000: 8443},
        "answers": {(22, "IPv4", "veth"): {"state": "anyone", "by_port": {"22": {"state": "nobody"},
                                                                          "2222": {"state": "anyone"}}},
                    (22, "IPv6", "veth"): {"state": "anyone", "by_port": {"22": {"state": "nobody"},
                                                                          "2222": {"state": "anyone"}}},
                    (8443, "IPv4", "lo"): {"by_port": {"8443": {"state": "anyone"}, "8081": {"state": "anyone"}}}},
    },
    # The same with iptables-nft: REDIRECT in nat PREROUTING (near miss: only for 192.0.2.0/24), and an
    # OUTPUT chain with policy DROP that lets this host connect only to 8443 (`-o lo`).
    "iptables_redirect_and_output_oif": {
        "iptables": [
            "-t raw -A PREROUTING -p tcp --dport 22 -j DROP",
            "-t nat -A PREROUTING -p tcp --dport 2222 -j REDIRECT --to-ports 22",
            "-t nat -A PREROUTING -s 192.0.2.0/24 -p tcp --dport 2323 -j REDIRECT --to-ports 23",
            "-P OUTPUT DROP",
            "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            "-A OUTPUT -o lo -p tcp --dport 8443 -j ACCEPT",
        ],
        "ports": [22, 23, 8443],
        "via": {2222: 22, 2323: 23},
        "answers": {(22, "IPv4", "veth"): {"by_port": {"22": {"state": "nobody"}, "2222": {"state": "anyone"}}},
                    (23, "IPv4", "veth"): {"by_port": {"23": {"state": "anyone"},
                                                       "2323": {"state": "sources", "sources": ["192.0.2.0/24"]}}},
                    (23, "IPv4", "lo"): {"state": "nobody"}, (8443, "IPv4", "lo"): {"state": "anyone"}},
    },
    # Verdict maps everywhere, and netdev ingress chains: one on the server's veth drops the client's
    # address for 6379 (near miss: other sources), one on lo drops 5432 (near miss: remote clients).
    "nft_vmap_and_ingress": {
        "nft": """
table netdev edge {
  chain veth_in {
    type filter hook ingress device "{server_if}" priority 0; policy accept;
    ip saddr 198.51.100.2 tcp dport 6379 drop
    ip6 saddr 2001:db8:100::2 tcp dport 6379 drop
  }
  chain lo_in {
    type filter hook ingress device "lo" priority 0; policy accept;
    tcp dport 5432 drop
  }
}
table inet filter {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state vmap { established : accept, related : accept, invalid : drop }
    iifname vmap { "lo" : accept }
    meta l4proto vmap { udp : drop, tcp : jump tcp_in, ipv6-icmp : accept }
  }
  chain tcp_in {
    tcp dport vmap { 80 : accept, 8080 : drop, 3306 : jump db, 6379 : accept, 5432 : accept }
  }
  chain db {
    ip saddr vmap { 198.51.100.0/28 : accept }
    ip6 saddr vmap { 2001:db8:100::/64 : drop }
  }
}""",
        "ports": [22, 80, 8080, 3306, 6379, 5432],
        "answers": {(6379, "IPv4", "veth"): {"state": "sources"}, (6379, "IPv4", OTHER): {"state": "anyone"},
                    (5432, "IPv4", "lo"): {"state": "nobody"}, (5432, "IPv4", "veth"): {"state": "anyone"},
                    (3306, "IPv4", "veth"): {"state": "sources", "sources": ["198.51.100.0/28"]},
                    (3306, "IPv6", "veth"): {"state": "nobody"}, (22, "IPv4", "veth"): {"state": "nobody"}},
    },
    # ufw's own rules, written by the real ufw command: `ufw limit` is a rate-limited accept (reachable).
    "ufw_cli_limit": {
        "ufw_cli": ["limit 2222/tcp", "allow 80/tcp", "allow from 198.51.100.0/28 to any port 3306 proto tcp",
                    "deny 8080/tcp"],
        "ports": [2222, 80, 3306, 8080, 5432],
        "answers": {(2222, "IPv4", "veth"): {"state": "anyone", "rate_limited": True},
                    (2222, "IPv6", "veth"): {"state": "anyone", "rate_limited": True},
                    (80, "IPv4", "veth"): {"state": "anyone"},
                    (3306, "IPv4", "veth"): {"state": "sources", "sources": ["198.51.100.0/28"]},
                    (5432, "IPv6", "veth"): {"state": "nobody"}},
    },
    # Debian's stock /etc/nftables.conf (the package's conffile, unmodified): no filtering.
    "debian_nftables_conf": {
        "nft": lambda: _debian_conffile(),
        "ports": [22, 8080],
        "answers": {(8080, "IPv4", "veth"): {"state": "anyone"}, (8080, "IPv6", "veth"): {"state": "anyone"}},
    },
    # The nftables package's own examples: workstation.nft (only loopback and established) and the
    # netdev ingress example (a chain on lo).
    "debian_examples_workstation": {
        "nft": lambda: _example("workstation.nft") + _example("netdev-ingress.nft"),
        "ports": [22, 8080],
        "answers": {(22, "IPv4", "veth"): {"state": "nobody"}, (22, "IPv6", "veth"): {"state": "nobody"},
                    (22, "IPv4", "lo"): {"state": "anyone"}},
    },
}

EXAMPLES = Path("/usr/share/doc/nftables/examples")


def _example(name: str) -> str:
    """A ruleset from the installed nftables package's examples (read at test time, never copied here)."""
    path = EXAMPLES / name
    if not path.is_file():
        pytest.skip(reason=f"{path} is missing (the nftables package ships it)")
    return path.read_text() + "\n"


def _debian_conffile() -> str:
    """/etc/nftables.conf as the nftables package installed it (its md5 checked against dpkg's record)."""
    import hashlib
    import subprocess

    out = subprocess.run(["dpkg-query", "-W", "-f=${Conffiles}", "nftables"], capture_output=True, text=True)
    recorded = dict(line.split()[:2][::-1] for line in out.stdout.splitlines() if line.strip())
    text = Path("/etc/nftables.conf").read_bytes()
    want = {v: k for k, v in recorded.items()}.get("/etc/nftables.conf")
    assert want == hashlib.md5(text).hexdigest(), "/etc/nftables.conf differs from the package's conffile"
    return text.decode()


def _ufw_cli(pair: Pair, case: dict, tmp_path: Path) -> Path:
    """Rules written by the real ufw command (on a copy of its package templates), loaded by ufw-init."""
    data = tmp_path / "ufw-cli"
    write_ufw_config(data / "etc", [], [])
    shutil.copytree("/lib/ufw", data / "lib/ufw")
    (data / "etc/ufw/applications.d").mkdir(exist_ok=True)
    for d in (tmp_path, data):
        d.chmod(0o755)
    conf = data / "etc/ufw/ufw.conf"
    conf.write_text(conf.read_text().replace("ENABLED=yes", "ENABLED=no"))  # edit the files, load nothing
    for command in case["ufw_cli"]:
        r = pair.run(pair.server, ["ufw", f"--rootdir={data}", f"--datadir={data}", *command.split()])
        assert r.returncode == 0, (command, r.stderr)
    conf.write_text(conf.read_text().replace("ENABLED=no", "ENABLED=yes"))
    return data


def _load(pair: Pair, case: dict, tmp_path: Path) -> None:
    if "ufw" in case:
        data = tmp_path / "ufw-data"
        write_ufw_config(data / "etc", case["ufw"], case["ufw6"])
        r = pair.run(pair.server, ["/lib/ufw/ufw-init", "--datadir", str(data), "start"])
        assert r.returncode == 0, r.stderr
    if "ufw_cli" in case:
        data = _ufw_cli(pair, case, tmp_path)
        r = pair.run(pair.server, ["/lib/ufw/ufw-init", "--datadir", str(data), "start"])
        assert r.returncode == 0, r.stderr
    nft = case.get("nft")
    if callable(nft):
        nft = nft()
    if nft:
        r = pair.run(pair.server, ["nft", "-f", "-"], input=nft.replace("{server_if}", pair.server_if))
        assert r.returncode == 0, r.stderr
    for line in case.get("iptables", []):
        r = pair.run(pair.server, ["iptables-nft", *line.split()])
        assert r.returncode == 0, (line, r.stderr)
    for line in case.get("legacy", []):
        r = pair.run(pair.server, ["iptables-legacy", *line.split()])
        assert r.returncode == 0, (line, r.stderr)


def _predicted(entry: dict[str, dict], iface: str, source: str, listener: int | None = None,
               port: int | None = None) -> bool:
    """Whether hostguard says ``source`` reaches the listener (on ``listener``) by connecting to ``port``."""
    answer = entry.get(iface) or entry[OTHER]
    if "by_port" in answer:
        answer = answer["by_port"].get(str(port if port is not None else listener), {"state": "nobody"})
    elif port is not None and port != listener:
        return False  # nothing redirects that port to the listener
    assert answer["state"] != "unknown", answer
    if answer["state"] == "sources":
        return any(ipaddress.ip_address(source) in ipaddress.ip_network(n) for n in answer["sources"])
    return answer["state"] == "anyone"


def _scan(pair: Pair, tmp_path: Path) -> dict:
    r = pair.hostguard("--config", str(FIXTURES / "fast.toml"), "--state", str(tmp_path / "state"),
                       "scan", "--only", "firewall", "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    report = json.loads(r.stdout)
    assert report["skipped"] == [], report["skipped"]
    return report


def _reach(pair: Pair) -> dict[int, dict]:
    """hostguard's answer for every port of the server namespace (`hostguard firewall reach`: the evidence its
    findings carry, for every port)."""
    r = pair.hostguard("--config", str(FIXTURES / "fast.toml"), "firewall", "reach", "--format", "json")
    assert r.returncode == 0, r.stderr
    return {entry["port"]: entry for entry in json.loads(r.stdout)["ports"]}


def check_case(pair: Pair, case: dict, tmp_path: Path, name: str) -> dict[int, dict]:
    """Load, listen, scan, connect: every prediction must match a real connection. Returns the answers."""
    _load(pair, case, tmp_path)
    pair.listen(*(f"tcp:[::]:{p}" for p in case["ports"]))
    report = _scan(pair, tmp_path)
    reach = {port: entry["reach"] for port, entry in _reach(pair).items()}
    assert sorted(reach) == sorted(case["ports"])
    for check in ("service_reachable", "port_reachable", "default_allow_open"):
        if check in case:
            hits = sorted(f["target"]["port"] for f in report["findings"] if f["id"] == f"firewall.{check}") \
                if check != "default_allow_open" else \
                sorted(p["port"] for f in report["findings"] if f["id"] == "firewall.default_allow"
                       for p in f["evidence"]["open_now"])
            assert hits == case[check], check
    probes = [(p, p) for p in case["ports"]] + sorted(case.get("via", {}).items())
    clients = [("IPv4", pair.server_if, CLIENT_V4, SERVER_V4, pair.client),
               ("IPv6", pair.server_if, CLIENT_V6, SERVER_V6, pair.client),
               ("IPv4", "lo", "127.0.0.1", "127.0.0.1", pair.server)]
    for ns in (pair.client, pair.server):
        real = connects_many(pair, ns, [(dest, port) for _, _, _, dest, n in clients if n == ns for port, _ in probes])
        for version, iface, source, dest, n in clients:
            if n != ns:
                continue
            for port, listener in probes:
                predicted = _predicted(reach[listener][version], iface, source, listener, port)
                assert predicted == real[(dest, port)], (
                    f"{name}: port {port} (listener {listener}) {version} from {source}: predicted {predicted}, "
                    f"real {real[(dest, port)]}: {reach[listener][version]}")
    return reach


@pytest.mark.parametrize("name", sorted(CASES))
def test_prediction_matches_real_connections(tmp_path: Path, name: str) -> None:
    need_tool("nft", "iptables-nft", "iptables-legacy")
    with netns_pair() as pair:
        reach = check_case(pair, CASES[name], tmp_path, name)
        for (port, version, iface), want in CASES[name].get("answers", {}).items():
            entry = reach[port][version].get(iface.replace("veth", pair.server_if)) or reach[port][version][OTHER]
            assert {k: entry[k] for k in want} == want, (port, version, iface, entry)


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
        published = _reach(pair)
        assert sorted(published) == [8080, 8443]  # no host listener: found through the DNAT rules
        for port in (8080, 8443):
            assert published[port]["dnat_to"] == f"192.0.2.2:{port - 8000}"
            predicted = _predicted(published[port]["reach"]["IPv4"], pair.server_if, CLIENT_V4)
            assert predicted == pair.connects(SERVER_V4, port), port
        assert [f["target"]["port"] for f in report["findings"] if f["id"] == "firewall.port_reachable"] == [8080]


def test_a_port_behind_a_rule_hostguard_cannot_read_is_not_looked_at(tmp_path: Path) -> None:
    """8080 is accepted only for packets with a mark another tool sets: hostguard cannot say who that is, so
    the port is "not looked" (skipped, scan incomplete), never "nobody". Near miss: 8081, which that rule does
    not name, is "nobody" and skips nothing."""
    need_tool("nft")
    ruleset = """
table inet filter {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iif lo accept
    meta mark 0x10 tcp dport 8080 accept
  }
}"""
    with netns_pair() as pair:
        r = pair.run(pair.server, ["nft", "-f", "-"], input=ruleset)
        assert r.returncode == 0, r.stderr
        pair.listen("tcp:[::]:8080", "tcp:[::]:8081")
        r = pair.hostguard("--config", str(FIXTURES / "fast.toml"), "--state", str(tmp_path / "state"),
                           "scan", "--only", "firewall", "--format", "json")
        report = json.loads(r.stdout)
        assert report["complete"] is False and report["findings"] == []
        assert [(s["check"], s["reason"], s["detail"].split(":")[0]) for s in report["skipped"]] == [
            ("firewall.port_reachable", "unsupported",
             "who can reach 8080/tcp depends on rules hostguard cannot evaluate")]
        assert _reach(pair)[8081]["reach"]["IPv4"][OTHER]["state"] == "nobody"
        assert not pair.connects(SERVER_V4, 8081)
