"""Database servers: MySQL/MariaDB and PostgreSQL.

* MySQL/MariaDB (error log, general query log, or syslog/journal): ``Access denied for user 'U'@'H' (using
  password: YES)`` is a **failure** of ``password``; ``(using password: NO)`` a failure of ``none`` (a client
  that sent no password: a scan for open accounts). ``H`` is an address or a host name (``localhost``, a
  resolved name: no ``ip``). MySQL writes it at ``log_error_verbosity=3`` (8.0) and MariaDB with
  ``log_warnings>=2`` (its default); the general query log writes it too (``Connect  Access denied ...``).
  Successes are not events: the error log has none, and the general log's ``Connect U@H on DB using
  TCP/IP`` is written *before* authentication ends (a denied login has it too, followed by ``Access
  denied`` on the same thread), so it proves no logon.
* PostgreSQL (server log, any ``log_line_prefix`` that starts with ``%m [%p]``): ``FATAL:  password
  authentication failed for user "U"`` is a **failure** of ``password`` (PostgreSQL says ``password`` for
  md5 and scram-sha-256 alike); the other ``FATAL:  X authentication failed`` (``ident``, ``peer``, ``ldap``,
  ``pam``, ``radius``, ``cert``) are failures of method ``x``; ``FATAL:  no pg_hba.conf entry for host "A",
  user "U", ...`` is a failure with method null (a login refused before any password: what a scanner
  meets). ``LOG:  connection authorized: user=U ...`` (``log_connections=on``) is a **success**, with the
  method of the ``connection authenticated: ... method=M`` line of the same backend when there is one.
  The client's address is not in the default prefix: it comes from the backend's ``connection received:
  host=A port=P`` line (``log_connections=on``), remembered per backend pid.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from hostguard.logons.addresses import normalize_ip, parse_port
from hostguard.logons.events import Attempt

MYSQL_DENIED = re.compile(r"Access denied for user '(?P<user>.*)'@'(?P<host>[^']*)' \(using password: (?P<pw>YES|NO)\)")
PG_RECEIVED = re.compile(r"LOG:  connection received: host=(?P<host>\S+)(?: port=(?P<port>\d+))?")
PG_AUTHENTICATED = re.compile(r"LOG:  connection authenticated: .*method=(?P<method>[\w-]+)")
PG_AUTHORIZED = re.compile(r"LOG:  (?:replication )?connection authorized: user=(?P<user>\S+)")
PG_FAILED = re.compile(r'FATAL:  (?P<method>[A-Za-z]+) authentication failed for user "(?P<user>.*)"', re.S)
PG_HBA = re.compile(r'FATAL:  no pg_hba\.conf entry for (?:replication connection from )?host "(?P<host>[^"]*)", '
                    r'user "(?P<user>.*?)", ', re.S)
MAX_BACKENDS = 8192
NO_CLIENT: tuple[str | None, int | None, str | None, int] = (None, None, None, 0)


def parse_mysql(message: str) -> Attempt | None:
    """A MySQL/MariaDB log message (error log line after its stamp, or a syslog message)."""
    if "Access denied" in message:
        m = MYSQL_DENIED.search(message)
        if m is None:
            return None
        return Attempt("mysql", "failure", m["user"] or None, normalize_ip(m["host"]), None,
                       "password" if m["pw"] == "YES" else "none")
    return None


class PostgresParser:
    """PostgreSQL server-log messages; remembers each backend's client address (see module doc)."""

    def __init__(self) -> None:
        # pid: (address, port, method, the generation of its last line: see StreamParser.sweep)
        self._clients: OrderedDict[int, tuple[str | None, int | None, str | None, int]] = OrderedDict()
        self.generation = 0

    def state(self) -> tuple[object, ...]:
        """Everything this parser remembers, in order (the table's order is its eviction order)."""
        return tuple(self._clients.items())

    def sweep(self, oldest: int) -> None:
        """Forget backends last heard of before generation ``oldest`` (a connection that never
        authenticated: authentication_timeout ends it within a minute by default)."""
        for pid in [pid for pid, client in self._clients.items() if client[3] < oldest]:
            del self._clients[pid]

    def parse(self, message: str, pid: int | None) -> Attempt | None:
        """The attempt a message (after ``%m [%p]``) carries, if any."""
        if "LOG:  " in message:
            m = PG_RECEIVED.search(message)
            if m is not None:
                if pid is not None:
                    self._remember(pid, normalize_ip(m["host"]), parse_port(m["port"]), None)
                return None
            m = PG_AUTHENTICATED.search(message)
            if m is not None:
                if pid is not None:
                    ip, port, _, _ = self._clients.get(pid, NO_CLIENT)
                    self._remember(pid, ip, port, m["method"].lower())
                return None
            m = PG_AUTHORIZED.search(message)
            if m is not None:
                ip, port, method, _ = self._clients.pop(pid, NO_CLIENT) if pid is not None else NO_CLIENT
                return Attempt("postgresql", "success", m["user"] or None, ip, port, method)
            return None
        if "FATAL:  " not in message:
            return None
        ip, port, _, _ = self._clients.pop(pid, NO_CLIENT) if pid is not None else NO_CLIENT
        m = PG_FAILED.search(message)
        if m is not None:
            return Attempt("postgresql", "failure", m["user"] or None, ip, port, m["method"].lower())
        m = PG_HBA.search(message)
        if m is not None:
            return Attempt("postgresql", "failure", m["user"] or None, normalize_ip(m["host"]) or ip, port, None)
        return None

    def _remember(self, pid: int, ip: str | None, port: int | None, method: str | None) -> None:
        self._clients[pid] = (ip, port, method, self.generation)
        self._clients.move_to_end(pid)
        if len(self._clients) > MAX_BACKENDS:
            self._clients.popitem(last=False)
