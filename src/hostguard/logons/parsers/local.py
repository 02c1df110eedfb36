"""Local logons: su, sudo and login (console, serial, telnet).

* su (util-linux): ``FAILED SU (to T) U on TTY`` is a **failure**, ``(to T) U on TTY`` a **success**; the
  event's ``user`` is T, the account logged into (whose password was asked). shadow's su: ``FAILED su for T
  by U`` / ``Successful su for T by U``. Method ``password``, no ``ip`` (a local logon).
* sudo: ``U : N incorrect password attempts ; TTY=...`` is one **failure** line standing for N attempts
  (``count``), written when sudo gives up; ``user`` is U, whose own password sudo asks. A sudo command line
  (``U : TTY=... ; COMMAND=...``) is no event: with cached credentials no password was asked, so it does not
  show a logon.
* login: ``FAILED LOGIN (N) on 'TTY' [from 'HOST'] FOR 'U', reason`` (shadow) and ``FAILED LOGIN N ON|FROM
  ... FOR U, reason`` (util-linux) are a **failure** each (N is login's running number, not a count);
  ``ROOT LOGIN on 'TTY'`` (shadow: it logs successes of root only) and ``LOGIN ON TTY BY U [FROM HOST]``
  (util-linux) are a **success**. login writes ``UNKNOWN`` for a name that is no account (so a password
  typed as the name is not logged): ``user`` is then null. ``TOO MANY LOGIN TRIES`` sums up failures
  already logged: no event.
"""

from __future__ import annotations

import re

from hostguard.logons.addresses import normalize_ip
from hostguard.logons.events import Attempt

SU_FAILED = re.compile(r"FAILED SU \(to (?P<to>.*)\) (?P<by>\S*) on (?P<tty>\S+)", re.S)
SU_OK = re.compile(r"\(to (?P<to>.*)\) (?P<by>\S*) on (?P<tty>\S+)", re.S)
SHADOW_SU = re.compile(r"(?P<verdict>FAILED|Successful) su for (?P<to>.*) by (?P<by>\S*)", re.S)
SUDO_FAILED = re.compile(r"\s*(?P<user>\S+) : (?:[^;]* ; )?(?P<n>\d+) incorrect password attempts? ; .*", re.S)
LOGIN_FAILED = re.compile(r"FAILED LOGIN \(?\d+\)?(?: (?:on|ON) '?(?P<tty>[^' ]*)'?)?"
                          r"(?: (?:from|FROM) '?(?P<host>[^' ]*)'?)? FOR '?(?P<user>.*?)'?, .*", re.S)
LOGIN_ROOT = re.compile(r"ROOT LOGIN +(?:on|ON) '?(?P<tty>[^' ]*)'?(?: (?:from|FROM) '?(?P<host>[^' ]*)'?)?", re.S)
LOGIN_OK = re.compile(r"LOGIN ON (?P<tty>\S+) BY (?P<user>\S+)(?: FROM (?P<host>\S+))?", re.S)
UNKNOWN = "UNKNOWN"


def parse_su(message: str) -> Attempt | None:
    """An su message."""
    m = SU_FAILED.fullmatch(message)
    if m is not None:
        return Attempt("su", "failure", m["to"] or None, None, None, "password")
    m = SHADOW_SU.fullmatch(message)
    if m is not None:
        return Attempt("su", "failure" if m["verdict"] == "FAILED" else "success", m["to"] or None, None, None, "password")
    if message.startswith("(to "):
        m = SU_OK.fullmatch(message)
        if m is not None:
            return Attempt("su", "success", m["to"] or None, None, None, "password")
    return None


def parse_sudo(message: str) -> Attempt | None:
    """A sudo message: only its give-up line of wrong passwords is an attempt."""
    if "incorrect password attempt" not in message:
        return None
    m = SUDO_FAILED.fullmatch(message)
    if m is None or int(m["n"]) < 1:
        return None
    return Attempt("sudo", "failure", m["user"], None, None, "password", int(m["n"]))


def parse_login(message: str) -> Attempt | None:
    """A login message."""
    m = LOGIN_FAILED.fullmatch(message)
    if m is not None:
        user = m["user"]
        return Attempt("login", "failure", None if user in ("", UNKNOWN) else user, _ip(m["host"]), None, "password")
    m = LOGIN_ROOT.fullmatch(message)
    if m is not None:
        return Attempt("login", "success", "root", _ip(m["host"]), None, "password")
    m = LOGIN_OK.fullmatch(message)
    if m is not None:
        return Attempt("login", "success", m["user"], _ip(m["host"]), None, "password")
    return None


def _ip(host: str | None) -> str | None:
    return normalize_ip(host) if host else None
