"""Port checks on real sockets in a network namespace made by the test."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import FIXTURES
from tests.netns import netns_pair
from tests.sshd_helpers import prepare_sshd


def _scan(pair, tmp_path: Path) -> dict:
    r = pair.hostguard("--config", str(FIXTURES / "fast.toml"), "--state", str(tmp_path / "state"),
                       "scan", "--only", "ports", "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def _targets(report: dict, check_id: str) -> set[tuple[int, str, str]]:
    return {(f["target"]["port"], f["target"]["proto"], f["target"]["address"])
            for f in report["findings"] if f["id"] == check_id}


def test_ports_hit_and_miss(tmp_path: Path) -> None:
    key = prepare_sshd(tmp_path)
    cfg = tmp_path / "sshd_config"
    cfg.write_text(f"HostKey {key}\nPort 2222\nListenAddress 0.0.0.0\nPidFile {tmp_path}/sshd.pid\n")
    with netns_pair() as pair:
        pair.listen("tcp:0.0.0.0:6379", "tcp:127.0.0.1:3306", "tcp:0.0.0.0:8081", "tcp:[::]:80", "udp:127.0.0.1:5353",
                    "udp:0.0.0.0:5300")
        pair.spawn(pair.server, ["/usr/sbin/sshd", "-D", "-f", str(cfg)])
        for _ in range(50):
            if pair.connects("198.51.100.1", 2222):
                break
        report = _scan(pair, tmp_path)
    assert report["skipped"] == []
    assert _targets(report, "ports.exposed_service") == {(6379, "tcp", "0.0.0.0")}
    assert _targets(report, "ports.not_allowed") == {(8081, "tcp", "0.0.0.0"), (5300, "udp", "0.0.0.0")}
    redis = next(f for f in report["findings"] if f["id"] == "ports.exposed_service")
    assert redis["evidence"]["service"] == "Redis" and redis["evidence"]["process"].startswith("python")


def test_ports_unavailable_under_root(tmp_path: Path, clean_tree: Path, capsys) -> None:
    from hostguard.cli import main

    code = main(["--state", str(tmp_path / "s"), "scan", "--root", str(clean_tree), "--only", "ports", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["findings"] == [] and report["complete"] is False
    assert {(s["check"], s["reason"]) for s in report["skipped"]} == {
        ("ports.not_allowed", "live_only"), ("ports.exposed_service", "live_only")}
