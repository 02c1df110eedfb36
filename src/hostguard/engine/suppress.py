"""Suppression: accepted risks applied as a layer over findings, never as an ``if`` inside a check."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hostguard.config import setting
from hostguard.findings import Finding


@dataclass(frozen=True)
class SuppressRule:
    """One accepted risk: a check id (or alias, or ``family.*``), optionally one finding's fingerprint."""

    id: str
    fingerprint: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class SuppressConfig:
    """[suppress]: accepted risks."""

    rules: tuple[SuppressRule, ...] = setting(
        (), 'Accepted risks: [[suppress.rules]] with id = "check.id" (or an alias, or "family.*"), optionally '
            'fingerprint = "..." (one finding only) and reason = "...".')


Canonical = Callable[[str], "str | None"]


class SuppressError(Exception):
    """A rule names no check or family: a typo would silently accept nothing."""


def resolve(rules: Iterable[SuppressRule], canonical: Canonical, families: Iterable[str]) -> list[SuppressRule]:
    """Rules with aliases replaced by the check id they name; a rule naming nothing is an error."""
    known = set(families)
    out = []
    for rule in rules:
        if rule.id.endswith(".*") and rule.id[:-2] in known:
            out.append(rule)
            continue
        target = canonical(rule.id)
        if target is None:
            raise SuppressError(f"suppress rule id '{rule.id}' names no check (see `hostguard checks`)")
        out.append(SuppressRule(target, rule.fingerprint, rule.reason))
    return out


def apply(findings: Iterable[Finding], rules: Iterable[SuppressRule]) -> tuple[list[Finding], int]:
    """Findings not matched by any rule, and how many were suppressed.

    A rule matches on ``id`` (a check id, or a family name followed by ``.*``) and, when given, the
    finding's ``fingerprint``.
    """
    rules = list(rules)
    kept: list[Finding] = []
    suppressed = 0
    for finding in findings:
        if any(_matches(finding, rule) for rule in rules):
            suppressed += 1
        else:
            kept.append(finding)
    return kept, suppressed


def _matches(finding: Finding, rule: SuppressRule) -> bool:
    id_ok = finding.id.startswith(rule.id[:-1]) if rule.id.endswith(".*") else finding.id == rule.id
    return id_ok and (rule.fingerprint is None or rule.fingerprint == finding.fingerprint)
