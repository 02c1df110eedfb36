"""Streams of log lines to :class:`LogonEvent` records: decoding, format detection, and the parsers.

This is what ``hostguard logons parse`` runs, and what the agent will run on lines as they arrive. Lines are
decoded as UTF-8 with ``surrogateescape`` (exact bytes kept: a user name is attacker-chosen, and one invalid
byte must not hide a whole attempt), NUL bytes are dropped (rsyslog leaves runs of them after a crash, in
front of good lines) and both are counted in :class:`~hostguard.logons.sources.SourceStats`.

Sources hand over *blocks*: ``(number of the first line, bytes)`` where the bytes are one line or many
joined by newlines (a file is read 64 KiB at a time), or ``(number, None)`` for a line skipped as too
long. A block is decoded, cleaned and split at once; only a block with a NUL or an invalid byte is looked
at line by line, so the clean common case costs no Python per line before the parsers. Then each line is
tried against the fast path's shapes (:mod:`hostguard.logons.hot`) and, when none fits, read the general
way.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable, Iterator

from hostguard.logons.events import LogonEvent
from hostguard.logons.hot import HotPath
from hostguard.logons.parsers import GENERATION, StreamParser
from hostguard.logons.records import Record, RecordReader, read_journal_entry
from hostguard.logons.sources import SourceStats
from hostguard.logons.timestamps import Clock


def parse_lines(blocks: Iterable[tuple[int, bytes | None]], name: str, clock: Clock, stats: SourceStats,
                program: str | None = None) -> Iterator[LogonEvent]:
    """The events of one stream's blocks of lines (see the module doc).

    ``program``: the program of lines in no known format (``sshd -E FILE`` writes bare messages, without
    syslog's stamp and ident). JSON lines are journal entries (``journalctl -o json``).
    """
    return StreamReader(clock, program).events(blocks, name, stats)


class StreamReader:
    """Reads one stream, block after block; keeps what its parsers remember between lines (sshd's sessions,
    PostgreSQL's backends, the last record for ``last message repeated``), so reading can go on where it
    stopped; :meth:`digest` tells whether two readers would go on alike."""

    def __init__(self, clock: Clock, program: str | None = None, *, fast: bool = True) -> None:
        """``fast=False`` reads every line the general way: the reference the fast path is tested against."""
        self.clock, self.program = clock, program
        self.parser = StreamParser()
        self.reader = RecordReader(clock)
        self.hot = HotPath(self.parser) if fast else None
        self._next_sweep = 1
        self.last_line = 0  # the number of the last line read (a journal read numbers on from it)

    def reclock(self, clock: Clock) -> None:
        """Go on with another reference time (a later read of the same stream: its file's new mtime decides the
        year of stamps without one)."""
        self.clock = clock
        self.reader.reclock(clock)

    def absorb(self, blocks: Iterable[tuple[int, bytes | None]]) -> None:
        """Read ``blocks`` for the state they leave (lines read before, again): no event, no count kept."""
        collections.deque(self.events(blocks, "", SourceStats("")), maxlen=0)

    def events(self, blocks: Iterable[tuple[int, bytes | None]], name: str,
               stats: SourceStats) -> Iterator[LogonEvent]:
        """The events of ``blocks``, attributed to ``name``."""
        parser, reader = self.parser, self.reader
        hot_match, hot_attempt = (self.hot.match, self.hot.attempt) if self.hot is not None else (None, None)
        sweep = self._next_sweep
        for first, raw in blocks:
            if raw is None:
                stats.too_long += 1
                continue
            number = first - 1
            for text in _decoded(raw, stats):
                number += 1
                if number >= sweep:
                    sweep = self._sweep(number)
                if hot_match is not None and (m := hot_match(text)) is not None:
                    attempt = parser.last = hot_attempt(m)  # type: ignore[misc]  # set with hot_match
                    if attempt is None:
                        continue
                    when = reader.time_of_stamp(m.group(1))
                    repeat = 1
                else:
                    record = self._record(text, stats)
                    if record is None:
                        continue
                    found = parser.parse(record)
                    if found is None:
                        continue
                    attempt, repeat = found
                    when = record.time
                stats.events += 1
                yield LogonEvent.of(attempt, name, number, when, repeat)
            self.last_line = number

    def digest(self) -> bytes:
        """A digest of the parsers' state: two readers with equal digests turn the same lines into the same
        events from here on (``hostguard.logons.split`` relies on it)."""
        state = (self.parser.state(), self.reader.state())
        # repr, not pickle: pickle's bytes depend on which equal strings happen to be one object (its memo)
        text = repr(state).encode("utf-8", "surrogatepass")
        return hashlib.blake2b(text, digest_size=16).digest()

    def _sweep(self, number: int) -> int:
        """Enter the generation of line ``number`` (a generation is GENERATION lines, from line 1); the line
        the next one starts at."""
        generation = (number - 1) // GENERATION
        if generation:
            self.parser.sweep(generation)
        self._next_sweep = (generation + 1) * GENERATION + 1
        return self._next_sweep

    def _record(self, text: str, stats: SourceStats) -> Record | None:
        """The record of a line the fast path did not take (a journal entry, any syslog or own format)."""
        if text.startswith("{"):
            record = read_journal_entry(text, self.clock)
            if record is None:
                stats.unreadable += 1
            return record
        record = self.reader.read(text)
        if record is None and self.program is not None and text:
            return Record(None, self.program, None, text)
        return record


def _decoded(raw: bytes, stats: SourceStats) -> list[str]:
    """The text lines of a block: NULs dropped, bytes that are not UTF-8 kept as surrogates, a trailing
    carriage return cut; each repair counted per line."""
    if b"\0" in raw:
        stats.nul += sum(1 for line in raw.split(b"\n") if b"\0" in line)
        raw = raw.replace(b"\0", b"")
    try:
        lines = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        lines = []
        for line in raw.split(b"\n"):
            try:
                lines.append(line.decode("utf-8"))
            except UnicodeDecodeError:
                stats.non_utf8 += 1
                lines.append(line.decode("utf-8", "surrogateescape"))
    if b"\r" in raw:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines
