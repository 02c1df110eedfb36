"""``--format json``: the report contract of DESIGN.md."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hostguard.findings import Report
from hostguard.store.state import Accepted

if TYPE_CHECKING:
    from hostguard.report.diff import HistoryEntry, ScanDiff


def render(report: Report, stats: dict[str, object] | None = None, diff: ScanDiff | None = None) -> str:
    """The report as one JSON document; with ``diff`` (``scan --diff``) a ``"diff"`` object too: ``{"scan_id",
    "against": {"scan_id", "started", "families", "compared_checks"} | null, "new", "resolved", "open",
    "not_checked"}``, each list of ``{"fingerprint", "id", "severity", "title", "target"}`` (the full finding,
    when this scan reported it, is in ``"findings"``)."""
    data = report.to_dict()
    if stats:
        data["stats"] = stats
    if diff is not None:
        data["diff"] = diff.to_dict()
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_accepted(host: str, entries: Sequence[Accepted]) -> str:
    """``hostguard accepted --format json``: ``{"host", "accepted": [{"fingerprint", "check", "title", "reason",
    "accepted_at"}]}`` (``check`` and ``title`` null when the fingerprint was accepted before any recorded scan
    saw it)."""
    return json.dumps({"host": host, "accepted": [e.to_dict() for e in entries]}, indent=2, ensure_ascii=False) + "\n"


def render_history(host: str, entries: Sequence[HistoryEntry]) -> str:
    """``hostguard history --format json``: ``{"host", "scans": [...]}``, newest first (see HistoryEntry)."""
    return json.dumps({"host": host, "scans": [e.to_dict() for e in entries]}, indent=2, ensure_ascii=False) + "\n"
