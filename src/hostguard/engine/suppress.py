"""Suppression: accepted risks applied as a layer over findings, never as an ``if`` inside a check."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hostguard.findings import Finding


def apply(findings: Iterable[Finding], rules: list[dict[str, Any]]) -> tuple[list[Finding], int]:
    """Findings not matched by any rule, and how many were suppressed.

    A rule matches on ``id`` (a check id, or a family name followed by ``.*``) and, when given, the
    finding's ``fingerprint``.
    """
    kept: list[Finding] = []
    suppressed = 0
    for finding in findings:
        if any(_matches(finding, rule) for rule in rules):
            suppressed += 1
        else:
            kept.append(finding)
    return kept, suppressed


def _matches(finding: Finding, rule: dict[str, Any]) -> bool:
    rule_id = str(rule.get("id", ""))
    id_ok = finding.id.startswith(rule_id[:-1]) if rule_id.endswith(".*") else finding.id == rule_id
    fp = rule.get("fingerprint")
    return id_ok and (fp is None or fp == finding.fingerprint)
