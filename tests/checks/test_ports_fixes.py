"""Per-port fixes (firewall.service_reachable, firewall.port_reachable) run for real: the ruleset is loaded
into a server namespace, hostguard scans it there, each command step runs in that namespace, and real
connections show the port closed over IPv4 and IPv6 while the SSH port and loopback stay open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.netns import SERVER_V4, SERVER_V6, netns_pair

CASES = {
    "nft_inet": (["nft", "-f", "-"], "table inet filter {\n chain input { type filter hook input priority 0; "
                                      "policy accept; }\n}\n",
                 [["nft", "insert", "rule", "inet", "filter", "input", "iifname", "!=", "lo", "tcp", "dport", "3306",
                   "drop"]]),
    "iptables_legacy": (["sh", "-c", "iptables-legacy -A INPUT -p tcp --dport 2222 -j ACCEPT && "
                         "ip6tables-legacy -A INPUT -p tcp --dport 2222 -j ACCEPT"], "",
                        [["iptables-legacy", "-t", "filter", "-I", "INPUT", "!", "-i", "lo", "-p", "tcp", "-m", "tcp",
                          "--dport", "3306", "-j", "DROP"],
                         ["ip6tables-legacy", "-t", "filter", "-I", "INPUT", "!", "-i", "lo", "-p", "tcp", "-m", "tcp",
                          "--dport", "3306", "-j", "DROP"]]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_drop_port_closes_it_for_both_versions_and_keeps_ssh(tmp_path: Path, name: str) -> None:
    need_tool("nft", "iptables-legacy")
    load, text, expected = CASES[name]
    sshd = tmp_path / "sshd_config"
    sshd.write_text("Port 2222\n")
    cfg = tmp_path / "hostguard.toml"
    cfg.write_text(f'[ssh]\nconfig_file = "{sshd}"\n[weak_passwords]\nbudget_seconds = 0\nfloor = 20\n')
    with netns_pair() as pair:
        r = pair.run(pair.server, load, input=text)
        assert r.returncode == 0, r.stderr
        pair.listen("tcp:[::]:3306", "tcp:[::]:2222")
        scan = pair.hostguard("--config", str(cfg), "--state", str(tmp_path / "s"), "scan", "--only", "firewall",
                              "--format", "json")
        report = json.loads(scan.stdout)
        [finding] = [f for f in report["findings"] if f["id"] == "firewall.service_reachable"]
        # an edit of this machine's own /etc/nftables.conf (when it defines the chain) is never applied here
        assert {s["path"] for s in finding["remediation"]["steps"] if s["kind"] != "command"} <= {"/etc/nftables.conf"}
        steps = [s for s in finding["remediation"]["steps"] if s["kind"] == "command"]
        assert [s["argv"] for s in steps] == expected
        assert finding["remediation"]["params"] == [{"name": "TRUSTED_NET", "meaning": "the network allowed to "
                                                     "reach the port", "example": "198.51.100.0/24"}]
        for step in steps:
            r = pair.run(pair.server, step["argv"])
            assert r.returncode == 0, r.stderr
        assert {(a, p): pair.connects(a, p) for a in (SERVER_V4, SERVER_V6) for p in (3306, 2222)} == {
            (SERVER_V4, 3306): False, (SERVER_V4, 2222): True, (SERVER_V6, 3306): False, (SERVER_V6, 2222): True}
        assert pair.connects("127.0.0.1", 3306, ns=pair.server)
