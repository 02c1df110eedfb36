"""Findings of ``vulns scan``: the inventory matched against advisories, one finding per vulnerable package.

:func:`vulns_findings` takes an :class:`~hostguard.vulns.inventory.Inventory` and anything with
``match(ecosystem, name, version) -> PackageResult`` (the in-memory :class:`~hostguard.vulns.match.Index`,
or the SQLite advisory index), so it neither reads the host nor the advisory files itself.

A finding is about one package in one place (a Debian source package, a PyPI distribution in one
virtualenv, an npm package in one project): its target is ``{"kind": "package", "ecosystem", "name"}``
plus ``location`` for language environments (never the version: upgrading to a version still affected is
the same problem). Its evidence lists every matching advisory (id, aliases, fixed versions, severity); its
severity is the most severe advisory's (CVSS v2/v3 scored, else the record's own word, through
``data/vulns/severity.toml``); its remediation is one ``Action("upgrade")`` step carrying the exact
command of the package manager that owns it: ``apt-get install --only-upgrade`` with the *binary*
packages built from the vulnerable source, ``dnf``/``yum upgrade``, ``apk upgrade``, the environment's own
``pip install -U``, ``npm update`` / ``composer update`` in the project directory. With no fixed version
for any advisory, the remediation says so (by hand: there is nothing to upgrade to yet).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from functools import cache
from typing import Any, Protocol

from hostguard.data import load_toml
from hostguard.findings import Finding, Severity
from hostguard.remediation import Action, Remediation
from hostguard.vulns import versions
from hostguard.vulns.cvss import base_score, rating
from hostguard.vulns.inventory import Inventory, Item
from hostguard.vulns.match import Match, PackageResult, severity_json
from hostguard.vulns.osv import Severity as OsvSeverity

__all__ = ["CHECK_ID", "Matcher", "advisory_severity", "upgrade_argv", "vulns_findings"]

CHECK_ID = "vulns.package"
FAMILY = "vulns"
NPM_GLOBAL = ("/usr/lib", "/usr/local/lib")  # node_modules of these prefixes are npm's global installs


class Matcher(Protocol):
    """What answers "which advisories affect this package" (``match.Index`` or the SQLite index)."""

    def match(self, ecosystem: str, name: str, version: str) -> PackageResult: ...


@cache
def _severity_table() -> tuple[Severity, dict[str, Severity]]:
    data = load_toml("vulns/severity.toml")
    return Severity(data["default"]), {k: Severity(v) for k, v in data["words"].items()}


def advisory_severity(entries: Iterable[OsvSeverity]) -> Severity:
    """One advisory's hostguard severity: the highest CVSS v2/v3 rating among its entries ("none" is info),
    else the highest known word, else the table's default."""
    default, words = _severity_table()
    scored: list[Severity] = []
    worded: list[Severity] = []
    for sev in entries:
        score = base_score(sev.type, sev.score)
        if score is not None:
            r = rating(score, sev.type)
            scored.append(Severity.INFO if r == "none" else Severity(r))
        elif sev.score.strip().lower() in words:
            worded.append(words[sev.score.strip().lower()])
    for found in (scored, worded):
        if found:
            return max(found, key=lambda s: s.rank)
    return default


def upgrade_argv(item: Item) -> tuple[tuple[str, ...], str | None]:
    """The command that upgrades ``item`` and the directory it runs in (None: anywhere)."""
    name = item.name
    if item.manager == "apt-get":
        return ("apt-get", "install", "--only-upgrade", *item.binaries), None
    if item.manager in ("dnf", "yum"):
        return (item.manager, "upgrade", *item.binaries), None
    if item.manager == "apk":
        return ("apk", "upgrade", *item.binaries), None
    if item.manager == "pip":
        if item.location and item.location != "/usr/local":
            return (f"{item.location}/bin/pip", "install", "-U", name), None
        python = re.search(r"/python(3(?:\.\d+)?)/", item.origin)
        return (f"python{python.group(1) if python else '3'}", "-m", "pip", "install", "-U", name), None
    if item.manager == "npm":
        if item.location in NPM_GLOBAL:
            return ("npm", "update", "-g", name), None
        return ("npm", "update", name), item.location
    if item.manager == "composer":
        return ("composer", "update", name), item.location
    raise ValueError(f"no upgrade command known for package manager {item.manager!r}")


def _newest(ecosystem: str, candidates: Iterable[str]) -> str | None:
    best: str | None = None
    for version in candidates:
        try:
            if best is None or versions.compare(ecosystem, version, best) > 0:
                best = version
        except (versions.InvalidVersion, versions.UnsupportedEcosystem):
            best = best or version
    return best


def _advisory(match: Match) -> dict[str, Any]:
    return {"id": match.vuln.id, "aliases": list(match.vuln.aliases), "summary": match.vuln.summary,
            "fixed": list(match.fixed), "fix": match.fix,
            "severity": [severity_json(s) for s in match.severity],
            "hostguard_severity": str(advisory_severity(match.severity))}


def package_finding(item: Item, result: PackageResult) -> Finding:
    """The finding for one inventory item with at least one matching advisory."""
    matches = sorted(result.matches, key=lambda m: m.vuln.id)
    severity = max((advisory_severity(m.severity) for m in matches), key=lambda s: s.rank)
    fix = _newest(item.ecosystem, (m.fix for m in matches if m.fix is not None))
    unfixed = [m.vuln.id for m in matches if m.fix is None]
    target: dict[str, Any] = {"kind": "package", "ecosystem": item.ecosystem, "name": item.name}
    if item.location:
        target["location"] = item.location
    evidence: dict[str, Any] = {
        "installed": item.version, "fixed": fix or "no fix yet", "ids": result.ids(),
        "advisories": [_advisory(m) for m in matches], "origin": item.origin, "manager": item.manager}
    if item.binaries:
        evidence["binaries"] = list(item.binaries)
        evidence["binary_versions"] = list(item.binary_versions)
    if unfixed:
        evidence["no_fix_yet"] = unfixed
    if result.unevaluated:
        evidence["unevaluated"] = [{"id": u.id, "reason": u.reason} for u in result.unevaluated]
    ids = ", ".join(m.vuln.id for m in matches[:3]) + (f" and {len(matches) - 3} more" if len(matches) > 3 else "")
    title = f"{item.name} {item.version} ({item.ecosystem}{', ' + item.location if item.location else ''}) " \
            f"is affected by {ids}"
    if fix is None:
        remediation = Remediation.by_hand(
            f"No fixed version of {item.name} is published yet ({', '.join(unfixed)}).",
            "there is nothing to upgrade to yet: watch the advisories, and meanwhile limit exposure of what "
            "uses the package or remove it if it is not needed")
    else:
        argv, cwd = upgrade_argv(item)
        args: list[tuple[str, str]] = [("manager", item.manager), ("command", shlex.join(argv))]
        if cwd:
            args.append(("cwd", cwd))
        args += [("packages", " ".join(item.binaries) if item.binaries else item.name), ("to", fix)]
        more = f"; still no fix for {', '.join(unfixed)}" if unfixed else ""
        where = f" in {cwd}" if cwd else ""
        remediation = Remediation(f"Upgrade {item.name} to {fix} or later: run `{shlex.join(argv)}`{where}{more}.",
                                  steps=(Action("upgrade", tuple(args)),))
    return Finding(id=CHECK_ID, category=FAMILY, severity=severity, title=title, target=target,
                   evidence=evidence, remediation=remediation)


def vulns_findings(inventory: Inventory, index: Matcher) -> list[Finding]:
    """One finding per covered inventory item that an advisory affects, in inventory order. Items listed as
    not covered are never asked about (``inventory.not_covered()`` says which and why)."""
    out = []
    for item in inventory.covered():
        result = index.match(item.ecosystem, item.name, item.version)
        if result.matches:
            out.append(package_finding(item, result))
    return out
