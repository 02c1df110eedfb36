"""What changed between two recorded scans: new, resolved, still open, and what could not be told.

Kept apart from the renderers so the table, the JSON report, ``hostguard history`` (and later the agent and
the console) read one answer. The rules, for the current scan C and the earlier comparable scan P that
``StateStore.previous_comparable`` picks (same host, same root, the most checks in common):

* **new**: reported by C, and not found by P at all (whatever P did with it). A finding of a check P did not
  select is new too: P never looked. With no P (the first scan), everything C reports is new.
* **still open**: reported by C and found by P (reported, suppressed or accepted there).
* **resolved**: reported by P, not found by C in any form, and its check selected by both and run to
  completion in both. A check skipped for budget, error or missing rights is not a fix.
* **not checked**: reported by P, not found by C, but its check did not complete in one of the two scans:
  nobody can tell whether it is gone, so it is neither resolved nor silently dropped.

Findings of checks C did not select are out of the comparison (``--only ssh`` after a full scan compares the
ssh checks only). Accepted and suppressed findings of C are never new: the owner has judged them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hostguard.store.state import REPORTED, PastFinding, RecordedScan


@dataclass(frozen=True)
class ScanDiff:
    """The answer for one scan; ``against`` is None when no earlier scan is comparable."""

    scan_id: int
    against: RecordedScan | None
    new: tuple[PastFinding, ...]
    resolved: tuple[PastFinding, ...]
    open: tuple[PastFinding, ...]
    not_checked: tuple[PastFinding, ...]
    compared: tuple[str, ...] = ()  # the check ids both scans selected: what resolved and not checked cover

    def to_dict(self) -> dict[str, Any]:
        """The ``"diff"`` object of ``scan --diff --format json``."""
        against = None if self.against is None else {
            "scan_id": self.against.id, "started": self.against.started, "families": self.against.families,
            "compared_checks": len(self.compared)}
        return {"scan_id": self.scan_id, "against": against,
                "new": [f.to_dict() for f in self.new], "resolved": [f.to_dict() for f in self.resolved],
                "open": [f.to_dict() for f in self.open], "not_checked": [f.to_dict() for f in self.not_checked]}


def _order(findings: list[PastFinding]) -> tuple[PastFinding, ...]:
    from hostguard.findings import Severity

    return tuple(sorted(findings, key=lambda f: (-Severity(f.severity).rank, f.check_id, f.fingerprint)))


def compare(current: RecordedScan, previous: RecordedScan | None) -> ScanDiff:
    """The diff of ``current`` against ``previous`` (see the module's rules)."""
    reported = [f for f in current.findings.values() if f.disposition == REPORTED]
    now_checks = current.checks or {}
    if previous is None:
        return ScanDiff(current.id, None, _order(reported), (), (), ())
    before = previous.findings
    before_checks = previous.checks or {}
    new = [f for f in reported if f.fingerprint not in before]
    still = [f for f in reported if f.fingerprint in before]
    resolved: list[PastFinding] = []
    unknown: list[PastFinding] = []
    for f in before.values():
        if f.disposition != REPORTED or f.fingerprint in current.findings or f.check_id not in now_checks:
            continue
        (resolved if now_checks[f.check_id] and before_checks.get(f.check_id, False) else unknown).append(f)
    return ScanDiff(current.id, previous, _order(new), _order(resolved), _order(still), _order(unknown),
                    tuple(sorted(set(now_checks) & set(before_checks))))


@dataclass(frozen=True)
class HistoryEntry:
    """One line of ``hostguard history``: a recorded scan and its diff (None when it cannot be told: no coverage
    recorded, or the scan it was compared with may have been pruned)."""

    scan: RecordedScan
    diff: ScanDiff | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"scan_id", "started", "root", "families", "complete", "findings", "against",
        "new", "resolved"}`` (``against`` null for a first scan; it and the counts null when unknown)."""
        s, d = self.scan, self.diff
        return {"scan_id": s.id, "started": s.started, "root": s.root, "families": s.families,
                "complete": s.complete, "findings": s.reported,
                "against": d.against.id if d is not None and d.against is not None else None,
                "new": len(d.new) if d is not None else None, "resolved": len(d.resolved) if d is not None else None}
