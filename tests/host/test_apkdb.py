"""Alpine's installed database. Debian 12 has no apk-tools package, so the databases here are written by hand
following the format (apk-tools' documentation of the installed database and of protected paths), with the
checksums computed from the files the test writes, as apk computes them: ``Q1`` + base64 of the SHA-1 of a
file's content, or of a symlink's target text. The builder is shared with tests/checks/test_integrity.py."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.engine.facts import Facts
from hostguard.host.apkdb import APKDB, ApkFile, ProtectedPaths, decode_digest, parse_installed, parse_protected
from hostguard.host.base import HostError, RootHost, Unavailable
from hostguard.host.packages import PACKAGE_VERIFY, FileOwners, package_owners
from tests.conftest import make_config


def q1(data: bytes) -> str:
    return "Q1" + base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode()


def q2(data: bytes) -> str:
    return "Q2" + base64.b64encode(hashlib.sha256(data).digest()).decode()


# package -> (name, version, origin, {path: content, or ("link", target)}); sha256 (Q2) for "hgnew"
PACKAGES: list[tuple[str, str, str, dict[str, bytes | tuple[str, str]]]] = [
    ("hgbox", "1.36.1-r5", "hgbox", {
        "/bin/hgbox": Path("/usr/bin/true").read_bytes(),
        "/bin/hgsh": ("link", "hgbox"),
        "/etc/hgbox.conf": b"a=1\n",
        "/etc/init.d/hgboxd": b"#!/sbin/openrc-run\ncommand=/bin/hgbox\n",
        "/etc/init.d/hgalias": ("link", "hgboxd"),
        "/etc/apk/keys/hg.rsa.pub": b"key\n",
        "/usr/share/hgbox/data.txt": b"data\n",
    }),
    ("hgbox-doc", "1.36.1-r5", "hgbox", {"/usr/share/doc/hgbox/README": b"doc\n"}),
    ("hgnew", "2.0-r0", "hgnew-src", {"/usr/bin/hgnew": b"#!/bin/sh\necho new\n"}),
]


def write_apk_tree(root: Path, packages: list[tuple[str, str, str, dict[str, bytes | tuple[str, str]]]] = PACKAGES,
                   lists: dict[str, str] | None = None) -> Path:
    """The files of ``packages`` under ``root`` and lib/apk/db/installed describing them (one F: per directory,
    files in path order, a: modes, Z: checksums of what was written)."""
    stanzas = []
    for name, version, origin, files in packages:
        lines = [f"C:{q1(name.encode())}", f"P:{name}", f"V:{version}", "A:x86_64", "S:1000", "I:4000",
                 f"T:{name} test package", f"o:{origin}", "m:Test <test@example.test>", "t:1700000000"]
        current = None
        for path, content in sorted(files.items()):
            directory, _, base = path.lstrip("/").rpartition("/")
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if directory != current:
                lines += [f"F:{directory}", "M:0:0:755"]
                current = directory
            lines.append(f"R:{base}")
            if isinstance(content, tuple):
                target.symlink_to(content[1])
                lines += ["a:0:0:777", f"Z:{q1(content[1].encode())}"]
            else:
                target.write_bytes(content)
                executable = content.startswith((b"#!", b"\x7fELF"))
                target.chmod(0o755 if executable else 0o644)
                lines += [f"a:0:0:{'755' if executable else '644'}",
                          f"Z:{q2(content) if name == 'hgnew' else q1(content)}"]
        stanzas.append("\n".join(lines) + "\n")
    db = root / "lib/apk/db"
    db.mkdir(parents=True, exist_ok=True)
    (db / "installed").write_text("\n".join(stanzas) + "\n")
    for list_name, text in (lists or {}).items():
        (root / "etc/apk/protected_paths.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/apk/protected_paths.d" / list_name).write_text(text)
    return root


def test_packages_with_origin_and_files(tmp_path: Path) -> None:
    root = write_apk_tree(tmp_path)
    db = Facts(RootHost(str(root)), make_config()).get(APKDB)
    assert [(p.name, p.version, p.arch, p.origin) for p in db.packages] == [
        ("hgbox", "1.36.1-r5", "x86_64", "hgbox"), ("hgbox-doc", "1.36.1-r5", "x86_64", "hgbox"),
        ("hgnew", "2.0-r0", "x86_64", "hgnew-src")]
    assert all(p.files == () for p in db.packages)  # the fact keeps no file lists
    [hgbox, _, hgnew] = parse_installed((root / "lib/apk/db/installed").read_text())
    by_path = {f.path: f for f in hgbox.files}
    assert by_path["/bin/hgsh"] == ApkFile("/bin/hgsh", "sha1", hashlib.sha1(b"hgbox").hexdigest(), 0o777)
    assert by_path["/etc/hgbox.conf"].mode == 0o644
    assert hgnew.files == (ApkFile("/usr/bin/hgnew", "sha256",
                                   hashlib.sha256(b"#!/bin/sh\necho new\n").hexdigest(), 0o755),)


def test_file_modes_default_xattr_checksums_and_type_bits() -> None:
    """``a:`` is written only for a mode other than apk's default 0:0:644 (so a file without one was installed
    0644); a file with extended attributes (file capabilities) carries their checksum as a fourth field, which
    must not make the whole database unreadable; the mode is permission bits only."""
    text = (f"P:x\nF:usr/bin\nR:plain\nZ:{q1(b'a')}\nR:ping\na:0:0:755:{q1(b'caps')}\nZ:{q1(b'b')}\n"
            f"R:su\na:0:0:104755\nZ:{q1(b'c')}\n")
    [package] = parse_installed(text, "installed")
    by_name = {f.path: f for f in package.files}
    assert (by_name["/usr/bin/plain"].mode, by_name["/usr/bin/plain"].recorded_mode) == (None, 0o644)
    assert by_name["/usr/bin/ping"].recorded_mode == 0o755
    assert by_name["/usr/bin/su"].recorded_mode == 0o4755
    with pytest.raises(HostError, match="^installed line 4: 'Qx' is not a checksum"):
        list(parse_installed("P:x\nF:usr\nR:f\na:0:0:755:Qx\n", "installed"))


def test_a_stanza_without_origin_is_its_own_origin() -> None:
    [p] = parse_installed("P:musl\nV:1.2.4-r2\nA:x86_64\n")
    assert (p.name, p.origin) == ("musl", "musl")


def test_protected_paths_last_rule_wins_and_builtins_apply_first(tmp_path: Path) -> None:
    rules = parse_protected("# comment\n+etc/\n@etc/init.d\n!etc/apk\n-etc/ssl/certs/ca-cert-*.pem\nnonsense\n")
    assert rules == [("config", "etc"), ("symlinks", "etc/init.d"), ("ignore", "etc/apk"),
                     ("check", "etc/ssl/certs/ca-cert-*.pem")]
    paths = ProtectedPaths(tuple(rules))
    assert paths.mode("/etc/hosts") == "config"
    assert paths.mode("/etc/init.d/sshd") == "symlinks"
    assert paths.mode("/etc/apk/keys/x.pub") == "ignore"
    assert paths.mode("/etc/ssl/certs/ca-cert-x.pem") == "check"
    assert paths.mode("/usr/bin/etc") == "check" and paths.mode("/etcetera/x") == "check"
    root = write_apk_tree(tmp_path / "t", lists={"local.list": "-etc/hgbox.conf\n"})
    protected = Facts(RootHost(str(root)), make_config()).get(APKDB).protected
    assert protected.mode("/etc/hgbox.conf") == "check" and protected.mode("/etc/other.conf") == "config"


def test_owners_from_the_apk_database(tmp_path: Path) -> None:
    root = write_apk_tree(tmp_path)
    owners = package_owners(RootHost(str(root)), ["/bin/hgbox", "/usr/bin/hgbox", "/usr/bin/hgnew", "/tmp/hgbox"])
    # /usr/bin/hgbox: the merged-/usr spelling of /bin/hgbox (Alpine merges /usr since 3.20)
    assert owners == FileOwners({"/bin/hgbox": "hgbox", "/usr/bin/hgbox": "hgbox", "/usr/bin/hgnew": "hgnew"}, "apk")


def test_an_intact_tree_verifies_clean(tmp_path: Path) -> None:
    root = write_apk_tree(tmp_path)
    verification = Facts(RootHost(str(root)), make_config()).get(PACKAGE_VERIFY)
    assert (verification.database, verification.front_end) == ("apk", "apk")
    assert verification.changed == () and verification.problems == ()
    # hgbox, hgsh, hgboxd, hgalias, data.txt, README, hgnew: not the +etc conffile nor the !etc/apk key
    assert (verification.checked, verification.missing) == (7, 0)


@pytest.mark.parametrize(("line", "why"), [
    ("P:x\nnot a field", "line 2: not a 'X:value' line"),
    ("P:x\nR:file", "line 2: a file entry before any F:"),
    ("P:x\nF:usr\na:0:0:644", "line 3: a file attribute before any R:"),
    ("P:x\nF:usr\nR:f\nZ:Q1notbase64!", "line 4: 'Q1notbase64!' is not a checksum"),
    ("P:x\nF:usr\nR:f\na:0:0:rwx", "line 4: not 'uid:gid:mode'"),
    ("V:1\n", "line 1: a package stanza without a P:"),
    ("P:x\nF:/abs", "line 2: a directory that is not relative"),
])
def test_a_broken_database_names_the_line(line: str, why: str) -> None:
    with pytest.raises(HostError, match=f"^installed {why}"):
        list(parse_installed(line + "\n", "installed"))


def test_digests_apk_writes() -> None:
    assert decode_digest(q1(b"x"), "w") == ("sha1", hashlib.sha1(b"x").hexdigest())
    assert decode_digest(q2(b"x"), "w") == ("sha256", hashlib.sha256(b"x").hexdigest())
    assert decode_digest("0" * 32, "w") == ("md5", "0" * 32)
    for bad in ("Q1", "Q3AAAA", "Q1" + base64.b64encode(b"short").decode(), "0" * 31, "G" * 40):
        with pytest.raises(HostError, match="^w: "):
            decode_digest(bad, "w")


def test_no_apk_database(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="no apk database"):
        Facts(RootHost(str(tmp_path)), make_config()).get(APKDB)


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_apk_parser_fuzz_gives_packages_or_a_host_error(text: str) -> None:
    try:
        packages = list(parse_installed(text, "installed"))
    except HostError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("installed line ")
        return
    assert all(p.name for p in packages)
    assert all(f.path.startswith("/") and "\0" not in f.path for p in packages for f in p.files)


LINE = st.sampled_from(["P:", "V:", "A:", "o:", "F:", "R:", "a:", "Z:", "M:", "C:", ""])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(LINE, st.sampled_from(["x", "usr/bin", "0:0:755", q1(b"a"), q2(b"b"), "", "/a", "a/b"])),
                max_size=30))
def test_apk_parser_fuzz_with_plausible_lines(lines: list[tuple[str, str]]) -> None:
    """Lines shaped like the real ones, in any order: packages or a HostError naming the line."""
    text = "\n".join(key + value if key else "" for key, value in lines)
    try:
        packages = list(parse_installed(text, "installed"))
    except HostError as exc:
        assert str(exc).startswith("installed line ")
        return
    for p in packages:
        for f in p.files:
            assert f.path.startswith("/") and (f.algorithm, bool(f.digest)) in (("", False), ("sha1", True),
                                                                                 ("sha256", True))
    assert os.sep == "/"
