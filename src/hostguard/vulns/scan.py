"""One vulnerability scan's matching: the inventory against the advisory copy, through its index.

Shared by ``hostguard scan`` (family ``vulns``) and ``hostguard vulns scan``, so both give the same findings
with the same fingerprints. The advisories are the local OSV copy named by ``[vulns] db`` (or ``--db``),
else the one ``hostguard vulns update`` fetched into the state directory; without either there is nothing
to match against, which is said (skipped: tool_missing), never taken for "no vulnerable package".

Matching goes through the SQLite advisory index in the state directory's ``cache/`` (built once per copy);
when the index cannot be written (a read-only state directory) the records are matched in memory, with a
note. Nothing here prints: notes and unreadable records travel in :class:`Matched`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hostguard.findings import Finding, SkipReason
from hostguard.host.base import HostError, Unavailable
from hostguard.remediation import Action
from hostguard.vulns.findings import CHECK_ID, vulns_findings
from hostguard.vulns.inventory import Inventory
from hostguard.vulns.match import PackageResult
from hostguard.vulns.osv import Skipped

RPM_ARCH = re.compile(r"\.(x86_64|noarch|i[3-6]86|aarch64|ppc64le|s390x|armv7hl|riscv64)$")

__all__ = ["Matched", "advisory_source", "match_inventory", "match_results", "unreadable_records", "without_reported"]


@dataclass(frozen=True)
class Matched:
    """The inventory's findings against one advisory copy: ``asked`` packages were matched; ``notes`` are
    worth saying once (an index rebuilt, matching done in memory); ``unreadable`` names the OSV records
    skipped as malformed (``source: reason``)."""

    findings: tuple[Finding, ...]
    source: str
    asked: int
    notes: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()


def advisory_source(db: str, state_dir: str | os.PathLike[str] | None) -> str:
    """The OSV copy to match against: ``db`` when given, else the copy fetched into ``state_dir``.
    Unavailable (tool_missing) when there is none, with the command that gets one."""
    from hostguard.vulns.update import osv_dir

    if db:
        if not os.path.isdir(db):
            raise Unavailable(SkipReason.TOOL_MISSING, f"no OSV advisories in {db} ([vulns] db / --db): not a directory")
        return db
    if state_dir is None:
        raise Unavailable(SkipReason.TOOL_MISSING, "no state directory to hold advisories: set [vulns] db to a "
                                                   "local OSV copy")
    fetched = osv_dir(os.fspath(state_dir))
    if not fetched.is_dir():
        raise Unavailable(SkipReason.TOOL_MISSING, f"no advisories in {fetched}: run `hostguard vulns update` (or "
                                                   f"set [vulns] db to a local OSV copy)")
    return str(fetched)


def match_results(packages: Sequence[tuple[str, str, str]], source: str, cache_dir: str | os.PathLike[str] | None
                  ) -> tuple[list[PackageResult], list[str], list[str]]:
    """``(ecosystem, name, version)`` triples matched against ``source``: the results in input order, the
    notes worth saying once and the unreadable records. Through the index in ``cache_dir``; in memory when
    it is None or cannot be written. A copy that cannot be read at all is a HostError."""
    from hostguard.store.advisories import AdvisoryStoreError
    from hostguard.vulns.index import match_packages
    from hostguard.vulns.match import Index
    from hostguard.vulns.osv import OsvError, load

    notes: list[str] = []
    try:
        if cache_dir is None:
            raise AdvisoryStoreError("no state directory for the advisory index")
        results, index = match_packages(Path(cache_dir), source, packages)
        index.close()
        if index.note:
            notes.append(index.note)
        skipped = index.info.stats.skipped
    except AdvisoryStoreError as exc:
        notes.append(f"{exc}; matching from the records in memory")
        try:
            db = load(source, {eco for eco, _, _ in packages})
        except OsvError as err:
            raise HostError(str(err)) from err
        skipped = db.stats.skipped
        results = Index(db.vulns.values()).match_many(packages)
    except OsvError as exc:
        raise HostError(str(exc)) from exc
    return results, notes, unreadable_records(skipped)


def unreadable_records(skipped: Iterable[Skipped]) -> list[str]:
    """The OSV records skipped while loading, as ``source: reason``."""
    return [f"{s.source}: {s.reason}" if s.source else s.reason for s in skipped]


def match_inventory(inventory: Inventory, source: str, cache_dir: str | os.PathLike[str] | None) -> Matched:
    """The covered items of ``inventory`` matched against ``source`` (see :func:`match_results`)."""
    packages = [(i.ecosystem, i.name, i.version) for i in inventory.covered()]
    results, notes, unreadable = match_results(packages, source, cache_dir)
    answers = dict(zip(packages, results, strict=True))

    class Answered:
        def match(self, ecosystem: str, name: str, version: str) -> PackageResult:
            return answers[(ecosystem, name, version)]

    return Matched(tuple(vulns_findings(inventory, Answered())), source, len(packages), tuple(notes),
                   tuple(unreadable))


def _upgraded_names(findings: Iterable[Finding]) -> set[str]:
    """The system packages (binary names, without architecture) that the package findings' upgrade steps
    already upgrade."""
    names: set[str] = set()
    for f in findings:
        rpm = f.evidence.get("manager") in ("dnf", "yum")
        if f.id != CHECK_ID or f.target.get("location"):
            continue
        for step in f.remediation.steps:
            if isinstance(step, Action) and step.action == "upgrade":
                for name in dict(step.args).get("packages", "").split():
                    names.add(name.split(":", 1)[0])
                    if rpm:   # rpm's name.arch: dnf's pending updates name the package alone
                        names.add(RPM_ARCH.sub("", name))
    return names


def without_reported(pending: Iterable[Finding], packages: Iterable[Finding]) -> list[Finding]:
    """The pending-update findings not already fixed by a ``vulns.package`` finding's upgrade (the same
    binary package): one problem, one finding. A package finding without a fix yet leaves the pending
    update standing (the package manager knows of a fix the advisory copy does not)."""
    done = _upgraded_names(packages)
    return [f for f in pending if str(f.target.get("name", "")).split(":", 1)[0] not in done]
