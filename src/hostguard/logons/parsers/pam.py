"""PAM's own lines (``pam_unix(SERVICE:auth): authentication failure; ... rhost=A user=U`` and
``PAM N more authentication failures; ...``), written by whichever daemon loaded the module.

Whether such a line is an attempt depends on the daemon, which is data (``data/logons/services.toml``):

* daemons that log their own line for every attempt on the same stream (sshd, login, su, sudo, dovecot,
  proftpd, ...): the PAM line is **not** an event — the daemon's line is, and counting both would double
  every threshold. The PAM line comes *before* the daemon's own (PAM answers, then the daemon logs the
  verdict), so the pairing cannot wait for the second line: it is decided by service.
* daemons whose own log goes elsewhere by default (vsftpd writes ``/var/log/vsftpd.log``): in auth.log
  and the journal the PAM line is the attempt, a **failure** of ``password``. ``N more authentication
  failures`` is pam_unix's summary of the attempts after the first on one PAM handle, which it did not
  log one by one: it stands for N attempts (``count``).
* any other PAM service: not an event (hostguard does not know whether its daemon logs its own line).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hostguard.logons.addresses import normalize_ip
from hostguard.logons.events import Attempt

FAILURE = re.compile(r"pam_\w+\((?P<svc>[^:()]+):auth\): (?:(?P<more>\d+) more )?authentication failures?; (?P<kv>.*)", re.S)
MORE = re.compile(r"PAM (?P<more>\d+) more authentication failures?; (?P<kv>.*)", re.S)
# pam_unix writes "... ruser=R rhost=H  user=U", user last. R and U are client-chosen (vsftpd sets both to the
# login name), so " user=" or " rhost=" may appear inside them: see _host_and_user
CANDIDATES = 16  # " rhost=" places tried for the split that makes R equal U (the work stays linear)
RHOST = re.compile(r"(?:^| )rhost=(?P<rhost>\S*)")
USER = re.compile(r"  ?user=(?P<user>.*)$", re.S)


class PamParser:
    """PAM authentication-failure lines, given the service table."""

    def __init__(self, services: Mapping[str, str], own_lines: frozenset[str]) -> None:
        self.services = dict(services)
        self.own_lines = own_lines

    def parse(self, message: str, program: str) -> Attempt | None:
        """The attempt a PAM line stands for, if its service is one whose PAM lines count."""
        m = FAILURE.match(message)
        if m is not None:
            pam_service = m["svc"]
        else:
            m = MORE.match(message)
            if m is None:
                return None
            pam_service = program
        service = self.services.get(pam_service)
        if service is None or pam_service in self.own_lines:
            return None
        count = int(m["more"]) if m["more"] else 1
        if count < 1:
            return None
        host, user = _host_and_user(m["kv"])
        return Attempt(service, "failure", user, normalize_ip(host) if host else None, None, "password", count)


def _host_and_user(kv: str) -> tuple[str | None, str | None]:
    """``rhost`` and ``user`` of pam_unix's key=value text. Where R equals U (vsftpd), the " rhost=" that makes
    them equal is the true one; otherwise the first after "ruser=" (H, a host, has no spaces). Text not in
    pam_unix's order: each key where it first appears."""
    start = kv.find("ruser=")
    if start < 0 or (start and kv[start - 1] != " "):
        found, named = RHOST.search(kv), USER.search(kv)
        return (found and found["rhost"]) or None, _user(named and named["user"])
    rest = kv[start + 6:]
    first: tuple[str, str | None] | None = None
    at = rest.find(" rhost=")
    for _ in range(CANDIDATES):
        if at < 0:
            break
        after = rest[at + 7:]
        space = after.find(" ")
        host, tail = (after, "") if space < 0 else (after[:space], after[space:])
        user = tail[7:] if tail.startswith("  user=") else tail[6:] if tail.startswith(" user=") else None
        if first is None:
            first = (host, user)
        if user == rest[:at]:
            return host or None, _user(user)
        at = rest.find(" rhost=", at + 1)
    if first is None:
        first = ("", None)
    if first[1] is None:  # user= not right after rhost: where it first appears
        named = USER.search(kv)
        first = (first[0], named and named["user"])
    return first[0] or None, _user(first[1])


def _user(text: str | None) -> str | None:
    return (text.strip() or None) if text is not None else None
