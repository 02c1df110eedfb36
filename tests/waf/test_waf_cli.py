"""`hostguard waf report|exclusions|check` as a user runs them: the event log read into the state, proposals
listed and accepted, repeat offenders named, the rule files and virtual patches checked by the engine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.waf.test_engine import _need_library
from tests.waf.test_learn import _event

ROOT = Path(__file__).resolve().parents[2]


def _hg(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "hostguard.cli", "--state", str(tmp_path / "state"), "waf", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def _log(tmp_path: Path, events: list[dict[str, Any]]) -> None:
    (tmp_path / "state").mkdir(exist_ok=True)
    with open(tmp_path / "state/waf-events.jsonl", "a") as f:
        f.write("".join(json.dumps(e) + "\n" for e in events) + "not an event\n")


def test_exclusions_are_proposed_listed_and_accepted(tmp_path: Path) -> None:
    learned = [_event(n, f"198.51.{100 + n % 6}.7", 1 + n % 3) for n in range(18)]
    _log(tmp_path, learned)
    listed = _hg(tmp_path, "exclusions", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert "1 lines of the event log are not events" in listed.stderr
    [proposal] = json.loads(listed.stdout)
    assert (proposal["rule"], proposal["path"], proposal["variable"], proposal["state"]) == (
        941100, "/wp-admin/post.php", "ARGS:content", "proposed")
    accepted = _hg(tmp_path, "exclusions", "--accept", proposal["id"])
    assert accepted.returncode == 0 and "accepted" in accepted.stdout
    again = _hg(tmp_path, "exclusions", "--format", "json")
    assert [p["state"] for p in json.loads(again.stdout)] == ["accepted"]   # read once, decided once
    unknown = _hg(tmp_path, "exclusions", "--reject", "nope")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "nope" in unknown.stderr


def test_no_proposal_from_too_few_networks(tmp_path: Path) -> None:
    _log(tmp_path, [_event(n, "198.51.100.7", 1 + n % 5) for n in range(20)])
    listed = _hg(tmp_path, "exclusions")
    assert listed.returncode == 0 and "no exclusions proposed yet" in listed.stdout


def test_report_counts_rules_and_names_repeat_offenders(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    today = datetime.now(UTC).strftime("%Y-%m-%dT10:00:00.000+00:00")
    events = [dict(_event(n, "203.0.113.50", 1, action="blocked"), time=today) for n in range(4)]
    events += [dict(_event(100 + n, "192.0.2.10", 1, action="blocked"), time=today) for n in range(5)]
    _log(tmp_path, events)
    (tmp_path / "hostguard.toml").write_text('[waf]\ntrusted_proxies = ["192.0.2.0/24"]\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "hostguard.cli", "--config", str(tmp_path / "hostguard.toml"),
                           "--state", str(tmp_path / "state"), "waf", "report", "--block-after", "3",
                           "--format", "json"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["events"] == 9 and report["actions"] == {"blocked": 9}
    assert {r["id"]: r["blocked"] for r in report["rules"]} == {941100: 9, 949110: 9}
    assert [o["client"] for o in report["offenders"]] == ["203.0.113.50"]   # the trusted proxy never


def test_check_loads_every_shipped_rule_file(tmp_path: Path) -> None:
    _need_library()
    done = _hg(tmp_path, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.fullmatch(r"(\d+) of \1 rule files load; (\d+) of \2 virtual patches load", done.stdout.strip())


def test_report_counts_refusals_before_inspection_by_reason(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    today = datetime.now(UTC).strftime("%Y-%m-%dT10:00:00.000+00:00")
    refused = [dict(_event(200 + n, "198.51.100.9", 1, action="refused", path="/upload", rules=[]), time=today,
                    status=413 if n < 2 else 503, reason="body_too_large" if n < 2 else "buffer_full")
               for n in range(3)]
    _log(tmp_path, [dict(_event(1, "203.0.113.50", 1, action="blocked"), time=today), *refused])
    done = _hg(tmp_path, "report")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("4 requests matched a rule or were refused since ") and \
        lines[0].endswith(": 1 blocked, 3 refused")
    assert lines[1] == "  refused before inspection: 2 body_too_large, 1 buffer_full"
    as_json = json.loads(_hg(tmp_path, "report", "--format", "json").stdout)
    assert as_json["refused"] == {"body_too_large": 2, "buffer_full": 1}
    assert {r["id"]: r["blocked"] for r in as_json["rules"]} == {941100: 1, 949110: 1}   # refusals have no rules
