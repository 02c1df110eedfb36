"""PostgreSQL role passwords read from a real cluster over the owner's peer login, and the simple-query client
that reads them: which roles come back, that the verifiers accept each role's real password (and the server
too), and what is said when the cluster cannot be read."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.host.base import Host, LiveHost, RootHost, Unavailable
from hostguard.host.services.configured import Service, Services
from hostguard.host.services.postgres import parse_cluster
from hostguard.host.services.postgres_roles import as_verifier, collect_postgres_roles
from hostguard.host.services.stored import StoredCredential
from hostguard.passwords.services_verifiers import service_verifier, split_tag
from hostguard.probes.base import Accepted, Endpoint, Refused
from hostguard.probes.peer import connect_as
from hostguard.probes.postgres import PostgresProber, QueryError, SimpleQueryClient, message, socket_path
from tests.conftest import need_root
from tests.host.services.helpers import free_port, running, wait_for
from tests.realservers import postgres_cluster

PASSWORDS = {                      # role -> its real password (each made by the server itself below)
    "scram_app": "scram-shadow-1",
    "md5_app": "md5-letmein-2",
    "Mixed Case rôle": "Ünïcode-md5-3",
    "valid_later": "future-scram-4",
}
OTHERS = """
CREATE ROLE nologin_role NOLOGIN PASSWORD 'nologin-pw';
CREATE ROLE expired_app LOGIN PASSWORD 'expired-pw' VALID UNTIL '2001-01-01';
CREATE ROLE nopass_app LOGIN;
"""
ROLES = f"""
CREATE ROLE scram_app LOGIN PASSWORD '{PASSWORDS["scram_app"]}';
CREATE ROLE valid_later LOGIN PASSWORD '{PASSWORDS["valid_later"]}' VALID UNTIL '2999-01-01';
{OTHERS}
SET password_encryption = 'md5';
CREATE ROLE md5_app LOGIN PASSWORD '{PASSWORDS["md5_app"]}';
CREATE ROLE "Mixed Case rôle" LOGIN PASSWORD '{PASSWORDS["Mixed Case rôle"]}';
"""
HBA_PEER = """\
local all postgres peer
local all md5_app,"Mixed Case rôle" md5
local all all scram-sha-256
"""
HBA_NO_PEER = {   # near misses: the owner's unix-socket login is not peer
    "password": "local all postgres scram-sha-256\nlocal all all scram-sha-256\n",
    "reject": "local all postgres reject\nlocal all all scram-sha-256\n",
}


@dataclass(frozen=True)
class Cluster:
    base: Path
    data: Path
    sock: str          # the socket file
    log: Path


def _as_postgres(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True)


def _owned(path: Path, text: str | None = None) -> Path:
    if text is not None:
        path.write_text(text)
    os.chown(path, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
    return path


def _reload(cluster: Cluster, hba: str) -> None:
    """Write pg_hba.conf and wait until the postmaster has re-read it (its own log line says so)."""
    seen = cluster.log.read_text(errors="replace").count("reloading configuration files")
    _owned(cluster.data / "pg_hba.conf", hba)
    postmaster = int((cluster.data / "postmaster.pid").read_text().split("\n", 1)[0])   # the server's own pid
    os.kill(postmaster, signal.SIGHUP)
    wait_for(lambda: cluster.log.read_text(errors="replace").count("reloading configuration files") > seen,
             what="the pg_hba reload")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A fresh cluster owned by the postgres account, reachable only on a unix socket in a temp directory; its
    postgresql.conf says where (so the reader finds it as on a real host), its pg_hba is HBA_PEER."""
    with postgres_cluster("hostguard-pgroles-") as base:
        sock_dir = base / "sock"
        sock_dir.mkdir()
        _owned(sock_dir)
        port = free_port()
        _owned(base / "data" / "postgresql.auto.conf",
               f"listen_addresses = ''\nport = {port}\nunix_socket_directories = '{sock_dir}'\n")
        log = base / "server.log"
        with running(["runuser", "-u", "postgres", "--", "postgres", "-D", str(base / "data")], log):
            sock = socket_path(str(sock_dir), port)
            wait_for(Path(sock).exists, what="postgres")
            done = _as_postgres(["psql", "-h", str(sock_dir), "-p", str(port), "-U", "postgres", "-d", "postgres",
                                 "-v", "ON_ERROR_STOP=1", "-q", "-c", ROLES])
            assert done.returncode == 0, done.stderr
            found = Cluster(base, base / "data", sock, log)
            _reload(found, HBA_PEER)
            yield found


def _service(config: Path, data: Path | None = None) -> Service:
    record = parse_cluster(Host("/"), str(config), None if data is None else str(data))
    return Service("PostgreSQL", record.config, record.listening, record.auth, record.notes, record)


def _read(*services: Service, problems: tuple[tuple[str, str], ...] = ()) -> tuple[list[StoredCredential],
                                                                                    list[str]]:
    found = collect_postgres_roles(LiveHost(), Services(tuple(services), problems))
    return list(found.credentials), list(found.problems)


def test_login_roles_with_a_working_password_are_read(cluster: Cluster) -> None:
    creds, problems = _read(_service(cluster.data / "postgresql.conf", cluster.data))
    assert problems == []
    # not nologin_role (cannot log in), expired_app (VALID UNTIL passed), nopass_app or postgres (no password)
    assert sorted(c.account for c in creds) == sorted(PASSWORDS)
    assert {c.service for c in creds} == {"PostgreSQL"}
    assert {c.source for c in creds} == {f"pg_authid over {cluster.sock}"}
    assert not any(c.plain_text for c in creds)
    verifier = service_verifier()
    for cred in creds:
        real = PASSWORDS[cred.account]
        assert verifier.verify(real.encode(), cred.hashed), cred.account
        assert not verifier.verify(b"not-" + real.encode(), cred.hashed), cred.account
        for other in set(PASSWORDS.values()) - {real}:
            assert not verifier.verify(other.encode(), cred.hashed), (cred.account, other)
    schemes = {c.account: verifier.scheme(c.hashed) for c in creds}
    assert schemes == {"scram_app": "pg-scram-sha-256", "valid_later": "pg-scram-sha-256",
                       "md5_app": "pg-md5", "Mixed Case rôle": "pg-md5"}
    [mixed] = [c for c in creds if c.account == "Mixed Case rôle"]
    assert split_tag(mixed.hashed)[0]["user"] == "Mixed Case rôle"      # the md5 salt is the role's name


@pytest.mark.parametrize("role", ["scram_app", "md5_app"])
def test_the_server_accepts_what_the_verifier_accepts(cluster: Cluster, role: str) -> None:
    """The same passwords log in for real (SCRAM and md5 lines of HBA_PEER): the reader read the live values."""
    prober = PostgresProber(Endpoint.unix(cluster.sock))
    assert prober.try_password(role, PASSWORDS[role]) == Accepted()
    assert prober.try_password(role, "not-" + PASSWORDS[role]) == Refused()


def test_expiry_is_the_servers_own(cluster: Cluster) -> None:
    """The expired role is left out because the server refuses its password, not by our guess."""
    prober = PostgresProber(Endpoint.unix(cluster.sock))
    assert prober.try_password("expired_app", "expired-pw") == Refused()


@pytest.mark.parametrize("variant", sorted(HBA_NO_PEER))
def test_near_miss_no_peer_login_for_the_owner_reads_nothing(cluster: Cluster, variant: str) -> None:
    _reload(cluster, HBA_NO_PEER[variant])
    try:
        creds, problems = _read(_service(cluster.data / "postgresql.conf", cluster.data))
    finally:
        _reload(cluster, HBA_PEER)
    config = cluster.data / "postgresql.conf"
    prefix = f"PostgreSQL {config}: pg_authid over {cluster.sock} as postgres: "
    said = {"password": "admin connection needs a password: not read",
            "reject": "admin connection refused: server said 28000: pg_hba.conf rejects connection for host "
                      '"[local]", user "postgres", database "postgres", no encryption: not read'}[variant]
    assert (creds, problems) == ([], [prefix + said])


def test_each_cluster_separately(cluster: Cluster, tmp_path: Path) -> None:
    """A second cluster that is not running, a third whose socket someone else made, and a configuration the
    services reader could not read: each is its own line, and the running cluster is still read."""
    owner = pwd.getpwnam("postgres")
    stopped = cluster.base / "stopped"
    squatted = cluster.base / "squatted"
    for other in (stopped, squatted):
        other.mkdir()
        _owned(other)
        os.chmod(other, 0o700)
        _owned(other / "pg_hba.conf", "local all postgres peer\n")
    _owned(stopped / "postgresql.conf", f"unix_socket_directories = '{stopped}'\nport = 5999\n")
    _owned(squatted / "postgresql.conf", f"unix_socket_directories = '{squatted}'\nport = 5998\n")
    planted = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)       # root's, not the cluster owner's
    planted.bind(str(squatted / ".s.PGSQL.5998"))
    planted.listen(1)
    try:
        creds, problems = _read(_service(stopped / "postgresql.conf"),
                                _service(cluster.data / "postgresql.conf", cluster.data),
                                _service(squatted / "postgresql.conf"),
                                problems=(("PostgreSQL", "/etc/postgresql/15/x/postgresql.conf:3: syntax error"),
                                          ("Redis", "not ours")))
    finally:
        planted.close()
        shutil.rmtree(stopped)
        shutil.rmtree(squatted)
    assert sorted(c.account for c in creds) == sorted(PASSWORDS)
    assert problems == [
        "PostgreSQL: configuration not read (/etc/postgresql/15/x/postgresql.conf:3: syntax error): "
        "role passwords not read",
        f"PostgreSQL {stopped}/postgresql.conf: no unix socket of the server ({stopped}/.s.PGSQL.5999): "
        "is it running? not read",
        f"PostgreSQL {squatted}/postgresql.conf: {squatted}/.s.PGSQL.5998 belongs to uid 0, not to the cluster "
        "owner postgres: not connecting",
    ]
    assert owner.pw_uid != 0


def test_root_owned_data_directory_is_not_a_cluster(tmp_path: Path) -> None:
    need_root("making a root-owned data directory")
    (tmp_path / "postgresql.conf").write_text(f"unix_socket_directories = '{tmp_path}'\n")
    (tmp_path / "pg_hba.conf").write_text("local all postgres peer\n")
    creds, problems = _read(_service(tmp_path / "postgresql.conf"))
    assert (creds, problems) == ([], [f"PostgreSQL {tmp_path}/postgresql.conf: data directory {tmp_path} is owned "
                                      "by root, not by a PostgreSQL account: not read"])


def test_under_root_it_is_live_only(tmp_path: Path) -> None:
    with pytest.raises(Unavailable) as err:
        collect_postgres_roles(RootHost(str(tmp_path)), Services(()))
    assert err.value.reason.value == "live_only"


# -- the stored value, as the verifier reads it ------------------------------------------------------------

def test_stored_forms() -> None:
    scram = ("SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$" + "A" * 42 + "=:" + "B" * 42 + "=")
    assert as_verifier("app", scram) == (scram, False)
    assert as_verifier("app", "md5" + "0" * 32) == ("{hg:scheme=pg-md5,user=app}md5" + "0" * 32, False)
    # upper-case hex is not md5 to the server either: it was stored as given (a pre-10 plain password)
    assert as_verifier("app", "md5" + "A" * 32) == ("{hg:scheme=plain}md5" + "A" * 32, True)
    assert as_verifier("app", "hunter2") == ("{hg:scheme=plain}hunter2", True)
    assert service_verifier().verify(b"hunter2", as_verifier("app", "hunter2")[0])
    assert as_verifier("app", "") == ("", False)


# -- the simple-query client on the real server ------------------------------------------------------------

def _admin(cluster: Cluster) -> SimpleQueryClient:
    owner = pwd.getpwnam("postgres")
    client = SimpleQueryClient(connect_as(Endpoint.unix(cluster.sock), owner.pw_uid, owner.pw_gid), timeout=10)
    client.start("postgres", "postgres")
    return client


def test_client_reads_nulls_text_and_errors_from_the_real_server(cluster: Cluster) -> None:
    client = _admin(cluster)
    try:
        result = client.query("SELECT NULL::text AS n, 'x''y' AS t, 42 AS i UNION ALL SELECT 'a', NULL, NULL")
        assert (result.columns, result.rows, result.command) == (
            ("n", "t", "i"), ((None, "x'y", "42"), ("a", None, None)), "SELECT 2")
        assert client.parameters["client_encoding"] == "UTF8"
        with pytest.raises(QueryError) as err:
            client.query("SELECT * FROM no_such_table")
        assert err.value.code == "42P01" and "no_such_table" in str(err.value)
        assert client.query("").rows == ()                                # EmptyQueryResponse
        assert client.query("SELECT 1").rows == (("1",),)                # still usable after an error
    finally:
        client.terminate()


# -- the simple-query client against garbage -----------------------------------------------------------------

def _feed(server_bytes: bytes, *, query: bool) -> None:
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(server_bytes)
        theirs.shutdown(socket.SHUT_WR)
        client = SimpleQueryClient(ours, timeout=2)
        if query:
            client.query("SELECT 1")
        else:
            client.start("postgres", "postgres")
    finally:
        ours.close()
        theirs.close()


def _msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


HANDSHAKE = _msg(b"R", struct.pack("!i", 0)) + _msg(b"S", b"a\0b\0") + _msg(b"K", b"\0" * 8) + _msg(b"Z", b"I")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048), st.booleans())
def test_random_server_bytes_raise_only_query_error(data: bytes, query: bool) -> None:
    try:
        _feed(data, query=query)
    except QueryError as exc:
        assert "\n" not in str(exc)


MESSAGE = st.tuples(st.sampled_from([b"R", b"S", b"K", b"Z", b"E", b"N", b"T", b"D", b"C", b"I", b"A", b"v", b"?"]),
                    st.binary(max_size=64)).map(lambda kb: _msg(*kb))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MESSAGE, max_size=12), st.booleans())
def test_well_framed_random_messages_raise_only_query_error(messages: list[bytes], query: bool) -> None:
    """Framing right, contents random: reaches the row, error and parameter parsers."""
    try:
        _feed((HANDSHAKE if query else b"") + b"".join(messages), query=query)
    except QueryError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize(("reply", "said"), [
    (_msg(b"R", struct.pack("!i", 10) + b"SCRAM-SHA-256\0\0"), "admin connection needs a password: not read"),
    (_msg(b"R", struct.pack("!i", 5) + b"salt"), "admin connection needs a password: not read"),
    (_msg(b"R", struct.pack("!i", 3)), "admin connection needs a password: not read"),
    (_msg(b"R", struct.pack("!i", 7)), "admin connection asks for an unsupported authentication (request 7): not read"),
    (_msg(b"E", b"SFATAL\0C28000\0Mpeer authentication failed\0\0"),
     "admin connection refused: server said 28000: peer authentication failed"),
    (b"R\xff\xff\xff\xff", "unexpected reply: message length -1"),
    (_msg(b"R", struct.pack("!i", 0)), "unexpected reply: the server closed the connection mid-reply"),
])
def test_startup_answers(reply: bytes, said: str) -> None:
    with pytest.raises(QueryError) as err:
        _feed(reply, query=False)
    assert str(err.value) == said


def test_oversized_message_and_row_mismatch_are_refused() -> None:
    with pytest.raises(QueryError, match="oversized|announced"):
        _feed(b"D" + struct.pack("!i", 64 << 20), query=True)
    rows = _msg(b"T", struct.pack("!h", 1) + b"a\0" + b"\0" * 18) + _msg(b"D", struct.pack("!hi", 2, -1))
    with pytest.raises(QueryError, match="DataRow with 2 values for 1 columns"):
        _feed(rows + _msg(b"Z", b"I"), query=True)
    assert message(b"X", b"") == b"X\0\0\0\x04"
