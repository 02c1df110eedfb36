"""``hostguard logons parse`` of a large file on two CPUs, with exactly the answer of one pass.

Lines are not independent: sshd's parser remembers sessions (a close is an attempt only when its session
showed none), PostgreSQL's remembers backends, ``last message repeated`` repeats the line before. So the
second half of a file cannot simply be parsed on its own and pasted after the first. Instead:

* a child process parses the second half from an empty state, writes its events to a temporary file, and
  at every checkpoint (``checkpoint`` lines from the split, then twice as far each time) notes a digest of its
  parsers' state and how far its output and counts are;
* the main process parses the first half, then reads on past the split with the state of one pass, and at
  each checkpoint compares its digest with the child's. Equal digests mean equal states, so from that line
  on the child's events are exactly the ones the main process would write: it copies them and stops.

States meet once what the first half left open is closed, overwritten or evicted from the parsers' bounded
tables — on the log of an attacked server, where speed matters, within the first checkpoint or two. If
they never meet, or the child fails, the main process reads on to the end: the one-pass answer at one-pass
speed. The output is therefore always the sequential one; only the speed varies.

Only a plain regular file large enough to pay for a process is split (a compressed file cannot be read
from its middle). The child's events wait on disk in an unlinked temporary file, never in memory.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TextIO

from hostguard.logons.events import write_jsonl
from hostguard.logons.parse import StreamReader
from hostguard.logons.sources import SourceStats, open_log, read_blocks
from hostguard.logons.timestamps import Clock

# lines from the split to the first checkpoint; the gaps double (see _Checkpoints): a digest costs ~10 ms
# with full tables, so the child notes ~log2(its lines / FIRST) of them
FIRST = 1 << 12
SPLIT = 1 / 2  # the main process reads a little past it, the child notes digests: about even (measured)
MIN_SPLIT_BYTES = 8 << 20  # below this a second process costs more than it saves
COUNTERS = ("events", "too_long", "nul", "non_utf8", "unreadable")
Blocks = Iterable[tuple[int, bytes | None]]


@dataclass
class Written:
    """How a file was parsed: ``split`` at which byte (None: in one pass), and from which line the child's
    events were taken (None: the main process read to the end)."""

    split: int | None = None
    taken_from: int | None = None


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def write_events(path: str, name: str, clock: Clock, program: str | None, out: TextIO, stats: SourceStats, *,
                 split: bool | None = None, min_bytes: int = MIN_SPLIT_BYTES, checkpoint: int = FIRST) -> Written:
    """Write the events of the log file ``path`` to ``out`` as JSON Lines (``name`` is the ``file`` they
    name), counting in ``stats``. ``split``: use a second process (default: when two CPUs are usable and the
    file is plain and at least ``min_bytes``). Raises ``HostError`` when the file cannot be read."""
    reader = StreamReader(clock, program)
    with open_log(path) as stream:
        point = None
        if split or (split is None and usable_cpus() >= 2):
            point = _split_point(stream, min_bytes)
        if point is None:
            write_jsonl(reader.events(read_blocks(stream, stats), name, stats), name, out)
            return Written()
        return _split(stream.fileno(), point, reader, name, out, stats, checkpoint)


def _split_point(stream: IO[bytes], min_bytes: int) -> int | None:
    """The start of the first line after :data:`SPLIT` of a plain regular file of at least ``min_bytes``."""
    if not isinstance(stream, io.BufferedReader):
        return None  # decompressing
    fd = stream.fileno()
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size < max(min_bytes, 2):
        return None
    middle = int(st.st_size * SPLIT)
    newline = os.pread(fd, 1 << 20, middle).find(b"\n")
    if newline < 0 or middle + newline + 1 >= st.st_size:
        return None
    return middle + newline + 1


class _Pread:
    """Bytes ``offset`` to ``end`` (None: the end of the file) of a file descriptor, for :func:`read_blocks`,
    read with ``pread``: the descriptor's own offset, which both processes share after ``fork``, is left
    alone."""

    def __init__(self, fd: int, offset: int, end: int | None = None) -> None:
        self.fd, self.offset, self.end = fd, offset, end

    def read1(self, size: int) -> bytes:
        if self.end is not None:
            size = min(size, self.end - self.offset)
            if size <= 0:
                return b""
        data = os.pread(self.fd, size, self.offset)
        self.offset += len(data)
        return data


class _Checkpoints:
    """``blocks`` cut so that one starts at each checkpoint after ``base``: ``checkpoint`` lines on, then twice as
    far each time (states that meet soon are seen soon; states that meet late cost the main process at most
    as many lines again as it took them). Before such a
    block, ``at(line)`` is called (every line before ``line`` has then been read, its events written): when it
    answers True the blocks end there, and :meth:`rest` gives the ones left."""

    def __init__(self, blocks: Blocks, base: int, checkpoint: int, at: Callable[[int], bool]) -> None:
        self.source, self.at = iter(blocks), at
        self.step = max(1, checkpoint)
        self.cut = base + 1 + self.step
        self.pending: tuple[int, bytes | None] | None = None

    def __iter__(self) -> Iterator[tuple[int, bytes | None]]:
        for first, raw in self.source:
            while True:
                if first >= self.cut:
                    if self.at(self.cut):
                        self.pending = (first, raw)
                        return
                    self.step *= 2
                    self.cut += self.step
                    continue
                count = 1 if raw is None else raw.count(b"\n") + 1
                if raw is None or first + count <= self.cut:
                    yield first, raw
                    break
                parts = raw.split(b"\n", self.cut - first)
                yield first, b"\n".join(parts[:-1])
                first, raw = self.cut, parts[-1]

    def rest(self) -> Iterator[tuple[int, bytes | None]]:
        """The blocks after the one :meth:`__iter__` stopped at, that one first."""
        if self.pending is not None:
            yield self.pending
        yield from self.source


def _counts(stats: SourceStats) -> list[int]:
    return [getattr(stats, name) for name in COUNTERS]


def _counted(stats: SourceStats) -> str:
    """The counts of a child's note."""
    return " ".join(str(c) for c in _counts(stats))


def _split(fd: int, point: int, reader: StreamReader, name: str, out: TextIO, stats: SourceStats,
           checkpoint: int) -> Written:
    """Parse the plain file open on ``fd`` with a child reading from byte ``point`` on."""
    encoding, errors = getattr(out, "encoding", None) or "utf-8", getattr(out, "errors", None) or "strict"
    with tempfile.TemporaryFile() as events_file, tempfile.TemporaryFile() as notes_file:
        out.flush()  # nothing buffered may be written twice
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                _child(fd, point, reader, name, events_file.fileno(), notes_file.fileno(), encoding, errors,
                       checkpoint)
                code = 0
            finally:
                os._exit(code)
        child = _Child(pid)
        try:
            return _lead(child, fd, point, reader, name, out, stats, checkpoint, events_file,
                         _Notes(notes_file.fileno()), encoding, errors)
        finally:
            child.stop()


class _Child:
    """The forked child, waited for exactly once."""

    def __init__(self, pid: int) -> None:
        self.pid: int | None = pid

    def wait(self) -> bool:
        """Whether the child ended well."""
        if self.pid is None:
            return False
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        return status == 0

    def stop(self) -> None:
        """Kill the child if it still runs (its events are not needed), and reap it."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None


def _lead(child: _Child, fd: int, point: int, reader: StreamReader, name: str, out: TextIO, stats: SourceStats,
          checkpoint: int, events_file: IO[bytes], notes: _Notes, encoding: str, errors: str) -> Written:
    """The main process's part: the first half, then on past the split until the states meet."""
    written = Written(split=point)
    write_jsonl(reader.events(read_blocks(_Pread(fd, 0, point), stats), name, stats), name, out)
    base = stats.lines  # the split is at a line's start: the first half's lines are the lines before it
    met: list[tuple[int, list[int]]] = []

    def meets(line: int) -> bool:
        note = notes.at(line)
        if note is not None and note[1] == reader.digest():
            met.append((note[0], note[2]))
            return True
        return False

    cuts = _Checkpoints(read_blocks(_Pread(fd, point), stats, base), base, checkpoint, meets)
    write_jsonl(reader.events(cuts, name, stats), name, out)
    if not met:
        return written  # read to the end alone
    offset_at, counts_at = met[0]
    end = notes.end() if child.wait() else None
    if end is None:  # the child failed after all: read on from where the states met
        write_jsonl(reader.events(cuts.rest(), name, stats), name, out)
        return written
    end_lines, end_offset, end_counts = end
    out.flush()
    _copy(events_file, offset_at, end_offset, out, encoding, errors)
    for counter, now, there, done in zip(COUNTERS, _counts(stats), counts_at, end_counts, strict=True):
        setattr(stats, counter, now + done - there)
    stats.lines = end_lines
    written.taken_from = cuts.cut
    return written


class _Notes:
    """The child's notes, read as they are written: ``at LINE OFFSET DIGEST COUNTS...`` at each checkpoint,
    ``end LINES OFFSET COUNTS...`` when it is done."""

    def __init__(self, fd: int) -> None:
        self.fd, self.read = fd, 0
        self.ats: dict[int, tuple[int, bytes, list[int]]] = {}
        self.done: tuple[int, int, list[int]] | None = None

    def _refresh(self) -> None:
        data = os.pread(self.fd, 1 << 20, self.read)
        complete = data[: data.rfind(b"\n") + 1]
        self.read += len(complete)
        for line in complete.splitlines():
            kind, *fields = line.split()
            if kind == b"at":
                at, offset, digest, *counts = fields
                self.ats[int(at)] = (int(offset), bytes.fromhex(digest.decode()), [int(c) for c in counts])
            elif kind == b"end":
                lines, offset, *counts = fields
                self.done = (int(lines), int(offset), [int(c) for c in counts])

    def at(self, line: int) -> tuple[int, bytes, list[int]] | None:
        """The child's note at checkpoint ``line`` (output offset, digest, counts), None when it has not
        written it (yet); notes of earlier checkpoints are dropped."""
        self._refresh()
        for old in [k for k in self.ats if k < line]:
            del self.ats[old]
        return self.ats.pop(line, None)

    def end(self) -> tuple[int, int, list[int]] | None:
        """The child's last note (lines, output size, counts), None when it did not finish."""
        while self.done is None:
            before = self.read
            self._refresh()
            if self.read == before:
                break
        return self.done


def _copy(source: IO[bytes], start: int, end: int, out: TextIO, encoding: str, errors: str) -> None:
    """Bytes ``start:end`` of the child's output to ``out`` (written in ``out``'s encoding: the same bytes)."""
    target = getattr(out, "buffer", None)
    offset = start
    while offset < end:
        data = os.pread(source.fileno(), min(1 << 20, end - offset), offset)
        if not data:
            break
        offset += len(data)
        if target is not None:
            target.write(data)
        else:
            out.write(data.decode(encoding, errors))
    if target is not None:
        target.flush()


def _child(fd: int, point: int, reader: StreamReader, name: str, events_fd: int, notes_fd: int, encoding: str,
           errors: str, checkpoint: int) -> None:
    """Parse from byte ``point`` to the end from an empty state, noting digests at the checkpoints."""
    base = 0
    offset = 0
    while offset < point:
        data = os.pread(fd, min(1 << 20, point - offset), offset)
        if not data:
            break
        base += data.count(b"\n")
        offset += len(data)
    stats = SourceStats(name)
    out = io.TextIOWrapper(io.FileIO(events_fd, "w", closefd=False), encoding=encoding, errors=errors)

    def note(line: int) -> bool:
        out.flush()
        text = f"at {line} {os.lseek(events_fd, 0, os.SEEK_CUR)} {reader.digest().hex()} {_counted(stats)}\n"
        os.write(notes_fd, text.encode())
        return False

    cuts = _Checkpoints(read_blocks(_Pread(fd, point), stats, base), base, checkpoint, note)
    write_jsonl(reader.events(cuts, name, stats), name, out)
    out.flush()
    os.write(notes_fd, f"end {stats.lines} {os.lseek(events_fd, 0, os.SEEK_CUR)} {_counted(stats)}\n".encode())
