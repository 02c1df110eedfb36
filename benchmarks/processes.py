"""How long the processes family takes on a host with 500 more processes than it has now.

Anchor (issue #9): the live families together finish in under 2 s on a host with 500 processes. This starts
500 `sleep` processes (killed at the end, whatever happens), then times `hostguard scan --only processes`.
Run: .venv/bin/python benchmarks/processes.py [--count N] [--runs N].
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import time

from hostguard.config import build
from hostguard.engine.registry import default_registry
from hostguard.engine.runner import run_scan
from hostguard.host.base import LiveHost
from hostguard.store.state import StateStore

ANCHOR_SECONDS = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    config = build({}, default_registry().schema())
    sleeps: list[subprocess.Popen[bytes]] = []
    totals: list[float] = []
    try:
        for _ in range(args.count):
            sleeps.append(subprocess.Popen(["sleep", "120"]))
        seen = len([p for p in os.listdir("/proc") if p.isdigit()])
        with tempfile.TemporaryDirectory() as state_dir:
            for _ in range(args.runs):
                state = StateStore(state_dir)
                t0 = time.perf_counter()
                outcome = run_scan(LiveHost(), config, state, only=["processes"])
                totals.append(time.perf_counter() - t0)
                state.close()
    finally:
        for proc in sleeps:
            proc.send_signal(signal.SIGKILL)
        for proc in sleeps:
            proc.wait()
    print(f"hostguard scan --only processes, {seen} processes running, {args.runs} runs")
    print(f"  median {statistics.median(totals):.3f} s   (anchor: < {ANCHOR_SECONDS:.1f} s for all live families)"
          f"   min {min(totals):.3f} s  max {max(totals):.3f} s")
    print(f"findings in last run: {len(outcome.report.findings)}, skipped: {len(outcome.report.skipped)}")


if __name__ == "__main__":
    main()
