"""The rpm database reader on real databases: packages built here with rpmbuild, installed by rpm itself into a
temporary root (sqlite form, under /usr/lib/sysimage/rpm with /var/lib/rpm linking to it), and the same header
blobs loaded into Berkeley DB hash files by db5.3_load in both byte orders, two page sizes and with page
checksums. Every answer is cross-checked against rpm's own queries on the same tree.

The builders here are shared with tests/checks/test_integrity.py.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.engine.facts import Facts
from hostguard.host import rpmdb
from hostguard.host.base import HostError, RootHost, Unavailable
from hostguard.host.packages import PACKAGE_VERIFY, FileOwners, package_owners
from tests.conftest import make_config, need_root, need_tool

DBPATH = "/usr/lib/sysimage/rpm"
BIG_FILES = 400  # hgbig's header is ~40 kB: many overflow pages at any page size

SPEC = """Name: {name}
Version: {version}
Release: {release}
{epoch}Summary: hostguard integrity test package
License: MIT
BuildArch: {arch}
%description
A package built by hostguard's tests.
%install
{install}
%files
{files}
"""


def build_rpm(work: Path, name: str, version: str, release: str, install: str, files: str, *,
              epoch: int | None = None, md5: bool = False, arch: str = "x86_64") -> Path:
    """One binary rpm built by rpmbuild (no stripping, no build-id links; md5 file digests if asked)."""
    top = work / f"build-{name}"
    (top / "SPECS").mkdir(parents=True)
    spec = top / "SPECS" / f"{name}.spec"
    spec.write_text(SPEC.format(name=name, version=version, release=release, arch=arch, install=install,
                                files=files, epoch=f"Epoch: {epoch}\n" if epoch is not None else ""))
    defines = {"_topdir": str(top), "_build_id_links": "none", "debug_package": "%{nil}",
               "__os_install_post": "%{nil}", "__strip": "/bin/true"}
    if md5:
        defines["_binary_filedigest_algorithm"] = "1"
    argv = ["rpmbuild", "-bb", str(spec)]
    for key, value in defines.items():
        argv[1:1] = ["--define", f"{key} {value}"]
    subprocess.run(argv, check=True, capture_output=True)
    [rpm] = (top / "RPMS").rglob("*.rpm")
    return rpm


def build_packages(work: Path) -> list[Path]:
    """hgtool (epoch 2, sha256: an ELF, a symlink, a %config file, a %ghost log, data, a %doc file), hgold
    (md5 digests: a script and an ELF shared library) and hgbig (noarch, hundreds of files: a big header)."""
    work.mkdir(parents=True, exist_ok=True)
    hgtool = build_rpm(work, "hgtool", "1.0", "1", epoch=2, install="""
mkdir -p %{buildroot}/usr/bin %{buildroot}/etc %{buildroot}/var/log %{buildroot}/usr/share/hgtool
mkdir -p %{buildroot}/usr/share/doc/hgtool
cp /usr/bin/true %{buildroot}/usr/bin/hgtool
ln -s hgtool %{buildroot}/usr/bin/hglink
echo 'a=1' > %{buildroot}/etc/hgtool.conf
echo data > %{buildroot}/usr/share/hgtool/data.txt
echo doc > %{buildroot}/usr/share/doc/hgtool/README
""", files="""/usr/bin/hgtool
/usr/bin/hglink
%config(noreplace) /etc/hgtool.conf
%ghost /var/log/hgtool.log
/usr/share/hgtool/data.txt
%doc /usr/share/doc/hgtool/README
""")
    hgold = build_rpm(work, "hgold", "0.9", "3", md5=True, install="""
mkdir -p %{buildroot}/usr/bin %{buildroot}/usr/lib64
printf '#!/bin/sh\\necho old\\n' > %{buildroot}/usr/bin/hgold
chmod 755 %{buildroot}/usr/bin/hgold
cp /usr/bin/true %{buildroot}/usr/lib64/libhgold.so.1
""", files="/usr/bin/hgold\n/usr/lib64/libhgold.so.1\n")
    hgbig = build_rpm(work, "hgbig", "2.5", "7", arch="noarch", install=f"""
mkdir -p %{{buildroot}}/usr/share/hgbig
for i in $(seq 1 {BIG_FILES}); do echo "file $i" > %{{buildroot}}/usr/share/hgbig/a-rather-long-file-name-$i.txt; done
""", files="/usr/share/hgbig\n")
    return [hgtool, hgold, hgbig]


def install_tree(root: Path, rpms: list[Path]) -> Path:
    """A root where rpm itself installed ``rpms`` (sqlite database in /usr/lib/sysimage/rpm, /var/lib/rpm a
    relative link to it as on Fedora); rpm's leftover -wal/-shm/lock files are removed, as on a cold image."""
    (root / DBPATH.lstrip("/")).mkdir(parents=True)
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/rpm").symlink_to("../../usr/lib/sysimage/rpm")
    subprocess.run(["rpm", "--root", str(root), "--dbpath", DBPATH, "-i", "--nodeps", "--noscripts", "--ignoreos",
                    "--ignorearch", *map(str, rpms)], check=True, capture_output=True)
    for leftover in ("rpmdb.sqlite-wal", "rpmdb.sqlite-shm", ".rpm.lock"):
        (root / DBPATH.lstrip("/") / leftover).unlink(missing_ok=True)
    return root


def sqlite_blobs(root: Path) -> list[tuple[int, bytes]]:
    conn = sqlite3.connect(f"file:{root}{DBPATH}/rpmdb.sqlite?mode=ro&immutable=1", uri=True)
    try:
        return list(conn.execute("SELECT hnum, blob FROM Packages ORDER BY hnum"))
    finally:
        conn.close()


def load_bdb(dest: Path, blobs: list[tuple[int, bytes]], lorder: int = 1234, pagesize: int = 4096,
             chksum: bool = False) -> Path:
    """A Berkeley DB hash file written by db5.3_load holding ``blobs`` as rpm keys them (4-byte header numbers
    in the file's byte order), plus rpm's record 0 (the next header number)."""
    order = "<" if lorder == 1234 else ">"
    lines = ["VERSION=3", "format=bytevalue", "type=hash", "HEADER=END"]
    for hnum, blob in [*blobs, (0, struct.pack(f"{order}I", max(h for h, _ in blobs) + 1))]:
        lines += [" " + struct.pack(f"{order}I", hnum).hex(), " " + blob.hex()]
    lines.append("DATA=END")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dump = dest.with_suffix(".dump")
    dump.write_text("\n".join(lines) + "\n")
    config = ["-c", f"db_lorder={lorder}", "-c", f"db_pagesize={pagesize}"] + (["-c", "chksum=1"] if chksum else [])
    subprocess.run(["db5.3_load", *config, "-f", str(dump), str(dest)], check=True, capture_output=True)
    dump.unlink()
    return dest


def bdb_tree(sqlite_root: Path, dest: Path, **options: int | bool) -> Path:
    """A copy of an installed tree whose database is the EL7 form: /var/lib/rpm/Packages, no sqlite."""
    shutil.copytree(sqlite_root, dest, symlinks=True)
    blobs = sqlite_blobs(dest)
    (dest / "var/lib/rpm").unlink()
    shutil.rmtree(dest / DBPATH.lstrip("/"))
    load_bdb(dest / "var/lib/rpm/Packages", blobs, **options)  # type: ignore[arg-type]
    return dest


def rpm_query(root: Path, *args: str, dbpath: str = DBPATH, backend: str | None = None) -> str:
    argv = ["rpm", "--root", str(root), "--dbpath", dbpath]
    if backend:
        argv += ["--define", f"_db_backend {backend}"]
    return subprocess.run([*argv, *args], capture_output=True, text=True).stdout


def rpm_changed(root: Path, dbpath: str = DBPATH, backend: str | None = None) -> set[str]:
    """Files ``rpm -Va`` says changed in content (digest flag), %config files left out as ours leave them."""
    out = rpm_query(root, "-Va", "--nodeps", dbpath=dbpath, backend=backend)
    return {line.split()[-1] for line in out.splitlines() if line[2:3] == "5" and " c " not in line}


@pytest.fixture(scope="module")
def rpm_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    need_tool("rpm", "rpmbuild")
    need_root("rpm --root")
    return build_packages(tmp_path_factory.mktemp("rpmbuild"))


@pytest.fixture(scope="module")
def rpm_tree(rpm_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_tree(tmp_path_factory.mktemp("rpmroot") / "root", rpm_files)


def _packages(db: rpmdb.RpmDatabase) -> set[tuple[str, str, str, str, str, str, str]]:
    return {(p.name, "(none)" if p.epoch is None else str(p.epoch), p.version, p.release, p.arch, p.sourcerpm,
             p.digest_algorithm) for p in db.packages}


RPM_ALGOS = {"1": "md5", "8": "sha256"}


def _rpm_packages(root: Path, **kw: str) -> set[tuple[str, ...]]:
    out = rpm_query(root, "-qa", "--qf", "%{NAME}|%{EPOCH}|%{VERSION}|%{RELEASE}|%{ARCH}|%{SOURCERPM}|"
                                         "%{FILEDIGESTALGO}\n", **kw)
    rows = {tuple(line.split("|")) for line in out.splitlines()}
    return {(*r[:6], RPM_ALGOS.get(r[6], "md5")) for r in rows}


def test_sqlite_database_read_through_the_var_lib_rpm_link_matches_rpm_qa(rpm_tree: Path) -> None:
    db = Facts(RootHost(str(rpm_tree)), make_config()).get(rpmdb.RPMDB)
    assert db.location == rpmdb.RpmDbLocation("sqlite", "/var/lib/rpm/rpmdb.sqlite")
    ours = _packages(db)
    assert ours == _rpm_packages(rpm_tree)
    assert ("hgtool", "2", "1.0", "1", "x86_64", "hgtool-1.0-1.src.rpm", "sha256") in ours
    assert ("hgold", "(none)", "0.9", "3", "x86_64", "hgold-0.9-3.src.rpm", "md5") in ours
    [hgtool] = [p for p in db.packages if p.name == "hgtool"]
    assert (hgtool.label(), hgtool.evr()) == ("hgtool.x86_64", "2:1.0-1")


def test_reading_writes_nothing_into_the_tree(rpm_tree: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in rpm_tree.rglob("*")}
    rpmdb.read_rpmdb(RootHost(str(rpm_tree)), rpmdb.RpmDbLocation("sqlite", "/var/lib/rpm/rpmdb.sqlite"))
    assert {p: p.stat().st_mtime_ns for p in rpm_tree.rglob("*")} == before  # no -shm, -wal or journal


def test_file_lists_match_rpm(rpm_tree: Path) -> None:
    """Paths, digests, modes, flags, sizes and link targets of hgtool, as `rpm -q --qf` lists them."""
    out = rpm_query(rpm_tree, "-q", "--qf", "[%{FILENAMES}|%{FILEDIGESTS}|%{FILEMODES}|%{FILEFLAGS}|%{FILESIZES}|"
                                             "%{FILELINKTOS}\n]", "hgtool")
    theirs = {tuple(line.split("|")) for line in out.splitlines()}
    blobs = dict(sqlite_blobs(rpm_tree))
    files = []
    for hnum, blob in blobs.items():
        tags = rpmdb.parse_header(blob, f"header {hnum}")
        if rpmdb.name_of(tags, "x") == "hgtool":
            files = list(rpmdb.files_of(tags, f"header {hnum}"))
    assert {(f.path, f.digest, str(f.mode), str(f.flags), str(f.size), f.linkto) for f in files} == theirs
    by_path = {f.path: f for f in files}
    assert by_path["/etc/hgtool.conf"].config and not by_path["/etc/hgtool.conf"].ghost
    assert by_path["/var/log/hgtool.log"].ghost and by_path["/var/log/hgtool.log"].digest == ""
    assert by_path["/usr/bin/hglink"].linkto == "hgtool" and by_path["/usr/bin/hglink"].digest == ""
    assert by_path["/usr/share/doc/hgtool/README"].doc
    assert len(by_path["/usr/bin/hgtool"].digest) == 64


def test_verifier_entries_carry_recorded_modes(rpm_tree: Path) -> None:
    """Every regular file the verifier takes carries its FILEMODES permission bits (as `rpm -q --qf` prints
    them); the %config file is taken for its mode only, the %ghost log and the symlink not at all."""
    from hostguard.host.packages import rpm_entries

    out = rpm_query(rpm_tree, "-q", "--qf", "[%{FILENAMES}|%{FILEMODES:octal}\n]", "hgtool")
    theirs = {path: int(mode, 8) & 0o7777 for path, mode in (line.split("|") for line in out.splitlines())}
    for hnum, blob in sqlite_blobs(rpm_tree):
        tags = rpmdb.parse_header(blob, f"header {hnum}", rpmdb.FILE_TAGS)
        if rpmdb.name_of(tags, "x") == "hgtool":
            entries = {e.listed: e for e in rpm_entries(tags, f"header {hnum}")}
    assert sorted(entries) == ["/etc/hgtool.conf", "/usr/bin/hgtool", "/usr/share/doc/hgtool/README",
                               "/usr/share/hgtool/data.txt"]
    assert {path: e.mode for path, e in entries.items()} == {path: theirs[path] for path in entries}
    assert entries["/usr/bin/hgtool"].mode == 0o755 and entries["/usr/bin/hgtool"].compare_digest
    assert not entries["/etc/hgtool.conf"].compare_digest and entries["/etc/hgtool.conf"].mode == 0o644


@pytest.mark.parametrize(("lorder", "pagesize", "chksum"),
                         [(1234, 4096, False), (4321, 4096, False), (1234, 512, True), (4321, 1024, True)])
def test_berkeley_db_form_reads_the_same_packages(rpm_tree: Path, tmp_path: Path, lorder: int, pagesize: int,
                                                  chksum: bool) -> None:
    """The EL7 form, both byte orders, small pages (hgbig's header spans dozens of overflow pages) and page
    checksums; rpm's own read-only Berkeley DB backend (which refuses checksummed pages) agrees on the others."""
    need_tool("db5.3_load")
    blobs = sqlite_blobs(rpm_tree)
    assert max(len(b) for _, b in blobs) > 8 * pagesize  # the big header needs an overflow chain
    root = bdb_tree(rpm_tree, tmp_path / "el7", lorder=lorder, pagesize=pagesize, chksum=chksum)
    db = Facts(RootHost(str(root)), make_config()).get(rpmdb.RPMDB)
    assert db.location == rpmdb.RpmDbLocation("bdb", "/var/lib/rpm/Packages")
    assert _packages(db) == _packages(rpmdb.read_rpmdb(RootHost(str(rpm_tree)), db.location.__class__(
        "sqlite", "/var/lib/rpm/rpmdb.sqlite")))
    assert sorted(rpmdb.blobs(RootHost(str(root)), db.location)) == sorted(blobs)
    if not chksum:
        assert _rpm_packages(root, dbpath="/var/lib/rpm", backend="bdb_ro") == _packages(db)


def test_a_wal_still_holding_transactions_is_read_without_writing_the_tree(rpm_tree: Path, tmp_path: Path) -> None:
    """rpm removed hgold on a running host and the log is not checkpointed yet: an immutable open would still
    see hgold; reading a private copy with its WAL does not, and the tree's files are untouched."""
    root = tmp_path / "root"
    shutil.copytree(rpm_tree, root, symlinks=True)
    dbfile = root / DBPATH.lstrip("/") / "rpmdb.sqlite"
    writer = sqlite3.connect(dbfile)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        [(hnum,)] = [(h,) for h, b in sqlite_blobs(root) if rpmdb.name_of(rpmdb.parse_header(b, "x"), "x") == "hgold"]
        writer.execute("DELETE FROM Packages WHERE hnum = ?", (hnum,))
        writer.commit()
        assert (dbfile.parent / "rpmdb.sqlite-wal").stat().st_size > 0
        before = {p.name: p.read_bytes() for p in dbfile.parent.iterdir()}
        db = rpmdb.collect_rpmdb(RootHost(str(root)))
        assert {p.name for p in db.packages} == {"hgtool", "hgbig"}
        assert {p.name: p.read_bytes() for p in dbfile.parent.iterdir()} == before
    finally:
        writer.close()


def test_ndb_form_is_unsupported_and_says_which_form(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/sysimage/rpm").mkdir(parents=True)
    (tmp_path / "usr/lib/sysimage/rpm/Packages.db").write_bytes(b"RpmP" + bytes(60))
    with pytest.raises(Unavailable, match="ndb form") as info:
        Facts(RootHost(str(tmp_path)), make_config()).get(rpmdb.RPMDB)
    assert info.value.reason == "unsupported"
    with pytest.raises(Unavailable, match="ndb form"):
        Facts(RootHost(str(tmp_path)), make_config()).get(PACKAGE_VERIFY)
    assert package_owners(RootHost(str(tmp_path)), ["/usr/bin/bash"]) == FileOwners({}, None)


def test_no_rpm_database_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="no rpm database"):
        rpmdb.collect_rpmdb(RootHost(str(tmp_path)))


def test_owners_from_the_rpm_database_match_rpm_qf(rpm_tree: Path) -> None:
    asked = ["/usr/bin/hgtool", "/usr/lib64/libhgold.so.1", "/usr/share/hgbig/a-rather-long-file-name-7.txt",
             "/tmp/.x/hgtool"]
    owners = package_owners(RootHost(str(rpm_tree)), asked)
    assert owners == FileOwners({"/usr/bin/hgtool": "hgtool", "/usr/lib64/libhgold.so.1": "hgold",
                                 "/usr/share/hgbig/a-rather-long-file-name-7.txt": "hgbig"}, "rpm")
    for path in asked[:3]:
        assert rpm_query(rpm_tree, "-qf", "--qf", "%{NAME}", path) == owners.owner(path)


def test_broken_databases_are_one_line_host_errors(rpm_tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(rpm_tree, root, symlinks=True)
    dbfile = root / DBPATH.lstrip("/") / "rpmdb.sqlite"
    dbfile.write_bytes(b"not a database at all" * 100)
    with pytest.raises(HostError, match=r"^/var/lib/rpm/rpmdb.sqlite: ") as info:
        rpmdb.collect_rpmdb(RootHost(str(root)))
    assert "\n" not in str(info.value)
    dbfile.unlink()
    (root / "var/lib/rpm").unlink()
    (root / "var/lib/rpm").mkdir()
    packages = root / "var/lib/rpm/Packages"
    load_bdb(packages, sqlite_blobs(rpm_tree), pagesize=512)
    packages.write_bytes(packages.read_bytes()[: 512 * 5])  # truncated in the middle of the file
    with pytest.raises(HostError, match=r"^/var/lib/rpm/Packages: "):
        rpmdb.collect_rpmdb(RootHost(str(root)))


@pytest.mark.parametrize(("blob", "why"), [
    (b"\0\0\0", "shorter than its own size fields"),
    (struct.pack(">II", 0, 0), "claiming 0 index entries"),
    (struct.pack(">II", 1, 100) + bytes(16), "claiming 124 bytes"),
    (struct.pack(">II", 1, 4) + struct.pack(">IIiI", 1000, 6, 0, 1) + b"abcd", "without its terminating NUL"),
    (struct.pack(">II", 1, 4) + struct.pack(">IIiI", 1030, 3, 2, 2) + b"abcd", "past the end of the data store"),
    (struct.pack(">II", 1, 4) + struct.pack(">IIiI", 1000, 6, -4, 1) + b"abc\0", "outside the 4-byte data store"),
    (struct.pack(">II", 1, 4) + struct.pack(">IIiI", 1000, 42, 0, 1) + b"abc\0", "unknown data type 42"),
])
def test_malformed_headers_name_what_is_wrong(blob: bytes, why: str) -> None:
    with pytest.raises(HostError, match=f"^Packages header 9: .*{why}"):
        rpmdb.parse_header(blob, "Packages header 9")


def test_header_without_a_name_or_with_mismatched_file_arrays() -> None:
    def header(entries: list[tuple[int, int, bytes, int]]) -> bytes:
        index, data = b"", b""
        for tag, kind, value, count in entries:
            index += struct.pack(">IIiI", tag, kind, len(data), count)
            data += value
        return struct.pack(">II", len(entries), len(data)) + index + data
    with pytest.raises(HostError, match="tag 1000 is missing"):
        rpmdb.package_of(rpmdb.parse_header(header([(1001, 6, b"1\0", 1)]), "h"), "h")
    tags = rpmdb.parse_header(header([(1117, 8, b"a\0b\0", 2), (1118, 8, b"/x/\0", 1), (1116, 4, bytes(4), 1)]), "h")
    with pytest.raises(HostError, match="2 file names but 1 directory indexes"):
        rpmdb.files_of(tags, "h")
    tags = rpmdb.parse_header(header([(1117, 8, b"a\0", 1), (1118, 8, b"/x/\0", 1), (1116, 4, b"\0\0\0\5", 1)]), "h")
    with pytest.raises(HostError, match="directory index past"):
        rpmdb.files_of(tags, "h")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_header_parser_fuzz_gives_tags_or_a_host_error(blob: bytes) -> None:
    try:
        tags = rpmdb.parse_header(blob, "h")
        rpmdb.files_of(tags, "h")
        rpmdb.package_of(tags, "h")
    except HostError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("h: ")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8))
def test_header_parser_on_corrupted_real_headers(rpm_tree: Path, flips: list[tuple[int, int]]) -> None:
    """Real headers with a few bytes overwritten: parsed, or a HostError, never another exception."""
    blobs = sqlite_blobs(rpm_tree)
    blob = bytearray(blobs[0][1])
    for position, value in flips:
        blob[position % len(blob)] = value
    try:
        tags = rpmdb.parse_header(bytes(blob), "h")
        rpmdb.files_of(tags, "h")
        rpmdb.package_of(tags, "h")
    except HostError as exc:
        assert "\n" not in str(exc)


def _bdb_records(data: bytes, tmp: Path) -> list[tuple[bytes, bytes]]:
    path = tmp / "Packages"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return list(rpmdb.BdbHash(fd, "Packages").records())
    finally:
        os.close(fd)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000))
def test_bdb_reader_fuzz_gives_records_or_a_host_error(tmp_path: Path, data: bytes) -> None:
    try:
        _bdb_records(data, tmp_path)
    except HostError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("Packages: ")


@pytest.fixture(scope="module")
def small_bdb(rpm_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    need_tool("db5.3_load")
    return load_bdb(tmp_path_factory.mktemp("bdb") / "Packages", sqlite_blobs(rpm_tree), lorder=4321,
                    pagesize=512).read_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 255)), min_size=1, max_size=12))
def test_bdb_reader_on_corrupted_real_files(small_bdb: bytes, tmp_path: Path, flips: list[tuple[int, int]]) -> None:
    """A real big-endian file with overflow chains, a few bytes overwritten (page types, item offsets, chain
    links): its records, or a HostError."""
    data = bytearray(small_bdb)
    for position, value in flips:
        data[position % len(data)] = value
    try:
        _bdb_records(bytes(data), tmp_path)
    except HostError as exc:
        assert "\n" not in str(exc)
