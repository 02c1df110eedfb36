"""The MariaDB prober against a real mariadbd: mysql_native_password over the socket and loopback TCP, the
canary against unix_socket and skip-grant-tables, an auth switch to ed25519, and max_password_errors: the
session stays below it and the account still logs in (while three real failures do block it)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hostguard.host.base import Host
from hostguard.host.services.mysql import parse
from hostguard.probes.base import Accepted, Endpoint, Error, Locked, Refused
from hostguard.probes.mysql import MysqlProber, lockout_limit
from hostguard.probes.session import (
    ERROR,
    NO_PASSWORD,
    NOT_FOUND,
    NOT_PROBED,
    WEAK,
    Limits,
    probe_account,
    service_guesses,
)
from tests.host.services.helpers import free_port, running, wait_for
from tests.probes.common import HOST_KEY, STRONG, assert_not_leaked, open_store, rank_of
from tests.realservers import new_mariadb_datadir

FAST = Limits(per_account=100, per_second=1000.0)
USERS = f"""
CREATE USER 'shop'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('shadow');
CREATE USER 'strong'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('{STRONG}');
INSTALL SONAME 'auth_ed25519';
CREATE USER 'edwards'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('{STRONG}');
"""


@pytest.fixture(scope="module")
def datadir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine data directory, never run: each server runs on its own copy (one datadir, one server)."""
    return new_mariadb_datadir(tmp_path_factory.mktemp("mariadb-probe"))


@contextmanager
def mariadbd(tmp_path: Path, datadir: Path, extra: str = "") -> Iterator[tuple[Path, int, Path]]:
    """mariadbd on a copy of ``datadir``, a socket and 127.0.0.1, with ``extra`` option lines:
    (socket, port, config file)."""
    shutil.copytree(datadir, tmp_path / "data")
    datadir = tmp_path / "data"
    port = free_port()
    sock = tmp_path / "m.sock"
    config = tmp_path / "my.cnf"
    config.write_text(f"[mysqld]\ndatadir={datadir}\nsocket={sock}\nuser=root\npid-file={tmp_path}/m.pid\n"
                      f"log-error={tmp_path}/err.log\nport={port}\nbind-address=127.0.0.1\n{extra}")
    with running(["mariadbd", f"--defaults-file={config}"], tmp_path / "log"):
        wait_for(sock.exists, what="mariadbd")
        yield sock, port, config


def _sql(sock: Path, text: str) -> None:
    done = subprocess.run(["mariadb", "--no-defaults", "-S", str(sock), "-e", text], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _login(port: int, user: str, password: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(port), "-u", user,
                           f"-p{password}", "-N", "-B", "-e", "select current_user()"], capture_output=True, text=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, datadir: Path) -> Iterator[tuple[Path, int]]:
    with mariadbd(tmp_path_factory.mktemp("mariadb-run"), datadir) as (sock, port, _):
        _sql(sock, USERS)
        yield sock, port


def test_weak_password_is_found_over_the_socket(tmp_path: Path, server: tuple[Path, int]) -> None:
    sock, _ = server
    store, state = open_store(tmp_path)
    guesses = service_guesses("mysql", "shop")
    result = probe_account(MysqlProber(Endpoint.unix(str(sock))), "shop", guesses, FAST, store=store,
                           host_key=HOST_KEY)
    rank = rank_of(guesses, "shadow")
    assert (result.outcome, result.account, result.rank, result.attempts) == (WEAK, "shop", rank, rank + 1)
    assert [(p.service, p.account, p.outcome, p.attempts) for p in store.probes(HOST_KEY)] == [
        ("mysql", "shop", WEAK, rank + 1)]
    store.close()
    assert_not_leaked("shadow", result, state)


def test_strong_password_over_tcp_is_never_reported_and_still_logs_in(server: tuple[Path, int]) -> None:
    _, port = server
    result = probe_account(MysqlProber(Endpoint.tcp("127.0.0.1", port)), "strong", service_guesses("mysql", "strong"),
                           Limits(per_account=15, per_second=1000.0))
    assert (result.outcome, result.rank, result.attempts) == (NOT_FOUND, None, 15)
    assert _login(port, "strong", STRONG).stdout.strip() == "strong@%"


def test_root_by_unix_socket_is_no_password_checked(server: tuple[Path, int]) -> None:
    """Debian's root@localhost is identified by the unix socket's peer: as root, any password gets in."""
    sock, port = server
    result = probe_account(MysqlProber(Endpoint.unix(str(sock))), "root", service_guesses("mysql", "root"), FAST)
    assert (result.outcome, result.attempts) == (NO_PASSWORD, 1)
    # over TCP the same account has no peer to check: the server says so (1698, not 1045), and a session stops
    # there instead of guessing passwords that are never compared
    result = probe_account(MysqlProber(Endpoint.tcp("127.0.0.1", port)), "root", service_guesses("mysql", "root"),
                           FAST)
    assert (result.outcome, result.attempts) == (ERROR, 1)
    assert result.detail.startswith("server error 1698: Access denied for user 'root'")


def test_auth_switch_to_another_plugin_is_an_error(server: tuple[Path, int]) -> None:
    _, port = server
    answer = MysqlProber(Endpoint.tcp("127.0.0.1", port)).try_password("edwards", STRONG)
    assert answer == Error("unsupported plugin client_ed25519")


def test_skip_grant_tables_is_no_password_checked(tmp_path: Path, datadir: Path) -> None:
    with mariadbd(tmp_path, datadir, "skip-grant-tables\n") as (_, port, _config):
        result = probe_account(MysqlProber(Endpoint.tcp("127.0.0.1", port)), "strong",
                               service_guesses("mysql", "strong"), FAST)
    assert (result.outcome, result.attempts) == (NO_PASSWORD, 1)


def test_max_password_errors_is_read_and_never_reached(tmp_path: Path, datadir: Path) -> None:
    with mariadbd(tmp_path, datadir, "max_password_errors=3\n") as (sock, port, config):
        _sql(sock, USERS)
        limit = lockout_limit(parse(Host("/"), (str(config),), version="10.11"))
        assert limit == 3
        prober = MysqlProber(Endpoint.tcp("127.0.0.1", port), lockout_limit=limit)
        store, _ = open_store(tmp_path)
        margin0 = Limits(per_account=100, per_second=1000.0, lockout_margin=0)
        first = probe_account(prober, "strong", service_guesses("mysql", "strong"), margin0, store=store,
                              host_key=HOST_KEY)
        assert (first.outcome, first.attempts) == (NOT_FOUND, 2)       # 2 failures: below 3
        # the server's counter outlives the session: the next one (next scan) finds no attempt to spare
        again = probe_account(prober, "strong", service_guesses("mysql", "strong"), margin0, store=store,
                              host_key=HOST_KEY)
        assert (again.outcome, again.attempts) == (NOT_PROBED, 0)
        assert [(p.outcome, p.attempts) for p in store.probes(HOST_KEY)] == [(NOT_FOUND, 2), (NOT_PROBED, 0)]
        store.close()
        assert _login(port, "strong", STRONG).stdout.strip() == "strong@%"     # not blocked: the counter is reset
        default = probe_account(prober, "strong", service_guesses("mysql", "strong"), FAST)
        assert (default.outcome, default.attempts) == (NOT_FOUND, 1)     # the default margin leaves the canary
        assert _login(port, "strong", STRONG).stdout.strip() == "strong@%"
        # the limit is real: three failures in a row do block the account, and the prober says Locked
        for _ in range(3):
            assert prober.try_password("strong", "wrong") == Refused()
        assert isinstance(prober.try_password("strong", STRONG), Locked)
        assert _login(port, "strong", STRONG).returncode != 0


def test_a_limit_with_no_attempt_to_spare_probes_nothing(server: tuple[Path, int]) -> None:
    _, port = server
    prober = MysqlProber(Endpoint.tcp("127.0.0.1", port), lockout_limit=2)
    result = probe_account(prober, "strong", service_guesses("mysql", "strong"), FAST)
    assert (result.outcome, result.attempts) == (NOT_PROBED, 0)
    assert prober.try_password("strong", STRONG) == Accepted()
