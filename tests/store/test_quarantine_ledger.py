"""The quarantine ledger (store/quarantine.py) and migration 8, which adds it to state.db."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from hostguard.store.quarantine import FAILED, PURGED, QUARANTINED, RESTORED, Entry, LedgerError, QuarantineStore
from hostguard.store.state import MIGRATIONS, StateStore

# Schema 7 as the hostguard before the ledger wrote it, written out here (not taken from MIGRATIONS), holding a
# row in a table from several earlier migrations.
SCHEMA_7_ROWS = """
INSERT INTO meta(key, value) VALUES ('state_uuid', '6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d');
INSERT INTO audit(time, host_key, action, subject, reason, detail)
    VALUES ('2024-05-02T09:00:00Z', 'h', 'block', '198.51.100.7/32', 'brute force', '');
INSERT INTO blocks(network, reason, source, created, updated, expires, forced)
    VALUES ('198.51.100.7/32', 'brute force', 'manual', '2024-05-04T12:00:00+00:00', '2024-05-04T12:00:00+00:00',
            NULL, 0);
INSERT INTO logon_baseline(host_key, dimension, value, seen, approved, origin, first_seen, last_seen)
    VALUES ('h', 'ip', '192.0.2.11', 3, 1, 'learned', '2024-05-01T08:00:00+00:00', '2024-05-03T08:00:00+00:00');
"""

ODD = b"/srv/www/caf\xe9/new\nline .php"   # not UTF-8, a newline and a space


def entry(**changes: object) -> Entry:
    base = Entry("5e1f0a9c3b2d", "h", ODD, "7c" * 32, 2048, 0o104755, 1234, 5678, 1714730462123456789,
                 1714730400000000001, 1714730400000000002, 2049, 131075, 2, 0x80010,
                 ((b"user.origin", b"web\x00\xff"), (b"security.capability", b"\x01\x00\x00\x02" + b"\x00" * 16)),
                 "webshell_eval", "malware scan", bytes(range(32)), "5e1f0a9c3b2d.hgq", "2024-05-05T12:00:00+00:00",
                 ({"pid": 4242, "exe": "/tmp/x", "start_time": 1714730000.5, "kill": None, "detail": ""},))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_migration_8_adds_the_ledger_and_keeps_every_row(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    db = sqlite3.connect(directory / "state.db", isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:7], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
    db.executescript(SCHEMA_7_ROWS)
    db.close()
    state = StateStore(str(directory))
    try:
        assert state.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert "CREATE TABLE quarantine" in MIGRATIONS[7]  # number 8, whatever was appended after it
        assert state.state_uuid() == "6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d"
        assert [(a.action, a.subject) for a in state.audit_log()] == [("block", "198.51.100.7/32")]
        assert state.db.execute("SELECT network FROM blocks").fetchall() == [("198.51.100.7/32",)]
        assert state.db.execute("SELECT value FROM logon_baseline").fetchall() == [("192.0.2.11",)]
        ledger = QuarantineStore(state)
        assert ledger.listing() == []
        ledger.add(entry())
        assert ledger.listing() == [entry()]
    finally:
        state.close()


def test_an_entry_comes_back_exactly_bytes_included(tmp_path: Path) -> None:
    state = StateStore(str(tmp_path / "state"))
    ledger = QuarantineStore(state)
    ledger.add(entry())
    got = ledger.get("5e1f0a9c3b2d")
    assert got == entry()
    assert got.path == ODD and got.xattrs[0] == (b"user.origin", b"web\x00\xff") and got.key == bytes(range(32))
    assert state.db.execute("SELECT typeof(path), typeof(key) FROM quarantine").fetchone() == ("blob", "blob")
    # the JSON form follows the bytes policy and never shows the key
    as_json = got.to_dict()
    assert as_json["path"] == {"text": "/srv/www/caf\\xe9/new\nline .php",
                               "base64": "L3Nydi93d3cvY2Fm6S9uZXcKbGluZSAucGhw"}
    assert as_json["mode"] == "4755" and as_json["xattrs"] == ["user.origin", "security.capability"]
    assert "key" not in as_json and bytes(range(32)).hex() not in str(as_json)
    state.close()


def test_ids_by_unique_prefix_and_clear_errors(tmp_path: Path) -> None:
    ledger = QuarantineStore(StateStore(str(tmp_path / "state")))
    ledger.add(entry())
    ledger.add(entry(id="5e1f77777777", stored="5e1f77777777.hgq"))
    assert ledger.get("5e1f0a").id == "5e1f0a9c3b2d"
    with pytest.raises(LedgerError, match="quarantine id 5e1f is ambiguous: 5e1f0a9c3b2d, 5e1f77777777"):
        ledger.get("5e1f")
    with pytest.raises(LedgerError, match="no quarantine entry abcdef"):
        ledger.get("abcdef")
    with pytest.raises(LedgerError, match="give at least 4 characters"):
        ledger.get("5e")


def test_states_move_and_rows_stay(tmp_path: Path) -> None:
    ledger = QuarantineStore(StateStore(str(tmp_path / "state")))
    ledger.add(entry())
    restored = ledger.mark(entry(), RESTORED, "2024-05-06T08:00:00+00:00", restored_to=b"/root/kept\xff")
    assert (restored.state, restored.restored_to, restored.restored_at) == (
        RESTORED, b"/root/kept\xff", "2024-05-06T08:00:00+00:00")
    purged = ledger.mark(restored, PURGED, "2024-05-07T08:00:00+00:00")
    assert ledger.listing() == [purged]
    assert (purged.state, purged.purged_at, purged.restored_to) == (PURGED, "2024-05-07T08:00:00+00:00",
                                                                    b"/root/kept\xff")
    failed = ledger.mark(entry(), FAILED, "2024-05-08T08:00:00+00:00", note="not removed (Operation not permitted)")
    assert ledger.get(failed.id).note == "not removed (Operation not permitted)"
    assert QUARANTINED == "quarantined"


def test_a_damaged_row_is_one_clear_error(tmp_path: Path) -> None:
    state = StateStore(str(tmp_path / "state"))
    ledger = QuarantineStore(state)
    ledger.add(entry())
    state.db.execute("UPDATE quarantine SET xattrs='not json'")
    with pytest.raises(LedgerError, match="quarantine entry 5e1f0a9c3b2d: the ledger row is damaged"):
        ledger.get("5e1f0a9c3b2d")
    state.db.execute("UPDATE quarantine SET xattrs='[]', state='lost'")
    with pytest.raises(LedgerError, match="the ledger row is damaged \\(state 'lost'\\)"):
        ledger.listing()
