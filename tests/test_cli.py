"""The command line: contracts, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURES, HITS, build_tree


def hostguard(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    config = str(FIXTURES / "fast.toml")
    return subprocess.run([sys.executable, "-m", "hostguard.cli", "--config", config, "--state", str(state), *args],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})


def with_config(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    """hostguard run with a config file holding ``text`` (and a private state directory)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    return subprocess.run([sys.executable, "-m", "hostguard.cli", "--config", str(cfg), "--state", str(tmp_path / "s"),
                           *args], capture_output=True, text=True)


def test_clean_tree_json_contract(tmp_path: Path, clean_tree: Path) -> None:
    r = hostguard("scan", "--root", str(clean_tree), "--format", "json", state=tmp_path / "s")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["schema_version"] == 2
    assert set(data) >= {"schema_version", "host", "started", "complete", "findings", "skipped"}
    assert data["host"]["machine_id"] == "4f1c1b3a8c2d4e5f8a9b0c1d2e3f4a5b"
    assert data["host"]["hostname"] == "clean.test"
    assert [f for f in data["findings"] if f["severity"] != "info"] == []
    assert data["complete"] is False  # live-only checks cannot run on a tree
    # live-only checks cannot run on a tree; with no time budget the strong hashes were only partly tried
    assert {s["reason"] for s in data["skipped"]} == {"live_only", "budget", "unsupported", "tool_missing"}
    # no advisory copy was fetched into this state directory: the packages were not matched, and it is said
    assert {s["check"] for s in data["skipped"] if s["reason"] == "tool_missing"} == {"vulns.package"}
    assert {s["check"] for s in data["skipped"] if s["reason"] == "budget"} == {"weak_passwords.system"}
    # the fixture tree has no package database: its files cannot be checked against one
    assert {s["check"] for s in data["skipped"] if s["reason"] == "unsupported"} == {"integrity.changed_file",
                                                                                  "integrity.mode_changed"}


def test_host_id_is_stable_across_scans(tmp_path: Path, clean_tree: Path) -> None:
    ids = {json.loads(hostguard("scan", "--root", str(clean_tree), "--only", "ssh", "--format", "json",
                                state=tmp_path / "s").stdout)["host"]["id"] for _ in range(2)}
    assert len(ids) == 1


def test_findings_set_exit_code_and_fail_on(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "h", HITS / "accounts.extra_uid0")
    r = hostguard("scan", "--root", str(tree), "--only", "accounts", "--format", "json", state=tmp_path / "s")
    assert r.returncode == 1
    ids = [(f["id"], f["target"]) for f in json.loads(r.stdout)["findings"]]
    assert ("accounts.extra_uid0", {"kind": "user", "user": "toor"}) in ids
    r = hostguard("scan", "--root", str(tree), "--only", "ssh", "--fail-on", "critical", state=tmp_path / "s")
    assert r.returncode == 0


def test_table_shows_not_checked_first_and_the_fix(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "h", HITS / "ssh.max_auth_tries")
    r = hostguard("scan", "--root", str(tree), "--only", "ssh", state=tmp_path / "s")
    assert r.returncode == 0
    out = r.stdout
    assert out.index("Not checked") < out.index("LOW")
    assert "MaxAuthTries 4" in out and "ssh.max_auth_tries" in out


def test_sarif_output(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "h", HITS / "ssh.empty_passwords")
    r = hostguard("scan", "--root", str(tree), "--only", "ssh", "--format", "sarif", state=tmp_path / "s")
    log = json.loads(r.stdout)
    results = log["runs"][0]["results"]
    assert [x["ruleId"] for x in results if x["level"] == "error"] == ["ssh.empty_passwords"]
    assert all(x["partialFingerprints"]["hostguard/v1"] for x in results)


def test_only_unknown_family_is_usage_error(tmp_path: Path, clean_tree: Path) -> None:
    r = hostguard("scan", "--root", str(clean_tree), "--only", "sshh", state=tmp_path / "s")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown family sshh" in r.stderr


def test_missing_root_is_usage_error(tmp_path: Path) -> None:
    r = hostguard("scan", "--root", str(tmp_path / "nope"), state=tmp_path / "s")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"hostguard: error: --root {tmp_path / 'nope'}: no such directory"


def test_malformed_config_is_usage_error(tmp_path: Path, clean_tree: Path) -> None:
    r = with_config(tmp_path, "[ports]\nallowed = 22\n", "scan", "--root", str(clean_tree))
    assert r.returncode == 2
    cfg = tmp_path / "c.toml"
    assert r.stderr.strip() == f"hostguard: error: config {cfg}: 'ports.allowed' must be list, not int"


def test_unwritable_state_is_usage_error(tmp_path: Path, clean_tree: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = hostguard("scan", "--root", str(clean_tree), state=blocker / "sub")
    assert r.returncode == 2 and r.stderr.startswith("hostguard: error: state directory")
    assert "Traceback" not in r.stderr


def test_garbage_files_in_tree_do_not_crash(tmp_path: Path, clean_tree: Path) -> None:
    (clean_tree / "etc/passwd").write_bytes(b"\xff\xfe garbage \x00\n" + b"A" * 200_000 + b"\nroot:x:0:0::/root:/bin/sh\n")
    (clean_tree / "etc/shadow").chmod(0)
    (clean_tree / "etc/login.defs").write_bytes(bytes(range(256)) * 10)
    (clean_tree / "etc/ssh/sshd_config").write_bytes(b"Port \xff\xff\nMatch\nInclude /nonexistent/*\n")
    r = hostguard("scan", "--root", str(clean_tree), "--format", "json", state=tmp_path / "s")
    assert r.returncode in (0, 1), r.stderr
    assert "Traceback" not in r.stderr
    json.loads(r.stdout)


def test_checks_lists_every_check(tmp_path: Path) -> None:
    r = hostguard("checks", "--format", "json", state=tmp_path / "s")
    listed = json.loads(r.stdout)
    assert {"ssh.root_password_login", "accounts.extra_uid0"} <= {c["id"] for c in listed}
    assert all(c["doc"] for c in listed)


def test_no_command_is_usage_error(tmp_path: Path) -> None:
    r = hostguard(state=tmp_path / "s")
    assert r.returncode == 2 and "a command is required" in r.stderr


def test_suppress_rule_naming_no_check_is_usage_error(tmp_path: Path, clean_tree: Path) -> None:
    r = with_config(tmp_path, '[[suppress.rules]]\nid = "ssh.defualt_port"\nreason = "typo"\n',
                    "scan", "--root", str(clean_tree))
    assert r.returncode == 2
    cfg = tmp_path / "c.toml"
    assert r.stderr.strip() == (f"hostguard: error: config {cfg}: suppress rule id 'ssh.defualt_port' names no check "
                                "(see `hostguard checks`)")


def test_config_show_names_where_each_value_came_from(tmp_path: Path) -> None:
    text = '[ssh]\nmax_auth_tries = 6\n\n[[ports.extra_services]]\nname = "Gitea"\nfix = "bind it"\nports = [3000]\n'
    cfg = tmp_path / "c.toml"
    r = with_config(tmp_path, text, "config", "show")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert f"max_auth_tries = 6  # from {cfg}" in lines
    assert "report_default_port = true  # default" in lines
    assert ('extra_services = [{ name = "Gitea", fix = "bind it", processes = [], executables = [], packages = [], '
            f'scripts = [], ports = [3000] }}]  # from {cfg}') in lines
    r = with_config(tmp_path, text, "config", "show", "--format", "json")
    settings = json.loads(r.stdout)["settings"]
    assert {k: v for k, v in settings["ssh.max_auth_tries"].items() if k != "help"} == {"value": 6, "origin": str(cfg)}
    assert settings["weak_passwords.budget_seconds"]["value"] == 30.0
    assert settings["weak_passwords.budget_seconds"]["origin"] == "default"
    assert settings["weak_passwords.budget_seconds"]["help"].startswith("Seconds each check of the family spends")


def test_only_takes_a_check_id(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "h", HITS / "ssh.empty_passwords")
    r = hostguard("scan", "--root", str(tree), "--only", "ssh.empty_passwords", "--format", "json", state=tmp_path / "s")
    assert {f["id"] for f in json.loads(r.stdout)["findings"]} == {"ssh.empty_passwords"}


def test_only_edge_cases_are_one_line_errors(tmp_path: Path, clean_tree: Path) -> None:
    empty = hostguard("scan", "--root", str(clean_tree), "--only", "", state=tmp_path / "s")
    assert (empty.returncode, empty.stderr) == (2, "hostguard: error: --only needs at least one family or check id "
                                                   "(see hostguard checks)\n")
    typo = hostguard("scan", "--root", str(clean_tree), "--only", "ssh.nope", state=tmp_path / "s")
    assert (typo.returncode, typo.stderr) == (2, "hostguard: error: unknown check ssh.nope (see `hostguard checks`)\n")
    star = hostguard("scan", "--root", str(clean_tree), "--only", "ssh.*", "--format", "json", state=tmp_path / "s")
    assert {s["family"] for s in json.loads(star.stdout)["skipped"]} == {"ssh"}


def test_root_that_is_a_file_says_so(tmp_path: Path) -> None:
    f = tmp_path / "image.img"
    f.write_bytes(b"\0" * 16)
    r = hostguard("scan", "--root", str(f), state=tmp_path / "s")
    assert (r.returncode, r.stderr) == (2, f"hostguard: error: --root {f}: not a directory\n")


def test_a_broken_family_module_is_one_line(monkeypatch, capsys) -> None:
    from hostguard.cli import main
    from hostguard.engine import registry

    def broken() -> registry.Registry:
        raise registry.RegistryError("cannot load family module hostguard.checks.demo: SyntaxError: invalid syntax")

    monkeypatch.setattr(registry, "default_registry", broken)
    assert main(["checks"]) == 2
    err = capsys.readouterr().err
    assert err == "hostguard: error: cannot load family module hostguard.checks.demo: SyntaxError: invalid syntax\n"


def test_only_made_of_separators_is_a_usage_error(tmp_path: Path, clean_tree: Path) -> None:
    """Issue 7: ``--only ''`` ran every family; separators alone name no family either."""
    for only in ("", ",", " , ", ",,"):
        r = hostguard("scan", "--root", str(clean_tree), "--only", only, "--format", "json", state=tmp_path / "s")
        assert (r.returncode, r.stdout, r.stderr) == (
            2, "", "hostguard: error: --only needs at least one family or check id (see hostguard checks)\n"), only
    r = hostguard("scan", "--root", str(clean_tree), "--only", ",ssh,", "--format", "json", state=tmp_path / "s")
    assert r.returncode == 0 and {s["family"] for s in json.loads(r.stdout)["skipped"]} == {"ssh"}


def test_root_through_symlinks_says_what_it_found(tmp_path: Path) -> None:
    """Issue 7: ``--root FILE`` said "no such directory"; a link to a file is not a directory either."""
    image = tmp_path / "image.img"
    image.write_bytes(b"\0" * 16)
    (tmp_path / "to-file").symlink_to(image)
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    r = hostguard("scan", "--root", str(tmp_path / "to-file"), state=tmp_path / "s")
    assert (r.returncode, r.stderr) == (2, f"hostguard: error: --root {tmp_path / 'to-file'}: not a directory\n")
    r = hostguard("scan", "--root", str(tmp_path / "dangling"), state=tmp_path / "s")
    assert (r.returncode, r.stderr) == (2, f"hostguard: error: --root {tmp_path / 'dangling'}: no such directory\n")


def test_checks_on_a_pipe_is_plain_text_without_markup(tmp_path: Path) -> None:
    """Issue 7: `hostguard checks` showed the docstrings' RST. Every ``literal`` of every check's doc is
    shown in quotes, one piece even where the docstring broke its line inside it."""
    r = hostguard("checks", state=tmp_path / "s")
    assert r.returncode == 0, r.stderr
    assert "`" not in r.stdout and "\x1b[" not in r.stdout and "\u2502" not in r.stdout
    docs = [c["doc"] for c in json.loads(hostguard("checks", "--format", "json", state=tmp_path / "s").stdout)]
    literals = {" ".join(m.split()) for doc in docs for m in re.findall(r"``(.+?)``", doc, re.S)}
    assert literals  # the check docs do use them
    text = " ".join(r.stdout.split())
    assert [lit for lit in sorted(literals) if f"'{lit}'" not in text] == []


def test_readme_links_stay_in_the_repository_and_names_every_family() -> None:
    """Issue 7: the README linked outside the repository; its family table must match the registry."""
    from hostguard.engine.registry import default_registry

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    for target in re.findall(r"\]\(([^)]+)\)", readme):
        if not target.startswith(("https://", "http://", "#")):
            path = (root / target.split("#")[0]).resolve()
            assert path.is_relative_to(root) and path.exists(), target
    assert "../" not in readme
    table = set(re.findall(r"^\s*\| `(\w+)` \|", readme, re.M))
    assert table == set(default_registry().families)


def _findings(r: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    return {f["fingerprint"]: f for f in json.loads(r.stdout)["findings"]}


def test_accepted_finding_leaves_the_report_and_the_exit_code_until_taken_back(tmp_path: Path) -> None:
    """Issue 7: ``accept`` by a fingerprint prefix, ``accepted`` lists it, scans leave it out and say so, ``--undo``."""
    tree = build_tree(tmp_path / "h", HITS / "accounts.extra_uid0")
    state = tmp_path / "s"
    scan = ("scan", "--root", str(tree), "--only", "accounts")
    r = hostguard(*scan, "--format", "json", state=state)
    assert r.returncode == 1
    host_id = json.loads(r.stdout)["host"]["id"]
    [(fp, toor)] = [(fp, f) for fp, f in _findings(r).items() if f["id"] == "accounts.extra_uid0"]
    assert toor["target"] == {"kind": "user", "user": "toor"}

    shown = re.findall(r"fingerprint ([0-9a-f]+)", hostguard(*scan, state=state).stdout)
    assert shown == [fp[:12]]  # the table names each finding by the digits accept takes
    r = hostguard("accept", shown[0].upper(), "--root", str(tree), "--reason", "rescue account, locked", state=state)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == f"accepted: {fp} accounts.extra_uid0: {toor['title']}\n"
    listed = json.loads(hostguard("accepted", "--root", str(tree), "--format", "json", state=state).stdout)
    assert [{k: v for k, v in e.items() if k != "accepted_at"} for e in listed["accepted"]] == [
        {"fingerprint": fp, "check": "accounts.extra_uid0", "title": toor["title"], "reason": "rescue account, locked"}]
    assert listed["host"] == host_id
    assert "rescue account, locked" in hostguard("accepted", "--root", str(tree), state=state).stdout

    r = hostguard(*scan, "--format", "json", state=state)
    assert r.returncode == 0 and fp not in _findings(r)
    assert json.loads(r.stdout)["stats"]["accepted"] == 1
    r = hostguard(*scan, state=state)
    assert r.returncode == 0 and "Not shown: 1 accepted (`hostguard accepted` lists them)." in r.stdout
    # another host (this one, without --root) has accepted nothing
    assert json.loads(hostguard("accepted", "--format", "json", state=state).stdout)["accepted"] == []

    r = hostguard("accept", "--undo", fp, "--root", str(tree), "--reason", "decided to remove it", state=state)
    assert (r.returncode, r.stdout) == (0, f"taken back: {fp} (reported again from the next scan)\n")
    r = hostguard(*scan, "--format", "json", state=state)
    assert r.returncode == 1 and fp in _findings(r) and json.loads(r.stdout)["stats"]["accepted"] == 0
    assert "No accepted findings" in hostguard("accepted", "--root", str(tree), state=state).stdout
    from hostguard.store.state import StateStore

    store = StateStore(str(state))
    try:
        assert [(e.action, e.subject, e.reason, e.detail) for e in store.audit_log(host_id)] == [
            ("accept", fp, "rescue account, locked", "accounts.extra_uid0"),
            ("unaccept", fp, "decided to remove it", "accounts.extra_uid0")]
    finally:
        store.close()


def test_accept_bad_input_is_one_line_and_accepts_nothing(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "h", HITS / "accounts.extra_uid0")
    state = tmp_path / "s"
    r = hostguard("scan", "--root", str(tree), "--only", "accounts", "--format", "json", state=state)
    [fp] = [fp for fp, f in _findings(r).items() if f["id"] == "accounts.extra_uid0"]
    cases = [
        (("accept", fp, "not-hex", "--root", str(tree)),
         "'not-hex' is not a fingerprint (8 to 32 hex digits, as a report shows them)"),
        (("accept", fp, "0123abcd", "--root", str(tree)),
         f"no finding with fingerprint 0123abcd in the recorded scans of this host (tree {tree})"),
        (("accept", fp),  # the finding is the tree's, not this host's
         f"no finding with fingerprint {fp} in the recorded scans of this host (a tree's findings need --root DIR)"),
        (("accept", "--undo", fp, "--root", str(tree)),
         f"no finding with fingerprint {fp} is accepted for this host (see hostguard accepted)"),
        (("accept", "--root", str(tree)), "the following arguments are required: FINGERPRINT"),
        (("accept", fp, "--root", str(tmp_path / "nope")), f"--root {tmp_path / 'nope'}: no such directory"),
        (("accepted", "--format", "xml"), "argument --format: invalid choice: 'xml' (choose from 'table', 'json')"),
    ]
    for args, message in cases:
        r = hostguard(*args, state=state)
        assert (r.returncode, r.stdout, r.stderr) == (2, "", f"hostguard: error: {message}\n"), args
    assert json.loads(hostguard("accepted", "--root", str(tree), "--format", "json", state=state).stdout)["accepted"] == []


def test_firewall_needs_a_subcommand(tmp_path: Path) -> None:
    r = hostguard("firewall", state=tmp_path / "s")
    assert (r.returncode, r.stderr) == (2, "hostguard: error: firewall needs a subcommand: reach\n")


def test_firewall_reach_lists_every_port_with_its_answer(tmp_path: Path) -> None:
    """Inside a namespace with one listener and no firewall: anyone, decided by nothing filtering input."""
    from tests.netns import netns_pair

    with netns_pair() as pair:
        pair.listen("tcp:0.0.0.0:8080", "tcp:127.0.0.1:8081")
        r = pair.hostguard("--state", str(tmp_path / "s"), "firewall", "reach", "--format", "json")
        assert r.returncode == 0, r.stderr
        [entry] = json.loads(r.stdout)["ports"]  # 8081 is loopback only: nobody else can reach it
        assert (entry["port"], entry["reachable_from"]) == (8080, "IPv4: anyone")
        table = pair.hostguard("--state", str(tmp_path / "s"), "firewall", "reach")
        assert table.returncode == 0 and "8080/tcp" in table.stdout and "IPv4: anyone" in table.stdout
