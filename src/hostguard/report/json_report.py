"""``--format json``: the report contract of DESIGN.md."""

from __future__ import annotations

import json
from collections.abc import Sequence

from hostguard.findings import Report
from hostguard.store.state import Accepted


def render(report: Report, stats: dict[str, object] | None = None) -> str:
    """The report as one JSON document."""
    data = report.to_dict()
    if stats:
        data["stats"] = stats
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_accepted(host: str, entries: Sequence[Accepted]) -> str:
    """``hostguard accepted --format json``: ``{"host", "accepted": [{"fingerprint", "check", "title", "reason",
    "accepted_at"}]}`` (``check`` and ``title`` null when the fingerprint was accepted before any recorded scan
    saw it)."""
    return json.dumps({"host": host, "accepted": [e.to_dict() for e in entries]}, indent=2, ensure_ascii=False) + "\n"
