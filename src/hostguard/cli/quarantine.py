"""`hostguard quarantine list | restore ID [--to PATH] [--force] | purge ID`: the files hostguard moved away
(respond/quarantine.py), put back byte-exact, or their stored copies deleted by the owner."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from hostguard.cli.common import EXIT_OK, Parser, UsageError, open_state, render_listing

if TYPE_CHECKING:
    from hostguard.store.quarantine import Entry
    from hostguard.store.state import StateStore


def add_parser(sub: Any) -> None:
    """`quarantine` with its subcommands `list`, `restore`, `purge`."""
    q = sub.add_parser("quarantine", help="list quarantined files, restore one byte-exact, or purge its stored copy")
    qsub = q.add_subparsers(dest="quarantine_command", parser_class=Parser)
    ls = qsub.add_parser("list", help="every quarantined file (restored and purged ones too)")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    r = qsub.add_parser("restore", help="put a file back with its bytes, owner, mode, attributes, times and flags")
    r.add_argument("id", metavar="ID", help="the entry's id as `quarantine list` shows it (or 4+ first characters)")
    r.add_argument("--to", metavar="PATH", help="restore to this new path instead (never replaces a file; missing "
                                                "directories are created, 0700)")
    r.add_argument("--force", action="store_true", help="a file now at the original path is quarantined first "
                                                        "(never deleted), then the entry restored there")
    p = qsub.add_parser("purge", help="delete an entry's stored copy (the only deletion hostguard does)")
    p.add_argument("id", metavar="ID")


def _with_state(args: argparse.Namespace, act: Callable[[StateStore, str], int]) -> int:
    """Open the state directory, run ``act(state, host_key)``; any refusal, a damaged ledger or state.db is one
    line and exit 2."""
    import sqlite3

    from hostguard.cli.common import host_key
    from hostguard.host.base import LiveHost
    from hostguard.respond.quarantine import QuarantineError

    state = open_state(args)
    try:
        return act(state, host_key(LiveHost(), state))
    except QuarantineError as exc:
        raise UsageError(str(exc)) from exc
    except sqlite3.Error as exc:
        raise UsageError(f"state.db: {exc}") from exc
    finally:
        state.close()


def _table(entries: list[Entry]) -> Callable[[IO[str], int | None], None]:
    def write(out: IO[str], width: int | None) -> None:
        from hostguard.store.quarantine import printable

        if not entries:
            out.write("nothing quarantined\n")
            return
        out.write(f"{'ID':<12}  {'STATE':<11}  {'WHEN':<25}  {'SIZE':>10}  {'RULE':<24}  PATH\n")
        for e in entries:
            more = f" -> {printable(e.restored_to)}" if e.restored_to else ""   # one line per entry, whatever names hold
            out.write(f"{e.id:<12}  {e.state:<11}  {e.quarantined_at:<25}  {e.size:>10}  {e.rule:<24}  "
                      f"{e.readable_path}{more}\n")
    return write


def run(args: argparse.Namespace) -> int:
    """Dispatch to list, restore or purge."""
    from hostguard.respond import quarantine as q

    command = args.quarantine_command
    if command is None:
        raise UsageError("quarantine needs a subcommand: list, restore ID, purge ID")

    def act(state: StateStore, key: str) -> int:
        if command == "list":
            entries = q.listing(state)
            render_listing(args.format, lambda: json.dumps({"quarantine": [e.to_dict() for e in entries]}, indent=2)
                           + "\n", _table(entries))
        elif command == "restore":
            done = q.restore(state, key, args.id, to=args.to, force=args.force)
            for line in done.lines():
                print(line)
        else:
            print(q.purge(state, key, args.id)[1])
        sys.stdout.flush()
        return EXIT_OK

    return _with_state(args, act)


ORDER = 62  # where its commands stand in `hostguard --help`
COMMANDS = {"quarantine": run}
