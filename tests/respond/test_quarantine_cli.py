"""`hostguard --state DIR quarantine list | restore ID [--to PATH] [--force] | purge ID` through cli.main."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.cli import main
from hostguard.respond import quarantine as q
from hostguard.store.state import StateStore
from tests.conftest import need_root
from tests.respond.quarantine_helpers import HOST, ident, unfreeze

NAME = b"caf\xe9 new\nline.php"   # not UTF-8, a space and a newline
DATA = b"<?php system($_GET['hostguard-test']); ?>"


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, bytes, str]]:
    """A state dir holding one quarantined file: (state dir, original path, entry id)."""
    need_root("quarantine")
    web = tmp_path / "www"
    web.mkdir()
    path = os.fsencode(web) + b"/" + NAME
    with open(path, "xb") as f:
        f.write(DATA)
    os.utime(path, ns=(1_700_000_000_000_000_001, 1_600_000_000_000_000_002))
    state = StateStore(str(tmp_path / "state"))
    dev, ino = ident(path)
    done = q.quarantine(state, HOST, path, dev, ino, sha256=None, rule="hostguard.webshell_system",
                        reason="malware scan", clock=lambda: "2026-01-01T12:00:00+00:00")
    state.close()
    yield tmp_path / "state", path, done.entry.id
    unfreeze(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_as_a_table_and_as_json(setup: tuple[Path, bytes, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, path, eid = setup
    code, out, err = run(capsys, "--state", str(state), "quarantine", "list")
    assert (code, err) == (0, "")
    shown = os.fsdecode(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").replace("\n", "\\n")
    assert out.splitlines() == [
        f"{'ID':<12}  {'STATE':<11}  {'WHEN':<25}  {'SIZE':>10}  {'RULE':<24}  PATH",
        f"{eid:<12}  quarantined  2026-01-01T12:00:00+00:00  {len(DATA):>10}  hostguard.webshell_system  "
        + shown]
    code, out, err = run(capsys, "--state", str(state), "quarantine", "list", "--format", "json")
    [entry] = json.loads(out)["quarantine"]
    assert (code, entry["id"], entry["state"], entry["size"], entry["mtime_ns"]) == (
        0, eid, "quarantined", len(DATA), 1_600_000_000_000_000_002)
    assert entry["path"] == {"text": shown.replace("\\n", "\n"), "base64": base64.b64encode(path).decode()}
    assert "key" not in entry


def test_restore_then_purge(setup: tuple[Path, bytes, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, path, eid = setup
    code, out, err = run(capsys, "--state", str(state), "quarantine", "restore", eid[:6])
    assert (code, err) == (0, "")
    assert out.splitlines()[0].startswith(f"restored {eid} to ")
    assert "ctime cannot be restored (no call sets it): it is the time of the restore" in out
    with open(path, "rb") as f:
        assert f.read() == DATA
    assert os.stat(path).st_mtime_ns == 1_600_000_000_000_000_002
    code, out, err = run(capsys, "--state", str(state), "quarantine", "restore", eid)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"hostguard: error: quarantine entry {eid} is restored to ")
    code, out, err = run(capsys, "--state", str(state), "quarantine", "purge", eid)
    assert (code, err) == (0, "") and out.startswith(f"purged {eid}: its stored copy of ")
    assert os.listdir(state / "quarantine") == []
    code, out, err = run(capsys, "--state", str(state), "quarantine", "list", "--format", "json")
    assert [(e["id"], e["state"]) for e in json.loads(out)["quarantine"]] == [(eid, "purged")]
    store = StateStore(str(state))
    assert [a.action for a in store.audit_log()] == ["quarantine", "restore", "restore", "purge"]
    store.close()


def test_restore_onto_a_file_needs_force_and_to_takes_a_new_path(setup: tuple[Path, bytes, str],
                                                                capsys: pytest.CaptureFixture[str],
                                                                tmp_path: Path) -> None:
    state, path, eid = setup
    with open(path, "xb") as f:
        f.write(b"owner")
    code, out, err = run(capsys, "--state", str(state), "quarantine", "restore", eid)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.endswith("exists now: restore --force quarantines it first, or restore --to PATH\n")
    elsewhere = tmp_path / "kept.bin"
    code, out, err = run(capsys, "--state", str(state), "quarantine", "restore", eid, "--to", str(elsewhere))
    assert (code, err) == (0, "") and elsewhere.read_bytes() == DATA
    with open(path, "rb") as f:
        assert f.read() == b"owner"


@pytest.mark.parametrize(("args", "message"), [
    (["quarantine"], "quarantine needs a subcommand: list, restore ID, purge ID"),
    (["quarantine", "restore"], "the following arguments are required: ID"),
    (["quarantine", "restore", "ffffffffffff"], "no quarantine entry ffffffffffff (hostguard quarantine list shows them)"),
    (["quarantine", "purge", "ab"], "quarantine id 'ab': give at least 4 characters of the id"),
    (["quarantine", "list", "--format", "xml"], "invalid choice: 'xml'"),
])
def test_bad_input_is_one_line_and_exit_2(setup: tuple[Path, bytes, str], capsys: pytest.CaptureFixture[str],
                                          args: list[str], message: str) -> None:
    state, _, _ = setup
    code, out, err = run(capsys, "--state", str(state), *args)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_a_missing_stored_copy_or_a_damaged_ledger_is_one_line(setup: tuple[Path, bytes, str],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    state, _, eid = setup
    (state / "quarantine" / f"{eid}.hgq").unlink()
    code, out, err = run(capsys, "--state", str(state), "quarantine", "restore", eid)
    assert (code, out) == (2, "")
    assert err == f"hostguard: error: quarantine entry {eid}: its stored copy {state}/quarantine/{eid}.hgq is missing\n"
    store = StateStore(str(state))
    store.db.execute("UPDATE quarantine SET processes='{broken'")
    store.close()
    for args in (["list"], ["restore", eid], ["purge", eid]):
        code, out, err = run(capsys, "--state", str(state), "quarantine", *args)
        assert (code, out) == (2, "")
        assert err.startswith(f"hostguard: error: quarantine entry {eid}: the ledger row is damaged") and \
            err.count("\n") == 1
    store = StateStore(str(state))
    store.db.execute("DROP TABLE quarantine")
    store.close()
    code, out, err = run(capsys, "--state", str(state), "quarantine", "list")
    assert (code, out, err) == (2, "", "hostguard: error: state.db: no such table: quarantine\n")
