"""What the web user can write: hostguard's answer against the kernel's own, on real files.

Files get numeric owners (4242 stands for the web user, no passwd entry needed on this machine), modes and
ACLs set by the real ``setfacl``; the kernel's answer comes from a child process that takes the web user's
uid and groups and asks ``access(W_OK)`` (and ``setpriv ... test -w`` for a cross-check). No account is
created on this machine; everything lives in a temp directory the test makes and removes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.host.accounts import collect_accounts
from hostguard.host.base import Host, HostError, RootHost
from hostguard.host.web import writable
from hostguard.host.web.writable import (
    ACL_GROUP,
    ACL_GROUP_OBJ,
    ACL_MASK,
    ACL_OTHER,
    ACL_USER,
    ACL_USER_OBJ,
    Acl,
    AclEntry,
    Identity,
    Reason,
    allow_from_globs,
    can_write,
    decode_acl,
    default_allow,
    encode_acl,
    glob_regex,
    identity_for,
    read_acl,
    writable_under,
)
from tests.conftest import need_root, need_tool

WEB = 4242         # the web user's uid and primary group
SUPP = 4343        # a supplementary group of the web user
STRANGER = 5000    # some other account
OTHER_GID = 6000   # a group the web user is not in
WEB_ID = Identity(WEB, frozenset({WEB, SUPP}), "web")
IDENTITIES = (WEB_ID, Identity(WEB, frozenset({WEB})), Identity(STRANGER, frozenset({SUPP})),
              Identity(0, frozenset({0})))


@pytest.fixture
def base() -> Iterator[Path]:
    """A temp directory other uids can traverse (pytest's own tmp_path sits under a 0700 directory)."""
    need_root("chown to other uids and switching to them")
    need_tool("setfacl", "chattr")
    path = Path(tempfile.mkdtemp(prefix="hg-writable-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-R", "-i", "-a", str(path)], capture_output=True, check=False)
        shutil.rmtree(path)


# -- helpers --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One file or directory to create: owner, group, and an ACL in getfacl's text (mode follows)."""

    name: str
    uid: int
    gid: int
    acl: tuple[str, ...]        # "user::rw-", "user:4242:rw-", "mask::r--", ...
    is_dir: bool = False


def perm_text(bits: int) -> str:
    return "".join(c if bits & b else "-" for c, b in (("r", 4), ("w", 2), ("x", 1)))


def mode_acl(mode: int) -> tuple[str, ...]:
    """The minimal ACL of a mode (no xattr is stored for it)."""
    return (f"user::{perm_text(mode >> 6)}", f"group::{perm_text(mode >> 3)}", f"other::{perm_text(mode)}")


def make(base: Path, specs: list[Spec]) -> None:
    """Create the entries and give them owners, modes and ACLs with one ``setfacl --restore``."""
    dump = []
    for spec in specs:
        path = base / spec.name
        path.parent.mkdir(parents=True, exist_ok=True)
        if spec.is_dir:
            path.mkdir()
        else:
            path.write_text("<?php echo 1;\n")
        dump.append(f"# file: {spec.name}\n# owner: {spec.uid}\n# group: {spec.gid}\n" + "\n".join(spec.acl) + "\n")
    subprocess.run(["setfacl", "--restore=-"], input="\n".join(dump) + "\n", text=True, cwd=base, check=True,
                   capture_output=True)


ORACLE = textwrap.dedent("""
    import json, os, sys
    uid, gids, paths = json.loads(sys.stdin.read())
    os.setgroups(gids)
    os.setgid(gids[0])
    os.setuid(uid)
    print(json.dumps([os.access(p, os.W_OK) for p in paths]))
""")


def kernel_says(identity: Identity, paths: list[Path]) -> list[bool]:
    """The kernel's answer to "may this identity write PATH", asked by a child running as it."""
    gids = sorted(identity.gids)
    out = subprocess.run([sys.executable, "-c", ORACLE], input=json.dumps([identity.uid, gids, [str(p) for p in paths]]),
                         text=True, capture_output=True, check=True)
    return [bool(x) for x in json.loads(out.stdout)]


def ours(identity: Identity, path: Path) -> tuple[bool, bool, Reason | None, str]:
    st = os.lstat(path)
    acl = read_acl(str(path), str(path))
    verdict = can_write(identity, st, acl)
    return verdict.kernel, verdict.writable, verdict.reason, verdict.why


def compare(base: Path, specs: list[Spec]) -> None:
    """For every identity and entry: hostguard's ``kernel`` answer is the kernel's, and ``writable`` is it
    or ownership."""
    paths = [base / s.name for s in specs]
    for identity in IDENTITIES:
        truth = kernel_says(identity, paths)
        for spec, path, real in zip(specs, paths, truth, strict=True):
            kernel, writable, reason, why = ours(identity, path)
            assert kernel == real, (identity, spec, why)
            assert writable == (real or spec.uid == identity.uid or identity.uid == 0), (identity, spec, why)
            if writable:
                assert reason is not None
        # the walker (which reads ACLs only where they can matter) finds exactly the same entries
        report = writable_under(Host(str(base)), "/", identity, max_samples=10**6)
        names = {"/" + s.name for s in specs}
        expected = {"/" + s.name for s, real in zip(specs, truth, strict=True)
                    if real or s.uid == identity.uid or identity.uid == 0}
        found = set(report.sample_paths())
        assert found & names == expected
        assert identity.uid == 0 or found <= names


# -- can_write against the kernel -------------------------------------------------------------------------

MODES = (0o000, 0o200, 0o020, 0o002, 0o022, 0o220, 0o202, 0o222, 0o640, 0o664, 0o646, 0o606, 0o060, 0o044,
         0o464, 0o777, 0o757, 0o775, 0o707, 0o070, 0o555)
OWNERS = ((WEB, WEB), (WEB, OTHER_GID), (0, WEB), (0, SUPP), (STRANGER, OTHER_GID), (STRANGER, SUPP))


def test_modes_match_the_kernel(base: Path) -> None:
    specs = [Spec(f"{'d' if d else 'f'}{m:03o}-{u}-{g}", u, g, mode_acl(m), d)
             for m in MODES for u, g in OWNERS for d in (False, True)]
    make(base, specs)
    compare(base, specs)


ACL_CASES = [
    # named user entry, masked
    ("user:4242:rw-", "mask::r--", "other::r--"),
    ("user:4242:rw-", "mask::rw-", "other::r--"),
    ("user:4242:r--", "mask::rw-", "other::rw-"),     # a named entry without w refuses, whatever others get
    ("user:4242:rw-", "mask::---", "other::rw-"),     # mask --- : group bits 0, the kernel skips the ACL
    ("user:4242:rw-", "mask::---", "other::r--"),
    ("user:5000:rw-", "mask::rw-", "other::r--"),     # someone else's entry
    # named groups
    ("group:4343:rw-", "mask::rw-", "other::r--"),
    ("group:4343:rw-", "mask::r--", "other::r--"),
    ("group:4343:r--", "mask::rw-", "other::rw-"),    # in a matching group that refuses: others do not count
    ("group:6000:rw-", "mask::rw-", "other::rw-"),
    ("group:4343:r--", "group:4242:rw-", "mask::rw-", "other::r--"),  # any matching group that grants
]


def test_acls_match_the_kernel(base: Path) -> None:
    specs = []
    for n, extra in enumerate(ACL_CASES):
        for owner_gid in (OTHER_GID, SUPP):
            for group_perm in ("r--", "rw-"):
                named = tuple(e for e in extra if not e.startswith(("mask", "other")))
                rest = tuple(e for e in extra if e.startswith(("mask", "other")))
                acl = ("user::rw-", *named[:1], f"group::{group_perm}", *named[1:], *rest)
                acl = tuple(sorted(acl, key=_acl_order))
                for d in (False, True):
                    specs.append(Spec(f"acl{n}-{owner_gid}-{group_perm[1]}-{int(d)}", STRANGER, owner_gid, acl, d))
    make(base, specs)
    # setfacl stored what we asked for: a named entry is an extended ACL, read back by our decoder
    assert "user:4242:rw-" in str(read_acl(str(base / "acl1-6000---0"), "x"))
    compare(base, specs)


def _acl_order(entry: str) -> tuple[int, str]:
    tag, who, _ = entry.split(":")
    order = {"user": 0 if not who else 1, "group": 2 if not who else 3, "mask": 4, "other": 5}[tag]
    return order, who.zfill(10)


PERMS = st.sampled_from(["---", "r--", "-w-", "rw-", "r-x", "rwx", "--x", "-wx"])


@st.composite
def acl_specs(draw: st.DrawFn) -> tuple[int, int, tuple[str, ...], bool]:
    uid = draw(st.sampled_from([WEB, STRANGER, 0]))
    gid = draw(st.sampled_from([WEB, SUPP, OTHER_GID]))
    users = draw(st.dictionaries(st.sampled_from([WEB, STRANGER]), PERMS, max_size=2))
    groups = draw(st.dictionaries(st.sampled_from([WEB, SUPP, OTHER_GID]), PERMS, max_size=3))
    acl = [f"user::{draw(PERMS)}", *(f"user:{u}:{p}" for u, p in sorted(users.items())),
           f"group::{draw(PERMS)}", *(f"group:{g}:{p}" for g, p in sorted(groups.items()))]
    if users or groups:
        acl.append(f"mask::{draw(PERMS)}")
    acl.append(f"other::{draw(PERMS)}")
    return uid, gid, tuple(acl), draw(st.booleans())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(acl_specs(), min_size=1, max_size=40))
def test_generated_acls_match_the_kernel(base: Path, cases: list[tuple[int, int, tuple[str, ...], bool]]) -> None:
    run = Path(tempfile.mkdtemp(dir=base))
    run.chmod(0o755)
    specs = [Spec(f"e{i}", uid, gid, acl, d) for i, (uid, gid, acl, d) in enumerate(cases)]
    make(run, specs)
    compare(run, specs)


def test_setpriv_agrees(base: Path) -> None:
    """The same answer from util-linux's setpriv and test(1), for a writable and a refused entry."""
    need_tool("setpriv")
    specs = [Spec("masked", STRANGER, OTHER_GID, ("user::rw-", "user:4242:rw-", "group::r--", "mask::r--",
                                                 "other::r--")),
             Spec("granted", STRANGER, OTHER_GID, ("user::rw-", "user:4242:rw-", "group::r--", "mask::rw-",
                                                  "other::r--"))]
    make(base, specs)
    for spec in specs:
        path = base / spec.name
        rc = subprocess.run(["setpriv", f"--reuid={WEB}", f"--regid={WEB}", f"--groups={WEB},{SUPP}", "--",
                             "test", "-w", str(path)], check=False).returncode
        assert (rc == 0) == ours(WEB_ID, path)[0]
    assert ours(WEB_ID, base / "masked")[:3] == (False, False, None)
    assert ours(WEB_ID, base / "granted")[:3] == (True, True, Reason.ACL)


def test_immutable_refuses_even_root_and_append_only_still_appends(base: Path) -> None:
    make(base, [Spec("frozen.php", WEB, WEB, mode_acl(0o664)), Spec("log.php", STRANGER, SUPP, mode_acl(0o664))])
    subprocess.run(["chattr", "+i", str(base / "frozen.php")], check=True)
    subprocess.run(["chattr", "+a", str(base / "log.php")], check=True)
    report = writable_under(Host(str(base)), "/", WEB_ID)
    assert report.immutable == 1
    assert report.sample_paths() == ["/log.php"]
    assert "append-only" in report.samples[0].why
    # the kernel agrees: appending works, rewriting does not, and the frozen file refuses even its owner
    oracle = textwrap.dedent(f"""
        import os
        os.setgroups([{WEB}, {SUPP}]); os.setgid({WEB}); os.setuid({WEB})
        os.close(os.open({str(base / 'log.php')!r}, os.O_WRONLY | os.O_APPEND))
        for flags in (os.O_WRONLY, os.O_WRONLY | os.O_APPEND):
            try:
                os.close(os.open({str(base / 'frozen.php')!r}, flags))
                raise SystemExit("frozen.php opened")
            except PermissionError:
                pass
    """)
    subprocess.run([sys.executable, "-c", oracle], check=True)
    root = writable_under(Host(str(base)), "/", Identity(0, frozenset({0})))
    assert root.sample_paths() == ["/log.php"] and root.immutable == 1


# -- the walker: hit and near miss -------------------------------------------------------------------------


def site(base: Path, extra: Sequence[Spec] = ()) -> RootHost:
    """A host tree with /var/www/site: root-owned 0755/0644 WordPress with its uploads owned by the web
    user (writable, as WordPress needs)."""
    d, f = mode_acl(0o755), mode_acl(0o644)
    specs = [Spec("var", 0, 0, d, True), Spec("var/www", 0, 0, d, True), Spec("var/www/site", 0, 0, d, True),
             Spec("var/www/site/index.php", 0, 0, f), Spec("var/www/site/wp-includes", 0, 0, d, True),
             Spec("var/www/site/wp-includes/version.php", 0, 0, f),
             Spec("var/www/site/wp-content", 0, 0, d, True),
             Spec("var/www/site/wp-content/themes", 0, 0, d, True),
             Spec("var/www/site/wp-content/themes/style.css", 0, 0, f),
             Spec("var/www/site/wp-content/uploads", WEB, WEB, d, True),
             Spec("var/www/site/wp-content/uploads/2026", WEB, WEB, d, True),
             Spec("var/www/site/wp-content/uploads/2026/cat.jpg", WEB, WEB, f),
             *extra]
    make(base, specs)
    return RootHost(str(base))


def test_near_miss_root_owned_site_with_writable_uploads(base: Path) -> None:
    report = writable_under(site(base), "/var/www/site", WEB_ID, default_allow())
    assert report.complete
    assert report.samples == () and report.files == 0 and report.dirs == 0
    assert report.root_dir is None and report.parents == ()
    assert (report.allowed_dirs, report.allowed_files) == (2, 1)
    assert report.allowed_by == {"WordPress": 3}
    assert sorted((d.rel, d.allowed) for d in report.drop_dirs) == [("wp-content/uploads", "WordPress"),
                                                                    ("wp-content/uploads/2026", "WordPress")]
    assert report.entries == 9


def test_hit_exact_reasons(base: Path) -> None:
    s = "var/www/site/"
    host = site(base, [
        Spec(s + "owned.php", WEB, 0, mode_acl(0o444)),                        # owner: chmod does not help
        Spec(s + "team.php", 0, SUPP, mode_acl(0o664)),                        # supplementary group
        Spec(s + "world.php", 0, 0, mode_acl(0o646)),                          # others
        Spec(s + "masked.php", 0, 0, ("user::rw-", "user:4242:rw-", "group::r--", "mask::r--", "other::r--")),
        Spec(s + "acl.php", 0, 0, ("user::rw-", "user:4242:rw-", "group::r--", "mask::rw-", "other::r--")),
        Spec(s + "refused.php", 0, SUPP, ("user::rw-", "group::r--", "group:4343:r--", "mask::rw-", "other::rw-")),
        Spec(s + "cache", 0, OTHER_GID, ("user::rwx", "group::r-x", "group:4343:rwx", "mask::rwx", "other::r-x"),
             True),
    ])
    report = writable_under(host, "/var/www/site", WEB_ID, default_allow())
    assert report.complete
    by_reason = {r: sorted(report.sample_paths(r)) for r in Reason}
    assert by_reason == {
        Reason.ROOT: [], Reason.OWNER: ["/var/www/site/owned.php"], Reason.GROUP: ["/var/www/site/team.php"],
        Reason.OTHER: ["/var/www/site/world.php"],
        Reason.ACL: ["/var/www/site/acl.php", "/var/www/site/cache"]}
    assert (report.files, report.dirs) == (4, 1)
    assert report.by_reason == {Reason.OWNER: 1, Reason.GROUP: 1, Reason.OTHER: 1, Reason.ACL: 2}
    assert [d.rel for d in report.drop_dirs if d.allowed is None] == ["cache"]   # a Joomla-like cache not allowed here
    why = {x.path: x.why for x in report.samples}
    assert "chmod" in why["/var/www/site/owned.php"]
    assert "mask rw-" in why["/var/www/site/acl.php"]


def test_writable_root_and_parent(base: Path) -> None:
    host = site(base)
    os.chown(base / "var/www", WEB, WEB)
    report = writable_under(host, "/var/www/site", WEB_ID, default_allow())
    assert [(p.path, p.reason) for p in report.parents] == [("/var/www", Reason.OWNER)]
    assert report.root_dir is None
    os.chown(base / "var/www/site", 0, SUPP)
    (base / "var/www/site").chmod(0o775)
    report = writable_under(host, "/var/www/site", WEB_ID, default_allow())
    assert report.root_dir is not None and report.root_dir.reason is Reason.GROUP
    assert report.drop_dirs[0].rel == ""


def test_sticky_parent_does_not_let_the_root_be_replaced(base: Path) -> None:
    host = site(base)
    (base / "var/www").chmod(0o1777)
    report = writable_under(host, "/var/www/site", WEB_ID)
    assert report.parents == ()
    assert any("sticky" in n and "/var/www" in n for n in report.notes)
    os.chown(base / "var/www/site", WEB, WEB)   # its own directory: it may rename it away
    report = writable_under(host, "/var/www/site", WEB_ID)
    assert [p.path for p in report.parents] == ["/var/www"]


def test_root_identity_writes_everything(base: Path) -> None:
    report = writable_under(site(base), "/var/www/site", Identity(0, frozenset({0}), "root"), default_allow())
    assert report.root_dir is not None and report.root_dir.reason is Reason.ROOT
    assert report.files + report.dirs == 6 and set(report.by_reason) == {Reason.ROOT}
    assert [p.path for p in report.parents] == ["/var/www", "/var", "/"]


def test_symlinks_not_followed(base: Path) -> None:
    host = site(base, [Spec("srv", WEB, WEB, mode_acl(0o777), True), Spec("srv/open.php", WEB, WEB, mode_acl(0o666))])
    os.symlink("/srv", base / "var/www/site/linked")
    os.symlink("/srv/open.php", base / "var/www/site/link.php")
    report = writable_under(host, "/var/www/site", WEB_ID, default_allow())
    assert report.samples == ()
    assert "/srv/open.php" not in str(report)


def test_default_acl_is_evidence(base: Path) -> None:
    host = site(base)
    subprocess.run(["setfacl", "-d", "-m", f"u:{WEB}:rwx", str(base / "var/www/site/wp-content/themes")], check=True)
    # near misses: a default ACL for someone else, and one for the web user masked read-only
    subprocess.run(["setfacl", "-d", "-m", f"u:{STRANGER}:rwx", str(base / "var/www/site/wp-includes")], check=True)
    subprocess.run(["setfacl", "-d", "-m", f"u:{WEB}:rwx,m::r-x", str(base / "var/www/site/wp-content")], check=True)
    report = writable_under(host, "/var/www/site", WEB_ID, default_allow())
    assert [(s.path, s.reason) for s in report.default_acls] == [("/var/www/site/wp-content/themes", Reason.ACL)]
    assert report.default_acl_dirs == 1
    assert report.samples == ()   # the directory itself is not writable: only files created later will be


def test_allow_globs_from_config(base: Path) -> None:
    host = site(base, [Spec("var/www/site/files", 0, SUPP, mode_acl(0o775), True),
                       Spec("var/www/site/files/a.txt", 0, SUPP, mode_acl(0o664)),
                       Spec("var/www/site/filesx", 0, SUPP, mode_acl(0o775), True)])
    report = writable_under(host, "/var/www/site", WEB_ID, allow_from_globs(["files"]))
    # only the named directory, not a name it prefixes; without the WordPress rules, uploads are findings
    assert report.sample_paths(Reason.GROUP) == ["/var/www/site/filesx"]
    assert report.allowed_by == {"files": 2}
    assert sorted(report.sample_paths(Reason.OWNER)) == [
        "/var/www/site/wp-content/uploads", "/var/www/site/wp-content/uploads/2026",
        "/var/www/site/wp-content/uploads/2026/cat.jpg"]
    report = writable_under(host, "/var/www/site", WEB_ID, allow_from_globs(["/var/www/*/files", "**/uploads"]))
    assert report.sample_paths() == ["/var/www/site/filesx"]


def test_markers_must_be_there(base: Path) -> None:
    """Without wp-includes/version.php the tree is not WordPress: its uploads are not allowed."""
    host = site(base)
    (base / "var/www/site/wp-includes/version.php").unlink()
    report = writable_under(host, "/var/www/site", WEB_ID, default_allow())
    assert sorted(report.sample_paths(Reason.OWNER)) == [
        "/var/www/site/wp-content/uploads", "/var/www/site/wp-content/uploads/2026",
        "/var/www/site/wp-content/uploads/2026/cat.jpg"]


def test_deadline_gives_a_partial_report(base: Path) -> None:
    report = writable_under(site(base), "/var/www/site", WEB_ID, default_allow(), deadline=time.monotonic() - 1)
    assert not report.complete and report.stopped_in == "/var/www/site" and report.entries == 0


def test_deadline_inside_a_huge_directory(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock is checked every 4096 entries of a directory, not only between directories (the clock is
    faked: it passes the deadline right after the walk starts)."""
    host = site(base)
    big = base / "var/www/site/big"
    big.mkdir()
    for i in range(5000):
        (big / f"f{i}").touch()
    ticks = iter([0.0])
    monkeypatch.setattr(writable, "monotonic", lambda: next(ticks, 100.0))
    report = writable_under(host, "/var/www/site/big", WEB_ID, deadline=50.0)
    assert not report.complete and report.stopped_in == "/var/www/site/big"
    assert report.entries == 4095


def test_bad_roots_are_one_line_errors(base: Path) -> None:
    host = site(base)
    with pytest.raises(HostError, match=r"^/var/www/nope: no such file$"):
        writable_under(host, "/var/www/nope", WEB_ID)
    with pytest.raises(HostError, match=r"^/var/www/site/index.php: not a directory$"):
        writable_under(host, "/var/www/site/index.php", WEB_ID)


def test_unreadable_directory_makes_it_incomplete(base: Path) -> None:
    """A directory the scanner cannot list is named, and the report is not complete (scanning as nobody:
    the effective uid is switched for the walk and back)."""
    host = site(base, [Spec("var/www/site/private", 0, 0, mode_acl(0o700), True)])
    os.setegid(65534)
    os.seteuid(65534)
    try:
        report = writable_under(host, "/var/www/site", WEB_ID, default_allow())
    finally:
        os.seteuid(0)
        os.setegid(0)
    assert not report.complete
    assert report.unreadable == ("/var/www/site/private: Permission denied",)


def test_bind_mounts_are_crossed_and_read_only_mounts_refuse(base: Path) -> None:
    """In a private mount namespace: a bind-mounted uploads directory is walked (and listed), and a
    read-only bind mount of the root makes nothing writable."""
    need_tool("unshare", "mount")
    site(base, [Spec("data", 0, 0, mode_acl(0o755), True), Spec("data/up", 0, SUPP, mode_acl(0o775), True),
                Spec("data/up/new.php", 0, SUPP, mode_acl(0o664)),
                Spec("var/www/site/media", 0, 0, mode_acl(0o755), True),
                Spec("var/www/site/team.php", 0, SUPP, mode_acl(0o664))])
    repo = Path(__file__).parents[3]
    script = textwrap.dedent(f"""
        import json, subprocess
        from hostguard.host.base import RootHost
        from hostguard.host.web.writable import Identity, default_allow, writable_under
        b = {str(base)!r}
        subprocess.run(["mount", "--make-rprivate", "/"], check=True)
        subprocess.run(["mount", "--bind", b + "/data/up", b + "/var/www/site/media"], check=True)
        ident = Identity({WEB}, frozenset({{{WEB}, {SUPP}}}))
        r = writable_under(RootHost(b), "/var/www/site", ident, default_allow())
        subprocess.run(["mount", "--bind", "-o", "ro", b + "/var/www/site", b + "/var/www/site"], check=True)
        ro = writable_under(RootHost(b), "/var/www/site", ident, default_allow())
        print(json.dumps([sorted(r.sample_paths()), list(ro.read_only), ro.sample_paths(), ro.allowed_files]))
    """)
    out = subprocess.run(["unshare", "-m", sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(repo)})
    samples, read_only, ro_samples, ro_allowed = json.loads(out.stdout)
    assert samples == ["/var/www/site/media", "/var/www/site/media/new.php", "/var/www/site/team.php"]
    assert read_only == ["/var/www/site"] and ro_samples == [] and ro_allowed == 0


# -- identities from the host's own accounts ---------------------------------------------------------------


def test_identity_from_the_tree_accounts(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n"
                                         "deploy:x:1001:1001::/home/deploy:/bin/bash\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nwww-data:x:33:\ndeploy:x:1001:www-data\nadm:x:4:deploy\n"
                                        "web:x:4000:\n")
    accounts = collect_accounts(RootHost(str(tmp_path)), None)
    assert identity_for(accounts, "www-data") == Identity(33, frozenset({33, 1001}), "www-data")
    assert identity_for(accounts, "www-data", "web") == Identity(33, frozenset({4000, 1001}), "www-data")
    assert identity_for(accounts, "33") == Identity(33, frozenset({33, 1001}), "www-data")
    assert identity_for(accounts, "4242", "4242") == Identity(4242, frozenset({4242}), "4242")
    with pytest.raises(HostError, match=r"^web user 'nginx': not in the host's /etc/passwd$"):
        identity_for(accounts, "nginx")
    with pytest.raises(HostError, match=r"^web group 'nobody': not in the host's /etc/group$"):
        identity_for(accounts, "www-data", "nobody")


# -- the ACL decoder and the glob translation ---------------------------------------------------------------

ENTRIES = st.builds(AclEntry, st.sampled_from([ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER]),
                    st.integers(0, 7)) | st.builds(AclEntry, st.sampled_from([ACL_USER, ACL_GROUP]), st.integers(0, 7),
                                                    st.integers(0, 0xFFFFFFFE))


@given(st.lists(ENTRIES, max_size=12))
def test_acl_round_trip(entries: list[AclEntry]) -> None:
    acl = Acl(tuple(entries))
    assert decode_acl(encode_acl(acl), "f") == acl


@given(st.binary(max_size=80))
def test_acl_decoder_never_crashes(raw: bytes) -> None:
    try:
        decode_acl(raw, "/var/www/x")
    except HostError as exc:
        assert str(exc).startswith("/var/www/x: POSIX ACL") and "\n" not in str(exc)


def test_acl_decoder_errors() -> None:
    with pytest.raises(HostError, match="version 1, expected 2"):
        decode_acl(b"\x01\x00\x00\x00", "f")
    with pytest.raises(HostError, match="unknown tag 0x40"):
        decode_acl(b"\x02\x00\x00\x00" + b"\x40\x00\x06\x00\xff\xff\xff\xff", "f")
    with pytest.raises(HostError, match="not a header and whole entries"):
        decode_acl(b"\x02\x00\x00\x00\x01", "f")


@pytest.mark.parametrize(("pattern", "path", "hit"), [
    ("/s/**/uploads", "/s/uploads", True), ("/s/**/uploads", "/s/a/b/uploads", True),
    ("/s/**/uploads", "/s/a/uploads2", False), ("/s/sites/*/files", "/s/sites/default/files", True),
    ("/s/sites/*/files", "/s/sites/a/b/files", False), ("/s/c?che", "/s/cache", True),
    ("/s/[!x]tmp", "/s/atmp", True), ("/s/[!x]tmp", "/s/xtmp", False), ("/s/a.b", "/s/aXb", False),
])
def test_glob_regex(pattern: str, path: str, hit: bool) -> None:
    import re

    assert bool(re.fullmatch(glob_regex(pattern), path)) is hit


def test_shipped_allow_list_is_well_formed() -> None:
    rules = default_allow()
    assert {r.app for r in rules} >= {"WordPress", "Drupal", "Joomla", "Laravel", "Magento 2", "Nextcloud"}
    for rule in rules:
        assert rule.markers and rule.paths and len(rule.why) > 20, rule
        for p in rule.paths:
            assert not p.startswith("/") and ".." not in p, rule
