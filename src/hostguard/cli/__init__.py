"""Command line: parse arguments, call one function, render, choose the exit code.

One module per command group (scan, accept, firewall, about, ...), found by listing this package: each
adds its subcommands to the parser (``add_parser``) and maps them to functions (``COMMANDS``). Exit codes
of scan-like commands: 0 nothing at or above ``--fail-on``, 1 findings at or above it, 2 usage, input or
configuration error (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from hostguard import __version__
from hostguard.cli.common import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, Parser, UsageError

__all__ = ["EXIT_ERROR", "EXIT_FINDINGS", "EXIT_OK", "UsageError", "build_parser", "main"]
NOT_COMMANDS = ("common",)


def command_groups() -> list[ModuleType]:
    """Every module of this package but ``common``: each declares ``add_parser(sub)`` and ``COMMANDS`` (name ->
    function). Found, not listed, so a new command group is one new module. Importing them is cheap: they
    import the engine, reports and facts only inside the functions that run a command."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")
                   and m.name not in NOT_COMMANDS)
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    """The argument parser (global options before the subcommand) and the function of each command."""
    parser = Parser(prog="hostguard", description="Host-security audit and agent for Linux servers.")
    parser.add_argument("--version", action="version", version=f"hostguard {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML config (default /etc/hostguard/hostguard.toml if present)")
    parser.add_argument("--state", metavar="DIR", help="state directory (default /var/lib/hostguard as root)")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {}
    for group in sorted(command_groups(), key=lambda g: getattr(g, "ORDER", 50)):
        group.add_parser(sub)
        commands.update(group.COMMANDS)
    return parser, commands


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
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    run = commands.get(args.command or "")
    if run is None:
        raise UsageError(f"a command is required: {', '.join(commands)} (see hostguard --help)")
    return run(args)
