"""`hostguard vulns match`: packages matched against a local copy of the OSV advisories, offline.

``--packages FILE`` is JSON Lines, one ``{"ecosystem", "name", "version"}`` a line (ecosystems as OSV names
them; for Debian/Ubuntu the *source* package, for Alpine the origin: what the advisories are keyed by);
``-`` reads standard input. ``--db DIR`` is the OSV export as osv.dev lays it out (per-ecosystem
directories of ``<ID>.json`` or ``all.zip``), read recursively.

The output is a stable contract (DESIGN.md): one line per input package, in input order,
``{"ecosystem", "name", "version", "vulns": [ids and aliases, sorted]}``, followed by ``advisories`` (per
matching record: ``id``, ``aliases``, ``summary``, ``fixed`` — the smallest fix above the version in each
matching range —, ``fix`` — the version that leaves them all, null when there is no fix yet — and
``severity``) and ``unevaluated`` (records about the package whose ranges could not be evaluated, with the
reason: "not affected" is never assumed for them). Records skipped as malformed are summed up in one line
on stderr; stdout stays pure JSON Lines. Exit 0 when the answer was given, 2 for a missing advisory copy,
an unreadable packages file or a malformed line (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Any

from hostguard.cli.common import EXIT_OK, Parser, UsageError

PACKAGE_FIELDS = ("ecosystem", "name", "version")


def add_parser(sub: Any) -> None:
    """`vulns match`: the stable matching contract."""
    vulns = sub.add_parser("vulns", help="installed packages against OSV advisories (offline)")
    vulns_sub = vulns.add_subparsers(dest="vulns_command", parser_class=Parser)
    match = vulns_sub.add_parser("match", help="match a JSON Lines list of packages against a local OSV copy")
    match.add_argument("--db", metavar="DIR", required=True,
                       help="OSV records as osv.dev exports them (per-ecosystem directories of <ID>.json or all.zip)")
    match.add_argument("--packages", metavar="FILE", required=True,
                       help='JSON Lines: {"ecosystem", "name", "version"} per line (- for standard input)')
    match.add_argument("--format", choices=("jsonl",), default="jsonl")


def read_packages(stream: IO[str], label: str) -> list[tuple[str, str, str]]:
    """The (ecosystem, name, version) of each non-blank line; ``UsageError`` naming the line otherwise."""
    packages = []
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise UsageError(f"{label}:{lineno}: not a JSON object ({getattr(exc, 'msg', exc)})") from exc
        if not isinstance(obj, dict):
            raise UsageError(f"{label}:{lineno}: not a JSON object")
        values = [value if isinstance(value := obj.get(key), str) else "" for key in PACKAGE_FIELDS]
        missing = [key for key, value in zip(PACKAGE_FIELDS, values, strict=True) if not value]
        if missing:
            raise UsageError(f"{label}:{lineno}: {', '.join(missing)} must be non-empty strings")
        packages.append((values[0], values[1], values[2]))
    return packages


def _read_packages_file(path: str) -> list[tuple[str, str, str]]:
    if path == "-":
        return read_packages(sys.stdin, "<stdin>")
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            return read_packages(f, path)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text") from exc
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from exc


def run_vulns(args: argparse.Namespace) -> int:
    if args.vulns_command != "match":
        raise UsageError("vulns needs a subcommand: match")
    from hostguard.vulns.match import Index, severity_json
    from hostguard.vulns.osv import OsvError, load

    packages = _read_packages_file(args.packages)
    try:
        db = load(args.db, {eco for eco, _, _ in packages})
    except OsvError as exc:
        raise UsageError(str(exc)) from exc
    if db.stats.skipped:
        shown = "; ".join(f"{s.source}: {s.reason}" for s in db.stats.skipped[:3])
        more = f"; and {len(db.stats.skipped) - 3} more" if len(db.stats.skipped) > 3 else ""
        print(f"hostguard: warning: {len(db.stats.skipped)} OSV records skipped as unreadable ({shown}{more})",
              file=sys.stderr)
    index = Index(db.vulns.values())
    out = sys.stdout
    for ecosystem, name, version in packages:
        result = index.match(ecosystem, name, version)
        line = {
            "ecosystem": ecosystem, "name": name, "version": version, "vulns": result.ids(),
            "advisories": [{"id": m.vuln.id, "aliases": list(m.vuln.aliases), "summary": m.vuln.summary,
                            "fixed": list(m.fixed), "fix": m.fix, "severity": [severity_json(s) for s in m.severity]}
                           for m in result.matches],
            "unevaluated": [{"id": u.id, "reason": u.reason} for u in result.unevaluated],
        }
        out.write(json.dumps(line) + "\n")  # ASCII: a lone surrogate of the input stays an escape
    return EXIT_OK


ORDER = 27  # after malware, before fix
COMMANDS = {"vulns": run_vulns}
