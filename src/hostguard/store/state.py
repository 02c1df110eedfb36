"""state.db: what hostguard must not lose (identity, account history, accepted findings, the findings of
every scan, the audit log, blocks, logons, the quarantine ledger).

The one place that opens it. WAL mode with a busy timeout, so the agent and a manual scan can share it;
schema changes are numbered migrations recorded in ``PRAGMA user_version``: a migration is appended,
never edited, and keeps the rows it finds (tests/store/test_state.py upgrades a database of every older
schema holding a row in every table).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hostguard import __version__
from hostguard.findings import Finding, portable, readable


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
    # 2: accounts carry whether they were there at the baseline (the first scan that read them), when last
    # seen and since when they are gone; the baseline of an existing database is each host's earliest
    # first_seen. Accepted findings, the findings of every scan (issue 8's "what changed" reads them too)
    # and an audit log of every accept and undo.
    """
    ALTER TABLE accounts_seen ADD COLUMN baseline INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE accounts_seen ADD COLUMN last_seen TEXT;
    ALTER TABLE accounts_seen ADD COLUMN gone_since TEXT;
    UPDATE accounts_seen SET baseline = 1, last_seen = first_seen
        WHERE first_seen = (SELECT MIN(a.first_seen) FROM accounts_seen AS a WHERE a.host_key = accounts_seen.host_key);
    UPDATE accounts_seen SET last_seen = first_seen WHERE last_seen IS NULL;
    CREATE TABLE accepted (host_key TEXT NOT NULL, fingerprint TEXT NOT NULL, check_id TEXT, title TEXT,
                           reason TEXT NOT NULL, accepted_at TEXT NOT NULL, PRIMARY KEY (host_key, fingerprint));
    CREATE TABLE scan_findings (scan_id INTEGER NOT NULL REFERENCES scans(id), fingerprint TEXT NOT NULL,
                                check_id TEXT NOT NULL, severity TEXT NOT NULL, title TEXT NOT NULL,
                                target TEXT NOT NULL, disposition TEXT NOT NULL, PRIMARY KEY (scan_id, fingerprint));
    CREATE INDEX scan_findings_by_fingerprint ON scan_findings(fingerprint);
    CREATE TABLE audit (id INTEGER PRIMARY KEY, time TEXT NOT NULL, host_key TEXT NOT NULL, action TEXT NOT NULL,
                        subject TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL);
    """,
    # 3: what each scan looked at (issue 8, "what changed"): every selected check and whether it ran to
    # completion. Without it a check that ran out of budget would look like a fix. Scans recorded before
    # have no rows here: their coverage is unknown, so no later scan is compared with them.
    """
    CREATE TABLE scan_checks (scan_id INTEGER NOT NULL REFERENCES scans(id), check_id TEXT NOT NULL,
                              completed INTEGER NOT NULL, PRIMARY KEY (scan_id, check_id));
    CREATE INDEX scans_by_host ON scans(host_key, id);
    """,
    # 4: the SSH keys earlier scans saw (issue 9, "authorized_keys changes since the previous scan"), per host
    # and root, keyed by account and SHA256 fingerprint (never by file or line: moving a line is no change);
    # ``options`` as last seen (a JSON list, one entry per line the key is on), and since when they differ
    # from the ones before. ``ssh_key_owners`` holds the accounts whose key files were read, and whether all
    # of them were (``complete``): keys behind a file that could not be read are neither gone nor new. A
    # database upgraded from 3 has no rows here, so its first scan after the upgrade is the key baseline.
    """
    CREATE TABLE ssh_keys_seen (host_key TEXT NOT NULL, root TEXT NOT NULL, user BLOB NOT NULL,
                                fingerprint TEXT NOT NULL, key_type TEXT NOT NULL, options TEXT NOT NULL,
                                first_seen TEXT NOT NULL, baseline INTEGER NOT NULL, last_seen TEXT NOT NULL,
                                gone_since TEXT, options_since TEXT, previous_options TEXT,
                                PRIMARY KEY (host_key, root, user, fingerprint));
    CREATE TABLE ssh_key_owners (host_key TEXT NOT NULL, root TEXT NOT NULL, user BLOB NOT NULL,
                                 complete INTEGER NOT NULL, first_read TEXT NOT NULL,
                                 PRIMARY KEY (host_key, root, user));
    """,
    # 5: active probes (issue 10, "weak service passwords"): every session that tried passwords against a
    # local service, so hostguard's own logon detectors can tell its guesses from an attacker's and an owner
    # can see what was tried. Never the password: the account, how many attempts, the outcome and, for a
    # hit, the guess's rank in the list.
    """
    CREATE TABLE probes (id INTEGER PRIMARY KEY, host_key TEXT NOT NULL, service TEXT NOT NULL,
                         endpoint TEXT NOT NULL, account TEXT NOT NULL, started TEXT NOT NULL,
                         finished TEXT, attempts INTEGER NOT NULL, outcome TEXT NOT NULL, rank INTEGER);
    CREATE INDEX probes_by_host ON probes(host_key, started);
    """,
    # 6: blocks (issue 11, "block attackers, never the owner"): every address or network hostguard was asked to
    # drop in its own nftables table, with why, who asked (``manual`` or a detector id), until when (NULL:
    # permanent) and whether a refusal to block an owner's address was overridden (``forced``). Rows stay
    # after an unblock or expiry (``removed``, ``removed_by``) so repeat offenders can be counted; the kernel
    # sets are rebuilt from the active rows after a reboot or a firewall reload.
    """
    CREATE TABLE blocks (id INTEGER PRIMARY KEY, network TEXT NOT NULL, reason TEXT NOT NULL, source TEXT NOT NULL,
                         created TEXT NOT NULL, updated TEXT NOT NULL, expires TEXT, forced INTEGER NOT NULL,
                         removed TEXT, removed_by TEXT);
    CREATE INDEX blocks_by_network ON blocks(network, removed);
    """,
    # 7: the logon store (issue 11, "record every logon"): each log file read, known by a digest of its first
    # bytes (up to 4 KiB, decompressed: ``auth.log``, ``auth.log.1`` and ``auth.log.2.gz`` are one file) and
    # how far it was read; every attempt once, keyed by its file and line (journal entries by their cursor);
    # which ingest run stored it (``batch``: the detectors' new events) and whether it was hostguard's own
    # probe (``ours``). The alerts detectors raised (the finding JSON, merged per fingerprint while an
    # episode goes on), and the approved logon baseline (source IPs, countries, hours, accounts).
    """
    CREATE TABLE logon_files (id INTEGER PRIMARY KEY, host_key TEXT NOT NULL, head TEXT NOT NULL,
                              head_len INTEGER NOT NULL, path TEXT NOT NULL, lines INTEGER NOT NULL,
                              offset INTEGER NOT NULL, seen TEXT NOT NULL);
    CREATE INDEX logon_files_by_head ON logon_files(host_key, head);
    CREATE TABLE logon_events (id INTEGER PRIMARY KEY, host_key TEXT NOT NULL,
                               file_id INTEGER NOT NULL REFERENCES logon_files(id), key TEXT NOT NULL,
                               path TEXT NOT NULL, line INTEGER NOT NULL, service TEXT NOT NULL, outcome TEXT NOT NULL,
                               count INTEGER NOT NULL, user BLOB, ip TEXT, port INTEGER, method TEXT, time TEXT,
                               ts REAL NOT NULL, ours INTEGER NOT NULL, batch INTEGER NOT NULL,
                               UNIQUE (file_id, key));
    CREATE INDEX logon_events_by_time ON logon_events(host_key, ts);
    CREATE INDEX logon_events_by_batch ON logon_events(batch);
    CREATE TABLE logon_alerts (id INTEGER PRIMARY KEY, host_key TEXT NOT NULL, fingerprint TEXT NOT NULL,
                               detector TEXT NOT NULL, severity TEXT NOT NULL, first_ts REAL NOT NULL,
                               last_ts REAL NOT NULL, time TEXT, raised TEXT NOT NULL, alert TEXT NOT NULL);
    CREATE INDEX logon_alerts_by_fingerprint ON logon_alerts(host_key, fingerprint, last_ts);
    CREATE TABLE logon_baseline (host_key TEXT NOT NULL, dimension TEXT NOT NULL, value TEXT NOT NULL,
                                 seen INTEGER NOT NULL, approved INTEGER NOT NULL, origin TEXT NOT NULL,
                                 first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
                                 PRIMARY KEY (host_key, dimension, value));
    """,
    # 8: the quarantine ledger (issue 12, "move, never delete; restore byte-exact"): one row per file hostguard
    # moved away, with everything a byte-exact restore needs: the original path as its exact bytes, sha256,
    # size, mode, owner, times in ns, every extended attribute (a JSON list of base64 name/value pairs, all
    # namespaces), the inode flags (NULL: the file system has none), the hard-link count and identity seen, the
    # rule and reason, the per-entry key the stored copy is XORed with (store/quarantine.py), the processes
    # that ran it, and what became of it (``state``: quarantined, restored, purged, failed).
    """
    CREATE TABLE quarantine (id TEXT PRIMARY KEY, host_key TEXT NOT NULL, path BLOB NOT NULL, sha256 TEXT NOT NULL,
                             size INTEGER NOT NULL, mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
                             atime_ns INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
                             dev INTEGER NOT NULL, ino INTEGER NOT NULL, nlink INTEGER NOT NULL, flags INTEGER,
                             xattrs TEXT NOT NULL, rule TEXT NOT NULL, reason TEXT NOT NULL, key BLOB NOT NULL,
                             stored TEXT NOT NULL, quarantined_at TEXT NOT NULL, processes TEXT NOT NULL,
                             state TEXT NOT NULL, restored_to BLOB, restored_at TEXT, purged_at TEXT,
                             note TEXT NOT NULL DEFAULT '');
    CREATE INDEX quarantine_by_time ON quarantine(host_key, quarantined_at);
    """,
    # 9: the WAF (issue 14): events read from the front ends' JSON Lines log (no request bodies: rule ids,
    # truncated and masked matched data, the client and its network, the path without query values), where
    # reading each log got to (by path and inode, so a rotated log is read from its start), and the narrow
    # exclusions learning proposed (rule x site x path x variable), with the owner's decision.
    """
    CREATE TABLE waf_events (request_id TEXT NOT NULL, time TEXT NOT NULL, day TEXT NOT NULL, site TEXT NOT NULL,
                             client TEXT NOT NULL, network TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
                             action TEXT NOT NULL, status INTEGER NOT NULL, rules TEXT NOT NULL,
                             PRIMARY KEY (request_id, time));
    CREATE INDEX waf_events_by_time ON waf_events(time);
    CREATE TABLE waf_ingest (path TEXT PRIMARY KEY, inode INTEGER NOT NULL, offset INTEGER NOT NULL);
    CREATE TABLE waf_exclusions (id TEXT PRIMARY KEY, site TEXT NOT NULL, rule_id INTEGER NOT NULL,
                                 path TEXT NOT NULL, variable TEXT NOT NULL, networks INTEGER NOT NULL,
                                 days INTEGER NOT NULL, hits INTEGER NOT NULL, state TEXT NOT NULL,
                                 proposed_at TEXT NOT NULL, decided_at TEXT,
                                 UNIQUE (site, rule_id, path, variable));
    """,
    # 10: WAF events of requests a front end refused before the engine's verdict (too large, too slow, bad
    # framing) carry why, as a reason code; the events already stored were all the engine's ('').
    """
    ALTER TABLE waf_events ADD COLUMN reason TEXT NOT NULL DEFAULT '';
    """,
)

# What became of a finding in a scan: reported, hidden by a [[suppress.rules]] entry, or accepted.
REPORTED, SUPPRESSED, ACCEPTED = "reported", "suppressed", "accepted"


@dataclass(frozen=True)
class AccountSeen:
    """One account in a host's history: its UID, when first seen (since its latest return, if it had gone),
    and whether it was there at the baseline (the first scan that read this host's accounts)."""

    uid: int | None
    first_seen: str
    baseline: bool


@dataclass(frozen=True)
class KnownAccounts:
    """The accounts earlier scans of a host saw (those present at their last sighting), and the time of
    the scan asking: what "new for N days" is measured against."""

    now: datetime
    accounts: Mapping[str, AccountSeen]


@dataclass(frozen=True)
class KeySeen:
    """One SSH key in a host's history: when first seen (since its latest return, if it had gone), whether it
    was there at the baseline, its options as last seen (one canonical string per line it is on) and, when
    they changed after its first sighting, since when and what they were before."""

    key_type: str
    options: tuple[str, ...]
    first_seen: str
    baseline: bool
    options_since: str | None = None
    previous_options: tuple[str, ...] | None = None


@dataclass(frozen=True)
class KeyHistory:
    """The keys earlier scans of a host (and root) saw, by (account, fingerprint), present at their last
    sighting; and per account whether its key files were ever all read (False: only partly, so keys found
    later are its first look, not new ones)."""

    keys: Mapping[tuple[str, str], KeySeen]
    owners: Mapping[str, bool]


@dataclass(frozen=True)
class KnownKeys:
    """A :class:`KeyHistory` and the time of the scan asking: what "new for N days" is measured against."""

    now: datetime
    history: KeyHistory


@dataclass(frozen=True)
class PresentKey:
    """One key as a scan found it: its account, fingerprint, type and options (one string per line)."""

    user: str
    fingerprint: str
    key_type: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class GoneKey:
    """A key that was present and is gone now, with the options it had."""

    user: str
    fingerprint: str
    options: tuple[str, ...]


@dataclass(frozen=True)
class SeenFinding:
    """A finding as a recorded scan saw it: enough to name an accepted fingerprint later."""

    fingerprint: str
    check_id: str
    severity: str
    title: str


@dataclass(frozen=True)
class PastFinding:
    """A finding as a recorded scan stored it (the report's readable forms) and what became of it."""

    fingerprint: str
    check_id: str
    severity: str
    title: str
    target: Mapping[str, Any]
    disposition: str

    def to_dict(self) -> dict[str, Any]:
        """The short JSON form ``scan --diff`` lists (the full finding, when current, is in ``findings``)."""
        return {"fingerprint": self.fingerprint, "id": self.check_id, "severity": self.severity, "title": self.title,
                "target": dict(self.target)}


@dataclass(frozen=True)
class RecordedScan:
    """One scan of the history: when, of which tree, what it looked at and what it found.

    ``checks`` maps every selected check id to whether it ran to completion (no entry in ``skipped``); it is
    None for a scan recorded before hostguard kept coverage (schema 2), which nothing is compared with.
    """

    id: int
    host_key: str
    started: str
    root: str | None
    complete: bool
    reported: int
    checks: Mapping[str, bool] | None
    findings: Mapping[str, PastFinding]

    @property
    def families(self) -> list[str]:
        """The families of the selected checks, in name order (empty when unknown)."""
        return sorted({c.split(".", 1)[0] for c in self.checks or ()})


@dataclass(frozen=True)
class RecordedProbe:
    """One recorded active probe: which service and account, when (``started`` to ``finished``: the window in
    which the service's own log shows our failures), how many attempts and what came of it (``rank``: the
    matched guess's place in the list, for a hit only). No password, ever."""

    service: str
    endpoint: str
    account: str
    started: str
    attempts: int
    outcome: str
    rank: int | None = None
    finished: str | None = None


@dataclass(frozen=True)
class Accepted:
    """One accepted finding of one host."""

    fingerprint: str
    check_id: str | None
    title: str | None
    reason: str
    accepted_at: str

    def to_dict(self) -> dict[str, str | None]:
        """The JSON form ``hostguard accepted --format json`` lists."""
        return {"fingerprint": self.fingerprint, "check": self.check_id, "title": self.title, "reason": self.reason,
                "accepted_at": self.accepted_at}


@dataclass(frozen=True)
class AuditEntry:
    """One recorded action: who was accepted, taken back or lapsed, when and why."""

    time: str
    host_key: str
    action: str
    subject: str
    reason: str
    detail: str


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

    def known_accounts(self, host_key: str) -> dict[str, AccountSeen] | None:
        """Accounts present at their last sighting, by name; None before the first scan that read them.

        Names are kept as their exact bytes and returned decoded with ``surrogateescape``.
        """
        if not self._has_account_history(host_key):
            return None
        rows = self.db.execute("SELECT name, uid, first_seen, baseline FROM accounts_seen "
                               "WHERE host_key=? AND gone_since IS NULL", (host_key,)).fetchall()
        return {bytes(name).decode("utf-8", "surrogateescape"): AccountSeen(uid, first, bool(baseline))
                for name, uid, first, baseline in rows}

    def _has_account_history(self, host_key: str) -> bool:
        return self.db.execute("SELECT 1 FROM accounts_seen WHERE host_key=? LIMIT 1", (host_key,)).fetchone() is not None

    def remember_accounts(self, host_key: str, accounts: Iterable[tuple[str, int]], now: str) -> list[str]:
        """Record the accounts present now, the whole list read in one scan; return the names gone since.

        The first call for a host is its baseline. An account first seen later keeps its first sighting
        while it stays; one that is gone is marked so, and if it comes back it is a new account again
        (deleted and re-created is a new account, whoever did it), first seen on its return.
        """
        present = {name.encode("utf-8", "surrogateescape"): uid for name, uid in accounts}
        self.db.execute("BEGIN IMMEDIATE")
        try:
            baseline = int(not self._has_account_history(host_key))
            rows = {bytes(name): gone for name, gone in self.db.execute(
                "SELECT name, gone_since FROM accounts_seen WHERE host_key=?", (host_key,))}
            for name, uid in present.items():
                if name not in rows:
                    self.db.execute("INSERT INTO accounts_seen(host_key, name, uid, first_seen, baseline, last_seen) "
                                    "VALUES (?, ?, ?, ?, ?, ?)", (host_key, name, uid, now, baseline, now))
                elif rows[name] is not None:  # back after being gone: new again
                    self.db.execute("UPDATE accounts_seen SET uid=?, first_seen=?, baseline=0, last_seen=?, "
                                    "gone_since=NULL WHERE host_key=? AND name=?", (uid, now, now, host_key, name))
                else:
                    self.db.execute("UPDATE accounts_seen SET uid=?, last_seen=? WHERE host_key=? AND name=?",
                                    (uid, now, host_key, name))
            gone = [name for name, since in rows.items() if since is None and name not in present]
            self.db.executemany("UPDATE accounts_seen SET gone_since=? WHERE host_key=? AND name=?",
                                [(now, host_key, name) for name in gone])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return [name.decode("utf-8", "surrogateescape") for name in gone]

    def known_keys(self, host_key: str, root: str) -> KeyHistory | None:
        """The SSH keys earlier scans of this host and root saw (present at their last sighting); None before
        the first scan that read keys there (a database with account history but no key history included)."""
        owners = {bytes(user).decode("utf-8", "surrogateescape"): bool(complete) for user, complete in self.db.execute(
            "SELECT user, complete FROM ssh_key_owners WHERE host_key=? AND root=?", (host_key, root))}
        if not owners and not self._has_key_history(host_key, root):
            return None
        keys = {(bytes(user).decode("utf-8", "surrogateescape"), fp): KeySeen(
                    key_type, tuple(json.loads(options)), first, bool(baseline), since,
                    tuple(json.loads(previous)) if previous is not None else None)
                for user, fp, key_type, options, first, baseline, since, previous in self.db.execute(
                    "SELECT user, fingerprint, key_type, options, first_seen, baseline, options_since, "
                    "previous_options FROM ssh_keys_seen WHERE host_key=? AND root=? AND gone_since IS NULL",
                    (host_key, root))}
        return KeyHistory(keys, owners)

    def _has_key_history(self, host_key: str, root: str) -> bool:
        return self.db.execute("SELECT 1 FROM ssh_keys_seen WHERE host_key=? AND root=? LIMIT 1",
                               (host_key, root)).fetchone() is not None

    def remember_keys(self, host_key: str, root: str, keys: Iterable[PresentKey], read: Iterable[str],
                      unread: Iterable[str], now: str) -> list[GoneKey]:
        """Record the keys one scan found; return the keys gone since.

        ``read`` names the accounts whose key files were all read, ``unread`` those with a key file that could
        not be read (their keys found are recorded, none is taken for gone). The first call for a host and
        root is its baseline; an account first read completely after being unreadable is a first look, its
        keys baseline too (while some of its files stay unreadable, a key found in the others is new). A key
        first seen later keeps its first sighting while it stays; a key that is gone is marked so, and if it
        comes back it is new again, first seen on its return. A change of options is remembered with its
        time and the options before; going back to those options undoes it. An account gone from the
        accounts is forgotten here, so keys of a re-created account are new.
        """
        read_set = {u.encode("utf-8", "surrogateescape") for u in read}
        unread_set = {u.encode("utf-8", "surrogateescape") for u in unread} - read_set
        present = {(k.user.encode("utf-8", "surrogateescape"), k.fingerprint): k for k in keys}
        self.db.execute("BEGIN IMMEDIATE")
        try:
            owners = {bytes(user): bool(complete) for user, complete in self.db.execute(
                "SELECT user, complete FROM ssh_key_owners WHERE host_key=? AND root=?", (host_key, root))}
            baseline_host = not owners and not self._has_key_history(host_key, root)
            # a first look: the baseline, or an account whose files are all read now after some were not before
            first_look = {u for u in read_set | unread_set
                          if baseline_host or (u in read_set and owners.get(u) is False)}
            for user in read_set | unread_set:
                complete = int(user in read_set or owners.get(user, False))
                self.db.execute("INSERT INTO ssh_key_owners(host_key, root, user, complete, first_read) "
                                "VALUES (?,?,?,?,?) ON CONFLICT(host_key, root, user) DO UPDATE SET "
                                "complete=excluded.complete", (host_key, root, user, complete, now))
            self.db.executemany("DELETE FROM ssh_key_owners WHERE host_key=? AND root=? AND user=?",
                                [(host_key, root, u) for u in owners if u not in read_set | unread_set])
            rows: dict[tuple[bytes, str], tuple[str | None, tuple[str, ...], tuple[str, ...] | None]] = {
                (bytes(user), fp): (gone, tuple(json.loads(options)), tuple(json.loads(previous)) if previous else None)
                for user, fp, gone, options, previous in self.db.execute(
                    "SELECT user, fingerprint, gone_since, options, previous_options FROM ssh_keys_seen "
                    "WHERE host_key=? AND root=?", (host_key, root))}
            where = "WHERE host_key=? AND root=? AND user=? AND fingerprint=?"
            for (user, fp), key in present.items():
                options = json.dumps(list(key.options))
                row = (host_key, root, user, fp)
                if (user, fp) not in rows:
                    self.db.execute(
                        "INSERT INTO ssh_keys_seen(host_key, root, user, fingerprint, key_type, options, first_seen, "
                        "baseline, last_seen) VALUES (?,?,?,?,?,?,?,?,?)",
                        (*row, key.key_type, options, now, int(user in first_look), now))
                    continue
                gone_since, known, previous = rows[(user, fp)]
                if gone_since is not None:  # back after being gone: new again
                    self.db.execute("UPDATE ssh_keys_seen SET key_type=?, options=?, first_seen=?, baseline=0, "
                                    "last_seen=?, gone_since=NULL, options_since=NULL, previous_options=NULL " + where,
                                    (key.key_type, options, now, now, *row))
                elif previous is not None and previous == key.options:  # the change undone (its fix applied)
                    self.db.execute("UPDATE ssh_keys_seen SET options=?, options_since=NULL, previous_options=NULL, "
                                    "last_seen=? " + where, (options, now, *row))
                elif known != key.options:
                    self.db.execute("UPDATE ssh_keys_seen SET previous_options=options, options=?, options_since=?, "
                                    "last_seen=? " + where, (options, now, now, *row))
                else:
                    self.db.execute("UPDATE ssh_keys_seen SET last_seen=? " + where, (now, *row))
            gone = [(user, fp, options) for (user, fp), (since, options, _) in rows.items()
                    if since is None and (user, fp) not in present and user not in unread_set]
            self.db.executemany("UPDATE ssh_keys_seen SET gone_since=? WHERE host_key=? AND root=? AND user=? "
                                "AND fingerprint=?", [(now, host_key, root, user, fp) for user, fp, _ in gone])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return [GoneKey(user.decode("utf-8", "surrogateescape"), fp, options) for user, fp, options in gone]

    def record_scan(self, host_key: str, started: str, root: str | None, complete: bool, findings: int,
                    seen: Iterable[tuple[Finding, str]] = (), checks: Mapping[str, bool] | None = None) -> int:
        """Append one scan to the history with every finding it made and what became of it (``REPORTED``,
        ``SUPPRESSED`` or ``ACCEPTED``) and, in ``checks``, every selected check id with whether it ran to
        completion; return the scan's id."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            cursor = self.db.execute(
                "INSERT INTO scans(host_key, started, root, complete, findings) VALUES (?,?,?,?,?)",
                (host_key, started, root, int(complete), findings))
            scan_id = int(cursor.lastrowid or 0)
            self.db.executemany("INSERT INTO scan_checks(scan_id, check_id, completed) VALUES (?,?,?)",
                                [(scan_id, check, int(done)) for check, done in (checks or {}).items()])
            self.db.executemany(
                "INSERT OR IGNORE INTO scan_findings(scan_id, fingerprint, check_id, severity, title, target, "
                "disposition) VALUES (?,?,?,?,?,?,?)",
                [(scan_id, f.fingerprint, f.id, str(f.severity), readable(f.title),
                  json.dumps(portable(dict(f.target)), sort_keys=True), disposition) for f, disposition in seen])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return scan_id

    def scan(self, scan_id: int) -> RecordedScan | None:
        """One recorded scan with its coverage and findings (None when there is no such scan, or it was pruned)."""
        row = self.db.execute("SELECT id, host_key, started, root, complete, findings FROM scans WHERE id=?",
                              (scan_id,)).fetchone()
        if row is None:
            return None
        checks = {c: bool(done) for c, done in self.db.execute(
            "SELECT check_id, completed FROM scan_checks WHERE scan_id=? ORDER BY check_id", (scan_id,))}
        findings = {fp: PastFinding(fp, check, severity, title, json.loads(target), disposition)
                    for fp, check, severity, title, target, disposition in self.db.execute(
                        "SELECT fingerprint, check_id, severity, title, target, disposition FROM scan_findings "
                        "WHERE scan_id=? ORDER BY check_id, fingerprint", (scan_id,))}
        return RecordedScan(row[0], row[1], row[2], row[3], bool(row[4]), row[5], checks or None, findings)

    def previous_comparable(self, scan_id: int) -> RecordedScan | None:
        """The scan ``scan_id`` is compared with: an earlier scan of the same host and the same root (the same
        tree, or both of the live system) that looked at the most of the checks this one selected, the latest
        of those. So a daily full scan is compared with the last full scan even when ``--only ssh`` scans ran
        in between, and an ``--only ssh`` scan with the latest scan that ran the ssh checks. None when no
        earlier scan of this host and root shares a check with it (or its coverage was not recorded)."""
        row = self.db.execute(
            "SELECT p.scan_id FROM scan_checks AS p "
            "JOIN scan_checks AS c ON c.check_id = p.check_id AND c.scan_id = ? "
            "JOIN scans AS s ON s.id = p.scan_id "
            "JOIN scans AS cur ON cur.id = c.scan_id "
            "WHERE s.host_key = cur.host_key AND s.root IS cur.root AND p.scan_id < c.scan_id "
            "GROUP BY p.scan_id ORDER BY COUNT(*) DESC, p.scan_id DESC LIMIT 1", (scan_id,)).fetchone()
        return self.scan(row[0]) if row else None

    def scan_ids(self, host_key: str) -> list[int]:
        """The recorded scans of a host, oldest first."""
        return [r[0] for r in self.db.execute("SELECT id FROM scans WHERE host_key=? ORDER BY id", (host_key,))]

    def prune_scans(self, host_key: str, keep: int) -> int:
        """Keep the latest ``keep`` scans of this host (with their findings and coverage); return how many went.

        Accepted findings, the audit log and the account history are never touched: they are not scans.
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            old = [(r[0],) for r in self.db.execute(
                "SELECT id FROM scans WHERE host_key=? ORDER BY id DESC LIMIT -1 OFFSET ?", (host_key, max(keep, 0)))]
            for table, column in (("scan_findings", "scan_id"), ("scan_checks", "scan_id"), ("scans", "id")):
                self.db.executemany(f"DELETE FROM {table} WHERE {column}=?", old)
            if old:  # remembered so history does not call the oldest kept scan a first scan
                self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                (f"pruned_through:{host_key}", str(max(r[0] for r in old))))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return len(old)

    def pruned_through(self, host_key: str) -> int:
        """The id of the latest scan of this host that was pruned (0 when none was)."""
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (f"pruned_through:{host_key}",)).fetchone()
        return int(row[0]) if row else 0

    def findings_seen(self, host_key: str) -> dict[str, SeenFinding]:
        """Every fingerprint the recorded scans of this host found (reported or hidden), with the check id,
        severity and title of its latest sighting."""
        rows = self.db.execute(
            "SELECT f.fingerprint, f.check_id, f.severity, f.title FROM scan_findings AS f "
            "JOIN scans AS s ON s.id = f.scan_id WHERE s.host_key=? ORDER BY f.scan_id", (host_key,)).fetchall()
        return {fp: SeenFinding(fp, check, severity, title) for fp, check, severity, title in rows}

    def accept(self, host_key: str, findings: Iterable[SeenFinding | str], reason: str, now: str) -> None:
        """Accept these findings (a :class:`SeenFinding`, or a bare fingerprint) for this host, recording each
        in the audit log; accepting again replaces the reason and the time."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for item in findings:
                fp, check, title = ((item.fingerprint, item.check_id, item.title) if isinstance(item, SeenFinding)
                                    else (item, None, None))
                self.db.execute("INSERT OR REPLACE INTO accepted(host_key, fingerprint, check_id, title, reason, "
                                "accepted_at) VALUES (?,?,?,?,?,?)", (host_key, fp, check, title, reason, now))
                self._audit(host_key, "accept", fp, reason, now, check or "")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def unaccept(self, host_key: str, fingerprints: Iterable[str], reason: str, now: str,
                 action: str = "unaccept") -> list[str]:
        """Take acceptances back (``action`` names why in the audit log: ``unaccept`` by the owner,
        ``lapse`` when what was accepted is gone); return the fingerprints that were accepted."""
        taken: list[str] = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for fp in fingerprints:
                row = self.db.execute("SELECT check_id FROM accepted WHERE host_key=? AND fingerprint=?",
                                      (host_key, fp)).fetchone()
                if row is None:
                    continue
                self.db.execute("DELETE FROM accepted WHERE host_key=? AND fingerprint=?", (host_key, fp))
                self._audit(host_key, action, fp, reason, now, row[0] or "")
                taken.append(fp)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return taken

    def accepted(self, host_key: str) -> list[Accepted]:
        """This host's accepted findings, oldest first."""
        rows = self.db.execute("SELECT fingerprint, check_id, title, reason, accepted_at FROM accepted "
                               "WHERE host_key=? ORDER BY accepted_at, fingerprint", (host_key,)).fetchall()
        return [Accepted(*row) for row in rows]

    def accepted_fingerprints(self, host_key: str) -> frozenset[str]:
        """The fingerprints a scan of this host leaves out of its findings."""
        return frozenset(r[0] for r in self.db.execute("SELECT fingerprint FROM accepted WHERE host_key=?",
                                                       (host_key,)))

    def audit_log(self, host_key: str | None = None) -> list[AuditEntry]:
        """Recorded actions in order (of one host, or all)."""
        query = "SELECT time, host_key, action, subject, reason, detail FROM audit"
        rows = (self.db.execute(query + " WHERE host_key=? ORDER BY id", (host_key,)) if host_key is not None
                else self.db.execute(query + " ORDER BY id"))
        return [AuditEntry(*row) for row in rows.fetchall()]

    def audit(self, host_key: str, action: str, subject: str, reason: str, now: str, detail: str = "") -> None:
        """Record one action (a fix, an undo, a block…) in the audit log, committed at once."""
        with self.db:
            self._audit(host_key, action, subject, reason, now, detail)

    def _audit(self, host_key: str, action: str, subject: str, reason: str, now: str, detail: str) -> None:
        self.db.execute("INSERT INTO audit(time, host_key, action, subject, reason, detail) VALUES (?,?,?,?,?,?)",
                        (now, host_key, action, subject, reason, detail))

    def record_probe(self, host_key: str, probe: RecordedProbe) -> None:
        """Record one active probe session (issue 10), committed at once so a crash mid-scan keeps it."""
        with self.db:
            self.db.execute("INSERT INTO probes(host_key, service, endpoint, account, started, finished, attempts, "
                            "outcome, rank) VALUES (?,?,?,?,?,?,?,?,?)",
                            (host_key, probe.service, probe.endpoint, probe.account, probe.started, probe.finished,
                             probe.attempts, probe.outcome, probe.rank))

    def probes(self, host_key: str) -> list[RecordedProbe]:
        """This host's recorded active probes, oldest first."""
        rows = self.db.execute("SELECT service, endpoint, account, started, attempts, outcome, rank, finished FROM probes "
                               "WHERE host_key=? ORDER BY started, id", (host_key,)).fetchall()
        return [RecordedProbe(*row) for row in rows]

    def close(self) -> None:
        """Close the database."""
        self.db.close()
