"""rootkit.hidden_process: quiet on this machine, and the comparison logic on real processes.

Hiding a process needs a kernel module, so the hit is the one simulated part: the *listing* passed to
``find_hidden`` leaves out a real child process of the test; every lookup is the real /proc.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from hostguard.checks.rootkit import cgroup_procs, find_hidden, proc_listing, proc_tgid
from hostguard.host.base import LiveHost, RootHost
from tests.conftest import CLEAN, need_root, run_one


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import threading,time\n"
                             "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
                             "time.sleep(30)\n"], stdout=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_nothing_is_hidden_on_this_machine() -> None:
    need_root("looking up every pid")
    found, skipped = run_one("rootkit.hidden_process", LiveHost())
    assert found == [] and skipped == []


def test_a_pid_left_out_of_the_listing_is_found_but_its_threads_are_not(child: subprocess.Popen[bytes]) -> None:

    deadline = time.monotonic() + 5
    while len(os.listdir(f"/proc/{child.pid}/task")) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    threads = [int(t) for t in os.listdir(f"/proc/{child.pid}/task") if int(t) != child.pid]
    assert threads and all(proc_tgid(t) == child.pid for t in threads)  # threads answer lookups too

    def fake_listing() -> set[int]:  # the simulated part: a listing that hides the child
        return proc_listing() - {child.pid}

    span = range(1, max(child.pid, *threads) + 1)
    assert find_hidden(fake_listing, proc_tgid, span, ()) == {child.pid: ("lookup",)}
    assert find_hidden(fake_listing, proc_tgid, (), cgroup_procs()) == {child.pid: ("cgroup.procs",)}
    assert find_hidden(proc_listing, proc_tgid, span, cgroup_procs()) == {}  # near miss: the real listing


def test_a_process_that_exits_before_the_recheck_is_not_reported(child: subprocess.Popen[bytes]) -> None:
    calls = 0

    def listing() -> set[int]:
        nonlocal calls
        calls += 1
        if calls == 2:  # between the sweep and the first recheck, the process ends
            child.kill()
            child.wait()
        return proc_listing() - {child.pid}

    assert find_hidden(listing, proc_tgid, [child.pid], ()) == {}


def test_under_root_the_check_says_live_only() -> None:
    found, skipped = run_one("rootkit.hidden_process", RootHost(str(CLEAN)))
    assert found == [] and [s.reason for s in skipped] == ["live_only"]
