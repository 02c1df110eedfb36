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
    seen: int = 0  # the generation (see StreamParser.sweep) of its last line


class SshdParser:
    """The sshd messages of one stream. Holds the pre-authentication session table (see module doc).

    :meth:`parse` reads a message; :meth:`auth`, :meth:`invalid` and :meth:`closed` are what it does with
    the fields of the commonest messages, shared with the fast path (``hostguard.logons.hot``), which
    reads those fields from the whole line at once.
    """

    def __init__(self) -> None:
        # OrderedDict, not dict: evicting the oldest of a dict that had many deletions scans them (O(n))
        self._sessions: OrderedDict[SessionKey, _Session] = OrderedDict()
        self._by_pid: OrderedDict[int, SessionKey] = OrderedDict()
        self._kex_failed: dict[int, int] = {}  # pid: the generation it was noted in
        self.generation = 0

    def state(self) -> tuple[object, ...]:
        """Everything this parser remembers, in order (the session table's order is its eviction order)."""
        return (tuple((key, s.user, s.emitted, s.seen) for key, s in self._sessions.items()),
                tuple(self._by_pid.items()), tuple(sorted(self._kex_failed.items())))

    def sweep(self, oldest: int) -> None:
        """Forget sessions, and kex failures, last heard of before generation ``oldest``: sshd ends a connection
        that has not authenticated within LoginGraceTime (2 minutes by default), so such a session is over,
        its end unlogged or lost. Without this, one such session would stay in the table for good."""
        sessions = self._sessions
        for key in [key for key, session in sessions.items() if session.seen < oldest]:
            del sessions[key]
        for pid in [pid for pid, key in self._by_pid.items() if key not in sessions]:
            del self._by_pid[pid]
        for pid in [pid for pid, seen in self._kex_failed.items() if seen < oldest]:
            del self._kex_failed[pid]

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
            return self.auth(m["verdict"], m["method"], m["user"], m["addr"], m["port"], pid)
        if head in ("Conn", "Disc", "Time", "Rece", "maxi", "ssh_"):
            return self._ending(msg, pid, preauth)
        if head in ("Inva", "Ille", "User"):
            m = INVALID.fullmatch(msg) or NOT_ALLOWED.fullmatch(msg)
            if m is not None:
                self.invalid(m["user"], m["addr"], m["port"], pid)
            return None
        if head == "kex_":
            # the close that follows (same pid; bare ``sshd -E`` lines have none) is the probe's own line
            self._kex_failed[pid or 0] = self.generation
            if len(self._kex_failed) > MAX_SESSIONS:
                self._kex_failed.clear()
            return None
        for pattern in PROBES:
            m = pattern.fullmatch(msg)
            if m is not None:
                return self.probe(m["addr"], m["port"], pid)
        return None

    def auth(self, verdict: str, method: str, user: str, addr: str, port: str | None,
             pid: int | None) -> Attempt | None:
        """``Failed``/``Accepted METHOD for [invalid user] USER from ADDR [port PORT]``: the attempt (none for
        method ``none``, the client asking which methods exist)."""
        session = self._session(addr, port, pid)
        name = user or None
        session.user = name
        if method == "none":
            return None
        session.emitted = True
        return Attempt(SERVICE, "success" if verdict == "Accepted" else "failure", name, normalize_ip(addr),
                       parse_port(port), method)

    def invalid(self, user: str, addr: str, port: str | None, pid: int | None) -> None:
        """``Invalid user USER from ADDR`` (or ``not allowed``): no attempt, but the session's user name."""
        self._session(addr, port, pid).user = user or None

    def closed(self, kind: str | None, user: str | None, addr: str, port: str | None, pid: int | None,
               preauth: bool, keep: bool = False) -> Attempt | None:
        """A close, disconnect or reset, of ``kind`` (``authenticating user``, ``invalid user``, ``user`` or
        None when the line names no user): an attempt when it ends a session before authentication that
        showed none yet. ``keep``: the session lives on (``ssh_dispatch_run_fatal`` precedes the close)."""
        if kind == "user":  # after authentication: a session's normal end
            self._forget(addr, port, pid)
            return None
        name = user or None if kind else None
        kex = (pid or 0) in self._kex_failed
        if not (name or preauth or kex or self._session(addr, port, pid).user):
            self._forget(addr, port, pid)  # no sign this close was before authentication: not an attempt
            return None
        if kex:
            self._kex_failed.pop(pid or 0, None)
        attempt = self._once(addr, port, pid, "failure" if name else "probe", name)
        if not keep:
            self._forget(addr, port, pid)
        return attempt

    def received(self, addr: str, port: str | None, pid: int | None, preauth: bool) -> Attempt | None:
        """``Received disconnect from ADDR: N: reason``: a probe when before authentication (and the session
        showed nothing); after it, a session's normal end, which changes nothing."""
        return self._once(addr, port, pid, "probe", None) if preauth else None

    def probe(self, addr: str, port: str | None, pid: int | None) -> Attempt | None:
        """A pre-authentication probe (no identification, ``Unable to negotiate``, a bad banner), once per
        session."""
        return self._once(addr, port, pid, "probe", None)

    def _ending(self, msg: str, pid: int | None, preauth: bool) -> Attempt | None:
        m = CONNECTION.fullmatch(msg)
        if m is not None:  # a new session on this address and port: forget an older one
            addr, port = m.group("addr", "port")
            self._sessions.pop(self._key(addr, port, pid), None)
            self._session(addr, port, pid)
            return None
        m = MAXTRIES.fullmatch(msg)
        if m is not None:
            return self._once(m["addr"], m["port"], pid, "failure", m["user"] or None)
        for pattern in (CLOSED, DISCONNECTING, DISPATCH):
            m = pattern.fullmatch(msg)
            if m is not None:
                return self.closed(m["kind"], m["user"], m["addr"], m["port"], pid, preauth, pattern is DISPATCH)
        m = TIMEOUT.fullmatch(msg)
        if m is not None:
            return self._once(m["addr"], m["port"], pid, "probe", None)
        m = RECEIVED.fullmatch(msg)
        if m is not None:
            return self.received(m["addr"], m["port"], pid, preauth)
        return None

    def _once(self, addr: str, port: str | None, pid: int | None, outcome: Outcome,
              user: str | None) -> Attempt | None:
        """An attempt for a session-ending line, unless the session already gave one."""
        session = self._session(addr, port, pid)
        if session.emitted:
            return None
        session.emitted = True
        user = user or session.user
        if user is not None and outcome == "probe":
            outcome = "failure"  # a user name was sent: an attempt to log in, not a scan
        return Attempt(SERVICE, outcome, user, normalize_ip(addr), parse_port(port), None)

    def _key(self, addr: str, port: str | None, pid: int | None) -> SessionKey:
        if port is None and pid is not None:
            return self._by_pid.get(pid) or (addr, None)
        return (addr, port)

    def _session(self, addr: str, port: str | None, pid: int | None) -> _Session:
        if port is None:
            key = self._key(addr, port, pid)
        else:
            key = (addr, port)
            if pid is not None:
                by_pid = self._by_pid
                by_pid[pid] = key
                if len(by_pid) > MAX_SESSIONS:
                    by_pid.popitem(last=False)
        sessions = self._sessions
        session = sessions.get(key)
        if session is None:
            session = sessions[key] = _Session(None, False, self.generation)
            if len(sessions) > MAX_SESSIONS:
                sessions.popitem(last=False)
        else:
            session.seen = self.generation
        return session

    def _forget(self, addr: str, port: str | None, pid: int | None) -> None:
        self._sessions.pop(self._key(addr, port, pid), None)
        if pid is not None:
            self._by_pid.pop(pid, None)
