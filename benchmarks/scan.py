"""How long `hostguard scan` takes on this host, per family, without the weak-password family.

Anchor (issue #2): the whole scan without weak passwords finishes in under 3 s on this machine.
Run: `make bench` (or .venv/bin/python benchmarks/scan.py [--root DIR] [--runs N]).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from hostguard.config import build
from hostguard.engine.registry import default_registry
from hostguard.engine.runner import run_scan
from hostguard.host.base import open_host
from hostguard.store.state import StateStore

ANCHOR_SECONDS = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", help="scan a host tree instead of this host")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    registry = default_registry()
    # weak_passwords spends its time budget by design; integrity hashes every packaged file and has its own
    # benchmark (benchmarks/integrity.py) against its own anchor
    families = [f for f in registry.families if f not in ("weak_passwords", "integrity")]
    config = build({}, registry.schema())
    totals: list[float] = []
    per_family: dict[str, list[float]] = {f: [] for f in families}
    with tempfile.TemporaryDirectory() as state_dir:
        for _ in range(args.runs):
            state = StateStore(state_dir)
            t0 = time.perf_counter()
            outcome = run_scan(open_host(args.root), config, state, only=families)
            totals.append(time.perf_counter() - t0)
            state.close()
            for family in families:
                per_family[family].append(outcome.family_seconds.get(family, 0.0))
    target = args.root or "this host"
    print(f"hostguard scan of {target}, {args.runs} runs, families: {', '.join(families)}")
    for family in families:
        print(f"  {family:<16} median {statistics.median(per_family[family]) * 1000:8.1f} ms")
    print(f"  {'total':<16} median {statistics.median(totals):8.3f} s   (anchor: < {ANCHOR_SECONDS:.1f} s)"
          f"   min {min(totals):.3f} s  max {max(totals):.3f} s")
    print(f"findings in last run: {len(outcome.report.findings)}, skipped: {len(outcome.report.skipped)}")


if __name__ == "__main__":
    main()
