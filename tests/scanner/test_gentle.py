"""The scan's gentleness settings act on the worker processes: their CPU niceness, their I/O class (read back
from the kernel with ioprio_get), and the pace a rate limit asks for."""

from __future__ import annotations

import ctypes
import json
import os
import platform
from pathlib import Path

import pytest

from hostguard.scanner import engine, rules
from tests.scanner.helpers import write_pack

IOPRIO_GET = {"x86_64": 252, "aarch64": 31}


def _in_worker(tmp_path: Path, nice: int, ionice: str) -> dict[str, int]:
    """Run a worker's set-up in a forked child (so this process keeps its priorities); what the kernel says."""
    compiled = rules.load([str(write_pack(tmp_path / "pack"))], None)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            engine._worker_init(compiled.serialized(), 1 << 20, 5, nice, ionice, 0.0)
            libc = ctypes.CDLL(None, use_errno=True)
            prio = int(libc.syscall(IOPRIO_GET[platform.machine()], 1, 0))  # IOPRIO_WHO_PROCESS, this process
            os.write(write, json.dumps({"nice": os.getpriority(os.PRIO_PROCESS, 0), "io_class": prio >> 13}).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as fh:
        return json.loads(fh.read())  # type: ignore[no-any-return]


@pytest.mark.skipif(platform.machine() not in IOPRIO_GET, reason="ioprio_get's number is known for x86_64 and aarch64")
def test_workers_run_nicer_and_in_the_idle_io_class(tmp_path: Path) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    got = _in_worker(tmp_path, nice=base + 7, ionice="idle")
    assert got == {"nice": base + 7, "io_class": 3}


@pytest.mark.skipif(platform.machine() not in IOPRIO_GET, reason="ioprio_get's number is known for x86_64 and aarch64")
def test_best_effort_and_no_niceness_change(tmp_path: Path) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    got = _in_worker(tmp_path, nice=0, ionice="best-effort")
    assert got == {"nice": base, "io_class": 2}


def test_the_pace_keeps_reads_within_the_rate() -> None:
    mb = 1_000_000
    assert engine.pace(10 * mb, 5 * mb, 1.0) == pytest.approx(1.0)  # 10 MB at 5 MB/s take 2 s: 1 s more
    assert engine.pace(10 * mb, 5 * mb, 2.5) == 0.0  # behind the allowance: no wait
    assert engine.pace(10 * mb, 0.0, 0.0) == 0.0  # no limit
