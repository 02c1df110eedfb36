"""The typed event every parser produces: one authentication attempt (or a run of identical ones).

The JSON form is a stable contract (DESIGN.md, "Stable command contracts"): detectors, the store and other
tools key on these field names and values, so a new service adds values, never fields.

Both types are named tuples, not dataclasses: a busy log makes one of each per line, and a frozen
dataclass costs several times a tuple to build (issue 11's speed target is per line).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple, TextIO

from hostguard.findings import portable

Outcome = Literal["success", "failure", "probe"]
OUTCOMES: tuple[Outcome, ...] = ("success", "failure", "probe")
_DUMPS = json.JSONEncoder(ensure_ascii=False).encode
_NEW = tuple.__new__


class Attempt(NamedTuple):
    """What a parser read from one message, before the source adds where and when.

    ``count`` is the number of attempts the message stands for (``3 incorrect password attempts``, dovecot's
    ``auth failed, 2 attempts``); a repeat wrapper (``message repeated N times``) multiplies it.
    """

    service: str
    outcome: Outcome
    user: str | None = None
    ip: str | None = None
    port: int | None = None
    method: str | None = None
    count: int = 1  # type: ignore[assignment]  # a field, shadowing tuple.count on purpose


class LogonEvent(NamedTuple):
    """One authentication attempt as ``hostguard logons parse`` prints it.

    ``line`` is the 1-based line (or journal entry) carrying the attempt; ``time`` is ISO 8601 with an
    offset, None when the line has no usable time. ``user`` and ``method`` are read from the line and may hold
    non-UTF-8 text (decoded with ``surrogateescape``): they are written with the bytes policy of
    :mod:`hostguard.findings`.
    """

    file: str
    line: int
    service: str
    outcome: Outcome
    count: int  # type: ignore[assignment]  # a field, shadowing tuple.count on purpose
    user: str | None
    ip: str | None
    port: int | None
    method: str | None
    time: str | None

    @classmethod
    def of(cls, attempt: Attempt, file: str, line: int, time: str | None, repeat: int = 1) -> LogonEvent:
        """The event of ``attempt`` read at ``file:line`` (``repeat``: a syslog repeat wrapper's N)."""
        service, outcome, user, ip, port, method, count = attempt
        # tuple.__new__ straight: the generated __new__ costs as much again, once per event of a busy log
        return _NEW(cls, (file, line, service, outcome, count * repeat, user, ip, port, method, time))

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON object (field order as documented)."""
        return {"file": portable(self.file), "line": self.line, "service": self.service, "outcome": self.outcome,
                "count": self.count, "user": portable(self.user), "ip": self.ip, "port": self.port,
                "method": portable(self.method), "time": self.time}

    def json_line(self, file_json: str) -> str:
        """``json.dumps(self.to_json(), ensure_ascii=False)``, built directly (``logons parse`` writes one per
        attempt); ``file_json`` is the JSON of :attr:`file`, encoded once per source."""
        _, line, service, outcome, count, user, ip, port, method, time = self
        known = _KNOWN.get
        return (f'{{"file": {file_json}, "line": {line}, "service": {known(service) or _known(service)}, '
                f'"outcome": "{outcome}", "count": {count}, "user": {known(user) or _known(user)}, '
                f'"ip": {_text(ip)}, "port": {"null" if port is None else port}, '
                f'"method": {known(method) or _known(method)}, "time": {_text(time)}}}')


def write_jsonl(events: Iterable[LogonEvent], name: str, out: TextIO) -> None:
    """Write ``events`` to ``out`` as the contract's JSON Lines (``name``: the source they name)."""
    file_json = _DUMPS(portable(name))
    write = out.write
    for event in events:
        write(event.json_line(file_json) + "\n")


_KNOWN: dict[str | None, str] = {}


def _known(value: str | None) -> str:
    """:func:`_text` of a value that repeats (services, methods, the user names bots try), kept in a table."""
    text = _KNOWN.get(value)
    if text is None:
        if len(_KNOWN) >= 4096:
            _KNOWN.clear()
        text = _KNOWN[value] = _text(value)
    return text


def _text(value: str | None) -> str:
    """A string's JSON: printable text without quotes or backslashes as it is (nearly every value: the
    encoder leaves it so with ``ensure_ascii=False``), anything else through the encoder and the bytes
    policy (controls, quotes, non-UTF-8 user names, whose surrogates are not printable)."""
    if value is None:
        return "null"
    if value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return _DUMPS(portable(value))
