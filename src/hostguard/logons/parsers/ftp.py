"""FTP servers: vsftpd, proftpd and pure-ftpd.

* vsftpd (its own ``vsftpd.log``, or syslog with ``syslog_enable=YES``): ``[U] FAIL LOGIN: Client "A"`` is a
  **failure**, ``[U] OK LOGIN: Client "A"`` a **success**; method ``password``, or ``anonymous`` when vsftpd
  adds ``anon password``. ``CONNECT: Client`` is a connection, not an attempt: no event. vsftpd prints IPv4
  clients of a dual-stack listener as ``::ffff:192.0.2.7``; the address is canonicalised.
* proftpd (syslog, or its ``SystemLog``): ``USER U (Login failed): reason`` and ``USER U: no such user found``
  are **failures**, ``USER U: Login successful.`` a **success** (``password``), ``ANON U: Login successful.``
  a success (``anonymous``). ``Maximum login attempts (N) exceeded`` only sums up the failures already
  logged: no event. The client is the ``(name[address])`` proftpd puts before the message.
* pure-ftpd (syslog): ``(?@A) [WARNING] Authentication failed for user [U]`` is a **failure**,
  ``(?@A) [INFO] U is now logged in`` a **success** (``password``). ``A`` is a host name when pure-ftpd
  resolves names: the event then has no ``ip``.

The user names are attacker-chosen text: every pattern anchors on what the *server* prints after them,
taking the last match, so a name containing ``OK LOGIN`` or ``is now logged in`` cannot forge a verdict.
"""

from __future__ import annotations

import re

from hostguard.logons.addresses import normalize_ip
from hostguard.logons.events import Attempt

VSFTPD = re.compile(r'(?:\[(?P<user>.*)\] )?(?P<verdict>OK|FAIL) LOGIN: Client "(?P<addr>[^"]*)"'
                    r'(?P<anon>, anon password ".*")?', re.S)
PROFTPD_CLIENT = re.compile(r"\S+ \((?P<host>[^\[\s]*)\[(?P<addr>[^\]\s]*)\]\)(?::| -) (?P<rest>.*)", re.S)
PROFTPD = (
    (re.compile(r"USER (?P<user>.*) \(Login failed\): .*", re.S), "failure", "password"),
    (re.compile(r"USER (?P<user>.*): no such user found from .*", re.S), "failure", "password"),
    (re.compile(r"USER (?P<user>.*): Login successful\.?", re.S), "success", "password"),
    (re.compile(r"ANON (?P<user>.*): Login successful\.?", re.S), "success", "anonymous"),
)
PURE = re.compile(r"\((?P<who>.*?)@(?P<addr>[^)@\s]*)\) \[(?P<level>[A-Z]+)\] (?P<rest>.*)", re.S)
PURE_FAILED = re.compile(r"Authentication failed for user \[(?P<user>.*)\]", re.S)
PURE_OK = re.compile(r"(?P<user>.*) is now logged in", re.S)


def parse_vsftpd(message: str) -> Attempt | None:
    """A vsftpd log message (after the ``[pid N]`` of its own file, or a syslog message)."""
    if "LOGIN: Client" not in message:
        return None
    m = VSFTPD.fullmatch(message)
    if m is None:
        return None
    method = "anonymous" if m["anon"] else "password"
    return Attempt("vsftpd", "success" if m["verdict"] == "OK" else "failure", m["user"] or None,
                   normalize_ip(m["addr"]), None, method)


def parse_proftpd(message: str) -> Attempt | None:
    """A proftpd message: ``vhost (name[address]) - rest`` (syslog) or ``vhost (name[address]): rest`` (SystemLog)."""
    m = PROFTPD_CLIENT.fullmatch(message)
    if m is None:
        return None
    rest = m["rest"]
    if not rest.startswith(("USER ", "ANON ")):
        return None
    for pattern, outcome, method in PROFTPD:
        hit = pattern.fullmatch(rest)
        if hit is not None:
            return Attempt("proftpd", outcome, hit["user"] or None, normalize_ip(m["addr"]), None, method)  # type: ignore[arg-type]
    return None


def parse_pure_ftpd(message: str) -> Attempt | None:
    """A pure-ftpd syslog message ``(user@client) [LEVEL] text``."""
    if not message.startswith("("):
        return None
    m = PURE.fullmatch(message)
    if m is None:
        return None
    rest = m["rest"]
    hit = PURE_FAILED.fullmatch(rest)
    if hit is not None:
        return Attempt("pure-ftpd", "failure", hit["user"] or None, normalize_ip(m["addr"]), None, "password")
    hit = PURE_OK.fullmatch(rest)
    if hit is not None and m["level"] == "INFO":
        return Attempt("pure-ftpd", "success", hit["user"] or None, normalize_ip(m["addr"]), None, "password")
    return None
