"""`hostguard history`: the scans state.db keeps for this host (or a tree), each with what it changed."""

from __future__ import annotations

import argparse
from typing import Any

from hostguard.cli.common import EXIT_OK, host_key, open_host_and_state, render_listing


def add_parser(sub: Any) -> None:
    """`history`: the recorded scans, newest first."""
    history = sub.add_parser("history", help="list the recorded scans of this host (or of a tree), newest first")
    history.add_argument("--root", metavar="DIR", help="the tree (as given to scan --root)")
    history.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    """Each kept scan with its coverage and what was new and resolved against its previous comparable scan
    (recomputed from the kept scans; unknown for a scan whose predecessor may have been pruned)."""
    from hostguard.report.diff import HistoryEntry, compare

    host, state = open_host_and_state(args)
    try:
        key = host_key(host, state)
        pruned = state.pruned_through(key)
        entries: list[HistoryEntry] = []
        for scan_id in reversed(state.scan_ids(key)):
            scan = state.scan(scan_id)
            if scan is None:
                continue
            previous = state.previous_comparable(scan_id)
            # no coverage recorded, or its comparable scan may have been pruned: the counts cannot be told
            unknown = scan.checks is None or (previous is None and pruned > 0)
            entries.append(HistoryEntry(scan, None if unknown else compare(scan, previous)))
    finally:
        state.close()
    from hostguard.report.json_report import render_history as render_json
    from hostguard.report.table import render_history as render_table

    render_listing(args.format, lambda: render_json(key, entries),
                   lambda out, width: render_table(key, entries, out, width=width))
    return EXIT_OK


ORDER = 15  # after scan, before accept
COMMANDS = {"history": run}
