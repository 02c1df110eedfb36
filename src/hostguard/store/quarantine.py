"""The quarantine ledger in state.db: every file hostguard moved away, and what a byte-exact restore needs.

A row is written after the stored copy was written, synced and verified, and *before* the original is
removed (``respond/quarantine.py``): a file is never gone without its row. Rows are never deleted: a restore
marks them ``restored`` (with where to and when), a purge (the owner deleting the stored copy) ``purged``, and
a quarantine that kept its copy but could not remove the original ``failed`` (``note`` says why).

Paths and extended-attribute names are kept as their exact bytes (paths need not be UTF-8). ``key`` is the
per-entry random key the stored copy is XORed with: without this row the copy is noise, which is the point
(no scanner, ours included, finds the malware in it).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from hostguard.findings import portable, readable

if TYPE_CHECKING:
    from hostguard.store.state import StateStore

QUARANTINED, RESTORED, PURGED, FAILED = "quarantined", "restored", "purged", "failed"
STATES = (QUARANTINED, RESTORED, PURGED, FAILED)


def printable(value: bytes | str) -> str:
    """A path on one line for messages and tables: :func:`readable`, with control characters (a newline in a
    name) escaped as ``\\n``, ``\\xNN``."""
    text = readable(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class LedgerError(Exception):
    """A ledger row is missing or cannot be read (a damaged state.db)."""


@dataclass(frozen=True)
class Entry:
    """One quarantined file as the ledger holds it.

    ``path`` is the original path's exact bytes; ``mode`` the full ``st_mode`` (type and permission bits,
    setuid/setgid/sticky included); times in nanoseconds (``ctime_ns`` is recorded for the record: no call
    can set it back); ``flags`` the inode flags (``FS_IOC_GETFLAGS``; None where the file system has none);
    ``xattrs`` every extended attribute, name and value as bytes, in the order they were listed; ``nlink``
    the number of names the content had (the quarantine removed one); ``processes`` what ran it (pid, exe,
    and the kill's outcome when one was asked); ``stored`` the file name of the copy in the quarantine
    directory.
    """

    id: str
    host_key: str
    path: bytes
    sha256: str
    size: int
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    dev: int
    ino: int
    nlink: int
    flags: int | None
    xattrs: tuple[tuple[bytes, bytes], ...]
    rule: str
    reason: str
    key: bytes
    stored: str
    quarantined_at: str
    processes: tuple[dict[str, Any], ...] = ()
    state: str = QUARANTINED
    restored_to: bytes | None = None
    restored_at: str | None = None
    purged_at: str | None = None
    note: str = ""

    @property
    def readable_path(self) -> str:
        """The original path for people, on one line (non-UTF-8 bytes and control characters escaped)."""
        return printable(self.path)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``hostguard quarantine list --format json`` prints (never the key). Paths and
        attribute names follow the bytes policy of findings.py: a string, or ``{"text", "base64"}``."""
        return {"id": self.id, "state": self.state, "path": portable(self.path), "sha256": self.sha256,
                "size": self.size, "mode": f"{self.mode & 0o7777:04o}", "uid": self.uid, "gid": self.gid,
                "atime_ns": self.atime_ns, "mtime_ns": self.mtime_ns, "ctime_ns": self.ctime_ns,
                "nlink": self.nlink, "flags": self.flags,
                "xattrs": [portable(name) for name, _ in self.xattrs], "rule": self.rule, "reason": self.reason,
                "quarantined_at": self.quarantined_at, "processes": list(self.processes),
                "restored_to": portable(self.restored_to) if self.restored_to is not None else None,
                "restored_at": self.restored_at, "purged_at": self.purged_at, "note": self.note}


def _xattrs_text(xattrs: tuple[tuple[bytes, bytes], ...]) -> str:
    return json.dumps([[base64.b64encode(n).decode(), base64.b64encode(v).decode()] for n, v in xattrs])


def _xattrs_of(text: str) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((base64.b64decode(n), base64.b64decode(v)) for n, v in json.loads(text))


class QuarantineStore:
    """Ledger rows over the state store's connection (``StateStore`` opens, migrates and owns it)."""

    COLUMNS = ("id, host_key, path, sha256, size, mode, uid, gid, atime_ns, mtime_ns, ctime_ns, dev, ino, nlink, "
               "flags, xattrs, rule, reason, key, stored, quarantined_at, processes, state, restored_to, restored_at, "
               "purged_at, note")

    def __init__(self, state: StateStore) -> None:
        self.db = state.db

    def _entry(self, row: tuple[Any, ...]) -> Entry:
        try:
            (eid, host_key, path, sha, size, mode, uid, gid, atime, mtime, ctime, dev, ino, nlink, flags, xattrs,
             rule, reason, key, stored, when, processes, state, restored_to, restored_at, purged_at, note) = row
            if state not in STATES or not isinstance(key, bytes) or not key:
                raise ValueError(f"state {state!r}")
            return Entry(eid, host_key, bytes(path), sha, int(size), int(mode), int(uid), int(gid), int(atime),
                         int(mtime), int(ctime), int(dev), int(ino), int(nlink), None if flags is None else int(flags),
                         _xattrs_of(xattrs), rule, reason, bytes(key), stored, when,
                         tuple(json.loads(processes)), state, None if restored_to is None else bytes(restored_to),
                         restored_at, purged_at, note)
        except (ValueError, TypeError, KeyError) as exc:
            raise LedgerError(f"quarantine entry {row[0] if row else '?'}: the ledger row is damaged ({exc})") from exc

    def add(self, entry: Entry) -> None:
        """Record a quarantined file, committed at once (before its original is removed)."""
        e = entry
        with self.db:
            self.db.execute(
                f"INSERT INTO quarantine({self.COLUMNS}) VALUES ({', '.join('?' * 27)})",
                (e.id, e.host_key, e.path, e.sha256, e.size, e.mode, e.uid, e.gid, e.atime_ns, e.mtime_ns, e.ctime_ns,
                 e.dev, e.ino, e.nlink, e.flags, _xattrs_text(e.xattrs), e.rule, e.reason, e.key, e.stored,
                 e.quarantined_at, json.dumps(list(e.processes), sort_keys=True), e.state, e.restored_to,
                 e.restored_at, e.purged_at, e.note))

    def get(self, entry_id: str) -> Entry:
        """The entry ``entry_id`` (its full id, or a prefix of at least 4 characters naming one entry)."""
        if len(entry_id) < 4:
            raise LedgerError(f"quarantine id {entry_id!r}: give at least 4 characters of the id")
        rows = self.db.execute(f"SELECT {self.COLUMNS} FROM quarantine WHERE id=? OR substr(id, 1, ?)=? ORDER BY id",
                               (entry_id, len(entry_id), entry_id)).fetchall()
        exact = [r for r in rows if r[0] == entry_id]
        if exact:
            return self._entry(exact[0])
        if not rows:
            raise LedgerError(f"no quarantine entry {entry_id} (hostguard quarantine list shows them)")
        if len(rows) > 1:
            raise LedgerError(f"quarantine id {entry_id} is ambiguous: " + ", ".join(r[0] for r in rows))
        return self._entry(rows[0])

    def listing(self) -> list[Entry]:
        """Every entry, oldest first (restored and purged ones too)."""
        rows = self.db.execute(f"SELECT {self.COLUMNS} FROM quarantine ORDER BY quarantined_at, rowid").fetchall()
        return [self._entry(r) for r in rows]

    def mark(self, entry: Entry, state: str, now: str, *, restored_to: bytes | None = None, note: str | None = None,
             processes: tuple[dict[str, Any], ...] | None = None) -> Entry:
        """Move ``entry`` to ``state`` (restored: with where to; purged: when), committed at once; the new entry."""
        if state not in STATES:
            raise ValueError(state)
        changes: dict[str, Any] = {"state": state}
        if state == RESTORED:
            changes.update(restored_to=restored_to, restored_at=now)
        if state == PURGED:
            changes["purged_at"] = now
        if note is not None:
            changes["note"] = note
        if processes is not None:
            changes["processes"] = processes
        new = replace(entry, **changes)
        with self.db:
            self.db.execute("UPDATE quarantine SET state=?, restored_to=?, restored_at=?, purged_at=?, note=?, "
                            "processes=? WHERE id=?",
                            (new.state, new.restored_to, new.restored_at, new.purged_at, new.note,
                             json.dumps(list(new.processes), sort_keys=True), new.id))
        return new
