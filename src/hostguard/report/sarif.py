"""``--format sarif``: SARIF 2.1.0 for code-scanning dashboards. One rule per check id."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hostguard import __version__
from hostguard.findings import Finding, Report, Severity, Skipped, readable
from hostguard.remediation import DeleteLine, Edit

LEVELS = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
          Severity.LOW: "note", Severity.INFO: "note"}


def _uri(path: str | bytes) -> str:
    """A path as a URI reference: non-ASCII and non-UTF-8 bytes percent-encoded (RFC 3986)."""
    raw = path if isinstance(path, bytes) else path.encode("utf-8", "surrogateescape")
    return quote(raw, safe="/")


def _file(value: Any) -> str | bytes | None:
    """``value`` when it names one file: an absolute path, not a command and not a list of sources.

    Some targets name where a fact came from rather than a file ("nft -j list ruleset, iptables-legacy-save",
    "/etc/iptables/rules.v4, /etc/iptables/rules.v6"): such a value stays in the result's properties and
    logical location, since a code-scanning tool would open a ``uri`` as a file.
    """
    if not isinstance(value, str | bytes):
        return None
    text = value if isinstance(value, str) else value.decode("utf-8", "surrogateescape")
    if not text.startswith("/") or any(c in text for c in "\0\n\r"):
        return None
    parts = text.split(", ")
    if len(parts) > 1 and all(p.startswith("/") for p in parts):
        return None  # a list of files, not one
    return value


def _line(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _set_at(value: Any) -> tuple[str, int] | None:
    """A ``PATH:LINE`` reference (``evidence.set_at``)."""
    if not isinstance(value, str):
        return None
    path, _, line = value.rpartition(":")
    return (path, int(line)) if _file(path) is not None and line.isdigit() and int(line) > 0 else None


def _fix_lines(finding: Finding) -> list[tuple[str, int]]:
    """Lines the fix replaces or deletes: where the setting at fault is written (an insertion is not)."""
    return [(s.path, s.line) for s in finding.remediation.steps
            if (isinstance(s, DeleteLine) or (isinstance(s, Edit) and s.old not in s.new.splitlines()))
            and _file(s.path) is not None and _line(s.line) is not None]


def _places(finding: Finding) -> list[tuple[str | bytes, int | None]]:
    """Every (file, line) the finding knows, the most telling first.

    The target's own file (with its line when the target, its evidence or its fix gives it); then the file
    and line its evidence names (``path``/``line``, or ``set_at`` as ``PATH:LINE``); then the lines its fix
    replaces or deletes (for a config setting, the line sshd or PAM actually reads, which may be in another
    file than the target's); then a file without a line.
    """
    target, evidence = finding.target, finding.evidence
    target_file, evidence_file = _file(target.get("path")), _file(evidence.get("path"))
    fix = _fix_lines(finding)
    set_at = _set_at(evidence.get("set_at"))
    known: list[tuple[str | bytes, int | None]] = []
    if target_file is not None:
        line = _line(target.get("line"))
        if line is None and evidence_file == target_file:
            line = _line(evidence.get("line"))
        if line is None and set_at is not None and set_at[0] == target_file:
            line = set_at[1]
        if line is None:
            line = next((n for p, n in fix if p == target_file), None)
        if line is not None or target.get("kind") == "path":
            known.append((target_file, line))
    if evidence_file is not None and _line(evidence.get("line")) is not None:
        known.append((evidence_file, _line(evidence.get("line"))))
    if set_at is not None:
        known.append(set_at)
    known += fix
    known += [(f, None) for f in (target_file, evidence_file) if f is not None]
    return list(dict.fromkeys(known))


def _physical(path: str | bytes, line: int | None) -> dict[str, Any]:
    loc: dict[str, Any] = {"artifactLocation": {"uri": _uri(path)}}
    if line is not None:
        loc["region"] = {"startLine": line}
    return loc


def _logical(finding: Finding) -> list[dict[str, Any]]:
    target = finding.target
    return [{"name": " ".join(f"{k}={readable(v)}" for k, v in target.items()), "kind": str(target.get("kind"))}]


def _locations(finding: Finding) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The result's location, and the other lines its fix changes as related locations.

    A physical location only where a real file is known, with ``region.startLine`` where its line is;
    a target that is not a file (a user, a port, a ruleset read from commands) is a logical location, and
    the whole target is in the result's properties either way.
    """
    places = _places(finding)
    location: dict[str, Any] = {}
    if places:
        location["physicalLocation"] = _physical(*places[0])
    if finding.target.get("kind") != "path" or not places:
        location["logicalLocations"] = _logical(finding)
    others = [p for p in _fix_lines(finding) if places and p != places[0]]
    related = [{"id": i, "physicalLocation": _physical(path, line), "message": {"text": "changed by the fix"}}
               for i, (path, line) in enumerate(others, 1)]
    return location, related


def _where(finding: Finding) -> dict[str, Any]:
    location, related = _locations(finding)
    return {"locations": [location], **({"relatedLocations": related} if related else {})}


def _level_of(report: Report, rule_id: str) -> str:
    """Without a rule record, the level of the check's most severe finding."""
    worst = max((f.severity for f in report.findings if f.id == rule_id), key=lambda s: s.rank)
    return LEVELS[worst]


def _not_checked(s: Skipped) -> str:
    item = f" [{readable(s.item)}]" if s.item else ""
    return f"{s.check}{item}: not checked ({s.reason}) {readable(s.detail)}"


def render(report: Report) -> str:
    """The report as a SARIF log."""
    known = {r.id: r for r in report.rules}
    rules = []
    for rule_id in sorted({f.id for f in report.findings}):
        rule = known.get(rule_id)
        entry: dict[str, Any] = {
            "id": rule_id, "name": rule_id,
            "shortDescription": {"text": rule.summary if rule else rule_id},
            "fullDescription": {"text": rule.doc if rule else ""},
            "defaultConfiguration": {"level": LEVELS[rule.severity] if rule else _level_of(report, rule_id)}}
        if rule and rule.tags:
            entry["properties"] = {"tags": list(rule.tags)}
        if rule and rule.references:
            entry["helpUri"] = rule.references[0]
        rules.append(entry)
    results = [{
        "ruleId": f.id,
        "level": LEVELS[f.severity],
        "message": {"text": readable(f.title) + (f". Fix: {readable(f.remediation.summary)}"
                                                  if f.remediation.summary else "")},
        "partialFingerprints": {"hostguard/v1": f.fingerprint},
        "properties": {"severity": str(f.severity), "target": f.to_dict()["target"],
                       "evidence": f.to_dict()["evidence"]},
        **_where(f),
    } for f in report.sorted_findings()]
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "hostguard", "version": __version__, "rules": rules}},
            "results": results,
            "invocations": [{
                "executionSuccessful": True,
                "toolExecutionNotifications": [
                    {"level": "warning", "message": {"text": _not_checked(s)}} for s in report.skipped],
            }],
            "properties": {"host": report.host.to_dict(), "complete": report.complete},
        }],
    }
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"
