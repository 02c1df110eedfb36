"""The block records in state.db: what hostguard was asked to drop, why, by whom and until when.

The store, not the kernel, is the truth: a firewall reload (Debian's nftables.conf starts with ``flush
ruleset``) or a reboot wipes the kernel's sets, and ``respond/block.py`` rebuilds them from the active rows
here with each element's *remaining* time. Rows are never deleted: an unblock or an expiry marks them
``removed`` (with ``removed_by``), so a later detector can count repeat offenders.

Times are ISO 8601 strings in UTC with an offset; ``expires`` is NULL for a permanent block. One active row
per network at most: blocking an active network again refreshes that row.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hostguard.store.state import StateStore

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNBLOCKED, EXPIRED = "unblock", "expired"


@dataclass(frozen=True)
class BlockRecord:
    """One block as stored: the network, why and who asked (``manual`` or a detector id), when it was made
    and last refreshed, until when (None: permanent), whether an owner-address refusal was overridden, and
    (for history rows) when and how it ended."""

    id: int
    network: Network
    reason: str
    source: str
    created: datetime
    updated: datetime
    expires: datetime | None
    forced: bool
    removed: datetime | None = None
    removed_by: str | None = None

    def active(self, now: datetime) -> bool:
        """Still in force at ``now``: not removed and not past its expiry."""
        return self.removed is None and (self.expires is None or self.expires > now)

    def remaining(self, now: datetime) -> float | None:
        """Seconds left at ``now`` (None: permanent)."""
        return None if self.expires is None else (self.expires - now).total_seconds()

    def to_dict(self, now: datetime) -> dict[str, Any]:
        """The JSON form ``hostguard blocks --format json`` lists."""
        remaining = self.remaining(now)
        return {"network": str(self.network), "reason": self.reason, "source": self.source,
                "created": self.created.isoformat(), "updated": self.updated.isoformat(),
                "expires": self.expires.isoformat() if self.expires else None,
                "remaining_seconds": None if remaining is None else max(0, int(remaining)),
                "forced": self.forced}


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class BlockStore:
    """Block rows over the state store's connection (``StateStore`` opens, migrates and owns it)."""

    COLUMNS = "id, network, reason, source, created, updated, expires, forced, removed, removed_by"

    def __init__(self, state: StateStore) -> None:
        self.db = state.db

    def _record(self, row: tuple[Any, ...]) -> BlockRecord:
        rid, network, reason, source, created, updated, expires, forced, removed, removed_by = row
        return BlockRecord(rid, ipaddress.ip_network(network), reason, source, datetime.fromisoformat(created),
                           datetime.fromisoformat(updated), _time(expires), bool(forced), _time(removed), removed_by)

    def _close_expired(self, now: datetime) -> None:
        """Mark rows past their expiry as removed by expiry (so the active row of a network is unique)."""
        for record in self._open():
            if record.expires is not None and record.expires <= now:
                self.db.execute("UPDATE blocks SET removed=?, removed_by=? WHERE id=?",
                                (record.expires.isoformat(), EXPIRED, record.id))

    def _open(self) -> list[BlockRecord]:
        rows = self.db.execute(f"SELECT {self.COLUMNS} FROM blocks WHERE removed IS NULL ORDER BY id").fetchall()
        return [self._record(r) for r in rows]

    def active(self, now: datetime) -> list[BlockRecord]:
        """The blocks in force at ``now``, oldest first."""
        return [r for r in self._open() if r.active(now)]

    def history(self) -> list[BlockRecord]:
        """Every block ever recorded, oldest first (removed ones too)."""
        rows = self.db.execute(f"SELECT {self.COLUMNS} FROM blocks ORDER BY id").fetchall()
        return [self._record(r) for r in rows]

    def add(self, network: Network, reason: str, source: str, expires: datetime | None, forced: bool,
            now: datetime) -> tuple[BlockRecord, bool]:
        """Record a block of ``network`` until ``expires`` (None: permanent); return the active row and
        whether it changed.

        An active block of the same network is refreshed, never shortened: the later expiry wins (permanent
        beats any), and the reason and source follow the request that set it. So a detector's ten-minute
        block cannot cut short the owner's permanent one.
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self._close_expired(now)
            current = [r for r in self._open() if r.network == network]
            if not current:
                cursor = self.db.execute(
                    "INSERT INTO blocks(network, reason, source, created, updated, expires, forced) "
                    "VALUES (?,?,?,?,?,?,?)", (str(network), reason, source, now.isoformat(), now.isoformat(),
                                               expires.isoformat() if expires else None, int(forced)))
                rid, changed = int(cursor.lastrowid or 0), True
            else:
                old = current[0]
                rid = old.id
                longer = old.expires is not None and (expires is None or expires > old.expires)
                changed = longer or (forced and not old.forced)
                if longer:
                    self.db.execute("UPDATE blocks SET reason=?, source=?, updated=?, expires=?, "
                                    "forced=MAX(forced, ?) WHERE id=?",
                                    (reason, source, now.isoformat(), expires.isoformat() if expires else None,
                                     int(forced), rid))
                elif changed:
                    self.db.execute("UPDATE blocks SET forced=1, updated=? WHERE id=?", (now.isoformat(), rid))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        row = self.db.execute(f"SELECT {self.COLUMNS} FROM blocks WHERE id=?", (rid,)).fetchone()
        return self._record(row), changed

    def remove(self, networks: list[Network], now: datetime) -> list[BlockRecord]:
        """End the active blocks of these exact networks (an unblock); return the rows ended."""
        ended: list[BlockRecord] = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self._close_expired(now)
            for record in self._open():
                if record.network in networks:
                    self.db.execute("UPDATE blocks SET removed=?, removed_by=? WHERE id=?",
                                    (now.isoformat(), UNBLOCKED, record.id))
                    ended.append(record)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return ended
