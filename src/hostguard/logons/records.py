"""One log line to a :class:`Record`: when, which program (and pid), and the message.

The formats a line may be in are recognised per line, not per file, because rotated, merged and
hand-collected logs mix them:

* syslog with a classic stamp (``Mar  4 10:00:00 host sshd[42]: ...``; also ``journalctl -o short`` and
  ``-o short-precise``, which zero-pad the day and add a fraction),
* syslog with an RFC 3339 stamp (rsyslog's high-precision format, ``-o short-iso``, ``-o short-iso-precise``),
* ``journalctl -o short-full`` (``Mon 2024-03-04 10:00:00 CET host ...``) and ``-o short-unix``,
* ``journalctl -o json`` (one object a line; a non-UTF-8 MESSAGE is a list of byte values),
* the services' own log files, whose service the format implies: vsftpd's ``vsftpd.log``, proftpd's
  ``SystemLog``, the MySQL/MariaDB error log, the PostgreSQL server log.

Journal separator lines (``-- Boot ... --``, ``-- No entries --``) and anything else give None.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from hostguard.logons.timestamps import Clock, fraction_micro, iso_text

# the syslog header's stamp, in every format above: its alternatives with their parts named
STAMP_PARTS = (r"(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)"
               r"(?:\.(?P<frac>\d{1,9}))?"
               r"|(?P<iso>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d(?::?\d\d)?)?)"
               r"|[A-Z][a-z]{2} (?P<full>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})?) (?P<zone>[A-Za-z][\w+\-/]{0,31})"
               r"|(?P<unix>\d{9,11}\.\d{1,9})")
STAMP_READER = re.compile(STAMP_PARTS)
# the header (stamp and host) in front of a syslog line. The fast path (hot.py) matches whole lines with
# the same text in front, its parts not captured (every captured group costs a string when its match is
# unpacked): both read a stamp the same way, and a stamp's parts are only needed the first time it is seen
STAMP = rf"(?P<stamp>{STAMP_PARTS}) (?P<host>\S{{1,255}}) "
STAMP_TEXT = rf"(?P<stamp>{re.sub(r'[(][?]P<[a-z]+>', '(?:', STAMP_PARTS)}) \S{{1,255}} "
SYSLOG = re.compile(STAMP + r"(?:(?P<prog>[^\s\[:]{1,128})(?:\[(?P<pid>\d{1,10})\])?: ?(?P<msg>.*)"
                    r"|last message repeated (?P<rep>\d{1,9}) times?)", re.S)
VSFTPD = re.compile(r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) "
                    r"(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d) (?P<year>\d{4}) \[pid (?P<pid>\d{1,10})\] (?P<msg>.*)", re.S)
PROFTPD = re.compile(r"(?P<iso>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:,\d{1,6})?) (?P<host>\S{1,255}) "
                     r"proftpd\[(?P<pid>\d{1,10})\] (?P<msg>.*)", re.S)
MYSQL = re.compile(r"(?:(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)?)"
                   r"|(?:(?P<ymd>\d{4}-\d\d-\d\d)|(?P<yy>\d\d)(?P<mm>\d\d)(?P<dd>\d\d)) {1,2}"
                   r"(?P<h>\d{1,2}):(?P<m>\d\d):(?P<s>\d\d)(?:\.(?P<frac>\d{1,9}))?)"
                   r"\s+(?:\d+\s+)?(?P<msg>(?:\[[A-Za-z]+\]|Connect\b).*)", re.S)
MYSQL_SAME_SECOND = re.compile(r"\t+ *\d+ +(?P<msg>\S.*)", re.S)
# an RFC 3339 stamp exactly as datetime.isoformat() writes it (six-digit fraction, not all zero; "-00:00" is
# written "+00:00"): such a stamp is its own contract text
CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(?!0{6})\d{6})?(?:\+\d\d:\d\d|-(?!00:00)\d\d:\d\d)")
STAMPS_KEPT = 1024
POSTGRES = re.compile(r"(?P<iso>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})?) "
                      r"(?P<zone>[A-Za-z][\w+\-/]{0,31}|[+-]\d\d(?::?\d\d)?) \[(?P<pid>\d{1,10})\] (?P<msg>.*)", re.S)


@dataclass(slots=True)
class Record:
    """A line's parts. ``program`` is the syslog identifier (``sshd``, ``postfix/smtpd``) or, for a service's
    own log file, the program its format implies; ``repeat`` is sysklogd's ``last message repeated N times``
    (the message itself is the previous line's)."""

    time: str | None  # the contract's form: ISO 8601 with an offset
    program: str
    pid: int | None
    message: str
    repeat: int = 0


class RecordReader:
    """Reads the text lines of one stream (any format but JSON). Many lines share a stamp (many per second in
    a busy log; merged logs alternate formats): each stamp's text is kept (a bounded table) instead of being
    rebuilt, which costs more than the rest of a line's header."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._times: dict[str, str | None] = {}
        self._own_time: str | None = None

    def state(self) -> str | None:
        """What the reader remembers from one line to the next (the stamp table is a cache, not state)."""
        return self._own_time

    def reclock(self, clock: Clock) -> None:
        """Read the next lines against ``clock`` (the stamp table was made with the old one: emptied)."""
        self.clock = clock
        self._times.clear()

    def read(self, text: str) -> Record | None:
        """The record of one line, None when it is in none of the formats."""
        m = SYSLOG.match(text)
        if m is None:
            if text.startswith("\t"):  # a MySQL/MariaDB general-log line in the same second as the one before
                c = MYSQL_SAME_SECOND.fullmatch(text)
                return None if c is None else Record(self._own_time, "mysqld", None, c["msg"])
            record = _own_format(text, self.clock)
            if record is not None and record.program == "mysqld":
                self._own_time = record.time
            return record
        when = self.time_of(m)
        rep = m["rep"]
        if rep is not None:
            return Record(when, "", None, "", repeat=int(rep))
        pid = m["pid"]
        return Record(when, m["prog"], int(pid) if pid else None, m["msg"])

    def time_of(self, m: re.Match[str]) -> str | None:
        """The time (contract text) of a match of a pattern that starts with :data:`STAMP`."""
        stamp = m.group("stamp")
        text = self._times.get(stamp, "")
        return self._remember(stamp, _syslog_time(m, self.clock)) if text == "" else text

    def time_of_stamp(self, stamp: str) -> str | None:
        """The time (contract text) of a stamp :data:`STAMP_TEXT` matched."""
        text = self._times.get(stamp, "")
        if text != "":
            return text
        if CANONICAL.fullmatch(stamp):  # rsyslog's high-precision stamps: most lines have their own
            try:
                datetime.fromisoformat(stamp)  # only checks the date is real: the text is the contract's
                return self._remember(stamp, stamp)
            except ValueError:
                return self._remember(stamp, None)
        m = STAMP_READER.fullmatch(stamp)
        return self._remember(stamp, None if m is None else _syslog_time(m, self.clock))

    def _remember(self, stamp: str, text: str | None) -> str | None:
        times = self._times
        if len(times) >= STAMPS_KEPT:
            times.clear()
        times[stamp] = text
        return text


def _syslog_time(m: re.Match[str], clock: Clock) -> str | None:
    g = m.group
    if g("mon") is not None:
        return iso_text(clock.classic(g("mon"), int(g("day")), int(g("h")), int(g("m")), int(g("s")),
                                      fraction_micro(g("frac"))))
    if g("iso") is not None:
        iso = g("iso")
        when = clock.iso(iso)
        # rsyslog's RFC 3339 stamp is mostly the contract's form already: no need to write it again
        return iso if when is not None and CANONICAL.fullmatch(iso) else iso_text(when)
    if g("full") is not None:
        return iso_text(clock.named(g("full"), g("zone")))
    return iso_text(clock.epoch(float(g("unix"))))


def read_record(text: str, clock: Clock) -> Record | None:
    """The record of one text line (any format but JSON), None when it is in none of them."""
    return RecordReader(clock).read(text)


def _own_format(text: str, clock: Clock) -> Record | None:
    first = text[:1]
    if first.isalpha():
        m = VSFTPD.match(text)
        if m is None:
            return None
        when = clock.iso(f"{m['year']}-{_month(m['mon']):02d}-{int(m['day']):02d}T{m['h']}:{m['m']}:{m['s']}")
        return Record(iso_text(when), "vsftpd", int(m["pid"]), m["msg"])
    if not first.isdigit():
        return None
    m = PROFTPD.match(text)
    if m is not None:
        return Record(iso_text(clock.iso(m["iso"])), "proftpd", int(m["pid"]), m["msg"])
    m = POSTGRES.match(text)
    if m is not None:
        return Record(iso_text(clock.named(m["iso"], m["zone"])), "postgres", int(m["pid"]), m["msg"])
    m = MYSQL.match(text)
    if m is not None:
        if m["iso"] is not None:
            when = clock.iso(m["iso"])
        else:  # MariaDB: "2024-03-04  7:05:00" (hour space-padded) or, before 10.1, "240304  7:05:00"
            day = m["ymd"] or f"20{m['yy']}-{m['mm']}-{m['dd']}"
            frac = f".{m['frac']}" if m["frac"] else ""
            when = clock.iso(f"{day}T{int(m['h']):02d}:{m['m']}:{m['s']}{frac}")
        return Record(iso_text(when), "mysqld", None, m["msg"])
    return None


def _month(name: str) -> int:
    from hostguard.logons.timestamps import MONTHS

    return MONTHS.get(name, 0)


def read_journal_entry(text: str, clock: Clock) -> Record | None:
    """The record of one ``journalctl -o json`` line; None when it is not a JSON object with a MESSAGE."""
    try:
        entry = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(entry, dict):
        return None
    message = entry.get("MESSAGE")
    if isinstance(message, list):
        if not all(isinstance(b, int) and 0 <= b < 256 for b in message):
            return None
        message = bytes(message).decode("utf-8", "surrogateescape")
    if not isinstance(message, str):
        return None
    program = entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or ""
    pid_text = entry.get("SYSLOG_PID") or entry.get("_PID")
    stamp = entry.get("__REALTIME_TIMESTAMP")
    when = clock.epoch(int(stamp) / 1e6) if isinstance(stamp, str) and stamp.isdigit() and len(stamp) < 20 else None
    pid = int(pid_text) if isinstance(pid_text, str) and pid_text.isdigit() and len(pid_text) < 11 else None
    return Record(iso_text(when), program if isinstance(program, str) else "", pid, message.replace("\0", ""))
