"""Suppression: accepted risks applied as a layer over findings, never as an ``if`` inside a check.

Two kinds, applied the same way: ``[[suppress.rules]]`` in the config (by check id, alias or family,
optionally one fingerprint: the owner's policy, shared between hosts) and findings accepted on one host
with ``hostguard accept FINGERPRINT`` (kept in state.db: "I have seen this one, it is fine here").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
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


def apply_accepted(findings: Iterable[Finding], accepted: Collection[str]) -> tuple[list[Finding], list[Finding]]:
    """Findings whose fingerprint is not accepted, and those that are."""
    kept: list[Finding] = []
    hidden: list[Finding] = []
    for finding in findings:
        (hidden if finding.fingerprint in accepted else kept).append(finding)
    return kept, hidden


FINGERPRINT_TEXT = re.compile(r"[0-9a-f]{8,32}")


class FingerprintError(Exception):
    """A fingerprint given by the owner is malformed, unknown or ambiguous."""


def resolve_fingerprints(given: Iterable[str], known: Collection[str], unknown: str) -> list[str]:
    """The full fingerprints ``given`` names: each one whole (32 hex digits) or a prefix of at least 8 that
    only one of ``known`` starts with. A typo must never accept (or take back) nothing in silence, so
    anything else is an error; ``unknown`` says where the fingerprint was looked for."""
    out: list[str] = []
    for text in given:
        wanted = text.strip().lower()
        if not FINGERPRINT_TEXT.fullmatch(wanted):
            raise FingerprintError(f"{text!r} is not a fingerprint (8 to 32 hex digits, as a report shows them)")
        matches = sorted(fp for fp in known if fp.startswith(wanted))
        if not matches:
            raise FingerprintError(f"no finding with fingerprint {wanted} {unknown}")
        if len(matches) > 1:
            raise FingerprintError(f"fingerprint prefix {wanted} matches {len(matches)} findings "
                                   f"({', '.join(matches[:3])}{', ...' if len(matches) > 3 else ''}): give more digits")
        if matches[0] not in out:
            out.append(matches[0])
    return out
