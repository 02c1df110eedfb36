"""`hostguard firewall reach`: the firewall's answer for every port, not only the ones a finding is about."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hostguard.cli.common import EXIT_ERROR, EXIT_OK, Parser, UsageError, load_config


def add_parser(sub: Any) -> None:
    """`firewall reach`: who can reach each port."""
    firewall = sub.add_parser("firewall", help="what the firewall lets through")
    firewall_sub = firewall.add_subparsers(dest="firewall_command", parser_class=Parser)
    reach = firewall_sub.add_parser("reach", help="who can reach each listening port of this host (live)")
    reach.add_argument("--format", choices=("table", "json"), default="table")

def run(args: argparse.Namespace) -> int:
    """Who can reach each port: the answer the firewall findings carry as evidence, for every port."""
    if args.firewall_command != "reach":
        raise UsageError("firewall needs a subcommand: reach")
    from hostguard.engine.facts import Facts
    from hostguard.host.base import LiveHost, Unavailable
    from hostguard.host.firewall import FIREWALL, REACH
    from hostguard.report.reach_table import render_json, render_table

    facts = Facts(LiveHost(), load_config(args.config))
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


ORDER = 40  # where its commands stand in `hostguard --help`
COMMANDS = {"firewall": run}
