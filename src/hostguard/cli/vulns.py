"""`hostguard vulns match` and `vulns update`: packages matched against OSV advisories, offline.

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

Matching goes through the advisory index (``cache/advisories.db`` of the state directory, ``--state``): built
from ``--db DIR`` the first time, reused while DIR is unchanged, rebuilt when it changed (docs/vulns.md).
Without ``--db`` the copy ``vulns update`` fetched into the state directory is used.

``vulns update --db DIR`` (re)builds the index from a local copy; ``vulns update --ecosystem NAME...``
fetches osv.dev's export of each ecosystem into the state directory (``--mirror URL`` for another server)
and rebuilds the index from it. A failed download is one line on stderr and exit 2; the old copy and its
index stay as they were.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from hostguard.cli.common import EXIT_FINDINGS, EXIT_OK, SEVERITIES, Parser, UsageError, open_state

if TYPE_CHECKING:
    from hostguard.vulns.match import PackageResult

PACKAGE_FIELDS = ("ecosystem", "name", "version")


def add_parser(sub: Any) -> None:
    """`vulns match`: the stable matching contract; `vulns update`: the advisory copy and its index."""
    vulns = sub.add_parser("vulns", help="installed packages against OSV advisories (offline)")
    vulns_sub = vulns.add_subparsers(dest="vulns_command", parser_class=Parser)
    match = vulns_sub.add_parser("match", help="match a JSON Lines list of packages against a local OSV copy")
    match.add_argument("--db", metavar="DIR",
                       help="OSV records as osv.dev exports them (per-ecosystem directories of <ID>.json or all.zip); "
                            "default: the copy `vulns update` fetched into the state directory")
    match.add_argument("--packages", metavar="FILE", required=True,
                       help='JSON Lines: {"ecosystem", "name", "version"} per line (- for standard input)')
    match.add_argument("--format", choices=("jsonl",), default="jsonl")
    update = vulns_sub.add_parser("update", help="fetch the OSV exports of this host's ecosystems (or index a local "
                                                 "copy) and build the advisory index")
    update.add_argument("--db", metavar="DIR", help="index this local OSV copy instead of fetching one")
    update.add_argument("--ecosystem", metavar="NAME", action="append", default=[],
                        help="an ecosystem to fetch (OSV's name: Debian:12, PyPI, npm, ...); repeat for more")
    update.add_argument("--mirror", metavar="URL", default=None,
                        help="the server of the OSV exports (<URL>/<ECOSYSTEM>/all.zip; default osv.dev's)")
    update.add_argument("--format", choices=("text", "json"), default="text")
    scan = vulns_sub.add_parser("scan", help="this host's packages (or a --root tree's) against the advisories: "
                                             "vulnerable ones with the command that fixes them")
    scan.add_argument("--root", metavar="DIR", help="read a mounted image or a copy of a host's files")
    scan.add_argument("--db", metavar="DIR", help="a local OSV copy (default: what `vulns update` fetched)")
    scan.add_argument("--format", choices=("table", "json"), default="table")
    scan.add_argument("--no-pending", action="store_true",
                      help="leave out the security updates apt has waiting (live: a simulated dist-upgrade, ~2 s)")
    scan.add_argument("--fail-on", choices=SEVERITIES, default="high",
                      help="exit 1 when a finding is at or above this severity (default high)")


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


def _cache_and_state(args: argparse.Namespace) -> tuple[Path, Path]:
    """(the state directory's cache/, the state directory), or a usage error."""

    state = open_state(args)
    try:
        return state.cache_dir, state.directory
    finally:
        state.close()


def _source(args: argparse.Namespace, state_dir: Path) -> str:
    if args.db:
        return str(args.db)
    from hostguard.vulns.update import osv_dir

    fetched = osv_dir(state_dir)
    if not fetched.is_dir():
        raise UsageError(f"no advisories in {fetched}: run `hostguard vulns update --ecosystem NAME`, or give --db DIR")
    return str(fetched)


def _say(notes: Sequence[str], unreadable: Sequence[str]) -> None:
    """Matching's notes (an index rebuilt; a warning when it could not be written) and unreadable records."""
    for note in notes:
        print(f"hostguard: {'warning' if 'in memory' in note else 'note'}: {note}", file=sys.stderr)
    _warn_unreadable(unreadable)


def _warn_unreadable(unreadable: Sequence[str]) -> None:
    if unreadable:
        more = f"; and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
        print(f"hostguard: warning: {len(unreadable)} OSV records skipped as unreadable "
              f"({'; '.join(unreadable[:3])}{more})", file=sys.stderr)


def _matched(cache_dir: Path, source: str, packages: list[tuple[str, str, str]]) -> list[PackageResult]:
    """The packages matched through the advisory index (in memory when it cannot be written), notes said."""
    from hostguard.host.base import HostError
    from hostguard.vulns.scan import match_results

    try:
        results, notes, unreadable = match_results(packages, source, cache_dir)
    except HostError as exc:
        raise UsageError(str(exc)) from exc
    _say(notes, unreadable)
    return results


def run_match(args: argparse.Namespace) -> int:
    from hostguard.vulns.match import severity_json

    packages = _read_packages_file(args.packages)
    cache_dir, state_dir = _cache_and_state(args)
    results = _matched(cache_dir, _source(args, state_dir), packages)
    out = sys.stdout
    for (ecosystem, name, version), result in zip(packages, results, strict=True):
        line = {
            "ecosystem": ecosystem, "name": name, "version": version, "vulns": result.ids(),
            "advisories": [{"id": m.vuln.id, "aliases": list(m.vuln.aliases), "summary": m.vuln.summary,
                            "fixed": list(m.fixed), "fix": m.fix, "severity": [severity_json(s) for s in m.severity]}
                           for m in result.matches],
            "unevaluated": [{"id": u.id, "reason": u.reason} for u in result.unevaluated],
        }
        out.write(json.dumps(line) + "\n")  # ASCII: a lone surrogate of the input stays an escape
    return EXIT_OK


def host_ecosystems(args: argparse.Namespace) -> list[str]:
    """The ecosystems whose exports `vulns update` fetches: ``--ecosystem`` when given, else those of this
    host's package inventory (its release's, Python's, npm's, Composer's)."""
    from hostguard.vulns.update import wanted_exports

    found: list[str] = []
    if not args.ecosystem:
        from hostguard.checks.vulns import VulnsConfig, collect_vulns_inventory
        from hostguard.cli.common import load_config
        from hostguard.host.base import open_host

        inventory = collect_vulns_inventory(open_host(None), load_config(args.config)[VulnsConfig])
        found = sorted({item.ecosystem for item in inventory.covered()})
    try:
        names = wanted_exports(args.ecosystem, found)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not names:
        raise UsageError("vulns update: this host's inventory names no ecosystem hostguard can match; give "
                         "--ecosystem NAME (one per ecosystem to fetch) or --db DIR")
    return names


def _scan_facts(args: argparse.Namespace, host: Any, state: Any) -> Any:
    """The facts of family ``vulns`` for this host, with ``--db`` in place of ``[vulns] db``."""
    import dataclasses

    from hostguard.checks.vulns import VulnsConfig
    from hostguard.cli.common import load_config
    from hostguard.engine.facts import STATE, Facts

    config = load_config(args.config)
    if args.db:
        sections = dict(config.sections)
        sections["vulns"] = dataclasses.replace(config[VulnsConfig], db=str(args.db))
        config = dataclasses.replace(config, sections=sections)
    return Facts(host, config, given={STATE: state})


def run_scan(args: argparse.Namespace) -> int:
    """The inventory (live or --root), matched through the advisory index: findings with their upgrade steps,
    the packages not covered (third-party repositories) by name, and what could not be read. The findings are
    those of ``hostguard scan``'s family ``vulns`` (the same facts)."""
    from hostguard.checks.vulns import (
        DELETED_MAPPINGS,
        PENDING,
        PENDING_UNREPORTED,
        RUNNING_KERNEL,
        VIRTUAL_PATCH_VIEW,
        VULNS_INVENTORY,
        VULNS_MATCHED,
        WEB_APPS,
    )
    from hostguard.findings import Severity
    from hostguard.findings import one_line as readable
    from hostguard.host.base import HostError, Unavailable, open_host
    from hostguard.host.packages import DPKG
    from hostguard.vulns.pending import LISTS_CHECK_ID
    from hostguard.vulns.restart import deleted_library_findings, kernel_finding

    if args.root is not None and not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root}: not a directory")
    try:
        host = open_host(args.root)
    except HostError as exc:
        raise UsageError(str(exc)) from exc
    state = open_state(args)
    try:
        facts = _scan_facts(args, host, state)
        inventory = facts.get(VULNS_INVENTORY)
        try:
            matched = facts.get(VULNS_MATCHED)
        except Unavailable as exc:
            raise UsageError(exc.detail) from exc
        except HostError as exc:
            raise UsageError(str(exc)) from exc
    finally:
        state.close()
    _say(matched.notes, matched.unreadable)
    notes: list[tuple[str, str]] = []
    pending: dict[str, Any] | None = None

    def ask(what: str, get: Any) -> Any:
        try:
            return get()
        except (HostError, Unavailable, OSError) as exc:
            notes.append((what, getattr(exc, "detail", "") or str(exc)))
            return None

    # the package findings as the family's check gives them (naming the virtual patch that covers them), and
    # the offers to enable those patches (check vulns.virtual_patch)
    patches = ask("virtual patches", lambda: facts.get(VIRTUAL_PATCH_VIEW))
    found = list(patches.packages + patches.offers) if patches is not None else list(matched.findings)
    notes += [("virtual patches", problem) for problem in (patches.problems if patches is not None else ())]

    if host.live:
        kernel = ask("running kernel", lambda: kernel_finding(facts.get(RUNNING_KERNEL), facts.get(DPKG).packages))
        found += [kernel] if kernel is not None else []
        found += deleted_library_findings(ask("processes", lambda: facts.get(DELETED_MAPPINGS)) or ())
        if not args.no_pending:
            result = ask("pending updates", lambda: facts.get(PENDING))
            if result is not None:
                found += facts.get(PENDING_UNREPORTED)   # what hostguard scan's vulns.pending_update reports
                found += [f for f in result.findings if f.id == LISTS_CHECK_ID]
                pending = {"security_updates": len(result.updates), "other_updates": len(result.other_updates),
                           "lists_age_days": result.lists_age_days, "lists_stale": result.lists_stale}
    findings = sorted(found, key=lambda f: (-f.severity.rank, f.title))
    vulnerable = len(findings) - (len(patches.offers) if patches is not None else 0)   # the offers are no package
    release = None if inventory.release is None else inventory.release.ecosystem
    uncovered = inventory.not_covered()
    apps = ask("web applications", lambda: facts.get(WEB_APPS)) or ()
    if args.format == "json":
        data = {"release": release, "findings": [f.to_dict() for f in findings],
                "not_covered": [{"ecosystem": i.ecosystem, "name": i.name, "version": i.version,
                                 "reason": i.not_covered} for i in uncovered],
                "problems": [{"source": what, "reason": why} for what, why in (*inventory.problems, *notes)],
                "pending": pending,
                "web_applications": [{"name": a.name, "version": a.version, "path": a.path, "advisories": a.advisories}
                                     for a in apps],
                "virtual_patches": patches.to_json() if patches is not None else [],
                "stats": {"packages": len(inventory.items), "matched": matched.asked, "vulnerable": vulnerable}}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        lines = [f"{str(f.severity).upper():<9} {readable(f.title)}" + "".join(
            f"\n          fix: {readable(step.describe())}" for step in f.remediation.steps) + _patch_lines(f, findings)
            for f in findings]
        if uncovered:
            lines.append(f"not covered by {release or 'the distribution'}'s advisories ({len(uncovered)}): "
                         + ", ".join(readable(f"{i.name} {i.version}") for i in uncovered[:20])
                         + (" ..." if len(uncovered) > 20 else ""))
        lines += [f"{a.name} {readable(a.version)} at {readable(a.path)}: {a.advisories}" for a in apps]
        lines += [f"not read: {readable(what)}: {readable(why)}" for what, why in (*inventory.problems, *notes)]
        lines.append(f"{vulnerable} vulnerable of {matched.asked} packages matched ({len(inventory.items)} found)"
                     + (f"; {len(patches.offers)} virtual patch(es) to enable" if patches and patches.offers else ""))
        sys.stdout.write("\n".join(lines) + "\n")
    worst = max((f.severity.rank for f in findings), default=-1)
    return EXIT_FINDINGS if worst >= Severity(args.fail_on).rank else EXIT_OK


def _patch_lines(finding: Any, findings: Sequence[Any]) -> str:
    """Under a package finding, the virtual patches covering it: enabled, or the fix that enables one."""
    from hostguard.findings import one_line as readable
    from hostguard.vulns.virtual_patches import CHECK_ID

    offers = {f.evidence.get("patch"): f for f in findings if f.id == CHECK_ID}
    out = ""
    for patch in finding.evidence.get("virtual_patches", ()):
        if patch.get("enabled"):
            out += f"\n          virtual patch {readable(patch['id'])}: enabled (virtually patched until you upgrade)"
        elif patch["id"] in offers:
            out += (f"\n          virtual patch {readable(patch['id'])}: not enabled; enable it with hostguard fix "
                    f"{offers[patch['id']].fingerprint[:12]}")
    return out


def run_update(args: argparse.Namespace) -> int:
    from hostguard.store.advisories import AdvisoryStoreError
    from hostguard.vulns.index import build, describe
    from hostguard.vulns.osv import OsvError
    from hostguard.vulns.scan import unreadable_records
    from hostguard.vulns.update import DEFAULT_MIRROR, DownloadError, fetch, osv_dir

    if args.db and args.ecosystem:
        raise UsageError("vulns update: --db indexes a local copy; --ecosystem fetches one: give one of them")
    names = [] if args.db else host_ecosystems(args)
    cache_dir, state_dir = _cache_and_state(args)
    if names:
        try:
            fetch(names, state_dir, args.mirror or DEFAULT_MIRROR)
        except DownloadError as exc:
            raise UsageError(f"vulns update: {exc} (the advisories already here were kept)") from exc
    source = args.db or str(osv_dir(state_dir))
    try:
        info = build(cache_dir, source)
    except (OsvError, AdvisoryStoreError) as exc:
        raise UsageError(str(exc)) from exc
    _warn_unreadable(unreadable_records(info.stats.skipped))
    summary = describe(info)
    if names:
        summary["fetched"] = names
    if args.format == "json":
        print(json.dumps(summary))
    else:
        fetched = f"fetched {', '.join(names)}; " if names else ""
        print(f"{fetched}advisory index: {summary['records']} records for {summary['packages']} packages from "
              f"{summary['source']} ({summary['seconds']:.1f} s)")
    return EXIT_OK


def run_vulns(args: argparse.Namespace) -> int:
    if args.vulns_command == "match":
        return run_match(args)
    if args.vulns_command == "update":
        return run_update(args)
    if args.vulns_command == "scan":
        return run_scan(args)
    raise UsageError("vulns needs a subcommand: match, update, scan")


ORDER = 27  # after malware, before fix
COMMANDS = {"vulns": run_vulns}
