"""One parser per service family, and the dispatcher that hands each record to the right one.

A record's *program* (the syslog identifier, or the program a service's own log format implies) picks the
family through ``data/logons/services.toml``; PAM lines are looked at whatever program wrote them
(``pam.py`` decides from the PAM service whether they count). rsyslog's ``message repeated N times: [ M ]``
is unwrapped and the attempt of M counted N times; sysklogd's ``last message repeated N times`` repeats the
previous line's attempt N times (both wrappers stand for N *more* copies of a message already logged).

A :class:`StreamParser` is used for one stream (a file, the journal) at a time: the sshd and PostgreSQL
parsers remember per-connection facts across lines, and lines of different files are no one session.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

from hostguard.data import load_toml
from hostguard.logons.events import Attempt
from hostguard.logons.parsers.databases import PostgresParser, parse_mysql
from hostguard.logons.parsers.ftp import parse_proftpd, parse_pure_ftpd, parse_vsftpd
from hostguard.logons.parsers.local import parse_login, parse_su, parse_sudo
from hostguard.logons.parsers.mail import parse_dovecot, parse_postfix
from hostguard.logons.parsers.pam import PamParser
from hostguard.logons.parsers.sshd import SshdParser
from hostguard.logons.records import Record

REPEATED = re.compile(r"message repeated (?P<n>\d{1,9}) times?: \[ ?(?P<msg>.*)\]", re.S)
STATELESS: dict[str, Callable[[str], Attempt | None]] = {
    "vsftpd": parse_vsftpd, "proftpd": parse_proftpd, "pure-ftpd": parse_pure_ftpd, "dovecot": parse_dovecot,
    "postfix": parse_postfix, "mysql": parse_mysql, "su": parse_su, "sudo": parse_sudo, "login": parse_login,
}
GENERATION = 16384  # lines: what a parser has not heard of for KEPT to KEPT + 1 generations is forgotten
KEPT = 1  # (a sweep scans the whole table: rarely, and over a window far longer than LoginGraceTime's lines)
STATEFUL = frozenset({"sshd", "postgresql"})  # parsers that remember something from one line to the next
FAMILIES = frozenset(STATELESS) | STATEFUL


@cache
def _names() -> tuple[dict[str, str], tuple[tuple[str, str], ...], dict[str, str], frozenset[str]]:
    data = load_toml("logons/services.toml")
    programs = {str(k): str(v) for k, v in data["programs"].items()}
    prefixes = tuple((str(k), str(v)) for k, v in data["program_prefixes"].items())
    pam = data["pam"]
    unknown = (set(programs.values()) | {v for _, v in prefixes}) - FAMILIES
    if unknown:
        raise ValueError(f"logons/services.toml names unknown parser families: {sorted(unknown)}")
    return programs, prefixes, {str(k): str(v) for k, v in pam["services"].items()}, frozenset(pam["own_lines"])


class StreamParser:
    """Turns the records of one stream into attempts (with the repeat factor of a repeat wrapper)."""

    def __init__(self) -> None:
        self.programs, self.prefixes, pam_services, own_lines = _names()
        self.sshd = SshdParser()
        self.postgres = PostgresParser()
        self.pam = PamParser(pam_services, own_lines)
        self.last: Attempt | None = None  # the attempt of the last record (``last message repeated`` repeats it)

    def state(self) -> tuple[object, ...]:
        """Everything the stream's parsers remember from one line to the next (not their configuration)."""
        return (self.sshd.state(), self.postgres.state(), self.last)

    def sweep(self, generation: int) -> None:
        """Start ``generation`` (lines from ``generation * GENERATION + 1`` on), and forget what the stateful
        parsers last heard of :data:`KEPT` generations ago or more. Tied to line numbers, not to when or in
        which blocks lines were read, so every reading of a stream forgets the same."""
        self.sshd.generation = self.postgres.generation = generation
        self.sshd.sweep(generation - KEPT)
        self.postgres.sweep(generation - KEPT)

    def programs_of(self, family: str) -> list[str]:
        """The program names read by ``family`` (exact names; prefixes are not listed)."""
        return [program for program, name in self.programs.items() if name == family]

    def family(self, program: str) -> str | None:
        """The parser family reading ``program``'s lines, None for a program hostguard does not read."""
        family = self.programs.get(program)
        if family is None:
            for prefix, name in self.prefixes:
                if program.startswith(prefix):
                    return name
        return family

    def parse(self, record: Record) -> tuple[Attempt, int] | None:
        """The attempt of one record and how many times it is logged (``message repeated``), if any."""
        if record.repeat:
            return (self.last, record.repeat) if self.last is not None else None
        message = record.message
        repeat = 1
        if message.startswith("message repeated "):
            m = REPEATED.fullmatch(message.rstrip())
            if m is not None:
                repeat, message = int(m["n"]), m["msg"]
        attempt = self.last = self._attempt(record.program, record.pid, message)
        return None if attempt is None or repeat < 1 else (attempt, repeat)

    def _attempt(self, program: str, pid: int | None, message: str) -> Attempt | None:
        if message.startswith(("pam_", "PAM ")):
            return self.pam.parse(message, program)
        family = self.family(program)
        if family is None:
            return None
        if family == "sshd":
            return self.sshd.parse(message, pid)
        if family == "postgresql":
            return self.postgres.parse(message, pid)
        return STATELESS[family](message)
