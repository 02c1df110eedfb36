"""state.db: migrations from every older schema, the cache directory, WAL, and account history."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hostguard import __version__
from hostguard.store.state import MIGRATIONS, StateError, StateStore

HOST_KEY = "0123456789abcdef0123456789abcdef:6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d"
CAFE = b"caf\xe9".decode("utf-8", "surrogateescape")  # an account name that is not UTF-8

# A plausible row for each table a migration creates. A new migration that adds a table must add its row
# here (test_every_table_has_a_sample_row says so), so upgrades from every older version keep real data.
SAMPLE_ROWS: dict[str, dict[str, Any]] = {
    "meta": {"key": "state_uuid", "value": "6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d"},
    "scans": {"host_key": HOST_KEY, "started": "2024-05-01T12:00:00Z", "root": None, "complete": 0, "findings": 7},
    "accounts_seen": {"host_key": HOST_KEY, "name": b"caf\xe9", "uid": 1001, "first_seen": "2024-04-01T08:00:00Z"},
}


def migrate_by_hand(db: sqlite3.Connection, upto: int) -> None:
    """Apply the first ``upto`` migrations the way StateStore._migrate does."""
    for number, script in enumerate(MIGRATIONS[:upto], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")


def old_database(tmp_path: Path, upto: int) -> tuple[Path, sqlite3.Connection]:
    """A state directory whose state.db an older hostguard left at schema ``upto``, and a connection to it."""
    directory = tmp_path / "state"
    directory.mkdir()
    db = sqlite3.connect(directory / "state.db", isolation_level=None)
    migrate_by_hand(db, upto)
    return directory, db


def tables(db: sqlite3.Connection) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]


def schema(db: sqlite3.Connection) -> list[tuple[str, str, str | None]]:
    """The schema, whitespace-normalised so a reformatted migration compares equal."""
    rows = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    return [(kind, name, " ".join(sql.split()) if sql else None) for kind, name, sql in rows]


def rows_of(db: sqlite3.Connection, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    return db.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()


def fresh_schema(tmp_path: Path) -> list[tuple[str, str, str | None]]:
    store = StateStore(str(tmp_path / "fresh"))
    try:
        return schema(store.db)
    finally:
        store.close()


def test_every_table_has_a_sample_row(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "all.db", isolation_level=None)
    migrate_by_hand(db, len(MIGRATIONS))
    assert tables(db) == sorted(SAMPLE_ROWS), "add a plausible row to SAMPLE_ROWS for each new table"
    db.close()


@pytest.mark.parametrize("version", range(len(MIGRATIONS) + 1))
def test_upgrade_from_older_version(tmp_path: Path, version: int) -> None:
    """From every older user_version (and the current one: reopening must change nothing)."""
    directory, db = old_database(tmp_path, version)
    assert db.execute("PRAGMA user_version").fetchone()[0] == version
    inserted: dict[str, dict[str, Any]] = {}
    for table in tables(db):
        row = SAMPLE_ROWS[table]
        db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
        inserted[table] = row
    db.close()
    if version == len(MIGRATIONS):
        assert inserted == SAMPLE_ROWS  # the current schema takes a row in every table

    store = StateStore(str(directory))
    try:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert schema(store.db) == fresh_schema(tmp_path)
        for table, row in inserted.items():
            assert rows_of(store.db, table, list(row)) == [tuple(row.values())], table
    finally:
        store.close()


def test_upgraded_data_is_used(tmp_path: Path) -> None:
    """Rows written before the store opened are what its methods return."""
    directory, db = old_database(tmp_path, len(MIGRATIONS))
    for table in ("meta", "accounts_seen"):
        row = SAMPLE_ROWS[table]
        db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    db.close()
    store = StateStore(str(directory))
    try:
        assert store.state_uuid() == "6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d"
        assert store.known_accounts(HOST_KEY) == {CAFE: "2024-04-01T08:00:00Z"}
    finally:
        store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    directory, db = old_database(tmp_path, len(MIGRATIONS))
    newer = len(MIGRATIONS) + 1
    db.execute(f"PRAGMA user_version={newer}")
    db.close()
    message = f"state directory {directory}: state.db schema {newer} is newer than this hostguard ({len(MIGRATIONS)})"
    with pytest.raises(StateError) as raised:
        StateStore(str(directory))
    assert str(raised.value) == message
    db = sqlite3.connect(directory / "state.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == newer  # left as found
    db.close()


def test_cache_dropped_on_version_change_state_kept(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    store = StateStore(str(directory))
    uuid = store.state_uuid()
    store.remember_accounts(HOST_KEY, [("alice", 1000)], "2024-04-01T08:00:00Z")
    store.close()
    cache = directory / "cache"
    assert (cache / "VERSION").read_text() == __version__ + "\n"
    (cache / "VERSION").write_text("0.0.1-old\n")
    (cache / "sshd-dump.json").write_text("{}")

    store = StateStore(str(directory))
    try:
        assert store.cache_dir == cache
        assert sorted(p.name for p in cache.iterdir()) == ["VERSION"]
        assert (cache / "VERSION").read_text() == __version__ + "\n"
        assert store.state_uuid() == uuid
        assert store.known_accounts(HOST_KEY) == {"alice": "2024-04-01T08:00:00Z"}
    finally:
        store.close()


def test_cache_without_stamp_is_dropped(tmp_path: Path) -> None:
    cache = tmp_path / "state" / "cache"
    cache.mkdir(parents=True)
    (cache / "leftover").write_text("x")
    StateStore(str(tmp_path / "state")).close()
    assert sorted(p.name for p in cache.iterdir()) == ["VERSION"]


def test_cache_kept_when_version_is_the_same(tmp_path: Path) -> None:
    StateStore(str(tmp_path / "state")).close()
    (tmp_path / "state" / "cache" / "sshd-dump.json").write_text("{}")
    StateStore(str(tmp_path / "state")).close()
    assert sorted(p.name for p in (tmp_path / "state" / "cache").iterdir()) == ["VERSION", "sshd-dump.json"]


def test_journal_mode_is_wal(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    try:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 10000
    finally:
        store.close()
    other = sqlite3.connect(tmp_path / "state" / "state.db")
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent, for every opener
    other.close()


def test_state_uuid_is_stable(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    first = store.state_uuid()
    assert store.state_uuid() == first
    store.close()
    store = StateStore(str(tmp_path / "state"))
    try:
        assert store.state_uuid() == first
        assert len(first) == 36 and first.count("-") == 4
    finally:
        store.close()


def test_known_accounts_round_trips_non_utf8_names(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    try:
        assert store.known_accounts(HOST_KEY) is None  # before the first scan
        store.remember_accounts(HOST_KEY, [(CAFE, 1001), ("alice", 1000)], "2024-04-01T08:00:00Z")
        known = store.known_accounts(HOST_KEY)
        assert known == {CAFE: "2024-04-01T08:00:00Z", "alice": "2024-04-01T08:00:00Z"}
        assert known is not None
        assert {name.encode("utf-8", "surrogateescape") for name in known} == {b"caf\xe9", b"alice"}
        stored = store.db.execute("SELECT name, uid FROM accounts_seen ORDER BY uid").fetchall()
        assert stored == [(b"alice", 1000), (b"caf\xe9", 1001)]  # the exact bytes, as BLOBs
        assert store.known_accounts("another-host") is None
    finally:
        store.close()


def test_remember_accounts_keeps_first_sighting(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    try:
        store.remember_accounts(HOST_KEY, [("alice", 1000)], "2024-04-01T08:00:00Z")
        store.remember_accounts(HOST_KEY, [("alice", 1000), ("bob", 1002)], "2024-05-01T08:00:00Z")
        assert store.known_accounts(HOST_KEY) == {"alice": "2024-04-01T08:00:00Z", "bob": "2024-05-01T08:00:00Z"}
    finally:
        store.close()
    store = StateStore(str(tmp_path / "state"))
    try:
        assert store.known_accounts(HOST_KEY) == {"alice": "2024-04-01T08:00:00Z", "bob": "2024-05-01T08:00:00Z"}
    finally:
        store.close()


def test_record_scan(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    try:
        store.record_scan(HOST_KEY, "2024-05-01T12:00:00Z", "/mnt/image", False, 6)
        store.record_scan(HOST_KEY, "2024-05-02T12:00:00Z", None, True, 0)
        assert store.db.execute("SELECT id, host_key, started, root, complete, findings FROM scans").fetchall() == [
            (1, HOST_KEY, "2024-05-01T12:00:00Z", "/mnt/image", 0, 6),
            (2, HOST_KEY, "2024-05-02T12:00:00Z", None, 1, 0)]
    finally:
        store.close()


def test_state_directory_is_private(tmp_path: Path) -> None:
    StateStore(str(tmp_path / "state")).close()
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "state" / "cache").stat().st_mode & 0o777 == 0o700


def test_unusable_directory_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StateError, match=r"^state directory .*/file/state: "):
        StateStore(str(tmp_path / "file" / "state"))
