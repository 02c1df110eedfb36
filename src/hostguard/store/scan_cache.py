"""cache/scan.db: what the malware scan found in each file it read, so an unchanged file is not read again.

A row is keyed by the file's path (directory and name, as bytes) and holds the file's identity when it was
read (device, inode, size, mtime and ctime in nanoseconds), the *context* of the scan (the rules' digest and
the per-file rule globals that depend on more than the file: whether it lies under a web root), the
file's SHA-256 and the rules that matched (JSON). A row answers only when all of identity and context are
equal: any write, truncation, chmod, rename or replacement of the file, any change of the rules (a rule
edited, a pack added, another yara-x) means the file is read again. SHA-256 IOC lists are not part of the
key: they are matched against the cached digest on every scan, so a new IOC list needs no re-read.

Reads go one directory at a time (one indexed query per directory the walk enters: memory stays bounded by
the largest directory, not the host); writes are collected and committed in batches, one transaction each.
Rows of names a directory no longer holds are dropped when the walk lists that directory.

It lives in ``cache/``: rebuildable, dropped when hostguard's version changes. An unreadable or corrupt file
is deleted and rebuilt (``note`` says so), never a traceback; a cache that cannot be written only makes the
next scan slower. The file is created 0600.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from hostguard.store.cache_db import connect, why

DB_NAME = "scan.db"
SCHEMA_VERSION = 1
BATCH = 2000
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (dir BLOB NOT NULL, name BLOB NOT NULL, device INTEGER NOT NULL,
                                  inode INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                                  ctime_ns INTEGER NOT NULL, context TEXT NOT NULL, sha256 TEXT NOT NULL,
                                  result TEXT NOT NULL, PRIMARY KEY (dir, name)) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class CachedFile:
    """One file as it was when it was read, and what was found in it."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    context: str
    sha256: str
    result: str  # JSON list of the matches; "[]" when clean

    def identity(self) -> tuple[int, int, int, int, int]:
        """(device, inode, size, mtime_ns, ctime_ns)."""
        return (self.device, self.inode, self.size, self.mtime_ns, self.ctime_ns)


Row = tuple[tuple[int, int, int, int, int], str, str, str]


class ScanCache:
    """The scan cache of one state directory; use :meth:`open`, then :meth:`directory`, :meth:`put`, :meth:`close`."""

    def __init__(self, path: Path, db: sqlite3.Connection | None, note: str = "") -> None:
        self.path = path
        self.note = note
        self._db = db
        self._pending: list[tuple[bytes, bytes, int, int, int, int, int, str, str, str]] = []
        self._gone: list[tuple[bytes, bytes]] = []

    @classmethod
    def open(cls, directory: Path | str) -> ScanCache:
        """The cache in ``directory/scan.db``; a corrupt file is rebuilt, an unwritable one disables caching."""
        path = Path(directory) / DB_NAME
        try:
            return cls(path, _connect(path))
        except (sqlite3.Error, OSError, ValueError) as exc:
            first = _why(exc)
        try:
            _remove(path)
            return cls(path, _connect(path), f"scan cache ({path}) was unreadable ({first}) and was rebuilt")
        except (sqlite3.Error, OSError) as exc:
            return cls(path, None, f"scan cache ({path}) cannot be used: {_why(exc)}; every file is read")

    @classmethod
    def disabled(cls) -> ScanCache:
        """A cache that remembers nothing (every file is read)."""
        return cls(Path(os.devnull), None)

    @property
    def enabled(self) -> bool:
        """False when there is no database behind it."""
        return self._db is not None

    def directory(self, path: str) -> dict[str, Row]:
        """Name -> row of every file cached in directory ``path``, as plain tuples (the re-scan's hot path):
        ``((device, inode, size, mtime_ns, ctime_ns), context, sha256, result)``."""
        if self._db is None:
            return {}
        try:
            rows = self._db.execute("SELECT name, device, inode, size, mtime_ns, ctime_ns, context, sha256, result "
                                    "FROM files WHERE dir=?", (os.fsencode(path),)).fetchall()
        except sqlite3.Error as exc:
            self._fail(exc)
            return {}
        decode = os.fsdecode
        return {decode(name): ((dev, ino, size, mtime, ctime), context, sha, result)
                for name, dev, ino, size, mtime, ctime, context, sha, result in rows}

    def lookup(self, path: str) -> CachedFile | None:
        """The row of one file (for a single-file scan: the watcher, quarantine)."""
        if self._db is None:
            return None
        head, name = os.path.split(path)
        try:
            row = self._db.execute("SELECT device, inode, size, mtime_ns, ctime_ns, context, sha256, result FROM files "
                                   "WHERE dir=? AND name=?", (os.fsencode(head), os.fsencode(name))).fetchone()
        except sqlite3.Error as exc:
            self._fail(exc)
            return None
        return CachedFile(*row) if row else None

    def put(self, path: str, identity: tuple[int, int, int, int, int], context: str, sha256: str, result: str) -> None:
        """Remember what was found in the file at ``path`` of this identity (written in batches)."""
        if self._db is None:
            return
        head, name = os.path.split(path)
        self._pending.append((os.fsencode(head), os.fsencode(name), *identity, context, sha256, result))
        if len(self._pending) >= BATCH:
            self.flush()

    def forget(self, directory: str, names: list[str]) -> None:
        """Drop the rows of ``names`` in ``directory`` (files gone or no longer readable)."""
        if self._db is None or not names:
            return
        head = os.fsencode(directory)
        self._gone.extend((head, os.fsencode(name)) for name in names)
        if len(self._gone) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Write what was collected, in one transaction."""
        if self._db is None or not (self._pending or self._gone):
            return
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("DELETE FROM files WHERE dir=? AND name=?", self._gone)
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?)", self._pending)
        except sqlite3.Error as exc:
            self._fail(exc)
        self._pending.clear()
        self._gone.clear()

    def close(self) -> None:
        """Flush and close."""
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None

    def _fail(self, exc: BaseException) -> None:
        self.note = f"scan cache ({self.path}) not used further: {_why(exc)}"
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None


def _why(exc: BaseException) -> str:
    return why(exc)


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating it 0600, never through a symlink) and check the database."""
    return connect(path, SCHEMA, SCHEMA_VERSION, durable=False, threads=True)


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")
