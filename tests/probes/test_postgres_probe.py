"""The PostgreSQL prober against a real server: SCRAM-SHA-256, md5 and cleartext exchanges over the unix socket
and loopback TCP, a ``trust`` line as "no password checked", and the account still logging in afterwards."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.probes.base import Accepted, Endpoint, Error, Refused
from hostguard.probes.postgres import PostgresProber, socket_path
from hostguard.probes.session import ERROR, NO_PASSWORD, NOT_FOUND, WEAK, Limits, probe_account, service_guesses
from tests.host.services.helpers import free_port, running, wait_for
from tests.probes.common import HOST_KEY, STRONG, assert_not_leaked, open_store, rank_of
from tests.realservers import postgres_cluster

FAST = Limits(per_account=100, per_second=1000.0)
HBA = """\
local all postgres trust
local all trustee trust
local all md5weak md5
local all plainweak password
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
"""
ROLES = f"""
CREATE ROLE scramweak LOGIN PASSWORD 'shadow';
CREATE ROLE strong LOGIN PASSWORD '{STRONG}';
CREATE ROLE trustee LOGIN PASSWORD '{STRONG}';
CREATE ROLE plainweak LOGIN PASSWORD 'master';
SET password_encryption = 'md5';
CREATE ROLE md5weak LOGIN PASSWORD 'letmein';
"""


def _as_postgres(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Path, int]]:
    """A fresh cluster with the roles above, served on a socket directory and 127.0.0.1 with HBA above."""
    with postgres_cluster("hostguard-pgprobe-") as base:
        owner = pwd.getpwnam("postgres").pw_uid
        sock_dir = base / "sock"
        sock_dir.mkdir()
        os.chown(sock_dir, owner, -1)
        port = free_port()
        argv = ["runuser", "-u", "postgres", "--", "postgres", "-D", str(base / "data"), "-c",
                "listen_addresses=127.0.0.1", "-k", str(sock_dir), "-p", str(port)]
        with running(argv, base / "server.log"):
            wait_for(Path(socket_path(str(sock_dir), port)).exists, what="postgres")
            psql = ["psql", "-h", str(sock_dir), "-p", str(port), "-U", "postgres", "-d", "postgres", "-v",
                    "ON_ERROR_STOP=1", "-q"]
            done = _as_postgres([*psql, "-c", ROLES])
            assert done.returncode == 0, done.stderr
            (base / "data" / "pg_hba.conf").write_text(HBA)
            done = _as_postgres([*psql, "-c", "select pg_reload_conf()"])
            assert done.returncode == 0, done.stderr
            yield sock_dir, port


def _unix(server: tuple[Path, int]) -> PostgresProber:
    sock_dir, port = server
    return PostgresProber(Endpoint.unix(socket_path(str(sock_dir), port)))


@pytest.mark.parametrize(("account", "password"), [("scramweak", "shadow"), ("md5weak", "letmein"),
                                                   ("plainweak", "master")])
def test_weak_password_is_found_through_each_method(tmp_path: Path, server: tuple[Path, int], account: str,
                                                    password: str) -> None:
    store, state = open_store(tmp_path)
    guesses = service_guesses("postgresql", account)
    result = probe_account(_unix(server), account, guesses, FAST, store=store, host_key=HOST_KEY)
    rank = rank_of(guesses, password)
    assert (result.outcome, result.account, result.rank, result.attempts) == (WEAK, account, rank, rank + 1)
    assert [(p.account, p.outcome, p.rank, p.attempts) for p in store.probes(HOST_KEY)] == [
        (account, WEAK, rank, rank + 1)]
    store.close()
    assert_not_leaked(password, result, state)


def test_strong_password_over_tcp_is_never_reported_and_still_logs_in(server: tuple[Path, int]) -> None:
    _, port = server
    prober = PostgresProber(Endpoint.tcp("127.0.0.1", port))
    result = probe_account(prober, "strong", service_guesses("postgresql", "strong"),
                           Limits(per_account=20, per_second=1000.0))
    assert (result.outcome, result.rank, result.attempts) == (NOT_FOUND, None, 20)
    assert prober.try_password("strong", STRONG) == Accepted()        # our SCRAM client, the right password
    login = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "strong", "-d", "postgres", "-Atc",
                            "select current_user"], capture_output=True, text=True,
                           env={**os.environ, "PGPASSWORD": STRONG})
    assert login.stdout.strip() == "strong", login.stderr


def test_trust_line_is_no_password_checked(server: tuple[Path, int]) -> None:
    result = probe_account(_unix(server), "trustee", service_guesses("postgresql", "trustee"), FAST)
    assert (result.outcome, result.attempts, result.rank) == (NO_PASSWORD, 1, None)


def test_unknown_role_unknown_database_and_no_listener(server: tuple[Path, int]) -> None:
    """A role that does not exist is refused like a wrong password (the server does not tell them apart); an
    unknown database after a good password is still accepted (the server looks it up after authentication);
    an address nothing listens on ends the session with an error after one attempt."""
    _, port = server
    tcp = PostgresProber(Endpoint.tcp("127.0.0.1", port))
    assert tcp.try_password("nobody", STRONG) == Refused()
    assert PostgresProber(Endpoint.tcp("127.0.0.1", port), database="no_such_db").try_password(
        "strong", STRONG) == Accepted()
    ipv6 = PostgresProber(Endpoint.tcp("::1", port)).try_password("strong", STRONG)   # not listening there
    assert isinstance(ipv6, Error) and ipv6.detail.startswith("connection failed")
    result = probe_account(PostgresProber(Endpoint.tcp("::1", port)), "strong", [], FAST)
    assert (result.outcome, result.attempts) == (ERROR, 1)
