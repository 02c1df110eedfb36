"""firewalld fixes proved by firewalld's own code: each ``firewall-cmd --permanent`` step of a finding is run as
the same change by firewall-offline-cmd on a copy of the tree (tests/firewalld_helpers.py: unpacked from the
Debian package, confined, never installed), firewalld checks the result (``--check-config``), and hostguard
re-scans the tree: the finding is gone, SSH and the allowed ports are still open to anyone, and hostguard
reads every zone the way firewalld itself lists it. The trees use firewalld's packaged zones and services as
their /usr/lib/firewalld, so hostguard is also checked against rulesets it did not write."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from hostguard.engine.facts import Fact, Facts
from hostguard.findings import Finding
from hostguard.host.base import RootHost
from hostguard.host.firewall import FIREWALL
from hostguard.host.sockets import LISTENERS, Listener
from hostguard.netfilter.evaluate import Query, reachability
from hostguard.netfilter.fixes import drop_port
from hostguard.netfilter.model import Chain, Match, Rule, Ruleset
from hostguard.netfilter.reach import OTHER
from hostguard.remediation import Command, Step
from tests.conftest import HOSTS, build_tree, make_config, need_tool, run_one
from tests.firewalld_helpers import (
    CACHE,
    confined,
    offline_argv,
    offline_cmd,
    stock_tree,
    zones_as_firewalld_reads_them,
)

FIXES = HOSTS / "fixes"
RELOAD = Command(("firewall-cmd", "--reload"))
LINK_LOCAL, GLOBAL_V6 = "fe80::1", "2001:db8::1"


def _tree(tmp_path: Path, overlay: Path) -> Path:
    tree = build_tree(tmp_path / "host", overlay)
    stock_tree(tree)
    return tree


def _ruleset(tree: Path) -> Ruleset:
    return Facts(RootHost(str(tree)), make_config()).get(FIREWALL).ruleset


def _state(ruleset: Ruleset, version: int, proto: str, port: int, daddr: str | None = None) -> str:
    return reachability(ruleset, Query(version, proto, port, OTHER, daddr))[0].state


def _listening(*ports: tuple[int, str]) -> dict[Fact[Any], Any]:
    return {LISTENERS: tuple(Listener("tcp", "::", port, (4, 6), None, name, None, None) for port, name in ports)}


def _findings(check_id: str, tree: Path, *ports: tuple[int, str]) -> list[Finding]:
    found, skipped = run_one(check_id, RootHost(str(tree)), given=_listening(*ports) if ports else None)
    assert skipped == []
    return found


def _run_by_firewalld(tree: Path, steps: tuple[Step, ...]) -> None:
    """Each permanent change through firewall-offline-cmd; the reload (live only) must close the list."""
    *changes, last = steps
    assert last == RELOAD
    for step in changes:
        assert isinstance(step, Command)
        result = offline_cmd(tree, *offline_argv(step.argv))
        assert (result.returncode, result.stdout.strip()) == (0, "success"), (step.argv, result.stderr)
    check = offline_cmd(tree, "--check-config")
    assert (check.returncode, check.stderr) == (0, ""), check.stdout


def _assert_read_as_firewalld_reads(tree: Path) -> None:
    """hostguard's chains carry, zone by zone, the target, ports, services, rich rules, sources and interfaces
    that firewalld's own --list-all-zones shows for the same files."""
    views = zones_as_firewalld_reads_them(tree)
    ruleset = _ruleset(tree)
    dispatch = [r.text for r in ruleset.chains[("inet", "firewalld", "input")].rules]
    assert sorted(n for (_, _, n) in ruleset.chains if n.startswith("zone_")) == sorted(f"zone_{z}" for z in views)
    for zone, view in views.items():
        texts = [r.text for r in ruleset.chains[("inet", "firewalld", f"zone_{zone}")].rules]
        seen = {
            "target": texts[-1].removeprefix(f"zone {zone}: target "),
            "ports": {t.removeprefix(f"zone {zone}: port ") for t in texts if t.startswith(f"zone {zone}: port ")},
            "services": {m.group(1) for t in texts if (m := re.match(rf"zone {re.escape(zone)}: service (\S+) ", t))},
            "rich": len({t for t in texts if t.startswith(f"zone {zone}: rich rule ")}),
            "sources": {t.split()[1] for t in dispatch if t.startswith("source ") and t.endswith(f"-> zone {zone}")},
            "interfaces": {t.split()[1] for t in dispatch
                           if t.startswith("interface ") and t.endswith(f"-> zone {zone}")},
        }
        assert seen == {"target": view.target, "ports": view.ports, "services": view.services,
                        "rich": view.rich_rules, "sources": view.sources, "interfaces": view.interfaces}, zone


def test_stock_public_zone_is_read_and_evaluated_as_firewalld_builds_it(tmp_path: Path) -> None:
    """Debian's own firewalld defaults (public zone: ssh and dhcpv6-client, target default), read by hostguard:
    SSH's port 22 open to anyone, any other port closed, DHCPv6 only over IPv6 to a link-local address (the
    service's <destination>); no firewall.default_allow finding. The near miss of the trusted zone below."""
    tree = _tree(tmp_path, FIXES / "firewall" / "firewalld")
    (tree / "etc/firewalld/zones/trusted.xml").unlink()
    shutil.copy(CACHE / "etc/firewalld/firewalld.conf", tree / "etc/firewalld/firewalld.conf")
    check = offline_cmd(tree, "--check-config")
    assert (check.returncode, check.stderr) == (0, "")
    assert offline_cmd(tree, "--get-default-zone").stdout.strip() == "public"
    assert zones_as_firewalld_reads_them(tree)["public"].services == {"ssh", "dhcpv6-client"}
    _assert_read_as_firewalld_reads(tree)
    ruleset = _ruleset(tree)
    for version in (4, 6):
        assert _state(ruleset, version, "tcp", 22) == "anyone"
        assert _state(ruleset, version, "tcp", 9) == "nobody"
        assert _state(ruleset, version, "tcp", 2222) == "nobody"   # sshd's port here is not in the stock zone
    assert _state(ruleset, 4, "udp", 546) == "nobody"
    assert _state(ruleset, 6, "udp", 546, LINK_LOCAL) == "anyone"
    assert _state(ruleset, 6, "udp", 546, GLOBAL_V6) == "nobody"
    assert _findings("firewall.default_allow", tree) == []


def test_default_deny_steps_run_by_firewalld_close_the_tree_and_keep_ssh(tmp_path: Path) -> None:
    """The default zone is trusted (target ACCEPT): the fix opens SSH, the allowed ports and DHCPv6 in it and
    gives it the target default. Run by firewalld's code, the tree then rejects every other port."""
    tree = _tree(tmp_path, FIXES / "firewall" / "firewalld")
    [finding] = _findings("firewall.default_allow", tree)
    steps = finding.remediation.steps
    assert RELOAD in steps and all(isinstance(s, Command) and s.argv[:2] == ("firewall-cmd", "--permanent")
                                   for s in steps if s != RELOAD)
    assert [offline_argv(s.argv) for s in steps[:-1] if isinstance(s, Command)] == [
        ("--zone=trusted", "--add-port=80/tcp"), ("--zone=trusted", "--add-port=443/tcp"),
        ("--zone=trusted", "--add-port=2222/tcp"), ("--zone=trusted", "--add-service=dhcpv6-client"),
        ("--zone=trusted", "--set-target=default")]
    assert _state(_ruleset(tree), 4, "tcp", 8080) == "anyone"
    _run_by_firewalld(tree, steps)
    assert offline_cmd(tree, "--zone=trusted", "--get-target").stdout.strip() == "default"
    _assert_read_as_firewalld_reads(tree)
    assert _findings("firewall.default_allow", tree) == []
    ruleset = _ruleset(tree)
    for version in (4, 6):
        for port, state in ((2222, "anyone"), (80, "anyone"), (443, "anyone"), (8080, "nobody"), (9, "nobody")):
            assert _state(ruleset, version, "tcp", port) == state, (version, port)
    assert _state(ruleset, 6, "udp", 546, LINK_LOCAL) == "anyone"
    assert _state(ruleset, 4, "udp", 546) == "nobody"


def _drop(tree: Path, port: int, process: str, check_id: str = "firewall.service_reachable") -> Finding:
    [finding] = _findings(check_id, tree, (port, process), (2222, "sshd"))
    assert finding.target["port"] == port
    return finding


def test_drop_port_removes_the_zones_port_entry_and_keeps_ssh(tmp_path: Path) -> None:
    """3306 is a port entry of the default zone: the fix removes it (with its undo), firewalld accepts the
    result, the re-scan finds nothing and SSH is still open; the undo, run by firewalld, opens it again."""
    tree = _tree(tmp_path, FIXES / "firewalld_port")
    rem = _drop(tree, 3306, "mysqld").remediation
    remove = ("firewall-cmd", "--permanent", "--zone=public", "--remove-port=3306/tcp")
    assert rem.steps == (Command(remove, undo=("firewall-cmd", "--permanent", "--zone=public", "--add-port=3306/tcp"),
                                 reversible=True), RELOAD)
    assert rem.placeholders() == [] and [p.name for p in rem.params] == ["TRUSTED_NET"]
    assert "--zone=public --add-rich-rule" in (rem.manual or "")
    _run_by_firewalld(tree, rem.steps)
    _assert_read_as_firewalld_reads(tree)
    assert _findings("firewall.service_reachable", tree, (3306, "mysqld"), (2222, "sshd")) == []
    ruleset = _ruleset(tree)
    for version in (4, 6):
        assert (_state(ruleset, version, "tcp", 3306), _state(ruleset, version, "tcp", 2222)) == ("nobody", "anyone")
    [undo] = [s.undo for s in rem.steps if isinstance(s, Command) and s.undo]
    assert offline_cmd(tree, *offline_argv(undo)).returncode == 0
    assert _drop(tree, 3306, "mysqld")


def test_drop_port_removes_a_service_that_opens_only_that_port(tmp_path: Path) -> None:
    """3306 comes in through firewalld's stock mysql service (3306/tcp only): the fix removes the service; the
    owner's rich rule for 198.51.100.0/24 stays, so that network alone still reaches it."""
    tree = _tree(tmp_path, FIXES / "firewalld_service")
    rem = _drop(tree, 3306, "mysqld").remediation
    assert [s.argv for s in rem.steps if isinstance(s, Command)] == [
        ("firewall-cmd", "--permanent", "--zone=public", "--remove-service=mysql"), RELOAD.argv]
    _run_by_firewalld(tree, rem.steps)
    _assert_read_as_firewalld_reads(tree)
    assert _findings("firewall.service_reachable", tree, (3306, "mysqld"), (2222, "sshd")) == []
    ruleset = _ruleset(tree)
    assert reachability(ruleset, Query(4, "tcp", 3306, OTHER))[0].reach.cidrs() == ["198.51.100.0/24"]
    assert _state(ruleset, 6, "tcp", 3306) == "nobody"
    assert _state(ruleset, 4, "tcp", 2222) == _state(ruleset, 6, "tcp", 2222) == "anyone"


def test_drop_port_is_by_hand_where_a_removal_would_close_more(tmp_path: Path) -> None:
    """Near misses of the two above: a service that also opens another port (elasticsearch: 9200 and 9300), a
    port range, a rich rule open to anyone. No steps; the reason names what else would close, and firewalld
    reads the same zone as hostguard."""
    tree = _tree(tmp_path, FIXES / "firewalld_manual")
    _assert_read_as_firewalld_reads(tree)
    cases = {9200: ("elasticsearch", "firewall.service_reachable", "service elasticsearch, which also opens 9300/tcp"),
             6379: ("redis-server", "firewall.service_reachable", "lets it in through `zone public: rich rule"),
             8005: ("python3", "firewall.port_reachable", "opens the range 8000-8010/tcp")}
    for port, (process, check_id, reason) in cases.items():
        rem = _drop(tree, port, process, check_id).remediation
        assert rem.steps == () and reason in (rem.manual or ""), (port, rem.manual)
        assert "--zone=public --add-rich-rule" in (rem.manual or "") and rem.placeholders() == []


def test_drop_port_in_an_accepting_zone_points_to_default_deny(tmp_path: Path) -> None:
    """The default zone is trusted (target ACCEPT): no entry to remove; the reason says to apply the
    default-deny fix, which the test above proves."""
    tree = _tree(tmp_path, FIXES / "firewall" / "firewalld")
    rem = _drop(tree, 3306, "mysqld").remediation
    assert rem.steps == ()
    assert "zone trusted accepts everything (target ACCEPT): apply the fix of firewall.default_allow" in (rem.manual or "")


def test_drop_port_on_live_firewalld_rules_names_the_zone_but_stays_by_hand() -> None:
    """On a running host the rules come from firewalld's nft table, where a port entry and a service look the
    same: the zone is named from the chain, the entry is left to the owner (never an `nft insert` into
    firewalld's table, which its next reload would drop)."""
    allow = Chain("inet", "firewalld", "filter_IN_public_allow",
                  (Rule((Match("l4proto", ("tcp",)), Match("dport", ("3306",))), "accept", None, "tcp dport 3306 accept"),))
    base = Chain("inet", "firewalld", "filter_INPUT", (), "input", 10, "accept")
    ruleset = Ruleset({("inet", "firewalld", c.name): c for c in (allow, base)}, {}, ())
    decider = "inet firewalld filter_IN_public_allow: `tcp dport 3306 accept`"
    rem = drop_port(ruleset, "tcp", 3306, {4: [decider], 6: [decider]}, (2222,), {})
    assert rem.steps == ()
    assert rem.summary.startswith("firewalld: remove 3306/tcp from zone public")
    assert [(p.name, p.example) for p in rem.params] == [("TRUSTED_NET", "198.51.100.0/24"), ("ZONE", "public")]


def test_the_offline_tool_never_sees_this_machines_firewalld(tmp_path: Path) -> None:
    """The confinement every firewall-offline-cmd run gets: an existing directory standing for /etc/firewalld is
    empty inside, untouched outside, and the namespace has no network but its own loopback."""
    need_tool("unshare", "ip")
    stand_in = tmp_path / "etc-firewalld"
    stand_in.mkdir()
    (stand_in / "firewalld.conf").write_text("DefaultZone=trusted\n")
    inside = confined(("sh", "-c", f'ls -A "{stand_in}"; touch "{stand_in}/written"; ip -o link show | wc -l'), {},
                      (str(stand_in), str(tmp_path / "missing")))
    assert (inside.returncode, inside.stdout.split()) == (0, ["1"]), inside.stderr
    assert sorted(p.name for p in stand_in.iterdir()) == ["firewalld.conf"]
