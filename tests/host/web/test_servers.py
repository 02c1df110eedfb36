"""The account a site's PHP really runs as: a real php-fpm master started on a temp config, its workers read
from the live process table and matched to the pool by title and by the master's configuration file."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.host.base import LiveHost
from hostguard.host.processes import collect_processes
from hostguard.host.web.model import Site, Where
from hostguard.host.web.php import FpmConfig, read_fpm
from hostguard.host.web.servers import pool_accounts
from tests.conftest import need_tool

FPM = "php-fpm8.2"


def _conf(base: Path, pool: str, user: str) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    conf = base / "php-fpm.conf"
    conf.write_text(f"[global]\npid = {base}/fpm.pid\nerror_log = {base}/fpm.log\ndaemonize = no\n"
                    f"[{pool}]\nuser = {user}\nlisten = {base}/{pool}.sock\npm = static\npm.max_children = 2\n")
    return conf


@pytest.fixture
def running_pool(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A php-fpm master with one pool ``shop`` whose workers run as nobody; the configuration is then changed
    to say www-data without a reload (what the config says is no longer what runs)."""
    need_tool(FPM)
    if os.geteuid() != 0:
        pytest.skip(reason="php-fpm workers change user only when the master runs as root")
    conf = _conf(tmp_path / "fpm", "shop", "nobody")
    proc = subprocess.Popen([FPM, "--fpm-config", str(conf), "--nodaemonize", "-n"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        sock = tmp_path / "fpm" / "shop.sock"
        for _ in range(100):
            if sock.exists():
                break
            if proc.poll() is not None:
                raise AssertionError(f"php-fpm did not start: {proc.stderr.read() if proc.stderr else ''!r}")
            time.sleep(0.05)
        conf.write_text(conf.read_text().replace("user = nobody", "user = www-data"))
        yield conf, sock
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _site(backend: str) -> Site:
    return Site(server="nginx", names=("shop.test",), listens=("80",), roots=(), where=Where("/etc/nginx/sites/shop", 1),
                php_backends=(backend,))


def test_the_running_workers_account_wins_over_the_configured_one(running_pool: tuple[Path, Path]) -> None:
    conf, sock = running_pool
    [pool] = read_fpm(LiveHost(), FpmConfig(str(conf), "/usr", "8.2", "fpm"))
    assert pool.user == "www-data"          # what the file says now
    processes = collect_processes(LiveHost())
    found = pool_accounts(_site(f"unix:{sock}"), (pool,), processes)
    assert [(r.user, r.source) for r in found] == [("nobody", "process")]
    assert "PHP-FPM pool shop" in found[0].detail and found[0].detail.startswith("pid ")


def test_a_pool_of_the_same_name_in_another_configuration_is_not_those_workers(
        running_pool: tuple[Path, Path], tmp_path: Path) -> None:
    _, sock = running_pool
    other = _conf(tmp_path / "other", "shop", "daemon")     # another PHP version's pool, same name, not running
    [pool] = read_fpm(LiveHost(), FpmConfig(str(other), "/usr", "8.2", "fpm"))
    processes = collect_processes(LiveHost())
    found = pool_accounts(_site(f"unix:{tmp_path}/other/shop.sock"), (pool,), processes)
    assert [(r.user, r.source) for r in found] == [("daemon", "config")]
    assert pool_accounts(_site(f"unix:{sock}.not"), (pool,), processes) == ()   # another back end: no pool


def test_without_processes_the_configured_account_is_used(tmp_path: Path) -> None:
    conf = _conf(tmp_path / "fpm", "blog", "www-data")
    [pool] = read_fpm(LiveHost(), FpmConfig(str(conf), "/usr", "8.2", "fpm"))
    found = pool_accounts(_site(f"unix:{tmp_path}/fpm/blog.sock"), (pool,), None)
    assert [(r.user, r.source, r.where.path) for r in found] == [("www-data", "config", str(conf))]
