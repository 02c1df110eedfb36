"""``--format sarif``: SARIF 2.1.0 for code-scanning dashboards. One rule per check id."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hostguard import __version__
from hostguard.findings import Finding, Report, Severity, Skipped, readable

LEVELS = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
          Severity.LOW: "note", Severity.INFO: "note"}


def _uri(path: str | bytes) -> str:
    """A path as a URI reference: non-ASCII and non-UTF-8 bytes percent-encoded (RFC 3986)."""
    raw = path if isinstance(path, bytes) else path.encode("utf-8", "surrogateescape")
    return quote(raw, safe="/")


def _location(finding: Finding) -> dict[str, Any]:
    target = finding.target
    path = target.get("path") or finding.evidence.get("path")
    if path and isinstance(path, str | bytes):
        loc: dict[str, Any] = {"artifactLocation": {"uri": _uri(path)}}
        line = target.get("line") or finding.evidence.get("line")
        if isinstance(line, int) and line > 0:
            loc["region"] = {"startLine": line}
        return {"physicalLocation": loc}
    return {"logicalLocations": [{"name": " ".join(f"{k}={readable(v)}" for k, v in target.items()),
                                  "kind": str(target.get("kind"))}]}


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
        "locations": [_location(f)],
        "partialFingerprints": {"hostguard/v1": f.fingerprint},
        "properties": {"severity": str(f.severity), "target": f.to_dict()["target"],
                       "evidence": f.to_dict()["evidence"]},
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
