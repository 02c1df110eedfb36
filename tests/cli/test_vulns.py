"""`hostguard vulns match`: the JSON Lines contract of DESIGN.md, both export layouts, skipped records said
on stderr, bad input as one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hostguard.cli import main
from tests.vulns.osv_helpers import affected, record, rng, write_dir, write_zip

RECORDS = (
    record("DSA-T-100", affected("Debian:12", "util-linux", rng(("introduced", "0"), ("fixed", "2.38.1-5+deb12u2"))),
           aliases=("CVE-2099-100",),
           severity=[{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"}]),
    record("DLA-T-101", affected("Debian:11", "util-linux", rng(("introduced", "0"), ("fixed", "2.36.1-8+deb11u9"))),
           aliases=("CVE-2099-100",)),
    record("DSA-T-102", affected("Debian:12", "util-linux", rng(("introduced", "0"), ("fixed", "2.38.1-5+deb12u4"))),
           aliases=("CVE-2099-102",)),
)
NPM = (record("GHSA-test-c001", affected("npm", "minimist", rng(("introduced", "0"), ("fixed", "1.2.6"),
                                                                type="SEMVER")),
              aliases=("CVE-2099-200",), database_specific={"severity": "CRITICAL"}),
       {**record("GHSA-test-c002", affected("npm", "minimist", rng(("introduced", "0")))),
        "withdrawn": "2024-03-01T00:00:00Z"})
PYPI = (record("PYSEC-T-300", affected("PyPI", "jinja2", rng(("introduced", "0"), ("fixed", "3.1.3")),
                                       versions=["3.1.2"])),)


def _db(tmp_path: Path) -> Path:
    db = tmp_path / "osv"
    write_zip(db, "Debian", *RECORDS)
    write_dir(db, "npm", *NPM)
    write_dir(db, "PyPI", *PYPI)
    return db


def _packages(tmp_path: Path, *lines: dict[str, str] | str) -> Path:
    path = tmp_path / "packages.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def _run(tmp_path: Path, *args: str, stdin: str | None = None) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run([sys.executable, "-m", "hostguard.cli", "--state", str(tmp_path / "state"), "vulns", "match",
                           *args],
                          capture_output=True, text=True, check=False, input=stdin)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def test_one_line_per_package_in_input_order(tmp_path: Path) -> None:
    packages = _packages(
        tmp_path,
        {"ecosystem": "Debian:12", "name": "util-linux", "version": "2.38.1-5+deb12u3"},  # fixed for T-100 only
        {"ecosystem": "npm", "name": "minimist", "version": "1.2.5"},
        {"ecosystem": "Debian:11", "name": "util-linux", "version": "2.36.1-8+deb11u9"},  # fixed in its release
        {"ecosystem": "PyPI", "name": "Jinja2", "version": "3.1.2"},
        "",
        {"ecosystem": "npm", "name": "minimist", "version": "1.2.6"},
    )
    code, lines, err = _run(tmp_path, "--db", str(_db(tmp_path)), "--packages", str(packages), "--format", "jsonl")
    assert (code, err) == (0, "")
    assert [(line["ecosystem"], line["name"], line["version"], line["vulns"]) for line in lines] == [
        ("Debian:12", "util-linux", "2.38.1-5+deb12u3", ["CVE-2099-102", "DSA-T-102"]),
        ("npm", "minimist", "1.2.5", ["CVE-2099-200", "GHSA-test-c001"]),
        ("Debian:11", "util-linux", "2.36.1-8+deb11u9", []),
        ("PyPI", "Jinja2", "3.1.2", ["PYSEC-T-300"]),
        ("npm", "minimist", "1.2.6", []),
    ]
    assert list(lines[0])[:4] == ["ecosystem", "name", "version", "vulns"]
    assert lines[0]["advisories"] == [{"id": "DSA-T-102", "aliases": ["CVE-2099-102"], "summary": "test advisory DSA-T-102",
                                       "fixed": ["2.38.1-5+deb12u4"], "fix": "2.38.1-5+deb12u4", "severity": []}]
    assert lines[1]["advisories"][0]["severity"] == [{"type": "database_specific", "score": "CRITICAL"}]
    assert lines[3]["advisories"][0]["fix"] == "3.1.3"


def test_fix_and_cvss_score_of_an_older_version(tmp_path: Path) -> None:
    packages = _packages(tmp_path, {"ecosystem": "Debian:12", "name": "util-linux", "version": "2.38.1-5"})
    code, (line,), _ = _run(tmp_path, "--db", str(_db(tmp_path)), "--packages", str(packages))
    assert code == 0
    assert line["vulns"] == ["CVE-2099-100", "CVE-2099-102", "DSA-T-100", "DSA-T-102"]
    assert {a["id"]: (a["fix"], [s.get("base_score") for s in a["severity"]]) for a in line["advisories"]} == {
        "DSA-T-100": ("2.38.1-5+deb12u2", [7.8]), "DSA-T-102": ("2.38.1-5+deb12u4", [])}


def test_unknown_package_and_no_order_are_told_apart(tmp_path: Path) -> None:
    db = _db(tmp_path)
    write_dir(db, "Other", record("OTHER-T-1", affected("NoOrder", "thing", rng(("introduced", "0"), ("fixed", "2")))))
    packages = _packages(tmp_path, {"ecosystem": "NoOrder", "name": "thing", "version": "1"},
                         {"ecosystem": "NoOrder", "name": "nothing", "version": "1"})
    code, lines, _ = _run(tmp_path, "--db", str(db), "--packages", str(packages))
    assert code == 0
    assert [(line["name"], line["vulns"], [u["id"] for u in line["unevaluated"]]) for line in lines] == [
        ("thing", [], ["OTHER-T-1"]), ("nothing", [], [])]


def test_standard_input(tmp_path: Path) -> None:
    code, lines, _ = _run(tmp_path, "--db", str(_db(tmp_path)), "--packages", "-",
                          stdin='{"ecosystem": "npm", "name": "minimist", "version": "0.0.8"}\n')
    assert (code, [line["vulns"] for line in lines]) == (0, [["CVE-2099-200", "GHSA-test-c001"]])


def test_malformed_records_are_one_warning_line(tmp_path: Path) -> None:
    db = _db(tmp_path)
    (db / "npm" / "BROKEN.json").write_text("{")
    packages = _packages(tmp_path, {"ecosystem": "npm", "name": "minimist", "version": "1.0.0"})
    code, lines, err = _run(tmp_path, "--db", str(db), "--packages", str(packages))
    assert (code, lines[0]["vulns"]) == (0, ["CVE-2099-200", "GHSA-test-c001"])
    assert err.count("\n") == 1 and "1 OSV records skipped" in err and "BROKEN.json" in err


@pytest.mark.parametrize(("content", "message"), [
    ("{not json\n", "packages.jsonl:1: not a JSON object"),
    ('{"ecosystem": "npm", "name": "a", "version": "1.0.0"}\n[1]\n', "packages.jsonl:2: not a JSON object"),
    ('{"ecosystem": "npm", "name": "a"}\n', "packages.jsonl:1: version must be non-empty strings"),
    ('{"ecosystem": "npm", "name": 3, "version": ""}\n', "packages.jsonl:1: name, version must be non-empty strings"),
])
def test_bad_package_lines_exit_2_with_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "packages.jsonl"
    path.write_text(content)
    code, lines, err = _run(tmp_path, "--db", str(_db(tmp_path)), "--packages", str(path))
    assert (code, lines, err.count("\n")) == (2, [], 1)
    assert message in err


def test_bad_paths_exit_2_with_one_line(tmp_path: Path) -> None:
    packages = _packages(tmp_path, {"ecosystem": "npm", "name": "a", "version": "1.0.0"})
    code, _, err = _run(tmp_path, "--db", str(tmp_path / "nope"), "--packages", str(packages))
    assert (code, err) == (2, f"hostguard: error: {tmp_path / 'nope'}: no such file or directory\n")
    code, _, err = _run(tmp_path, "--db", str(_db(tmp_path)), "--packages", str(tmp_path / "none.jsonl"))
    assert (code, err) == (2, f"hostguard: error: {tmp_path / 'none.jsonl'}: No such file or directory\n")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"ecosystem": "npm", "name": "\xe9", "version": "1.0.0"}\n')
    code, _, err = _run(tmp_path, "--db", str(_db(tmp_path)), "--packages", str(tmp_path / "latin1.jsonl"))
    assert (code, err) == (2, f"hostguard: error: {tmp_path / 'latin1.jsonl'}: not UTF-8 text\n")


def test_in_process_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vulns"]) == 2
    assert main(["vulns", "match", "--db", "x"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["hostguard: error: vulns needs a subcommand: match, update, scan",
                                "hostguard: error: the following arguments are required: --packages"]


# --- the advisory index behind the command --------------------------------------------------------------------

def test_the_index_is_built_once_and_reused(tmp_path: Path) -> None:
    db = _db(tmp_path)
    packages = _packages(tmp_path, {"ecosystem": "npm", "name": "minimist", "version": "1.2.5"})
    assert _run(tmp_path, "--db", str(db), "--packages", str(packages))[0] == 0
    index = tmp_path / "state" / "cache" / "advisories.db"
    built = index.stat().st_ino, index.stat().st_mtime_ns
    code, lines, err = _run(tmp_path, "--db", str(db), "--packages", str(packages))
    assert (code, lines[0]["vulns"], err) == (0, ["CVE-2099-200", "GHSA-test-c001"], "")
    assert (index.stat().st_ino, index.stat().st_mtime_ns) == built  # read, not rebuilt
    write_dir(db, "npm", record("GHSA-test-c003", affected("npm", "minimist", rng(("introduced", "0")))))
    code, lines, _ = _run(tmp_path, "--db", str(db), "--packages", str(packages))
    assert lines[0]["vulns"] == ["CVE-2099-200", "GHSA-test-c001", "GHSA-test-c003"]
    assert index.stat().st_ino != built[0]  # a new file renamed into place


def test_a_corrupt_index_is_rebuilt_with_a_note(tmp_path: Path) -> None:
    db = _db(tmp_path)
    packages = _packages(tmp_path, {"ecosystem": "npm", "name": "minimist", "version": "1.2.5"})
    _run(tmp_path, "--db", str(db), "--packages", str(packages))
    (tmp_path / "state" / "cache" / "advisories.db").write_bytes(b"\0garbage" * 512)
    code, lines, err = _run(tmp_path, "--db", str(db), "--packages", str(packages))
    assert (code, lines[0]["vulns"]) == (0, ["CVE-2099-200", "GHSA-test-c001"])
    assert err.count("\n") == 1 and err.startswith("hostguard: note: advisory index (") and err.endswith("rebuilt\n")


def test_an_index_that_cannot_be_written_leaves_matching_in_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from hostguard.store.advisories import AdvisoryStoreError
    from hostguard.vulns import index

    def refuse(cache_dir: object, source: object) -> None:
        raise AdvisoryStoreError("advisory index (x) cannot be written: Read-only file system")

    monkeypatch.setattr(index, "build", refuse)
    packages = _packages(tmp_path, {"ecosystem": "npm", "name": "minimist", "version": "1.2.5"})
    code = main(["--state", str(tmp_path / "state"), "vulns", "match", "--db", str(_db(tmp_path)),
                 "--packages", str(packages)])
    out, err = capsys.readouterr()
    assert (code, json.loads(out)["vulns"]) == (0, ["CVE-2099-200", "GHSA-test-c001"])
    assert err == ("hostguard: warning: advisory index (x) cannot be written: Read-only file system; matching from the "
                   "records in memory\n")


def test_vulns_scan_of_this_machine_names_the_vulnerable_package_and_its_command(tmp_path: Path) -> None:
    from tests.vulns.test_scan_findings import _installed_sources

    sources = _installed_sources()
    version, binaries = sources["util-linux"]
    db = tmp_path / "osv"
    write_dir(db, "Debian",
              record("DSA-9001-1",
                     affected("Debian:12", "util-linux", rng(("introduced", "0"), ("fixed", version + "+hg1"))),
                     aliases=("CVE-2099-0001",), severity=[{"type": "CVSS_V3",
                                                            "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]),
              record("DSA-9002-1", affected("Debian:12", "coreutils",
                                            rng(("introduced", "0"), ("fixed", sources["coreutils"][0])))))
    argv = [sys.executable, "-m", "hostguard.cli", "--state", str(tmp_path / "state"), "vulns", "scan", "--db", str(db),
            "--no-pending"]  # what apt has waiting on this machine is not the test's to know (tests/vulns/test_pending.py)
    done = subprocess.run([*argv, "--format", "json"], capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stderr  # critical at or above the default --fail-on high
    data = json.loads(done.stdout)
    assert [(f["target"]["name"], f["severity"]) for f in data["findings"]] == [("util-linux", "critical")]
    [step] = data["findings"][0]["remediation"]["steps"]
    assert step["action"] == "upgrade" and sorted(step["command"].split()[3:]) == sorted(binaries)
    assert data["release"] == "Debian:12" and data["stats"]["matched"] > 100 and data["pending"] is None
    table = subprocess.run([*argv, "--fail-on", "critical"], capture_output=True, text=True, check=False)
    assert table.returncode == 1 and "CRITICAL" in table.stdout and "apt-get install --only-upgrade" in table.stdout


def test_vulns_scan_without_advisories_says_how_to_get_them(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hostguard.cli", "--state", str(tmp_path / "state"), "vulns", "scan"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "hostguard vulns update" in done.stderr


def test_vulns_scan_asks_apt_what_is_waiting_unless_told_not_to(tmp_path: Path) -> None:
    db = tmp_path / "osv"
    write_dir(db, "Debian")
    argv = [sys.executable, "-m", "hostguard.cli", "--state", str(tmp_path / "state"), "vulns", "scan", "--db", str(db),
            "--format", "json", "--fail-on", "critical"]
    data = json.loads(subprocess.run(argv, capture_output=True, text=True, check=False).stdout)
    pending = data["pending"]
    assert set(pending) == {"security_updates", "other_updates", "lists_age_days", "lists_stale"}
    waiting = [f for f in data["findings"] if f["id"] == "vulns.pending_update"]
    assert len(waiting) == pending["security_updates"]
    assert all(f["remediation"]["steps"][0]["command"].startswith("apt-get install --only-upgrade ") for f in waiting)


def test_vulns_scan_lists_wordpress_in_a_web_root_with_no_advisory_feed(tmp_path: Path) -> None:
    from tests.conftest import HITS, build_tree

    tree = build_tree(tmp_path / "tree", HITS / "malware.file")  # nginx serving /var/www/shop
    (tree / "var/www/shop/blog/wp-includes").mkdir(parents=True)
    (tree / "var/www/shop/blog/wp-includes/version.php").write_text("<?php\n$wp_db_version = 53496;\n"
                                                                     "$wp_version = '6.1.9';\n")
    (tree / "var/www/shop/old/wp-includes").mkdir(parents=True)  # the near miss: no $wp_version line
    (tree / "var/www/shop/old/wp-includes/version.php").write_text("<?php\n$plugin_version = '9.9';\n")
    db = tmp_path / "osv"
    write_dir(db, "Debian")
    done = subprocess.run([sys.executable, "-m", "hostguard.cli", "--state", str(tmp_path / "state"), "vulns", "scan",
                           "--root", str(tree), "--db", str(db), "--format", "json"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    [app] = json.loads(done.stdout)["web_applications"]
    assert (app["name"], app["version"], app["path"]) == ("WordPress", "6.1.9", "/var/www/shop/blog")
    assert app["advisories"].startswith("no open advisory feed")
