"""Family ``vulns`` in ``hostguard scan``: the checks over the facts that ``vulns scan`` reads too.

The package check runs on a --root tree (dpkg, Python, npm, Composer) and on this machine's real dpkg
database, against OSV records written here and a real state store; the pending, kernel and deleted-library
checks are fed the facts their own tests collect for real (tests/vulns/test_pending.py,
tests/vulns/test_restart.py) and checked for what they keep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hostguard.checks.vulns import DELETED_MAPPINGS, PENDING, RUNNING_KERNEL, VULNS_MATCHED, WEB_APPS
from hostguard.engine.facts import STATE
from hostguard.findings import Finding
from hostguard.host.base import LiveHost, RootHost
from hostguard.host.packages import DPKG, DpkgDatabase, parse_status
from hostguard.store.state import StateStore
from hostguard.vulns.findings import package_finding
from hostguard.vulns.inventory import Item
from hostguard.vulns.match import Match, PackageResult
from hostguard.vulns.osv import Vulnerability
from hostguard.vulns.pending import PendingResult, PendingUpdate, lists_finding, update_finding
from hostguard.vulns.restart import DeletedMapping
from hostguard.vulns.scan import Matched, without_reported
from hostguard.vulns.webapps import WebApp
from tests.conftest import make_config, run_one
from tests.vulns.inventory_helpers import write_tree
from tests.vulns.osv_helpers import affected, record, rng, write_dir

ROOT = Path(__file__).resolve().parents[2]


def _db(tmp_path: Path) -> Path:
    db = tmp_path / "osv"
    write_dir(db, "Debian", record("DSA-9101-1", affected("Debian:12", "hgzlib",
                                                          rng(("introduced", "0"), ("fixed", "1:1.2.13.dfsg-1+deb12u1")))),
              # fixed exactly at the installed source version: the near miss
              record("DSA-9102-1", affected("Debian:12", "util-linux",
                                            rng(("introduced", "0"), ("fixed", "2.38.1-5+deb12u3")))))
    write_dir(db, "PyPI", record("PYSEC-TEST-1", affected("PyPI", "django", rng(("introduced", "4.2"), ("fixed", "4.2.2")))),
              # an older release line than the tree's 2.25.0 is affected: near miss
              record("PYSEC-TEST-2", affected("PyPI", "requests", rng(("introduced", "0"), ("fixed", "2.20.0")))))
    return db


def _run(check_id: str, host: Any, tmp_path: Path, db: Path | None,
         given: dict[Any, Any] | None = None) -> tuple[list[Finding], list[Any]]:
    state = StateStore(tmp_path / "state")
    try:
        config = make_config(vulns={"db": str(db) if db else "", "paths": ["/srv", "/var/www"]})
        return run_one(check_id, host, config, given={STATE: state, **(given or {})})
    finally:
        state.close()


def test_package_check_on_a_root_tree_names_the_vulnerable_packages_and_lists_the_uncovered(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "host")
    found, skipped = _run("vulns.package", RootHost(str(tree)), tmp_path, _db(tmp_path))
    assert sorted((f.target["name"], f.target.get("location")) for f in found) == [
        ("Django", "/srv/app/venv"), ("hgzlib", None)]  # util-linux and requests: near misses
    assert all(f.id == "vulns.package" for f in found)
    assert {s.reason for s in skipped} == {"unsupported"}
    [node] = [s.detail for s in skipped if "nodejs 20.11.0-1nodesource1" in s.detail]
    assert "Debian:12" in node and "nodesource" in node.lower()   # grouped by its own reason
    # the index was built in the state's cache and is reused by the next scan (the same answer)
    assert (tmp_path / "state/cache/advisories.db").exists()
    again, _ = _run("vulns.package", RootHost(str(tree)), tmp_path, _db(tmp_path))
    assert [f.fingerprint for f in again] == [f.fingerprint for f in found]


def test_without_advisories_the_check_says_how_to_get_them(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "host")
    found, skipped = _run("vulns.package", RootHost(str(tree)), tmp_path, None)
    assert found == []
    [skip] = skipped
    assert skip.reason == "tool_missing" and "hostguard vulns update" in skip.detail


def test_web_applications_and_unreadable_records_are_said(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "host")
    db = _db(tmp_path)
    (db / "PyPI/BROKEN-1.json").write_text("{not json")
    found, skipped = _run("vulns.package", RootHost(str(tree)), tmp_path, db,
                          {WEB_APPS: (WebApp("WordPress", "6.1", "/var/www/blog"),)})
    assert {f.target["name"] for f in found} == {"Django", "hgzlib"}
    details = [s.detail for s in skipped]
    assert any("WordPress 6.1 at /var/www/blog" in d for d in details), details
    assert any(s.reason == "error" and "BROKEN-1.json" in s.detail for s in skipped), details


def _item(name: str, binaries: tuple[str, ...], location: str = "") -> Item:
    return Item("Debian:12" if not location else "PyPI", name, "1.0-1", "apt-get" if not location else "pip",
                "/var/lib/dpkg/status", location, binaries, tuple("1.0-1" for _ in binaries))


def _vuln(fix: str | None) -> PackageResult:
    vuln = Vulnerability(id="DSA-1-1", modified="2024-01-01T00:00:00Z", aliases=("CVE-2099-1",), summary="x",
                         affected=(), withdrawn=None, severity=())
    return PackageResult(matches=(Match(vuln, (fix,) if fix else (), fix, ()),), unevaluated=())


def test_a_pending_update_already_upgraded_by_a_package_finding_is_not_repeated() -> None:
    packages = [package_finding(_item("openssl", ("libssl3:amd64", "openssl")), _vuln("1.0-2")),
                package_finding(_item("glibc", ("libc6",)), _vuln(None)),               # no fix yet
                package_finding(_item("openssl", ("requests",), "/srv/venv"), _vuln("2.0"))]  # not the system's
    pending = [update_finding(PendingUpdate(n, "1.0-1", "1.0-2", ("Debian-Security:12/bookworm-security",), "amd64"))
               for n in ("libssl3", "openssl", "libc6", "requests", "zlib1g")]
    kept = without_reported(pending, packages)
    assert [f.target["name"] for f in kept] == ["libc6", "requests", "zlib1g"]


def _pending_result() -> PendingResult:
    security = ("Debian-Security:12/bookworm-security",)
    upd = PendingUpdate("libssl3", "3.0.11-1~deb12u1", "3.0.11-1~deb12u2", security, "amd64")
    other = PendingUpdate("zlib1g", "1:1.2.13.dfsg-1", "1:1.2.13.dfsg-2", security, "amd64")
    return PendingResult(True, updates=(upd, other), findings=(
        update_finding(upd), update_finding(other), lists_finding("/var/lib/apt/lists/", 0.0, 30.0, 7.0)))


def test_pending_and_stale_lists_checks_keep_their_own_findings(tmp_path: Path) -> None:
    matched = Matched((package_finding(_item("openssl", ("libssl3",)), _vuln("3.0.11-1~deb12u2")),), "db", 1)
    given = {PENDING: _pending_result(), VULNS_MATCHED: matched}
    found, skipped = _run("vulns.pending_update", LiveHost(), tmp_path, None, given)
    assert [f.target["name"] for f in found] == ["zlib1g"] and not skipped  # libssl3: the package finding's
    # without advisories the package manager's word stands alone
    alone, skipped = _run("vulns.pending_update", LiveHost(), tmp_path, None, {PENDING: _pending_result()})
    assert [f.target["name"] for f in alone] == ["libssl3", "zlib1g"] and not skipped
    stale, _ = _run("vulns.package_lists_stale", LiveHost(), tmp_path, None, given)
    assert [(f.id, f.target["path"]) for f in stale] == [("vulns.package_lists_stale", "/var/lib/apt/lists/")]
    fresh = PendingResult(True, updates=(), findings=())
    assert _run("vulns.package_lists_stale", LiveHost(), tmp_path, None, {PENDING: fresh})[0] == []
    assert _run("vulns.pending_update", LiveHost(), tmp_path, None, {PENDING: fresh, VULNS_MATCHED: matched})[0] == []


def test_pending_is_live_only(tmp_path: Path) -> None:
    found, skipped = _run("vulns.pending_update", RootHost(str(write_tree(tmp_path / "host"))), tmp_path, _db(tmp_path))
    assert found == [] and [s.reason for s in skipped] == ["live_only"]


IMAGES = "".join(f"Package: linux-image-{v}\nStatus: install ok installed\nVersion: {v}\nArchitecture: amd64\n\n"
                 for v in ("6.1.0-17-amd64", "6.1.0-18-amd64"))


def test_kernel_check_hit_and_miss(tmp_path: Path) -> None:
    dpkg = DpkgDatabase(tuple(parse_status(IMAGES)))
    found, _ = _run("vulns.kernel_not_running", LiveHost(), tmp_path, None,
                    {RUNNING_KERNEL: "6.1.0-17-amd64", DPKG: dpkg})
    assert [f.evidence["newest_installed"] for f in found] == ["6.1.0-18-amd64"]
    assert _run("vulns.kernel_not_running", LiveHost(), tmp_path, None,
                {RUNNING_KERNEL: "6.1.0-18-amd64", DPKG: dpkg})[0] == []


def test_deleted_library_check_hit_and_miss(tmp_path: Path) -> None:
    nginx = DeletedMapping(10, "/usr/sbin/nginx", "nginx.service", ("/usr/lib/x86_64-linux-gnu/libssl.so.3",))
    found, _ = _run("vulns.deleted_library", LiveHost(), tmp_path, None, {DELETED_MAPPINGS: (nginx,)})
    assert [f.target for f in found] == [{"kind": "process", "unit": "nginx.service"}]
    assert _run("vulns.deleted_library", LiveHost(), tmp_path, None, {DELETED_MAPPINGS: ()})[0] == []


def test_hostguard_scan_runs_the_family_on_this_machine(tmp_path: Path) -> None:
    """`hostguard scan --only vulns` on this host: its real dpkg database against a record written for an
    installed source package (util-linux), the same finding `vulns scan` gives."""
    version = subprocess.run(["dpkg-query", "-W", "-f", "${source:Version}", "util-linux"], check=True,
                             capture_output=True, text=True).stdout
    db = tmp_path / "osv"
    write_dir(db, "Debian", record("DSA-9001-1", affected("Debian:12", "util-linux",
                                                          rng(("introduced", "0"), ("fixed", version + "+hg1")))))
    config = tmp_path / "hostguard.toml"
    config.write_text(f'[vulns]\ndb = "{db}"\npaths = []\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    base = [sys.executable, "-m", "hostguard.cli", "--config", str(config), "--state", str(tmp_path / "state")]
    scan = subprocess.run([*base, "scan", "--only", "vulns", "--format", "json"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert scan.returncode in (0, 1), scan.stderr
    report = json.loads(scan.stdout)
    ours = [f for f in report["findings"] if f["id"] == "vulns.package" and f["target"]["name"] == "util-linux"]
    assert [f["evidence"]["fixed"] for f in ours] == [version + "+hg1"]
    assert not [s for s in report["skipped"] if s["check"] == "vulns.package" and s["reason"] == "tool_missing"]
    direct = subprocess.run([*base, "vulns", "scan", "--no-pending", "--format", "json"], capture_output=True,
                            text=True, env=env, timeout=600)
    same = [f for f in json.loads(direct.stdout)["findings"] if f["target"].get("name") == "util-linux"]
    assert [f["fingerprint"] for f in same] == [ours[0]["fingerprint"]]


def test_alpine_root_tree_pending_updates_are_marked_by_the_advisories_and_not_repeated(tmp_path: Path) -> None:
    """apk's pending updates under --root: the cached index offers busybox 1.36.1-r19, which fixes the advisory
    the package check reports (so the update is a security one, and the package finding carries its fix);
    ca-certificates' newer version fixes nothing known. A stale index asks for `apk update`."""
    from hostguard.engine.facts import Facts
    from tests.vulns.test_pending_apk import DAY, write_host

    tree = write_host(tmp_path / "host", mtime=time.time() - 30 * DAY)
    (tree / "etc/os-release").write_text('NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\n')
    db = tmp_path / "osv"
    write_dir(db, "Alpine", record("ALPINE-TEST-1", affected("Alpine:v3.19", "busybox",
                                                             rng(("introduced", "0"), ("fixed", "1.36.1-r19")))))
    state = StateStore(tmp_path / "state")
    try:
        facts = Facts(RootHost(str(tree)), make_config(vulns={"db": str(db), "paths": []}), given={STATE: state})
        pending = facts.get(PENDING)
        package = facts.get(VULNS_MATCHED).findings
    finally:
        state.close()
    assert [(u.name, u.new, u.origins) for u in pending.updates][:1] == [
        ("busybox", "1.36.1-r19", ("https://mirror.example.test/alpine/v3.19/main",))]
    assert {u.name for u in pending.updates} == {"busybox", "ssl_client"}
    assert "ca-certificates" in {u.name for u in pending.other_updates}
    [busybox] = package
    assert busybox.target == {"kind": "package", "ecosystem": "Alpine:v3.19", "name": "busybox"}
    assert dict(busybox.remediation.steps[0].args)["command"] == "apk upgrade busybox ssl_client"  # type: ignore[union-attr]
    found, skipped = _run("vulns.pending_update", RootHost(str(tree)), tmp_path, db)
    assert found == [] and skipped == []  # both are the package finding's upgrade
    stale, _ = _run("vulns.package_lists_stale", RootHost(str(tree)), tmp_path, db)
    assert [f.id for f in stale] == ["vulns.package_lists_stale"] and "apk update" in stale[0].remediation.summary


def test_rpm_package_findings_fold_dnfs_pending_updates_named_without_their_arch() -> None:
    item = Item("Rocky Linux:9", "openssl-libs", "1:3.0.7-24.el9", "dnf", "/var/lib/rpm/rpmdb.sqlite", "",
                ("openssl-libs.x86_64",), ("1:3.0.7-24.el9",))
    packages = [package_finding(item, _vuln("1:3.0.7-25.el9"))]
    pending = [update_finding(PendingUpdate(n, "1:3.0.7-24.el9", "1:3.0.7-25.el9", ("baseos",), "x86_64"),
                              manager="dnf", argv=("dnf", "upgrade", n)) for n in ("openssl-libs", "openssl-x86_64")]
    assert [f.target["name"] for f in without_reported(pending, packages)] == ["openssl-x86_64"]


def test_apk_pending_updates_without_advisories_say_why_nothing_is_marked(tmp_path: Path) -> None:
    from tests.vulns.test_pending_apk import write_host

    tree = write_host(tmp_path / "host")
    (tree / "etc/os-release").write_text('NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\n')
    found, skipped = _run("vulns.pending_update", RootHost(str(tree)), tmp_path, None)
    assert found == [] and [(s.reason, "advisory copy" in s.detail) for s in skipped] == [("tool_missing", True)]


VPATCH_HOST = ROOT / "tests/fixtures/waf/vpatch-host"


def _vpatch_tree(tmp_path: Path, drupal: str = "8.5.0", phpunit: str = "5.6.2", config: str | None = None) -> Path:
    """The shop fixture tree (a Drupal 8 project installed with Composer) at the versions given."""
    import shutil

    tree = tmp_path / "shop-host"
    shutil.copytree(VPATCH_HOST, tree)
    lock = tree / "srv/shop/composer.lock"
    lock.write_text(lock.read_text().replace('"8.5.0"', f'"{drupal}"').replace('"5.6.2"', f'"{phpunit}"'))
    if config is not None:
        (tree / "etc/hostguard/hostguard.toml").write_text(config)
    return tree


def _drupal_db(tmp_path: Path) -> Path:
    db = tmp_path / "osv"
    write_dir(db, "Packagist", record("GHSA-test-dr01", affected("Packagist", "drupal/core",
                                                                 rng(("introduced", "8.5.0"), ("fixed", "8.5.1"))),
                                      aliases=("CVE-2018-7600",)))
    return db


def _run_tree(check_id: str, tree: Path, tmp_path: Path, db: Path | None) -> tuple[list[Finding], list[Any]]:
    state = StateStore(tmp_path / "state")
    try:
        config = make_config(vulns={"db": str(db) if db else "", "paths": ["/srv"]})
        return run_one(check_id, RootHost(str(tree)), config, given={STATE: state})
    finally:
        state.close()


def test_virtual_patch_check_offers_the_patches_covering_the_vulnerable_project(tmp_path: Path) -> None:
    found, skipped = _run_tree("vulns.virtual_patch", _vpatch_tree(tmp_path), tmp_path, _drupal_db(tmp_path))
    by_patch = {f.evidence["patch"]: f for f in found}
    assert set(by_patch) == {"drupal-form-api-rce", "phpunit-eval-stdin"} and not skipped
    drupal = by_patch["drupal-form-api-rce"]
    assert drupal.target == {"kind": "config", "path": "/etc/hostguard/hostguard.toml", "setting": "waf.virtual_patches",
                             "value": "drupal-form-api-rce"}
    assert (drupal.severity, drupal.evidence["reported_by"]) == ("critical", ["CVE-2018-7600"])
    assert [(a["name"], a["version"], a["location"], a["fixed"]) for a in drupal.evidence["applies_to"]] == [
        ("drupal/core", "8.5.0", "/srv/shop", "8.5.1")]
    # phpunit: no advisory in this copy, the patch's own affected block says 5.6.2 is affected
    assert by_patch["phpunit-eval-stdin"].evidence["reported_by"] == []
    # without any advisory copy the offers stand on the patches' own affected blocks
    alone, _ = _run_tree("vulns.virtual_patch", _vpatch_tree(tmp_path / "b"), tmp_path / "b", None)
    assert {f.evidence["patch"] for f in alone} == {"drupal-form-api-rce", "phpunit-eval-stdin"}


def test_virtual_patch_check_is_quiet_for_fixed_versions_and_enabled_patches(tmp_path: Path) -> None:
    fixed = _vpatch_tree(tmp_path / "fixed", drupal="8.5.1", phpunit="5.6.3")
    assert _run_tree("vulns.virtual_patch", fixed, tmp_path / "fixed", _drupal_db(tmp_path)) == ([], [])
    assert _run_tree("vulns.package", fixed, tmp_path / "fixed", _drupal_db(tmp_path))[0] == []
    enabled = _vpatch_tree(tmp_path / "on", config='[waf]\nvirtual_patches = ["drupal-form-api-rce", '
                                                   '"phpunit-eval-stdin"]\n')
    assert _run_tree("vulns.virtual_patch", enabled, tmp_path / "on", _drupal_db(tmp_path)) == ([], [])
    [package], _ = _run_tree("vulns.package", enabled, tmp_path / "on", _drupal_db(tmp_path))
    assert package.evidence["virtual_patches"][0] | {"rules": None} == {
        "id": "drupal-form-api-rce", "cves": ["CVE-2018-7600"], "rules": None, "enabled": True,
        "config": "/etc/hostguard/hostguard.toml"}
    assert package.remediation.steps[0].action == "upgrade"   # type: ignore[union-attr]


def test_virtual_patch_check_says_what_it_could_not_look_at(tmp_path: Path) -> None:
    broken = _vpatch_tree(tmp_path, drupal="dev-main", config="[waf]\nvirtual_patches = \"drupal\"\n")
    found, skipped = _run_tree("vulns.virtual_patch", broken, tmp_path, None)
    assert found == []   # whether anything is enabled is unknown: no offer
    assert [s.reason for s in skipped] == ["error", "unsupported"]
    assert "'waf.virtual_patches' must be list" in skipped[0].detail
    (broken / "etc/hostguard/hostguard.toml").unlink()
    found, skipped = _run_tree("vulns.virtual_patch", broken, tmp_path, None)
    assert [f.evidence["patch"] for f in found] == ["phpunit-eval-stdin"]
    assert [s.reason for s in skipped] == ["unsupported"]
    assert "drupal/core dev-main in /srv/shop" in skipped[0].detail and "branch" in skipped[0].detail
