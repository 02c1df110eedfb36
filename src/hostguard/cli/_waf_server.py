"""`hostguard waf enable|disable|ingest --server nginx|apache`: ModSecurity in the web server the host runs.

Kept apart from ``cli/waf.py`` (the proxy and learning commands), which only adds these subcommands; the
leading underscore keeps this module out of the command-group listing. ``--root DIR`` works on a tree as
``scan --root`` and ``fix --root`` do: the paths are the host's (``/etc/nginx/...``), written inside DIR, and
the server's configuration test reads the tree's configuration in a private mount namespace; nothing is
reloaded. Errors are one line on stderr and exit 2; a configuration the server refused (everything put back)
is exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from hostguard.cli.common import EXIT_OK, UsageError, load_config, open_host_and_state, open_state

if TYPE_CHECKING:
    from hostguard.store.state import StateStore
    from hostguard.store.waf import WafStore

SERVERS = ("nginx", "apache")


def add_server_parsers(waf_sub: Any) -> None:
    """`waf enable`, `waf disable` and `waf ingest`."""
    enable = waf_sub.add_parser("enable", help="configure ModSecurity (CRS and hostguard's rules) in nginx or Apache: "
                                               "diff, backup, the server's configuration test, reload, rollback")
    enable.add_argument("--server", required=True, choices=SERVERS, help="the web server to configure")
    enable.add_argument("--site", metavar="NAME", help="only the server block / virtual host serving NAME "
                                                       "(server_name, ServerName or ServerAlias)")
    enable.add_argument("--root", metavar="DIR", help="configure the system tree at DIR (a mounted image or a copy) "
                                                      "instead of this host; nothing is reloaded")
    enable.add_argument("--dry-run", action="store_true", help="show every change in full, change nothing")
    disable = waf_sub.add_parser("disable", help="put back the web server's configuration as it was before "
                                                 "`waf enable`, byte for byte")
    disable.add_argument("--server", required=True, choices=SERVERS)
    disable.add_argument("--root", metavar="DIR", help="the tree `waf enable --root DIR` configured")
    disable.add_argument("--dry-run", action="store_true", help="show what would be put back, change nothing")
    ingest = waf_sub.add_parser("ingest", help="read the web server's ModSecurity audit log into hostguard's WAF "
                                               "events (`waf report` does it too)")
    ingest.add_argument("--server", required=True, choices=SERVERS)
    ingest.add_argument("--log", metavar="FILE", help="the audit log (default: where `waf enable` has the server "
                                                      "write it)")


def _out(line: str) -> None:
    print(line, flush=True)


def _target(args: argparse.Namespace) -> tuple[Any, StateStore, Any]:
    from hostguard.cli.common import host_key
    from hostguard.waf.enable import Target

    if args.root is None and os.geteuid() != 0:
        raise UsageError(f"waf {args.waf_command} changes {args.server}'s configuration in /etc: run it as root")
    host, state = open_host_and_state(args)
    return host, state, Target(str(state.directory), host_key(host, state), args.root)


def _accepted(state: StateStore) -> list[Any]:
    """The learning exclusions the owner accepted (`waf exclusions --accept`): the server applies them too."""
    from hostguard.store.waf import ACCEPTED, WafStore

    return WafStore(state).exclusions(ACCEPTED)


def run_enable(args: argparse.Namespace) -> int:
    from hostguard.waf.config import WafConfig
    from hostguard.waf.enable import ChangeError, enable
    from hostguard.waf.servers import ServerError, plan_enable

    config = load_config(args.config)[WafConfig]
    host, state, target = _target(args)
    try:
        try:
            plan = plan_enable(host, args.server, config, args.site, _accepted(state))
        except ServerError as exc:
            raise UsageError(str(exc)) from exc
        return enable(state, target, plan, _out, dry_run=args.dry_run)
    except ChangeError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        state.close()


def run_disable(args: argparse.Namespace) -> int:
    from hostguard.waf.enable import ChangeError, disable

    _host, state, target = _target(args)
    try:
        return disable(state, target, args.server, _out, dry_run=args.dry_run)
    except ChangeError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        state.close()


def ingest_log(store: WafStore, log: str) -> tuple[int, int]:
    """The audit log's new entries into the store: (events added, lines that were not events)."""
    from hostguard.waf.auditlog import parse_line

    try:
        result = store.ingest(log, parse_line)
    except OSError as exc:
        raise UsageError(f"audit log {log}: {exc.strerror or exc}") from exc
    return result.added, result.skipped


def run_ingest(args: argparse.Namespace) -> int:
    from hostguard.store.waf import WafStore
    from hostguard.waf.servers import AUDIT_LOGS

    log = args.log or AUDIT_LOGS[args.server]
    if args.log and not os.path.isfile(args.log):
        raise UsageError(f"--log {args.log}: " + ("not a file" if os.path.exists(args.log) else "no such file"))
    state = open_state(args)
    try:
        added, skipped = ingest_log(WafStore(state), log)
    finally:
        state.close()
    print(f"{added} events read from {log}" + (f" ({skipped} lines were not events: skipped)" if skipped else ""))
    return EXIT_OK


def ingest_enabled(state: StateStore, store: WafStore) -> int:
    """Read the audit logs of the servers hostguard enabled ModSecurity in on this host (for `waf report`
    and learning); the number of lines that were not events."""
    from pathlib import Path

    from hostguard.respond import records
    from hostguard.waf.servers import AUDIT_LOGS

    active = {r.check.rsplit(".", 1)[-1] for r in records.all_records(Path(state.directory))
              if r.check.startswith("waf.enable.") and r.root == "/" and r.status in (records.APPLIED,
                                                                                       records.CONFIRMED)}
    skipped = 0
    for kind in sorted(active & set(AUDIT_LOGS)):
        try:
            skipped += ingest_log(store, AUDIT_LOGS[kind])[1]
        except UsageError as exc:
            print(f"hostguard: warning: {exc}", file=sys.stderr)
    return skipped


SERVER_COMMANDS = {"enable": run_enable, "disable": run_disable, "ingest": run_ingest}
