"""`hostguard logons ingest|report|baseline` end to end on log files, with ``--state`` in a temp dir: which
alerts (exactly), the windows rebuilt from the store across runs, the baseline, hostguard's own probes,
the config section, and bad input as one line with exit 2."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

from hostguard.cli import main
from hostguard.cli.common import host_key
from hostguard.host.base import open_host
from hostguard.store.state import RecordedProbe, StateStore

ATTACKER, OWNER, ELSEWHERE = "198.51.100.20", "192.0.2.11", "203.0.113.50"
COUNTRIES = {OWNER: "DE", ATTACKER: "NL", ELSEWHERE: "BR"}
MTIME = 1709942400  # 2024-03-09: the year of the classic stamps below


def failed(second: int, ip: str = ATTACKER, user: str = "root", day: int = 4) -> str:
    return (f"Mar  {day} 10:{second // 60:02d}:{second % 60:02d} gw.test sshd[{4000 + second}]: Failed password for "
            f"{user} from {ip} port {40000 + second} ssh2\n")


def accepted(second: int, ip: str, user: str = "ops", day: int = 4, hour: int = 10) -> str:
    return (f"Mar  {day} {hour}:{second // 60:02d}:{second % 60:02d} gw.test sshd[{5000 + second}]: Accepted publickey "
            f"for {user} from {ip} port {50000 + second} ssh2: ED25519 SHA256:x\n")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A UTC tree, a state dir, and the GeoIP answers of this test (documentation addresses)."""
    (tmp_path / "tree/etc").mkdir(parents=True)
    (tmp_path / "tree/etc/timezone").write_text("Etc/UTC\n")
    monkeypatch.setattr("hostguard.detect.geo.lookup", lambda: COUNTRIES.get)
    return {"tree": tmp_path / "tree", "state": tmp_path / "state", "dir": tmp_path}


def write(path: Path, text: str, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    os.utime(path, (MTIME, MTIME))
    return path


def hg(env: dict[str, Path], capsys: pytest.CaptureFixture[str], *argv: str,
       config: str | None = None) -> tuple[int, Any, str]:
    """Run hostguard with the test's state and tree; JSON output parsed."""
    pre = ["--state", str(env["state"])]
    if config is not None:
        (env["dir"] / "hg.toml").write_text(config)
        pre += ["--config", str(env["dir"] / "hg.toml")]
    capsys.readouterr()
    code = main([*pre, *argv, "--root", str(env["tree"])])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.startswith("{") else out, err


def ingest(env: dict[str, Path], capsys: pytest.CaptureFixture[str], *files: Path, config: str | None = None,
           fail_on: str = "high") -> tuple[int, Any, str]:
    return hg(env, capsys, "logons", "ingest", *map(str, files), "--format", "json", "--fail-on", fail_on,
              config=config)


def which(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(a["id"], a["target"]) for a in doc["alerts"]]


def test_brute_force_then_success_from_the_attacker(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    log = write(env["dir"] / "auth.log", "".join(failed(i * 5) for i in range(12)) + accepted(90, ATTACKER, "root")
                + accepted(200, OWNER))
    code, doc, err = ingest(env, capsys, log)
    assert (code, err) == (1, "")
    assert doc["sources"] == [{"file": str(log), "status": "new", "lines": 14, "new_events": 14, "known_events": 0}]
    assert which(doc) == [
        ("logon.success_after_brute_force", {"kind": "user", "user": "root", "service": "sshd", "address": ATTACKER}),
        ("logon.brute_force", {"kind": "ip", "address": ATTACKER}),
    ]
    critical, brute = doc["alerts"]
    assert critical["severity"] == "critical" and critical["time"] == "2024-03-04T10:01:30+00:00"
    assert critical["event"] == {"file": str(log), "line": 13, "service": "sshd", "outcome": "success", "count": 1,
                                 "user": "root", "ip": ATTACKER, "port": 50090, "method": "publickey",
                                 "time": "2024-03-04T10:01:30+00:00"}
    assert brute["evidence"]["failures"] == 12 and brute["evidence"]["samples"][0]["at"] == f"{log}:1"
    assert brute["remediation"]["steps"] == [{"kind": "action", "action": "block", "target": ATTACKER, "for": "1h",
                                              "reason": "logon.brute_force"}]
    again = ingest(env, capsys, log)
    assert (again[0], again[1]["alerts"], again[1]["sources"][0]["new_events"]) == (0, [], 0)


def test_fail_on_decides_the_exit_code(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    log = write(env["dir"] / "auth.log", "".join(failed(i) for i in range(10)))
    code, doc, _ = ingest(env, capsys, log, fail_on="critical")
    assert code == 0 and which(doc) == [("logon.brute_force", {"kind": "ip", "address": ATTACKER})]


def test_windows_are_rebuilt_from_the_store_across_runs(env: dict[str, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    log = write(env["dir"] / "auth.log", "".join(failed(i) for i in range(6)))
    assert ingest(env, capsys, log)[1]["alerts"] == []
    write(log, log.read_text() + "".join(failed(10 + i) for i in range(4)))
    code, doc, _ = ingest(env, capsys, log)
    assert code == 1 and which(doc) == [("logon.brute_force", {"kind": "ip", "address": ATTACKER})]
    assert doc["alerts"][0]["evidence"]["failures"] == 10
    write(log, log.read_text() + "".join(failed(20 + i) for i in range(3)))  # the same episode goes on
    code, doc, _ = ingest(env, capsys, log)
    assert (code, doc["alerts"]) == (0, [])


def test_an_older_rotated_file_read_late_completes_the_brute_force(env: dict[str, Path],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    new = write(env["dir"] / "auth.log", accepted(100, ATTACKER, "root"))
    assert ingest(env, capsys, new)[1]["alerts"] == []  # a success; no failures known yet (learning)
    old = write(env["dir"] / "auth.log.2.gz", "".join(failed(i * 5) for i in range(8)), gz=True)
    code, doc, _ = ingest(env, capsys, old)
    assert code == 1 and which(doc) == [
        ("logon.success_after_brute_force", {"kind": "user", "user": "root", "service": "sshd", "address": ATTACKER})]


def test_unusual_logon_after_learning_and_approving_it(env: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    log = write(env["dir"] / "auth.log", accepted(0, OWNER))
    assert ingest(env, capsys, log)[1]["alerts"] == []
    write(log, log.read_text() + accepted(5, ELSEWHERE, day=7))
    code, doc, _ = ingest(env, capsys, log)
    assert code == 1 and which(doc) == [("logon.unusual", {"kind": "user", "user": "ops", "service": "sshd",
                                                           "address": ELSEWHERE, "dimensions": ["country", "ip"]})]
    assert doc["alerts"][0]["evidence"]["unusual"] == {"ip": ELSEWHERE, "country": "BR"}

    assert hg(env, capsys, "logons", "baseline", "approve", "ip", "203.0.113.0/24")[:2] == (
        0, "approved ip 203.0.113.0/24\n")
    assert hg(env, capsys, "logons", "baseline", "approve", "country", "br")[:2] == (0, "approved country BR\n")
    write(log, log.read_text() + accepted(9, "203.0.113.51", day=8))
    code, doc, _ = ingest(env, capsys, log)
    assert (code, doc["alerts"], doc["sources"]) == (0, [], [
        {"file": str(log), "status": "continued", "lines": 3, "new_events": 1, "known_events": 0}])

    code, listing, _ = hg(env, capsys, "logons", "baseline", "list", "--format", "json")
    entries = {(e["dimension"], e["value"]): (e["approved"], e["origin"]) for e in listing["entries"]}
    assert entries == {("account", "ops"): (True, "learned"), ("country", "DE"): (True, "learned"),
                       ("hour", "10"): (True, "learned"), ("ip", OWNER): (True, "learned"),
                       ("ip", "203.0.113.0/24"): (True, "manual"), ("country", "BR"): (True, "manual")}
    assert listing["learning_started"] == "2024-03-04T10:00:00+00:00"
    assert hg(env, capsys, "logons", "baseline", "forget", "country", "BR")[:2] == (0, "forgot country BR\n")
    code, out, err = hg(env, capsys, "logons", "baseline", "forget", "country", "BR")
    assert (code, out) == (2, "") and err.count("\n") == 1 and "not in the baseline" in err


def test_our_own_probes_are_not_counted_but_the_same_failures_from_elsewhere_are(
        env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    state = StateStore(str(env["state"]))
    try:
        key = host_key(open_host(str(env["tree"])), state)
        state.record_probe(key, RecordedProbe("mysql", "unix /run/mysqld/mysqld.sock", "shop",
                                              "2024-03-04T07:00:00+00:00", 6, "not_found", None,
                                              "2024-03-04T07:00:06+00:00"))
    finally:
        state.close()
    ours = [f"2024-03-04T07:00:0{i}.000000Z {i} [Note] [MY-010926] [Server] Access denied for user 'shop'@'localhost' "
            "(using password: YES)\n" for i in range(6)]
    theirs = [f"2024-03-04T07:00:0{i}.500000Z {i} [Note] [MY-010926] [Server] Access denied for user 'shop'@"
              f"'198.51.100.9' (using password: YES)\n" for i in range(6)]
    log = write(env["dir"] / "error.log", "".join(a + b for a, b in zip(ours, theirs, strict=True)))
    config = "[detect.brute_force]\nfast_failures = 6\n"
    code, doc, _ = ingest(env, capsys, log, config=config)
    assert code == 1 and which(doc) == [("logon.brute_force", {"kind": "ip", "address": "198.51.100.9"})]
    assert doc["alerts"][0]["evidence"]["failures"] == 6
    code, report, _ = hg(env, capsys, "logons", "report", "--since", "2024-03-01", "--format", "json")
    assert report["own_probe_failures"] == 6
    assert [(f["ip"], f["failures"]) for f in report["failures_by_source"]] == [("198.51.100.9", 6)]


def test_report_lists_logons_failures_alerts_and_blocks(env: dict[str, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    log = write(env["dir"] / "auth.log", "".join(failed(i) for i in range(10)) + failed(30, ip="198.51.100.21")
                + accepted(100, OWNER))
    ingest(env, capsys, log)
    state = StateStore(str(env["state"]))
    with state.db:
        state.db.execute("INSERT INTO blocks(network, reason, source, created, updated, expires, forced) VALUES "
                         "(?, 'brute force', 'logon.brute_force', '2024-03-04T10:00:00+00:00', "
                         "'2024-03-04T10:00:00+00:00', NULL, 0)", (ATTACKER,))
        state.db.execute("INSERT INTO blocks(network, reason, source, created, updated, expires, forced) VALUES "
                         "('198.51.100.99', 'old', 'manual', '2024-03-04T10:00:00+00:00', "
                         "'2024-03-04T10:00:00+00:00', '2024-03-04T11:00:00+00:00', 0)")
    state.close()
    code, doc, _ = hg(env, capsys, "logons", "report", "--since", "2024-03-04T00:00:00+00:00", "--format", "json")
    assert code == 0
    assert doc["logons"] == [{"time": "2024-03-04T10:01:40+00:00", "service": "sshd", "user": "ops", "ip": OWNER,
                              "method": "publickey", "at": f"{log}:12"}]
    assert [(f["ip"], f["failures"], f["users"]) for f in doc["failures_by_source"]] == [
        (ATTACKER, 10, 1), ("198.51.100.21", 1, 1)]
    assert [a["id"] for a in doc["alerts"]] == ["logon.brute_force"]
    assert doc["blocks"] == [{"network": ATTACKER, "reason": "brute force", "source": "logon.brute_force",
                              "expires": None}]
    later = hg(env, capsys, "logons", "report", "--since", "2024-03-05T00:00:00+00:00", "--format", "json")[1]
    assert (later["logons"], later["failures_by_source"], later["alerts"]) == ([], [], [])
    code, table, _ = hg(env, capsys, "logons", "report", "--since", "2024-03-04")
    assert code == 0 and "Brute force from 198.51.100.20" in table and "Blocks in force" in table


def test_the_table_output_names_each_new_alert(env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    log = write(env["dir"] / "auth.log", "".join(failed(i) for i in range(10)))
    code, out, _ = hg(env, capsys, "logons", "ingest", str(log))
    assert code == 1 and "logon.brute_force" in out and "10 new events" in out


@pytest.mark.parametrize(("argv", "config", "message"), [
    (["logons", "ingest"], None, "needs at least one FILE"),
    (["logons", "ingest", "/nonexistent/auth.log"], None, "no such file"),
    (["logons", "ingest", "{log}"], "[detect]\nnope = 1\n", "unknown setting 'detect.nope'"),
    (["logons", "ingest", "{log}"], "[detect.brute_force]\nfast_failures = 1\n", "fast_failures' must be at least 2"),
    (["logons", "ingest", "{log}"], "[detect.baseline]\ndimensions = [\"city\"]\n", "unknown city"),
    (["logons", "report", "--since", "yesterday"], None, "not a duration"),
    (["logons", "baseline", "approve", "ip", "nonsense"], None, "not an IP address"),
    (["logons", "baseline", "approve", "hour", "25"], None, "not an hour"),
    (["logons", "baseline"], None, "choose from 'list', 'approve', 'forget'"),
])
def test_bad_input_is_one_line_and_exit_2(env: dict[str, Path], capsys: pytest.CaptureFixture[str], argv: list[str],
                                          config: str | None, message: str) -> None:
    log = write(env["dir"] / "auth.log", failed(0))
    code, out, err = hg(env, capsys, *[a.replace("{log}", str(log)) for a in argv], config=config)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and message in err, err


def test_journal_entries_are_stored_once_and_read_on_after_the_last_cursor(
        env: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from tests.logons.test_journal_real import build_journal

    journal = env["dir"] / "remote.journal"
    build_journal(journal)  # two failures and a success (real journal files, read by the real journalctl)
    code, doc, err = hg(env, capsys, "logons", "ingest", "--journal-file", str(journal), "--format", "json")
    assert (code, err) == (0, "")
    assert doc["sources"] == [{"file": str(journal), "status": "new", "lines": 4, "new_events": 3, "known_events": 0}]
    code, doc, err = hg(env, capsys, "logons", "ingest", "--journal-file", str(journal), "--format", "json")
    assert (code, doc["sources"][0]["status"], doc["sources"][0]["new_events"]) == (0, "continued", 0)
    report = hg(env, capsys, "logons", "report", "--since", "2024-03-04", "--format", "json")[1]
    assert [(e["user"], e["ip"]) for e in report["logons"]] == [("ops", "2001:db8::13")]
    assert [f["ip"] for f in report["failures_by_source"]] == ["192.0.2.11", "192.0.2.12"]
