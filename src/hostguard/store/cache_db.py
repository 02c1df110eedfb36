"""What every rebuildable database in ``cache/`` shares: created 0600 without following a symlink, opened with
a busy timeout, its schema version checked and its schema created, and a reason for people when that fails
(the caller then rebuilds the file, with a note)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def why(exc: BaseException) -> str:
    """One short reason for a database that cannot be used."""
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__


def connect(path: Path, schema: str, version: int, *, check: bool = False, durable: bool = True,
            threads: bool = False) -> sqlite3.Connection:
    """``path`` opened (created 0600, never through a symlink) with ``schema`` at ``version``; a file of
    another version raises ``sqlite3.DatabaseError``. ``check``: run SQLite's quick check first;
    ``durable=False``: synchronous=NORMAL (a cache may lose its last writes in a crash, never its file);
    ``threads``: usable from another thread than the one that opened it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=not threads)
    try:
        db.execute("PRAGMA busy_timeout=10000")
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found not in (0, version):
            raise sqlite3.DatabaseError(f"schema {found} is not {version}")
        db.execute("PRAGMA journal_mode=WAL")
        if not durable:
            db.execute("PRAGMA synchronous=NORMAL")
        if check:
            [[answer]] = db.execute("PRAGMA quick_check").fetchall()
            if answer != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {answer}")
        db.executescript(f"BEGIN; {schema} PRAGMA user_version={version}; COMMIT;")
    except BaseException:
        db.close()
        raise
    return db
