"""Per-port fixes (firewall.service_reachable, firewall.port_reachable) run for real: the ruleset is loaded
into a server namespace, hostguard scans it there, each command step runs in that namespace, and real
connections show the port closed over IPv4 and IPv6 while the SSH port and loopback stay open."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hostguard.engine.facts import Facts
from hostguard.host.base import RootHost
from hostguard.host.firewall import FIREWALL
from hostguard.netfilter.evaluate import Query, reachability
from hostguard.netfilter.fixes import drop_port
from hostguard.netfilter.reach import OTHER
from hostguard.remediation import Command, Edit, Remediation
from hostguard.respond.apply import apply
from tests.conftest import HOSTS, build_tree, make_config, need_tool
from tests.netns import SERVER_V4, SERVER_V6, netns_pair
from tests.ufw_helpers import write_ufw_config

FIXES = HOSTS / "fixes" / "firewall"
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


def _ufw_tree(tmp_path: Path, input_policy: str) -> tuple[Path, Path, list[str]]:
    """A ufw configuration from the installed package's templates (no user rule yet), hostguard's config with
    SSH on 2222, and the ufw command line that works on that copy (--rootdir/--datadir)."""
    need_tool("ufw", "iptables-nft")
    tree = tmp_path / "ufw"
    write_ufw_config(tree / "etc", [], [], input_policy=input_policy)
    (tree / "etc/ufw/applications.d").mkdir()
    shutil.copytree("/lib/ufw", tree / "lib/ufw")
    for path in (tmp_path, tree):
        path.chmod(0o755)  # ufw refuses a config directory others can write
    sshd = tmp_path / "sshd_config"
    sshd.write_text("Port 2222\n")
    cfg = tmp_path / "hostguard.toml"
    cfg.write_text(f'[ssh]\nconfig_file = "{sshd}"\n[weak_passwords]\nbudget_seconds = 0\nfloor = 20\n')
    return tree, cfg, ["ufw", f"--rootdir={tree}", f"--datadir={tree}"]


def test_ufw_drop_port_run_by_ufw_closes_it_and_keeps_ssh(tmp_path: Path) -> None:
    """ufw's per-port fix, run by the real ufw: the ufw ruleset is loaded into a server namespace by ufw-init,
    hostguard scans it there, the printed `ufw deny` runs through ufw (on a copy of the config in
    that namespace: --rootdir/--datadir), and real connections show the port closed over IPv4 and IPv6 while
    SSH and loopback stay open; the undo re-opens it."""
    tree, cfg, ufw = _ufw_tree(tmp_path, "DROP")
    with netns_pair() as pair:
        r = pair.run(pair.server, ["/lib/ufw/ufw-init", "--datadir", str(tree), "start"])
        assert r.returncode == 0, r.stderr
        for port in ("2222/tcp", "3306/tcp"):  # the owner's rules, made by ufw itself
            r = pair.run(pair.server, [*ufw, "allow", port])
            assert r.returncode == 0, r.stderr
        pair.listen("tcp:[::]:3306", "tcp:[::]:2222")
        before = {(a, p): pair.connects(a, p) for a in (SERVER_V4, SERVER_V6) for p in (3306, 2222)}
        assert set(before.values()) == {True}
        scan = pair.hostguard("--config", str(cfg), "--state", str(tmp_path / "s"), "scan", "--only", "firewall",
                              "--format", "json")
        report = json.loads(scan.stdout)
        [finding] = [f for f in report["findings"] if f["id"] == "firewall.service_reachable"]
        steps = finding["remediation"]["steps"]
        assert [(s["argv"], s["undo"]) for s in steps] == [(["ufw", "deny", "3306/tcp"], ["ufw", "allow", "3306/tcp"])]
        assert "ufw prepend allow from TRUSTED_NET to any port 3306 proto tcp" in finding["remediation"]["manual"]
        for step in steps:
            r = pair.run(pair.server, [*ufw, *step["argv"][1:]])
            assert r.returncode == 0, (step, r.stdout, r.stderr)
        assert {(a, p): pair.connects(a, p) for a in (SERVER_V4, SERVER_V6) for p in (3306, 2222)} == {
            (SERVER_V4, 3306): False, (SERVER_V4, 2222): True, (SERVER_V6, 3306): False, (SERVER_V6, 2222): True}
        assert pair.connects("127.0.0.1", 3306, ns=pair.server)
        rescan = json.loads(pair.hostguard("--config", str(cfg), "--state", str(tmp_path / "s"), "scan", "--only",
                                           "firewall", "--format", "json").stdout)
        assert [f for f in rescan["findings"] if f["id"] == "firewall.service_reachable"] == []
        # the rule is saved in ufw's own files, so it survives ufw's next start (a reboot)
        assert "--dport 3306 -j DROP" in (tree / "etc/ufw/user.rules").read_text().replace("-m tcp ", "")
        assert "--dport 3306 -j DROP" in (tree / "etc/ufw/user6.rules").read_text().replace("-m tcp ", "")
        for step in steps:
            r = pair.run(pair.server, [*ufw, *step["undo"][1:]])
            assert r.returncode == 0, (step, r.stdout, r.stderr)
        assert pair.connects(SERVER_V4, 3306) and pair.connects(SERVER_V6, 3306)


def test_ufw_default_allow_drop_port_is_prepended_and_closes_it(tmp_path: Path) -> None:
    """Where no ufw rule names the port (ufw's default incoming policy lets it in), the fix is `ufw prepend
    deny`, which works on an empty rule list (`insert 1` would fail) and lands above any broader allow."""
    tree, cfg, ufw = _ufw_tree(tmp_path, "ACCEPT")
    with netns_pair() as pair:
        r = pair.run(pair.server, ["/lib/ufw/ufw-init", "--datadir", str(tree), "start"])
        assert r.returncode == 0, r.stderr
        r = pair.run(pair.server, [*ufw, "allow", "3000:4000/tcp"])  # a broader rule the deny must precede
        assert r.returncode == 0, r.stderr
        pair.listen("tcp:[::]:3306", "tcp:[::]:2222")
        report = json.loads(pair.hostguard("--config", str(cfg), "--state", str(tmp_path / "s"), "scan", "--only",
                                           "firewall", "--format", "json").stdout)
        [finding] = [f for f in report["findings"] if f["id"] == "firewall.service_reachable"]
        steps = finding["remediation"]["steps"]
        assert [s["argv"] for s in steps] == [["ufw", "prepend", "deny", "3306/tcp"]]
        for step in steps:
            r = pair.run(pair.server, [*ufw, *step["argv"][1:]])
            assert r.returncode == 0, (step, r.stdout, r.stderr)
        assert {(a, p): pair.connects(a, p) for a in (SERVER_V4, SERVER_V6) for p in (3306, 2222)} == {
            (SERVER_V4, 3306): False, (SERVER_V4, 2222): True, (SERVER_V6, 3306): False, (SERVER_V6, 2222): True}


def _drop_3306(tree: Path) -> Remediation:
    """The per-port fix for 3306/tcp as the firewall checks build it, from the tree's boot-time ruleset."""
    facts = Facts(RootHost(str(tree)), make_config()).get(FIREWALL)
    deciders = {v: reachability(facts.ruleset, Query(v, "tcp", 3306, OTHER))[0].deciders for v in (4, 6)}
    return drop_port(facts.ruleset, "tcp", 3306, deciders, (2222,), dict(facts.files))


def test_nftables_conf_edit_closes_the_port_at_boot(tmp_path: Path) -> None:
    """The per-port edit of /etc/nftables.conf (what makes the drop survive a reboot), applied to a tree and
    loaded by the real nft into a server namespace: 3306 closed over IPv4 and IPv6, SSH and loopback open;
    the tree re-read by hostguard answers "nobody" for 3306."""
    need_tool("nft")
    tree = build_tree(tmp_path / "host", FIXES / "nft_accept")
    fix = _drop_3306(tree)
    conf = "/etc/nftables.conf"
    assert fix.steps[0] == Edit(conf, 7, "\t\ttype filter hook input priority filter;",
                                '\t\ttype filter hook input priority filter;\n\t\tiifname != "lo" tcp dport 3306 drop')
    assert all(isinstance(s, Command) for s in fix.steps[1:]) and fix.placeholders() == []
    apply(fix.steps[:1], str(tree))
    ruleset = Facts(RootHost(str(tree)), make_config()).get(FIREWALL).ruleset
    assert {v: reachability(ruleset, Query(v, "tcp", 3306, OTHER))[0].state for v in (4, 6)} == {4: "nobody",
                                                                                                   6: "nobody"}
    with netns_pair() as pair:
        r = pair.run(pair.server, ["nft", "-f", str(tree / "etc/nftables.conf")])
        assert r.returncode == 0, r.stderr
        pair.listen("tcp:[::]:3306", "tcp:[::]:2222")
        assert {(a, p): pair.connects(a, p) for a in (SERVER_V4, SERVER_V6) for p in (3306, 2222)} == {
            (SERVER_V4, 3306): False, (SERVER_V4, 2222): True, (SERVER_V6, 3306): False, (SERVER_V6, 2222): True}
        assert pair.connects("127.0.0.1", 3306, ns=pair.server)


def test_a_chain_written_on_one_line_is_not_edited(tmp_path: Path) -> None:
    """Near miss: where the chain's hook line cannot be edited on its own line, no Edit is guessed; the
    owner is told to add the rule to the file so it survives a reboot."""
    tree = build_tree(tmp_path / "host", FIXES / "nft_accept")
    (tree / "etc/nftables.conf").write_text("table inet filter {\n chain input { type filter hook input priority 0; "
                                            "policy accept; }\n}\n")
    fix = _drop_3306(tree)
    assert all(isinstance(s, Command) for s in fix.steps)
    assert "in the file that defines table inet filter so it survives a reboot" in (fix.manual or "")
