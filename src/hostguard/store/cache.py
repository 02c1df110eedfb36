"""cache/passwords.db: how far down its guess list each password hash has survived.

"Hash H survived the first N guesses of list L" lets a re-scan start at guess N+1 instead of at the top,
so each scan of an unchanged hash reaches further down the list. The row is keyed by the host and the
account and says *which* hash and list it is about with digests only: a changed hash (a new password or
scheme) or a changed list no longer matches, and the account starts over.

What it must never become is help for an attacker who reads it: it holds no hash and no guess, only the
SHA-256 of the hash string and of the guess list, and the count. A found password leaves no trace here
(the weak-password check does not advance a row when it finds the password, so no position points at
it). The file is created 0600 (SQLite gives its -wal and -shm files the database's mode).

It lives in ``cache/``: rebuildable, dropped when hostguard's version changes. An unreadable or corrupt
file is deleted and rebuilt with a note saying progress starts over, never a traceback. The database is
read once when opened (a scan then works from memory, on any thread) and written once by :meth:`save`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hostguard.store.cache_db import connect, why

DB_NAME = "passwords.db"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS progress (host_key TEXT NOT NULL, account BLOB NOT NULL, hash_sha256 TEXT NOT NULL,
                                     list_sha256 TEXT NOT NULL, tried INTEGER NOT NULL CHECK (tried >= 0),
                                     PRIMARY KEY (host_key, account));
"""


class CacheError(Exception):
    """The password-progress cache cannot be written."""


def hash_digest(hashed: str) -> str:
    """The SHA-256 of the full hash string: tells a changed hash from the same one, and is all that is kept."""
    return hashlib.sha256(hashed.encode("utf-8", "surrogateescape")).hexdigest()


def list_digest(guesses: Iterable[str]) -> str:
    """The SHA-256 of a guess list's content in its order (each guess length-prefixed, so no two lists collide
    by where their words are cut)."""
    h = hashlib.sha256()
    for guess in guesses:
        raw = guess.encode("utf-8", "surrogateescape")
        h.update(len(raw).to_bytes(4, "big"))
        h.update(raw)
    return h.hexdigest()


def _name(account: str) -> bytes:
    return account.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class _Row:
    hash_sha256: str
    list_sha256: str
    tried: int


class GuessProgress:
    """One host's rows, read when opened; :meth:`remember` collects new positions, :meth:`save` writes them.

    ``note`` is empty, or says why earlier progress was lost (a corrupt file rebuilt) or why none will be
    kept (the file cannot be written): the check shows it beside what it reports.
    """

    def __init__(self, path: Path, host_key: str, rows: dict[bytes, _Row], note: str = "",
                 writable: bool = True) -> None:
        self.path = path
        self.host_key = host_key
        self.note = note
        self.writable = writable
        self._rows = rows
        self._pending: dict[bytes, _Row] = {}

    @classmethod
    def open(cls, directory: Path, host_key: str) -> GuessProgress:
        """This host's progress in ``directory/passwords.db``; a corrupt file is rebuilt (see ``note``)."""
        path = directory / DB_NAME
        try:
            return cls(path, host_key, _read(path, host_key))
        except (sqlite3.Error, OSError, ValueError, TypeError) as exc:
            first = _why(exc)
        try:
            _remove(path)
            _read(path, host_key)
        except (sqlite3.Error, OSError) as exc:
            return cls(path, host_key, {}, f"password-guess progress ({path}) cannot be kept: {_why(exc)}; every "
                                           "scan starts each account over", writable=False)
        return cls(path, host_key, {}, f"password-guess progress ({path}) was unreadable ({first}) and was rebuilt: "
                                       "every account starts over")

    def tried(self, account: str, hashed: str, guesses_sha256: str) -> int:
        """Guesses of this list already tried against this very hash without success (0: start over)."""
        row = self._rows.get(_name(account))
        if row is None or row.hash_sha256 != hash_digest(hashed) or row.list_sha256 != guesses_sha256:
            return 0
        return row.tried

    def remember(self, account: str, hashed: str, guesses_sha256: str, tried: int) -> None:
        """Record (for :meth:`save`) that the first ``tried`` guesses of the list failed against ``hashed``."""
        self._pending[_name(account)] = _Row(hash_digest(hashed), guesses_sha256, max(0, tried))

    def save(self) -> None:
        """Write what :meth:`remember` collected, in one transaction."""
        if not self._pending or not self.writable:
            return
        try:
            db = _connect(self.path)
            try:
                with db:
                    db.executemany(
                        "INSERT INTO progress(host_key, account, hash_sha256, list_sha256, tried) VALUES (?,?,?,?,?) "
                        "ON CONFLICT(host_key, account) DO UPDATE SET hash_sha256=excluded.hash_sha256, "
                        "list_sha256=excluded.list_sha256, tried=excluded.tried",
                        [(self.host_key, name, r.hash_sha256, r.list_sha256, r.tried)
                         for name, r in self._pending.items()])
            finally:
                db.close()
        except (sqlite3.Error, OSError) as exc:
            raise CacheError(f"password-guess progress ({self.path}) not saved: {_why(exc)}") from exc
        self._rows.update(self._pending)
        self._pending.clear()


def _why(exc: BaseException) -> str:
    return why(exc)


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating it 0600, never through a symlink) and check the database."""
    return connect(path, SCHEMA, SCHEMA_VERSION, check=True)


def _read(path: Path, host_key: str) -> dict[bytes, _Row]:
    db = _connect(path)
    try:
        rows = db.execute("SELECT account, hash_sha256, list_sha256, tried FROM progress WHERE host_key=?",
                          (host_key,)).fetchall()
    finally:
        db.close()
    return {bytes(name): _Row(str(h), str(lst), int(n)) for name, h, lst, n in rows}


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")
