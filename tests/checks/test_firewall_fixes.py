"""firewall.default_allow's fix, checked by the real tools: the nft file by `nft -c` in a private user and
network namespace and by real connections in a namespace pair (SSH, an allowed port and established
connections stay open, IPv6 neighbour discovery still works, other ports close); file steps applied to
fixture trees and re-scanned; each front end's exact steps."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostguard.engine.facts import Facts
from hostguard.host.base import RootHost
from hostguard.host.firewall import FIREWALL
from hostguard.host.netns import private_netns
from hostguard.netfilter.evaluate import Query, reachability
from hostguard.netfilter.fixes import KeepOpen, nft_default_deny
from hostguard.netfilter.reach import OTHER
from hostguard.remediation import Command, Edit, Write
from hostguard.respond.apply import apply
from tests.conftest import HITS, HOSTS, build_tree, make_config, need_root, need_tool, run_one
from tests.netns import CLIENT_V4, SERVER_V4, SERVER_V6, netns_pair
from tests.ufw_helpers import write_ufw_config

FIXES = HOSTS / "fixes" / "firewall"
KEEP = KeepOpen((2222,), (80,), (), True)
NFT_TEXT = """\
# Written by hostguard (firewall.default_allow): drop incoming connections nothing below accepts.
# Declared, deleted and defined again, so loading this file twice is harmless; other tables
# (Docker's, fail2ban's) are left alone: never `flush ruleset`.
table inet hostguard {}
delete table inet hostguard
table inet hostguard {
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tiif "lo" accept
\t\tct state established,related accept
\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, echo-request } accept
\t\tip6 saddr fe80::/10 udp dport 546 accept
\t\ttcp dport { 80, 2222 } accept
\t}
}
"""
TREE_KEEP_FILE = NFT_TEXT.replace("{ 80, 2222 }", "{ 80, 443, 2222 }")


def _default_allow(tree: Path) -> list:
    found, skipped = run_one("firewall.default_allow", RootHost(str(tree)))
    assert skipped == []
    return found


def test_nft_file_is_exact_and_nft_checks_it(tmp_path: Path) -> None:
    need_tool("nft", "unshare")
    assert nft_default_deny(KEEP) == NFT_TEXT
    path = tmp_path / "hostguard.nft"
    path.write_text(NFT_TEXT)
    check = subprocess.run(["unshare", "-rn", "nft", "-c", "-f", str(path)], capture_output=True, text=True)
    assert (check.returncode, check.stderr) == (0, "")
    twice = subprocess.run(["unshare", "-rn", "sh", "-c", 'nft -f "$1" && nft -f "$1" && nft list tables', "-",
                            str(path)], capture_output=True, text=True)
    assert (twice.returncode, twice.stdout) == (0, "table inet hostguard\n"), twice.stderr


ECHO_CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print("connected", flush=True)
sys.stdin.readline()
s.sendall(b"ping")
print(s.recv(4).decode(), flush=True)
"""
ECHO_SERVER = """
import socket
srv = socket.create_server(("0.0.0.0", 9000))
while True:
    c, _ = srv.accept()
    c.sendall(c.recv(4))
"""


def test_default_deny_in_a_namespace_keeps_ssh_allowed_established_and_ipv6(tmp_path: Path) -> None:
    need_tool("nft")
    path = tmp_path / "hostguard.nft"
    path.write_text(NFT_TEXT)
    with netns_pair() as pair:
        # conntrack is in use before the fix (as on any host with Docker or a stateful rule): connections
        # made before it was loaded are tracked and stay established
        other = "table inet filter {\n chain input { type filter hook input priority 0; policy accept; " \
                "ct state established accept; }\n}\n" \
                "table ip f2b-table {\n chain f2b-chain { type filter hook input priority -1; policy accept; }\n}\n"
        assert pair.run(pair.server, ["nft", "-f", "-"], input=other).returncode == 0
        pair.listen("tcp:[::]:2222", "tcp:[::]:80", "tcp:[::]:8080")
        pair.spawn(pair.server, [sys.executable, "-c", ECHO_SERVER])
        client = None
        for _ in range(50):
            client = subprocess.Popen(["ip", "netns", "exec", pair.client, sys.executable, "-c", ECHO_CLIENT,
                                       SERVER_V4, "9000"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert client.stdout is not None
            if client.stdout.readline().strip() == "connected":
                break
            client.wait()
            time.sleep(0.1)
        assert client is not None and client.stdin is not None and client.stdout is not None
        for _ in range(2):  # idempotent: loading twice is the same as once
            r = pair.run(pair.server, ["nft", "-f", str(path)])
            assert r.returncode == 0, r.stderr
        for ns in (pair.server, pair.client):  # IPv6 must find its neighbour again, through the new ruleset
            pair.run(ns, ["ip", "neigh", "flush", "all"])
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "ping"  # the established connection survived
        client.wait(timeout=5)
        reality = {(addr, port): pair.connects(addr, port) for addr in (SERVER_V4, SERVER_V6)
                   for port in (2222, 80, 8080, 9000)}
        assert reality == {(SERVER_V4, 2222): True, (SERVER_V4, 80): True, (SERVER_V4, 8080): False,
                           (SERVER_V4, 9000): False, (SERVER_V6, 2222): True, (SERVER_V6, 80): True,
                           (SERVER_V6, 8080): False, (SERVER_V6, 9000): False}
        assert pair.connects("127.0.0.1", 8080, ns=pair.server)  # loopback stays open
        tables = pair.run(pair.server, ["nft", "list", "tables"]).stdout.split("\n")
        assert [t for t in tables if t] == ["table inet filter", "table ip f2b-table", "table inet hostguard"]
        neigh = pair.run(pair.client, ["ip", "-6", "neigh", "show", SERVER_V6]).stdout
        assert "REACHABLE" in neigh or "STALE" in neigh or "DELAY" in neigh, neigh
        assert CLIENT_V4  # the client's address is the one the pair gave it


@pytest.mark.parametrize("overlay", ["nft_accept", "no_conf"])
def test_nft_front_end_steps_applied_to_the_tree_close_it(tmp_path: Path, overlay: str) -> None:
    need_root("loading nftables.conf into a private namespace")
    need_tool("nft")
    tree = tmp_path / "host"
    if overlay == "no_conf":
        build_tree(tree)
        (tree / "etc/nftables.conf").unlink()
    else:
        build_tree(tree, FIXES / overlay)
    [finding] = _default_allow(tree)
    rem = finding.remediation
    conf_step = (Write("/etc/nftables.conf", '#!/usr/sbin/nft -f\ninclude "/etc/nftables.d/hostguard.nft"\n', "0755")
                 if overlay == "no_conf" else
                 Edit("/etc/nftables.conf", 15, "}", '}\ninclude "/etc/nftables.d/hostguard.nft"'))
    assert rem.steps == (Write("/etc/nftables.d/hostguard.nft", TREE_KEEP_FILE, "0644"), conf_step,
                         Command(("systemctl", "enable", "nftables")),
                         Command(("nft", "-f", "/etc/nftables.d/hostguard.nft"),
                                 undo=("nft", "delete", "table", "inet", "hostguard"), reversible=True))
    assert rem.manual is None and rem.placeholders() == []
    assert "Under --root the open ports come from the config and the sshd files" in rem.summary
    apply(rem.steps, str(tree))
    assert _default_allow(tree) == []
    check = subprocess.run(["unshare", "-rn", "nft", "-c", "-f", str(tree / "etc/nftables.d/hostguard.nft")],
                           capture_output=True, text=True)
    assert (check.returncode, check.stderr) == (0, "")


def test_unknown_ssh_port_gives_no_steps(tmp_path: Path) -> None:
    need_root("loading nftables.conf into a private namespace")
    tree = build_tree(tmp_path / "host", FIXES / "no_sshd")
    [finding] = _default_allow(tree)
    assert finding.remediation.steps == ()
    assert finding.remediation.manual is not None
    assert finding.remediation.manual.startswith("The SSH port cannot be known here (sshd's configuration could not")


def test_ufw_front_end_allows_ssh_before_deny(tmp_path: Path) -> None:
    need_root("ufw-init in a private namespace")
    tree = build_tree(tmp_path / "host", FIXES / "ufw")
    write_ufw_config(tree / "etc", [], [], input_policy="ACCEPT")
    [finding] = _default_allow(tree)
    assert finding.remediation.steps == (
        Command(("ufw", "allow", "80/tcp")), Command(("ufw", "allow", "443/tcp")),
        Command(("ufw", "allow", "2222/tcp")),
        Command(("ufw", "default", "deny", "incoming"), undo=("ufw", "default", "allow", "incoming"), reversible=True))


def test_firewalld_front_end_commands(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", FIXES / "firewalld")
    [finding] = _default_allow(tree)
    z = "--zone=trusted"
    assert finding.remediation.steps == (
        Command(("firewall-cmd", "--permanent", z, "--add-port=80/tcp")),
        Command(("firewall-cmd", "--permanent", z, "--add-port=443/tcp")),
        Command(("firewall-cmd", "--permanent", z, "--add-port=2222/tcp")),
        Command(("firewall-cmd", "--permanent", z, "--add-service=dhcpv6-client")),
        Command(("firewall-cmd", "--permanent", z, "--set-target=default")),
        Command(("firewall-cmd", "--reload")))


def test_saved_rules_fix_loads_and_keeps_ssh_open(tmp_path: Path) -> None:
    need_tool("ip6tables-restore")
    tree = build_tree(tmp_path / "host", HITS / "firewall.default_allow")
    [finding] = _default_allow(tree)
    steps = finding.remediation.steps
    assert steps[0] == Edit("/etc/iptables/rules.v6", 2, ":INPUT ACCEPT [0:0]", ":INPUT DROP [0:0]")
    assert steps[2] == Command(("netfilter-persistent", "reload"))
    assert isinstance(steps[1], Edit) and steps[1].new.splitlines()[-4:] == [
        "-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT", "-A INPUT -p tcp -m tcp --dport 443 -j ACCEPT",
        "-A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT", "-A INPUT -p tcp --dport 3306 -j DROP"]
    apply(steps, str(tree))
    assert _default_allow(tree) == []
    with netns_pair() as pair:
        for tool, name in (("iptables-restore", "rules.v4"), ("ip6tables-restore", "rules.v6")):
            r = pair.run(pair.server, [tool, str(tree / "etc/iptables" / name)])
            assert r.returncode == 0, r.stderr
        pair.listen("tcp:[::]:2222", "tcp:[::]:8080")
        for ns in (pair.server, pair.client):
            pair.run(ns, ["ip", "neigh", "flush", "all"])
        assert {(a, p): pair.connects(a, p) for a in (SERVER_V4, SERVER_V6) for p in (2222, 8080)} == {
            (SERVER_V4, 2222): True, (SERVER_V4, 8080): False, (SERVER_V6, 2222): True, (SERVER_V6, 8080): False}


def test_ufw_commands_run_by_ufw_itself_close_the_tree_and_keep_ssh(tmp_path: Path) -> None:
    """The ufw steps, run by the real ufw on a copy of the tree (--rootdir/--datadir, inside a throwaway network
    namespace so nothing reaches this machine's firewall), then the tree re-scanned: ufw's own ufw-init loads
    the result; the default is deny, and the SSH port and the allowed ports are still open to anyone."""
    need_root("ufw in a private namespace")
    need_tool("ufw")
    tree = build_tree(tmp_path / "host", FIXES / "ufw")
    tree.chmod(0o755)
    tmp_path.chmod(0o755)
    write_ufw_config(tree / "etc", [], [], input_policy="ACCEPT")
    [finding] = _default_allow(tree)
    (tree / "etc/ufw/applications.d").mkdir(exist_ok=True)
    shutil.copytree("/lib/ufw", tree / "lib/ufw")  # ufw wants its ufw-init under --datadir
    conf = tree / "etc/ufw/ufw.conf"
    conf.write_text(conf.read_text().replace("ENABLED=yes", "ENABLED=no"))  # edit the files, load nothing
    with private_netns("hgufwfix", "running ufw on a tree copy") as ns:
        for step in finding.remediation.steps:
            assert isinstance(step, Command) and step.argv[0] == "ufw"
            argv = ["ufw", f"--rootdir={tree}", f"--datadir={tree}", *step.argv[1:]]
            result = ns.run(argv)
            assert result.returncode == 0, (argv, result.stderr)
    conf.write_text(conf.read_text().replace("ENABLED=no", "ENABLED=yes"))
    assert _default_allow(tree) == []
    ruleset = Facts(RootHost(str(tree)), make_config()).get(FIREWALL).ruleset
    for version in (4, 6):
        for port, state in ((2222, "anyone"), (80, "anyone"), (443, "anyone"), (8080, "nobody")):
            assert reachability(ruleset, Query(version, "tcp", port, OTHER))[0].state == state, (version, port)


def test_default_deny_keeps_the_port_of_ssh_socket(tmp_path: Path) -> None:
    """Ubuntu's way to move SSH: ssh.socket's ListenStream. The drop-in resets the list; 2200 must stay open."""
    need_tool("nft")
    tree = build_tree(tmp_path / "host", FIXES / "nft_accept")
    wants = tree / "etc/systemd/system/sockets.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "ssh.socket").write_text("")
    (tree / "etc/systemd/system/ssh.socket.d").mkdir(parents=True)
    (tree / "etc/systemd/system/ssh.socket.d/listen.conf").write_text("[Socket]\nListenStream=\nListenStream=2200\n")
    [finding] = _default_allow(tree)
    [nft] = [s for s in finding.remediation.steps if isinstance(s, Write) and s.path.endswith("hostguard.nft")]
    assert "\t\ttcp dport { 80, 443, 2200, 2222 } accept" in nft.content.splitlines()
    path = tmp_path / "hostguard.nft"  # loaded for real: ssh.socket's port still connects, others do not
    path.write_text(nft.content)
    with netns_pair() as pair:
        assert pair.run(pair.server, ["nft", "-f", str(path)]).returncode == 0
        pair.listen("tcp:[::]:2200", "tcp:[::]:8080")
        assert {(a, p): pair.connects(a, p) for a in (SERVER_V4, SERVER_V6) for p in (2200, 8080)} == {
            (SERVER_V4, 2200): True, (SERVER_V4, 8080): False, (SERVER_V6, 2200): True, (SERVER_V6, 8080): False}
    (tree / "etc/systemd/system/ssh.socket.d/listen.conf").write_text("[Socket]\nListenStream=\nListenStream=sshd\n")
    [finding] = _default_allow(tree)
    assert finding.remediation.steps == () and "ssh.socket listens on sshd" in (finding.remediation.manual or "")
