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

from hostguard.logons.timestamps import Clock, fraction_micro

SYSLOG = re.compile(
    r"(?P<stamp>(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)(?:\.(?P<frac>\d{1,9}))?"
    r"|(?P<iso>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d(?::?\d\d)?)?)"
    r"|[A-Z][a-z]{2} (?P<full>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})?) (?P<zone>[A-Za-z][\w+\-/]{0,31})"
    r"|(?P<unix>\d{9,11}\.\d{1,9}))"
    r" (?P<host>\S{1,255}) (?:(?P<prog>[^\s\[:]{1,128})(?:\[(?P<pid>\d{1,10})\])?: ?(?P<msg>.*)"
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
POSTGRES = re.compile(r"(?P<iso>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})?) "
                      r"(?P<zone>[A-Za-z][\w+\-/]{0,31}|[+-]\d\d(?::?\d\d)?) \[(?P<pid>\d{1,10})\] (?P<msg>.*)", re.S)


@dataclass(slots=True)
class Record:
    """A line's parts. ``program`` is the syslog identifier (``sshd``, ``postfix/smtpd``) or, for a service's
    own log file, the program its format implies; ``repeat`` is sysklogd's ``last message repeated N times``
    (the message itself is the previous line's)."""

    time: datetime | None
    program: str
    pid: int | None
    message: str
    repeat: int = 0


class RecordReader:
    """Reads the text lines of one stream (any format but JSON). Consecutive lines mostly share their stamp
    (many per second in a busy log): the last stamp's time is reused instead of rebuilt."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._stamp = ""
        self._time: datetime | None = None
        self._own_time: datetime | None = None

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
        stamp = text[: m.end("stamp")]
        if stamp == self._stamp:
            when = self._time
        else:
            when = self._time = _syslog_time(m, self.clock)
            self._stamp = stamp
        rep = m["rep"]
        if rep is not None:
            return Record(when, "", None, "", repeat=int(rep))
        pid = m["pid"]
        return Record(when, m["prog"], int(pid) if pid else None, m["msg"])


def _syslog_time(m: re.Match[str], clock: Clock) -> datetime | None:
    g = m.group
    if g("mon") is not None:
        return clock.classic(g("mon"), int(g("day")), int(g("h")), int(g("m")), int(g("s")), fraction_micro(g("frac")))
    if g("iso") is not None:
        return clock.iso(g("iso"))
    if g("full") is not None:
        return clock.named(g("full"), g("zone"))
    return clock.epoch(float(g("unix")))


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
        return Record(when, "vsftpd", int(m["pid"]), m["msg"])
    if not first.isdigit():
        return None
    m = PROFTPD.match(text)
    if m is not None:
        return Record(clock.iso(m["iso"]), "proftpd", int(m["pid"]), m["msg"])
    m = POSTGRES.match(text)
    if m is not None:
        return Record(clock.named(m["iso"], m["zone"]), "postgres", int(m["pid"]), m["msg"])
    m = MYSQL.match(text)
    if m is not None:
        if m["iso"] is not None:
            when = clock.iso(m["iso"])
        else:  # MariaDB: "2024-03-04  7:05:00" (hour space-padded) or, before 10.1, "240304  7:05:00"
            day = m["ymd"] or f"20{m['yy']}-{m['mm']}-{m['dd']}"
            frac = f".{m['frac']}" if m["frac"] else ""
            when = clock.iso(f"{day}T{int(m['h']):02d}:{m['m']}:{m['s']}{frac}")
        return Record(when, "mysqld", None, m["msg"])
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
    return Record(when, program if isinstance(program, str) else "", pid, message.replace("\0", ""))
