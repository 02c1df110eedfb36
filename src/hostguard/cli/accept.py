"""`hostguard accept` / `hostguard accepted`: accepted findings leave later scans (and their exit code)."""

from __future__ import annotations

import argparse
from typing import Any

from hostguard.cli.common import EXIT_OK, UsageError, host_key, open_host_and_state, render_listing


def add_parser(sub: Any) -> None:
    """`accept` and `accepted`: findings the owner has judged fine on this host."""
    accept = sub.add_parser("accept", help="accept findings by fingerprint: later scans leave them out")
    accept.add_argument("fingerprints", nargs="+", metavar="FINGERPRINT",
                        help="a finding's fingerprint as a report shows it (or its first 8+ hex digits)")
    accept.add_argument("--reason", default="", help="why it is fine here (kept in the audit log)")
    accept.add_argument("--undo", action="store_true", help="take the acceptance back: the finding is reported again")
    accept.add_argument("--root", metavar="DIR", help="the tree whose scans reported it (as given to scan --root)")
    accepted = sub.add_parser("accepted", help="list the accepted findings of this host (or of a tree)")
    accepted.add_argument("--root", metavar="DIR", help="the tree (as given to scan --root)")
    accepted.add_argument("--format", choices=("table", "json"), default="table")

def run_accept(args: argparse.Namespace) -> int:
    """Accept (or with ``--undo`` take back) findings of this host by fingerprint, all or none."""
    from hostguard.engine.runner import now_iso
    from hostguard.engine.suppress import FingerprintError, resolve_fingerprints
    from hostguard.findings import readable

    host, state = open_host_and_state(args)
    reason = readable(args.reason).replace("\n", " ").strip()
    try:
        key = host_key(host, state)
        if args.undo:
            accepted = {a.fingerprint for a in state.accepted(key)}
            fps = resolve_fingerprints(args.fingerprints, accepted, "is accepted for this host (see hostguard accepted)")
            state.unaccept(key, fps, reason, now_iso())
            for fp in fps:
                print(f"taken back: {fp} (reported again from the next scan)")
            return EXIT_OK
        seen = state.findings_seen(key)
        where = "in the recorded scans of this host" + (" (tree " + args.root + ")" if args.root else
                                                         " (a tree's findings need --root DIR)")
        fps = resolve_fingerprints(args.fingerprints, seen, where)
        state.accept(key, [seen[fp] for fp in fps], reason, now_iso())
        for fp in fps:
            print(f"accepted: {fp} {seen[fp].check_id}: {seen[fp].title}")
        return EXIT_OK
    except FingerprintError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        state.close()


def run_accepted(args: argparse.Namespace) -> int:
    host, state = open_host_and_state(args)
    try:
        key = host_key(host, state)
        entries = state.accepted(key)
    finally:
        state.close()
    from hostguard.report.json_report import render_accepted as render_json
    from hostguard.report.table import render_accepted as render_table

    render_listing(args.format, lambda: render_json(key, entries),
                   lambda out, width: render_table(key, entries, out, width=width))
    return EXIT_OK


ORDER = 20  # where its commands stand in `hostguard --help`
COMMANDS = {"accept": run_accept, "accepted": run_accepted}
