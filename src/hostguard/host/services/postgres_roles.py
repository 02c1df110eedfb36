"""PostgreSQL role passwords as each cluster stores them (``pg_authid``), read over the owner's peer login.

The online probe only guesses the superuser; every other role is unknown to it. The stored verifiers are the
better source: SCRAM-SHA-256 verifiers and md5 hashes can be cracked offline by the shared cracker, with the
same guesses and budget as /etc/shadow, and nothing is tried against the server.

How it is read: Debian (and most distributions) configure ``local all postgres peer``, the server's own
administration path. hostguard runs as root and connects to the cluster's unix socket *as the account that
owns the data directory* (:func:`hostguard.probes.peer.connect_as`), once per cluster; no password is sent.
Before connecting, the socket file must belong to that account too, and after connecting the server at the
other end must run as it (``SO_PEERCRED``): a socket planted in a shared directory such as ``/tmp`` is never
logged into. A cluster whose pg_hba does not allow this, or that is not running, is one line in ``problems``
(reported as not checked), never an exception that loses the other clusters.

Only roles that can log in and have a password are read, and a password past ``rolvaliduntil`` is left out:
the server refuses it (``VALID UNTIL``), so it cannot be a weak password in use. Values are given as the
verifiers read them: SCRAM verifiers as stored, md5 tagged with the role name (its salt), anything else (only
pre-10 servers kept passwords unhashed) as plain text.
"""

from __future__ import annotations

import pwd
from dataclasses import dataclass

from hostguard.engine.facts import Fact
from hostguard.findings import SkipReason
from hostguard.host.base import Host, HostError, Unavailable
from hostguard.host.services.configured import SERVICES, Services
from hostguard.host.services.postgres import PostgresConfig
from hostguard.host.services.stored import StoredCredential, StoredCredentials
from hostguard.passwords.services_verifiers import tagged
from hostguard.probes.base import Endpoint
from hostguard.probes.peer import connect_as, peer_credentials
from hostguard.probes.postgres import QueryError, SimpleQueryClient

SERVICE = "PostgreSQL"
# Roles that can log in with a password that still works; the server compares rolvaliduntil with its own clock,
# so the comparison is made there too (no date parsing, no clock skew between us and it).
QUERY = ("SELECT rolname, rolpassword FROM pg_authid WHERE rolcanlogin AND rolpassword IS NOT NULL "
         "AND (rolvaliduntil IS NULL OR rolvaliduntil >= now()) ORDER BY rolname")
# "postgres" is where an admin connects; a cluster without it still has template1 (pg_authid is shared).
DATABASES = ("postgres", "template1")
_NO_DATABASE = "3D000"
TIMEOUT = 10.0


@dataclass(frozen=True)
class _Owner:
    uid: int
    gid: int
    name: str


def as_verifier(role: str, stored: str) -> tuple[str, bool]:
    """``rolpassword`` in the form the service verifier reads, and whether it is the password in clear.

    The server's own test (``get_password_type``): ``md5`` followed by 32 lower-case hex digits is md5 (salted
    with the role name, hence the tag), a ``SCRAM-SHA-256$`` string is SCRAM, anything else was stored as given.
    """
    if stored == "":
        return "", False
    if stored.startswith("SCRAM-SHA-256$"):
        return stored, False
    if len(stored) == 35 and stored.startswith("md5") and all(c in "0123456789abcdef" for c in stored[3:]):
        return tagged(stored, "pg-md5", user=role), False
    return tagged(stored, "plain"), True


def data_directory(record: PostgresConfig) -> str:
    """The cluster's data directory: ``data_directory`` when the configuration names it (Debian's
    /etc/postgresql layout), else the directory of postgresql.conf (initdb's layout)."""
    setting = record.get("data_directory")
    if setting is not None and setting.value:
        return setting.value
    return record.config.rsplit("/", 1)[0] or "/"


def sockets(record: PostgresConfig) -> tuple[str, ...]:
    """The cluster's unix socket files, in ``unix_socket_directories`` order (relative directories and
    abstract names, which have no file to check the owner of, are left out)."""
    return tuple(item.address for item in record.listening.listens
                 if item.proto == "unix" and item.address.startswith("/"))


def _owner(host: Host, data_dir: str) -> _Owner:
    """The account that owns the data directory (the server runs as it: postgres refuses otherwise)."""
    uid = host.stat(data_dir).uid
    if uid == 0:
        raise HostError(f"data directory {data_dir} is owned by root, not by a PostgreSQL account: not read")
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        raise HostError(f"data directory {data_dir} is owned by uid {uid}, which has no account: not read") from None
    return _Owner(uid, entry.pw_gid, entry.pw_name)


def read_roles(host: Host, record: PostgresConfig, timeout: float = TIMEOUT) -> tuple[StoredCredential, ...]:
    """The login roles' stored passwords of one running cluster; :class:`HostError` (one line) when they
    cannot be read."""
    data_dir = data_directory(record)
    owner = _owner(host, data_dir)
    present = [path for path in sockets(record) if host.exists(path)]
    if not present:
        listed = ", ".join(sockets(record)) or "none configured"
        raise HostError(f"no unix socket of the server ({listed}): is it running? not read")
    path = present[0]
    socket_uid = host.stat(path).uid
    if socket_uid != owner.uid:
        raise HostError(f"{path} belongs to uid {socket_uid}, not to the cluster owner {owner.name}: not connecting")
    source = f"pg_authid over {path}"
    rows: tuple[tuple[str | None, ...], ...] = ()
    for database in DATABASES:
        try:
            rows = _query(host.resolve(path), owner, database, timeout)
            break
        except QueryError as exc:
            if exc.code != _NO_DATABASE or database == DATABASES[-1]:
                said = str(exc) if str(exc).endswith("not read") else f"{exc}: not read"
                raise HostError(f"{source} as {owner.name}: {said}") from None
    out: list[StoredCredential] = []
    for row in rows:
        if len(row) != 2 or row[0] is None or row[1] is None:
            raise HostError(f"{source}: unexpected row shape from pg_authid")
        hashed, plain = as_verifier(row[0], row[1])
        out.append(StoredCredential(SERVICE, row[0], hashed, source, plain))
    return tuple(out)


def _query(path: str, owner: _Owner, database: str, timeout: float) -> tuple[tuple[str | None, ...], ...]:
    conn = connect_as(Endpoint.unix(path), owner.uid, owner.gid, timeout)
    client = SimpleQueryClient(conn, timeout)
    try:
        _, server_uid, _ = peer_credentials(conn)
        if server_uid != owner.uid:
            raise HostError(f"the server on {path} runs as uid {server_uid}, not as the cluster owner "
                            f"{owner.name}: not connecting")
        client.start(owner.name, database)
        return client.query(QUERY).rows
    finally:
        client.terminate()


def collect_postgres_roles(host: Host, services: Services) -> StoredCredentials:
    """Every configured cluster's login roles, each cluster read separately (live only: it needs the server)."""
    if not host.live:
        raise Unavailable(SkipReason.LIVE_ONLY, "PostgreSQL role passwords are read from the running server")
    found: list[StoredCredential] = []
    problems = [f"{SERVICE}: configuration not read ({why}): role passwords not read"
                for name, why in services.problems if name == SERVICE]
    for service in services.services:
        record = service.record
        if not isinstance(record, PostgresConfig):
            continue
        try:
            found += read_roles(host, record)
        except HostError as exc:
            problems.append(f"{SERVICE} {record.config}: {exc}")
    return StoredCredentials(tuple(found), tuple(problems))


POSTGRES_ROLES: Fact[StoredCredentials] = Fact("postgres_roles", collect_postgres_roles, inputs=(SERVICES,))
