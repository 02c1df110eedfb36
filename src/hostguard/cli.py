"""Command line: parse arguments, call one function, render, choose the exit code.

Exit codes of scan-like commands: 0 nothing at or above ``--fail-on``, 1 findings at or above it,
2 usage, input or configuration error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from hostguard import __version__

if TYPE_CHECKING:
    from hostguard.config import Config
    from hostguard.host.base import Host
    from hostguard.store.state import StateStore

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
SEVERITIES = ("critical", "high", "medium", "low", "info")


class UsageError(Exception):
    """Bad arguments or input: exit 2 with one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (global options before the subcommand)."""
    parser = _Parser(prog="hostguard", description="Host-security audit and agent for Linux servers.")
    parser.add_argument("--version", action="version", version=f"hostguard {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML config (default /etc/hostguard/hostguard.toml if present)")
    parser.add_argument("--state", metavar="DIR", help="state directory (default /var/lib/hostguard as root)")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    scan = sub.add_parser("scan", help="audit this host (or a tree with --root)")
    scan.add_argument("--root", metavar="DIR", help="scan a mounted image or host tree instead of this host")
    scan.add_argument("--only", metavar="FAMILY,...", help="run only these check families (or check ids)")
    scan.add_argument("--format", choices=("table", "json", "sarif"), default="table")
    scan.add_argument("--fail-on", choices=SEVERITIES, default=None,
                      help="exit 1 when a finding at or above this severity exists (default: high)")
    accept = sub.add_parser("accept", help="accept findings by fingerprint: later scans leave them out")
    accept.add_argument("fingerprints", nargs="+", metavar="FINGERPRINT",
                        help="a finding's fingerprint as a report shows it (or its first 8+ hex digits)")
    accept.add_argument("--reason", default="", help="why it is fine here (kept in the audit log)")
    accept.add_argument("--undo", action="store_true", help="take the acceptance back: the finding is reported again")
    accept.add_argument("--root", metavar="DIR", help="the tree whose scans reported it (as given to scan --root)")
    accepted = sub.add_parser("accepted", help="list the accepted findings of this host (or of a tree)")
    accepted.add_argument("--root", metavar="DIR", help="the tree (as given to scan --root)")
    accepted.add_argument("--format", choices=("table", "json"), default="table")
    firewall = sub.add_parser("firewall", help="what the firewall lets through")
    firewall_sub = firewall.add_subparsers(dest="firewall_command", parser_class=_Parser)
    reach = firewall_sub.add_parser("reach", help="who can reach each listening port of this host (live)")
    reach.add_argument("--format", choices=("table", "json"), default="table")
    checks = sub.add_parser("checks", help="list every check: id, severity, what it looks at, why")
    checks.add_argument("--format", choices=("table", "json"), default="table")
    config = sub.add_parser("config", help="the configuration hostguard would use")
    config_sub = config.add_subparsers(dest="config_command", parser_class=_Parser)
    show = config_sub.add_parser("show", help="every setting's effective value and where it came from")
    show.add_argument("--format", choices=("toml", "json"), default="toml")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hostguard`` console script."""
    try:
        return _main(argv)
    except UsageError as exc:
        print(f"hostguard: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("hostguard: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return EXIT_OK
    except Exception as exc:
        from hostguard.engine.registry import RegistryError

        if isinstance(exc, RegistryError):  # a family module declared wrongly: one line, not a traceback
            print(f"hostguard: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        raise


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "scan":
        return _scan(args)
    if args.command in ("accept", "accepted"):
        return _accept(args) if args.command == "accept" else _accepted(args)
    if args.command == "checks":
        return _checks(args)
    if args.command == "firewall":
        return _firewall(args)
    if args.command == "config":
        return _config(args)
    raise UsageError("a command is required: scan, accept, accepted, firewall, checks or config "
                     "(see hostguard --help)")


def _load_config(path: str | None) -> Config:
    """The config, with its suppress rules checked against the registry (a typo'd id is an error, not a no-op)."""
    from hostguard.config import ConfigError, load
    from hostguard.engine.registry import default_registry
    from hostguard.engine.suppress import SuppressConfig, SuppressError, resolve

    registry = default_registry()
    try:
        config = load(path, registry.schema())
        resolve(config[SuppressConfig].rules, registry.canonical, registry.families)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    except SuppressError as exc:
        raise UsageError(f"config {path or '(defaults)'}: {exc}") from exc
    return config


@contextlib.contextmanager
def _progress_bar(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: dict[str, Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(file=sys.stderr), transient=True) as progress:
        def update(check_id: str, done: int, total: int) -> None:
            if check_id not in tasks:
                tasks[check_id] = progress.add_task(check_id, total=total)
            progress.update(tasks[check_id], completed=done, total=total)

        yield update


def _scan(args: argparse.Namespace) -> int:
    from hostguard.engine.registry import RegistryError, ScanConfig
    from hostguard.engine.runner import run_scan
    from hostguard.findings import Severity

    config = _load_config(args.config)
    fail_on = Severity(args.fail_on or config[ScanConfig].fail_on)
    only = None
    if args.only is not None:
        only = [f.strip() for f in args.only.split(",") if f.strip()]
        if not only:
            raise UsageError("--only needs at least one family or check id (see hostguard checks)")
    host, state = _open_host_and_state(args)
    try:
        with _progress_bar(sys.stderr.isatty()) as progress:
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


def _open_host_and_state(args: argparse.Namespace) -> tuple[Host, StateStore]:
    """The host (this one, or the tree ``--root`` names) and the state directory, or a usage error."""
    from hostguard.host.base import HostError, open_host
    from hostguard.store.state import StateError, StateStore, default_state_dir

    if args.root is not None and not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root}: " + ("not a directory" if os.path.exists(args.root) else
                                                   "no such directory"))
    try:
        host = open_host(args.root)
        return host, StateStore(args.state or default_state_dir())
    except (HostError, StateError) as exc:
        raise UsageError(str(exc)) from exc


def _host_key(host: Host, state: StateStore) -> str:
    """The host key scans record findings under: accepting is per host, like the scans it applies to."""
    from hostguard.findings import HostId

    return HostId(host.machine_id(), state.state_uuid(), host.hostname()).id


def _accept(args: argparse.Namespace) -> int:
    """Accept (or with ``--undo`` take back) findings of this host by fingerprint, all or none."""
    from hostguard.engine.runner import now_iso
    from hostguard.engine.suppress import FingerprintError, resolve_fingerprints
    from hostguard.findings import readable

    host, state = _open_host_and_state(args)
    reason = readable(args.reason).replace("\n", " ").strip()
    try:
        key = _host_key(host, state)
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


def _accepted(args: argparse.Namespace) -> int:
    host, state = _open_host_and_state(args)
    try:
        key = _host_key(host, state)
        entries = state.accepted(key)
    finally:
        state.close()
    if args.format == "json":
        from hostguard.report.json_report import render_accepted as render_json

        sys.stdout.write(render_json(key, entries))
    else:
        from hostguard.report.table import render_accepted as render_table

        render_table(key, entries, sys.stdout, width=None if sys.stdout.isatty() else 140)
    return EXIT_OK


def _checks(args: argparse.Namespace) -> int:
    from hostguard.engine.registry import default_registry
    from hostguard.report.checks_listing import render_json, render_table

    rules = default_registry().rules()
    if args.format == "json":
        sys.stdout.write(render_json(rules))
    else:
        render_table(rules, sys.stdout, width=None if sys.stdout.isatty() else 140)
    return EXIT_OK


def _firewall(args: argparse.Namespace) -> int:
    """Who can reach each port: the answer the firewall findings carry as evidence, for every port."""
    if args.firewall_command != "reach":
        raise UsageError("firewall needs a subcommand: reach")
    from hostguard.engine.facts import Facts
    from hostguard.host.base import LiveHost, Unavailable
    from hostguard.host.firewall import FIREWALL, REACH
    from hostguard.report.reach_table import render_json, render_table

    facts = Facts(LiveHost(), _load_config(args.config))
    try:
        firewall = facts.get(FIREWALL)
        entries = [{**pr.key(), **pr.evidence(firewall.sources, firewall.notes)} for pr in facts.get(REACH)]
    except Unavailable as exc:
        print(f"hostguard: firewall reach: {exc.detail}", file=sys.stderr)
        return EXIT_ERROR
    if args.format == "json":
        sys.stdout.write(render_json(entries))
    else:
        tty = sys.stdout.isatty()
        render_table(entries, sys.stdout, color=tty, width=None if tty else 140)
    return EXIT_OK


def _config(args: argparse.Namespace) -> int:
    if args.config_command != "show":
        raise UsageError("config needs a subcommand: show")
    from hostguard.report.config_view import render_json, render_toml

    config = _load_config(args.config)
    sys.stdout.write(render_json(config) if args.format == "json" else render_toml(config))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
