"""`scan --diff` and `hostguard history`: real scans of fixture trees changed between scans, through a real
state directory. Time is the runner's ``started`` (scans days apart run in a moment, never with sleep)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hostguard.cli import main
from hostguard.engine import runner
from hostguard.engine.runner import ScanOutcome, run_scan
from hostguard.host.base import RootHost
from hostguard.report.diff import ScanDiff, compare
from hostguard.store.state import PastFinding, StateStore
from tests.conftest import CLEAN, FAST, FIXTURES, HITS, build_tree, make_config

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SSHD = "etc/ssh/sshd_config"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(str(tmp_path / "state"))
    yield store
    store.close()


def scan(state: StateStore, tree: Path, at: datetime, only: str = "ssh,accounts", **sections: Any) -> ScanOutcome:
    return run_scan(RootHost(str(tree)), make_config(**{**FAST, **sections}), state, only=only.split(","),
                    root_label=str(tree), started=at)


def diff_of(state: StateStore, outcome: ScanOutcome) -> ScanDiff:
    current = state.scan(outcome.scan_id)
    assert current is not None
    return compare(current, state.previous_comparable(outcome.scan_id))


def named(entries: tuple[PastFinding, ...]) -> set[tuple[str, str]]:
    """Each entry as (check id, the target's main value): which problem, not how many."""
    return {(e.check_id, str(e.target.get(e.target["kind"], e.target.get("setting")))) for e in entries}


def test_a_fix_is_resolved_and_a_new_problem_is_new(state: StateStore, tmp_path: Path) -> None:
    """The hit: MaxAuthTries 10 fixed between two scans is resolved; an extra UID 0 account added is new."""
    tree = build_tree(tmp_path / "h", HITS / "ssh.max_auth_tries")
    first = diff_of(state, scan(state, tree, T0))
    assert first.against is None  # the first scan: everything it reports is new
    assert named(first.new) == {("ssh.max_auth_tries", "MaxAuthTries")}

    shutil.copy2(CLEAN / SSHD, tree / SSHD)  # the fix
    for rel in ("etc/passwd", "etc/shadow"):  # the new problem: toor, a second UID 0
        shutil.copy2(HITS / "accounts.extra_uid0" / rel, tree / rel)
    second = diff_of(state, scan(state, tree, T0 + DAY))
    assert second.against is not None and second.against.started == T0.astimezone().isoformat()
    assert named(second.resolved) == {("ssh.max_auth_tries", "MaxAuthTries")}
    assert ("accounts.extra_uid0", "toor") in named(second.new)
    assert all(e.target.get("user") == "toor" for e in second.new)  # nothing else is new
    assert second.open == () and second.not_checked == ()

    third = diff_of(state, scan(state, tree, T0 + 2 * DAY))  # the near miss: nothing changed
    assert third.new == () and third.resolved == ()
    assert named(third.open) == named(second.new)


def _weak_tree(tmp_path: Path) -> Path:
    """The clean tree whose only crackable account is legacy (a DES hash of a common password: fast to try)."""
    tree = build_tree(tmp_path / "weak")
    source = HITS / "weak_passwords.system" / "etc"
    for rel in ("passwd", "shadow"):
        lines = [ln for ln in (tree / "etc" / rel).read_text().splitlines() if not ln.startswith(("root:", "alice:"))]
        lines += [ln for ln in (source / rel).read_text().splitlines() if ln.startswith("legacy:")]
        (tree / "etc" / rel).write_text("\n".join(lines) + "\n")
    return tree


def test_a_budget_skip_is_not_a_fix(state: StateStore, tmp_path: Path) -> None:
    """The hit: legacy's weak password found, then changed, and the check runs out of budget before trying the new
    one: the finding is "not checked now", never resolved. The near miss: the account removed and the check
    complete: resolved."""
    tree = _weak_tree(tmp_path)
    found = scan(state, tree, T0, only="weak_passwords.system")
    assert [f.target["user"] for f in found.report.findings] == ["legacy"]
    # the owner sets a new password (another weak one, as it happens): a new hash is tried from the start, and
    # with no budget at all the check cannot tell
    shadow = tree / "etc/shadow"
    other_hash = next(ln.split(":")[1] for ln in (HITS / "weak_passwords.system/etc/shadow").read_text().splitlines()
                      if ln.startswith("oldsvc:"))
    shadow.write_text("".join(":".join([p[0], other_hash, *p[2:]]) if ln.startswith("legacy:") else ln
                              for ln in shadow.read_text().splitlines(keepends=True) for p in [ln.split(":")]))
    starved = scan(state, tree, T0 + DAY, only="weak_passwords.system", weak_passwords={"budget_seconds": 0, "floor": 0})
    assert [(s.check, s.reason) for s in starved.report.skipped] == [("weak_passwords.system", "budget")], starved.report
    d = diff_of(state, starved)
    assert d.resolved == () and d.new == () and d.open == ()
    assert named(d.not_checked) == {("weak_passwords.system", "legacy")}

    for rel in ("passwd", "shadow"):
        path = tree / "etc" / rel
        path.write_text("".join(ln for ln in path.read_text().splitlines(keepends=True) if not ln.startswith("legacy:")))
    gone = scan(state, tree, T0 + 2 * DAY, only="weak_passwords.system")
    assert gone.report.complete
    d = diff_of(state, gone)
    assert d.against is not None and d.against.id == starved.scan_id
    assert d.resolved == ()  # the starved scan did not complete the check: still no verdict against it
    # against the scan that did complete it (both complete): resolved
    found_scan, gone_scan = state.scan(found.scan_id), state.scan(gone.scan_id)
    assert found_scan is not None and gone_scan is not None
    assert named(compare(gone_scan, found_scan).resolved) == {("weak_passwords.system", "legacy")}


def test_accepted_and_suppressed_findings_are_not_new_nor_resolved(state: StateStore, tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "h", HITS / "ssh.max_auth_tries")
    first = scan(state, tree, T0, only="ssh")
    [finding] = [f for f in first.report.findings if f.id == "ssh.max_auth_tries"]
    suppressed = scan(state, tree, T0 + DAY, only="ssh",
                      suppress={"rules": [{"id": "ssh.max_auth_tries", "reason": "lab"}]})
    d = diff_of(state, suppressed)
    assert finding.fingerprint not in {e.fingerprint for e in d.new + d.resolved + d.open + d.not_checked}
    state.accept(first.report.host.id, [finding.fingerprint], "lab", "2024-05-03T00:00:00+00:00")
    accepted = scan(state, tree, T0 + 2 * DAY, only="ssh")
    assert accepted.accepted == 1
    d = diff_of(state, accepted)
    assert d.new == () and d.resolved == ()
    state.unaccept(first.report.host.id, [finding.fingerprint], "", "2024-05-04T00:00:00+00:00")
    back = diff_of(state, scan(state, tree, T0 + 3 * DAY, only="ssh"))  # reported again: open, not new
    assert [e.fingerprint for e in back.open] == [finding.fingerprint] and back.new == ()


def test_comparable_means_same_root_and_most_checks_in_common(state: StateStore, tmp_path: Path) -> None:
    """A full scan is compared with the last full scan even after an --only ssh scan; an --only ssh scan
    compares the ssh checks only (the accounts finding it did not look for is not resolved); another root is
    never compared with."""
    tree = build_tree(tmp_path / "h", HITS / "accounts.extra_uid0")
    full = scan(state, tree, T0)
    assert any(f.id == "accounts.extra_uid0" for f in full.report.findings)
    ssh_only = diff_of(state, scan(state, tree, T0 + DAY, only="ssh"))
    assert ssh_only.against is not None and ssh_only.against.id == full.scan_id
    assert ssh_only.resolved == () and ssh_only.not_checked == ()
    assert {c.split(".")[0] for c in ssh_only.compared} == {"ssh"}
    again = diff_of(state, scan(state, tree, T0 + 2 * DAY))
    assert again.against is not None and again.against.id == full.scan_id
    assert again.new == () and again.resolved == ()
    copy = build_tree(tmp_path / "copy", HITS / "accounts.extra_uid0")
    other = diff_of(state, scan(state, copy, T0 + 3 * DAY))
    assert other.against is None and ("accounts.extra_uid0", "toor") in named(other.new)


def test_history_is_pruned_to_keep(state: StateStore, tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "h")
    state.accept("some-host", ["ab" * 16], "fine", "2024-05-01T00:00:00+00:00")
    ids = [scan(state, tree, T0 + n * DAY, only="ssh", scan={"history_keep": 2}).scan_id for n in range(3)]
    key = RootHost(str(tree)).machine_id() + ":" + state.state_uuid()
    assert state.scan_ids(key) == ids[1:]
    assert state.scan(ids[0]) is None
    assert state.db.execute("SELECT COUNT(*) FROM scan_checks WHERE scan_id=?", (ids[0],)).fetchone() == (0,)
    assert [a.fingerprint for a in state.accepted("some-host")] == ["ab" * 16]
    assert [e.action for e in state.audit_log()] == ["accept"]


# --- the command line ---------------------------------------------------------------------------------

def cli(capsys: pytest.CaptureFixture[str], state: Path, *args: str, config: Path | None = None) -> tuple[int, str, str]:
    code = main(["--config", str(config or FIXTURES / "fast.toml"), "--state", str(state), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The runner's clock fixed, so two scans of one tree render the same bytes."""
    monkeypatch.setattr(runner, "now", lambda: T0)
    yield


def test_diff_exit_code_counts_only_new_findings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "h", HITS / "ssh.empty_passwords")
    code, out, _ = cli(capsys, tmp_path / "s", "scan", "--root", str(tree), "--only", "ssh", "--diff")
    assert code == 1 and "every finding is new" in out and "NEW CRITICAL (1)" in out
    code, out, _ = cli(capsys, tmp_path / "s", "scan", "--root", str(tree), "--only", "ssh", "--diff")
    assert code == 0 and "STILL OPEN" in out and "New: none." in out  # known, still there: not new
    code, _, _ = cli(capsys, tmp_path / "s", "scan", "--root", str(tree), "--only", "ssh")
    assert code == 1  # without --diff every finding counts
    code, out, _ = cli(capsys, tmp_path / "s", "scan", "--root", str(tree), "--only", "ssh", "--diff",
                       "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["diff"]["new"] == [] and data["diff"]["against"]["families"] == ["ssh"]
    assert "ssh.empty_passwords" in {e["id"] for e in data["diff"]["open"]}
    (tree / "etc/ssh/sshd_config.d/05-legacy.conf").unlink()  # the fix
    code, out, _ = cli(capsys, tmp_path / "s", "scan", "--root", str(tree), "--only", "ssh", "--diff",
                       "--format", "json")
    assert code == 0 and "ssh.empty_passwords" in {e["id"] for e in json.loads(out)["diff"]["resolved"]}


@pytest.mark.parametrize("fmt", ["table", "json", "sarif"])
def test_output_file_holds_what_stdout_would(capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str,
                                             frozen_clock: None) -> None:
    tree = build_tree(tmp_path / "h", HITS / "ssh.max_auth_tries")
    args = ["scan", "--root", str(tree), "--only", "ssh", "--format", fmt]
    code, out, _ = cli(capsys, tmp_path / "s", *args)
    report = tmp_path / "reports" / f"report.{fmt}"
    report.parent.mkdir()
    report.write_text("an older report")
    code2, out2, _ = cli(capsys, tmp_path / "s", *args, "-o", str(report))
    assert (code, code2, out2) == (0, 0, "")  # a low finding: under the default --fail-on high
    written = report.read_text()
    if fmt == "json":  # the timings differ from run to run
        first, second = json.loads(out), json.loads(written)
        first.pop("stats"), second.pop("stats")
        assert first == second
    else:
        assert written == out
    assert "ssh.max_auth_tries" in written and "\x1b[" not in written  # plain text, no colour codes
    assert sorted(p.name for p in report.parent.iterdir()) == [report.name]  # no temporary file left


def test_output_to_a_missing_directory_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                              clean_tree: Path) -> None:
    code, out, err = cli(capsys, tmp_path / "s", "scan", "--root", str(clean_tree), "--only", "ssh",
                         "-o", str(tmp_path / "nowhere" / "r.txt"))
    assert code == 2 and out == ""
    assert err == f"hostguard: error: -o {tmp_path}/nowhere/r.txt: no such directory {tmp_path}/nowhere\n"
    assert not (tmp_path / "s").exists()  # refused before the scan: nothing recorded


def test_history_lists_scans_and_keeps_history_keep(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "h", HITS / "ssh.max_auth_tries")
    config = tmp_path / "keep2.toml"
    config.write_text((FIXTURES / "fast.toml").read_text() + "\n[scan]\nhistory_keep = 2\n")
    scan_args = ["scan", "--root", str(tree), "--only", "ssh", "--format", "json"]
    for step in range(3):
        if step == 2:
            shutil.copy2(CLEAN / SSHD, tree / SSHD)  # fixed before the third scan
        code, _, err = cli(capsys, tmp_path / "s", *scan_args, config=config)
        assert code == 0, err
    code, out, err = cli(capsys, tmp_path / "s", "history", "--root", str(tree), "--format", "json", config=config)
    assert code == 0, err
    scans = json.loads(out)["scans"]
    assert [s["scan_id"] for s in scans] == [3, 2]  # newest first; scan 1 pruned
    # scan 2 was compared with scan 1 when it ran; scan 1 is gone now, so its counts cannot be told any more
    assert [(s["new"], s["resolved"], s["against"]) for s in scans] == [(0, 1, 2), (None, None, None)]
    assert scans[0]["families"] == ["ssh"] and scans[0]["root"] == str(tree) and scans[0]["complete"] is False
    code, out, _ = cli(capsys, tmp_path / "s", "history", "--root", str(tree), config=config)
    assert code == 0 and "0 / 1 vs 2" in out and "earlier scans pruned" in out


def test_html_format_is_wired(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--format html goes to report/html.py and honours -o (a self-contained page, nothing on stdout)."""
    tree = build_tree(tmp_path / "h", HITS / "ssh.max_auth_tries")
    code, out, _ = cli(capsys, tmp_path / "s", "scan", "--root", str(tree), "--only", "ssh", "--format", "html",
                       "-o", str(tmp_path / "report.html"))
    assert code == 0 and out == ""
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "ssh.max_auth_tries" in page


def test_a_scan_not_recorded_stays_out_of_the_history(state: StateStore, tmp_path: Path) -> None:
    """The re-scans `hostguard fix` makes to verify a fix (record=False) are not looks at the host: the next
    --diff compares with the owner's last scan, and history does not list them. Near miss: a recorded scan is
    listed."""
    tree = build_tree(tmp_path / "h", HITS / "ssh.max_auth_tries")
    first = scan(state, tree, T0)
    check = run_scan(RootHost(str(tree)), make_config(**FAST), state, only=["ssh"], root_label=str(tree),
                     started=T0 + DAY, record=False)
    assert check.scan_id == 0 and [f.id for f in check.report.findings] == ["ssh.max_auth_tries"]
    assert state.scan_ids(first.report.host.id) == [first.scan_id]
    second = scan(state, tree, T0 + 2 * DAY)
    assert state.scan_ids(first.report.host.id) == [first.scan_id, second.scan_id]
