"""`hostguard logons follow`: log files (or the journal) read as they grow, detectors fed one event at a time.

The reading is the logon store's own (:meth:`LogonStore.ingest_file` / :meth:`~LogonStore.ingest_journal`), so
``follow`` and ``ingest`` store exactly the same events, each once, and a ``follow`` stopped and started again
(or an ``ingest`` run in between) goes on where the store's read position is. What ``follow`` adds:

* **Polling** (once a second by default): a file is read again only when its size, mtime or inode changed; the
  journal is asked for the entries after the stored cursor (``journalctl`` run once a poll: the store commits
  the cursor with the events, so a kill at any moment loses nothing and stores nothing twice).
* **Rotation**: the path now names another file. The old one is still open here, so its last lines are read
  first — under its new name, found through ``/proc/self/fd`` (``auth.log.1``: the name the lines live under
  from now on), or through the open descriptor when it was already deleted — then the new file from its start.
* **copytruncate**: the same file, but its start is no longer the content seen before (shorter, or other
  bytes). The lines written between the last read and the copy are only in the copy, so a sibling whose start
  is the old content (``auth.log.1``, ``auth.log-20240101``, compressed or not) is read first; the store
  reads only its lines past the stored ones.
* **One event at a time**: one :class:`~hostguard.detect.runner.Pipeline` lives as long as the command, its
  windows rebuilt from the store on start (the events of the longest window, replayed as history: no alert,
  no learning), then each poll's new events are fed in time order. ``ingest`` instead replays the window
  around every batch; a daemon doing that each second would replay hours of events per second. When a poll
  brings events older than the newest already fed (a late file), the windows are rebuilt the way ``ingest``
  does it, since a sliding window cannot go back in time.
* **Blocking** (:class:`Responder`): the ``block`` action of each new brute-force alert, through the
  :class:`~hostguard.respond.block.Blocker`, longer for repeat offenders.

Nothing here prints: the command renders the alerts and notes it is handed.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

from hostguard.detect import baseline as baseline_detector
from hostguard.detect.runner import Episodes, Pipeline
from hostguard.findings import Alert
from hostguard.host.base import HostError
from hostguard.logons.sources import DECOMPRESS_ERRORS, open_log
from hostguard.logons.store import HEAD, Ingested, LogonStore
from hostguard.logons.timestamps import Clock
from hostguard.remediation import Action

if TYPE_CHECKING:
    from hostguard.detect.config import DetectConfig
    from hostguard.detect.probes import OwnProbes
    from hostguard.respond.block import Blocker
    from hostguard.store.blocks import BlockStore

MAX_EXPONENT = 40      # 2**40 times any duration is past every maximum: no huge integers for a serial offender
COPY_CANDIDATES = 4    # newest siblings looked at for a copytruncate's copy


@dataclass
class Tracked:
    """One followed path: the file open under it (kept open so its last lines can be read after a rotation),
    that file's identity, the size and mtime last seen, and its first bytes (to notice a copytruncate)."""

    path: str
    fd: int | None = None
    ident: tuple[int, int] | None = None
    signature: tuple[int, int] | None = None
    size: int = 0
    head: bytes = b""

    def close(self) -> None:
        """Let go of the open file."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd, self.ident, self.signature, self.size, self.head = None, None, None, 0, b""


def _read_start(path: str, length: int) -> bytes:
    """The first ``length`` bytes of a log's content (decompressed); empty when it cannot be read."""
    try:
        with open_log(path) as stream:
            out = b""
            while len(out) < length:
                chunk = stream.read(length - len(out))
                if not chunk:
                    break
                out += chunk
            return out
    except (HostError, *DECOMPRESS_ERRORS):
        return b""


def find_copy(path: str, head: bytes) -> str | None:
    """The sibling of ``path`` that starts with ``head`` (the content ``path`` had before a copytruncate): its
    newest ``NAME.*``, ``NAME-*`` or ``NAME_*`` files are compared; None when none matches."""
    if not head:
        return None
    directory, base = os.path.split(path)
    directory = directory or "."
    try:
        names = [n for n in os.listdir(directory)
                 if n != base and n.startswith(base) and n[len(base):len(base) + 1] in (".", "-", "_")]
    except OSError:
        return None
    dated: list[tuple[float, str]] = []
    for name in names:
        full = os.path.join(directory, name)
        with contextlib.suppress(OSError):
            st = os.stat(full)
            if st.st_size:
                dated.append((st.st_mtime, full))
    for _, full in sorted(dated, reverse=True)[:COPY_CANDIDATES]:
        if _read_start(full, len(head)) == head:
            return full
    return None


def rotated_name(fd: int, ident: tuple[int, int]) -> str:
    """Where the file open as ``fd`` lives now (the kernel follows renames); the descriptor's own
    ``/proc/self/fd`` path when the file was deleted or its name cannot be trusted."""
    own = f"/proc/self/fd/{fd}"
    try:
        name = os.readlink(own)
        st = os.stat(name)
    except OSError:
        return own
    return name if (st.st_dev, st.st_ino) == ident else own


@dataclass
class Poll:
    """What one poll did: the sources read (those that stored or met something), the new alerts, notes."""

    sources: list[Ingested] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Follower:
    """Files and the journal followed into the logon store, the detectors fed one event at a time.

    ``journal`` is the ``journalctl -o json`` argv and its label (None: no journal); ``now`` is injectable for
    tests. Errors reading one source are notes (said once until they change), never the end of the command:
    a log that disappears during a rotation comes back.
    """

    def __init__(self, store: LogonStore, config: DetectConfig, country: Callable[[str], str | None], zone: tzinfo,
                 files: Iterable[str], journal: tuple[list[str], str] | None = None, program: str | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store, self.config, self.country, self.zone = store, config, country, zone
        self.files = [Tracked(path) for path in files]
        self.journal, self.program, self.now = journal, program, now
        self.batch: int | None = None
        self.last_ts: float | None = None
        self.errors: dict[str, str] = {}
        self.pipeline = self._warm()

    def _warm(self) -> Pipeline:
        """A pipeline whose windows hold the stored events of the longest window: replayed as history (not
        ``new``), so nothing is learned and the alerts they raise (stored when they were new) are dropped."""
        pipeline = Pipeline(self.config, self.country, self.store.baseline())
        low = self.now().timestamp() - self.config.longest_window()
        for event in self.store.events(low, float("inf"), None):
            pipeline.feed(event)
            self.last_ts = event.ts if self.last_ts is None else max(self.last_ts, event.ts)
        return pipeline

    def close(self) -> None:
        """Close the files held open."""
        for tracked in self.files:
            tracked.close()

    def poll(self) -> Poll:
        """Read what is new in every source, store it, feed it to the detectors; the new alerts."""
        out = Poll()
        now = self.now()
        if self.batch is None:
            self.batch = self.store.begin_batch()
        batch = self.batch
        own = self.store.own_probes(self.config.probe_slack)
        for tracked in self.files:
            self._guard(tracked.path, out, functools.partial(self._poll_file, tracked, batch, own, now.timestamp(), out))
        if self.journal is not None:
            argv, label = self.journal
            self._guard(label, out, lambda: out.sources.append(self.store.ingest_journal(
                argv, label, Clock(self.zone, now), batch, own, now.timestamp(), self.program)))
        if any(s.new_events for s in out.sources):
            self.batch = None
            out.alerts = self._feed(batch, now)
        return out

    def _guard(self, name: str, out: Poll, read: Callable[[], None]) -> None:
        """Run one source's read; its failure is a note, said once until it changes or the source recovers."""
        try:
            read()
        except (HostError, OSError) as exc:
            text = str(exc) if isinstance(exc, HostError) else f"{name}: {exc.strerror or exc}"
            if self.errors.get(name) != text:
                self.errors[name] = text
                out.notes.append(text)
            return
        self.errors.pop(name, None)

    def _ingest(self, path: str, mtime: float, batch: int, own: OwnProbes, now: float, out: Poll) -> None:
        result = self.store.ingest_file(path, Clock(self.zone, datetime.fromtimestamp(mtime, UTC)), batch,
                                        own, now, self.program)
        if result.new_events or result.stats.damaged() or result.stats.notes:
            out.sources.append(result)

    def _poll_file(self, t: Tracked, batch: int, own: OwnProbes, now: float, out: Poll) -> None:
        try:
            st = os.stat(t.path)
        except FileNotFoundError:
            st = None
        if t.fd is not None and (st is None or (st.st_dev, st.st_ino) != t.ident):
            assert t.ident is not None
            old = rotated_name(t.fd, t.ident)  # rotated away: its last lines first, under the name it has now
            try:
                self._ingest(old, os.fstat(t.fd).st_mtime, batch, own, now, out)
            finally:
                t.close()
        if st is None:
            raise HostError(f"{t.path}: no such file (waiting for it to come back)")
        if t.fd is None:
            fd = os.open(t.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            opened = os.fstat(fd)
            t.fd, t.ident = fd, (opened.st_dev, opened.st_ino)
        assert t.fd is not None
        cur = os.fstat(t.fd)
        signature = (cur.st_size, cur.st_mtime_ns)
        if signature == t.signature:
            return
        head = os.pread(t.fd, HEAD, 0)
        common = min(len(head), len(t.head))
        if t.head and (cur.st_size < t.size or head[:common] != t.head[:common]):
            copy = find_copy(t.path, t.head)  # copytruncate: the lines after the last read are in the copy
            if copy is not None:
                self._ingest(copy, os.stat(copy).st_mtime, batch, own, now, out)
        self._ingest(t.path, cur.st_mtime, batch, own, now, out)
        t.signature, t.size, t.head = signature, cur.st_size, head

    def _feed(self, batch: int, moment: datetime) -> list[Alert]:
        """Feed the batch's events to the pipeline in time order; store the baseline and the alerts; the new
        ones. The baseline is reloaded first: the owner may have approved or forgotten values meanwhile."""
        span = self.store.batch_span(batch)
        stamp = moment.isoformat(timespec="seconds")
        if span is None:
            return []
        if self.last_ts is not None and span[0] < self.last_ts:  # older than what the windows hold: rebuild
            alerts = self.store.analyse(self.config, self.country, batch, stamp)
            self.last_ts = None
            self.pipeline = self._warm()
            return alerts
        self.pipeline.states[baseline_detector.__name__] = self.store.baseline()
        episodes = Episodes()
        for event in self.store.events(span[0], span[1], batch):
            if event.new:
                episodes.add(self.pipeline.feed(event))
                self.last_ts = event.ts if self.last_ts is None else max(self.last_ts, event.ts)
        self.store.save_baseline(self.pipeline.baseline)
        return self.store.save_alerts(episodes.alerts(), stamp)


# -- blocking ----------------------------------------------------------------------------------------------------

def block_request(alert: Alert) -> tuple[str, int] | None:
    """The target and seconds of the alert's ``block`` action step (None: the alert asks for no block)."""
    from hostguard.respond.block import BlockError, parse_duration

    for step in alert.remediation.steps:
        if isinstance(step, Action) and step.action == "block":
            args = dict(step.args)
            if "target" not in args or "for" not in args:
                return None
            try:
                return args["target"], parse_duration(args["for"])
            except BlockError:
                return None
    return None


def repeat_duration(base: int, previous: int, maximum: int) -> int:
    """``base`` doubled for each earlier block of the same network, at most ``maximum`` (and at least ``base``
    when the maximum is below it: the detector's own duration is never cut)."""
    return max(base, min(maximum, base << min(max(previous, 0), MAX_EXPONENT)))


def still_current(alert: Alert, now: datetime) -> bool:
    """Whether the alert's attack is within its detector's window of ``now``: catching up on an old log must
    not block an address for what it did last month. Evidence without a last time or window counts as current."""
    evidence = alert.evidence or {}
    last, window = evidence.get("last"), evidence.get("window_seconds")
    if not isinstance(last, str) or not isinstance(window, int):
        return True
    try:
        when = datetime.fromisoformat(last)
    except ValueError:
        return True
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (now - when).total_seconds() <= window


@dataclass
class Responder:
    """Blocks the sources of new brute-force alerts through the blocker, recorded with the detector's id."""

    blocker: Blocker
    maximum: int
    notes: list[str] = field(default_factory=list)

    def previous_blocks(self, target: str) -> int:
        """How often the network ``target`` stands for was blocked before (every row: ended ones too)."""
        from hostguard.respond.block import parse_target

        network = parse_target(target, self.blocker.config.ipv6_prefix)[0]
        store: BlockStore = self.blocker.store
        count = 0
        for record in store.history():
            count += record.network == network
        return count

    def respond(self, alert: Alert, now: datetime) -> str | None:
        """Block for one alert; one line saying what was done or refused (None: nothing to do)."""
        from hostguard.respond.block import BlockError, BlockRefused

        request = block_request(alert)
        if request is None:
            return None
        target, base = request
        if not still_current(alert, now):
            return f"not blocking {target}: its attack ended more than a window ago ({alert.id})"
        try:
            previous = self.previous_blocks(target)
            seconds = repeat_duration(base, previous, self.maximum)
            outcome = self.blocker.block(target, seconds, alert.title, source=alert.id)
        except BlockRefused as exc:
            return f"not blocking: {exc}"
        except BlockError as exc:
            return f"block of {target} failed: {exc}"
        record = outcome.record
        until = "permanently" if record.expires is None else f"until {record.expires.isoformat(timespec='seconds')}"
        repeat = f" (blocked {previous} time(s) before)" if previous else ""
        extra = "".join(f"; {n}" for n in (*outcome.repaired, *outcome.notes))
        return f"blocked {record.network} {until}{repeat}: {alert.id}{extra}"

    def verify(self) -> str | None:
        """The timer's check of the kernel table; a line when it had to be restored or could not be checked."""
        from hostguard.respond.block import BlockError

        try:
            outcome = self.blocker.verify_and_restore()
        except BlockError as exc:
            return f"could not verify hostguard's nftables table: {exc}"
        if outcome.restored:
            return f"restored {outcome.elements} block element(s): {'; '.join(outcome.problems)}"
        return None
