"""Pending apk updates from cached repository indexes, on Alpine trees written here.

apk-tools does not run on Debian, so each tree is built by hand the way apk leaves one: an installed
database, /etc/apk/repositories (and world, arch), and the cached ``APKINDEX.<8 hex>.tar.gz`` files written
with tarfile and gzip, signed ones as apk's are (a first gzip stream holding only a ``.SIGN.RSA.*`` tar
entry cut before the end-of-archive blocks, then the index's own gzip stream). Versions, mirrors (``.test``
hosts) and advisory ids are made up; only the two dl-cdn cache names are real, as apk wrote them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.findings import Finding, SkipReason
from hostguard.host.base import RootHost
from hostguard.remediation import Action
from hostguard.vulns.pending import CHECK_ID, LISTS_CHECK_ID, PendingResult, PendingUpdate, refresh_step
from hostguard.vulns.pending_apk import (
    IndexEntry,
    Repository,
    WorldEntry,
    cache_names,
    index_entries,
    parse_apkindex,
    parse_repositories,
    parse_world,
    pending_apk_updates,
    read_indexes,
)

MAIN = "https://mirror.example.test/alpine/v3.19/main"
COMMUNITY = "https://mirror.example.test/alpine/v3.19/community"
EDGE = "https://mirror.example.test/alpine/edge/testing"
OLD = "https://mirror.example.test/alpine/v3.18/main"
NOW = 1_710_000_000.0
DAY = 86400.0

# name, version, arch, origin
INSTALLED = [
    ("busybox", "1.36.1-r15", "x86_64", "busybox"),
    ("ssl_client", "1.36.1-r15", "x86_64", "busybox"),        # a subpackage: advisories name its origin
    ("musl", "1.2.4_git20230717-r4", "x86_64", "musl"),       # near miss: the index has the same version
    ("zlib", "1.3.1-r0", "x86_64", "zlib"),                   # near miss: the index has an older version
    ("hg-arch", "2.0-r0", "x86_64", "hg-arch"),               # near miss: newer, but for another arch
    ("ca-certificates", "20230506-r0", "x86_64", "ca-certificates"),  # newer, no advisory: other update
    ("alpine-base", "3.19.1-r0", "noarch", "alpine-base"),
]
MAIN_INDEX = [
    ("busybox", "1.36.1-r19", "x86_64", "busybox"),
    ("busybox", "1.36.1-r17", "x86_64", "busybox"),
    ("ssl_client", "1.36.1-r19", "x86_64", "busybox"),
    ("musl", "1.2.4_git20230717-r4", "x86_64", "musl"),
    ("zlib", "1.3-r2", "x86_64", "zlib"),
    ("hg-arch", "2.1-r0", "aarch64", "hg-arch"),
    ("alpine-base", "3.19.1-r0", "noarch", "alpine-base"),
]
COMMUNITY_INDEX = [("ca-certificates", "20240226-r0", "x86_64", "ca-certificates")]
ADVISORIES: dict[tuple[str, str, str], Sequence[str]] = {
    ("busybox", "1.36.1-r15", "1.36.1-r19"): ("CVE-2099-0001", "ALPINE-TEST-1")}


def installed_db(packages: Sequence[tuple[str, str, str, str]]) -> str:
    """An installed database with one file per package (the reader skips file lists here anyway)."""
    out = []
    for name, version, arch, origin in packages:
        out.append(f"C:Q1{'A' * 27}=\nP:{name}\nV:{version}\nA:{arch}\nS:1000\nI:4096\nT:{name} (test)\n"
                   f"U:https://{name}.example.test/\nL:MIT\no:{origin}\nm:Test <t@example.test>\nt:1700000000\n"
                   f"c:{'0' * 40}\nF:usr/share/{name}\nR:README\nZ:Q1{'B' * 27}=\n")
    return "\n".join(out) + "\n"


def apkindex(entries: Sequence[tuple[str, str, str, str]]) -> str:
    """APKINDEX text: the installed database's stanzas without file lists, with a dependency line."""
    return "".join(f"C:Q1{'C' * 27}=\nP:{name}\nV:{version}\nA:{arch}\nS:1000\nI:4096\nT:{name} (test)\n"
                   f"U:https://{name}.example.test/\nL:MIT\no:{origin}\nm:Test <t@example.test>\nt:1700000000\n"
                   f"D:so:libc.musl-{arch}.so.1\n\n" for name, version, arch, origin in entries)


def _member(name: str, data: bytes) -> bytes:
    """One ustar entry (header and padded data) without an end-of-archive marker."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_700_000_000
    return info.tobuf(format=tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)


def index_targz(text: str, *, signed: bool = False, cut: bool = True) -> bytes:
    """An APKINDEX.tar.gz: DESCRIPTION and APKINDEX in one gzip stream; ``signed`` puts a gzip stream with a
    dummy ``.SIGN.RSA.*`` entry in front, cut like abuild-tar --cut (or, ``cut=False``, a whole tar)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("DESCRIPTION", b"v3.19.1-0-gtest"), ("APKINDEX", text.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    index = gzip.compress(buf.getvalue())
    if not signed:
        return index
    sig = _member(".SIGN.RSA.packager@example.test-65a1b2c3.rsa.pub", b"not a real signature\n" * 12)
    if not cut:
        sig += b"\0" * 1024
    return gzip.compress(sig) + index


def apk2_name(url: str) -> str:
    """apk-tools 2's cache name: the first 4 bytes of the SHA-1 of the repository URL, in hex."""
    return f"APKINDEX.{hashlib.sha1(url.encode()).hexdigest()[:8]}.tar.gz"


def apk3_name(url: str, arch: str = "x86_64") -> str:
    """apk-tools 3's: the first 4 bytes of the SHA-256 of the index URL."""
    return f"APKINDEX.{hashlib.sha256(f'{url}/{arch}/APKINDEX.tar.gz'.encode()).hexdigest()[:8]}.tar.gz"


def write_host(root: Path, *, installed: Sequence[tuple[str, str, str, str]] | None = INSTALLED,
               repositories: str = f"{MAIN}\n{COMMUNITY}\n", cache: dict[str, bytes] | None = None,
               world: str = "alpine-base\nbusybox\nca-certificates\n", mtime: float = NOW - DAY,
               cache_dir: str = "var/cache/apk") -> Path:
    """An Alpine tree: ``cache`` maps file names in the cache directory to their bytes (default: main signed,
    community unsigned), all with ``mtime``."""
    (root / "etc/apk").mkdir(parents=True)
    (root / "etc/apk/repositories").write_text(repositories)
    (root / "etc/apk/world").write_text(world)
    (root / "etc/apk/arch").write_text("x86_64\n")
    if installed is not None:
        (root / "lib/apk/db").mkdir(parents=True)
        (root / "lib/apk/db/installed").write_text(installed_db(installed))
    if cache is None:
        cache = {apk2_name(MAIN): index_targz(apkindex(MAIN_INDEX), signed=True),
                 apk2_name(COMMUNITY): index_targz(apkindex(COMMUNITY_INDEX))}
    directory = root / cache_dir
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in cache.items():
        (directory / name).write_bytes(data)
        os.utime(directory / name, (mtime, mtime))
    return root


class Advisories:
    """The caller's security lookup: advisory ids by (origin, installed, new), every question recorded."""

    def __init__(self, table: Mapping[tuple[str, str, str], Sequence[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, str, str]] = []

    def __call__(self, origin: str, installed: str, new: str) -> Sequence[str]:
        self.asked.append((origin, installed, new))
        return self.table.get((origin, installed, new), ())


def _scan(root: Path, *, security: Advisories | None = None, max_index_age_days: float = 7.0) -> PendingResult:
    return pending_apk_updates(RootHost(str(root)), now=NOW, security=security, max_index_age_days=max_index_age_days)


def _names(updates: Sequence[PendingUpdate]) -> list[str]:
    return [u.name for u in updates]


def _by_id(findings: Sequence[Finding], check: str) -> list[Finding]:
    return [f for f in findings if f.id == check]


# -- the hit and its near misses --------------------------------------------------------------------------

def test_security_update_marked_by_the_callback_is_a_finding_with_the_exact_command(tmp_path: Path) -> None:
    advisories = Advisories(ADVISORIES)
    result = _scan(write_host(tmp_path), security=advisories)
    assert result.available and result.detail == ""
    assert [(u.name, u.old, u.new, u.origins, u.arch) for u in result.updates] == [
        ("busybox", "1.36.1-r15", "1.36.1-r19", (MAIN,), "x86_64"),        # the newest of the two offered
        ("ssl_client", "1.36.1-r15", "1.36.1-r19", (MAIN,), "x86_64"),     # the same origin's advisory
    ]
    found = _by_id(result.findings, CHECK_ID)
    assert [f.target for f in found] == [{"kind": "package", "name": "busybox"},
                                         {"kind": "package", "name": "ssl_client"}]
    busybox = found[0]
    assert busybox.evidence["advisories"] == ["CVE-2099-0001", "ALPINE-TEST-1"]
    assert busybox.evidence["manager"] == "apk" and busybox.evidence["installed"] == "1.36.1-r15"
    assert busybox.evidence["available"] == "1.36.1-r19"
    assert "CVE-2099-0001" in busybox.title
    assert busybox.remediation.steps == (Action("upgrade", (("manager", "apk"), ("command", "apk upgrade busybox"),
                                                           ("packages", "busybox"), ("to", "1.36.1-r19"))),)
    assert "`apk upgrade busybox`" in busybox.remediation.summary
    assert ("busybox", "1.36.1-r15", "1.36.1-r19") in advisories.asked
    assert advisories.asked.count(("busybox", "1.36.1-r15", "1.36.1-r19")) == 1  # asked once per origin update


def test_near_misses_stay_quiet(tmp_path: Path) -> None:
    result = _scan(write_host(tmp_path), security=Advisories(ADVISORIES))
    pending = _names(result.updates) + _names(result.other_updates)
    assert "musl" not in pending                 # the same version
    assert "zlib" not in pending                 # the index only has an older one
    assert "hg-arch" not in pending              # newer, but built for aarch64
    assert "alpine-base" not in pending          # noarch, same version
    assert [(u.name, u.new, u.origins) for u in result.other_updates] == [
        ("ca-certificates", "20240226-r0", (COMMUNITY,))]      # newer, no advisory: listed, no finding
    assert [f.target["name"] for f in _by_id(result.findings, CHECK_ID)] == ["busybox", "ssl_client"]


def test_without_a_security_lookup_every_update_is_an_other_update(tmp_path: Path) -> None:
    result = _scan(write_host(tmp_path))
    assert result.updates == ()
    assert _names(result.other_updates) == ["busybox", "ca-certificates", "ssl_client"]
    assert result.findings == ()


def test_noarch_package_upgrades_to_a_noarch_build(tmp_path: Path) -> None:
    main = [*MAIN_INDEX, ("alpine-base", "3.19.2-r0", "noarch", "alpine-base")]
    root = write_host(tmp_path, cache={apk2_name(MAIN): index_targz(apkindex(main))})
    result = _scan(root, security=Advisories({("alpine-base", "3.19.1-r0", "3.19.2-r0"): ("ALPINE-TEST-2",)}))
    assert [(u.name, u.new) for u in result.updates] == [("alpine-base", "3.19.2-r0")]


# -- the index files --------------------------------------------------------------------------------------

def test_signed_multi_stream_index_is_read(tmp_path: Path) -> None:
    data = index_targz(apkindex(MAIN_INDEX), signed=True)
    assert data.count(b"\x1f\x8b\x08") >= 2           # two gzip streams, the signature first
    entries, problem = index_entries(data)
    assert problem is None
    assert IndexEntry("ssl_client", "1.36.1-r19", "x86_64", "busybox") in entries


def test_signature_stream_with_its_end_of_archive_blocks_is_read_too() -> None:
    entries, problem = index_entries(index_targz(apkindex(COMMUNITY_INDEX), signed=True, cut=False))
    assert problem is None and entries == (IndexEntry("ca-certificates", "20240226-r0", "x86_64", "ca-certificates"),)


def test_apk_tools_3_cache_name_is_tied_to_its_repository(tmp_path: Path) -> None:
    root = write_host(tmp_path, cache={apk3_name(MAIN): index_targz(apkindex(MAIN_INDEX), signed=True),
                                       apk3_name(COMMUNITY): index_targz(apkindex(COMMUNITY_INDEX))})
    result = _scan(root, security=Advisories(ADVISORIES))
    assert _names(result.updates) == ["busybox", "ssl_client"] and result.detail == ""


def test_apk_tools_2_cache_names_match_what_apk_wrote_for_dl_cdn() -> None:
    """The names apk 2 gave the v3.18 main and community indexes on a stock container (``ls /var/cache/apk``
    after ``apk update``, quoted in kubernetes-sigs/external-dns pull request 3656)."""
    arches = ("x86_64",)
    assert "APKINDEX.49104001.tar.gz" in cache_names(Repository("https://dl-cdn.alpinelinux.org/alpine/v3.18/main"),
                                                     arches)
    assert "APKINDEX.884188d8.tar.gz" in cache_names(
        Repository("https://dl-cdn.alpinelinux.org/alpine/v3.18/community"), arches)


def test_linked_cache_directory_is_preferred(tmp_path: Path) -> None:
    root = write_host(tmp_path, cache={}, cache_dir="var/cache/apk")
    linked = root / "media/usb/cache"
    linked.mkdir(parents=True)
    (linked / apk2_name(MAIN)).write_bytes(index_targz(apkindex(MAIN_INDEX), signed=True))
    os.utime(linked / apk2_name(MAIN), (NOW - DAY, NOW - DAY))
    (root / "etc/apk/cache").symlink_to("/media/usb/cache")    # absolute: resolved inside the tree
    result = _scan(root, security=Advisories(ADVISORIES))
    assert result.lists_dir == "/etc/apk/cache"
    assert _names(result.updates) == ["busybox", "ssl_client"]


def test_local_repository_index_is_read_in_place(tmp_path: Path) -> None:
    root = write_host(tmp_path, repositories="/srv/repo/main\n", cache={})
    index = root / "srv/repo/main/x86_64/APKINDEX.tar.gz"
    index.parent.mkdir(parents=True)
    index.write_bytes(index_targz(apkindex(MAIN_INDEX)))
    os.utime(index, (NOW - 90 * DAY, NOW - 90 * DAY))
    result = _scan(root, security=Advisories(ADVISORIES))
    assert [(u.name, u.origins) for u in result.updates] == [("busybox", ("/srv/repo/main",)),
                                                             ("ssl_client", ("/srv/repo/main",))]
    assert not result.lists_stale and _by_id(result.findings, LISTS_CHECK_ID) == []  # nothing to `apk update`


# -- what apk would not take --------------------------------------------------------------------------------

def test_tagged_repository_serves_only_packages_pinned_to_it(tmp_path: Path) -> None:
    edge = [("busybox", "1.37.0-r0", "x86_64", "busybox"), ("zlib", "1.3.2-r0", "x86_64", "zlib")]
    cache = {apk2_name(MAIN): index_targz(apkindex(MAIN_INDEX)), apk2_name(COMMUNITY): index_targz(apkindex([])),
             apk2_name(EDGE): index_targz(apkindex(edge))}
    repos = f"{MAIN}\n{COMMUNITY}\n@testing {EDGE}\n"
    result = _scan(write_host(tmp_path, repositories=repos, cache=cache, world="zlib@testing\nbusybox\n"))
    news = {u.name: (u.new, u.origins) for u in result.other_updates}
    assert news["busybox"] == ("1.36.1-r19", (MAIN,))               # not pinned: edge is not looked at
    assert news["zlib"] == ("1.3.2-r0", (f"@testing {EDGE}",))       # pinned: edge serves it


def test_pinned_package_prefers_its_tagged_repository_even_when_older(tmp_path: Path) -> None:
    edge = [("busybox", "1.36.1-r16", "x86_64", "busybox")]
    cache = {apk2_name(MAIN): index_targz(apkindex(MAIN_INDEX)), apk2_name(EDGE): index_targz(apkindex(edge))}
    root = write_host(tmp_path, repositories=f"{MAIN}\n@edge {EDGE}\n", cache=cache, world="busybox@edge\n")
    result = _scan(root)
    assert [(u.new, u.origins) for u in result.other_updates if u.name == "busybox"] == [
        ("1.36.1-r16", (f"@edge {EDGE}",))]


def test_world_version_constraint_holds_the_package(tmp_path: Path) -> None:
    root = write_host(tmp_path, world="busybox\nca-certificates=20230506-r0\n")
    assert "ca-certificates" not in _names(_scan(root).other_updates)


def test_index_of_a_repository_no_longer_configured_is_ignored(tmp_path: Path) -> None:
    old = [("musl", "1.2.5-r0", "x86_64", "musl")]   # newer than installed, but its repository was removed
    cache = {apk2_name(MAIN): index_targz(apkindex(MAIN_INDEX)), apk2_name(COMMUNITY): index_targz(apkindex([])),
             apk2_name(OLD): index_targz(apkindex(old))}
    result = _scan(write_host(tmp_path, cache=cache))
    assert "musl" not in _names(result.other_updates)
    assert apk2_name(OLD) in result.detail and "no configured repository" in result.detail


# -- index age, missing and broken indexes --------------------------------------------------------------------

def test_fresh_indexes_give_their_age_and_no_finding(tmp_path: Path) -> None:
    result = _scan(write_host(tmp_path, mtime=NOW - DAY))
    assert result.lists_updated == NOW - DAY and result.lists_age_days == 1.0 and not result.lists_stale
    assert _by_id(result.findings, LISTS_CHECK_ID) == []


def test_stale_indexes_ask_for_apk_update(tmp_path: Path) -> None:
    result = _scan(write_host(tmp_path, mtime=NOW - 10 * DAY), max_index_age_days=7)
    assert result.lists_stale and result.lists_age_days == 10.0
    [stale] = _by_id(result.findings, LISTS_CHECK_ID)
    assert stale.target == {"kind": "path", "path": "/var/cache/apk"}
    assert stale.remediation.steps == (refresh_step("apk", ("apk", "update")),)
    assert "10 days old" in stale.title and "apt" not in stale.title.lower()
    assert _names(result.other_updates) == ["busybox", "ca-certificates", "ssl_client"]  # still read


def test_no_index_at_all(tmp_path: Path) -> None:
    result = _scan(write_host(tmp_path, cache={}), security=Advisories(ADVISORIES))
    assert result.available and result.updates == () and result.other_updates == ()
    assert result.lists_updated is None and result.lists_age_days is None and result.lists_stale
    [stale] = _by_id(result.findings, LISTS_CHECK_ID)
    assert "no readable repository index" in stale.title
    assert stale.evidence["missing"] == [MAIN, COMMUNITY]


def test_corrupt_index_is_a_problem_noted_and_the_other_repository_still_counts(tmp_path: Path) -> None:
    good = index_targz(apkindex(MAIN_INDEX), signed=True)
    cache = {apk2_name(MAIN): good, apk2_name(COMMUNITY): index_targz(apkindex(COMMUNITY_INDEX))[:-20]}
    result = _scan(write_host(tmp_path, cache=cache), security=Advisories(ADVISORIES))
    assert _names(result.updates) == ["busybox", "ssl_client"]
    assert "ca-certificates" not in _names(result.other_updates)
    assert f"/var/cache/apk/{apk2_name(COMMUNITY)}: truncated gzip stream" in result.detail
    [stale] = _by_id(result.findings, LISTS_CHECK_ID)
    assert stale.evidence["missing"] == [COMMUNITY]
    assert stale.evidence["unreadable"] == [f"/var/cache/apk/{apk2_name(COMMUNITY)}"]


@pytest.mark.parametrize(("data", "problem"), [
    (b"\x00\x01garbage that is no gzip at all" * 10, "not a gzip file"),
    (gzip.compress(b"plain text, not a tar archive\n" * 40), "no APKINDEX in the archive"),
    (gzip.compress(b""), "not a tar archive (empty file)"),
    (index_targz(apkindex(MAIN_INDEX)) + b"trailing junk", "garbage after gzip stream"),
    (b"ADBd" + bytes(60), "not a gzip file"),                     # an apk-tools 3 index, not read
])
def test_garbage_bytes_are_a_problem_never_a_traceback(tmp_path: Path, data: bytes, problem: str) -> None:
    cache = {apk2_name(MAIN): data, apk2_name(COMMUNITY): index_targz(apkindex(COMMUNITY_INDEX))}
    result = _scan(write_host(tmp_path, cache=cache), security=Advisories(ADVISORIES))
    assert f"{apk2_name(MAIN)}: {problem}" in result.detail
    assert result.updates == () and _names(result.other_updates) == ["ca-certificates"]


def test_index_without_packages_is_noted() -> None:
    assert index_entries(index_targz("not:an index\n\n")) == ((), "the APKINDEX lists no package")


# -- the host ---------------------------------------------------------------------------------------------------

def test_host_without_apk_database_is_unsupported(tmp_path: Path) -> None:
    result = _scan(write_host(tmp_path, installed=None))
    assert not result.available and result.reason == SkipReason.UNSUPPORTED
    assert "/lib/apk/db/installed" in result.detail and result.findings == ()


def test_broken_installed_database_is_an_error(tmp_path: Path) -> None:
    root = write_host(tmp_path)
    (root / "lib/apk/db/installed").write_text("P:busybox\nthis is not a field\n")
    result = _scan(root)
    assert not result.available and result.reason == SkipReason.ERROR and "line 2" in result.detail


def test_read_indexes_ties_each_file_to_its_repository(tmp_path: Path) -> None:
    indexes = read_indexes(RootHost(str(write_host(tmp_path))))
    assert indexes.cache_dir == "/var/cache/apk"
    assert {i.path: i.repository for i in indexes.indexes} == {
        f"/var/cache/apk/{apk2_name(MAIN)}": Repository(MAIN),
        f"/var/cache/apk/{apk2_name(COMMUNITY)}": Repository(COMMUNITY)}
    assert indexes.missing == () and indexes.ignored == () and indexes.updated == NOW - DAY


def test_result_to_dict_is_json_ready(tmp_path: Path) -> None:
    data = _scan(write_host(tmp_path), security=Advisories(ADVISORIES)).to_dict()
    assert data["lists_dir"] == "/var/cache/apk" and data["lists_age_days"] == 1.0
    assert [u["name"] for u in data["updates"]] == ["busybox", "ssl_client"]


# -- the parsers ------------------------------------------------------------------------------------------------

def test_parse_apkindex_reads_name_version_arch_origin() -> None:
    text = "P:a\nV:1.0-r0\nA:x86_64\no:src\n\nP:b\nV:2-r1\n\nV:3\n\nP:no-version\n\nnonsense\nP:c\nV:1\r\nA:noarch\r\n"
    assert parse_apkindex(text) == (IndexEntry("a", "1.0-r0", "x86_64", "src"), IndexEntry("b", "2-r1", "", "b"),
                                    IndexEntry("c", "1", "noarch", "c"))


def test_parse_repositories() -> None:
    text = ("# comment\n\n" f"{MAIN}\n" f"@edge {EDGE}/\n" "/media/cdrom/apks\n"
            "set ALPINE=https://mirror.example.test/alpine\n" "v2 https://mirror.example.test/alpine/v3.20 main community\n"
            "ndx @x https://repo.example.test/custom/APKINDEX.tar.gz\n" "${ALPINE}/v3.20/main\n" "bogus-keyword x\n")
    assert parse_repositories(text) == [
        Repository(MAIN), Repository(f"{EDGE}/", "edge"), Repository("/media/cdrom/apks"),
        Repository("https://mirror.example.test/alpine/v3.20/main"),
        Repository("https://mirror.example.test/alpine/v3.20/community"),
        Repository("https://repo.example.test/custom/APKINDEX.tar.gz", "x", None)]
    assert Repository("/media/cdrom/apks").local and not Repository(MAIN).local


def test_parse_world() -> None:
    assert parse_world("busybox\nzlib@edge\n!bad\nopenssl<3.2\ncurl@edge>=8.0-r0\n") == {
        "busybox": WorldEntry("busybox"), "zlib": WorldEntry("zlib", "edge"),
        "openssl": WorldEntry("openssl", "", "<", "3.2"), "curl": WorldEntry("curl", "edge", ">=", "8.0-r0")}


# -- garbage never raises -----------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_apkindex_never_raises(text: str) -> None:
    for entry in parse_apkindex(text):
        assert entry.name and entry.version


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_index_bytes_never_raise(data: bytes) -> None:
    entries, problem = index_entries(data)
    assert (entries == ()) == (problem is not None)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096), st.booleans())
def test_gzipped_garbage_never_raises(data: bytes, as_tar: bool) -> None:
    payload = _member("APKINDEX", data) if as_tar else data
    entries, problem = index_entries(gzip.compress(payload))
    assert problem is not None or entries


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("PVAo:\n\r\t -_.0123456789abcrxz~\x00é"), max_size=400))
def test_index_text_garbage_never_raises(text: str) -> None:
    entries, problem = index_entries(index_targz(text, signed=True))
    assert (entries == ()) == (problem is not None)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=2048), st.text(max_size=200), st.text(max_size=200))
def test_pending_over_garbage_tree_never_raises(index: bytes, repositories: str, world: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = write_host(Path(tmp), repositories=repositories, world=world,
                          cache={apk2_name(MAIN): index, "APKINDEX.00000000.tar.gz": index})
        result = pending_apk_updates(RootHost(str(root)), now=NOW, security=Advisories(ADVISORIES))
        assert result.available
        assert {f.id for f in result.findings} <= {CHECK_ID, LISTS_CHECK_ID}
