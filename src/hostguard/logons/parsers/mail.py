"""Mail servers: dovecot (IMAP/POP3/submission/ManageSieve logins) and postfix SMTP AUTH (SASL).

* dovecot's login processes write one line when a connection ends before or at login:
  ``imap-login: Login: user=<U>, method=PLAIN, rip=A, ...`` is a **success**;
  ``imap-login: Disconnected (auth failed, N attempts in S secs): user=<U>, method=M, rip=A, ...`` (2.2),
  ``Disconnected: Connection closed (auth failed, ...)`` and ``Login aborted: ... (auth failed, ...)`` (2.3)
  are a **failure** standing for N attempts (``count``: dovecot sums them up on this one line);
  ``tried to use disallowed/disabled plaintext auth`` and ``client didn't finish SASL auth`` are one
  failure; ``no auth attempts`` and ``disconnected before auth was ready`` are a **probe** (a connection —
  often a TLS scanner — that never tried a password). The ``auth:``/``auth-worker`` lines (``Password
  mismatch``, ``unknown user``) are only written with ``auth_verbose=yes`` and repeat what the login line
  says: no event. ``method`` is the SASL mechanism, lower-case (``plain``, ``login``, ``cram-md5``, ...).
* postfix ``smtpd`` (also ``postfix/submission/smtpd`` and other instance names):
  ``warning: NAME[A]: SASL LOGIN authentication failed: reason`` is a **failure** (the user is only known
  from postfix 3.? on, ``, sasl_username=U``); a failure whose reason is ``Connection lost to authentication
  server`` is the server's fault, not the client's, and is no event. ``QUEUEID: client=NAME[A], sasl_method=M,
  sasl_username=U`` is a **success**. ``method`` is the SASL mechanism, lower-case.
"""

from __future__ import annotations

import re

from hostguard.logons.addresses import normalize_ip, parse_port
from hostguard.logons.events import Attempt, Outcome

DOVECOT = re.compile(r"(?P<proto>[a-z0-9]+)-login: (?P<rest>.*)", re.S)
DOVECOT_USER = re.compile(r"(?:^|[:,] )user=<(?P<user>.*?)>,")
DOVECOT_METHOD = re.compile(r", method=(?P<method>[A-Za-z0-9_-]+)")
DOVECOT_RIP = re.compile(r", rip=(?P<rip>[0-9A-Fa-f:.]+)")
DOVECOT_RPORT = re.compile(r", rport=(?P<rport>\d+)")
DOVECOT_FAILED = re.compile(r"\(auth failed, (?P<n>\d+) attempts?(?: in \d+ secs?)?\)")
DOVECOT_END = ("Disconnected", "Aborted login", "Login aborted")
DOVECOT_ONE_FAILURE = ("plaintext auth", "didn't finish SASL auth")
DOVECOT_PROBE = ("no auth attempts", "before auth was ready")
POSTFIX_FAIL = re.compile(r"warning: (?P<host>[^\[\s]*)\[(?P<addr>[^\]\s]*)\](?::(?P<port>\d+))?: "
                          r"SASL (?P<mech>[A-Za-z0-9_-]+) authentication failed: "
                          r"(?P<reason>.*?)(?:, sasl_username=(?P<user>.*))?", re.S)
POSTFIX_OK = re.compile(r"[0-9A-Za-z]+: client=(?P<host>[^\[\s]*)\[(?P<addr>[^\]\s]*)\](?::(?P<port>\d+))?, "
                        r"sasl_method=(?P<mech>[A-Za-z0-9_-]+), sasl_username=(?P<user>.*?)(?:, sasl_sender=.*)?", re.S)
SERVER_FAULT = "Connection lost to authentication server"


def parse_dovecot(message: str) -> Attempt | None:
    """A dovecot message (``imap-login: ...``; the ``dovecot:`` ident is the program)."""
    m = DOVECOT.fullmatch(message)
    if m is None:
        return None
    rest = m["rest"]
    outcome: Outcome
    count = 1
    if rest.startswith("Login: "):
        outcome = "success"
        fields = rest
    elif rest.startswith(DOVECOT_END):
        # the verdict is in the parentheses before the first ": user=<...>" field list
        cut = rest.find(": user=<")
        head, fields = (rest[:cut], rest[cut:]) if cut >= 0 else (rest, "")
        failed = DOVECOT_FAILED.search(head)
        if failed is not None:
            outcome, count = "failure", int(failed["n"])
            if count < 1:
                return None
        elif any(k in head for k in DOVECOT_ONE_FAILURE):
            outcome = "failure"
        elif any(k in head for k in DOVECOT_PROBE):
            outcome = "probe"
        else:
            return None
    else:
        return None
    rip = DOVECOT_RIP.search(fields)
    if rip is None:
        return None  # a local (unix socket) login: no client to speak of
    user = DOVECOT_USER.search(fields)
    method = DOVECOT_METHOD.search(fields)
    rport = DOVECOT_RPORT.search(fields)
    return Attempt("dovecot", outcome, (user["user"] or None) if user else None, normalize_ip(rip["rip"]),
                   parse_port(rport["rport"]) if rport else None, method["method"].lower() if method else None, count)


def parse_postfix(message: str) -> Attempt | None:
    """A postfix smtpd message about SASL authentication."""
    if "SASL" in message and message.startswith("warning: "):
        m = POSTFIX_FAIL.fullmatch(message)
        if m is None or m["reason"].startswith(SERVER_FAULT):
            return None
        return Attempt("postfix", "failure", m["user"] or None, normalize_ip(m["addr"]), parse_port(m["port"]),
                       m["mech"].lower())
    if "sasl_username=" in message:
        m = POSTFIX_OK.fullmatch(message)
        if m is None:
            return None
        return Attempt("postfix", "success", m["user"] or None, normalize_ip(m["addr"]), parse_port(m["port"]),
                       m["mech"].lower())
    return None
