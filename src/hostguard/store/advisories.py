"""cache/advisories.db: the OSV advisories indexed by (ecosystem, normalized package name).

Loading 100,000 OSV JSON records costs seconds and hundreds of MB on every match; the index is built once
per update (``hostguard.vulns.index`` decides when and writes it through :class:`AdvisoryWriter`) and
matching then reads only the rows of the packages it is asked about, in batched queries
(:meth:`AdvisoryReader.rows`, :meth:`AdvisoryReader.records`), counted so tests can prove it.

Tables: ``affected`` has one row per (ecosystem, normalized name, record id) holding what evaluation needs
of that record's affected entries for that package, compactly as JSON; ``vulns`` one row per record (its
aliases, summary, record-level severity, the package keys it has rows under, ``modified``, whether it is
withdrawn); ``meta`` what the index was built from (the source copy's path and digest, the load statistics).
This module knows rows, not OSV: the encoding of a row is ``hostguard.vulns.index``'s.

The file is written whole into a temporary file beside it (journal off: a build that dies leaves only that
file, deleted by the next build) and renamed over the old one, so a reader sees the old index or the new,
never half of one. For that reason it does not use WAL (a -wal file left by one database must never be
applied to the file renamed over it): it is read-only once renamed. It lives in ``cache/``: rebuildable,
dropped when hostguard's version changes. A file that cannot be read (corrupt, truncated, another schema)
raises :class:`AdvisoryStoreError`; the caller rebuilds it and says so. Files are created 0600.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hostguard.store.cache_db import why

DB_NAME = "advisories.db"
SCHEMA_VERSION = 1
BATCH = 500  # names per query: below SQLite's default limit of 32766 variables, and a few queries per ecosystem
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE vulns (id TEXT PRIMARY KEY, modified TEXT NOT NULL, withdrawn INTEGER NOT NULL, git_ranges INTEGER NOT NULL,
                    keys TEXT NOT NULL, record TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE affected (ecosystem TEXT NOT NULL, name TEXT NOT NULL, id TEXT NOT NULL, entries TEXT NOT NULL,
                       PRIMARY KEY (ecosystem, name, id)) WITHOUT ROWID;
"""


class AdvisoryStoreError(Exception):
    """The index cannot be read or written: one line (the caller rebuilds, or says the index is unusable)."""


def _why(exc: BaseException) -> str:
    return why(exc)


def _remove(path: Path | str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def index_path(directory: Path | str) -> Path:
    """Where the index of the state directory's ``cache/`` lives."""
    return Path(directory) / DB_NAME


class AdvisoryWriter:
    """A new index written into a temporary file; :meth:`commit` renames it over the old one, :meth:`abort`
    drops it. Use as a context manager: leaving it by an exception aborts."""

    def __init__(self, directory: Path | str) -> None:
        self.path = index_path(directory)
        self.tmp = self.path.with_name(f".{DB_NAME}.{os.getpid()}.tmp")
        try:
            _remove(self.tmp)  # a build of this pid that died
            fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            os.close(fd)
            self._db: sqlite3.Connection | None = sqlite3.connect(self.tmp, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.executescript(f"{SCHEMA} PRAGMA user_version={SCHEMA_VERSION};")
            self._db.execute("BEGIN")
        except (OSError, sqlite3.Error) as exc:
            _remove(self.tmp)
            raise AdvisoryStoreError(f"advisory index ({self.path}) cannot be written: {_why(exc)}") from exc

    def __enter__(self) -> AdvisoryWriter:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if self._db is not None:
            self.abort()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise AdvisoryStoreError(f"advisory index ({self.path}): the writer is closed")
        return self._db

    def _fail(self, exc: BaseException) -> AdvisoryStoreError:
        self.abort()
        return AdvisoryStoreError(f"advisory index ({self.path}) cannot be written: {_why(exc)}")

    def put(self, vid: str, modified: str, withdrawn: bool, git_ranges: int, record: str,
            rows: Sequence[tuple[str, str, str]]) -> None:
        """Store record ``vid`` (its JSON ``record`` part) and its (ecosystem, name, entries) rows, replacing
        an earlier copy of the same id and every row that copy had."""
        db = self._conn()
        try:
            old = db.execute("SELECT keys FROM vulns WHERE id=?", (vid,)).fetchone()
            if old is not None:
                self._drop_rows(vid, old[0])
            keys = "\n".join(f"{eco}\t{name}" for eco, name, _ in rows)
            db.execute("INSERT OR REPLACE INTO vulns VALUES (?,?,?,?,?,?)",
                       (vid, modified, int(withdrawn), git_ranges, keys, record))
            db.executemany("INSERT OR REPLACE INTO affected VALUES (?,?,?,?)",
                           [(eco, name, vid, entries) for eco, name, entries in rows])
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc

    def _drop_rows(self, vid: str, keys: str) -> None:
        pairs = [key.split("\t", 1) for key in keys.split("\n") if key]
        self._conn().executemany("DELETE FROM affected WHERE ecosystem=? AND name=? AND id=?",
                                 [(eco, name, vid) for eco, name in pairs])

    def drop_withdrawn(self) -> int:
        """Remove the records stored as withdrawn (after the last copy of each id was seen); their count."""
        db = self._conn()
        try:
            gone = db.execute("SELECT id, keys FROM vulns WHERE withdrawn=1").fetchall()
            for vid, keys in gone:
                self._drop_rows(vid, keys)
            db.execute("DELETE FROM vulns WHERE withdrawn=1")
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        return len(gone)

    def totals(self) -> tuple[int, int, int]:
        """(records, package keys, GIT ranges) stored so far."""
        db = self._conn()
        try:
            records, git = db.execute("SELECT COUNT(*), COALESCE(SUM(git_ranges), 0) FROM vulns").fetchone()
            packages = db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT ecosystem, name FROM affected)").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._fail(exc) from exc
        return int(records), int(packages), int(git)

    def commit(self, meta: dict[str, str]) -> None:
        """Write ``meta``, make the file durable and rename it over the index."""
        db = self._conn()
        try:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)", sorted(meta.items()))
            db.execute("COMMIT")
            db.close()
            self._db = None
            fd = os.open(self.tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            _remove(f"{self.path}-journal")
            os.replace(self.tmp, self.path)
        except (OSError, sqlite3.Error) as exc:
            raise self._fail(exc) from exc

    def abort(self) -> None:
        """Drop the temporary file."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        _remove(self.tmp)


class AdvisoryReader:
    """The index, opened read-only; ``queries`` and ``rows_read`` count what matching cost."""

    def __init__(self, directory: Path | str) -> None:
        self.path = index_path(directory)
        self.queries = 0
        self.rows_read = 0
        if not self.path.is_file():
            raise AdvisoryStoreError(f"advisory index ({self.path}) does not exist")
        try:
            self._db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise AdvisoryStoreError(f"advisory index ({self.path}) cannot be opened: {_why(exc)}") from exc
        try:
            self._db.execute("PRAGMA busy_timeout=10000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"schema {version} is not {SCHEMA_VERSION}")
            self.meta = {str(k): str(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
        except sqlite3.Error as exc:
            self._db.close()
            raise AdvisoryStoreError(f"advisory index ({self.path}) is unreadable: {_why(exc)}") from exc

    def close(self) -> None:
        self._db.close()

    def _select(self, sql: str, params: Sequence[str]) -> list[Any]:
        try:
            rows = self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise AdvisoryStoreError(f"advisory index ({self.path}) is unreadable: {_why(exc)}") from exc
        self.queries += 1
        self.rows_read += len(rows)
        return rows

    def rows(self, ecosystem: str, names: Iterable[str]) -> list[tuple[str, str, str]]:
        """(name, record id, entries) of every row of ``ecosystem`` under one of ``names`` (normalized), in
        queries of :data:`BATCH` names."""
        wanted = sorted(set(names))
        out: list[tuple[str, str, str]] = []
        for at in range(0, len(wanted), BATCH):
            chunk = wanted[at:at + BATCH]
            out.extend(self._select(f"SELECT name, id, entries FROM affected WHERE ecosystem=? AND name IN "
                                    f"({','.join('?' * len(chunk))})", [ecosystem, *chunk]))
        return out

    def records(self, ids: Iterable[str]) -> dict[str, str]:
        """Record id -> its stored JSON part, for ``ids``, in queries of :data:`BATCH` ids."""
        wanted = sorted(set(ids))
        out: dict[str, str] = {}
        for at in range(0, len(wanted), BATCH):
            chunk = wanted[at:at + BATCH]
            out.update(self._select(f"SELECT id, record FROM vulns WHERE id IN ({','.join('?' * len(chunk))})",
                                    chunk))
        return out


def remove(directory: Path | str) -> None:
    """Delete the index (an unreadable one, before a rebuild)."""
    _remove(index_path(directory))
