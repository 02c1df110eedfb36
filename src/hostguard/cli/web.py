"""`hostguard webroots`: every site the web servers serve, its document roots and who serves it, each with
the file and line it came from."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from hostguard.cli.common import EXIT_ERROR, EXIT_OK, UsageError, load_config


def add_parser(sub: Any) -> None:
    """`webroots`: the sites, roots and serving accounts hostguard reads from the web servers' configs."""
    p = sub.add_parser("webroots", help="list the web sites, their document roots and who serves them")
    p.add_argument("--root", metavar="DIR", help="read a mounted image or a copy of a host's files")
    p.add_argument("--format", choices=("table", "json"), default="table")


def listing(servers: Any) -> list[dict[str, Any]]:
    """The sites as data (what `--format json` prints and the table shows)."""
    out = []
    for server in servers.servers:
        out.append({
            "server": server.kind, "config": server.config,
            "run_as": [{"user": r.user, "group": r.group, "source": r.source, "where": str(r.where),
                        "detail": r.detail} for r in server.run_as],
            "sites": [{"names": list(site.names), "listens": list(site.listens), "where": str(site.where),
                       "roots": [{"url": r.url, "path": r.path, "where": str(r.where)} for r in site.roots],
                       "run_as": [r.user for r in site.run_as], "php": list(site.php_backends)}
                      for site in server.sites],
            "notes": list(server.notes)})
    return out


def _table(data: list[dict[str, Any]]) -> str:
    lines = []
    for server in data:
        who = ", ".join(f"{r['user']} ({r['source']}{', ' + r['where'] if r['where'] != 'built-in default' else ''}"
                        f"{', ' + r['detail'] if r['detail'] else ''})" for r in server["run_as"])
        lines.append(f"{server['server']} ({server['config']}): serves as {who or 'unknown'}")
        for site in server["sites"]:
            names = " ".join(site["names"]) or "(default)"
            lines.append(f"  site {names}  listen {', '.join(site['listens'])}  [{site['where']}]")
            for root in site["roots"]:
                lines.append(f"    {root['url']:<24} -> {root['path']}  [{root['where']}]")
            if site["php"]:
                lines.append(f"    PHP: {', '.join(site['php'])}")
        lines += [f"  note: {n}" for n in server["notes"]]
    return "\n".join(lines) + "\n" if lines else "no web server configuration found (nginx, Apache, Tomcat)\n"


def run(args: argparse.Namespace) -> int:
    """Read the web servers' configurations (this host, or the tree --root names) and list their sites."""
    from hostguard.engine.facts import Facts
    from hostguard.host.base import open_host
    from hostguard.host.web.servers import WEB_SERVERS

    if args.root is not None and not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root}: not a directory")
    servers = Facts(open_host(args.root), load_config(args.config)).get(WEB_SERVERS)
    data = listing(servers)
    sys.stdout.write(json.dumps(data, indent=2) + "\n" if args.format == "json" else _table(data))
    for kind, why in servers.problems:
        print(f"hostguard: webroots: {kind}: {why}", file=sys.stderr)
    return EXIT_ERROR if servers.problems else EXIT_OK


ORDER = 45  # where its commands stand in `hostguard --help`
COMMANDS = {"webroots": run}
