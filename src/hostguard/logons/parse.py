"""Streams of log lines to :class:`LogonEvent` records: decoding, format detection, and the parsers.

This is what ``hostguard logons parse`` runs, and what the agent will run on lines as they arrive. Lines are
decoded as UTF-8 with ``surrogateescape`` (exact bytes kept: a user name is attacker-chosen, and one invalid
byte must not hide a whole attempt), NUL bytes are dropped (rsyslog leaves runs of them after a crash, in
front of good lines) and both are counted in :class:`~hostguard.logons.sources.SourceStats`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from hostguard.logons.events import LogonEvent
from hostguard.logons.parsers import StreamParser
from hostguard.logons.records import Record, RecordReader, read_journal_entry
from hostguard.logons.sources import SourceStats
from hostguard.logons.timestamps import Clock


def parse_lines(lines: Iterable[tuple[int, bytes]], name: str, clock: Clock, stats: SourceStats,
                program: str | None = None) -> Iterator[LogonEvent]:
    """The events of one stream's ``(line number, bytes)``.

    ``program``: the program of lines in no known format (``sshd -E FILE`` writes bare messages, without
    syslog's stamp and ident). JSON lines are journal entries (``journalctl -o json``).
    """
    parser = StreamParser()
    reader = RecordReader(clock)
    last_time: datetime | None = None
    last_iso: str | None = None
    for number, raw in lines:
        if b"\0" in raw:
            stats.nul += 1
            raw = raw.replace(b"\0", b"")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            stats.non_utf8 += 1
            text = raw.decode("utf-8", "surrogateescape")
        if text.endswith("\r"):
            text = text[:-1]
        record: Record | None
        if text.startswith("{"):
            record = read_journal_entry(text, clock)
            if record is None:
                stats.unreadable += 1
                continue
        else:
            record = reader.read(text)
            if record is None:
                if program is None or not text:
                    continue
                record = Record(None, program, None, text)
        found = parser.parse(record)
        if found is None:
            continue
        attempt, repeat = found
        stats.events += 1
        if record.time is not last_time:
            last_time = record.time
            last_iso = None if last_time is None else last_time.isoformat()
        yield LogonEvent.of(attempt, name, number, last_iso, repeat)
