"""state.db: migrations from every older schema, the cache directory, WAL, account history, accepted findings,
the findings of each scan and the audit log."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hostguard import __version__
from hostguard.findings import Finding
from hostguard.store.state import (
    ACCEPTED,
    MIGRATIONS,
    REPORTED,
    SUPPRESSED,
    Accepted,
    AccountSeen,
    GoneKey,
    KeySeen,
    PastFinding,
    PresentKey,
    RecordedProbe,
    SeenFinding,
    StateError,
    StateStore,
)

HOST_KEY = "0123456789abcdef0123456789abcdef:6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d"
CAFE = b"caf\xe9".decode("utf-8", "surrogateescape")  # an account name that is not UTF-8

# A plausible row for each table a migration creates. A new migration that adds a table must add its row
# here (test_every_table_has_a_sample_row says so), so upgrades from every older version keep real data.
SAMPLE_ROWS: dict[str, dict[str, Any]] = {
    "meta": {"key": "state_uuid", "value": "6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d"},
    "scans": {"host_key": HOST_KEY, "started": "2024-05-01T12:00:00Z", "root": None, "complete": 0, "findings": 7},
    "accounts_seen": {"host_key": HOST_KEY, "name": b"caf\xe9", "uid": 1001, "first_seen": "2024-04-01T08:00:00Z"},
    "accepted": {"host_key": HOST_KEY, "fingerprint": "0f" * 16, "check_id": "ssh.default_port",
                 "title": "sshd listens on port 22", "reason": "behind a VPN", "accepted_at": "2024-05-02T09:00:00Z"},
    "scan_findings": {"scan_id": 1, "fingerprint": "0f" * 16, "check_id": "ssh.default_port", "severity": "low",
                      "title": "sshd listens on port 22", "target": '{"kind":"config"}', "disposition": "reported"},
    "audit": {"time": "2024-05-02T09:00:00Z", "host_key": HOST_KEY, "action": "accept", "subject": "0f" * 16,
              "reason": "behind a VPN", "detail": "ssh.default_port"},
    "scan_checks": {"scan_id": 1, "check_id": "ssh.default_port", "completed": 1},
    "ssh_keys_seen": {"host_key": HOST_KEY, "root": "/", "user": b"caf\xe9",
                      "fingerprint": "SHA256:b2AZghHx0UP7NBv+ej7MYootCJ6vmG5IEzwg+q7PqE4", "key_type": "ssh-ed25519",
                      "options": '["from=\\"198.51.100.0/24\\""]', "first_seen": "2024-05-01T12:00:00+00:00",
                      "baseline": 1, "last_seen": "2024-05-02T12:00:00+00:00"},
    "ssh_key_owners": {"host_key": HOST_KEY, "root": "/", "user": b"caf\xe9", "complete": 1,
                       "first_read": "2024-05-01T12:00:00+00:00"},
    "probes": {"host_key": HOST_KEY, "service": "redis", "endpoint": "unix /run/redis/redis-server.sock",
               "account": "default", "started": "2024-05-03T12:00:00+00:00",
               "finished": "2024-05-03T12:00:15+00:00", "attempts": 74,
               "outcome": "weak_password", "rank": 73},
    "blocks": {"network": "198.51.100.7/32", "reason": "brute force: 12 failures in 60s", "source": "logons.brute_force",
               "created": "2024-05-04T12:00:00+00:00", "updated": "2024-05-04T12:10:00+00:00",
               "expires": "2024-05-04T13:10:00+00:00", "forced": 0, "removed": None, "removed_by": None},
    "logon_files": {"host_key": HOST_KEY, "head": "9f" * 32, "head_len": 4096, "path": "/var/log/auth.log",
                    "lines": 812, "offset": 90112, "seen": "2024-05-03T12:00:00+00:00"},
    "logon_events": {"host_key": HOST_KEY, "file_id": 1, "key": "812", "path": "/var/log/auth.log", "line": 812,
                     "service": "sshd", "outcome": "failure", "count": 1, "user": b"caf\xe9", "ip": "198.51.100.20",
                     "port": 40022, "method": "password", "time": "2024-05-03T10:01:02+00:00", "ts": 1714730462.0,
                     "ours": 0, "batch": 1},
    "logon_alerts": {"host_key": HOST_KEY, "fingerprint": "1e" * 16, "detector": "logon.brute_force",
                     "severity": "high", "first_ts": 1714730400.0, "last_ts": 1714730462.0,
                     "time": "2024-05-03T10:01:02+00:00", "raised": "2024-05-03T12:00:00+00:00",
                     "alert": '{"id":"logon.brute_force","target":{"kind":"ip","address":"198.51.100.20"}}'},
    "logon_baseline": {"host_key": HOST_KEY, "dimension": "ip", "value": "192.0.2.11", "seen": 3, "approved": 1,
                       "origin": "learned", "first_seen": "2024-05-01T08:00:00+00:00",
                       "last_seen": "2024-05-03T08:00:00+00:00"},
    "quarantine": {"id": "5e1f0a9c3b2d", "host_key": HOST_KEY, "path": b"/var/www/caf\xe9/up load.php", "sha256": "7c" * 32,
                   "size": 2048, "mode": 0o100644, "uid": 33, "gid": 33, "atime_ns": 1714730462123456789,
                   "mtime_ns": 1714730400000000001, "ctime_ns": 1714730400000000001, "dev": 2049, "ino": 131075,
                   "nlink": 1, "flags": 0x80010, "xattrs": '[["dXNlci5vcmlnaW4=", "d2Vi"]]', "rule": "webshell_eval",
                   "reason": "malware scan", "key": b"\x01" * 32, "stored": "5e1f0a9c3b2d.hgq",
                   "quarantined_at": "2024-05-05T12:00:00+00:00", "processes": "[]", "state": "quarantined",
                   "restored_to": None, "restored_at": None, "purged_at": None, "note": ""},
    "waf_events": {"request_id": "9f2c4e1a7b3d5c60", "time": "2024-05-06T09:00:00.000+00:00", "day": "2024-05-06",
                   "site": "blog", "client": "198.51.100.7", "network": "198.51.100.0/24", "method": "POST",
                   "path": "/wp-admin/post.php?action=…", "action": "detected", "status": 200,
                   "rules": '[{"id": 941100, "msg": "XSS", "data": "x", "tags": []}]'},
    "waf_ingest": {"path": "/var/lib/hostguard/waf-events.jsonl", "inode": 393219, "offset": 8192},
    "waf_exclusions": {"id": "a1b2c3d4e5f6", "site": "blog", "rule_id": 941100, "path": "/wp-admin/post.php",
                       "variable": "ARGS:content", "networks": 6, "days": 3, "hits": 18, "state": "proposed",
                       "proposed_at": "2024-05-07T00:00:00+00:00", "decided_at": None},
}

# Schema 1 as hostguard 0.1 wrote it, spelled out here (not taken from MIGRATIONS): an edit to an old
# migration would otherwise upgrade a database no released hostguard ever made.
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE scans (id INTEGER PRIMARY KEY, host_key TEXT NOT NULL, started TEXT NOT NULL,
                    root TEXT, complete INTEGER NOT NULL, findings INTEGER NOT NULL);
CREATE TABLE accounts_seen (host_key TEXT NOT NULL, name BLOB NOT NULL, uid INTEGER,
                            first_seen TEXT NOT NULL, PRIMARY KEY (host_key, name));
PRAGMA user_version=1;
"""


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
    for table in ("meta", "accounts_seen", "scans", "scan_findings", "accepted"):
        row = SAMPLE_ROWS[table]
        db.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    db.close()
    store = StateStore(str(directory))
    try:
        assert store.state_uuid() == "6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d"
        assert store.known_accounts(HOST_KEY) == {CAFE: AccountSeen(1001, "2024-04-01T08:00:00Z", False)}
        assert store.accepted(HOST_KEY) == [Accepted("0f" * 16, "ssh.default_port", "sshd listens on port 22",
                                                     "behind a VPN", "2024-05-02T09:00:00Z")]
        assert store.findings_seen(HOST_KEY) == {
            "0f" * 16: SeenFinding("0f" * 16, "ssh.default_port", "low", "sshd listens on port 22")}
    finally:
        store.close()


def test_schema_1_database_keeps_its_accounts_and_the_baseline_is_its_first_scan(tmp_path: Path) -> None:
    """Issue 7: a state.db of schema 1 (accounts recorded by scans that ran the new-account check) upgrades with
    every row kept; each host's earliest sighting is its baseline, accounts first seen later are still new."""
    directory = tmp_path / "state"
    directory.mkdir()
    db = sqlite3.connect(directory / "state.db", isolation_level=None)
    db.executescript(SCHEMA_1)
    other = "ffffffffffffffffffffffffffffffff:0b0e3f6c-1d2a-4c5e-8f90-a1b2c3d4e5f6"
    accounts = [(HOST_KEY, b"root", 0, "2024-04-01T08:00:00+00:00"), (HOST_KEY, b"alice", 1000, "2024-04-01T08:00:00+00:00"),
                (HOST_KEY, b"caf\xe9", 1001, "2024-04-20T08:00:00+00:00"), (other, b"root", 0, "2024-04-25T10:00:00+00:00")]
    db.executemany("INSERT INTO accounts_seen VALUES (?,?,?,?)", accounts)
    db.execute("INSERT INTO scans(host_key, started, root, complete, findings) VALUES (?,?,?,?,?)",
               (HOST_KEY, "2024-04-01T08:00:00+00:00", None, 1, 3))
    db.execute("INSERT INTO meta VALUES ('state_uuid', '6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d')")
    db.close()

    store = StateStore(str(directory))
    try:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert schema(store.db) == fresh_schema(tmp_path)
        assert store.db.execute("SELECT host_key, name, uid, first_seen FROM accounts_seen ORDER BY rowid").fetchall() \
            == accounts
        assert store.known_accounts(HOST_KEY) == {
            "root": AccountSeen(0, "2024-04-01T08:00:00+00:00", True),
            "alice": AccountSeen(1000, "2024-04-01T08:00:00+00:00", True),
            CAFE: AccountSeen(1001, "2024-04-20T08:00:00+00:00", False)}
        assert store.known_accounts(other) == {"root": AccountSeen(0, "2024-04-25T10:00:00+00:00", True)}
        assert rows_of(store.db, "scans", ["host_key", "started", "findings"]) == [
            (HOST_KEY, "2024-04-01T08:00:00+00:00", 3)]
        assert store.state_uuid() == "6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d"
        assert store.accepted(HOST_KEY) == [] and store.audit_log() == []
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
        assert store.known_accounts(HOST_KEY) == {"alice": AccountSeen(1000, "2024-04-01T08:00:00Z", True)}
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
        assert known == {CAFE: AccountSeen(1001, "2024-04-01T08:00:00Z", True),
                         "alice": AccountSeen(1000, "2024-04-01T08:00:00Z", True)}
        assert known is not None
        assert {name.encode("utf-8", "surrogateescape") for name in known} == {b"caf\xe9", b"alice"}
        stored = store.db.execute("SELECT name, uid FROM accounts_seen ORDER BY uid").fetchall()
        assert stored == [(b"alice", 1000), (b"caf\xe9", 1001)]  # the exact bytes, as BLOBs
        assert store.known_accounts("another-host") is None
    finally:
        store.close()


def test_remember_accounts_keeps_first_sighting_and_the_baseline(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    try:
        assert store.remember_accounts(HOST_KEY, [("alice", 1000)], "2024-04-01T08:00:00Z") == []
        assert store.remember_accounts(HOST_KEY, [("alice", 1000), ("bob", 1002)], "2024-05-01T08:00:00Z") == []
        store.remember_accounts(HOST_KEY, [("alice", 1000), ("bob", 1002)], "2024-05-02T08:00:00Z")
        expected = {"alice": AccountSeen(1000, "2024-04-01T08:00:00Z", True),
                    "bob": AccountSeen(1002, "2024-05-01T08:00:00Z", False)}
        assert store.known_accounts(HOST_KEY) == expected
    finally:
        store.close()
    store = StateStore(str(tmp_path / "state"))
    try:
        assert store.known_accounts(HOST_KEY) == expected
    finally:
        store.close()


def test_an_account_gone_and_back_is_new_again(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    try:
        store.remember_accounts(HOST_KEY, [("alice", 1000), (CAFE, 1001)], "2024-04-01T08:00:00Z")
        assert store.remember_accounts(HOST_KEY, [("alice", 1000)], "2024-04-02T08:00:00Z") == [CAFE]
        assert store.known_accounts(HOST_KEY) == {"alice": AccountSeen(1000, "2024-04-01T08:00:00Z", True)}
        assert store.remember_accounts(HOST_KEY, [("alice", 1000)], "2024-04-03T08:00:00Z") == []  # gone once
        store.remember_accounts(HOST_KEY, [("alice", 1000), (CAFE, 1003)], "2024-04-09T08:00:00Z")
        assert store.known_accounts(HOST_KEY) == {"alice": AccountSeen(1000, "2024-04-01T08:00:00Z", True),
                                                  CAFE: AccountSeen(1003, "2024-04-09T08:00:00Z", False)}
        # every account gone is still a host with a history: not a new baseline
        assert store.remember_accounts(HOST_KEY, [], "2024-04-10T08:00:00Z") == ["alice", CAFE]
        assert store.known_accounts(HOST_KEY) == {}
        store.remember_accounts(HOST_KEY, [("alice", 1000)], "2024-04-11T08:00:00Z")
        assert store.known_accounts(HOST_KEY) == {"alice": AccountSeen(1000, "2024-04-11T08:00:00Z", False)}
    finally:
        store.close()


def _finding(user: str, title: str = "", severity: str = "high") -> Finding:
    return Finding("accounts.duplicate", "accounts", severity, title or f"{user} is duplicated",
                   {"kind": "user", "user": user})


def test_record_scan_keeps_every_finding_and_what_became_of_it(tmp_path: Path) -> None:
    bob, eve, cafe = _finding("bob"), _finding("eve"), _finding(CAFE, title=f"{CAFE} is duplicated")
    store = StateStore(str(tmp_path / "state"))
    try:
        assert store.record_scan(HOST_KEY, "2024-05-01T12:00:00Z", "/mnt/image", False, 1,
                                 [(bob, REPORTED), (eve, SUPPRESSED), (cafe, ACCEPTED)]) == 1
        assert store.record_scan(HOST_KEY, "2024-05-02T12:00:00Z", None, True, 0) == 2
        assert store.record_scan("another-host", "2024-05-03T12:00:00Z", None, True, 1,
                                 [(_finding("bob", title="bob, later", severity="low"), REPORTED)]) == 3
        assert store.db.execute("SELECT id, host_key, started, root, complete, findings FROM scans").fetchall() == [
            (1, HOST_KEY, "2024-05-01T12:00:00Z", "/mnt/image", 0, 1),
            (2, HOST_KEY, "2024-05-02T12:00:00Z", None, 1, 0),
            (3, "another-host", "2024-05-03T12:00:00Z", None, 1, 1)]
        assert store.db.execute("SELECT scan_id, fingerprint, disposition, target FROM scan_findings "
                                "WHERE scan_id=1 ORDER BY disposition").fetchall() == [
            (1, cafe.fingerprint, ACCEPTED, '{"kind": "user", "user": {"base64": "Y2Fm6Q==", "text": "caf\\\\xe9"}}'),
            (1, bob.fingerprint, REPORTED, '{"kind": "user", "user": "bob"}'),
            (1, eve.fingerprint, SUPPRESSED, '{"kind": "user", "user": "eve"}')]
        seen = store.findings_seen(HOST_KEY)
        assert seen == {f.fingerprint: SeenFinding(f.fingerprint, "accounts.duplicate", "high", t) for f, t in
                        ((bob, "bob is duplicated"), (eve, "eve is duplicated"), (cafe, "caf\\xe9 is duplicated"))}
        assert store.findings_seen("another-host")[bob.fingerprint].title == "bob, later"
    finally:
        store.close()


def test_accept_unaccept_and_the_audit_log(tmp_path: Path) -> None:
    seen = SeenFinding("ab" * 16, "ssh.default_port", "low", "sshd listens on port 22")
    store = StateStore(str(tmp_path / "state"))
    try:
        store.accept(HOST_KEY, [seen, "cd" * 16], "behind a VPN", "2024-05-01T12:00:00Z")
        assert store.accepted(HOST_KEY) == [
            Accepted("ab" * 16, "ssh.default_port", "sshd listens on port 22", "behind a VPN", "2024-05-01T12:00:00Z"),
            Accepted("cd" * 16, None, None, "behind a VPN", "2024-05-01T12:00:00Z")]
        assert store.accepted_fingerprints(HOST_KEY) == {"ab" * 16, "cd" * 16}
        assert store.accepted_fingerprints("another-host") == frozenset()
        store.accept(HOST_KEY, [seen], "lab machine", "2024-05-02T12:00:00Z")  # again: the new reason and time
        assert store.accepted(HOST_KEY)[-1] == Accepted("ab" * 16, "ssh.default_port", "sshd listens on port 22",
                                                        "lab machine", "2024-05-02T12:00:00Z")
        assert store.unaccept(HOST_KEY, ["cd" * 16, "ef" * 16], "", "2024-05-03T12:00:00Z") == ["cd" * 16]
        assert store.accepted_fingerprints(HOST_KEY) == {"ab" * 16}
        assert [(e.time, e.action, e.subject, e.reason, e.detail) for e in store.audit_log(HOST_KEY)] == [
            ("2024-05-01T12:00:00Z", "accept", "ab" * 16, "behind a VPN", "ssh.default_port"),
            ("2024-05-01T12:00:00Z", "accept", "cd" * 16, "behind a VPN", ""),
            ("2024-05-02T12:00:00Z", "accept", "ab" * 16, "lab machine", "ssh.default_port"),
            ("2024-05-03T12:00:00Z", "unaccept", "cd" * 16, "", "")]
        assert store.audit_log("another-host") == []
    finally:
        store.close()
    store = StateStore(str(tmp_path / "state"))
    try:
        assert store.accepted_fingerprints(HOST_KEY) == {"ab" * 16} and len(store.audit_log()) == 4
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


# Schema 2 as hostguard wrote it before issue 8 kept each scan's coverage, spelled out (see SCHEMA_1).
SCHEMA_2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE scans (id INTEGER PRIMARY KEY, host_key TEXT NOT NULL, started TEXT NOT NULL,
                    root TEXT, complete INTEGER NOT NULL, findings INTEGER NOT NULL);
CREATE TABLE accounts_seen (host_key TEXT NOT NULL, name BLOB NOT NULL, uid INTEGER, first_seen TEXT NOT NULL,
                            baseline INTEGER NOT NULL DEFAULT 0, last_seen TEXT, gone_since TEXT,
                            PRIMARY KEY (host_key, name));
CREATE TABLE accepted (host_key TEXT NOT NULL, fingerprint TEXT NOT NULL, check_id TEXT, title TEXT,
                       reason TEXT NOT NULL, accepted_at TEXT NOT NULL, PRIMARY KEY (host_key, fingerprint));
CREATE TABLE scan_findings (scan_id INTEGER NOT NULL REFERENCES scans(id), fingerprint TEXT NOT NULL,
                            check_id TEXT NOT NULL, severity TEXT NOT NULL, title TEXT NOT NULL,
                            target TEXT NOT NULL, disposition TEXT NOT NULL, PRIMARY KEY (scan_id, fingerprint));
CREATE INDEX scan_findings_by_fingerprint ON scan_findings(fingerprint);
CREATE TABLE audit (id INTEGER PRIMARY KEY, time TEXT NOT NULL, host_key TEXT NOT NULL, action TEXT NOT NULL,
                    subject TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL);
PRAGMA user_version=2;
"""


def test_schema_2_scans_are_kept_but_never_compared(tmp_path: Path) -> None:
    """Issue 8: scans recorded before coverage was kept upgrade with their findings; their coverage is unknown,
    so a new scan is not compared with them (a check that never ran there would look like a fix)."""
    directory = tmp_path / "state"
    directory.mkdir()
    db = sqlite3.connect(directory / "state.db", isolation_level=None)
    db.executescript(SCHEMA_2)
    db.execute("INSERT INTO scans(host_key, started, root, complete, findings) VALUES (?,?,?,?,?)",
               (HOST_KEY, "2024-05-01T12:00:00+00:00", None, 1, 1))
    db.execute("INSERT INTO scan_findings VALUES (1, ?, 'accounts.duplicate', 'high', 'bob is duplicated', "
               "'{\"kind\": \"user\", \"user\": \"bob\"}', 'reported')", (_finding("bob").fingerprint,))
    db.close()
    store = StateStore(str(directory))
    try:
        assert schema(store.db) == fresh_schema(tmp_path)
        old = store.scan(1)
        assert old is not None and old.checks is None and old.families == []
        assert old.findings == {_finding("bob").fingerprint: PastFinding(
            _finding("bob").fingerprint, "accounts.duplicate", "high", "bob is duplicated",
            {"kind": "user", "user": "bob"}, REPORTED)}
        new = store.record_scan(HOST_KEY, "2024-05-02T12:00:00+00:00", None, True, 0, [],
                                checks={"accounts.duplicate": True})
        assert store.previous_comparable(new) is None
    finally:
        store.close()


def test_record_scan_keeps_coverage_and_the_comparable_scan_is_the_closest_selection(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    full = {"accounts.duplicate": True, "ssh.root_login": True, "weak_passwords.system": False}
    try:
        a = store.record_scan(HOST_KEY, "2024-05-01T12:00:00+00:00", None, False, 1, [(_finding("bob"), REPORTED)],
                              checks=full)
        b = store.record_scan(HOST_KEY, "2024-05-02T12:00:00+00:00", None, True, 0, [], checks={"ssh.root_login": True})
        tree = store.record_scan(HOST_KEY, "2024-05-03T12:00:00+00:00", "/mnt/image", False, 0, [], checks=full)
        other = store.record_scan("another-host", "2024-05-03T12:00:00+00:00", None, False, 0, [], checks=full)
        c = store.record_scan(HOST_KEY, "2024-05-04T12:00:00+00:00", None, False, 0, [], checks=full)
        d = store.record_scan(HOST_KEY, "2024-05-05T12:00:00+00:00", None, True, 0, [], checks={"ssh.root_login": True})
        recorded = store.scan(a)
        assert recorded is not None and recorded.checks == full and recorded.started == "2024-05-01T12:00:00+00:00"
        assert recorded.families == ["accounts", "ssh", "weak_passwords"] and recorded.reported == 1
        assert [f.check_id for f in recorded.findings.values()] == ["accounts.duplicate"]

        def against(scan_id: int) -> int | None:
            found = store.previous_comparable(scan_id)
            return found.id if found else None

        assert against(a) is None  # the first of this host
        assert against(b) == a  # the only earlier scan sharing ssh.root_login
        assert against(tree) is None and against(other) is None  # another root, another host
        assert against(c) == a  # the latest full scan, not the --only ssh scan b in between
        assert against(d) == c  # both share one check with d: the latest
        assert store.scan(999) is None
    finally:
        store.close()


def test_pruning_keeps_the_latest_scans_of_a_host_and_never_accepted_or_audit(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    try:
        store.accept(HOST_KEY, ["ab" * 16], "fine", "2024-05-01T00:00:00+00:00")
        store.remember_accounts(HOST_KEY, [("alice", 1000)], "2024-05-01T00:00:00+00:00")
        ids = [store.record_scan(HOST_KEY, f"2024-05-0{n}T12:00:00+00:00", None, True, 1,
                                 [(_finding("bob"), REPORTED)], checks={"accounts.duplicate": True}) for n in (1, 2, 3)]
        other = store.record_scan("another-host", "2024-05-04T12:00:00+00:00", None, True, 0, [],
                                  checks={"accounts.duplicate": True})
        assert store.pruned_through(HOST_KEY) == 0
        assert store.prune_scans(HOST_KEY, 2) == 1
        assert store.scan_ids(HOST_KEY) == ids[1:] and store.scan_ids("another-host") == [other]
        assert store.pruned_through(HOST_KEY) == ids[0] and store.pruned_through("another-host") == 0
        for table in ("scan_findings", "scan_checks"):
            assert store.db.execute(f"SELECT DISTINCT scan_id FROM {table} ORDER BY scan_id").fetchall() == [
                (ids[1],), (ids[2],)] + ([] if table == "scan_findings" else [(other,)])
        assert store.prune_scans(HOST_KEY, 2) == 0
        assert [a.fingerprint for a in store.accepted(HOST_KEY)] == ["ab" * 16]
        assert [e.action for e in store.audit_log(HOST_KEY)] == ["accept"]
        assert store.known_accounts(HOST_KEY) == {"alice": AccountSeen(1000, "2024-05-01T00:00:00+00:00", True)}
    finally:
        store.close()


# Schema 3 as hostguard wrote it before issue 9 kept the SSH keys each scan saw, spelled out (see SCHEMA_1).
SCHEMA_3 = SCHEMA_2.replace("PRAGMA user_version=2;", """
CREATE TABLE scan_checks (scan_id INTEGER NOT NULL REFERENCES scans(id), check_id TEXT NOT NULL,
                          completed INTEGER NOT NULL, PRIMARY KEY (scan_id, check_id));
CREATE INDEX scans_by_host ON scans(host_key, id);
PRAGMA user_version=3;
""")
FP_A = "SHA256:b2AZghHx0UP7NBv+ej7MYootCJ6vmG5IEzwg+q7PqE4"
FP_B = "SHA256:U1XFdxKvB9dFJPo5hzHr3UnKi/w8oxPY0eyLMMyP9n8"


def test_schema_3_with_account_history_upgrades_to_no_key_history(tmp_path: Path) -> None:
    """Issue 9: a database with accounts but no keys upgrades keeping its accounts; it has no key history, so
    the first scan after the upgrade is the key baseline (known_keys is None until then)."""
    directory = tmp_path / "state"
    directory.mkdir()
    db = sqlite3.connect(directory / "state.db", isolation_level=None)
    db.executescript(SCHEMA_3)
    db.execute("INSERT INTO accounts_seen(host_key, name, uid, first_seen, baseline, last_seen) "
               "VALUES (?, ?, 1000, '2024-04-01T08:00:00Z', 1, '2024-04-01T08:00:00Z')", (HOST_KEY, b"alice"))
    db.close()
    store = StateStore(str(directory))
    try:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert schema(store.db) == fresh_schema(tmp_path)
        assert store.known_accounts(HOST_KEY) == {"alice": AccountSeen(1000, "2024-04-01T08:00:00Z", True)}
        assert store.known_keys(HOST_KEY, "/") is None
        store.remember_keys(HOST_KEY, "/", [PresentKey("alice", FP_A, "ssh-ed25519", ("",))], ["alice"], [],
                            "2024-05-01T08:00:00Z")
        history = store.known_keys(HOST_KEY, "/")
        assert history is not None
        assert history.keys == {("alice", FP_A): KeySeen("ssh-ed25519", ("",), "2024-05-01T08:00:00Z", True)}
    finally:
        store.close()


def test_key_history_baseline_new_gone_back_and_options(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    try:
        a = PresentKey(CAFE, FP_A, "ssh-ed25519", ("",))
        assert store.remember_keys(HOST_KEY, "/", [a], [CAFE, "bob"], [], "2024-05-01T00:00:00Z") == []
        assert store.known_keys(HOST_KEY, "/mnt/image") is None  # another root: another history
        b = PresentKey("bob", FP_B, "ecdsa-sha2-nistp256", ('from="198.51.100.0/24"',))
        store.remember_keys(HOST_KEY, "/", [a, b], [CAFE, "bob"], [], "2024-05-02T00:00:00Z")
        history = store.known_keys(HOST_KEY, "/")
        assert history is not None and history.owners == {CAFE: True, "bob": True}
        assert history.keys[("bob", FP_B)] == KeySeen("ecdsa-sha2-nistp256", ('from="198.51.100.0/24"',),
                                                      "2024-05-02T00:00:00Z", False)
        stored = store.db.execute("SELECT user FROM ssh_keys_seen WHERE fingerprint=?", (FP_A,)).fetchone()
        assert stored == (b"caf\xe9",)  # the exact bytes
        # options change: remembered with the time and the options before
        b2 = PresentKey("bob", FP_B, "ecdsa-sha2-nistp256", ("",))
        store.remember_keys(HOST_KEY, "/", [a, b2], [CAFE, "bob"], [], "2024-05-03T00:00:00Z")
        history = store.known_keys(HOST_KEY, "/")
        assert history is not None and history.keys[("bob", FP_B)] == KeySeen(
            "ecdsa-sha2-nistp256", ("",), "2024-05-02T00:00:00Z", False, "2024-05-03T00:00:00Z",
            ('from="198.51.100.0/24"',))
        # bob unreadable: his key is neither gone nor changed
        assert store.remember_keys(HOST_KEY, "/", [a], [CAFE], ["bob"], "2024-05-04T00:00:00Z") == []
        history = store.known_keys(HOST_KEY, "/")
        assert history is not None and ("bob", FP_B) in history.keys and history.owners["bob"] is True
        # gone when read and absent; back later: new again, first seen on its return
        assert store.remember_keys(HOST_KEY, "/", [a], [CAFE, "bob"], [], "2024-05-05T00:00:00Z") == [
            GoneKey("bob", FP_B, ("",))]
        store.remember_keys(HOST_KEY, "/", [a, b], [CAFE, "bob"], [], "2024-05-09T00:00:00Z")
        history = store.known_keys(HOST_KEY, "/")
        assert history is not None and history.keys[("bob", FP_B)] == KeySeen(
            "ecdsa-sha2-nistp256", ('from="198.51.100.0/24"',), "2024-05-09T00:00:00Z", False)
        # an account gone from the accounts: its keys go, and it is forgotten as an owner
        assert store.remember_keys(HOST_KEY, "/", [a], [CAFE], [], "2024-05-10T00:00:00Z") == [
            GoneKey("bob", FP_B, ('from="198.51.100.0/24"',))]
        history = store.known_keys(HOST_KEY, "/")
        assert history is not None and history.owners == {CAFE: True}
    finally:
        store.close()


def test_an_account_unreadable_at_the_baseline_gets_its_first_look_later(tmp_path: Path) -> None:
    """Keys behind a file the baseline could not read are baseline when first read completely; a new account
    (never recorded) is not a first look: its keys are new."""
    store = StateStore(str(tmp_path / "state"))
    try:
        store.remember_keys(HOST_KEY, "/", [], ["alice"], ["root"], "2024-05-01T00:00:00Z")
        history = store.known_keys(HOST_KEY, "/")
        assert history is not None and history.owners == {"alice": True, "root": False} and history.keys == {}
        root_key = PresentKey("root", FP_A, "ssh-ed25519", ("",))
        mallory_key = PresentKey("mallory", FP_B, "ssh-ed25519", ("",))
        store.remember_keys(HOST_KEY, "/", [root_key, mallory_key], ["alice", "root", "mallory"], [],
                            "2024-05-02T00:00:00Z")
        history = store.known_keys(HOST_KEY, "/")
        assert history is not None
        assert {k: v.baseline for k, v in history.keys.items()} == {("root", FP_A): True, ("mallory", FP_B): False}
    finally:
        store.close()


# Schema 4 as hostguard wrote it before issue 10 recorded active probes, spelled out (see SCHEMA_1).
SCHEMA_4 = SCHEMA_3.replace("PRAGMA user_version=3;", """
CREATE TABLE ssh_keys_seen (host_key TEXT NOT NULL, root TEXT NOT NULL, user BLOB NOT NULL,
                            fingerprint TEXT NOT NULL, key_type TEXT NOT NULL, options TEXT NOT NULL,
                            first_seen TEXT NOT NULL, baseline INTEGER NOT NULL, last_seen TEXT NOT NULL,
                            gone_since TEXT, options_since TEXT, previous_options TEXT,
                            PRIMARY KEY (host_key, root, user, fingerprint));
CREATE TABLE ssh_key_owners (host_key TEXT NOT NULL, root TEXT NOT NULL, user BLOB NOT NULL,
                             complete INTEGER NOT NULL, first_read TEXT NOT NULL,
                             PRIMARY KEY (host_key, root, user));
PRAGMA user_version=4;
""")


def test_schema_4_upgrades_to_no_probes_and_keeps_its_keys(tmp_path: Path) -> None:
    """Issue 10: a state.db of schema 4 gains the probes table, empty; the SSH key history is kept."""
    directory = tmp_path / "state"
    directory.mkdir()
    db = sqlite3.connect(directory / "state.db", isolation_level=None)
    db.executescript(SCHEMA_4)
    row = SAMPLE_ROWS["ssh_keys_seen"]
    db.execute(f"INSERT INTO ssh_keys_seen ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    db.close()
    store = StateStore(str(directory))
    try:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert schema(store.db) == fresh_schema(tmp_path)
        assert rows_of(store.db, "ssh_keys_seen", list(row)) == [tuple(row.values())]
        assert store.probes(HOST_KEY) == []
    finally:
        store.close()


def test_probes_are_recorded_per_host_in_order_without_a_password(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    try:
        later = RecordedProbe("mysql", "tcp 127.0.0.1:3306", "shop", "2024-05-03T12:00:05+00:00", 3, "not_found")
        first = RecordedProbe("redis", "unix /run/redis/redis-server.sock", "default", "2024-05-03T12:00:00+00:00",
                              74, "weak_password", 73, "2024-05-03T12:00:15+00:00")
        other = RecordedProbe("postgresql", "unix /run/postgresql/.s.PGSQL.5432", "app", "2024-05-01T00:00:00+00:00",
                              1, "no_password_checked")
        store.record_probe(HOST_KEY, later)
        store.record_probe(HOST_KEY, first)
        store.record_probe("another-host", other)
        assert store.probes(HOST_KEY) == [first, later]
        assert store.probes("another-host") == [other]
        assert [c[1] for c in store.db.execute("PRAGMA table_info(probes)")] == [
            "id", "host_key", "service", "endpoint", "account", "started", "finished", "attempts", "outcome", "rank"]
    finally:
        store.close()


# waf_events as schema 9 (issue 14) created it, spelled out here: the table migration 10 adds a column to.
WAF_EVENTS_9 = """
CREATE TABLE waf_events (request_id TEXT NOT NULL, time TEXT NOT NULL, day TEXT NOT NULL, site TEXT NOT NULL,
                         client TEXT NOT NULL, network TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
                         action TEXT NOT NULL, status INTEGER NOT NULL, rules TEXT NOT NULL,
                         PRIMARY KEY (request_id, time));
"""


def test_schema_9_waf_events_upgrade_with_no_reason_and_refusals_keep_theirs(tmp_path: Path) -> None:
    """Migration 10: the events stored before are the engine's (reason ''); a refused event read from the log
    afterwards keeps its reason code."""
    import json

    from hostguard.store.waf import WafStore

    directory, db = old_database(tmp_path, 9)
    assert [c[1] for c in db.execute("PRAGMA table_info(waf_events)")] == [
        c[1] for c in sqlite3.connect(":memory:").executescript(WAF_EVENTS_9).execute("PRAGMA table_info(waf_events)")]
    row = SAMPLE_ROWS["waf_events"]
    db.execute(f"INSERT INTO waf_events ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
    db.close()
    log = tmp_path / "events.jsonl"
    log.write_text(json.dumps({"time": "2024-05-06T10:00:00.000+00:00", "request_id": "0a1b2c3d4e5f6071",
                               "site": "shop", "client": "198.51.100.9", "method": "POST", "path": "/upload",
                               "action": "refused", "reason": "body_too_large", "status": 413, "rules": []}) + "\n")
    store = StateStore(str(directory))
    try:
        assert schema(store.db) == fresh_schema(tmp_path)
        waf = WafStore(store)
        assert waf.ingest(str(log)).added == 1
        assert [(e.request_id, e.action, e.reason, e.status) for e in waf.events()] == [
            ("9f2c4e1a7b3d5c60", "detected", "", 200), ("0a1b2c3d4e5f6071", "refused", "body_too_large", 413)]
    finally:
        store.close()
