"""state.db: what hostguard must not lose (identity, account history, later blocks, baselines, ledger).

The one place that opens it. WAL mode with a busy timeout, so the agent and a manual scan can share it;
schema changes are numbered migrations recorded in ``PRAGMA user_version``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterable
from pathlib import Path

from hostguard import __version__


class StateError(Exception):
    """The state directory cannot be created, opened or migrated."""


MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE scans (id INTEGER PRIMARY KEY, host_key TEXT NOT NULL, started TEXT NOT NULL,
                        root TEXT, complete INTEGER NOT NULL, findings INTEGER NOT NULL);
    CREATE TABLE accounts_seen (host_key TEXT NOT NULL, name BLOB NOT NULL, uid INTEGER,
                                first_seen TEXT NOT NULL, PRIMARY KEY (host_key, name));
    """,
)


def default_state_dir() -> str:
    """/var/lib/hostguard as root, the user's data dir otherwise."""
    if os.geteuid() == 0:
        return "/var/lib/hostguard"
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "hostguard")


class StateStore:
    """The state directory: ``state.db`` plus ``cache/`` (dropped when hostguard's version changes)."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise StateError(f"state directory {directory}: not a directory")
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.directory / "state.db", timeout=10, isolation_level=None)
        except OSError as exc:
            raise StateError(f"state directory {directory}: {exc.strerror or exc}") from exc
        except sqlite3.Error as exc:
            raise StateError(f"state directory {directory}: {exc}") from exc
        try:
            self.db.execute("PRAGMA busy_timeout=10000")
            self._migrate()  # before WAL: a database from a newer hostguard is left exactly as found
            self.db.execute("PRAGMA journal_mode=WAL")
        except (StateError, sqlite3.Error) as exc:
            self.db.close()
            raise StateError(f"state directory {directory}: {exc}") from exc
        self.cache_dir = self._prepare_cache()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StateError(f"state.db schema {version} is newer than this hostguard ({len(MIGRATIONS)})")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self.db.executescript(f"BEGIN; {script}; PRAGMA user_version={number}; COMMIT;")

    def _prepare_cache(self) -> Path:
        cache = self.directory / "cache"
        stamp = cache / "VERSION"
        try:
            if cache.exists() and (not stamp.exists() or stamp.read_text().strip() != __version__):
                shutil.rmtree(cache)
            cache.mkdir(mode=0o700, exist_ok=True)
            stamp.write_text(__version__ + "\n")
        except OSError as exc:
            raise StateError(f"cache directory {cache}: {exc.strerror}") from exc
        return cache

    def state_uuid(self) -> str:
        """A random id made once per state directory: half of the stable host id."""
        row = self.db.execute("SELECT value FROM meta WHERE key='state_uuid'").fetchone()
        if row:
            return str(row[0])
        value = str(uuid.uuid4())
        self.db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('state_uuid', ?)", (value,))
        return str(self.db.execute("SELECT value FROM meta WHERE key='state_uuid'").fetchone()[0])

    def known_accounts(self, host_key: str) -> dict[str, str] | None:
        """Account names seen on earlier scans with when first seen; None before the first scan.

        Names are kept as their exact bytes and returned decoded with ``surrogateescape``.
        """
        rows = self.db.execute("SELECT name, first_seen FROM accounts_seen WHERE host_key=?", (host_key,)).fetchall()
        if not rows:
            return None
        return {bytes(name).decode("utf-8", "surrogateescape"): first for name, first in rows}

    def remember_accounts(self, host_key: str, accounts: Iterable[tuple[str, int]], now: str) -> None:
        """Record the accounts present now (first sighting kept)."""
        rows = [(host_key, name.encode("utf-8", "surrogateescape"), uid, now) for name, uid in accounts]
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT OR IGNORE INTO accounts_seen(host_key, name, uid, first_seen) VALUES (?, ?, ?, ?)", rows)
        self.db.execute("COMMIT")

    def record_scan(self, host_key: str, started: str, root: str | None, complete: bool, findings: int) -> None:
        """Append one scan to the history."""
        self.db.execute("INSERT INTO scans(host_key, started, root, complete, findings) VALUES (?,?,?,?,?)",
                        (host_key, started, root, int(complete), findings))

    def close(self) -> None:
        """Close the database."""
        self.db.close()
