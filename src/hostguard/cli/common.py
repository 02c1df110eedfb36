"""What every command shares: exit codes, the usage error, config and host loading, the progress bar."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from hostguard.config import Config
    from hostguard.host.base import Host
    from hostguard.store.state import StateStore

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
SEVERITIES = ("critical", "high", "medium", "low", "info")


class UsageError(Exception):
    """Bad arguments or input: exit 2 with one line."""


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so every error is one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_only(text: str | None) -> list[str] | None:
    """``--only a,b``: the families or check ids named (None: all); an empty list is a usage error."""
    if text is None:
        return None
    only = [f.strip() for f in text.split(",") if f.strip()]
    if not only:
        raise UsageError("--only needs at least one family or check id (see hostguard checks)")
    return only


def render_listing(fmt: str, json_text: Callable[[], str], table: Callable[[IO[str], int | None], None]) -> None:
    """A listing command's output: JSON as is, or the table (a terminal's own width, 140 columns on a pipe)."""
    if fmt == "json":
        sys.stdout.write(json_text())
    else:
        table(sys.stdout, None if sys.stdout.isatty() else 140)


def load_config(path: str | None) -> Config:
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
def progress_bar(enabled: bool) -> Iterator[Any]:
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


def open_state(args: argparse.Namespace) -> StateStore:
    """The state directory (``--state``, else the default one), or a usage error."""
    from hostguard.store.state import StateError, StateStore, default_state_dir

    try:
        return StateStore(args.state or default_state_dir())
    except StateError as exc:
        raise UsageError(str(exc)) from exc


def open_host_and_state(args: argparse.Namespace) -> tuple[Host, StateStore]:
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


def host_key(host: Host, state: StateStore) -> str:
    """The host key scans record findings under: accepting is per host, like the scans it applies to."""
    from hostguard.findings import HostId

    return HostId(host.machine_id(), state.state_uuid(), host.hostname()).id
