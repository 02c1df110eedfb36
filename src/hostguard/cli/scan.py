"""`hostguard scan`: run the checks, render the report (to stdout or ``-o FILE``), choose the exit code.

With ``--diff`` the report also says what changed since the previous comparable scan (``report/diff.py``)
and the exit code counts only the NEW findings: the owner's morning question is "what is new", and a
known, still-open finding should not page anyone twice.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from hostguard.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    SEVERITIES,
    UsageError,
    load_config,
    open_host_and_state,
    parse_only,
    progress_bar,
)

if TYPE_CHECKING:
    from hostguard.engine.runner import ScanOutcome
    from hostguard.report.diff import ScanDiff

FORMATS = ("table", "json", "sarif", "html")


def add_parser(sub: Any) -> None:
    """`scan`: audit this host (or a tree)."""
    scan = sub.add_parser("scan", help="audit this host (or a tree with --root)")
    scan.add_argument("--root", metavar="DIR", help="scan a mounted image or host tree instead of this host")
    scan.add_argument("--only", metavar="FAMILY,...", help="run only these check families (or check ids)")
    scan.add_argument("--format", choices=FORMATS, default="table")
    scan.add_argument("-o", "--output", metavar="FILE",
                      help="write the report to FILE (replaced atomically) instead of standard output")
    scan.add_argument("--diff", action="store_true",
                      help="also show what is new, resolved and still open since the previous comparable scan; "
                           "the exit code then counts only new findings")
    scan.add_argument("--fail-on", choices=SEVERITIES, default=None,
                      help="exit 1 when a finding at or above this severity exists (default: high)")


def run(args: argparse.Namespace) -> int:
    from hostguard.engine.registry import RegistryError, ScanConfig
    from hostguard.engine.runner import run_scan
    from hostguard.findings import Severity
    from hostguard.report.diff import compare

    config = load_config(args.config)
    fail_on = Severity(args.fail_on or config[ScanConfig].fail_on)
    only = parse_only(args.only)
    output = _check_output(args.output)
    host, state = open_host_and_state(args)
    diff: ScanDiff | None = None
    try:
        with progress_bar(sys.stderr.isatty()) as progress:
            outcome = run_scan(host, config, state, only=only, progress=progress,
                               root_label=os.path.abspath(args.root) if args.root else None)
        if args.diff:
            current = state.scan(outcome.scan_id)  # just recorded; pruning keeps at least the latest two
            if current is not None:
                diff = compare(current, state.previous_comparable(outcome.scan_id))
    except RegistryError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        state.close()
    report = outcome.report
    tty = output is None and sys.stdout.isatty()
    text = _render(args.format, outcome, diff, tty)
    if output is None:
        sys.stdout.write(text)
    else:
        _write_atomically(output, text)
    if diff is not None:
        worst = max((Severity(f.severity).rank for f in diff.new), default=-1)
    else:
        worst = max((f.severity.rank for f in report.findings), default=-1)
    return EXIT_FINDINGS if worst >= fail_on.rank else EXIT_OK


def _render(fmt: str, outcome: ScanOutcome, diff: ScanDiff | None, tty: bool) -> str:
    """The report in ``fmt`` as text: the same bytes whether it then goes to stdout (piped) or to a file."""
    report = outcome.report
    if fmt == "json":
        from hostguard.report.json_report import render as render_json

        return render_json(report, {"family_seconds": outcome.family_seconds, "suppressed": outcome.suppressed,
                                    "accepted": outcome.accepted}, diff=diff)
    if fmt == "sarif":
        from hostguard.report.sarif import render as render_sarif

        return render_sarif(report)
    if fmt == "html":
        from hostguard.report.html import render as render_html  # type: ignore[import-not-found,unused-ignore]

        return str(render_html(report, suppressed=outcome.suppressed, accepted=outcome.accepted))
    from hostguard.report.table import render as render_table

    buffer = io.StringIO()
    render_table(report, buffer, color=tty, width=None if tty else 120,  # a terminal's own width; plain elsewhere
                 suppressed=outcome.suppressed, accepted=outcome.accepted, diff=diff)
    return buffer.getvalue()


def _check_output(path: str | None) -> str | None:
    """Refuse an ``-o`` that cannot be written before spending minutes on the scan."""
    if path is None:
        return None
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"-o {path}: is a directory")
    if not os.path.isdir(parent):
        raise UsageError(f"-o {path}: no such directory {parent}")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"-o {path}: directory {parent} is not writable")
    return path


def _write_atomically(path: str, text: str) -> None:
    """Write beside the target and rename over it: a reader (a browser, a cron mail) never sees half a report,
    and a failed write leaves the previous report in place. A new file gets 0600: reports name weak spots."""
    parent = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600
    except OSError as exc:
        raise UsageError(f"-o {path}: {exc.strerror}") from exc
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".hostguard-", suffix=".tmp", dir=parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise UsageError(f"-o {path}: {exc.strerror or exc}") from exc


ORDER = 10  # where its commands stand in `hostguard --help`
COMMANDS = {"scan": run}
