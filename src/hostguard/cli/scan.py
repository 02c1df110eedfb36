"""`hostguard scan`: run the checks, render the report, choose the exit code."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from hostguard.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    SEVERITIES,
    UsageError,
    load_config,
    open_host_and_state,
    progress_bar,
)


def add_parser(sub: Any) -> None:
    """`scan`: audit this host (or a tree)."""
    scan = sub.add_parser("scan", help="audit this host (or a tree with --root)")
    scan.add_argument("--root", metavar="DIR", help="scan a mounted image or host tree instead of this host")
    scan.add_argument("--only", metavar="FAMILY,...", help="run only these check families (or check ids)")
    scan.add_argument("--format", choices=("table", "json", "sarif"), default="table")
    scan.add_argument("--fail-on", choices=SEVERITIES, default=None,
                      help="exit 1 when a finding at or above this severity exists (default: high)")

def run(args: argparse.Namespace) -> int:
    from hostguard.engine.registry import RegistryError, ScanConfig
    from hostguard.engine.runner import run_scan
    from hostguard.findings import Severity

    config = load_config(args.config)
    fail_on = Severity(args.fail_on or config[ScanConfig].fail_on)
    only = None
    if args.only is not None:
        only = [f.strip() for f in args.only.split(",") if f.strip()]
        if not only:
            raise UsageError("--only needs at least one family or check id (see hostguard checks)")
    host, state = open_host_and_state(args)
    try:
        with progress_bar(sys.stderr.isatty()) as progress:
            outcome = run_scan(host, config, state, only=only, progress=progress,
                               root_label=os.path.abspath(args.root) if args.root else None)
    except RegistryError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        state.close()
    report = outcome.report
    if args.format == "json":
        from hostguard.report.json_report import render as render_json

        sys.stdout.write(render_json(report, {"family_seconds": outcome.family_seconds,
                                              "suppressed": outcome.suppressed, "accepted": outcome.accepted}))
    elif args.format == "sarif":
        from hostguard.report.sarif import render as render_sarif

        sys.stdout.write(render_sarif(report))
    else:
        from hostguard.report.table import render as render_table

        tty = sys.stdout.isatty()
        render_table(report, sys.stdout, color=tty, width=None if tty else 120,  # a terminal's own width
                     suppressed=outcome.suppressed, accepted=outcome.accepted)
    worst = max((f.severity.rank for f in report.findings), default=-1)
    return EXIT_FINDINGS if worst >= fail_on.rank else EXIT_OK


ORDER = 10  # where its commands stand in `hostguard --help`
COMMANDS = {"scan": run}
