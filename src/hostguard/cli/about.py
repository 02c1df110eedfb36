"""`hostguard checks` and `hostguard config show`: the checks and the settings, for people and tools."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hostguard.cli.common import EXIT_OK, Parser, UsageError, load_config


def add_parser(sub: Any) -> None:
    """`checks` and `config show`: what hostguard looks at, and with which settings."""
    checks = sub.add_parser("checks", help="list every check: id, severity, what it looks at, why")
    checks.add_argument("--format", choices=("table", "json"), default="table")
    config = sub.add_parser("config", help="the configuration hostguard would use")
    config_sub = config.add_subparsers(dest="config_command", parser_class=Parser)
    show = config_sub.add_parser("show", help="every setting's effective value and where it came from")
    show.add_argument("--format", choices=("toml", "json"), default="toml")

def run_checks(args: argparse.Namespace) -> int:
    from hostguard.engine.registry import default_registry
    from hostguard.report.checks_listing import render_json, render_table

    rules = default_registry().rules()
    if args.format == "json":
        sys.stdout.write(render_json(rules))
    else:
        render_table(rules, sys.stdout, width=None if sys.stdout.isatty() else 140)
    return EXIT_OK


def run_config(args: argparse.Namespace) -> int:
    if args.config_command != "show":
        raise UsageError("config needs a subcommand: show")
    from hostguard.report.config_view import render_json, render_toml

    config = load_config(args.config)
    sys.stdout.write(render_json(config) if args.format == "json" else render_toml(config))
    return EXIT_OK


ORDER = 90  # where its commands stand in `hostguard --help`
COMMANDS = {"checks": run_checks, "config": run_config}
