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

from hostguard.findings import Finding
from hostguard.host.base import RootHost
from hostguard.host.exposure import bound
from tests.conftest import HITS, HOSTS, MISSES, build_tree, need_root, need_tool, run_one

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
