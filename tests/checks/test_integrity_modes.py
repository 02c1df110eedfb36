"""integrity.mode_changed on real package databases: a packaged file made setuid, setgid or world-writable after
its package manager installed it.

* rpm: a package built here with rpmbuild holding a plain binary, a real setuid binary (``%attr(4755,root,root)``),
  a ``%config`` file and a data file, installed by rpm itself into a temporary root; every hit and near miss is
  cross-checked with ``rpm --root T -V`` (its ``M`` flag), in the sqlite and the Berkeley DB form;
* apk: a hand-written installed database (Debian has no apk-tools) recording ``a:0:0:4755`` for one file and
  ``a:0:0:755`` for another, and a file with no ``a:`` line (apk's default 0644);
* dpkg: records no modes, so the check says it could not look.

The fix is proven by running its chmod step on the file inside the tree, re-scanning, and running the undo.
Every setuid file these tests make lives in a pytest temporary directory and loses its bits at teardown.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.engine.facts import Facts
from hostguard.findings import Finding
from hostguard.host.base import RootHost
from hostguard.host.packages import PACKAGE_VERIFY
from hostguard.remediation import Command
from tests.conftest import make_config, need_root, need_tool, run_one
from tests.host.test_apkdb import PACKAGES, write_apk_tree
from tests.host.test_rpmdb import DBPATH, bdb_tree, build_rpm, install_tree

CHECK = "integrity.mode_changed"


def _strip_setid(root: Path) -> None:
    """Take every setuid/setgid bit off files under ``root`` (teardown: none outlives the test's need)."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            mode = path.lstat().st_mode
            if mode & (stat.S_ISUID | stat.S_ISGID):
                path.chmod(stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID))


def build_hgmode(work: Path) -> Path:
    """hgmode: /usr/bin/hgplain (0755), /usr/bin/hgsuid (setuid root, as passwd or sudo ship), /etc/hgmode.conf
    (%config, 0644) and /usr/share/hgmode/data.txt (0644)."""
    return build_rpm(work, "hgmode", "1.0", "1", install="""
mkdir -p %{buildroot}/usr/bin %{buildroot}/etc %{buildroot}/usr/share/hgmode
cp /usr/bin/true %{buildroot}/usr/bin/hgplain
cp /usr/bin/true %{buildroot}/usr/bin/hgsuid
chmod 755 %{buildroot}/usr/bin/hgplain %{buildroot}/usr/bin/hgsuid
echo 'a=1' > %{buildroot}/etc/hgmode.conf
echo data > %{buildroot}/usr/share/hgmode/data.txt
chmod 644 %{buildroot}/etc/hgmode.conf %{buildroot}/usr/share/hgmode/data.txt
""", files="""/usr/bin/hgplain
%attr(4755,root,root) /usr/bin/hgsuid
%config(noreplace) /etc/hgmode.conf
/usr/share/hgmode/data.txt
""")


@pytest.fixture(scope="module")
def rpm_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    need_tool("rpm", "rpmbuild")
    need_root("rpm --root")
    base = tmp_path_factory.mktemp("rpm-modes")
    root = install_tree(base / "root", [build_hgmode(base / "build")])
    assert (root / "usr/bin/hgsuid").stat().st_mode & 0o7777 == 0o4755  # rpm installed it setuid, as recorded
    yield root
    _strip_setid(base)


@pytest.fixture
def tree(rpm_tree: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the installed tree (modes kept), its setid bits stripped at teardown."""
    root = tmp_path / "root"
    shutil.copytree(rpm_tree, root, symlinks=True)
    yield root
    _strip_setid(tmp_path)


def _found(root: Path) -> dict[str, Finding]:
    found, skipped = run_one(CHECK, RootHost(str(root)))
    assert skipped == []
    return {str(f.target["path"]): f for f in found}


def _rpm_mode_flags(root: Path, dbpath: str = DBPATH, backend: str | None = None) -> set[str]:
    """Paths ``rpm -Va`` flags with ``M`` (mode differs): hgmode is the tree's one package (``-Va``, not ``-V
    hgmode``: the Berkeley DB trees here hold no Name index to look a package up by)."""
    argv = ["rpm", "--root", str(root), "--dbpath", dbpath, "-Va", "--nodeps"]
    if backend:
        argv[5:5] = ["--define", f"_db_backend {backend}"]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line[1:2] == "M"}


def test_a_clean_rpm_tree_is_quiet_and_rpm_agrees(rpm_tree: Path) -> None:
    assert _found(rpm_tree) == {}
    assert _rpm_mode_flags(rpm_tree) == set()
    verification = Facts(RootHost(str(rpm_tree)), make_config()).get(PACKAGE_VERIFY)
    assert verification.records_modes and verification.mode_changes == ()


def test_rpm_file_made_setuid_is_found_and_rpm_verify_sees_the_mode(tree: Path) -> None:
    """Hit: chmod u+s on the plain binary (high, the package's mode named) and g+s on the %config file (whose
    content is never compared, but whose mode is). Near miss in the same tree: the packaged setuid binary.
    rpm -V reports `.M.......` for exactly the two."""
    os.chmod(tree / "usr/bin/hgplain", 0o4755)
    os.chmod(tree / "etc/hgmode.conf", 0o2644)
    found = _found(tree)
    assert sorted(found) == ["/etc/hgmode.conf", "/usr/bin/hgplain"]
    plain = found["/usr/bin/hgplain"]
    assert plain.severity == "high"
    assert plain.evidence == {"package": "hgmode.x86_64", "listed_as": "/usr/bin/hgplain", "database": "rpm",
                              "recorded_mode": "0755", "mode": "4755", "gained": ["setuid"], "uid": 0, "gid": 0,
                              "content": "matches the package"}
    conf = found["/etc/hgmode.conf"]
    assert (conf.evidence["gained"], conf.evidence["content"]) == (["setgid"], "not compared (configuration)")
    assert conf.severity == "high"
    assert _rpm_mode_flags(tree) == set(found)
    assert run_one("integrity.changed_file", RootHost(str(tree)))[0] == []  # the content is still the package's


def test_rpm_modes_that_grant_nothing_new_are_quiet(tree: Path) -> None:
    """Near misses: the setuid binary as packaged, the plain binary narrowed to 0750, the data file to 0600 and
    the %config file edited. rpm -V flags the two narrowed modes; they take power away, so ours stay quiet."""
    os.chmod(tree / "usr/bin/hgplain", 0o750)
    os.chmod(tree / "usr/share/hgmode/data.txt", 0o600)
    (tree / "etc/hgmode.conf").write_text("a=2\n")
    assert _found(tree) == {}
    assert _rpm_mode_flags(tree) == {"/usr/bin/hgplain", "/usr/share/hgmode/data.txt"}
    assert (tree / "usr/bin/hgsuid").stat().st_mode & 0o7777 == 0o4755


def test_a_file_turned_into_a_link_to_the_packaged_setuid_binary_is_not_a_mode_change(tree: Path) -> None:
    """Near miss: /usr/bin/hgplain replaced by a link to hgsuid (the same bytes, so the digest matches). The
    setuid mode reached through the link is hgsuid's own, as packaged: the link gained nothing."""
    (tree / "usr/bin/hgplain").unlink()
    (tree / "usr/bin/hgplain").symlink_to("hgsuid")
    assert _found(tree) == {}
    verification = Facts(RootHost(str(tree)), make_config()).get(PACKAGE_VERIFY)
    assert verification.changed == () and verification.mode_changes == ()


def test_a_world_writable_packaged_file_is_found(tree: Path) -> None:
    """o+w on the binary (anyone may replace code others run: high) and on the data file (medium)."""
    os.chmod(tree / "usr/bin/hgplain", 0o757)
    os.chmod(tree / "usr/share/hgmode/data.txt", 0o646)
    found = _found(tree)
    assert {p: (f.severity, f.evidence["gained"]) for p, f in found.items()} == {
        "/usr/bin/hgplain": ("high", ["world-writable"]), "/usr/share/hgmode/data.txt": ("medium", ["world-writable"])}
    assert found["/usr/bin/hgplain"].remediation is not None
    assert found["/usr/bin/hgplain"].remediation.steps == (
        Command(("chmod", "o-w", "/usr/bin/hgplain"), live_only=True, undo=("chmod", "o+w", "/usr/bin/hgplain"),
                reversible=True),)


def test_a_statoverride_granting_the_bit_is_the_owners_decision(tree: Path) -> None:
    """dpkg-statoverride's file, kept on an rpm host too: an entry granting setuid silences the finding; an
    entry declaring 0755 does not (and is shown in the evidence)."""
    os.chmod(tree / "usr/bin/hgplain", 0o4755)
    override = tree / "var/lib/dpkg/statoverride"
    override.parent.mkdir(parents=True)
    override.write_text("root root 4755 /usr/bin/hgplain\n")
    assert _found(tree) == {}
    override.write_text("root root 755 /usr/bin/hgplain\n")
    found = _found(tree)
    assert list(found) == ["/usr/bin/hgplain"]
    assert found["/usr/bin/hgplain"].evidence["statoverride"] == "root root 0755 /usr/bin/hgplain"


def test_a_broken_statoverride_file_is_a_clear_error_not_a_pass(tree: Path) -> None:
    os.chmod(tree / "usr/bin/hgplain", 0o4755)
    override = tree / "var/lib/dpkg/statoverride"
    override.parent.mkdir(parents=True)
    override.write_text("root root rwsr-xr-x /usr/bin/hgplain\n")
    found, skipped = run_one(CHECK, RootHost(str(tree)))
    assert found == []
    assert [s.reason for s in skipped] == ["error"]
    assert "statoverride line 1" in skipped[0].detail and "\n" not in skipped[0].detail


def test_changed_content_made_setuid_is_one_finding_of_changed_file(tree: Path) -> None:
    """A trojan dropped over the binary and made setuid: integrity.changed_file reports it (setuid: high, the
    recorded mode in its evidence) and its reinstall restores both; this check does not report it twice."""
    target = tree / "usr/bin/hgplain"
    with open(target, "ab") as f:
        f.write(b"\x90 implant")
    os.chmod(target, 0o4755)
    assert _found(tree) == {}
    [changed] = run_one("integrity.changed_file", RootHost(str(tree)))[0]
    assert changed.target["path"] == "/usr/bin/hgplain"
    assert (changed.evidence["why"], changed.evidence["mode"], changed.evidence["recorded_mode"]) == (
        "a setuid/setgid file", "4755", "0755")


def test_the_fix_drops_the_bit_and_its_undo_puts_it_back(tree: Path) -> None:
    """The chmod steps run on the file inside the tree: the finding goes; the undo brings it back (the same
    fingerprint)."""
    os.chmod(tree / "usr/bin/hgplain", 0o6755)
    [finding] = _found(tree).values()
    assert finding.remediation is not None and finding.remediation.manual is not None
    steps = finding.remediation.steps
    assert [s.argv for s in steps if isinstance(s, Command)] == [("chmod", "u-s", "/usr/bin/hgplain"),
                                                                 ("chmod", "g-s", "/usr/bin/hgplain")]

    def run(argv: tuple[str, ...]) -> None:
        assert argv[-1] == "/usr/bin/hgplain"
        subprocess.run([*argv[:-1], str(tree / argv[-1].lstrip("/"))], check=True)

    for step in steps:
        assert isinstance(step, Command) and step.live_only and step.reversible and step.undo is not None
        run(step.argv)
    assert _found(tree) == {}
    assert (tree / "usr/bin/hgplain").stat().st_mode & 0o7777 == 0o755
    assert _rpm_mode_flags(tree) == set()
    for step in reversed(steps):
        assert isinstance(step, Command) and step.undo is not None
        run(step.undo)
    [again] = _found(tree).values()
    assert again.fingerprint == finding.fingerprint and again.evidence["mode"] == "6755"


def test_rpm_berkeley_db_form_records_modes_too(tree: Path, tmp_path: Path) -> None:
    """The EL7 form: modes read through the Berkeley DB reader; rpm's own bdb_ro backend agrees."""
    need_tool("db5.3_load")
    root = bdb_tree(tree, tmp_path / "el7", pagesize=1024)
    try:
        os.chmod(root / "usr/bin/hgplain", 0o4755)
        found = _found(root)
        assert list(found) == ["/usr/bin/hgplain"]
        assert found["/usr/bin/hgplain"].evidence["recorded_mode"] == "0755"
        assert _rpm_mode_flags(root, dbpath="/var/lib/rpm", backend="bdb_ro") == {"/usr/bin/hgplain"}
    finally:
        _strip_setid(root)


# -- apk ---------------------------------------------------------------------------------------------------

SUID_PACKAGE: tuple[str, str, str, dict[str, bytes | tuple[str, str]]] = (
    "hgsu", "1.0-r0", "hgsu", {"/usr/bin/hgsu": Path("/usr/bin/true").read_bytes()})


@pytest.fixture
def apk_tree(tmp_path: Path) -> Iterator[Path]:
    """The shared apk tree plus hgsu, recorded ``a:0:0:4755`` and installed so; /usr/share/hgbox/data.txt with
    its ``a:`` line removed (apk writes none for the default 0:0:644)."""
    root = write_apk_tree(tmp_path / "root", [*PACKAGES, SUID_PACKAGE])
    db = root / "lib/apk/db/installed"
    text = db.read_text()
    assert "R:hgsu\na:0:0:755\n" in text and "R:data.txt\na:0:0:644\n" in text
    db.write_text(text.replace("R:hgsu\na:0:0:755\n", "R:hgsu\na:0:0:4755\n")
                  .replace("R:data.txt\na:0:0:644\n", "R:data.txt\n"))
    os.chmod(root / "usr/bin/hgsu", 0o4755)
    yield root
    _strip_setid(tmp_path)


def test_apk_clean_tree_is_quiet(apk_tree: Path) -> None:
    assert _found(apk_tree) == {}


def test_apk_file_made_setuid_is_found_and_the_packaged_setuid_one_is_not(apk_tree: Path) -> None:
    """Hit: /bin/hgbox (``a:0:0:755``) made setuid, /etc/hgbox.conf (protected +etc: content not compared)
    made setgid, data.txt (no ``a:`` line: 0644) made world-writable. Near miss: hgsu, recorded 4755."""
    os.chmod(apk_tree / "bin/hgbox", 0o4755)
    os.chmod(apk_tree / "etc/hgbox.conf", 0o2644)
    os.chmod(apk_tree / "usr/share/hgbox/data.txt", 0o646)
    found = _found(apk_tree)
    assert sorted(found) == ["/bin/hgbox", "/etc/hgbox.conf", "/usr/share/hgbox/data.txt"]
    hgbox = found["/bin/hgbox"]
    assert (hgbox.severity, hgbox.evidence["database"], hgbox.evidence["recorded_mode"], hgbox.evidence["mode"],
            hgbox.evidence["gained"], hgbox.evidence["package"]) == ("high", "apk", "0755", "4755", ["setuid"], "hgbox")
    assert found["/etc/hgbox.conf"].evidence["content"] == "not compared (configuration)"
    data = found["/usr/share/hgbox/data.txt"]
    assert (data.severity, data.evidence["recorded_mode"], data.evidence["gained"]) == (
        "medium", "0644", ["world-writable"])
    assert "apk fix hgbox" in (hgbox.remediation.summary if hgbox.remediation else "")


def test_apk_symlinks_are_judged_by_their_target_text_not_by_mode(apk_tree: Path) -> None:
    """/bin/hgsh is a packaged symlink (recorded 0777) to hgbox: making hgbox setuid is one finding, for hgbox,
    not a second one for the link."""
    os.chmod(apk_tree / "bin/hgbox", 0o4755)
    assert sorted(_found(apk_tree)) == ["/bin/hgbox"]


# -- dpkg --------------------------------------------------------------------------------------------------


def test_a_dpkg_host_is_skipped_as_unsupported_not_clean(tmp_path: Path) -> None:
    """dpkg records no file modes: a setuid packaged file there is not judged, and the scan says so."""
    info = tmp_path / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (info.parent / "status").write_text("Package: hgx\nStatus: install ok installed\nArchitecture: all\n")
    data = Path("/usr/bin/true").read_bytes()
    import hashlib

    (info / "hgx.md5sums").write_text(f"{hashlib.md5(data, usedforsecurity=False).hexdigest()}  usr/bin/hgx\n")
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/hgx").write_bytes(data)
    os.chmod(tmp_path / "usr/bin/hgx", 0o4755)
    try:
        found, skipped = run_one(CHECK, RootHost(str(tmp_path)))
        assert found == []
        assert [(s.reason, s.check) for s in skipped] == [("unsupported", CHECK)]
        assert "dpkg database records no file modes" in skipped[0].detail
    finally:
        _strip_setid(tmp_path)
