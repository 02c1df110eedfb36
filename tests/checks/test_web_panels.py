"""web.control_panel: control panels on ports of their own, with the firewall's answer.

Live: real listeners in a network namespace pair the test creates (``tests/netns.py``), the real scan run
inside the server namespace (its sockets, its nftables ruleset). The panel is a copy of this Python
renamed ``cockpit-ws`` (the kernel, psutil and the check all see a program called cockpit-ws, as with the
real one), and a Perl script named ``miniserv.pl`` run by perl (how Webmin runs); a plain python on
Webmin's port is no panel. Who the scan says can connect is checked with real connections from the client
namespace. Under ``--root``: fixture trees with Webmin's miniserv.conf, Cockpit's socket unit and
Jenkins' files, and each kind of boot-time firewall answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.findings import Finding, Skipped
from hostguard.host.base import HostError, RootHost
from hostguard.host.web.panels import Miniserv, parse_listen_streams, parse_miniserv
from tests.conftest import HITS, build_tree, need_root, need_tool, run_one
from tests.netns import LISTENER, SERVER_V4, Pair, netns_pair

CHECK = "web.control_panel"
HOSTGUARD = [sys.executable, "-m", "hostguard.cli"]

# A Perl listener that looks like Webmin's miniserv.pl to `ps`: perl running a script of that name.
MINISERV = r"""
use strict; use Socket;
my ($addr, $port) = @ARGV;
socket(my $s, PF_INET, SOCK_STREAM, 0) or die;
setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1);
bind($s, sockaddr_in($port, inet_aton($addr))) or die "bind: $!";
listen($s, 16) or die;
$| = 1; print "ready\n";
while (accept(my $c, $s)) { close $c; }
"""


# -- live, in a network namespace pair ------------------------------------------------------------------------


@dataclass
class Scene:
    pair: Pair
    directory: Path

    def scan(self, ns: str) -> list[dict[str, Any]]:
        """``hostguard scan --only web.control_panel`` inside ``ns`` (state in the temp dir)."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        r = self.pair.run(ns, [*HOSTGUARD, "--state", str(self.directory / f"state-{ns}"), "scan", "--only", CHECK,
                               "--format", "json"], env=env, timeout=120)
        assert r.returncode in (0, 1), r.stderr
        report = json.loads(r.stdout)
        assert [s for s in report["skipped"] if s["check"] == CHECK] == [], report["skipped"]
        return [f for f in report["findings"] if f["id"] == CHECK]

    def firewall(self, ruleset: str) -> None:
        """Replace the server namespace's nftables ruleset (it dies with the namespace)."""
        path = self.directory / "rules.nft"
        path.write_text("flush ruleset\n" + ruleset)
        r = self.pair.run(self.pair.server, ["nft", "-f", str(path)])
        assert r.returncode == 0, r.stderr


def _start(pair: Pair, ns: str, argv: list[str]) -> None:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE)
    pair.procs.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready", argv


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """Server namespace: cockpit-ws on 0.0.0.0:9090, miniserv.pl on 0.0.0.0:10000, a plain python on
    0.0.0.0:8888 (aaPanel's port). Client namespace: cockpit-ws on 127.0.0.1:9090 only."""
    need_root("network namespaces")
    need_tool("ip", "nft", "perl")
    directory = tmp_path_factory.mktemp("panels")
    cockpit = directory / "cockpit-ws"
    shutil.copy2(os.path.realpath(sys.executable), cockpit)
    miniserv = directory / "miniserv.pl"
    miniserv.write_text(MINISERV)
    with netns_pair() as pair:
        _start(pair, pair.server, [str(cockpit), str(LISTENER), "tcp:0.0.0.0:9090"])
        _start(pair, pair.server, ["perl", str(miniserv), "0.0.0.0", "10000"])
        _start(pair, pair.server, [sys.executable, str(LISTENER), "tcp:0.0.0.0:8888"])
        _start(pair, pair.client, [str(cockpit), str(LISTENER), "tcp:127.0.0.1:9090"])
        yield Scene(pair, directory)


def by_port(found: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(f["target"]["panel"], f["target"]["port"]): f for f in found}


def test_panels_without_a_firewall_are_high_and_reachable_from_anyone(scene: Scene) -> None:
    """Hit: cockpit-ws and miniserv.pl on every address, no ruleset in the namespace. Near miss: the plain
    python on aaPanel's port 8888 (the port alone names no panel)."""
    scene.firewall("")
    found = by_port(scene.scan(scene.pair.server))
    assert set(found) == {("Cockpit", 9090), ("Webmin", 10000)}
    for f in found.values():
        assert f["severity"] == "high" and f["target"]["address"] == "0.0.0.0"
        assert f["evidence"]["seen"] == "listening" and f["evidence"]["firewall"]["reachable_from"] == "anyone"
        assert f["evidence"]["firewall"]["ruleset"] == "live"
    assert found[("Cockpit", 9090)]["title"].startswith("Cockpit listens on tcp 0.0.0.0:9090, reachable from anyone")
    assert found[("Cockpit", 9090)]["evidence"]["where"].startswith("cockpit-ws (pid ")
    assert found[("Webmin", 10000)]["evidence"]["where"].startswith("perl (pid ")
    assert "bind=127.0.0.1" in found[("Webmin", 10000)]["remediation"]["manual"]
    assert scene.pair.connects(SERVER_V4, 9090) and scene.pair.connects(SERVER_V4, 10000)


def test_a_panel_on_loopback_only_is_quiet(scene: Scene) -> None:
    """Near miss: the same cockpit-ws, listening on 127.0.0.1:9090 only (the client namespace)."""
    assert scene.scan(scene.pair.client) == []


def test_a_panel_open_to_chosen_networks_is_medium_and_names_them(scene: Scene) -> None:
    scene.firewall("table inet f {\n chain input {\n  type filter hook input priority filter; policy accept;\n"
                   "  ip saddr 192.0.2.0/24 tcp dport 9090 accept\n  tcp dport 9090 drop\n }\n}\n")
    found = by_port(scene.scan(scene.pair.server))
    cockpit = found[("Cockpit", 9090)]
    assert cockpit["severity"] == "medium"
    assert cockpit["evidence"]["firewall"]["networks"] == ["192.0.2.0/24"]
    assert "reachable only from 192.0.2.0/24" in cockpit["title"]
    assert found[("Webmin", 10000)]["severity"] == "high"           # the ruleset names 9090 only
    assert not scene.pair.connects(SERVER_V4, 9090)                   # the client, 198.51.100.2, is not let in
    assert scene.pair.connects(SERVER_V4, 10000)


def test_a_panel_the_firewall_closes_is_info(scene: Scene) -> None:
    scene.firewall("table inet f {\n chain input {\n  type filter hook input priority filter; policy drop;\n"
                   "  iif lo accept\n }\n}\n")
    found = by_port(scene.scan(scene.pair.server))
    assert {k: f["severity"] for k, f in found.items()} == {("Cockpit", 9090): "info", ("Webmin", 10000): "info"}
    assert "the firewall lets nobody reach it" in found[("Cockpit", 9090)]["title"]
    assert not scene.pair.connects(SERVER_V4, 9090)
    scene.firewall("")


# -- under --root -----------------------------------------------------------------------------------------------


def root_scan(root: Path) -> tuple[list[Finding], list[Skipped]]:
    return run_one(CHECK, RootHost(str(root)))


def only(root: Path) -> Finding:
    found, skipped = root_scan(root)
    assert skipped == []
    [f] = found
    return f


@pytest.fixture
def webmin_tree(tmp_path: Path) -> Path:
    need_root("loading a boot-time nftables.conf into a private network namespace")
    need_tool("nft", "ip")
    return build_tree(tmp_path / "host", HITS / CHECK)


def test_installed_webmin_open_to_one_network_is_medium(webmin_tree: Path) -> None:
    f = only(webmin_tree)
    assert f.target == {"kind": "port", "port": 10000, "proto": "tcp", "address": "0.0.0.0", "panel": "Webmin"}
    assert str(f.severity) == "medium"
    assert f.evidence["seen"] == "installed" and f.evidence["files"] == ["/etc/webmin/miniserv.conf"]
    assert f.evidence["where"] == "/etc/webmin/miniserv.conf (no bind=: every address)"
    assert f.evidence["firewall"]["networks"] == ["198.51.100.0/24"]
    assert f.evidence["firewall"]["ruleset"] == "boot-time"


def test_installed_webmin_without_a_boot_time_firewall_is_high(webmin_tree: Path) -> None:
    (webmin_tree / "etc/nftables.conf").unlink()
    f = only(webmin_tree)
    assert str(f.severity) == "high" and f.evidence["firewall"]["reachable_from"] == "anyone"


def test_installed_webmin_the_boot_time_firewall_closes_is_info(webmin_tree: Path, tmp_path: Path) -> None:
    clean = build_tree(tmp_path / "clean")
    shutil.copy2(clean / "etc/nftables.conf", webmin_tree / "etc/nftables.conf")   # drops 10000
    f = only(webmin_tree)
    assert str(f.severity) == "info" and f.evidence["firewall"]["decided_by"][0] == "inet filter input: policy drop"


def test_an_unreadable_firewall_is_unknown_and_medium(webmin_tree: Path) -> None:
    (webmin_tree / "etc/nftables.conf").write_text("table inet filter {\n chain input {\n  type filtre hook input "
                                                   "priority filter; policy drop;\n }\n}\n")
    f = only(webmin_tree)
    assert str(f.severity) == "medium" and f.evidence["firewall"]["reachable_from"] == "unknown"
    assert f.title.endswith("; whether the firewall lets anyone reach it is unknown")


def test_webmins_own_allow_list_caps_it_at_medium(webmin_tree: Path) -> None:
    (webmin_tree / "etc/nftables.conf").unlink()
    conf = webmin_tree / "etc/webmin/miniserv.conf"
    conf.write_text(conf.read_text() + "allow=192.0.2.0/24\n")
    f = only(webmin_tree)
    assert str(f.severity) == "medium"
    assert f.evidence["panel_allow"] == "allow=192.0.2.0/24 (/etc/webmin/miniserv.conf:13)"


def test_a_bad_port_in_miniserv_conf_is_one_line_naming_it(webmin_tree: Path) -> None:
    conf = webmin_tree / "etc/webmin/miniserv.conf"
    conf.write_text(conf.read_text().replace("port=10000", "port=ten"))
    found, skipped = root_scan(webmin_tree)
    assert found == []
    [skip] = skipped
    assert skip.reason == "error" and "\n" not in skip.detail
    assert "/etc/webmin/miniserv.conf:1: port= must be a port number 1-65535, not 'ten'" in skip.detail


def test_cockpit_socket_and_its_loopback_drop_in(tmp_path: Path) -> None:
    """Hit: cockpit.socket installed (ListenStream=9090, every address). Near miss: the fix's drop-in,
    exactly the lines the remediation gives, keeps it to 127.0.0.1."""
    need_root("loading a boot-time nftables.conf into a private network namespace")
    need_tool("nft", "ip")
    root = build_tree(tmp_path / "host")
    (root / "etc/nftables.conf").unlink()
    unit = root / "usr/lib/systemd/system/cockpit.socket"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Unit]\nDescription=Cockpit Web Service Socket (fixture)\n\n[Socket]\nListenStream=9090\n"
                    "ExecStartPost=-/bin/true\n\n[Install]\nWantedBy=sockets.target\n")
    f = only(root)
    assert f.target == {"kind": "port", "port": 9090, "proto": "tcp", "address": "*", "panel": "Cockpit"}
    assert f.evidence["where"] == "/usr/lib/systemd/system/cockpit.socket:5" and str(f.severity) == "high"
    fix = f.remediation.manual
    assert "`[Socket]`, `ListenStream=` and `ListenStream=127.0.0.1:9090`" in fix
    drop_in = root / "etc/systemd/system/cockpit.socket.d/listen.conf"
    drop_in.parent.mkdir(parents=True)
    drop_in.write_text("[Socket]\nListenStream=\nListenStream=127.0.0.1:9090\n")
    assert root_scan(root) == ([], [])


def test_jenkins_installed_listens_on_its_default_port(tmp_path: Path) -> None:
    need_root("loading a boot-time nftables.conf into a private network namespace")
    need_tool("nft", "ip")
    root = build_tree(tmp_path / "host")
    war = root / "usr/share/java/jenkins.war"
    war.parent.mkdir(parents=True)
    war.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    f = only(root)
    assert f.target["panel"] == "Jenkins" and f.target["port"] == 8080
    assert str(f.severity) == "info"           # the clean tree's boot-time firewall drops 8080
    assert "JENKINS_LISTEN_ADDRESS=127.0.0.1" in f.remediation.manual


# -- the parsers ------------------------------------------------------------------------------------------------


def test_miniserv_last_value_wins_and_other_lines_are_ignored() -> None:
    text = "# comment\nport=10000\nno equals sign\nbind=192.0.2.5 198.51.100.7\nport=20000\nipv6=1\nallow=\n"
    assert parse_miniserv(text, "/m.conf") == Miniserv(port=20000, port_line=5, binds=("192.0.2.5", "198.51.100.7"),
                                                        bind_line=4, ipv6=True)


def test_listen_stream_reset_and_forms() -> None:
    units = [("/u/cockpit.socket", "[Socket]\nListenStream=9090\n[Install]\nListenStream=1\n"),
             ("/e/a.conf", "[Socket]\nListenStream=\nListenStream=[::1]:9090\nListenStream=192.0.2.3:9091\n"
                           "ListenStream=/run/x.sock\nListenStream=nope:x\n")]
    listens, notes = parse_listen_streams(units)
    assert listens == [("::1", 9090, "/e/a.conf:3"), ("192.0.2.3", 9091, "/e/a.conf:4")]
    assert notes == ["/e/a.conf:6: ListenStream=nope:x is not a port or address:port (systemd ignores it)"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("port=bindalow6ipv1 0\n#[]:x\t="), max_size=200))
def test_miniserv_parser_never_fails_but_with_a_host_error(text: str) -> None:
    try:
        conf = parse_miniserv(text, "/etc/webmin/miniserv.conf")
    except HostError as exc:
        assert str(exc).startswith("/etc/webmin/miniserv.conf:") and "\n" not in str(exc)
    else:
        assert 0 < conf.port < 65536


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 65535), st.lists(st.sampled_from(["127.0.0.1", "192.0.2.9", "::1"]), max_size=3))
def test_miniserv_round_trip(port: int, binds: list[str]) -> None:
    conf = parse_miniserv(f"port={port}\nbind={' '.join(binds)}\n", "/m")
    assert (conf.port, conf.binds) == (port, tuple(binds))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("[]Socket=Listen:90.1/@\n "), max_size=60), max_size=4))
def test_listen_stream_parser_never_raises(texts: list[str]) -> None:
    listens, notes = parse_listen_streams([(f"/u/{i}.conf", t) for i, t in enumerate(texts)])
    assert all(0 < port < 65536 for _, port, _ in listens)
    assert all(":" in n for n in notes)
