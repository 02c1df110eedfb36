"""The annotated sample lines of tests/fixtures/logs/*.toml, and how to run one case through the parser."""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hostguard.logons.parse import parse_lines
from hostguard.logons.sources import SourceStats
from hostguard.logons.timestamps import Clock

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "logs"
DEFAULTS = {"service": "sshd", "count": 1, "user": None, "ip": None, "port": None, "method": None, "time": None}


def cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(family:name, case, file settings)`` for every case of every sample file."""
    out = []
    for path in sorted(LOGS.glob("*.toml")):
        data = tomllib.loads(path.read_text("utf-8"))
        for case in data["case"]:
            out.append((f"{path.stem}:{case['name']}", case, data))
    return out


def run_case(case: dict[str, Any], settings: dict[str, Any]) -> tuple[list[dict[str, Any]], SourceStats]:
    """The events (without ``file``) the case's lines give, and the stream's stats."""
    zone = ZoneInfo(case.get("zone", settings["zone"]))
    reference = datetime.fromisoformat(case.get("reference", settings["reference"]))
    stats = SourceStats("sample")
    lines = [(i, line.encode("utf-8")) for i, line in enumerate(case["lines"], start=1)]
    events = [e.to_json() for e in parse_lines(lines, "sample", Clock(zone, reference), stats, case.get("program"))]
    for event in events:
        del event["file"]
    return events, stats


def expected(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's expected events, absent fields filled with their defaults."""
    return [{"line": e["line"], **{k: e.get(k, v) for k, v in DEFAULTS.items()}, "outcome": e["outcome"]}
            for e in case["expect"]]
