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
        kv = m["kv"]
        rhost = RHOST.search(kv)
        user = USER.search(kv)
        ip = normalize_ip(rhost["rhost"]) if rhost and rhost["rhost"] else None
        count = int(m["more"]) if m["more"] else 1
        if count < 1:
            return None
        return Attempt(service, "failure", (user["user"].strip() or None) if user else None, ip, None, "password", count)
