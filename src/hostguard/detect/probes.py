"""hostguard's own password probes, told apart from an attacker's failures (DESIGN: "ignored by hostguard's
own logon detectors").

A probe session (``probes`` table, written by ``probes/session.py``) tried one account of one local service
over loopback or a unix socket between its ``started`` and ``finished`` times, ``attempts`` times. A logged
failure is ours when it matches one: a logon service of the probed service (``data/detect/probes.toml``: the
prober says ``ftp``, the log says ``vsftpd``), the same account, from loopback or no address (a unix socket;
or a PostgreSQL log without ``log_connections``), inside the window widened by ``slack`` seconds (clocks and
log buffering) — and at most as many failures as the session made: a local attacker guessing at the same
moment still counts. A failure from any other address is never ours. Events without a time cannot be placed
in a window and are never ours.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from hostguard.data import load_toml
from hostguard.store.state import RecordedProbe


@cache
def service_map() -> Mapping[str, tuple[str, ...]]:
    """Prober service name -> the logon services whose failures its sessions cause."""
    return {k: tuple(v) for k, v in load_toml("detect/probes.toml")["services"].items()}


def _loopback(ip: str | None) -> bool:
    if ip is None:
        return True
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def _epoch(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass
class Session:
    """One recorded session and the failures it can still explain."""

    services: tuple[str, ...]
    account: str
    start: float
    end: float
    left: int


class OwnProbes:
    """Matches failures to recorded probe sessions, spending each session's attempts once."""

    def __init__(self, probes: Iterable[RecordedProbe], slack: float) -> None:
        self.sessions: list[Session] = []
        mapping = service_map()
        for p in probes:
            start = _epoch(p.started)
            if start is None or p.attempts <= 0:
                continue
            end = _epoch(p.finished) or start
            self.sessions.append(Session(mapping.get(p.service, (p.service,)), p.account, start - slack,
                                         end + slack, p.attempts))

    def ours(self, service: str, outcome: str, user: str | None, ip: str | None, time: str | None,
             count: int) -> bool:
        """Whether this failure was caused by one of our sessions (and spend its attempts)."""
        if outcome != "failure" or user is None or not self.sessions or not _loopback(ip):
            return False
        ts = _epoch(time)
        if ts is None:
            return False
        session = self._session(service, user, ts, count)
        if session is None:
            return False
        session.left -= count
        return True

    def refund(self, service: str, user: str | None, time: str | None, count: int) -> None:
        """Give back what :meth:`ours` spent on a failure that turned out to be stored already."""
        ts = _epoch(time)
        for session in self.sessions:
            if (ts is not None and service in session.services and session.account == user
                    and session.start <= ts <= session.end):
                session.left += count
                return

    def _session(self, service: str, user: str, ts: float, count: int) -> Session | None:
        for session in self.sessions:
            if (session.left >= count and service in session.services and session.account == user
                    and session.start <= ts <= session.end):
                return session
        return None
