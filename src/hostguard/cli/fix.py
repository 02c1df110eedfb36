"""`hostguard fix`: one-command fixes with backups, validation, rollback and undo (see respond/fix.py)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from hostguard.cli.common import SEVERITIES, UsageError, host_key, load_config, open_host_and_state, open_state, parse_only


def add_parser(sub: Any) -> None:
    """`fix`: apply findings' remediation steps, and undo, confirm or list fixes."""
    fix = sub.add_parser("fix", help="fix findings by fingerprint (or --all): diff first, backups, validation, "
                                     "rollback, undo")
    fix.add_argument("fingerprints", nargs="*", metavar="FINGERPRINT",
                     help="a finding's fingerprint as a report shows it (or its first 8+ hex digits)")
    fix.add_argument("--all", action="store_true", help="every finding with steps at or above --severity")
    fix.add_argument("--severity", choices=SEVERITIES, default="low", help="with --all: the lowest severity fixed "
                                                                           "(default low)")
    fix.add_argument("--root", metavar="DIR", help="fix a mounted image or host tree instead of this host")
    fix.add_argument("--only", metavar="FAMILY,...", help="scan (and fix) only these families or check ids")
    fix.add_argument("--dry-run", action="store_true", help="show the diffs and commands, change nothing")
    fix.add_argument("--yes", action="store_true", help="do not ask before applying")
    fix.add_argument("--kill", action="store_true",
                     help="also carry out the findings' kill actions (live only; pid, start time and exe "
                          "re-checked through a pidfd; audited; not reversible)")
    fix.add_argument("--kill-grace", type=float, default=None, metavar="SECONDS", help=argparse.SUPPRESS)
    fix.add_argument("--undo", metavar="ID", help="restore the files a fix changed (refused if changed since)")
    fix.add_argument("--confirm", metavar="ID", help="keep a live SSH/firewall fix: cancel its timed rollback "
                                                      "(run it from a new session)")
    fix.add_argument("--list", action="store_true", help="list the fixes made, with their status")
    fix.add_argument("--rollback-after", type=int, metavar="SECONDS",
                     help="arm the timed rollback after this many seconds (default 120 for live SSH and "
                          "firewall fixes; on a --root tree only when given)")
    fix.add_argument("--timer", action="store_true", help=argparse.SUPPRESS)  # the armed rollback running


def run(args: argparse.Namespace) -> int:
    """Dispatch to fixing, undoing, confirming or listing; a refusal is one line and exit 2."""
    from hostguard.respond.fix import FixError

    modes = [bool(args.fingerprints) or args.all, args.undo is not None, args.confirm is not None, args.list]
    if sum(modes) != 1:
        raise UsageError("fix needs exactly one of: FINGERPRINT..., --all, --undo ID, --confirm ID, --list")
    if args.fingerprints and args.all:
        raise UsageError("give fingerprints or --all, not both")
    if args.kill and not modes[0]:
        raise UsageError("--kill goes with FINGERPRINT... or --all")
    if args.kill and args.root is not None:
        raise UsageError("--kill stops running processes: live only, not with --root")
    if args.kill_grace is not None and not 0 <= args.kill_grace <= 300:
        raise UsageError("--kill-grace must be between 0 and 300 seconds")
    if args.rollback_after is not None and not 1 <= args.rollback_after <= 86400:
        raise UsageError("--rollback-after must be between 1 and 86400 seconds")
    try:
        if modes[0]:
            return _fix(args)
        return _records(args)
    except FixError as exc:
        raise UsageError(str(exc)) from exc


def _say(line: str) -> None:
    print(line, flush=True)


def _ask(question: str) -> bool:
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _fix(args: argparse.Namespace) -> int:
    from hostguard.engine.registry import RegistryError
    from hostguard.findings import Severity
    from hostguard.respond.fix import Fixer, FixSettings

    if not (args.yes or args.dry_run or sys.stdin.isatty()):
        raise UsageError("fix asks before changing anything: pass --yes (or --dry-run to only look) "
                         "when not on a terminal")
    only = parse_only(args.only)
    config = load_config(args.config)
    host, state = open_host_and_state(args)
    try:
        from hostguard.checks.vulns import VulnsConfig

        settings = FixSettings(str(state.directory), args.root, args.dry_run, args.yes, args.rollback_after,
                               args.config, kill=args.kill, upgrade_env=config[VulnsConfig].upgrade_env)
        if args.kill_grace is not None:
            settings = replace(settings, kill_grace=args.kill_grace)
        fixer = Fixer(host, config, state, host_key(host, state), settings, _say, _ask)
        return fixer.run(args.fingerprints, args.all, Severity(args.severity), only)
    except RegistryError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        state.close()


def _records(args: argparse.Namespace) -> int:
    from hostguard.respond.fix import confirm, listing, undo

    state = open_state(args)
    try:
        directory = str(state.directory)
        if args.list:
            for line in listing(directory):
                _say(line)
            return 0
        if args.undo is not None:
            return undo(state, directory, args.undo, _say, by_timer=args.timer)
        return confirm(state, directory, args.confirm, _say)
    finally:
        state.close()


ORDER = 30  # where its commands stand in `hostguard --help`
COMMANDS = {"fix": run}
