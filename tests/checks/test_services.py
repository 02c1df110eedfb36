"""services.*: the services' own configuration combined with the firewall's answer for their ports.

Each tree is the clean host with a services hit overlay (Redis on 0.0.0.0 without a password; vsftpd with
local logins in clear) and one boot-time /etc/nftables.conf from ``fixtures/hosts/fixes/services/``, loaded
by the real ``nft`` into a private network namespace (as ``hostguard scan --root`` does). The firewall's
answer is in the title and the evidence, with the rule that decided; a firewall that drops the port lowers
the severity but never silences the finding.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from hostguard.engine.context import ProgressFn
from hostguard.engine.facts import HOST_ID, STATE, Facts
from hostguard.engine.registry import default_registry
from hostguard.engine.runner import run_check
from hostguard.findings import Finding, HostId, Skipped
from hostguard.host.base import LiveHost, RootHost
from hostguard.host.exposure import bound
from hostguard.host.services.configured import SERVICES, collect_services
from hostguard.store.state import StateStore
from tests.conftest import HITS, HOSTS, MISSES, build_tree, make_config, need_root, need_tool, run_one
from tests.host.services.helpers import running, wait_for

CASES = HOSTS / "fixes" / "services"
REDIS = {"kind": "config", "path": "/etc/redis/redis.conf", "service": "Redis"}
VSFTPD = {"kind": "config", "path": "/etc/vsftpd.conf", "service": "vsftpd"}


def tree(tmp_path: Path, overlay: Path, case: str) -> Path:
    """The clean tree, ``overlay`` (a hits/ or misses/ directory) and then the firewall case over it."""
    need_root("loading a boot-time nftables.conf into a private network namespace")
    need_tool("nft", "ip")
    root = build_tree(tmp_path / "host", overlay)
    shutil.copytree(CASES / case, root, dirs_exist_ok=True)
    return root


def scan(root: Path, check_id: str) -> list[Finding]:
    found, skipped = run_one(check_id, RootHost(str(root)))
    assert skipped == [], skipped
    return found


def firewall(finding: Finding) -> dict[str, Any]:
    answer: dict[str, Any] = finding.evidence["firewall"]
    return answer


def test_redis_open_to_anyone_is_critical_and_says_so(tmp_path: Path) -> None:
    """Hit: a boot-time ruleset that accepts everything."""
    [hit] = scan(tree(tmp_path, HITS / "services.open_without_auth", "accept_all"), "services.open_without_auth")
    assert hit.target == REDIS
    assert str(hit.severity) == "critical"
    assert hit.title.startswith("Redis listens on tcp 0.0.0.0:6379 and ")
    assert ", reachable from anyone (inet filter input: policy accept)" in hit.title
    answer = firewall(hit)
    assert answer["reachable_from"] == "anyone" and answer["ruleset"] == "boot-time"
    assert answer["ruleset_sources"] == ["/etc/nftables.conf"]
    assert answer["ports"] == {"tcp 0.0.0.0:6379": "IPv4: anyone"}
    assert answer["decided_by"] == ["inet filter input: policy accept"]


def test_redis_dropped_by_the_firewall_is_lowered_to_medium_and_names_the_rule(tmp_path: Path) -> None:
    """Near miss of the above: the same Redis, and a ruleset that drops 6379 from every source. Still a finding
    (the service trusts whoever gets to it), at medium, saying who decided."""
    [hit] = scan(tree(tmp_path, HITS / "services.open_without_auth", "drop_services"), "services.open_without_auth")
    assert hit.target == REDIS
    assert str(hit.severity) == "medium"
    assert "; the firewall lets nobody reach it from the network" in hit.title
    answer = firewall(hit)
    assert answer["reachable_from"] == "nobody"
    assert answer["ports"] == {"tcp 0.0.0.0:6379": "IPv4: nobody"}
    assert answer["decided_by"][0] == "inet filter input: `tcp dport { 21, 6379 } drop`"


def test_redis_open_to_one_network_is_high_and_names_it(tmp_path: Path) -> None:
    [hit] = scan(tree(tmp_path, HITS / "services.open_without_auth", "lan_only"), "services.open_without_auth")
    assert hit.target == REDIS and str(hit.severity) == "high"
    assert ", reachable only from 198.51.100.0/24 (" in hit.title
    answer = firewall(hit)
    assert answer["reachable_from"] == "sources" and answer["networks"] == ["198.51.100.0/24"]
    assert any("198.51.100.0/24" in d and "6379" in d for d in answer["decided_by"]), answer


def test_an_unreadable_firewall_is_unknown_and_keeps_critical(tmp_path: Path) -> None:
    """A ruleset nft refuses must never read as "nobody": the answer is unknown and the severity stays."""
    [hit] = scan(tree(tmp_path, HITS / "services.open_without_auth", "broken"), "services.open_without_auth")
    assert hit.target == REDIS and str(hit.severity) == "critical"
    assert hit.title.endswith("; whether the firewall lets anyone reach it is unknown")
    answer = firewall(hit)
    assert answer["reachable_from"] == "unknown" and answer["ruleset"] == "none"
    assert "could not be read" in answer["why_unknown"][0]


def test_loopback_redis_stays_quiet_even_without_a_firewall(tmp_path: Path) -> None:
    """Near miss: the firewall accepting everything does not make a loopback-only Redis a finding."""
    assert scan(tree(tmp_path, MISSES / "services.open_without_auth", "accept_all"), "services.open_without_auth") == []


def test_ftp_in_clear_follows_the_firewall_too(tmp_path: Path) -> None:
    [open_ftp] = scan(tree(tmp_path / "a", HITS / "services.weak_auth", "accept_all"), "services.weak_auth")
    assert open_ftp.target == VSFTPD and str(open_ftp.severity) == "medium"
    assert "reachable from anyone" in open_ftp.title
    [closed] = scan(tree(tmp_path / "b", HITS / "services.weak_auth", "drop_services"), "services.weak_auth")
    assert closed.target == VSFTPD and str(closed.severity) == "low"
    assert firewall(closed)["ports"] == {"tcp 0.0.0.0:21": "IPv4: nobody"}


@pytest.mark.parametrize(("address", "families", "shown", "loopback", "noted"), [
    ("0.0.0.0", (4,), "0.0.0.0", False, False),
    ("::", (4, 6), "::", False, False),
    ("*", (4, 6), "*", False, False),
    ("[::*]", (4, 6), "*", False, False),
    ("192.0.2.10", (4,), "192.0.2.10", False, False),
    ("[2001:db8::5]", (6,), "2001:db8::5", False, False),
    ("fe80::1%eth0", (6,), "fe80::1", False, False),
    ("127.0.0.1", (4,), "127.0.0.1", True, False),
    ("db.test", (4, 6), "*", False, True),
])
def test_configured_addresses_become_sockets_the_evaluator_can_answer_for(
        address: str, families: tuple[int, ...], shown: str, loopback: bool, noted: bool) -> None:
    socket, note = bound("tcp", address, 6379)
    assert (socket.address, socket.families, socket.loopback_only, bool(note)) == (shown, families, loopback, noted)


# -- services.weak_password: a real Redis, its password tried over its unix socket -----------------------

PROBED = HostId("test-machine", "test-state", "test")

def _redis_scan(tmp_path: Path, requirepass: str | None, services_config: dict[str, Any] | None = None,
                progress: ProgressFn | None = None) -> tuple[list[Finding], list[Skipped], StateStore]:
    """A real redis-server on a unix socket in a temp dir, described by a tree's redis.conf; the check run
    live (probes need a running server) with that tree's services given, and a state store to record in."""
    need_tool("redis-server")
    sock = tmp_path / "redis.sock"
    conf = f"port 0\nunixsocket {sock}\nunixsocketperm 700\ndir {tmp_path}\nsave \"\"\n"
    if requirepass is not None:
        conf += f"requirepass {requirepass}\n"
    tree = build_tree(tmp_path / "host")
    (tree / "etc/redis").mkdir(parents=True)
    (tree / "etc/redis/redis.conf").write_text(conf)
    (tmp_path / "redis.conf").write_text(conf)
    services = collect_services(RootHost(str(tree)))
    store = StateStore(str(tmp_path / "state"))
    with running(["redis-server", str(tmp_path / "redis.conf")], tmp_path / "redis.log"):
        wait_for(lambda: sock.exists(), what="redis-server")
        [spec] = [c for c in default_registry().checks if c.id == "services.weak_password"]
        facts = Facts(LiveHost(), make_config(services=services_config or {}),
                      given={SERVICES: services, STATE: store, HOST_ID: PROBED})
        found, skipped = run_check(spec, facts, progress=progress)
    return found, skipped, store


def test_a_guessable_redis_password_is_found_and_never_shown(tmp_path: Path) -> None:
    found, skipped, store = _redis_scan(tmp_path, "foobared")   # the example password of redis.conf
    assert skipped == []
    [hit] = found
    assert hit.target == {"kind": "user", "user": "default", "service": "Redis"}
    assert hit.evidence["endpoint"] == f"unix {tmp_path / 'redis.sock'}"
    assert "foobared" not in repr(hit.to_dict())
    assert [(p.account, p.outcome) for p in store.probes(PROBED.id)] == [("default", "weak_password")]


def test_a_strong_redis_password_is_never_reported(tmp_path: Path) -> None:
    found, skipped, store = _redis_scan(tmp_path, "tall-window-87-quiet-river-grows")
    assert found == []
    assert [s.reason for s in skipped] in ([], ["budget"])
    assert [(p.outcome, p.attempts) for p in store.probes(PROBED.id)] == [("not_found", 50)]


def test_redis_without_a_password_is_said_as_such(tmp_path: Path) -> None:
    found, _, _ = _redis_scan(tmp_path, None)
    [hit] = found
    assert hit.target["password"] == "none" and str(hit.severity) == "medium"


def test_the_probes_stop_at_the_time_budget_and_count_on_a_progress_bar(tmp_path: Path) -> None:
    """At 5 attempts a second, 2 seconds end the session long before the cap of 50: said as a budget skip,
    recorded as out of time, every attempt counted on the bar against the planned total."""
    bar: list[tuple[str, int, int]] = []
    found, skipped, store = _redis_scan(tmp_path, "tall-window-87-quiet-river-grows", {"probe_seconds": 2.0},
                                        lambda check, done, total: bar.append((check, done, total)))
    assert found == []
    [(outcome, attempts)] = [(p.outcome, p.attempts) for p in store.probes(PROBED.id)]
    assert outcome == "out_of_time" and 5 <= attempts <= 12
    [skip] = skipped
    assert skip.reason == "budget" and f"{attempts} passwords tried" in skip.detail
    assert [done for _, done, _ in bar] == list(range(1, attempts + 1))
    assert {(check, total) for check, _, total in bar} == {("services.weak_password", 50)}
