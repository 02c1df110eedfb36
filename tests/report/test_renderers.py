"""Every output format rendered from the one shared report of conftest.py."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import tomllib
from typing import Any

import pytest

from hostguard.config import build, plain
from hostguard.engine.registry import ScanConfig, default_registry
from hostguard.findings import Report
from hostguard.report import checks_listing, config_view, json_report, sarif, table
from tests.report.conftest import (
    EXPECTED_ORDER,
    HOST,
    HUGE,
    NO_RULE_ID,
    RULES,
    WEBSHELL_BYTES,
)

# The readable (lossy) forms of the non-UTF-8 names: \xNN escapes.
WEBSHELL_TEXT = r"/srv/www/\xff.php"
ITEM_TEXT = r"/home/caf\xe9/.ssh/authorized_keys"


def strings(value: Any) -> list[str]:
    """Every string (keys included) in decoded JSON data."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def assert_no_lone_surrogates(text: str) -> None:
    """The document and every string in it encode as strict UTF-8 (no raw or \\uDCxx-escaped surrogates)."""
    text.encode("utf-8")  # raises on a raw lone surrogate
    for s in strings(json.loads(text)):
        s.encode("utf-8")  # raises on a JSON-escaped one


def by_id(findings: list[dict[str, Any]], check_id: str) -> dict[str, Any]:
    [found] = [f for f in findings if f["id"] == check_id]
    return found


# -- json ------------------------------------------------------------------------------------------------

def test_json_header(report: Report) -> None:
    data = json.loads(json_report.render(report))
    assert data["schema_version"] == 2
    assert data["host"] == {"id": "0123456789abcdef0123456789abcdef:6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d",
                            "machine_id": HOST.machine_id, "state_uuid": HOST.state_uuid,
                            "hostname": "web01.example.test"}
    assert data["root"] == "/mnt/image"
    assert data["started"] == "2024-05-01T12:00:00Z"
    assert data["complete"] is False
    assert "stats" not in data


def test_json_findings_most_severe_first(report: Report) -> None:
    data = json.loads(json_report.render(report))
    assert [f["id"] for f in data["findings"]] == EXPECTED_ORDER
    assert [f["severity"] for f in data["findings"]] == ["critical", "high", "high", "medium", "low", "info"]


def test_json_non_utf8_value_is_text_and_exact_bytes(report: Report) -> None:
    data = json.loads(json_report.render(report))
    shell = by_id(data["findings"], "files.suspicious_script")
    expected = {"text": WEBSHELL_TEXT, "base64": base64.b64encode(WEBSHELL_BYTES).decode()}
    assert shell["target"] == {"kind": "path", "path": expected}
    assert shell["evidence"]["path"] == expected
    assert base64.b64decode(shell["target"]["path"]["base64"]) == WEBSHELL_BYTES
    assert base64.b64decode(shell["evidence"]["path"]["base64"]) == WEBSHELL_BYTES
    assert shell["evidence"]["excerpt"] == HUGE  # the machine format keeps evidence whole
    assert shell["evidence"]["size"] == 10_282


def test_json_nested_evidence_and_other_targets(report: Report) -> None:
    data = json.loads(json_report.render(report))
    redis = by_id(data["findings"], "ports.exposed_service")
    assert redis["target"] == {"kind": "port", "port": 6379, "proto": "tcp", "address": "0.0.0.0"}
    assert redis["evidence"]["socket"] == {"local": {"address": "0.0.0.0", "port": 6379}, "state": "LISTEN"}
    assert redis["evidence"]["listeners"] == [{"address": "0.0.0.0", "port": 6379}]
    login = by_id(data["findings"], "ssh.root_password_login")
    assert login["target"] == {"kind": "path", "path": "/etc/ssh/sshd_config", "line": 42}
    assert login["title"] == "root can log in with a password [PermitRootLogin yes]"
    assert by_id(data["findings"], NO_RULE_ID)["evidence"] == {}


def test_json_skipped_item_only_when_given(report: Report) -> None:
    data = json.loads(json_report.render(report))
    assert data["skipped"] == [
        {"family": "firewall", "check": "firewall.service_reachable", "reason": "tool_missing",
         "detail": "nft is not installed"},
        {"family": "accounts", "check": "accounts.ssh_key_unusual", "reason": "error",
         "detail": f"open {ITEM_TEXT}: Permission denied", "item": ITEM_TEXT},
    ]  # skipped entries are readable strings (their JSON type never changes)


def test_json_no_lone_surrogates(report: Report) -> None:
    assert_no_lone_surrogates(json_report.render(report))


def test_json_stats_appended(report: Report) -> None:
    data = json.loads(json_report.render(report, stats={"seconds": 1.5, "checks": 29}))
    assert data["stats"] == {"seconds": 1.5, "checks": 29}


def test_json_empty_report(empty_report: Report) -> None:
    data = json.loads(json_report.render(empty_report))
    assert (data["complete"], data["findings"], data["skipped"], data["root"]) == (True, [], [], None)


# -- sarif -----------------------------------------------------------------------------------------------

def sarif_run(report: Report) -> dict[str, Any]:
    log = json.loads(sarif.render(report))
    assert log["version"] == "2.1.0"
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    [run] = log["runs"]
    return run


def test_sarif_results_and_levels(report: Report) -> None:
    run = sarif_run(report)
    assert [(r["ruleId"], r["level"], r["properties"]["severity"]) for r in run["results"]] == [
        ("accounts.extra_uid0", "error", "critical"),
        ("ports.exposed_service", "error", "high"),
        ("ssh.root_password_login", "error", "high"),
        ("files.suspicious_script", "warning", "medium"),
        (NO_RULE_ID, "note", "low"),
        ("firewall.reachability", "note", "info"),
    ]
    fingerprints = {f.id: f.fingerprint for f in report.findings}
    assert [r["partialFingerprints"] for r in run["results"]] == [{"hostguard/v1": fingerprints[i]}
                                                                  for i in EXPECTED_ORDER]
    assert run["results"][0]["message"]["text"] == ("Account toor has uid 0. "
                                                    "Fix: Remove the account or give it its own uid.")
    assert run["properties"] == {"host": HOST.to_dict(), "complete": False}


def test_sarif_rules_only_for_used_ids(report: Report) -> None:
    rules = {r["id"]: r for r in sarif_run(report)["tool"]["driver"]["rules"]}
    assert list(rules) == sorted(EXPECTED_ORDER)  # ssh.password_auth has a Rule but no finding
    summaries = {r.id: r.summary for r in RULES}
    for rule_id, entry in rules.items():
        assert entry["name"] == rule_id
        assert entry["shortDescription"] == {"text": summaries.get(rule_id, rule_id)}
    assert rules["accounts.extra_uid0"]["fullDescription"] == {"text": "Every uid-0 account is root."}
    assert rules["accounts.extra_uid0"]["defaultConfiguration"] == {"level": "error"}
    assert rules["files.suspicious_script"]["defaultConfiguration"] == {"level": "warning"}
    assert rules["firewall.reachability"]["defaultConfiguration"] == {"level": "note"}


def test_sarif_rule_tags_and_help(report: Report) -> None:
    rules = {r["id"]: r for r in sarif_run(report)["tool"]["driver"]["rules"]}
    login = rules["ssh.root_password_login"]
    assert login["properties"] == {"tags": ["T1110.001", "T1078.003"]}
    assert login["helpUri"] == "https://man.openbsd.org/sshd_config#PermitRootLogin"
    assert "properties" not in rules["accounts.extra_uid0"]
    assert "helpUri" not in rules["accounts.extra_uid0"]


def test_sarif_rule_missing_from_report_rules(report: Report) -> None:
    rules = {r["id"]: r for r in sarif_run(report)["tool"]["driver"]["rules"]}
    assert rules[NO_RULE_ID] == {"id": NO_RULE_ID, "name": NO_RULE_ID, "shortDescription": {"text": NO_RULE_ID},
                                 "fullDescription": {"text": ""}, "defaultConfiguration": {"level": "note"}}


def test_sarif_locations(report: Report) -> None:
    results = {r["ruleId"]: r for r in sarif_run(report)["results"]}
    assert results["ssh.root_password_login"]["locations"] == [{"physicalLocation": {
        "artifactLocation": {"uri": "/etc/ssh/sshd_config"}, "region": {"startLine": 42}}}]
    assert results["ports.exposed_service"]["locations"] == [{"logicalLocations": [
        {"name": "kind=port port=6379 proto=tcp address=0.0.0.0", "kind": "port"}]}]
    assert results["accounts.extra_uid0"]["locations"] == [{"logicalLocations": [
        {"name": "kind=user user=toor", "kind": "user"}]}]
    shell = results["files.suspicious_script"]
    assert "region" not in shell["locations"][0]["physicalLocation"]
    assert shell["properties"]["target"]["path"]["base64"] == base64.b64encode(WEBSHELL_BYTES).decode()


def test_sarif_skipped_become_notifications(report: Report) -> None:
    [invocation] = sarif_run(report)["invocations"]
    assert invocation["executionSuccessful"] is True
    notes = invocation["toolExecutionNotifications"]
    assert [n["level"] for n in notes] == ["warning", "warning"]
    assert notes[0]["message"]["text"] == "firewall.service_reachable: not checked (tool_missing) nft is not installed"
    assert notes[1]["message"]["text"].startswith(f"accounts.ssh_key_unusual [{ITEM_TEXT}]: not checked (error) open "
                                                  "/home/caf")


def test_sarif_no_lone_surrogates(report: Report) -> None:
    assert_no_lone_surrogates(sarif.render(report))


def test_sarif_notification_names_the_item(report: Report) -> None:
    notes = sarif_run(report)["invocations"][0]["toolExecutionNotifications"]
    assert ITEM_TEXT in notes[1]["message"]["text"].replace(f"open {ITEM_TEXT}", "")


def test_sarif_uri_of_non_utf8_path_is_percent_encoded(report: Report) -> None:
    results = {r["ruleId"]: r for r in sarif_run(report)["results"]}
    uri = results["files.suspicious_script"]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "/srv/www/%FF.php"


def test_sarif_empty_report(empty_report: Report) -> None:
    run = sarif_run(empty_report)
    assert (run["tool"]["driver"]["rules"], run["results"]) == ([], [])
    assert run["invocations"][0]["toolExecutionNotifications"] == []
    assert run["properties"]["complete"] is True


def test_sarif_does_not_import_the_engine() -> None:
    code = "import sys, hostguard.report.sarif; print([m for m in sys.modules if m.startswith('hostguard.engine')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"


# -- table -----------------------------------------------------------------------------------------------

def render_table(report: Report, width: int = 120) -> str:
    out = io.StringIO()
    table.render(report, out, color=False, width=width)
    return out.getvalue()


def section(lines: list[str], title: str) -> list[str]:
    """The lines of the table titled ``title`` (up to the next line that is not part of a table)."""
    start = next(i for i, line in enumerate(lines) if line.rstrip() == title)
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(("┏", "┃", "┡", "│", "├", "└"))),
               len(lines))
    return lines[start + 1:end]


def column(rows: list[str], index: int) -> list[str]:
    """Cell ``index`` of each body row of a rich table."""
    return [row.split("│")[index + 1].strip() for row in rows if row.startswith("│")]


def test_table_order_of_sections(report: Report) -> None:
    lines = render_table(report).splitlines()
    assert lines[0] == "hostguard scan of web01.example.test (tree /mnt/image) at 2024-05-01T12:00:00Z"
    titles = [line.rstrip() for line in lines if line.rstrip() in
              {"Not checked (coverage is incomplete)", "CRITICAL (1)", "HIGH (2)", "MEDIUM (1)", "LOW (1)", "INFO (1)"}]
    assert titles == ["Not checked (coverage is incomplete)", "CRITICAL (1)", "HIGH (2)", "MEDIUM (1)", "LOW (1)",
                      "INFO (1)"]
    assert lines[-1] == "6 findings: 1 critical, 2 high, 1 medium, 1 low, 1 info. INCOMPLETE: see Not checked."
    assert "\x1b[" not in "\n".join(lines)  # color=False: no escape codes


def test_table_findings_in_their_groups(report: Report) -> None:
    lines = render_table(report).splitlines()
    firsts = {title: column(section(lines, title), 0)[0]
              for title in ("CRITICAL (1)", "HIGH (2)", "MEDIUM (1)", "LOW (1)", "INFO (1)")}
    assert firsts == {"CRITICAL (1)": "accounts.extra_uid0", "HIGH (2)": "ports.exposed_service",
                      "MEDIUM (1)": "files.suspicious_script", "LOW (1)": NO_RULE_ID,
                      "INFO (1)": "firewall.reachability"}
    high = column(section(lines, "HIGH (2)"), 0)
    assert high.index("ports.exposed_service") < high.index("ssh.root_password_login")
    assert "port 6379 proto=tcp address=0.0.0.0" in high
    assert "path /etc/ssh/sshd_config line=42" in high
    assert "[PermitRootLogin yes]" in high  # markup in a title is shown, not interpreted


def test_table_not_checked(report: Report) -> None:
    rows = section(render_table(report).splitlines(), "Not checked (coverage is incomplete)")
    checks = column(rows, 0)
    assert [c for c in checks if c] == ["firewall.service_reachable", "accounts.ssh_key_unusual", ITEM_TEXT]
    assert [c for c in column(rows, 1) if c] == ["tool_missing", "error"]
    details = column(rows, 2)
    assert details[0] == "nft is not installed"
    assert "".join(details[1:]).replace(" ", "") == f"open {ITEM_TEXT}: Permission denied".replace(" ", "")  # folded


def test_table_not_checked_names_the_item(report: Report) -> None:
    text = render_table(report, width=200)
    assert text.count(ITEM_TEXT) == 2  # once as the item, once inside the detail


def test_table_huge_evidence_is_shortened(report: Report) -> None:
    text = render_table(report)
    assert max(len(line) for line in text.splitlines()) <= 120
    assert len(text) < 20_000
    evidence = "".join(column(section(text.splitlines(), "MEDIUM (1)"), 1)).replace(" ", "")
    prefix = "<?php eval(base64_decode($_POST['c'])); ?>".replace(" ", "")
    # 160 characters at most: 157 of the value and "..."
    assert f"excerpt:{prefix}{'A' * (157 - 42)}...size:10282" in evidence


def test_table_non_utf8_path_is_readable(report: Report) -> None:
    text = render_table(report)
    assert f"path {WEBSHELL_TEXT}" in column(section(text.splitlines(), "MEDIUM (1)"), 0)
    text.encode("utf-8")


def test_table_non_utf8_evidence_is_readable(report: Report) -> None:
    text = render_table(report, width=200)
    evidence = column(section(text.splitlines(), "MEDIUM (1)"), 1)
    assert f"path: {WEBSHELL_TEXT}" in evidence


def test_table_nested_evidence(report: Report) -> None:
    evidence = " ".join(column(section(render_table(report, width=240).splitlines(), "HIGH (2)"), 1))
    assert 'process: {"name": "redis-server", "pid": 812}' in evidence
    assert 'listeners: [{"address": "0.0.0.0", "port": 6379}]' in evidence
    assert "socket" not in evidence  # doubly nested: left to --format json


def test_table_empty_report(empty_report: Report) -> None:
    assert render_table(empty_report).splitlines() == [
        "hostguard scan of web01.example.test at 2024-05-01T12:00:00Z",
        "Coverage: every selected check ran.",
        "No findings.",
    ]


# -- checks listing --------------------------------------------------------------------------------------

def test_checks_listing_json() -> None:
    data = json.loads(checks_listing.render_json(RULES))
    assert [r["id"] for r in data] == [r.id for r in RULES]
    assert data[0] == {
        "id": "ssh.root_password_login", "family": "ssh", "severity": "high",
        "title": "root can log in with a password", "summary": "root can log in with a password",
        "doc": "A password login for root lets anyone on the internet guess the most powerful account.",
        "references": ["https://man.openbsd.org/sshd_config#PermitRootLogin"],
        "tags": ["T1110.001", "T1078.003"], "aliases": ["ssh.permit_root_login"], "looks_at": ["sshd"]}
    assert (data[1]["tags"], data[1]["references"], data[1]["aliases"]) == ([], [], [])


def test_checks_listing_plain_on_a_pipe() -> None:
    out = io.StringIO()  # not a terminal: plain text
    checks_listing.render_table(RULES, out, width=200)
    text = out.getvalue()
    blocks = text.split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [f"{r.id}  [{r.severity}]  {r.summary}" for r in RULES]
    login = blocks[0].splitlines()
    assert login[1:] == [
        "    A password login for root lets anyone on the internet guess the most powerful account.",
        "    Looks at: sshd",
        "    ATT&CK: T1110.001, T1078.003",
        "    See: https://man.openbsd.org/sshd_config#PermitRootLogin",
        "    Also known as: ssh.permit_root_login"]
    assert text.count("ATT&CK:") == 1
    assert "\x1b[" not in text and "\u2502" not in text  # no colour codes, no table rules


# -- config show -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def schema() -> dict[str, type]:
    return default_registry().schema()


def test_config_toml_gives_back_every_value(schema: dict[str, type]) -> None:
    config = build({"ssh": {"max_auth_tries": 6}}, schema, path="/etc/x.toml")
    parsed = tomllib.loads(config_view.render_toml(config))
    assert list(parsed) == list(config.sections)
    for name, section in config.sections.items():
        assert parsed[name] == plain(section), name
    assert parsed["ssh"]["max_auth_tries"] == 6


def test_config_toml_origins(schema: dict[str, type]) -> None:
    lines = config_view.render_toml(build({"ssh": {"max_auth_tries": 6}}, schema, path="/etc/x.toml")).splitlines()
    assert "max_auth_tries = 6  # from /etc/x.toml" in lines
    assert 'config_file = "/etc/ssh/sshd_config"  # default' in lines
    assert [line for line in lines if "# from " in line] == ["max_auth_tries = 6  # from /etc/x.toml"]
    assert lines[0] == "# hostguard's effective configuration: the defaults, overridden by /etc/x.toml."


def test_config_toml_round_trip(schema: dict[str, type]) -> None:
    config = build({"ssh": {"max_auth_tries": 6}}, schema, path="/etc/x.toml")
    again = build(tomllib.loads(config_view.render_toml(config)), schema, path="/etc/x.toml")
    assert again.sections == config.sections


def test_config_toml_round_trip_of_awkward_values(schema: dict[str, type]) -> None:
    data = {"suppress": {"rules": [{"id": "ssh.password_auth", "reason": 'bastion "jump" host\\ é ☃\ttab'},
                                   {"id": "ports.*", "fingerprint": "0123abcd"}]},
            "ports": {"allowed": ["ssh", 8080, "8443"],
                      "extra_services": [{"name": "my db", "fix": "bind it", "processes": ["mydbd"], "ports": [5555]}]},
            "weak_passwords": {"budget_seconds": 0.001, "extra_words": ["ünïcode", 'a"b', "x\ny"]}}
    config = build(data, schema, path="/etc/x.toml")
    again = build(tomllib.loads(config_view.render_toml(config)), schema)
    assert again.sections == config.sections


def test_config_toml_escapes_delete_character(schema: dict[str, type]) -> None:
    config = build(tomllib.loads('[weak_passwords]\nextra_words = ["a\\u007fb"]\n'), schema, path="/etc/x.toml")
    assert tomllib.loads(config_view.render_toml(config))["weak_passwords"]["extra_words"] == ["a\x7fb"]


def test_config_json(schema: dict[str, type]) -> None:
    config = build({"ssh": {"max_auth_tries": 6}}, schema, path="/etc/x.toml")
    data = json.loads(config_view.render_json(config))
    assert data["file"] == "/etc/x.toml"
    assert data["settings"]["ssh.max_auth_tries"] == {"value": 6, "origin": "/etc/x.toml",
                                                      "help": "Highest MaxAuthTries that is not a finding."}
    assert data["settings"]["scan.fail_on"] == {"value": "high", "origin": "default",
                                                "help": ScanConfig.__dataclass_fields__["fail_on"].metadata["help"]}
    expected = {f"{name}.{key}": value for name, section in config.sections.items()
                for key, value in plain(section).items()}
    assert {k: v["value"] for k, v in data["settings"].items()} == expected


# -- remediation as data ------------------------------------------------------------------------------------

def test_json_remediation_is_data(report: Report) -> None:
    findings = {f["id"]: f for f in json.loads(json_report.render(report))["findings"]}
    assert findings["ssh.root_password_login"]["remediation"] == {
        "summary": "Set PermitRootLogin prohibit-password and reload sshd.",
        "steps": [{"kind": "edit", "path": "/etc/ssh/sshd_config", "line": 42, "old": "PermitRootLogin yes",
                   "new": "PermitRootLogin prohibit-password"},
                  {"kind": "command", "argv": ["sshd", "-t"], "live_only": True, "undo": None, "reversible": False},
                  {"kind": "command", "argv": ["systemctl", "reload", "sshd"], "live_only": True, "undo": None,
                   "reversible": False}],
        "manual": None, "params": []}
    assert findings["accounts.extra_uid0"]["remediation"] == {
        "summary": "Remove the account or give it its own uid.", "steps": [],
        "manual": "Only you know whether toor is yours.",
        "params": [{"name": "NEW_UID", "meaning": "a free UID for the account", "example": "1005"}]}


def test_table_shows_steps_and_what_is_left_by_hand(report: Report) -> None:
    lines = render_table(report, width=240).splitlines()
    fixes = " ".join(column(section(lines, "HIGH (2)"), 2))
    assert "1. edit /etc/ssh/sshd_config line 42: `PermitRootLogin yes` -> `PermitRootLogin prohibit-password`" in fixes
    assert "3. run `systemctl reload sshd`" in fixes
    manual = " ".join(column(section(lines, "CRITICAL (1)"), 2))
    assert "By hand: Only you know whether toor is yours." in manual
    assert "NEW_UID: a free UID for the account (e.g. 1005)" in manual


def test_sarif_message_carries_the_fix_summary(report: Report) -> None:
    results = {r["ruleId"]: r for r in sarif_run(report)["results"]}
    assert results["ssh.root_password_login"]["message"]["text"] == (
        "root can log in with a password [PermitRootLogin yes]. Fix: Set PermitRootLogin prohibit-password and "
        "reload sshd.")
