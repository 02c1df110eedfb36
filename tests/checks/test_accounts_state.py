"""accounts.new_since_last_scan over real scans of a real tree through a real state directory.

Time is the runner's ``started``: scans days apart run in a moment, never with sleep.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hostguard.cli import main
from hostguard.engine.runner import ScanOutcome, run_scan
from hostguard.findings import Finding, fingerprint
from hostguard.host.base import RootHost
from hostguard.store.state import StateStore
from tests.conftest import FAST, make_config

NEW = "accounts.new_since_last_scan"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MALLORY = {"kind": "user", "user": "mallory"}


def add_account(tree: Path, name: str, uid: int) -> None:
    with (tree / "etc/passwd").open("a") as fh:
        fh.write(f"{name}:x:{uid}:{uid}::/home/{name}:/bin/bash\n")
    with (tree / "etc/shadow").open("a") as fh:
        fh.write(f"{name}:!:19800:0:99999:7:::\n")


def remove_account(tree: Path, name: str) -> None:
    for rel in ("etc/passwd", "etc/shadow"):
        path = tree / rel
        path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                                if not line.startswith(f"{name}:")))


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(str(tmp_path / "state"))
    yield store
    store.close()


def scan(state: StateStore, tree: Path, at: datetime, only: str = "accounts", **accounts: Any) -> ScanOutcome:
    config = make_config(**FAST, accounts=accounts) if accounts else make_config(**FAST)
    return run_scan(RootHost(str(tree)), config, state, only=[only], started=at)


def new_accounts(outcome: ScanOutcome) -> list[Finding]:
    return [f for f in outcome.report.findings if f.id == NEW]


def test_new_account_stays_reported_until_its_period_ends(state: StateStore, clean_tree: Path) -> None:
    """The hit: mallory appears after the baseline and is reported on every scan for 7 days from the scan that
    first read her, `--only ssh` scans in between included (they read /etc/passwd, and use nothing up)."""
    assert new_accounts(scan(state, clean_tree, T0)) == []  # the baseline
    add_account(clean_tree, "mallory", 1005)
    seen = T0 + timedelta(hours=1)
    scan(state, clean_tree, seen, only="ssh")  # first to read her; reports nothing of accounts
    for days in (1, 2, 3):
        scan(state, clean_tree, T0 + timedelta(days=days), only="ssh")
        [found] = new_accounts(scan(state, clean_tree, T0 + timedelta(days=days, hours=6)))
        assert found.target == MALLORY
        assert found.evidence["first_seen"] == "2024-05-01T13:00:00+00:00"
        assert found.evidence["reported_until"] == "2024-05-08T13:00:00+00:00"
        assert found.title == "account 'mallory' (UID 1005) is new: first seen 2024-05-01"
    last = seen + timedelta(days=7)
    assert [f.target for f in new_accounts(scan(state, clean_tree, last - timedelta(minutes=1)))] == [MALLORY]
    assert new_accounts(scan(state, clean_tree, last)) == []  # the near miss: the period is over


def test_a_discarded_scan_uses_nothing_up(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          clean_tree: Path) -> None:
    """Through the command line: a JSON scan whose output nobody read, then `--only ssh`, then the real one."""
    args = ["--state", str(tmp_path / "s"), "scan", "--root", str(clean_tree), "--format", "json"]

    def findings(*extra: str) -> list[dict[str, Any]]:
        assert main([*args, *extra]) in (0, 1)
        return [f for f in json.loads(capsys.readouterr().out)["findings"] if f["id"] == NEW]

    assert findings("--only", "accounts") == []
    add_account(clean_tree, "mallory", 1005)
    findings("--only", "accounts")
    findings("--only", "ssh")
    assert [f["target"] for f in findings("--only", "accounts")] == [MALLORY]


def test_only_other_family_scan_does_not_baseline_accounts(state: StateStore, clean_tree: Path) -> None:
    """An `--only ssh` scan after the baseline records mallory as first seen then, never as part of the
    baseline: she is reported by the next accounts scan."""
    scan(state, clean_tree, T0)
    add_account(clean_tree, "mallory", 1005)
    scan(state, clean_tree, T0 + timedelta(hours=1), only="ssh")
    [found] = new_accounts(scan(state, clean_tree, T0 + timedelta(hours=2)))
    assert found.target == MALLORY and found.evidence["first_seen"] == "2024-05-01T13:00:00+00:00"


def test_the_first_scan_is_the_baseline_even_when_it_ran_only_ssh(state: StateStore, clean_tree: Path) -> None:
    """Near miss: every account present at the first scan that read them is known, whatever that scan ran."""
    add_account(clean_tree, "deploy", 1006)
    scan(state, clean_tree, T0, only="ssh")
    assert new_accounts(scan(state, clean_tree, T0 + timedelta(hours=1))) == []
    assert state.known_accounts(f"{RootHost(str(clean_tree)).machine_id()}:{state.state_uuid()}") is not None


def test_accepting_ends_the_report_and_undo_brings_it_back(state: StateStore, clean_tree: Path) -> None:
    scan(state, clean_tree, T0)
    add_account(clean_tree, "mallory", 1005)
    first = scan(state, clean_tree, T0 + timedelta(hours=1))
    [found] = new_accounts(first)
    assert f"hostguard accept {found.fingerprint}" in found.remediation.summary
    host = first.report.host.id
    state.accept(host, [state.findings_seen(host)[found.fingerprint]], "new colleague", "2024-05-01T14:00:00+00:00")
    after = scan(state, clean_tree, T0 + timedelta(hours=2))
    assert new_accounts(after) == [] and after.accepted == 1
    state.unaccept(host, [found.fingerprint], "", "2024-05-01T15:00:00+00:00")
    back = scan(state, clean_tree, T0 + timedelta(hours=3))
    assert [f.fingerprint for f in new_accounts(back)] == [found.fingerprint] and back.accepted == 0


def test_zero_days_means_until_accepted(state: StateStore, clean_tree: Path) -> None:
    scan(state, clean_tree, T0, new_account_days=0)
    add_account(clean_tree, "mallory", 1005)
    scan(state, clean_tree, T0 + timedelta(hours=1), new_account_days=0)
    [found] = new_accounts(scan(state, clean_tree, T0 + timedelta(days=400), new_account_days=0))
    assert found.target == MALLORY and "reported_until" not in found.evidence
    assert new_accounts(scan(state, clean_tree, T0 + timedelta(days=400))) == []  # the default 7 days are long over


def test_a_deleted_account_that_comes_back_is_new_again(state: StateStore, clean_tree: Path) -> None:
    """Deleted and re-created is a new account: reported from its return, and the accept of the old one lapses."""
    scan(state, clean_tree, T0)
    add_account(clean_tree, "mallory", 1005)
    [found] = new_accounts(scan(state, clean_tree, T0 + timedelta(hours=1)))
    host = f"{RootHost(str(clean_tree)).machine_id()}:{state.state_uuid()}"
    state.accept(host, [found.fingerprint], "contractor", "2024-05-01T14:00:00+00:00")
    remove_account(clean_tree, "mallory")
    scan(state, clean_tree, T0 + timedelta(days=1), only="ssh")  # sees her gone
    assert state.accepted(host) == []
    assert [(e.action, e.subject) for e in state.audit_log(host)] == [
        ("accept", found.fingerprint), ("lapse", found.fingerprint)]
    assert new_accounts(scan(state, clean_tree, T0 + timedelta(days=2))) == []
    add_account(clean_tree, "mallory", 1007)
    [back] = new_accounts(scan(state, clean_tree, T0 + timedelta(days=30)))
    assert back.fingerprint == found.fingerprint == fingerprint(NEW, MALLORY)  # same target, same fingerprint
    assert back.evidence["first_seen"] == "2024-05-31T12:00:00+00:00" and back.evidence["uid"] == 1007


def test_a_baseline_account_removed_and_re_added_is_new(state: StateStore, clean_tree: Path) -> None:
    add_account(clean_tree, "olduser", 1009)
    scan(state, clean_tree, T0)
    remove_account(clean_tree, "olduser")
    scan(state, clean_tree, T0 + timedelta(days=1))
    add_account(clean_tree, "olduser", 1009)
    [back] = new_accounts(scan(state, clean_tree, T0 + timedelta(days=2)))
    assert back.target == {"kind": "user", "user": "olduser"}


def test_unchanged_accounts_are_never_new(state: StateStore, clean_tree: Path) -> None:
    """Near miss: the baseline's accounts over many scans, one of them renumbered (same name, same account)."""
    for day in range(3):
        assert new_accounts(scan(state, clean_tree, T0 + timedelta(days=day))) == []
    passwd = clean_tree / "etc/passwd"
    lines = passwd.read_text().splitlines(keepends=True)
    name, _, uid, *rest = lines[-1].split(":")
    lines[-1] = ":".join([name, "x", str(int(uid) + 100), *rest])
    passwd.write_text("".join(lines))
    assert new_accounts(scan(state, clean_tree, T0 + timedelta(days=4))) == []
