"""How long the live families (processes, connections, rootkit) take on a host with 500 more processes.

Anchor (issue #9): the live families together finish in under 2 s on a host with 500 processes. This starts
500 processes (killed at the end, whatever happens): `sleep`, and `--scripts` of them `bash` running a script
from a temp dir, which processes.deleted_script looks at closely (working directory, open files); then times
`hostguard scan --only processes,connections,rootkit` (the rootkit sweep asks every pid up to pid_max).
Run: .venv/bin/python benchmarks/processes.py [--count N] [--scripts N] [--runs N] [--only FAMILIES].
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import time

from hostguard.config import Config, build
from hostguard.engine.registry import default_registry
from hostguard.engine.runner import ScanOutcome, run_scan
from hostguard.host.base import LiveHost
from hostguard.store.state import StateStore

ANCHOR_SECONDS = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--scripts", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="processes,connections,rootkit")
    args = parser.parse_args()
    config = build({}, default_registry().schema())
    sleeps: list[subprocess.Popen[bytes]] = []
    totals: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        script = os.path.join(scratch, "job.sh")
        with open(script, "w", encoding="ascii") as fh:
            fh.write("sleep 120\n")
        try:
            for i in range(args.count):
                argv = ["bash", script] if i < args.scripts else ["sleep", "120"]
                sleeps.append(subprocess.Popen(argv))
            seen = len([p for p in os.listdir("/proc") if p.isdigit()])
            outcome = _time(config, totals, args.runs, args.only.split(","))
        finally:
            for proc in sleeps:
                proc.send_signal(signal.SIGKILL)
            for proc in sleeps:
                proc.wait()
    print(f"hostguard scan --only {args.only}, {seen} processes running ({args.scripts} of ours run a script), "
          f"{args.runs} runs")
    print(f"  median {statistics.median(totals):.3f} s   (anchor: < {ANCHOR_SECONDS:.1f} s for all live families)"
          f"   min {min(totals):.3f} s  max {max(totals):.3f} s")
    print(f"findings in last run: {len(outcome.report.findings)}, skipped: {len(outcome.report.skipped)}")


def _time(config: Config, totals: list[float], runs: int, only: list[str]) -> ScanOutcome:
    """Scan ``runs`` times, appending each duration to ``totals``; the last scan's outcome."""
    with tempfile.TemporaryDirectory() as state_dir:
        for _ in range(runs):
            state = StateStore(state_dir)
            t0 = time.perf_counter()
            outcome = run_scan(LiveHost(), config, state, only=only)
            totals.append(time.perf_counter() - t0)
            state.close()
    return outcome


if __name__ == "__main__":
    main()
