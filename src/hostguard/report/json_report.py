"""``--format json``: the report contract of DESIGN.md."""

from __future__ import annotations

import json

from hostguard.findings import Report


def render(report: Report, stats: dict[str, object] | None = None) -> str:
    """The report as one JSON document."""
    data = report.to_dict()
    if stats:
        data["stats"] = stats
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
