"""Shared test helpers: fixture host trees and the CI rule that a skipped test fails the run."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hostguard.config import Config, build
from hostguard.engine.facts import Fact, Facts
from hostguard.engine.registry import default_registry
from hostguard.engine.runner import run_check
from hostguard.findings import Finding, Skipped
from hostguard.host.base import Host

FIXTURES = Path(__file__).parent / "fixtures"
HOSTS = FIXTURES / "hosts"
CLEAN = HOSTS / "clean"
HITS = HOSTS / "hits"
MISSES = HOSTS / "misses"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _postgres_on_path() -> None:
    """Debian keeps PostgreSQL's server programs (initdb, postgres, pg_ctl) in /usr/lib/postgresql/VERSION/bin,
    off PATH: put the newest installed version's there, so tests find them on any Debian machine."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                      if p.parent.name.isdigit() else 0)
    if versions and str(versions[-1]) not in os.environ.get("PATH", "").split(":"):
        os.environ["PATH"] = os.environ.get("PATH", "") + ":" + str(versions[-1])


_postgres_on_path()


def build_tree(dest: Path, overlay: Path | None = None) -> Path:
    """Copy the clean host tree to ``dest`` and lay ``overlay`` (a hits/<check> directory) over it.

    A file ``NAME.delete`` in the overlay removes NAME; ``expect.toml`` is not copied.
    """
    shutil.copytree(CLEAN, dest, symlinks=True)
    if overlay is not None:
        for src in overlay.rglob("*"):
            rel = src.relative_to(overlay)
            if src.is_dir() or rel.as_posix() == "expect.toml":
                continue
            target = dest / rel
            if src.name.endswith(".delete"):
                target.with_name(src.name[: -len(".delete")]).unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target, follow_symlinks=False)
    return dest


def expected_targets(check_id: str) -> list[dict[str, object]]:
    """The targets hits/<check_id>/expect.toml says the check must report."""
    return tomllib.loads((HITS / check_id / "expect.toml").read_text())["targets"]


def make_config(**sections: dict[str, object]) -> Config:
    """The defaults with some settings changed, e.g. ``make_config(ssh={"max_auth_tries": 6})``."""
    return build(sections, default_registry().schema())


FAST = {"weak_passwords": {"budget_seconds": 0, "floor": 20}}  # the guaranteed floor only: fixtures stay fast


def run_one(check_id: str, host: Host, config: Config | None = None,
            given: dict[Fact[Any], Any] | None = None) -> tuple[list[Finding], list[Skipped]]:
    """Run one check on ``host`` as the scan would (no earlier scan in the store unless ``given`` says)."""
    from hostguard.checks.accounts import KNOWN_ACCOUNTS, KNOWN_KEYS

    [spec] = [s for s in default_registry().checks if s.id == check_id]
    facts = Facts(host, config or make_config(**FAST), given={KNOWN_ACCOUNTS: None, KNOWN_KEYS: None, **(given or {})})
    return run_check(spec, facts)


def wait_listening(proc: subprocess.Popen[Any], port: int, seconds: float, failed: Callable[[], str]) -> None:
    """Until a server process started by a test accepts connections on 127.0.0.1:``port``; an
    AssertionError with ``failed()`` (its log) when it exits or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(failed()) from None
            time.sleep(0.05)


def stop_listening(proc: subprocess.Popen[Any], port: int, seconds: float = 20) -> None:
    """Stop a server process started by a test (terminate, then kill), and wait until its port is free again,
    so that the next start in the same test can bind it."""
    proc.terminate()
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            time.sleep(0.05)
        except OSError:
            return


def need_tool(*names: str) -> None:
    """Skip (with the reason) when a system tool the test drives is missing."""
    for name in names:
        if shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            pytest.skip(reason=f"{name} is not installed (scripts/install-system-deps.sh test installs it)")


def need_root(what: str) -> None:
    """Skip when the test needs root (network namespaces, nft, /run/sshd)."""
    if os.geteuid() != 0:
        pytest.skip(reason=f"{what} needs root")


@pytest.fixture
def clean_tree(tmp_path: Path) -> Path:
    """A private copy of the clean host tree."""
    return build_tree(tmp_path / "host")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a green run must mean the real thing ran: any skipped test fails the run."""
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for rep in skipped:
            reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            print(f"\nCI=true: skipped test fails the run: {rep.nodeid}: {reason}")
        session.exitstatus = 1


@pytest.fixture
def no_setid_left(tmp_path: Path) -> Iterator[None]:
    """pytest keeps its last temp directories: clear the setuid/setgid bits and capabilities a test made, so
    no set-id file outlives it on this machine (and a later live scan does not find them)."""
    yield
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            mode = path.stat().st_mode
            if mode & 0o6000:
                path.chmod(mode & 0o1777)
            with contextlib.suppress(OSError):
                os.removexattr(path, "security.capability", follow_symlinks=False)
