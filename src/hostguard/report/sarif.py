"""``--format sarif``: SARIF 2.1.0 for code-scanning dashboards. One rule per check id."""

from __future__ import annotations

import json
from typing import Any

from hostguard import __version__
from hostguard.engine.registry import all_checks
from hostguard.findings import Finding, Report, Severity, readable

LEVELS = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
          Severity.LOW: "note", Severity.INFO: "note"}


def _location(finding: Finding) -> dict[str, Any]:
    target = finding.target
    path = target.get("path") or finding.evidence.get("path")
    if path:
        loc: dict[str, Any] = {"artifactLocation": {"uri": readable(path)}}
        line = target.get("line") or finding.evidence.get("line")
        if isinstance(line, int) and line > 0:
            loc["region"] = {"startLine": line}
        return {"physicalLocation": loc}
    return {"logicalLocations": [{"name": readable(" ".join(f"{k}={v}" for k, v in target.items())),
                                  "kind": str(target.get("kind"))}]}


def render(report: Report) -> str:
    """The report as a SARIF log."""
    specs = {s.id: s for s in all_checks()}
    used = sorted({f.id for f in report.findings})
    rules = [{"id": i, "name": i, "shortDescription": {"text": specs[i].title if i in specs else i},
              "fullDescription": {"text": specs[i].doc if i in specs else ""},
              "defaultConfiguration": {"level": LEVELS[specs[i].severity] if i in specs else "warning"}}
             for i in used]
    results = [{
        "ruleId": f.id,
        "level": LEVELS[f.severity],
        "message": {"text": f"{readable(f.title)}. Fix: {readable(f.remediation)}"},
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
                    {"level": "warning", "message": {"text": f"{s.check}: not checked ({s.reason}) {s.detail}"}}
                    for s in report.skipped],
            }],
            "properties": {"host": report.host.to_dict(), "complete": report.complete},
        }],
    }
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"
