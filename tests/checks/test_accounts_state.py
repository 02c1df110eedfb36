"""accounts.new_since_last_scan compares two real scans through a real state directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostguard.cli import main


def _scan(capsys, state: Path, tree: Path) -> list[dict]:
    code = main(["--state", str(state), "scan", "--root", str(tree), "--only", "accounts", "--format", "json"])
    assert code in (0, 1)
    return json.loads(capsys.readouterr().out)["findings"]


def test_new_account_reported_once_on_next_scan(capsys, tmp_path: Path, clean_tree: Path) -> None:
    state = tmp_path / "state"
    first = _scan(capsys, state, clean_tree)
    assert [f for f in first if f["id"] == "accounts.new_since_last_scan"] == []  # baseline only
    again = _scan(capsys, state, clean_tree)
    assert [f for f in again if f["id"] == "accounts.new_since_last_scan"] == []  # nothing changed
    with (clean_tree / "etc/passwd").open("a") as fh:
        fh.write("mallory:x:1005:1005::/home/mallory:/bin/bash\n")
    with (clean_tree / "etc/shadow").open("a") as fh:
        fh.write("mallory:!:20000:0:99999:7:::\n")
    new = [f for f in _scan(capsys, state, clean_tree) if f["id"] == "accounts.new_since_last_scan"]
    assert [f["target"] for f in new] == [{"kind": "user", "user": "mallory"}]
    later = [f for f in _scan(capsys, state, clean_tree) if f["id"] == "accounts.new_since_last_scan"]
    assert later == []  # remembered after being reported once


@pytest.mark.parametrize("only", ["ssh", "accounts.extra_uid0"])
def test_only_other_family_scan_does_not_baseline_accounts(capsys, tmp_path: Path, clean_tree: Path, only: str) -> None:
    """A scan that did not look for new accounts reads /etc/passwd too (sshd's Match evaluation, other account
    checks), but must not record the accounts: an account added in between would never be reported as new."""
    state = tmp_path / "state"
    _scan(capsys, state, clean_tree)
    with (clean_tree / "etc/passwd").open("a") as fh:
        fh.write("mallory:x:1005:1005::/home/mallory:/bin/bash\n")
    code = main(["--state", str(state), "scan", "--root", str(clean_tree), "--only", only, "--format", "json"])
    assert code in (0, 1)
    capsys.readouterr()
    new = [f for f in _scan(capsys, state, clean_tree) if f["id"] == "accounts.new_since_last_scan"]
    assert [f["target"] for f in new] == [{"kind": "user", "user": "mallory"}]
