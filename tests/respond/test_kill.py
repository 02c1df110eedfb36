"""The audited kill (`respond/kill.py`) and `hostguard fix --kill`, on processes the test starts itself.

Each target is a copy of ``sleep`` in the test's temporary directory (its file then deleted, so the live
``processes`` scan reports it as ``processes.deleted_exe``), bounded in time and killed in teardown. The
expected start time comes from psutil, the unit the findings carry; nothing else on this host is touched:
the fixes run with ``--only processes`` and name the target's own fingerprint.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import psutil
import pytest

from hostguard.cli import main
from hostguard.respond.kill import GONE, KILLED, PF_KTHREAD, REFUSED, TERMINATED, kill_process, read_stat
from hostguard.store.state import StateStore
from tests.conftest import FIXTURES

FAST = str(FIXTURES / "fast.toml")
LIFETIME = "60"   # seconds a target lives at most if everything else fails


class Target:
    """A process the test owns: a deleted copy of sleep, optionally ignoring SIGTERM."""

    def __init__(self, directory: Path, ignore_term: bool = False) -> None:
        sleep = shutil.which("sleep")
        assert sleep is not None
        self.exe = str(directory / "hg-kill-target")
        shutil.copy(sleep, self.exe)
        argv = ["/bin/sh", "-c", f"trap '' TERM; exec {self.exe} {LIFETIME}"] if ignore_term else [self.exe, LIFETIME]
        self.proc = subprocess.Popen(argv)
        self.pid = self.proc.pid
        for _ in range(100):   # until the exec is done (sh replaced by the copy)
            if os.readlink(f"/proc/{self.pid}/exe") == self.exe:
                break
            time.sleep(0.01)
        os.unlink(self.exe)
        self.start = psutil.Process(self.pid).create_time()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    t = Target(tmp_path)
    try:
        yield t
    finally:
        t.stop()


def hg(state: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(["--config", FAST, "--state", str(state), *args])
    return rc, out.getvalue()


def fingerprint(state: Path, t: Target) -> str:
    rc, out = hg(state, "scan", "--only", "processes.deleted_exe", "--format", "json")
    assert rc in (0, 1), out
    [fp] = [f["fingerprint"] for f in json.loads(out)["findings"]
            if f["id"] == "processes.deleted_exe" and f["evidence"]["pid"] == t.pid]
    return str(fp)


def kills(state: Path) -> list[tuple[str, str, dict[str, object]]]:
    store = StateStore(str(state))
    try:
        return [(e.subject, e.reason, json.loads(e.detail)) for e in store.audit_log() if e.action == "kill"]
    finally:
        store.close()


def test_fix_kill_stops_the_process_and_records_it(tmp_path: Path, target: Target) -> None:
    state = tmp_path / "state"
    fp = fingerprint(state, target)
    rc, out = hg(state, "fix", "--kill", "--yes", "--only", "processes", fp)
    assert rc == 0, out
    assert target.proc.wait(timeout=10) == -signal.SIGTERM
    assert "not reversible" in out and "undo with" not in out
    [(subject, reason, detail)] = kills(state)
    assert subject == str(target.pid) and reason.startswith(TERMINATED)
    assert detail["exe"] == target.exe and detail["signals"] == ["SIGTERM"] and detail["outcome"] == TERMINATED
    assert abs(float(str(detail["start_time"])) - target.start) < 0.01
    fix_id = json.loads(next((state / "fixes").glob("*/manifest.json")).read_text())["id"]
    assert hg(state, "fix", "--undo", fix_id)[0] == 2   # nothing to bring back: refused, not "undone"


def test_fix_without_kill_leaves_the_process_and_says_how(tmp_path: Path, target: Target) -> None:
    state = tmp_path / "state"
    fp = fingerprint(state, target)
    rc, out = hg(state, "fix", "--yes", "--only", "processes", fp)
    assert rc == 0, out
    assert "by hand" in out and "fix --kill" in out
    assert target.alive() and kills(state) == []


def test_fix_kill_under_root_is_refused(tmp_path: Path, target: Target) -> None:
    rc, _ = hg(tmp_path / "state", "fix", "--kill", "--yes", "--root", str(tmp_path), "--all")
    assert rc == 2 and target.alive()


def test_wrong_start_time_or_exe_is_refused(target: Target) -> None:
    late = kill_process(target.pid, target.start + 1.0, target.exe, grace=0.1)
    assert late.outcome == REFUSED and late.signals == () and "started at" in late.detail
    other = kill_process(target.pid, f"{target.start:.2f}", "/usr/bin/sleep", grace=0.1)
    assert other.outcome == REFUSED and "runs" in other.detail
    assert target.alive()


def test_init_self_and_parents_are_never_killed() -> None:
    for pid in (1, os.getpid(), os.getppid()):
        p = psutil.Process(pid)
        result = kill_process(pid, p.create_time(), None, grace=0.1)
        assert result.outcome == REFUSED and "never killed" in result.detail, pid
        assert p.is_running()


def test_kernel_threads_are_seen_as_such() -> None:
    """kthreadd (pid 2 where the kernel's threads are visible) carries PF_KTHREAD; a user process does not."""
    if Path("/proc/2/comm").exists() and Path("/proc/2/comm").read_text().strip() == "kthreadd":
        assert read_stat(2).flags & PF_KTHREAD
    assert not read_stat(os.getpid()).flags & PF_KTHREAD


def test_a_process_ignoring_sigterm_gets_sigkill_after_the_grace(tmp_path: Path) -> None:
    t = Target(tmp_path, ignore_term=True)
    try:
        result = kill_process(t.pid, t.start, t.exe, grace=0.3)
        assert result.outcome == KILLED and result.signals == ("SIGTERM", "SIGKILL")
        assert t.proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        t.stop()


def test_a_process_already_gone_is_not_signalled(target: Target) -> None:
    target.stop()
    result = kill_process(target.pid, target.start, target.exe, grace=0.1)
    assert result.outcome in (GONE, REFUSED) and result.signals == ()
