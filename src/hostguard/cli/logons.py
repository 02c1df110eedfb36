"""`hostguard logons parse`: log lines to authentication attempts, one JSON object a line.

The output is a stable contract (DESIGN.md): ``{"file", "line", "service", "outcome", "count", "user", "ip",
"port", "method", "time"}``; the values are documented in docs/logons.md. Lines the parsers skip or repair
(too long, NUL bytes, not UTF-8, a truncated compressed file) are counted and summed up on stderr, one line
per source, whenever there were any (always with ``--stats``): stdout stays pure JSON Lines for the tools
that read it. Exit 0 when every source was read (damaged lines are expected in real logs, and counted),
2 for a missing or unreadable file or a journal that could not be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from hostguard.cli.common import EXIT_OK, Parser, UsageError


def add_parser(sub: Any) -> None:
    """`logons parse`: log files or the journal to attempts (JSON Lines)."""
    logons = sub.add_parser("logons", help="logon events from the logs of sshd, FTP, mail, databases, su/sudo/login")
    logons_sub = logons.add_subparsers(dest="logons_command", parser_class=Parser)
    parse = logons_sub.add_parser("parse", help="print one JSON object per authentication attempt in the given logs")
    parse.add_argument("files", nargs="*", metavar="FILE",
                       help="log files: plain, rotated, gzip/bzip2/xz, `journalctl -o json` or `-o short*` output")
    parse.add_argument("--format", choices=("jsonl",), default="jsonl")
    parse.add_argument("--root", metavar="DIR",
                       help="a mounted image: its time zone (and, with --journal, its journal) is used")
    parse.add_argument("--reference", metavar="TIME",
                       help="ISO time the logs end by, for the year of classic syslog stamps (default: each file's mtime)")
    parse.add_argument("--program", metavar="NAME",
                       help="lines in no known format are messages of this program (e.g. sshd for `sshd -E FILE`)")
    parse.add_argument("--journal", action="store_true",
                       help="read the journal through journalctl (this host's, or the --root tree's)")
    parse.add_argument("--journal-file", action="append", default=[], metavar="FILE",
                       help="read this journal file through `journalctl --file` (repeatable)")
    parse.add_argument("--since", metavar="TIME", help="with --journal: only entries since TIME (journalctl syntax)")
    parse.add_argument("--stats", action="store_true", help="always print each source's line counts on stderr")


def run(args: argparse.Namespace) -> int:
    """Parse the given sources in order and print their events."""
    if args.logons_command != "parse":
        raise UsageError("logons needs a subcommand: parse")
    import json
    from datetime import UTC, datetime

    from hostguard.host.base import HostError, open_host
    from hostguard.logons.parse import parse_lines
    from hostguard.logons.sources import SourceStats, check_log, journal_argv, journal_lines, open_log, read_lines
    from hostguard.logons.timestamps import Clock, host_timezone

    journal = args.journal or bool(args.journal_file)
    if not args.files and not journal:
        raise UsageError("logons parse needs at least one FILE (or --journal / --journal-file)")
    if args.root is not None and not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root}: not a directory")
    if args.since and not journal:
        raise UsageError("--since applies to --journal / --journal-file only")
    reference = None
    if args.reference:
        try:
            reference = datetime.fromisoformat(args.reference)
        except ValueError as exc:
            raise UsageError(f"--reference {args.reference!r}: not an ISO 8601 time") from exc
    try:
        zone, _ = host_timezone(open_host(args.root))
        for name in args.files:  # every file checked before any output: bad input is exit 2, not half a run
            check_log(name)
    except HostError as exc:
        raise UsageError(str(exc)) from exc
    if reference is not None and reference.tzinfo is None:
        reference = reference.replace(tzinfo=zone)
    out = sys.stdout
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    for name in args.files:
        stats = SourceStats(name)
        try:
            stream = open_log(name)
            mtime = datetime.fromtimestamp(os.stat(name).st_mtime, UTC)
        except (HostError, OSError) as exc:
            raise UsageError(str(exc)) from exc
        with stream:
            clock = Clock(zone, reference or mtime)
            for event in parse_lines(read_lines(stream, stats), name, clock, stats, args.program):
                out.write(dumps(event.to_json()) + "\n")
        _summary(stats, args.stats)
    if journal:
        label = "journal" if not args.journal_file else ",".join(args.journal_file)
        stats = SourceStats(label)
        try:
            argv = journal_argv(args.root if args.journal else None, args.journal_file, args.since)
            clock = Clock(zone, reference or datetime.now(UTC))
            for event in parse_lines(journal_lines(argv, stats), label, clock, stats, args.program):
                out.write(dumps(event.to_json()) + "\n")
        except HostError as exc:
            raise UsageError(str(exc)) from exc
        _summary(stats, args.stats)
    out.flush()
    return EXIT_OK


def _summary(stats: Any, always: bool) -> None:
    if always or stats.damaged() or stats.notes:
        print(f"hostguard: logons parse: {stats.summary()}", file=sys.stderr)


ORDER = 47  # where its commands stand in `hostguard --help`
COMMANDS = {"logons": run}
