"""Which package owns a file: dpkg's file lists in a tree, and on this machine checked against dpkg-query; the
rpm and apk databases when the tree has no dpkg; the dpkg status, diversions, path filters and md5sums readers
the integrity family verifies packaged files with, and the verifier's bounded read-ahead."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.engine.facts import Facts
from hostguard.host import packages
from hostguard.host.base import HostError, LiveHost, ProcessInfo, RootHost
from hostguard.host.packages import (
    DPKG_VERIFY,
    EXE_OWNERS,
    PACKAGE_VERIFY,
    STAT_OVERRIDES,
    DpkgDatabase,
    FileOwners,
    StatOverride,
    dpkg_owners,
    package_owners,
    parse_diversions,
    parse_filters,
    parse_md5sums,
    parse_statoverride,
    parse_status,
    usr_aliases,
)
from hostguard.host.processes import PROCESSES
from tests.conftest import make_config, need_root, need_tool
from tests.host.test_apkdb import write_apk_tree
from tests.host.test_rpmdb import build_rpm, install_tree


def _lists(root: Path, lists: dict[str, str]) -> RootHost:
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    for name, text in lists.items():
        (info / name).write_text(text)
    (info / "redis-tools.md5sums").write_text("0123  usr/bin/redis-check-rdb\n")  # not a list: ignored
    return RootHost(str(root))


def test_owners_from_a_trees_dpkg_lists(tmp_path: Path) -> None:
    host = _lists(tmp_path, {
        "redis-tools.list": "/.\n/usr\n/usr/bin\n/usr/bin/redis-check-rdb\n/usr/bin/redis-cli\n",
        "bash.list": "/.\n/bin\n/bin/bash\n",                    # listed before /usr was merged
        "libc6:amd64.list": "/.\n/usr/lib/x86_64-linux-gnu/libc.so.6\n",
    })
    owners = dpkg_owners(host, ["/usr/bin/redis-check-rdb", "/usr/bin/bash",
                                "/usr/lib/x86_64-linux-gnu/libc.so.6", "/tmp/.x/redis-server", "/usr/bin/redis"])
    assert owners == FileOwners({"/usr/bin/redis-check-rdb": "redis-tools", "/usr/bin/bash": "bash",
                                 "/usr/lib/x86_64-linux-gnu/libc.so.6": "libc6"}, "dpkg")
    assert owners.owner("/tmp/.x/redis-server") is None and owners.owner(None) is None


def test_no_dpkg_database_says_unknown_not_unpackaged(tmp_path: Path) -> None:
    assert dpkg_owners(RootHost(str(tmp_path)), ["/usr/bin/bash"]) == FileOwners({}, None)


def test_merged_usr_spellings() -> None:
    assert usr_aliases("/usr/sbin/sshd") == ("/usr/sbin/sshd", "/sbin/sshd")
    assert usr_aliases("/bin/bash") == ("/bin/bash", "/usr/bin/bash")
    assert usr_aliases("/usr/share/elasticsearch/jdk/bin/java") == ("/usr/share/elasticsearch/jdk/bin/java",)
    assert usr_aliases("/opt/bin/x") == ("/opt/bin/x",)


def _dpkg_query(path: str) -> str | None:
    """dpkg's own answer (which knows no merged-/usr aliases, so both spellings are asked)."""
    for spelling in (path, path.removeprefix("/usr")):
        r = subprocess.run(["dpkg-query", "-S", spelling], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0].strip()
    return None


def test_live_owners_match_dpkg_query(tmp_path: Path) -> None:
    """On this machine, the owners of running executables agree with ``dpkg-query -S``, including a file
    listed under its pre-merge path (coreutils lists /bin/sleep) and a file no package owns."""
    need_tool("dpkg-query")
    unowned = tmp_path / "sleep"
    unowned.write_bytes(Path("/usr/bin/sleep").read_bytes())
    unowned.chmod(0o755)
    procs = [subprocess.Popen([exe, "30"]) for exe in ("/usr/bin/sleep", str(unowned))]
    try:
        owners = Facts(LiveHost(), make_config()).get(EXE_OWNERS)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    sleep = os.path.realpath("/usr/bin/sleep")
    assert owners.database == "dpkg"
    assert owners.owner(sleep) == _dpkg_query(sleep) is not None
    assert owners.owner(str(unowned)) is None and _dpkg_query(str(unowned)) is None
    assert dpkg_owners(LiveHost(), ["/usr/bin/dpkg"]).owner("/usr/bin/dpkg") == _dpkg_query("/usr/bin/dpkg") == "dpkg"


# -- the dpkg database and verification (integrity family) -------------------------------------------------

def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_status_conffiles_and_states() -> None:
    packages = parse_status("Package: a\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\n"
                            "Version: 1:2.0-1\nConffiles:\n /etc/a.conf 0123456789abcdef0123456789abcdef\n"
                            " /etc/old.conf 0123456789abcdef0123456789abcdef obsolete\nDescription: x\n y\n\n\n"
                            "Package: b\nStatus: deinstall ok config-files\nVersion: 1\n")
    assert [(p.label(), p.version, p.state, p.multi_arch) for p in packages] == [
        ("a:amd64", "1:2.0-1", "installed", "same"), ("b", "1", "config-files", "")]
    assert [c[0] for c in packages[0].conffiles] == ["/etc/a.conf", "/etc/old.conf"]
    assert [p.name for p in DpkgDatabase(packages).installed()] == ["a"]


@pytest.mark.parametrize("text", ["Package: a\nnot a field\n", " continuation first\n", "Version: 1\n"])
def test_broken_status_is_a_host_error_naming_the_line(text: str) -> None:
    with pytest.raises(HostError, match=r"status line \d+"):
        parse_status(text)


def test_path_filters_last_match_wins() -> None:
    db = DpkgDatabase((), {}, tuple(parse_filters("path-exclude=/usr/share/doc/*\n"
                                                  "path-include /usr/share/doc/*/copyright\n# path-exclude=/x*\n")))
    assert db.excluded("/usr/share/doc/bash/README")
    assert not db.excluded("/usr/share/doc/bash/copyright")
    assert not db.excluded("/x/y") and not db.excluded("/usr/bin/bash")


def test_diversions_move_other_packages_files_only() -> None:
    diversions = parse_diversions("/usr/bin/a\n/usr/bin/a.distrib\nwrapper\n/usr/bin/b\n/usr/bin/b.real\n:\n")
    db = DpkgDatabase((), diversions)
    assert db.location("/usr/bin/a", "coreutils") == "/usr/bin/a.distrib"
    assert db.location("/usr/bin/a", "wrapper") == "/usr/bin/a"  # the diverting package keeps the path
    assert db.location("/usr/bin/b", "coreutils") == "/usr/bin/b.real"  # a local diversion
    assert db.location("/usr/bin/c", "coreutils") == "/usr/bin/c"
    with pytest.raises(HostError, match="three-line"):
        parse_diversions("/usr/bin/a\n/usr/bin/a.distrib\n")


def test_merged_usr_is_resolved_inside_the_tree_never_on_this_machine(tmp_path: Path) -> None:
    """The tree's /bin links to usr/bin, so /bin/hgx is read at <tree>/usr/bin/hgx; a tree whose /bin is a
    real directory is read there, whatever this machine's own /bin is."""
    for merged in (True, False):
        root = tmp_path / ("merged" if merged else "split")
        info = root / "var/lib/dpkg/info"
        info.mkdir(parents=True)
        (info.parent / "status").write_text("Package: hgx\nStatus: install ok installed\nArchitecture: all\n")
        (info / "hgx.md5sums").write_text(f"{_md5(b'good')}  bin/hgx\n")
        where = root / ("usr/bin" if merged else "bin")
        where.mkdir(parents=True)
        if merged:
            (root / "bin").symlink_to("/usr/bin")  # absolute: must still point into the tree
        (where / "hgx").write_bytes(b"bad")
        facts = Facts(RootHost(str(root)), make_config())
        [changed] = facts.get(DPKG_VERIFY).changed
        assert (changed.path, changed.listed) == (("/usr/bin/hgx" if merged else "/bin/hgx"), "/bin/hgx")


def test_a_file_replaced_by_a_link_is_followed_inside_the_tree(tmp_path: Path) -> None:
    info = tmp_path / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (info.parent / "status").write_text("Package: hgx\nStatus: install ok installed\n")
    (info / "hgx.md5sums").write_text(f"{_md5(b'good')}  usr/bin/hgx\n")
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp/evil").write_bytes(b"\x7fELF evil")
    (tmp_path / "usr/bin/hgx").symlink_to("/tmp/evil")
    [changed] = Facts(RootHost(str(tmp_path)), make_config()).get(DPKG_VERIFY).changed
    assert changed.path == "/tmp/evil" and changed.listed == "/usr/bin/hgx" and changed.elf


def test_statoverride_entries_and_their_merged_usr_spellings(tmp_path: Path) -> None:
    """What ``dpkg-statoverride --add`` writes: owner, group (names or #ids), octal mode, then the path, which
    may hold spaces; looked up under either spelling of a merged-/usr path."""
    need_tool("dpkg-statoverride")
    need_root("dpkg-statoverride --root")
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").touch()
    for args in (["root", "crontab", "2755", "/usr/bin/crontab"], ["#4321", "#4321", "4750", "/bin/with space"]):
        subprocess.run(["dpkg-statoverride", "--root", str(tmp_path), "--add", *args], check=True, capture_output=True)
    overrides = Facts(RootHost(str(tmp_path)), make_config()).get(STAT_OVERRIDES)
    assert overrides.entries == {"/usr/bin/crontab": StatOverride("/usr/bin/crontab", "root", "crontab", 0o2755),
                                 "/bin/with space": StatOverride("/bin/with space", "#4321", "#4321", 0o4750)}
    assert overrides.get("/tmp/x", "/bin/crontab") == overrides.entries["/usr/bin/crontab"]
    assert overrides.get("/usr/bin/with space") == overrides.entries["/bin/with space"]
    assert overrides.get("/usr/bin/other") is None
    assert Facts(RootHost(str(tmp_path / "var")), make_config()).get(STAT_OVERRIDES).entries == {}


@pytest.mark.parametrize("line", ["root root 4755", "root root rwsr /usr/bin/x", "root  4755 /usr/bin/x",
                                  "root root 4755 usr/bin/x"])
def test_a_broken_statoverride_line_is_a_host_error_naming_it(line: str) -> None:
    with pytest.raises(HostError, match=r"^statoverride line 2: not 'owner group mode /path'$"):
        parse_statoverride(f"root root 0755 /usr/bin/ok\n{line}\n", "statoverride")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_statoverride_parser_garbage_is_a_host_error_or_absolute_paths(text: str) -> None:
    try:
        entries = parse_statoverride(text, "statoverride")
    except HostError as exc:
        assert str(exc).startswith("statoverride line ") and "\n" not in str(exc)
        return
    assert all(path.startswith("/") and e.path == path and 0 <= e.mode <= 0o7777 for path, e in entries.items())


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_status_parser_garbage_is_a_host_error_or_packages(text: str) -> None:
    try:
        packages = parse_status(text)
    except HostError as exc:
        assert "\n" not in str(exc)
        return
    assert all(p.name for p in packages)


@settings(max_examples=300, deadline=None)
@given(st.binary())
def test_md5sums_parser_garbage_is_a_host_error_or_absolute_paths(data: bytes) -> None:
    try:
        entries = list(parse_md5sums(data, "x.md5sums"))
    except HostError as exc:
        assert str(exc).startswith("x.md5sums line ")
        return
    assert all(path.startswith("/") and len(md5) == 32 for path, md5 in entries)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text())
def test_diversions_and_filters_garbage(diversions: str, cfg: str) -> None:
    with contextlib.suppress(HostError):
        assert all(d.path.startswith("/") for d in parse_diversions(diversions).values())
    DpkgDatabase((), {}, tuple(parse_filters(cfg))).excluded("/usr/bin/x")


# -- the database-neutral layer --------------------------------------------------------------------------


def _process(pid: int, exe: str) -> ProcessInfo:
    return ProcessInfo(pid, 1, exe.rpartition("/")[2], exe, "root", 0.0, (exe,))


def test_executable_owners_come_from_rpm_when_the_tree_has_no_dpkg(tmp_path: Path) -> None:
    """An rpm installed by rpm into a tree: EXE_OWNERS names it for a process running its binary (given as
    the live process list would give it), and nothing for a binary in /tmp."""
    need_tool("rpm", "rpmbuild")
    need_root("rpm --root")
    rpm = build_rpm(tmp_path / "build", "hgsrv", "1.0", "1", install="mkdir -p %{buildroot}/usr/sbin\n"
                    "cp /usr/bin/true %{buildroot}/usr/sbin/hgsrv\n", files="/usr/sbin/hgsrv\n")
    root = install_tree(tmp_path / "root", [rpm])
    (root / "sbin").symlink_to("usr/sbin")
    given = {PROCESSES: (_process(10, "/usr/sbin/hgsrv"), _process(11, "/sbin/hgsrv"), _process(12, "/tmp/hgsrv"))}
    owners = Facts(RootHost(str(root)), make_config(), given=given).get(EXE_OWNERS)
    assert owners == FileOwners({"/usr/sbin/hgsrv": "hgsrv", "/sbin/hgsrv": "hgsrv"}, "rpm")


def test_executable_owners_come_from_apk_when_the_tree_has_neither(tmp_path: Path) -> None:
    root = write_apk_tree(tmp_path)
    given = {PROCESSES: (_process(10, "/bin/hgbox"), _process(11, "/usr/local/bin/hgbox"))}
    owners = Facts(RootHost(str(root)), make_config(), given=given).get(EXE_OWNERS)
    assert owners == FileOwners({"/bin/hgbox": "hgbox"}, "apk")


def test_dpkg_wins_over_other_databases_in_the_same_tree(tmp_path: Path) -> None:
    """A Debian tree that also carries an apk database (a container build stage left behind): dpkg is the
    host's package manager, and it alone answers and is verified."""
    root = write_apk_tree(tmp_path)
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (info.parent / "status").write_text("Package: hgbox\nStatus: install ok installed\nArchitecture: all\n")
    (info / "hgbox.list").write_text("/bin/hgbox\n")
    (info / "hgbox.md5sums").write_text(f"{_md5(b'other')}  bin/hgbox\n")
    assert package_owners(RootHost(str(root)), ["/bin/hgbox"]) == FileOwners({"/bin/hgbox": "hgbox"}, "dpkg")
    verification = Facts(RootHost(str(root)), make_config()).get(PACKAGE_VERIFY)
    assert verification.database == "dpkg"
    assert [(c.path, c.database, c.algorithm) for c in verification.changed] == [("/bin/hgbox", "dpkg", "md5")]
    assert PACKAGE_VERIFY is DPKG_VERIFY


def test_no_database_at_all_is_unsupported_not_clean(tmp_path: Path) -> None:
    from hostguard.host.base import Unavailable

    with pytest.raises(Unavailable, match="no package database hostguard reads") as info:
        Facts(RootHost(str(tmp_path)), make_config()).get(PACKAGE_VERIFY)
    assert info.value.reason == "unsupported"
    assert package_owners(RootHost(str(tmp_path)), ["/bin/sh"]) == FileOwners({}, None)


def test_the_verifier_reads_only_a_window_of_packages_ahead() -> None:
    """Memory stays bounded: while the first result is handed out, at most WINDOW packages have been read
    (``Executor.map`` would have read all ten thousand first)."""
    taken = 0

    def items() -> Iterator[int]:
        nonlocal taken
        for i in range(10_000):
            taken += 1
            yield i

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = packages._bounded_map(pool, lambda i: i * 2, items())
        assert next(results) == 0
        assert taken <= packages.WINDOW
        assert list(results) == [i * 2 for i in range(1, 10_000)]


@pytest.mark.parametrize(("fields", "source", "version"), [
    ("Version: 2.38.1-5+deb12u3\n", "hgpkg", "2.38.1-5+deb12u3"),                               # no Source: its own
    ("Source: util-linux\nVersion: 2.38.1-5+deb12u3\n", "util-linux", "2.38.1-5+deb12u3"),      # another name
    ("Source: util-linux (2.38.1-5+deb12u3)\nVersion: 1:2.38.1-5+deb12u3\n", "util-linux", "2.38.1-5+deb12u3"),
    ("Source: zlib (1:1.2.13.dfsg-1)\nVersion: 1:1.2.13.dfsg-1+b1\n", "zlib", "1:1.2.13.dfsg-1"),  # binNMU
    ("Version: 3.1-2+b12\n", "hgpkg", "3.1-2"),                                                 # binNMU, same name
    ("Version: 3.1+b2really3.0-1\n", "hgpkg", "3.1+b2really3.0-1"),                             # +b not at the end
])
def test_status_source_name_and_version(fields: str, source: str, version: str) -> None:
    [pkg] = parse_status(f"Package: hgpkg\nStatus: install ok installed\nArchitecture: amd64\n{fields}"
                         "Maintainer: Test <t@example.test>\n")
    assert (pkg.source_name(), pkg.source_version(), pkg.maintainer) == (source, version, "Test <t@example.test>")
