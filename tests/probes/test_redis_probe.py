"""The Redis prober against a real redis-server on a unix socket (and loopback TCP): weak passwords found with
their rank, strong ones never, no password at all reported as such, ACL users, the record in state.db."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.probes.base import Endpoint
from hostguard.probes.redis import RedisProber
from hostguard.probes.session import NO_PASSWORD, NOT_FOUND, WEAK, Limits, probe_account, service_guesses
from hostguard.store.state import RecordedProbe
from tests.conftest import need_tool
from tests.host.services.helpers import free_port, resp, running, wait_for
from tests.probes.common import HOST_KEY, STRONG, assert_not_leaked, open_store, rank_of

FAST = Limits(per_account=100, per_second=1000.0)


@pytest.fixture
def redis(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, int]]:
    """A redis-server with the test's extra config lines (``request.param``), on a socket and a loopback port."""
    need_tool("redis-server")
    port = free_port()
    config = tmp_path / "redis.conf"
    config.write_text(f"port {port}\nbind 127.0.0.1\nunixsocket {tmp_path}/redis.sock\ndaemonize no\n"
                      f"dir {tmp_path}\nlogfile \"\"\nsave \"\"\n{request.param}")
    with running(["redis-server", str(config)], tmp_path / "log"):
        wait_for((tmp_path / "redis.sock").exists, what="redis-server")
        yield tmp_path / "redis.sock", port


@pytest.mark.parametrize("redis", ["requirepass dragon\n"], indirect=True)
def test_weak_requirepass_is_found_with_its_rank(tmp_path: Path, redis: tuple[Path, int]) -> None:
    sock, _ = redis
    store, state = open_store(tmp_path)
    guesses = service_guesses("redis", "default")
    result = probe_account(RedisProber(Endpoint.unix(str(sock))), "default", guesses, FAST, store=store,
                           host_key=HOST_KEY)
    rank = rank_of(guesses, "dragon")
    assert (result.outcome, result.account, result.rank) == (WEAK, "default", rank)
    assert result.attempts == rank + 1          # the canary, then every guess up to the hit
    assert result.source == f"common password (rank {_common_rank('dragon')})"   # where it came from, not what
    [recorded] = store.probes(HOST_KEY)
    assert recorded == RecordedProbe("redis", f"unix {sock}", "default", recorded.started, rank + 1, WEAK, rank,
                                     recorded.finished)
    assert recorded.finished is not None and recorded.started <= recorded.finished
    store.close()
    assert_not_leaked("dragon", result, state)


def _common_rank(word: str) -> int:
    from hostguard.passwords.guesses import common_passwords

    return common_passwords().index(word) + 1


@pytest.mark.parametrize("redis", [f"requirepass {STRONG}\n"], indirect=True)
def test_strong_requirepass_is_never_reported_and_still_works(tmp_path: Path, redis: tuple[Path, int]) -> None:
    sock, port = redis
    limits = Limits(per_account=12, per_second=1000.0)
    result = probe_account(RedisProber(Endpoint.tcp("127.0.0.1", port)), "default",
                           service_guesses("redis", "default"), limits)
    assert (result.outcome, result.rank, result.attempts) == (NOT_FOUND, None, 12)
    assert result.endpoint == f"tcp 127.0.0.1:{port}"
    assert resp(str(sock), ["AUTH", STRONG], ["PING"]) == ["OK", "PONG"]


@pytest.mark.parametrize("redis", [""], indirect=True)
def test_no_requirepass_is_no_password_checked_not_a_weak_password(tmp_path: Path, redis: tuple[Path, int]) -> None:
    sock, _ = redis
    result = probe_account(RedisProber(Endpoint.unix(str(sock))), "default", service_guesses("redis", "default"),
                           FAST)
    # the empty password is the first guess, and would "match": the canary must say it first
    assert (result.outcome, result.attempts, result.rank) == (NO_PASSWORD, 1, None)


ACL = f"user alice on >monkey ~* +@all\nuser bob on >{STRONG} ~* +@all\nuser carol on nopass ~* +@all\n"


@pytest.mark.parametrize("redis", [f"requirepass {STRONG}\n{ACL}"], indirect=True)
def test_acl_users_each_get_their_answer(tmp_path: Path, redis: tuple[Path, int]) -> None:
    sock, _ = redis
    prober = RedisProber(Endpoint.unix(str(sock)))
    answers = {user: probe_account(prober, user, service_guesses("redis", user), FAST)
               for user in ("alice", "bob", "carol")}
    assert answers["alice"].outcome == WEAK
    assert answers["alice"].rank == rank_of(service_guesses("redis", "alice"), "monkey")
    assert answers["bob"].outcome == NOT_FOUND and answers["bob"].attempts == 100
    assert answers["carol"].outcome == NO_PASSWORD
    assert resp(str(sock), ["AUTH", "bob", STRONG], ["PING"]) == ["OK", "PONG"]
