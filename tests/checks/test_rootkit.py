"""rootkit.hidden_process: quiet on this machine, the comparison logic on real processes, and the time budget.

Hiding a process needs a kernel module, so the hit is the one simulated part: the *listing* the sweep compares
with leaves out a real child process of the test; every probe (``pidfd_open``, the /proc lookup,
``cgroup.procs``) is the real kernel's answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from hostguard.host.base import LiveHost, RootHost
from hostguard.host.kernel import (
    PID_SWEEP,
    PidSweep,
    cgroup_procs,
    find_hidden,
    lookup_is_process,
    lookup_range,
    pid_max,
    pidfd_is_process,
    proc_listing,
    proc_tgid,
)
from tests.conftest import CLEAN, make_config, need_root, run_one


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import threading,time\n"
                             "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
                             "time.sleep(30)\n"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while len(os.listdir(f"/proc/{proc.pid}/task")) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_nothing_is_hidden_on_this_machine() -> None:
    need_root("looking up every pid")
    found, skipped = run_one("rootkit.hidden_process", LiveHost())
    assert found == [] and skipped == []


def test_a_pid_left_out_of_the_listing_is_found_but_its_threads_are_not(child: subprocess.Popen[bytes]) -> None:
    threads = [int(t) for t in os.listdir(f"/proc/{child.pid}/task") if int(t) != child.pid]
    assert threads and all(proc_tgid(t) == child.pid for t in threads)  # threads answer /proc lookups too
    assert not any(pidfd_is_process(t) for t in threads) and pidfd_is_process(child.pid)  # but are no process

    def fake_listing() -> set[int]:  # the simulated part: a listing that hides the child
        return proc_listing() - {child.pid}

    span = range(1, max(child.pid, *threads) + 1)
    for probe, view in ((pidfd_is_process, "pidfd"), (lookup_is_process, "lookup")):
        assert find_hidden(fake_listing, probe, span, (), view=view) == {child.pid: (view,)}
        assert find_hidden(fake_listing, probe, (), cgroup_procs()) == {child.pid: ("cgroup.procs",)}
        assert find_hidden(proc_listing, probe, span, cgroup_procs()) == {}  # near miss: the real listing

    # the whole check, through its sweep: the finding names the child and keeps the sweep's figures
    sweep = PidSweep(max(child.pid, *threads) + 1, listing=fake_listing)
    found, skipped = run_one("rootkit.hidden_process", LiveHost(), given={PID_SWEEP: sweep})
    assert skipped == []
    [f] = found
    assert f.target == {"kind": "process", "program": os.readlink(f"/proc/{child.pid}/exe"), "hidden": True}
    assert f.evidence["pid"] == child.pid and f.evidence["seen_by"] == ["pidfd", "cgroup.procs"]
    assert f.evidence["proc_lookup"] is True and f.evidence["sweep_complete"] is True
    assert f.evidence["pid_max"] == sweep.top and 0 <= f.evidence["sweep_seconds"] < 5


def test_the_lookup_sweep_finds_the_same_process(child: subprocess.Popen[bytes]) -> None:
    """The fallback for kernels without pidfd_open: the /proc/<pid>/status lookup, same verdict."""
    sweep = PidSweep(child.pid + 1, "lookup", lookup_range, lookup_is_process,
                     listing=lambda: proc_listing() - {child.pid}, cgroups=set)
    result = sweep.run()
    assert result.complete and [(h.pid, h.seen_by) for h in result.hidden] == [(child.pid, ("lookup",))]


def test_a_process_that_exits_before_the_recheck_is_not_reported(child: subprocess.Popen[bytes]) -> None:
    calls = 0

    def listing() -> set[int]:
        nonlocal calls
        calls += 1
        if calls == 2:  # between the sweep and the first recheck, the process ends
            child.kill()
            child.wait()
        return proc_listing() - {child.pid}

    assert find_hidden(listing, pidfd_is_process, [child.pid], ()) == {}


def test_the_sweep_stops_at_its_budget_and_says_how_far_it_got() -> None:
    """A sweep far larger than 1 s of work (the real probes over 64 Mi pids, past any pid_max) under a 1 s
    budget: it stops, reports itself incomplete with the pid it reached, and nothing is claimed clean."""
    need_root("looking up every pid")
    top = 1 << 26
    config = make_config(rootkit={"sweep_seconds": 1})
    t0 = time.monotonic()
    found, skipped = run_one("rootkit.hidden_process", LiveHost(), config, given={PID_SWEEP: PidSweep.live(top)})
    took = time.monotonic() - t0
    assert found == [] and [s.reason for s in skipped] == ["budget"]
    detail = skipped[0].detail
    reached = int(detail.split("reached pid ")[1].split()[0])
    assert 4096 <= reached < top - 1 and f"of pid_max {top}" in detail and "rootkit.sweep_seconds" in detail
    assert took < 5


def test_the_live_sweep_covers_this_systems_pid_max() -> None:
    need_root("looking up every pid")
    result = PidSweep.live().run()
    assert result.complete and result.pid_max == pid_max() and result.reached == pid_max()
    assert result.view == "pidfd" and result.hidden == ()


def test_under_root_the_check_says_live_only() -> None:
    found, skipped = run_one("rootkit.hidden_process", RootHost(str(CLEAN)))
    assert found == [] and [s.reason for s in skipped] == ["live_only"]
