"""``vulns scan`` findings: this machine's real dpkg database against OSV records written by the test for
packages really installed here (a fix above the installed version is found, a fix equal to it is a near
miss), and a --root tree's language environments with the exact upgrade command of each."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from hostguard.findings import Finding
from hostguard.host.base import LiveHost, RootHost
from hostguard.remediation import Action
from hostguard.vulns import osv
from hostguard.vulns.findings import CHECK_ID, advisory_severity, upgrade_argv, vulns_findings
from hostguard.vulns.inventory import InventoryOptions, Item, collect_inventory
from hostguard.vulns.match import Index
from hostguard.vulns.osv import Severity as OsvSeverity
from tests.vulns.inventory_helpers import write_tree
from tests.vulns.osv_helpers import affected, record, rng, write_dir

HIGH_V3 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"      # 7.5
CRITICAL_V3 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8


def _installed_sources() -> dict[str, tuple[str, list[str]]]:
    """source name -> (source version, installed binaries) as dpkg-query says (packages of one source version)."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status}\\t${Package}\\t${source:Package}\\t"
                          "${source:Version}\\n"], check=True, capture_output=True, text=True).stdout
    found: dict[str, tuple[str, list[str]]] = {}
    for line in out.splitlines():
        state, binary, source, version = line.split("\t")
        if state == "installed":
            found.setdefault(source, (version, []))[1].append(binary)
    return found


def _index(tmp_path: Path, *records: dict[str, Any]) -> Index:
    db = tmp_path / "osv"
    write_dir(db, "Debian", *[r for r in records if r["affected"][0]["package"]["ecosystem"].startswith("Debian")])
    write_dir(db, "other", *[r for r in records if not r["affected"][0]["package"]["ecosystem"].startswith("Debian")])
    loaded = osv.load(db)
    assert not loaded.stats.skipped
    return Index(loaded.vulns.values())


def _action(finding: Finding) -> dict[str, str]:
    [step] = finding.remediation.steps
    assert isinstance(step, Action) and step.action == "upgrade"
    return dict(step.args)


def test_this_machines_dpkg_database_against_fixture_records(tmp_path: Path) -> None:
    sources = _installed_sources()
    hit, near, other_release, unfixed = "util-linux", "coreutils", "tar", "bash"
    assert all(s in sources for s in (hit, near, other_release, unfixed)), sorted(sources)[:20]
    hit_version, hit_binaries = sources[hit]
    index = _index(
        tmp_path,
        record("DSA-9001-1", affected("Debian:12", hit, rng(("introduced", "0"), ("fixed", hit_version + "+hg1"))),
               aliases=("CVE-2099-0001",), severity=[{"type": "CVSS_V3", "score": HIGH_V3}]),
        record("DSA-9002-1", affected("Debian:12", near, rng(("introduced", "0"), ("fixed", sources[near][0]))),
               aliases=("CVE-2099-0002",)),
        record("DSA-9003-1", affected("Debian:11", other_release,
                                      rng(("introduced", "0"), ("fixed", sources[other_release][0] + "+hg1")))),
        record("DEBIAN-CVE-2099-0004", affected("Debian:12", unfixed, rng(("introduced", "0")),
                                                database_specific={"severity": "low"})),
    )
    inv = collect_inventory(LiveHost(), InventoryOptions(paths=()))
    findings = {f.target["name"]: f for f in vulns_findings(inv, index)}
    assert set(findings) == {hit, unfixed}  # coreutils: fixed at its installed version; tar: Debian:11 only
    f = findings[hit]
    assert (f.id, f.severity, f.target) == (CHECK_ID, "high", {"kind": "package", "ecosystem": "Debian:12", "name": hit})
    assert (f.evidence["installed"], f.evidence["fixed"], f.evidence["ids"]) == (
        hit_version, hit_version + "+hg1", ["CVE-2099-0001", "DSA-9001-1"])
    assert sorted(f.evidence["binaries"]) == sorted(hit_binaries)
    args = _action(f)
    assert args["command"].split()[:3] == ["apt-get", "install", "--only-upgrade"]
    assert sorted(args["command"].split()[3:]) == sorted(hit_binaries)
    assert args["to"] == hit_version + "+hg1"
    # apt itself accepts the command (simulated: nothing is installed)
    sim = subprocess.run(["apt-get", "-s", "-o", "Debug::NoLocking=1", *args["command"].split()[1:]],
                         capture_output=True, text=True)
    assert sim.returncode == 0, sim.stderr
    assert all(f"{b} is already the newest version" in sim.stdout for b in hit_binaries), sim.stdout
    low = findings[unfixed]
    assert (low.severity, low.evidence["fixed"], low.evidence["no_fix_yet"]) == (
        "low", "no fix yet", ["DEBIAN-CVE-2099-0004"])
    assert low.remediation.steps == () and low.remediation.manual


def test_root_tree_language_environments_get_their_own_upgrade_commands(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "host")
    index = _index(
        tmp_path,
        record("PYSEC-TEST-1", affected("PyPI", "django", rng(("introduced", "4.2"), ("fixed", "4.2.2"))),
               aliases=("CVE-2099-1001",), severity=[{"type": "CVSS_V3", "score": CRITICAL_V3}]),
        record("PYSEC-TEST-2", affected("PyPI", "requests", rng(("introduced", "0"), ("fixed", "2.31.0")))),
        record("PYSEC-TEST-3", affected("PyPI", "PyJWT", rng(("introduced", "0"), ("fixed", "2.10.1")))),
        record("GHSA-test-qs01", affected("npm", "qs", rng(("introduced", "6.5.0"), ("fixed", "6.5.3"), type="SEMVER"))),
        record("GHSA-test-ax01", affected("npm", "axios", rng(("introduced", "0"), ("fixed", "0.21.2"), type="SEMVER"))),
        record("GHSA-test-lod1", affected("npm", "lodash", rng(("introduced", "0"), ("fixed", "4.17.20"), type="SEMVER"))),
        record("GHSA-test-gz01", affected("Packagist", "guzzlehttp/guzzle", versions=["7.4.0"])),
        record("DSA-9100-1", affected("Debian:12", "nodejs", rng(("introduced", "0"), ("fixed", "99.0-1")))),
        record("DSA-9101-1", affected("Debian:12", "hgzlib",
                                      rng(("introduced", "0"), ("fixed", "1:1.2.13.dfsg-1+deb12u1")))),
    )
    inv = collect_inventory(RootHost(str(tree)), InventoryOptions(paths=("/srv", "/var/www")))
    found = {(f.target["name"], f.target.get("location")): f for f in vulns_findings(inv, index)}
    # PyJWT: the distribution's copy; lodash: fixed at 4.17.20 (near miss); nodejs: nodesource's, not Debian's
    assert set(found) == {("Django", "/srv/app/venv"), ("requests", "/usr/local"), ("qs", "/srv/web"),
                          ("axios", "/var/www/shop"), ("guzzlehttp/guzzle", "/var/www/blog"), ("hgzlib", None)}
    assert found[("Django", "/srv/app/venv")].severity == "critical"
    assert _action(found[("Django", "/srv/app/venv")])["command"] == "/srv/app/venv/bin/pip install -U Django"
    assert _action(found[("requests", "/usr/local")])["command"] == "python3.11 -m pip install -U requests"
    qs = _action(found[("qs", "/srv/web")])
    assert (qs["command"], qs["cwd"], qs["to"]) == ("npm update qs", "/srv/web", "6.5.3")
    assert _action(found[("axios", "/var/www/shop")])["cwd"] == "/var/www/shop"
    guzzle = found[("guzzlehttp/guzzle", "/var/www/blog")]
    assert guzzle.evidence["fixed"] == "no fix yet" and guzzle.evidence["ids"] == ["GHSA-test-gz01"]
    zlib = _action(found[("hgzlib", None)])
    assert (zlib["command"], zlib["to"]) == ("apt-get install --only-upgrade libhgz1:amd64 libhgz1:i386",
                                             "1:1.2.13.dfsg-1+deb12u1")
    assert found[("hgzlib", None)].severity == "medium"  # no severity in the record: the table's default
    assert "nodejs" in {i.name for i in inv.not_covered()}


@pytest.mark.parametrize(("entries", "want"), [
    ([("CVSS_V3", CRITICAL_V3)], "critical"),
    ([("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N")], "info"),
    ([("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P")], "high"),
    ([("database_specific", "MODERATE")], "medium"),
    ([("Ubuntu", "negligible"), ("ecosystem_specific", "unimportant")], "info"),
    ([("database_specific", "low"), ("CVSS_V3", HIGH_V3)], "high"),   # a score wins over a word
    ([("CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N")], "medium"),  # v4 unscored
    ([], "medium"),
])
def test_advisory_severity(entries: list[tuple[str, str]], want: str) -> None:
    assert advisory_severity([OsvSeverity(t, s) for t, s in entries]) == want


@pytest.mark.parametrize(("item", "argv", "cwd"), [
    (Item("Rocky Linux:9", "openssl", "1:3.0.7-24.el9", "dnf", "/var/lib/rpm/rpmdb.sqlite", "",
          ("openssl.x86_64",)), ("dnf", "upgrade", "openssl.x86_64"), None),
    (Item("Alpine:v3.19", "openssl", "3.1.4-r5", "apk", "/lib/apk/db/installed", "", ("libcrypto3", "libssl3")),
     ("apk", "upgrade", "libcrypto3", "libssl3"), None),
    (Item("npm", "npm", "9.0.0", "npm", "/usr/lib/node_modules/npm/package.json", "/usr/lib"),
     ("npm", "update", "-g", "npm"), None),
    (Item("Packagist", "monolog/monolog", "2.3.5", "composer", "/var/www/blog/composer.lock", "/var/www/blog"),
     ("composer", "update", "monolog/monolog"), "/var/www/blog"),
])
def test_upgrade_commands(item: Item, argv: tuple[str, ...], cwd: str | None) -> None:
    assert upgrade_argv(item) == (argv, cwd)
