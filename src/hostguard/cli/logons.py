"""`hostguard logons parse|ingest|report|baseline`: log lines to attempts, the logon store and its alerts.

`parse` prints attempts, one JSON object a line.

The output is a stable contract (DESIGN.md): ``{"file", "line", "service", "outcome", "count", "user", "ip",
"port", "method", "time"}``; the values are documented in docs/logons.md. Lines the parsers skip or repair
(too long, NUL bytes, not UTF-8, a truncated compressed file) are counted and summed up on stderr, one line
per source, whenever there were any (always with ``--stats``): stdout stays pure JSON Lines for the tools
that read it. Exit 0 when every source was read (damaged lines are expected in real logs, and counted),
2 for a missing or unreadable file or a journal that could not be read.

`ingest` stores the attempts of files or the journal in state.db (each once, however often and under whatever
rotated name a file is read again), runs the detectors over the new ones with their windows rebuilt from
the store, stores and prints the alerts they raise; exit 1 when one is at or above ``--fail-on``. `report`
sums up what the store holds since a time; `baseline` lists, approves and forgets the values of the approved
logon baseline. Detector settings are the ``[detect]`` config section (docs/logons.md).

`follow` is `ingest` that does not end (``logons/follow.py``): new lines and journal entries stored as they
come, the detectors fed one event at a time, each new alert printed once; ``--block`` blocks brute-force
sources (longer for repeat offenders, never the owner nor the approved baseline) and verifies the nftables
table on a timer. SIGINT/SIGTERM end it with 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from hostguard.cli.common import EXIT_FINDINGS, EXIT_OK, SEVERITIES, Parser, UsageError

if TYPE_CHECKING:
    from hostguard.detect.config import DetectConfig
    from hostguard.logons.store import LogonStore
    from hostguard.respond.block_config import BlockConfig
    from hostguard.store.state import StateStore


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

    ingest = logons_sub.add_parser("ingest", help="store the attempts of logs in state.db, run the detectors, "
                                                  "print the alerts they raise")
    ingest.add_argument("files", nargs="*", metavar="FILE", help="log files (as for parse); each is stored once")
    ingest.add_argument("--journal", action="store_true", help="read the journal (this host's, or the --root tree's), "
                                                              "on from the last entry read")
    ingest.add_argument("--journal-file", action="append", default=[], metavar="FILE",
                        help="read this journal file through `journalctl --file` (repeatable)")
    ingest.add_argument("--root", metavar="DIR", help="a mounted image: its time zone (and, with --journal, journal)")
    ingest.add_argument("--reference", metavar="TIME", help="ISO time the logs end by (as for parse)")
    ingest.add_argument("--program", metavar="NAME", help="lines in no known format are messages of this program")
    ingest.add_argument("--format", choices=("table", "json"), default="table")
    ingest.add_argument("--fail-on", choices=SEVERITIES, default="high",
                        help="exit 1 when a new alert is at or above this severity (default high)")

    follow = logons_sub.add_parser("follow", help="store and analyse logs as they grow (or the journal), print each "
                                                  "new alert; --block blocks brute-force sources")
    follow.add_argument("files", nargs="*", metavar="FILE",
                        help="log files, followed across rotation (rename, new file) and copytruncate")
    follow.add_argument("--journal", action="store_true", help="follow this host's journal, on from the last entry read")
    follow.add_argument("--journal-file", action="append", default=[], metavar="FILE",
                        help="follow this journal file through `journalctl --file` (repeatable)")
    follow.add_argument("--program", metavar="NAME", help="lines in no known format are messages of this program")
    follow.add_argument("--format", choices=("table", "jsonl"), default="table",
                        help="each new alert as one line (table) or one JSON object a line (jsonl)")
    follow.add_argument("--block", action="store_true",
                        help="block the source of each new brute-force alert in hostguard's nftables table "
                             "(never the owner's addresses, approved logon baseline included)")
    follow.add_argument("--max-block", default="7d", metavar="DURATION",
                        help="with --block: the longest block a repeat offender gets (its duration doubles with "
                             "every earlier block; default 7d)")
    follow.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="seconds between two reads of the sources (default 1)")
    follow.add_argument("--verify-every", type=float, default=60.0, metavar="SECONDS",
                        help="with --block: seconds between two checks that the nftables table is in place, "
                             "restored from state.db when a firewall reload flushed it (default 60)")

    report = logons_sub.add_parser("report", help="logons, failures by source, alerts and blocks since a time")
    report.add_argument("--since", metavar="DURATION|TIME", default="24h",
                        help="a duration back from now (30m, 24h, 7d, 1w2d) or an ISO 8601 time (default 24h)")
    report.add_argument("--format", choices=("table", "json"), default="table")
    report.add_argument("--root", metavar="DIR", help="a mounted image: report the logons stored for its host")

    base = logons_sub.add_parser("baseline", help="the approved logon baseline: list, approve, forget")
    base_sub = base.add_subparsers(dest="baseline_command", parser_class=Parser)
    listing = base_sub.add_parser("list", help="every value seen or approved, per dimension")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    for name, text in (("approve", "approve a value: ip IP|CIDR, country CC, hour H|H-H, account NAME"),
                       ("forget", "remove a value from the baseline")):
        p = base_sub.add_parser(name, help=text)
        p.add_argument("dimension", choices=("ip", "country", "hour", "account"))
        p.add_argument("value")
    for p in (listing, *[base_sub.choices[n] for n in ("approve", "forget")]):
        p.add_argument("--root", metavar="DIR", help="a mounted image: the baseline of its host")


def run(args: argparse.Namespace) -> int:
    """Run the chosen subcommand."""
    command = {"parse": run_parse, "ingest": run_ingest, "follow": run_follow, "report": run_report,
               "baseline": run_baseline}
    if args.logons_command not in command:
        raise UsageError("logons needs a subcommand: parse, ingest, follow, report or baseline")
    return command[args.logons_command](args)


def _checked_sources(args: argparse.Namespace, verb: str) -> tuple[bool, tzinfo, datetime | None]:
    """(journal asked, the tree's time zone, ``--reference`` in it) once every source was checked: bad input is
    exit 2 before any output, never half a run."""
    from hostguard.host.base import HostError, open_host
    from hostguard.logons.sources import check_log
    from hostguard.logons.timestamps import host_timezone

    journal = args.journal or bool(args.journal_file)
    if not args.files and not journal:
        raise UsageError(f"logons {verb} needs at least one FILE (or --journal / --journal-file)")
    if args.root is not None and not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root}: not a directory")
    reference = None
    if args.reference:
        try:
            reference = datetime.fromisoformat(args.reference)
        except ValueError as exc:
            raise UsageError(f"--reference {args.reference!r}: not an ISO 8601 time") from exc
    try:
        zone, _ = host_timezone(open_host(args.root))
        for name in args.files:
            check_log(name)
    except HostError as exc:
        raise UsageError(str(exc)) from exc
    if reference is not None and reference.tzinfo is None:
        reference = reference.replace(tzinfo=zone)
    return journal, zone, reference


def run_parse(args: argparse.Namespace) -> int:
    """Parse the given sources in order and print their events."""
    from datetime import UTC, datetime

    from hostguard.host.base import HostError
    from hostguard.logons.events import write_jsonl
    from hostguard.logons.parse import parse_lines
    from hostguard.logons.sources import SourceStats, journal_argv, journal_blocks
    from hostguard.logons.split import write_events
    from hostguard.logons.timestamps import Clock

    if args.since and not (args.journal or args.journal_file):
        raise UsageError("--since applies to --journal / --journal-file only")
    journal, zone, reference = _checked_sources(args, "parse")
    for name in args.files:
        stats = SourceStats(name)
        try:
            mtime = datetime.fromtimestamp(os.stat(name).st_mtime, UTC)
            write_events(name, name, Clock(zone, reference or mtime), args.program, sys.stdout, stats)
        except BrokenPipeError:
            raise  # the reader went away (`| head`): the command's usual quiet end
        except (HostError, OSError) as exc:
            raise UsageError(str(exc)) from exc
        _summary(stats, args.stats)
    if journal:
        label = "journal" if not args.journal_file else ",".join(args.journal_file)
        stats = SourceStats(label)
        try:
            argv = journal_argv(args.root if args.journal else None, args.journal_file, args.since)
            clock = Clock(zone, reference or datetime.now(UTC))
            events = parse_lines(journal_blocks(argv, stats), label, clock, stats, args.program)
            write_jsonl(events, label, sys.stdout)
        except HostError as exc:
            raise UsageError(str(exc)) from exc
        _summary(stats, args.stats)
    sys.stdout.flush()
    return EXIT_OK


def _detect_config(path: str | None) -> DetectConfig:
    """The ``[detect]`` section, the file validated against every section (the registry's and ours)."""
    from hostguard.config import ConfigError, load
    from hostguard.detect.config import DetectConfig, schema
    from hostguard.engine.registry import default_registry

    try:
        return load(path, schema(default_registry().schema()))[DetectConfig]
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def _open_store(args: argparse.Namespace) -> tuple[StateStore, LogonStore]:
    from hostguard.cli.common import host_key, open_host_and_state
    from hostguard.logons.store import LogonStore

    if not hasattr(args, "root"):
        args.root = None
    host, state = open_host_and_state(args)
    return state, LogonStore(state, host_key(host, state))


def run_ingest(args: argparse.Namespace) -> int:
    """Store the events of the given sources, run the detectors over the new ones, print the new alerts."""
    from datetime import UTC, datetime

    from hostguard.detect import geo
    from hostguard.findings import Severity
    from hostguard.host.base import HostError
    from hostguard.logons.sources import journal_argv
    from hostguard.logons.timestamps import Clock

    journal, zone, reference = _checked_sources(args, "ingest")
    config = _detect_config(args.config)
    state, store = _open_store(args)
    try:
        now = datetime.now(UTC)
        batch = store.begin_batch()
        own = store.own_probes(config.probe_slack)
        sources = []
        for name in args.files:
            try:
                mtime = datetime.fromtimestamp(os.stat(name).st_mtime, UTC)
                sources.append(store.ingest_file(name, Clock(zone, reference or mtime), batch, own, now.timestamp(),
                                                 args.program))
            except (HostError, OSError) as exc:
                raise UsageError(str(exc)) from exc
        if journal:
            label = "journal" if not args.journal_file else ",".join(args.journal_file)
            try:
                argv = journal_argv(args.root if args.journal else None, args.journal_file, None)
                sources.append(store.ingest_journal(argv, label, Clock(zone, reference or now), batch, own,
                                                    now.timestamp(), args.program))
            except HostError as exc:
                raise UsageError(str(exc)) from exc
        for source in sources:
            if source.stats.damaged() or source.stats.notes:
                print(f"hostguard: logons ingest: {source.stats.summary()}", file=sys.stderr)
        alerts = store.analyse(config, geo.lookup(), batch, now.isoformat(timespec="seconds"))
        key = store.host_key
    finally:
        state.close()
    alerts.sort(key=lambda a: (-a.severity.rank, a.time or "", a.id, a.fingerprint))
    if args.format == "json":
        import json

        doc = {"host": key, "sources": [s.to_dict() for s in sources], "alerts": [a.to_dict() for a in alerts]}
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        _table_ingest(sources, [a.to_dict() for a in alerts])
    threshold = Severity(args.fail_on).rank
    return EXIT_FINDINGS if any(a.severity.rank >= threshold for a in alerts) else EXIT_OK


def run_follow(args: argparse.Namespace) -> int:
    """Follow the sources until SIGINT or SIGTERM (exit 0): every poll stores what is new, feeds it to the
    detectors, prints the new alerts and, with ``--block``, blocks; the table is verified on a timer."""
    import signal
    import threading
    import time

    from hostguard.config import ConfigError, load
    from hostguard.detect import geo
    from hostguard.detect.config import DetectConfig, schema
    from hostguard.engine.registry import default_registry
    from hostguard.host.base import HostError, LiveHost
    from hostguard.logons.follow import Follower, Responder
    from hostguard.logons.sources import check_log, journal_argv
    from hostguard.logons.timestamps import host_timezone
    from hostguard.respond.block import BlockError, parse_duration
    from hostguard.respond.block_config import BlockConfig

    journal = args.journal or bool(args.journal_file)
    if not args.files and not journal:
        raise UsageError("logons follow needs at least one FILE (or --journal / --journal-file)")
    if not 0.05 <= args.interval <= 3600:
        raise UsageError(f"--interval {args.interval}: from 0.05 to 3600 seconds")
    if not 1 <= args.verify_every <= 86400:
        raise UsageError(f"--verify-every {args.verify_every}: from 1 to 86400 seconds")
    try:
        maximum = parse_duration(args.max_block)
    except BlockError as exc:
        raise UsageError(str(exc).replace("--for", "--max-block", 1)) from exc
    try:
        config = load(args.config, schema(default_registry().schema()))
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    detect, block_config = config[DetectConfig], config[BlockConfig]
    host = LiveHost()
    try:
        zone, _ = host_timezone(host)
        for name in args.files:
            check_log(name)
        argv = journal_argv(None, args.journal_file, None) if journal else None
    except HostError as exc:
        raise UsageError(str(exc)) from exc
    label = "journal" if not args.journal_file else ",".join(args.journal_file)
    args.root = None
    state, store = _open_store(args)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    follower = None
    try:
        follower = Follower(store, detect, geo.lookup(), zone, args.files,
                            (argv, label) if argv is not None else None, args.program)
        responder = None
        if args.block:
            responder = Responder(_follow_blocker(state, store, block_config, host), maximum)
        emit = _Emitter(args.format)
        next_verify = time.monotonic()
        first = True
        while not stop.is_set():
            if responder is not None and time.monotonic() >= next_verify:
                next_verify = time.monotonic() + args.verify_every
                if (line := responder.verify()) is not None:
                    emit.note(line)
            result = follower.poll()
            for note in result.notes:
                emit.note(note)
            for source in result.sources:
                if source.stats.damaged() or source.stats.notes:
                    emit.note(source.stats.summary())
            for alert in result.alerts:
                emit.alert(alert)
                if responder is not None and (line := responder.respond(alert, follower.now())) is not None:
                    emit.action(line)
            if first:  # said once the first poll is done: from here on SIGINT/SIGTERM end it cleanly
                first = False
                sources = len(args.files) + (1 if argv is not None else 0)
                emit.note(f"following {sources} source(s){' with --block' if args.block else ''}; SIGINT or "
                          "SIGTERM stops")
            stop.wait(args.interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if follower is not None:
            follower.close()
        state.close()
    return EXIT_OK


def _follow_blocker(state: StateStore, store: LogonStore, config: BlockConfig, host: Any) -> Any:
    """The blocker ``follow --block`` uses: this host's nft, the owner's addresses read afresh for every block
    with the approved logon baseline's addresses among them (an approval made while following counts)."""
    from hostguard.cli.common import host_key
    from hostguard.respond.block import Blocker
    from hostguard.respond.nft_block import Nft
    from hostguard.respond.protect import collect

    def approved() -> list[str]:
        return [e.value for e in store.baseline().entries.values() if e.dimension == "ip" and e.approved]

    return Blocker(state, Nft(), lambda: collect(host, config.never, approved), config, host_key(host, state))


class _Emitter:
    """Where ``follow`` writes: alerts on stdout (one line, or one JSON object, flushed at once so a pipe sees
    each as it happens); what was blocked on stdout in the table format and on stderr with jsonl (stdout stays
    alerts only); notes always on stderr."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt

    def alert(self, alert: Any) -> None:
        import json

        from hostguard.findings import readable

        if self.fmt == "jsonl":
            sys.stdout.write(json.dumps(alert.to_dict(), ensure_ascii=False) + "\n")
        else:
            when = alert.time or "(no time in the log)"
            sys.stdout.write(f"{when} {alert.severity!s:<8} {alert.id} {readable(alert.title)}\n")
        sys.stdout.flush()

    def action(self, line: str) -> None:
        print(line, file=sys.stdout if self.fmt == "table" else sys.stderr, flush=True)

    def note(self, line: str) -> None:
        print(f"hostguard: logons follow: {line}", file=sys.stderr, flush=True)


def parse_since(text: str, now: Any) -> Any:
    """``--since``: a duration back from ``now`` (``30m``, ``24h``, ``1w2d``) or an ISO 8601 time (local
    times without an offset are UTC); a usage error otherwise."""
    import re
    from datetime import UTC, datetime, timedelta

    if re.fullmatch(r"(?:\d{1,9}[smhdw])+", text):
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
        seconds = sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhdw])", text))
        return now - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since {text!r}: not a duration (30m, 24h, 7d) or an ISO 8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def run_report(args: argparse.Namespace) -> int:
    """What the store holds since ``--since``: successful logons, failures by source, alerts, blocks."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    since = parse_since(args.since, now)
    state, store = _open_store(args)
    try:
        ts = since.timestamp()
        doc = {"host": store.host_key, "since": since.isoformat(), "logons": store.logons(ts),
               "failures_by_source": store.failures_by_source(ts), "own_probe_failures": store.own_probe_failures(ts),
               "alerts": store.alerts(ts), "blocks": store.blocks(now)}
    finally:
        state.close()
    if args.format == "json":
        import json

        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        _table_report(doc)
    return EXIT_OK


def run_baseline(args: argparse.Namespace) -> int:
    """List, approve or forget baseline values."""
    from datetime import UTC, datetime

    from hostguard.detect.baseline import BaselineError

    command = getattr(args, "baseline_command", None)
    if command not in ("list", "approve", "forget"):
        raise UsageError("logons baseline needs a subcommand: list, approve or forget")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    state, store = _open_store(args)
    try:
        if command == "approve":
            try:
                entry = store.approve(args.dimension, args.value, now)
            except BaselineError as exc:
                raise UsageError(str(exc)) from exc
            print(f"approved {entry.dimension} {entry.value}")
            return EXIT_OK
        if command == "forget":
            try:
                gone = store.forget(args.dimension, args.value, now)
            except BaselineError as exc:
                raise UsageError(str(exc)) from exc
            if not gone:
                raise UsageError(f"{args.dimension} {args.value} is not in the baseline (see logons baseline list)")
            print(f"forgot {args.dimension} {args.value}")
            return EXIT_OK
        learned = store.baseline()
        key = store.host_key
    finally:
        state.close()
    entries = [e.to_dict() for e in learned.entries.values()]
    start = learned.learning_start
    learning = None if start is None else datetime.fromtimestamp(start, UTC).isoformat()
    if args.format == "json":
        import json

        sys.stdout.write(json.dumps({"host": key, "learning_started": learning, "entries": entries}, indent=2,
                                    ensure_ascii=False) + "\n")
        return EXIT_OK
    console = _console()
    console.print(f"Logon baseline of host {key}: learning started {learning or 'not yet (no successful logon)'}")
    if not entries:
        console.print("No values seen or approved yet.")
        return EXIT_OK
    from rich.table import Table

    table = Table(expand=True)
    for column in ("dimension", "value", "approved", "origin", "seen", "first seen", "last seen"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(*(_cell(e[k]) for k in ("dimension", "value", "approved", "origin", "seen", "first_seen",
                                               "last_seen")))
    console.print(table)
    return EXIT_OK


def _console() -> Any:
    from rich.console import Console

    return Console(file=sys.stdout, no_color=True, highlight=False, soft_wrap=False,
                   width=None if sys.stdout.isatty() else 140)


def _cell(value: Any) -> str:
    from rich.markup import escape

    from hostguard.findings import readable

    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict) and "text" in value:
        return escape(readable(value["text"]))
    return escape("" if value is None else readable(value))


def _alerts_table(console: Any, alerts: list[dict[str, Any]], title: str) -> None:
    from rich.table import Table

    if not alerts:
        console.print(f"{title}: none.")
        return
    table = Table(title=f"{title} ({len(alerts)})", title_justify="left", expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("detector", no_wrap=True)
    table.add_column("alert", ratio=3, overflow="fold")
    table.add_column("time", no_wrap=True)
    for a in alerts:
        table.add_row(a["severity"], a["id"], _cell(a["title"]), _cell(a.get("time")))
    console.print(table)


def _table_ingest(sources: list[Any], alerts: list[dict[str, Any]]) -> None:
    console = _console()
    for s in sources:
        console.print(_cell(f"{s.path}: {s.status}, {s.lines} lines, {s.new_events} new events, "
                            f"{s.known_events} already stored"))
    _alerts_table(console, alerts, "New alerts")


def _table_report(doc: dict[str, Any]) -> None:
    from rich.table import Table

    console = _console()
    console.print(f"Logons of host {doc['host']} since {doc['since']}")
    if doc["logons"]:
        table = Table(title=f"Successful logons ({len(doc['logons'])})", title_justify="left", expand=True)
        for column in ("time", "service", "user", "from", "method", "line"):
            table.add_column(column, overflow="fold")
        for e in doc["logons"]:
            table.add_row(*(_cell(e[k]) for k in ("time", "service", "user", "ip", "method", "at")))
        console.print(table)
    else:
        console.print("Successful logons: none.")
    if doc["failures_by_source"]:
        table = Table(title="Failures by source", title_justify="left", expand=True)
        for column in ("source", "failures", "probes", "accounts", "successes", "first", "last"):
            table.add_column(column, overflow="fold")
        for f in doc["failures_by_source"]:
            table.add_row(*(_cell(f[k]) for k in ("ip", "failures", "probes", "users", "successes", "first", "last")))
        console.print(table)
    else:
        console.print("Failures by source: none.")
    if doc["own_probe_failures"]:
        console.print(f"hostguard's own password probes: {doc['own_probe_failures']} failures (not counted).")
    _alerts_table(console, doc["alerts"], "Alerts")
    if doc["blocks"]:
        table = Table(title="Blocks in force", title_justify="left", expand=True)
        for column in ("network", "reason", "by", "expires"):
            table.add_column(column, overflow="fold")
        for b in doc["blocks"]:
            table.add_row(*(_cell(b[k]) for k in ("network", "reason", "source", "expires")))
        console.print(table)
    else:
        console.print("Blocks in force: none.")


def _summary(stats: Any, always: bool) -> None:
    if always or stats.damaged() or stats.notes:
        print(f"hostguard: logons parse: {stats.summary()}", file=sys.stderr)


ORDER = 47  # where its commands stand in `hostguard --help`
COMMANDS = {"logons": run}
