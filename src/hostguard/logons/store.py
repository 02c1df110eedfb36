"""The logon store: every attempt read from the logs, once, in state.db; the alerts raised and the baseline.

It lives with the logons (DESIGN: "logons/ ... the logon store") and reaches state.db only through the
:class:`~hostguard.store.state.StateStore` connection, which opens, migrates and owns it (WAL, busy timeout):
the tables are migration 7.

**Never twice.** A file is known by a digest of its first bytes (up to 4 KiB of its *decompressed* content),
an event by its file and line. So ``auth.log``, then ``auth.log.1`` after rotation and ``auth.log.2.gz``
after compression are one file whose events are already stored; a file that grew is read on from the byte
offset where the last read ended (the last *complete* line: a line being written is left for the next read);
after ``copytruncate`` the file's start is new content, so it is a new file, and the copy (``auth.log.1``)
still matches the old one and only its lines past the stored ones are read. A file shorter than 4 KiB is
known by the digest of all of it, and found again by comparing the same number of bytes of a longer file;
its digest is widened to 4 KiB once it has grown. Compressed files and pipes are read from their start (they
cannot seek), skipping the lines already stored. Journal entries are known by their cursor; a journal read
goes on after the last cursor read.

**Parser state carries over a continued read.** sshd's open connections decide whether a connection's
closing line is one more attempt (it is only when the connection showed none), and a read can stop between a
connection's ``Failed password`` and its close. So the store keeps each file's parser after a read (and the
journal's, keyed by its cursor) and goes on with it; a process that did not read the source before (a new
``ingest``, ``follow`` started again) first re-reads, without storing, up to :data:`WARM` bytes before the
offset (:data:`WARM_ENTRIES` entries up to the journal's cursor). Across a rotation or from one file to the
next, connections still do not carry (docs/logons.md).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from hostguard.detect.base import Logon, Raised
from hostguard.detect.baseline import MANUAL, Entry, normalize
from hostguard.detect.baseline import State as BaselineState
from hostguard.detect.config import DetectConfig
from hostguard.detect.probes import OwnProbes
from hostguard.findings import Alert, readable
from hostguard.host.base import HostError
from hostguard.logons.events import LogonEvent
from hostguard.logons.parse import StreamReader
from hostguard.logons.sources import DECOMPRESS_ERRORS, MAX_LINE, SourceStats, journal_blocks, lines_of, open_log
from hostguard.logons.timestamps import Clock
from hostguard.store.state import StateStore

HEAD = 4096
COMMIT_EVERY = 20000  # events stored per transaction during a long read
JOURNAL_HEAD_LEN = -1  # journal "files" are named, not digested
WARM = 64 * 1024  # bytes before a continued read's offset read again, unstored, to rebuild the parsers' state
WARM_ENTRIES = 256  # the journal's: entries up to the stored cursor
CARRIED = 32      # readers kept for the next read of their source (a follow reads a few files)
CURSOR = re.compile(rb'"__CURSOR"\s*:\s*"([^"\\]{1,512})"')


@dataclass
class Ingested:
    """What one source gave: how it was recognised (``new``, ``continued``, ``reread``, ``empty``), lines read
    and events stored now or already known."""

    path: str
    status: str
    lines: int = 0
    new_events: int = 0
    known_events: int = 0
    stats: SourceStats = field(default_factory=lambda: SourceStats(""))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``logons ingest`` prints per source."""
        return {"file": readable(self.path), "status": self.status, "lines": self.lines,
                "new_events": self.new_events, "known_events": self.known_events}


@dataclass
class _Known:
    id: int
    head: str
    head_len: int
    lines: int
    offset: int


class _Lines:
    """``(number, bytes)`` of complete lines from a readline function, counting the bytes consumed so the
    store can continue there; an unterminated last line is read only when the stream is ``final`` (it cannot
    grow: compressed, a pipe)."""

    def __init__(self, readline: Any, stats: SourceStats, number: int, offset: int, final: bool) -> None:
        self.readline, self.stats, self.number, self.offset, self.final = readline, stats, number, offset, final

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        readline, stats = self.readline, self.stats
        while True:
            try:
                raw = readline(MAX_LINE + 1)
            except DECOMPRESS_ERRORS as exc:
                stats.truncated = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                return
            if not raw:
                return
            if raw[-1:] == b"\n":
                self.number += 1
                self.offset += len(raw)
                stats.lines = self.number
                yield self.number, raw[:-1]
                continue
            if len(raw) <= MAX_LINE:  # the last line, unterminated
                if self.final:
                    self.number += 1
                    self.offset += len(raw)
                    stats.lines = self.number
                    yield self.number, raw
                return
            skipped = len(raw)
            try:
                while (rest := readline(1 << 20)) and rest[-1:] != b"\n":
                    skipped += len(rest)
                skipped += len(rest)
            except DECOMPRESS_ERRORS as exc:
                stats.truncated = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                return
            if not rest and not self.final:
                return  # an over-long line still being written: decide when it is complete
            self.number += 1
            self.offset += skipped
            stats.lines = self.number
            stats.too_long += 1


class _Prefixed:
    """A readline over bytes already read (the head) followed by the rest of the stream."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self.head, self.pos, self.stream = head, 0, stream

    def readline(self, limit: int) -> bytes:
        if self.pos < len(self.head):
            end = self.head.find(b"\n", self.pos, self.pos + limit)
            stop = min(len(self.head), self.pos + limit) if end < 0 else end + 1
            part = self.head[self.pos:stop]
            self.pos = stop
            if part.endswith(b"\n") or len(part) >= limit or self.pos < len(self.head):
                return part
            return part + self.stream.readline(limit - len(part))
        return self.stream.readline(limit)


def _read_head(stream: IO[bytes]) -> bytes:
    """Up to :data:`HEAD` bytes of the content; what could be read when a compressed file is damaged (the line
    reader meets the damage again and records it)."""
    out = b""
    while len(out) < HEAD:
        try:
            chunk = stream.read(HEAD - len(out))
        except DECOMPRESS_ERRORS:
            break
        if not chunk:
            break
        out += chunk
    return out


def _warm(reader: StreamReader, stream: IO[bytes], lines: int, offset: int) -> None:
    """Feed ``reader`` the whole lines in the :data:`WARM` bytes before ``offset`` (line ``lines`` ends there),
    the events discarded and the damage uncounted: they were stored and reported when first read."""
    start = max(0, offset - WARM)
    stream.seek(start)
    chunk = stream.read(offset - start)
    if start:
        cut = chunk.find(b"\n") + 1  # the first line may be cut: from the next one (none: nothing to warm)
        chunk = chunk[cut:] if cut else b""
    if not chunk.endswith(b"\n"):
        return  # the file changed under the stored offset: nothing known to warm with
    reader.absorb([(lines - chunk.count(b"\n") + 1, chunk[:-1])])


def _warm_journal(reader: StreamReader, argv: list[str], cursor: str) -> None:
    """Feed ``reader`` the :data:`WARM_ENTRIES` journal entries up to ``cursor`` (read newest first: reversed),
    the events discarded; a journal that cannot give them (vacuumed past the cursor) warms nothing."""
    entries: list[bytes] = []
    try:
        for _, raw in journal_blocks([*argv, "--cursor", cursor, "--reverse", "-n", str(WARM_ENTRIES)],
                                     SourceStats("")):
            entries.extend(raw.split(b"\n") if raw is not None else [b""])
    except HostError:
        return
    if entries:
        reader.absorb([(1, b"\n".join(reversed(entries)))])


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _epoch(time: str | None, fallback: float) -> float:
    if time is None:
        return fallback
    try:
        return datetime.fromisoformat(time).timestamp()
    except ValueError:
        return fallback


class LogonStore:
    """Logon files, events, alerts and the baseline of one host, over the state store's connection."""

    def __init__(self, state: StateStore, host_key: str) -> None:
        self.db = state.db
        self.state = state
        self.host_key = host_key
        # source id -> (where its last read stopped, the reader that read it): continued reads go on with it
        self._carried: dict[int, tuple[object, StreamReader]] = {}

    # -- ingest ------------------------------------------------------------------------------------------

    def begin_batch(self) -> int:
        """A new ingest run's number: the events it stores are the detectors' new ones."""
        row = self.db.execute("SELECT MAX(batch) FROM logon_events").fetchone()
        stored = self.db.execute("SELECT value FROM meta WHERE key='logon_batch'").fetchone()
        batch = max(int(row[0] or 0), int(stored[0]) if stored else 0) + 1
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('logon_batch', ?)", (str(batch),))
        return batch

    def own_probes(self, slack: float) -> OwnProbes:
        """hostguard's recorded probe sessions, with the failures already attributed to them spent."""
        own = OwnProbes(self.state.probes(self.host_key), slack)
        for service, outcome, user, ip, time, count in self.db.execute(
                "SELECT service, outcome, user, ip, time, count FROM logon_events WHERE host_key=? AND ours=1 "
                "ORDER BY ts, id", (self.host_key,)):
            own.ours(service, outcome, _text(user), ip, time, count)
        return own

    def ingest_file(self, path: str, clock: Clock, batch: int, own: OwnProbes, now: float,
                    program: str | None = None) -> Ingested:
        """Store the events of one log file not stored yet (see the module docstring for how a file is known)."""
        stream = open_log(path)
        try:
            st = os.fstat(stream.fileno()) if hasattr(stream, "fileno") else None
        except (OSError, ValueError):
            st = None
        with stream:
            plain = isinstance(stream, io.BufferedReader) and st is not None and stat.S_ISREG(st.st_mode)
            head = _read_head(stream)
            result = Ingested(path, "empty", stats=SourceStats(path))
            if not head:
                return result
            known = self._identify(head)
            keep = plain  # the reader is kept for the next read (a stream that cannot seek is read from its start)
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if known is None:
                    cur = self.db.execute(
                        "INSERT INTO logon_files(host_key, head, head_len, path, lines, offset, seen) "
                        "VALUES (?,?,?,?,0,0,?)", (self.host_key, _digest(head), len(head), path, _now_iso(now)))
                    known = _Known(int(cur.lastrowid or 0), _digest(head), len(head), 0, 0)
                    result.status = "new"
                elif len(head) > known.head_len:  # grown past the digest's length: widen it
                    self.db.execute("UPDATE logon_files SET head=?, head_len=? WHERE id=?",
                                    (_digest(head), len(head), known.id))
                size = st.st_size if st is not None else None
                if plain and known.offset and size is not None and size >= known.offset:
                    reader = self._reader((known.lines, known.offset), known.id, clock, program)
                    if reader is None:  # not read by this process: its parsers' state rebuilt first
                        reader = StreamReader(clock, program)
                        if size > known.offset:
                            _warm(reader, stream, known.lines, known.offset)
                        else:
                            keep = False  # nothing to read, nothing warmed: the reader is not kept
                    stream.seek(known.offset)
                    lines = _Lines(stream.readline, result.stats, known.lines, known.offset, final=False)
                    result.status = "continued"
                else:
                    self._carried.pop(known.id, None)
                    reader = StreamReader(clock, program)
                    lines = _Lines(_Prefixed(head, stream).readline, result.stats, 0, 0, final=not plain)
                    if result.status != "new":
                        result.status = "reread"
                self._store(known.id, path, lines, known.lines, reader, batch, own, now, result)
                if lines.number > known.lines:
                    self.db.execute("UPDATE logon_files SET lines=?, offset=?, path=?, seen=? WHERE id=?",
                                    (lines.number, lines.offset, path, _now_iso(now), known.id))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                if known is not None:
                    self._carried.pop(known.id, None)
                raise
            stored = (lines.number, lines.offset)
            if keep and (lines.number > known.lines or stored == (known.lines, known.offset)):
                self._carry(known.id, stored, reader)  # the reader stopped where the stored position is
            result.lines = lines.number
        return result

    def ingest_journal(self, argv: list[str], label: str, clock: Clock, batch: int, own: OwnProbes, now: float,
                       program: str | None = None) -> Ingested:
        """Store the journal entries ``argv`` (``journalctl -o json ...``) prints after the last cursor read."""
        name = f"journal:{label}"
        row = self.db.execute("SELECT id FROM logon_files WHERE host_key=? AND head=? AND head_len=?",
                              (self.host_key, name, JOURNAL_HEAD_LEN)).fetchone()
        if row is None:
            with self.db:
                cur = self.db.execute("INSERT INTO logon_files(host_key, head, head_len, path, lines, offset, seen) "
                                      "VALUES (?,?,?,?,0,0,?)", (self.host_key, name, JOURNAL_HEAD_LEN, label,
                                                                 _now_iso(now)))
            file_id = int(cur.lastrowid or 0)
        else:
            file_id = int(row[0])
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (f"logon_cursor:{file_id}",)).fetchone()
        cursor: str | None = row[0] if row is not None else None
        reader = self._reader(cursor, file_id, clock, program)
        if reader is None:  # not read by this process: its parsers' state rebuilt first
            reader = StreamReader(clock, program)
            if cursor is not None:
                _warm_journal(reader, argv, cursor)
        result = Ingested(label, "continued" if cursor else "new", stats=SourceStats(label))
        read = [*argv, "--after-cursor", cursor] if cursor is not None else argv
        keys: dict[int, str] = {}
        last: list[bytes] = []
        base = reader.last_line  # numbered on from what the reader read: its sweeps go by line numbers

        def lines() -> Iterator[tuple[int, bytes]]:
            for number, raw in lines_of(journal_blocks(read, result.stats), result.stats):
                number += base
                keys[number] = hashlib.sha256(raw).hexdigest()[:32]
                if len(keys) > 2:
                    keys.pop(next(iter(keys)))
                last[:] = [raw]
                yield number, raw

        stopped = cursor
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for event in reader.events(lines(), label, result.stats):
                self._insert(file_id, keys.get(event.line, str(event.line)), event, batch, own, now, result)
                if result.new_events % COMMIT_EVERY == 0:
                    self._checkpoint()
            if last:  # the reader is kept only where the stored cursor says it stopped
                m = CURSOR.search(last[0])
                stopped = None if m is None else m.group(1).decode("ascii", "replace")
                if stopped is not None:
                    self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                    (f"logon_cursor:{file_id}", stopped))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            self._carried.pop(file_id, None)
            raise
        if stopped is not None:
            self._carry(file_id, stopped, reader)
        result.lines = result.stats.lines
        return result

    def _reader(self, position: object, source: int, clock: Clock, program: str | None) -> StreamReader | None:
        """The reader that stopped at ``position`` of this source in this process, set to ``clock``; None when
        there is none (another process read on since, or this one never read it)."""
        carried = self._carried.pop(source, None)
        if carried is None or carried[0] != position or carried[1].program != program:
            return None
        carried[1].reclock(clock)
        return carried[1]

    def _carry(self, source: int, position: object, reader: StreamReader) -> None:
        """Keep ``reader`` for the next read of ``source`` from ``position`` (the newest :data:`CARRIED`)."""
        self._carried.pop(source, None)
        self._carried[source] = (position, reader)
        while len(self._carried) > CARRIED:
            del self._carried[next(iter(self._carried))]

    def _checkpoint(self) -> None:
        """Commit what a long read stored so far, so other writers of state.db (the agent, a scan) are not
        held off for minutes. Safe: an interrupted read leaves the file's offset where it was, and reading
        those lines again finds their events stored (the (file, line) key)."""
        self.db.execute("COMMIT")
        self.db.execute("BEGIN IMMEDIATE")

    def _identify(self, head: bytes) -> _Known | None:
        """The stored file whose digest matches this start (the longest match), or None."""
        rows = self.db.execute("SELECT id, head, head_len, lines, offset FROM logon_files WHERE host_key=? AND "
                               "head_len > 0 AND head_len <= ?", (self.host_key, len(head))).fetchall()
        digests: dict[int, str] = {}
        best: _Known | None = None
        for rid, digest, length, lines, offset in rows:
            if length not in digests:
                digests[length] = _digest(head[:length])
            if digests[length] == digest and (best is None or length > best.head_len):
                best = _Known(rid, digest, length, lines, offset)
        return best

    def _store(self, file_id: int, path: str, lines: _Lines, skip: int, reader: StreamReader, batch: int,
               own: OwnProbes, now: float, result: Ingested) -> None:
        for event in reader.events(lines, path, result.stats):
            if event.line <= skip:
                result.known_events += 1
                continue
            self._insert(file_id, str(event.line), event, batch, own, now, result)
            if result.new_events % COMMIT_EVERY == 0:
                self._checkpoint()

    def _insert(self, file_id: int, key: str, event: LogonEvent, batch: int, own: OwnProbes, now: float,
                result: Ingested) -> None:
        ours = event.outcome == "failure" and own.ours(event.service, event.outcome, event.user, event.ip,
                                                       event.time, event.count)
        user = event.user.encode("utf-8", "surrogateescape") if event.user is not None else None
        cur = self.db.execute(
            "INSERT OR IGNORE INTO logon_events(host_key, file_id, key, path, line, service, outcome, count, user, ip, "
            "port, method, time, ts, ours, batch) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (self.host_key, file_id, key, event.file, event.line, event.service, event.outcome, event.count, user,
             event.ip, event.port, event.method, event.time, _epoch(event.time, now), int(ours), batch))
        if cur.rowcount == 1:
            result.new_events += 1
        else:  # already stored (a journal entry read twice): its probe budget was spent when it was stored
            result.known_events += 1
            if ours:
                own.refund(event.service, event.user, event.time, event.count)

    # -- the detectors' view -----------------------------------------------------------------------------

    def batch_span(self, batch: int) -> tuple[float, float] | None:
        """The earliest and latest time of the events ``batch`` stored (None: it stored none)."""
        row = self.db.execute("SELECT MIN(ts), MAX(ts) FROM logon_events WHERE host_key=? AND batch=?",
                              (self.host_key, batch)).fetchone()
        return None if row[0] is None else (float(row[0]), float(row[1]))

    def events(self, low: float, high: float, batch: int | None = None) -> Iterator[Logon]:
        """Stored events with ``low <= ts <= high`` in time order (``new``: stored by ``batch``)."""
        for row in self.db.execute(
                "SELECT path, line, service, outcome, count, user, ip, port, method, time, ts, ours, batch "
                "FROM logon_events WHERE host_key=? AND ts BETWEEN ? AND ? ORDER BY ts, id",
                (self.host_key, low, high)):
            yield Logon(row[0], row[1], row[2], row[3], row[4], _text(row[5]), row[6], row[7], row[8], row[9],
                        row[10], bool(row[11]), row[12] == batch)

    def save_alerts(self, raised: Iterable[Raised], now: str) -> list[Alert]:
        """Store alerts, each merged into a stored one of its fingerprint whose episode overlaps it (within its
        window); return the ones that are new (raised for the first time)."""
        new: list[Alert] = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for r in raised:
                a = r.alert
                fp = a.fingerprint
                row = self.db.execute(
                    "SELECT id, first_ts, last_ts FROM logon_alerts WHERE host_key=? AND fingerprint=? AND "
                    "last_ts >= ? AND first_ts <= ? ORDER BY last_ts DESC LIMIT 1",
                    (self.host_key, fp, r.first_ts - r.window, r.last_ts + r.window)).fetchone()
                text = json.dumps(a.to_dict(), ensure_ascii=False, sort_keys=True)
                if row is None:
                    self.db.execute(
                        "INSERT INTO logon_alerts(host_key, fingerprint, detector, severity, first_ts, last_ts, time, "
                        "raised, alert) VALUES (?,?,?,?,?,?,?,?,?)",
                        (self.host_key, fp, a.id, str(a.severity), r.first_ts, r.last_ts, a.time, now, text))
                    new.append(a)
                elif r.last_ts >= row[2]:
                    self.db.execute("UPDATE logon_alerts SET first_ts=?, last_ts=?, time=?, alert=? WHERE id=?",
                                    (min(row[1], r.first_ts), r.last_ts, a.time, text, row[0]))
                else:
                    self.db.execute("UPDATE logon_alerts SET first_ts=? WHERE id=?", (min(row[1], r.first_ts), row[0]))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return new

    def alerts(self, since: float | None = None) -> list[dict[str, Any]]:
        """Stored alerts (the finding JSON plus ``time`` and ``event``) whose episode lasted until ``since`` or
        later, oldest first."""
        rows = self.db.execute("SELECT alert FROM logon_alerts WHERE host_key=? AND last_ts >= ? "
                               "ORDER BY first_ts, id", (self.host_key, since if since is not None else -1e18))
        return [json.loads(r[0]) for r in rows]

    def analyse(self, config: DetectConfig, country: Callable[[str], str | None], batch: int,
                now: str) -> list[Alert]:
        """Run the detectors over the events ``batch`` stored, their windows rebuilt from the stored events
        around them (as far back and forward as the longest window: an older file read late can complete a
        brute force before a stored success), save what the baseline learned and the alerts; return the new
        alerts."""
        from hostguard.detect.runner import Episodes, Pipeline

        span = self.batch_span(batch)
        if span is None:
            return []
        reach = config.longest_window()
        pipeline = Pipeline(config, country, self.baseline())
        episodes = Episodes()
        for event in self.events(span[0] - reach, span[1] + reach, batch):
            episodes.add(pipeline.feed(event))
        self.save_baseline(pipeline.baseline)
        return self.save_alerts(episodes.alerts(), now)

    # -- baseline ------------------------------------------------------------------------------------------

    def baseline(self) -> BaselineState:
        """The stored baseline and the start of its learning window."""
        rows = self.db.execute("SELECT dimension, value, seen, approved, origin, first_seen, last_seen FROM "
                               "logon_baseline WHERE host_key=? ORDER BY dimension, value", (self.host_key,))
        start = self.db.execute("SELECT value FROM meta WHERE key=?", (f"logon_learning:{self.host_key}",)).fetchone()
        return BaselineState.of([Entry(d, v, s, bool(a), o, f, la) for d, v, s, a, o, f, la in rows],
                                 float(start[0]) if start else None)

    def save_baseline(self, state: BaselineState) -> None:
        """Store what the detector learned."""
        with self.db:
            if state.start_changed and state.learning_start is not None:
                self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                (f"logon_learning:{self.host_key}", repr(state.learning_start)))
            for key in sorted(state.dirty):
                e = state.entries[key]
                self.db.execute("INSERT OR REPLACE INTO logon_baseline(host_key, dimension, value, seen, approved, "
                                "origin, first_seen, last_seen) VALUES (?,?,?,?,?,?,?,?)",
                                (self.host_key, e.dimension, e.value, e.seen, int(e.approved), e.origin,
                                 e.first_seen, e.last_seen))
        state.dirty.clear()
        state.start_changed = False

    def learning_start(self) -> float | None:
        """When the learning window began (the first successful logon judged), None before."""
        return self.baseline().learning_start

    def approve(self, dimension: str, value: str, now: str) -> Entry:
        """Approve a value by hand (recorded in the audit log); the stored form is returned."""
        text = normalize(dimension, value)
        row = self.db.execute("SELECT seen, first_seen FROM logon_baseline WHERE host_key=? AND dimension=? AND value=?",
                              (self.host_key, dimension, text)).fetchone()
        entry = Entry(dimension, text, row[0] if row else 0, True, MANUAL, row[1] if row else now, now)
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO logon_baseline(host_key, dimension, value, seen, approved, origin, "
                            "first_seen, last_seen) VALUES (?,?,?,?,?,?,?,?)",
                            (self.host_key, dimension, text, entry.seen, 1, MANUAL, entry.first_seen, now))
            self.db.execute("INSERT INTO audit(time, host_key, action, subject, reason, detail) VALUES (?,?,?,?,?,?)",
                            (now, self.host_key, "baseline_approve", f"{dimension} {text}", "by hand", ""))
        return entry

    def forget(self, dimension: str, value: str, now: str) -> bool:
        """Remove a value from the baseline (approved or merely seen); False when it was not there."""
        text = normalize(dimension, value)
        with self.db:
            cur = self.db.execute("DELETE FROM logon_baseline WHERE host_key=? AND dimension=? AND value=?",
                                  (self.host_key, dimension, text))
            if cur.rowcount:
                self.db.execute("INSERT INTO audit(time, host_key, action, subject, reason, detail) "
                                "VALUES (?,?,?,?,?,?)", (now, self.host_key, "baseline_forget", f"{dimension} {text}",
                                                         "by hand", ""))
        return bool(cur.rowcount)

    # -- report ----------------------------------------------------------------------------------------------

    def logons(self, since: float, limit: int = 1000) -> list[dict[str, Any]]:
        """Successful logons since ``since``, newest last (at most ``limit``, the latest)."""
        rows = self.db.execute(
            "SELECT * FROM (SELECT ts, time, service, user, ip, method, path, line FROM logon_events WHERE host_key=? "
            "AND outcome='success' AND ts >= ? ORDER BY ts DESC, id DESC LIMIT ?) ORDER BY ts",
            (self.host_key, since, limit)).fetchall()
        return [{"time": time, "service": service, "user": _text(user), "ip": ip, "method": method,
                 "at": f"{path}:{line}"} for _, time, service, user, ip, method, path, line in rows]

    def failures_by_source(self, since: float, limit: int = 50) -> list[dict[str, Any]]:
        """Failures and probes per source address since ``since``, most first (hostguard's own left out)."""
        rows = self.db.execute(
            "SELECT ip, SUM(CASE WHEN outcome='failure' THEN count ELSE 0 END), "
            "SUM(CASE WHEN outcome='probe' THEN count ELSE 0 END), COUNT(DISTINCT user), MIN(ts), MAX(ts), "
            "SUM(CASE WHEN outcome='success' THEN 1 ELSE 0 END) FROM logon_events "
            "WHERE host_key=? AND ts >= ? AND ip IS NOT NULL AND ours=0 GROUP BY ip "
            "HAVING SUM(CASE WHEN outcome!='success' THEN count ELSE 0 END) > 0 "
            "ORDER BY SUM(CASE WHEN outcome!='success' THEN count ELSE 0 END) DESC, ip LIMIT ?",
            (self.host_key, since, limit)).fetchall()
        return [{"ip": ip, "failures": f, "probes": p, "users": u, "first": _iso(lo), "last": _iso(hi),
                 "successes": s} for ip, f, p, u, lo, hi, s in rows]

    def own_probe_failures(self, since: float) -> int:
        """Failures recognised as hostguard's own probes since ``since``."""
        row = self.db.execute("SELECT COALESCE(SUM(count), 0) FROM logon_events WHERE host_key=? AND ours=1 AND "
                              "ts >= ?", (self.host_key, since)).fetchone()
        return int(row[0])

    def blocks(self, now: datetime) -> list[dict[str, Any]]:
        """Blocks in force (the ``blocks`` table of ``hostguard block``; empty when it does not exist)."""
        exists = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='blocks'").fetchone()
        if not exists:
            return []
        out = []
        for network, reason, source, expires in self.db.execute(
                "SELECT network, reason, source, expires FROM blocks WHERE removed IS NULL ORDER BY created, id"):
            if expires is not None:
                try:
                    if datetime.fromisoformat(expires) <= now:
                        continue
                except ValueError:
                    continue
            out.append({"network": network, "reason": reason, "source": source, "expires": expires})
        return out


def _text(user: bytes | str | None) -> str | None:
    if user is None or isinstance(user, str):
        return user
    return bytes(user).decode("utf-8", "surrogateescape")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
