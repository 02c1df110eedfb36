"""OpenSSH's messages (``sshd``; ``sshd-session`` from 9.8, ``sshd-auth`` in 10.x) to attempts.

How each message is classified, and why (docs/logons.md repeats this for owners):

* ``Failed <method> for [invalid user] U from A port P`` — a **failure** of that method; ``Accepted <method>
  ...`` a **success**. These are sshd's own record of each attempt (logged by the monitor, whatever the
  PAM stack did), so they carry the event. ``Failed none`` is not an attempt: it is the client asking which
  methods exist, and sshd does not count it either.
* PAM's ``authentication failure`` and ``PAM N more authentication failures`` lines under sshd are **not**
  events: every attempt PAM saw also has its ``Failed password``/``Failed keyboard-interactive/pam`` line
  (the PAM line comes first). Counting both would double every brute-force threshold (see ``pam.py``).
* ``Invalid user``, ``User U from A not allowed because ...``, ``ROOT LOGIN REFUSED``, ``Postponed``,
  ``Partial``, ``error: PAM: ...`` announce or accompany an attempt that gets its own line: no event.
* Session ends before authentication — ``Connection closed by`` / ``Disconnected from`` / ``Connection
  reset by`` / ``Disconnecting`` an *authenticating* or *invalid* user, ``maximum authentication attempts
  exceeded``, ``Timeout before authentication``, ``Received disconnect ... [preauth]`` — stand for an
  attempt only when the session showed none yet: a bot offering keys at the default LogLevel INFO leaves
  nothing else (refused keys are logged at VERBOSE), while after three ``Failed password`` lines the
  close adds nothing. Such an event is a **failure** when a user name was sent, else a **probe**.
* Pre-authentication probes — no identification string, ``kex_exchange_identification`` followed by the
  connection's close, a bad protocol banner, ``Unable to negotiate`` (no common algorithm),
  ``ssh_dispatch_run_fatal`` — are **probe** events: scanners and banner grabbers that never tried a
  password. They matter for "who is knocking" but must not count as password failures.

A session is the client's ``(address, port)`` (unique per TCP connection, and printed on nearly every
line, whatever pid or program — ``sshd-session``/``sshd-auth`` — logs it); lines without a port (very old
versions) find their session through the pid. ``Connection from`` (LogLevel VERBOSE) starts a session
afresh, so a reused source port is a new session. The table is bounded: a flood of connections cannot
grow memory without limit.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

from hostguard.logons.addresses import normalize_ip, parse_port
from hostguard.logons.events import Attempt, Outcome

SERVICE = "sshd"
MAX_SESSIONS = 8192  # sshd allows 100 unauthenticated connections at a time (MaxStartups)
# an address is never bare digits: with a greedy user name before it, "user root 192.0.2.7 port 22" (or
# "... port 22: reason") must not read as user "root 192.0.2.7 port", address "22"
ADDR = r"(?P<addr>(?!\d+(?: |$|: ))\S+?)(?: port (?P<port>\d+))?"
USER_ADDR = rf"(?:(?P<kind>invalid user|illegal user|authenticating user|user) (?P<user>.*) )?{ADDR}"
AUTH = re.compile(rf"(?P<verdict>Failed|Accepted) (?P<method>\S+) for (?:(?:invalid|illegal) user )?(?P<user>.*)"
                  rf" from {ADDR}(?: ssh[12](?:: .*)?)?", re.S)
INVALID = re.compile(rf"(?:Invalid|Illegal) user (?P<user>.*) from {ADDR}", re.S)
NOT_ALLOWED = re.compile(rf"User (?P<user>.*) from {ADDR} not allowed because .*", re.S)
CLOSED = re.compile(rf"(?:Connection closed by|Disconnected from|Connection reset by) {USER_ADDR}", re.S)
DISCONNECTING = re.compile(rf"Disconnecting {USER_ADDR}: .*", re.S)
MAXTRIES = re.compile(rf"maximum authentication attempts exceeded for (?:(?:invalid|illegal) user )?(?P<user>.*) "
                      rf"from {ADDR}(?: ssh2)?", re.S)
TIMEOUT = re.compile(rf"Timeout before authentication for (?:connection from )?{ADDR}", re.S)
RECEIVED = re.compile(rf"Received disconnect from {ADDR}:\s*\d+: .*", re.S)
DISPATCH = re.compile(rf"ssh_dispatch_run_fatal: Connection from {USER_ADDR}: .*", re.S)
PROBES = tuple(re.compile(p, re.S) for p in (
    rf"Did not receive identification string from {ADDR}",
    rf"Bad protocol version identification .* from {ADDR}",
    rf"Protocol major versions differ for {ADDR}: .*",
    rf"banner exchange: Connection from {ADDR}: .*",
    rf"Unable to negotiate with {ADDR}: .*",
))
CONNECTION = re.compile(rf"Connection from {ADDR} on \S+ port \d+.*", re.S)
LEADS = ("error: ", "fatal: ", "debug1: ")
TAILS = (" [preauth]", " [net]")

SessionKey = tuple[str, str | None]  # the address and port as printed


@dataclass(slots=True)
class _Session:
    user: str | None = None
    emitted: bool = False


class SshdParser:
    """The sshd messages of one stream. Holds the pre-authentication session table (see module doc)."""

    def __init__(self) -> None:
        # OrderedDict, not dict: evicting the oldest of a dict that had many deletions scans them (O(n))
        self._sessions: OrderedDict[SessionKey, _Session] = OrderedDict()
        self._by_pid: OrderedDict[int, SessionKey] = OrderedDict()
        self._kex_failed: set[int] = set()

    def parse(self, message: str, pid: int | None) -> Attempt | None:
        """The attempt ``message`` (one sshd line's text) carries, if any."""
        msg = message
        for lead in LEADS:
            if msg.startswith(lead):
                msg = msg[len(lead):]
                break
        preauth = False
        for tail in TAILS:
            if msg.endswith(tail):
                msg = msg[: -len(tail)]
                preauth = tail == " [preauth]"
                break
        head = msg[:4]
        if head in ("Fail", "Acce"):
            m = AUTH.fullmatch(msg)
            if m is None:
                return None
            session = self._session(m, pid)
            user = m["user"] or None
            session.user = user
            if m["method"] == "none":
                return None
            session.emitted = True
            outcome: Outcome = "success" if m["verdict"] == "Accepted" else "failure"
            return self._attempt(m, outcome, user, m["method"])
        if head in ("Conn", "Disc", "Time", "Rece", "maxi", "ssh_"):
            return self._ending(msg, pid, preauth)
        if head in ("Inva", "Ille", "User"):
            m = INVALID.fullmatch(msg) or NOT_ALLOWED.fullmatch(msg)
            if m is not None:
                self._session(m, pid).user = m["user"] or None
            return None
        if head == "kex_":
            # the close that follows (same pid; bare ``sshd -E`` lines have none) is the probe's own line
            self._kex_failed.add(pid or 0)
            if len(self._kex_failed) > MAX_SESSIONS:
                self._kex_failed.clear()
            return None
        for pattern in PROBES:
            m = pattern.fullmatch(msg)
            if m is not None:
                return self._once(m, pid, "probe", None)
        return None

    def _ending(self, msg: str, pid: int | None, preauth: bool) -> Attempt | None:
        m = CONNECTION.fullmatch(msg)
        if m is not None:  # a new session on this address and port: forget an older one
            key = self._key(m, pid)
            self._sessions.pop(key, None)
            self._session(m, pid)
            return None
        m = MAXTRIES.fullmatch(msg)
        if m is not None:
            return self._once(m, pid, "failure", m["user"] or None)
        for pattern in (CLOSED, DISCONNECTING, DISPATCH):
            m = pattern.fullmatch(msg)
            if m is None:
                continue
            if m["kind"] == "user":  # after authentication: a session's normal end
                self._forget(m, pid)
                return None
            user = m["user"] or None if m["kind"] else None
            kex = (pid or 0) in self._kex_failed
            if not (user or preauth or kex or self._session(m, pid).user):
                self._forget(m, pid)  # no sign this close was before authentication: not an attempt
                return None
            if kex:
                self._kex_failed.discard(pid or 0)
            attempt = self._once(m, pid, "failure" if user else "probe", user)
            if pattern is not DISPATCH:
                self._forget(m, pid)
            return attempt
        m = TIMEOUT.fullmatch(msg)
        if m is not None:
            return self._once(m, pid, "probe", None)
        m = RECEIVED.fullmatch(msg)
        if m is not None and preauth:
            return self._once(m, pid, "probe", None)
        return None

    def _once(self, m: re.Match[str], pid: int | None, outcome: Outcome, user: str | None) -> Attempt | None:
        """An attempt for a session-ending line, unless the session already gave one."""
        session = self._session(m, pid)
        if session.emitted:
            return None
        session.emitted = True
        user = user or session.user
        if user is not None and outcome == "probe":
            outcome = "failure"  # a user name was sent: an attempt to log in, not a scan
        return self._attempt(m, outcome, user, None)

    @staticmethod
    def _attempt(m: re.Match[str], outcome: Outcome, user: str | None, method: str | None) -> Attempt:
        addr, port = m.group("addr", "port")
        return Attempt(SERVICE, outcome, user, normalize_ip(addr), parse_port(port), method)

    def _key(self, m: re.Match[str], pid: int | None) -> SessionKey:
        addr, port = m.group("addr", "port")
        if port is None and pid is not None:
            known = self._by_pid.get(pid)
            if known is not None:
                return known
        return (addr, port)

    def _session(self, m: re.Match[str], pid: int | None) -> _Session:
        key = self._key(m, pid)
        sessions = self._sessions
        session = sessions.get(key)
        if session is None:
            session = sessions[key] = _Session()
            if len(sessions) > MAX_SESSIONS:
                sessions.popitem(last=False)
        if pid is not None and key[1] is not None:
            by_pid = self._by_pid
            by_pid[pid] = key
            if len(by_pid) > MAX_SESSIONS:
                by_pid.popitem(last=False)
        return session

    def _forget(self, m: re.Match[str], pid: int | None) -> None:
        self._sessions.pop(self._key(m, pid), None)
        if pid is not None:
            self._by_pid.pop(pid, None)
