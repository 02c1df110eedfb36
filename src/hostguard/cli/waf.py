"""`hostguard waf proxy`: the web application firewall as a reverse proxy in front of an application.

Every request is read by aiohttp, inspected by libmodsecurity with the OWASP Core Rule Set and hostguard's
own rules (``[waf]`` in the config), and refused or forwarded to ``--upstream``; every request a rule matched
is an event in ``[waf] event_log`` (default ``<state>/waf-events.jsonl``). Runs until SIGINT or SIGTERM
(exit 0); an unusable argument, config or missing dependency is one line on stderr and exit 2. aiohttp and
the engine are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from hostguard.cli.common import EXIT_OK, Parser, UsageError, load_config

SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def add_parser(sub: Any) -> None:
    """`waf proxy`: the reverse proxy."""
    waf = sub.add_parser("waf", help="web application firewall (ModSecurity, the OWASP CRS and hostguard's rules)")
    waf_sub = waf.add_subparsers(dest="waf_command", parser_class=Parser)
    proxy = waf_sub.add_parser("proxy", help="run a reverse proxy that inspects every request before the "
                                             "application sees it, until SIGINT or SIGTERM")
    proxy.add_argument("--listen", required=True, metavar="HOST:PORT",
                       help="the address to listen on: an IP address or localhost, and a port (0: a free one)")
    proxy.add_argument("--upstream", required=True, metavar="URL",
                       help="the application: http://HOST:PORT or https://HOST:PORT, optionally with a path prefix")
    proxy.add_argument("--site", default="default", metavar="NAME", help="the site name written in events")
    proxy.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                       help="how long to wait for the application's answer, and for each read of a request body "
                            "(default 60)")


def _event_log(configured: str, state: str | None) -> str:
    """``[waf] event_log``, or ``waf-events.jsonl`` in the state directory (made if missing); opened once here
    so that a path the proxy cannot write is an error now, not at the first attack."""
    if configured:
        path = configured
    else:
        from hostguard.store.state import default_state_dir

        directory = state or default_state_dir()
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise UsageError(f"state directory {directory}: not a directory")
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"state directory {directory}: {exc.strerror or exc}") from exc
        path = os.path.join(directory, "waf-events.jsonl")
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise UsageError(f"event log {path}: {exc.strerror or exc}") from exc
    return path


def proxy(args: argparse.Namespace) -> int:
    """Check every argument and the engine before listening; then serve until SIGINT or SIGTERM."""
    try:
        from hostguard.waf import proxy as waf_proxy
    except ImportError as exc:
        raise UsageError(f"the WAF proxy needs aiohttp: pip install 'hostguard[waf]' ({exc})") from exc
    import asyncio

    from hostguard.waf.config import WafConfig
    from hostguard.waf.engine import EngineError
    from hostguard.waf.gate import Gate

    try:
        host, port = waf_proxy.parse_listen(args.listen)
        upstream = waf_proxy.parse_upstream(args.upstream)
    except waf_proxy.ProxyError as exc:
        raise UsageError(str(exc)) from exc
    if not SITE_NAME.fullmatch(args.site):
        raise UsageError(f"--site {args.site!r}: letters, digits, '.', '_' and '-', at most 64")
    if not 0 < args.timeout <= 3600:
        raise UsageError(f"--timeout {args.timeout:g}: more than 0 and at most 3600 seconds")
    settings = load_config(args.config)[WafConfig]
    event_log = _event_log(settings.event_log, args.state)
    try:
        gate = Gate(settings, event_log, site=args.site)
    except EngineError as exc:
        raise UsageError(f"the WAF engine: {exc}") from exc
    except (OSError, ValueError) as exc:   # no CRS rules where [waf] crs_dir says; an impossible setting
        raise UsageError(f"the WAF rules: {exc}") from exc

    def ready(bound_host: str, bound_port: int) -> None:
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        print(f"hostguard: waf proxy listening on http://{shown}:{bound_port} -> {upstream.origin}{upstream.prefix} "
              f"(site {args.site}, mode {settings.mode}, events {event_log}); SIGINT or SIGTERM stops",
              file=sys.stderr, flush=True)

    waf_proxy.log_to(sys.stderr)
    try:
        asyncio.run(waf_proxy.serve(gate, upstream, host, port, timeout=args.timeout, ready=ready))
    except OSError as exc:
        raise UsageError(f"--listen {args.listen}: {exc.strerror or exc}") from exc
    finally:
        gate.close()
    print("hostguard: waf proxy stopped", file=sys.stderr, flush=True)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Dispatch `waf` subcommands."""
    if args.waf_command != "proxy":
        raise UsageError("waf: a command is required: proxy")
    return proxy(args)


ORDER = 28  # where its commands stand in `hostguard --help`
COMMANDS = {"waf": run}
