"""The block records (store/blocks.py) and migration 6, which adds them to state.db."""

from __future__ import annotations

import ipaddress
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hostguard.store.blocks import EXPIRED, UNBLOCKED, BlockStore
from hostguard.store.state import MIGRATIONS, StateStore

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NET = ipaddress.ip_network("198.51.100.7/32")
OTHER = ipaddress.ip_network("2001:db8:200::/64")

# Schema 5 as the hostguard before blocks wrote it, written out here (not taken from MIGRATIONS), holding a
# row in a table from each earlier migration.
SCHEMA_5_ROWS = """
INSERT INTO meta(key, value) VALUES ('state_uuid', '6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d');
INSERT INTO audit(time, host_key, action, subject, reason, detail)
    VALUES ('2024-05-02T09:00:00Z', 'h', 'accept', 'fp', 'behind a VPN', 'ssh.default_port');
INSERT INTO probes(host_key, service, endpoint, account, started, attempts, outcome)
    VALUES ('h', 'redis', 'unix /run/redis.sock', 'default', '2024-05-03T12:00:00+00:00', 3, 'not_weak');
"""


@pytest.fixture
def store(tmp_path: Path) -> BlockStore:
    return BlockStore(StateStore(str(tmp_path / "state")))


def test_migration_6_adds_blocks_and_keeps_every_row(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    db = sqlite3.connect(directory / "state.db", isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:5], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")
    db.executescript(SCHEMA_5_ROWS)
    db.close()
    state = StateStore(str(directory))
    try:
        assert state.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert "CREATE TABLE blocks" in MIGRATIONS[5]  # number 6, whatever was appended after it
        assert state.state_uuid() == "6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d"
        assert [(a.action, a.reason) for a in state.audit_log()] == [("accept", "behind a VPN")]
        assert [p.outcome for p in state.probes("h")] == ["not_weak"]
        blocks = BlockStore(state)
        record, changed = blocks.add(NET, "brute force", "manual", None, False, T0)
        assert changed and blocks.active(T0) == [record]
    finally:
        state.close()


def test_a_longer_request_refreshes_and_a_shorter_one_is_kept_out(store: BlockStore) -> None:
    first, changed = store.add(NET, "ten minutes", "manual", T0 + timedelta(minutes=10), False, T0)
    assert changed and first.remaining(T0) == 600
    longer, changed = store.add(NET, "an hour", "logons.brute_force", T0 + timedelta(hours=1), False,
                                T0 + timedelta(minutes=1))
    assert changed and longer.id == first.id and longer.reason == "an hour" and longer.source == "logons.brute_force"
    shorter, changed = store.add(NET, "a minute", "manual", T0 + timedelta(minutes=3), False, T0 + timedelta(minutes=2))
    assert not changed and shorter.expires == T0 + timedelta(hours=1) and shorter.reason == "an hour"
    forever, changed = store.add(NET, "for good", "manual", None, False, T0 + timedelta(minutes=2))
    assert changed and forever.expires is None
    again, changed = store.add(NET, "a day", "manual", T0 + timedelta(days=1), False, T0 + timedelta(minutes=3))
    assert not changed and again.expires is None and again.reason == "for good"
    assert [r.id for r in store.history()] == [first.id]


def test_an_expired_block_ends_as_expired_and_a_new_one_is_a_new_row(store: BlockStore) -> None:
    first, _ = store.add(NET, "first", "manual", T0 + timedelta(minutes=10), False, T0)
    later = T0 + timedelta(minutes=11)
    assert store.active(later) == [] and store.active(T0 + timedelta(minutes=9)) == [first]
    second, changed = store.add(NET, "second", "manual", later + timedelta(minutes=10), False, later)
    assert changed and second.id != first.id
    old, new = store.history()
    assert (old.removed_by, old.removed) == (EXPIRED, T0 + timedelta(minutes=10)) and new.removed is None


def test_remove_ends_only_the_networks_named_and_keeps_history(store: BlockStore) -> None:
    kept, _ = store.add(OTHER, "scan", "manual", None, False, T0)
    gone, _ = store.add(NET, "typo", "manual", None, True, T0)
    assert gone.forced and not kept.forced
    [ended] = store.remove([NET], T0 + timedelta(seconds=5))
    assert ended.id == gone.id
    assert [r.network for r in store.active(T0 + timedelta(seconds=6))] == [OTHER]
    assert [(r.network, r.removed_by) for r in store.history()] == [(OTHER, None), (NET, UNBLOCKED)]
    assert store.remove([NET], T0 + timedelta(seconds=7)) == []


def test_to_dict_is_the_json_listing(store: BlockStore) -> None:
    record, _ = store.add(OTHER, "scan", "manual", T0 + timedelta(hours=1), False, T0)
    assert record.to_dict(T0 + timedelta(minutes=30)) == {
        "network": "2001:db8:200::/64", "reason": "scan", "source": "manual", "created": "2026-01-01T12:00:00+00:00",
        "updated": "2026-01-01T12:00:00+00:00", "expires": "2026-01-01T13:00:00+00:00", "remaining_seconds": 1800,
        "forced": False}
