"""The OSV evaluation algorithm: is package ``name`` at ``version`` of ``ecosystem`` affected by a record?

As osv-schema's "Evaluation" pseudo-code says: a version is affected when it is listed in an affected
entry's ``versions`` or lies in one of its ``ranges``. A range's events are sorted by version in the
ecosystem's own order (``introduced: "0"`` first, an introduction before a fix or last-affected of the same
version) and walked: ``introduced`` at or below the version opens, ``fixed`` at or below it closes,
``last_affected`` below it closes; ``limit`` events bound the whole range from above (``*`` is infinity, and
no limit means ``*``). ECOSYSTEM and SEMVER ranges are evaluated, both in the package ecosystem's order
(the ecosystems that write SEMVER ranges, npm, Go, crates.io, use SemVer precedence as their order); GIT
ranges need the repository's commit graph and are skipped (a record's ``versions`` still match).

The package must be the record's package exactly: ``affected[].package.ecosystem`` equal to the asked
ecosystem (``Debian:11`` never answers for ``Debian:12``: backported fixes carry release-specific versions)
and the name equal (PyPI names compared in their normalized form, PEP 503).

A range that cannot be evaluated (an ecosystem with no known order, a version the order cannot read) is
never taken as "not affected": it is reported as unevaluated with its reason, so no answer hides "not
looked". The fix reported for an affected version is, per matching range, the smallest ``fixed`` above it;
``fix`` is the version that leaves every matching range (None: no fix yet).
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from hostguard.vulns import versions
from hostguard.vulns.cvss import base_score, rating
from hostguard.vulns.osv import Affected, Event, Range, Severity, Vulnerability

__all__ = ["EVALUATED_RANGES", "Candidates", "Index", "Match", "PackageResult", "Unevaluated", "evaluate", "normalize_name",
           "range_status", "severity_json"]

EVALUATED_RANGES = frozenset({"ECOSYSTEM", "SEMVER"})
_KIND_RANK = {"introduced": 0, "fixed": 1, "last_affected": 1}
Compare = Callable[[str, str], int]


@dataclass(frozen=True, slots=True)
class Match:
    """A record that affects the package: the fixes of its matching ranges (smallest above the installed
    version, in ecosystem order) and ``fix``, the version that leaves them all, or None (no fix yet)."""

    vuln: Vulnerability
    fixed: tuple[str, ...]
    fix: str | None
    severity: tuple[Severity, ...]


@dataclass(frozen=True, slots=True)
class Unevaluated:
    """A record about the package whose ranges could not be evaluated, and why."""

    id: str
    reason: str


@dataclass(frozen=True, slots=True)
class PackageResult:
    matches: tuple[Match, ...]
    unevaluated: tuple[Unevaluated, ...]

    def ids(self) -> list[str]:
        """The ids and aliases of every matching record, sorted, each once."""
        return sorted({i for m in self.matches for i in (m.vuln.id, *m.vuln.aliases)})


def normalize_name(ecosystem: str, name: str) -> str:
    """The form names are compared in: PEP 503's for PyPI (``Foo_Bar`` is ``foo-bar``), as is elsewhere."""
    if versions.base_ecosystem(ecosystem) == "PyPI":
        return re.sub(r"[-_.]+", "-", name).lower()
    return name


def _event_order(cmp: Compare) -> Callable[[Event, Event], int]:
    def order(a: Event, b: Event) -> int:
        a_zero, b_zero = a.version == "0", b.version == "0"  # "0" sorts before every version
        c = (b_zero - a_zero) if (a_zero or b_zero) else cmp(a.version, b.version)
        return c or _KIND_RANK[a.kind] - _KIND_RANK[b.kind]

    return order


def _at_or_above(cmp: Compare, version: str, bound: str) -> int:
    """cmp(version, bound), with the bound "0" below every version."""
    return 1 if bound == "0" else cmp(version, bound)


def range_status(rng: Range, version: str, cmp: Compare) -> tuple[bool, str | None]:
    """(affected, the smallest ``fixed`` above ``version`` or None) for one range; the version order's
    errors (``versions.InvalidVersion``, ``UnsupportedEcosystem``) go to the caller."""
    limits = [e.version for e in rng.events if e.kind == "limit"]
    if limits and not any("*" in lim or cmp(version, lim) < 0 for lim in limits):
        return False, None
    events = sorted((e for e in rng.events if e.kind != "limit"), key=functools.cmp_to_key(_event_order(cmp)))
    affected = False
    for evt in events:
        if evt.kind == "introduced":
            if _at_or_above(cmp, version, evt.version) >= 0:
                affected = True
        elif evt.kind == "fixed":
            if _at_or_above(cmp, version, evt.version) >= 0:
                affected = False
        elif _at_or_above(cmp, version, evt.version) > 0:  # last_affected
            affected = False
    if not affected:
        return False, None
    fix = next((e.version for e in events if e.kind == "fixed" and _at_or_above(cmp, version, e.version) < 0), None)
    return True, fix


Candidates = Sequence[tuple[Vulnerability, Sequence[Affected]]]
"""The records about one package, each with its affected entries for that package (sorted by id)."""


def evaluate(ecosystem: str, version: str, candidates: Candidates) -> PackageResult:
    """The records of ``candidates`` affecting the package at ``version`` (in the candidates' order), and those
    that could not be evaluated. The one evaluation every advisory store (in memory, the SQLite index) uses."""
    if not candidates:
        return PackageResult((), ())

    @functools.lru_cache(maxsize=4096)
    def cmp(a: str, b: str) -> int:
        return versions.compare(ecosystem, a, b)

    matches: list[Match] = []
    unevaluated: list[Unevaluated] = []
    for vuln, affs in candidates:
        hit = False
        fixes: list[str] = []
        open_ranges = 0  # matching ranges with no fix above the version
        problem: str | None = None
        for aff in affs:
            if version in aff.versions:
                hit = True
            for rng in aff.ranges:
                if rng.type not in EVALUATED_RANGES:
                    continue
                try:
                    inside, fix = range_status(rng, version, cmp)
                except (versions.UnsupportedEcosystem, versions.InvalidVersion) as exc:
                    problem = problem or str(exc) or type(exc).__name__
                    continue
                if inside:
                    hit = True
                    if fix is None:
                        open_ranges += 1
                    elif fix not in fixes:
                        fixes.append(fix)
        if hit:
            fixes.sort(key=functools.cmp_to_key(cmp))
            fix_all = fixes[-1] if fixes and not open_ranges else None
            severity = (*vuln.severity, *(s for a in affs for s in a.severity))
            matches.append(Match(vuln, tuple(fixes), fix_all, tuple(dict.fromkeys(severity))))
        elif problem is not None:
            unevaluated.append(Unevaluated(vuln.id, problem))
    return PackageResult(tuple(matches), tuple(unevaluated))


class Index:
    """The records by (ecosystem, normalized package name), built once in memory; ``match`` answers one
    package. (``hostguard.vulns.index.AdvisoryIndex`` answers the same from the SQLite index in cache/.)"""

    def __init__(self, vulns: Iterable[Vulnerability]) -> None:
        grouped: dict[tuple[str, str], dict[str, tuple[Vulnerability, list[Affected]]]] = defaultdict(dict)
        for vuln in vulns:
            for aff in vuln.affected:
                key = (aff.ecosystem, normalize_name(aff.ecosystem, aff.name))
                grouped[key].setdefault(vuln.id, (vuln, []))[1].append(aff)
        self._by_package: dict[tuple[str, str], tuple[tuple[Vulnerability, tuple[Affected, ...]], ...]] = {
            key: tuple((v, tuple(affs)) for v, affs in sorted(by_id.values(), key=lambda item: item[0].id))
            for key, by_id in grouped.items()}

    def __len__(self) -> int:
        return len(self._by_package)

    def match(self, ecosystem: str, name: str, version: str) -> PackageResult:
        """The records affecting ``name`` at ``version`` (ids sorted), and those that could not be evaluated."""
        return evaluate(ecosystem, version, self._by_package.get((ecosystem, normalize_name(ecosystem, name)), ()))

    def match_many(self, packages: Sequence[tuple[str, str, str]]) -> list[PackageResult]:
        """:meth:`match` of each (ecosystem, name, version), in order."""
        return [self.match(*package) for package in packages]


def severity_json(sev: Severity) -> dict[str, object]:
    """A severity for the JSON output: the record's type and score (the CVSS vector as written), plus the base
    score and its rating where the vector is v2 or v3."""
    out: dict[str, object] = {"type": sev.type, "score": sev.score}
    score = base_score(sev.type, sev.score)
    if score is not None:
        out["base_score"] = score
        out["rating"] = rating(score, sev.type)
    return out
