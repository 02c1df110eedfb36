"""The PAM reading against PAM itself: the hash method we say pam_unix uses is the one chpasswd -R (through
the tree's own PAM stack, Debian's pam_unix) really hashes with; the nullok lines we read are the ones that
let libpam (pam_authenticate, chrooted into the tree) accept an empty password; every stack and
authselect's links read; a tree that is not an OS, or a file that is not text, is never read as defaults."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.engine.facts import Facts
from hostguard.findings import SkipReason
from hostguard.host.base import RootHost, Unavailable
from hostguard.host.pam import (
    PAM_NULLOK,
    Authselect,
    collect_login_defs,
    collect_pam,
    collect_pam_auth,
    effective_policy,
)
from tests.conftest import HOSTS, build_tree, make_config, need_root, need_tool
from tests.fix_validation import in_tree, set_password, usable_root

FIXES = HOSTS / "fixes" / "password_policy"
PREFIXES = {"$1$": "md5", "$5$": "sha256", "$6$": "sha512", "$y$": "yescrypt", "$gy$": "gost-yescrypt",
            "$2b$": "bcrypt"}


def _scheme(hashed: str) -> str:
    """The method a crypt string was made with (13 characters without a $ prefix: DES)."""
    found = [m for p, m in PREFIXES.items() if hashed.startswith(p)]
    if found:
        return found[0]
    assert re.fullmatch(r"[./0-9A-Za-z]{13,}", hashed), hashed
    return "des"


@pytest.mark.parametrize(("options", "encrypt_method"), [
    ("obscure yescrypt md5", "YESCRYPT"),       # hit: a trailing md5 wins over the yescrypt before it
    ("obscure md5 yescrypt", "YESCRYPT"),       # near miss: the same words, yescrypt last
    ("sha512 md5 sha256 rounds=6000", "YESCRYPT"),
    ("obscure sha512foo", "MD5"),               # options match by prefix, and beat login.defs
    ("obscure SHA512", "MD5"),                  # options are case-sensitive: unknown, login.defs decides
    ("obscure", "BCRYPT"),                      # shadow knows BCRYPT, pam_unix does not: DES
    ("obscure", "sha512"),                      # login.defs is read case-insensitively
    ("obscure bigcrypt", "YESCRYPT"),
])
def test_the_method_we_read_is_the_one_pam_unix_hashes_with(tmp_path: Path, options: str, encrypt_method: str) -> None:
    need_root("chpasswd -R and unshare --mount")
    need_tool("chpasswd", "unshare")
    tree = build_tree(tmp_path / "host")
    (tree / "etc/pam.d/common-password").write_text(
        f"password [success=1 default=ignore] pam_unix.so {options}\npassword requisite pam_deny.so\n"
        "password required pam_permit.so\n")
    defs = tree / "etc/login.defs"
    defs.write_text(re.sub(r"ENCRYPT_METHOD \w+", f"ENCRYPT_METHOD {encrypt_method}", defs.read_text()))
    host = RootHost(str(tree))
    ours = effective_policy(collect_pam(host), collect_login_defs(host)).method
    assert ours == _scheme(set_password(tree, "alice", "qX7#vLm2$pRt9w")[0])


def test_every_rhel_stack_is_read_with_its_own_path(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", FIXES / "rhel_password_auth_md5")
    pam = collect_pam(RootHost(str(tree)))
    assert [s.path for s in pam.stacks] == ["/etc/pam.d/system-auth", "/etc/pam.d/password-auth"]
    methods = [effective_policy(pam, collect_login_defs(RootHost(str(tree))), s).method for s in pam.stacks]
    assert methods == ["yescrypt", "md5"]
    assert pam.authselect is None and all(ln.link is None for s in pam.stacks for ln in s.lines)


def test_debian_has_one_stack(clean_tree: Path) -> None:
    assert [s.path for s in collect_pam(RootHost(str(clean_tree))).stacks] == ["/etc/pam.d/common-password"]


def test_authselect_links_and_profile(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", FIXES / "rhel_authselect")
    pam = collect_pam(RootHost(str(tree)))
    unix = pam.stack("/etc/pam.d/password-auth").module("pam_unix.so")
    assert unix is not None and (unix.path, unix.line, unix.link) == (
        "/etc/pam.d/password-auth", 11, "/etc/authselect/password-auth")
    assert pam.managed(unix)
    assert pam.authselect == Authselect("sssd", ("with-faillock", "with-silent-lastlog"), True)


def test_authselect_opted_out_is_plain_files(tmp_path: Path) -> None:
    """After `authselect opt-out` the PAM files are regular files again: authselect.conf alone manages nothing."""
    tree = build_tree(tmp_path / "host", FIXES / "rhel_good")
    (tree / "etc/authselect").mkdir()
    (tree / "etc/authselect/authselect.conf").write_text("sssd\nwith-faillock\n")
    pam = collect_pam(RootHost(str(tree)))
    assert pam.authselect is None and not any(pam.managed(ln) for s in pam.stacks for ln in s.lines)


# A PAM application in a few lines of ctypes: libpam and the modules are this machine's (/usr bound into the
# tree by in_tree), /etc/pam.d and /etc/shadow the tree's (chroot). Answers every prompt with the password,
# turns pam_unix's failure delay off, and prints pam_authenticate's return code.
PAM_CLIENT = r"""
import ctypes, os, sys
tree, service, user, password = sys.argv[1:5]
pam, libc = ctypes.CDLL("libpam.so.0"), ctypes.CDLL("libc.so.6")
libc.calloc.restype, libc.calloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t, ctypes.c_size_t)
libc.strdup.restype, libc.strdup.argtypes = ctypes.c_void_p, (ctypes.c_char_p,)
class Message(ctypes.Structure):
    _fields_ = [("style", ctypes.c_int), ("text", ctypes.c_char_p)]
class Reply(ctypes.Structure):
    _fields_ = [("resp", ctypes.c_void_p), ("retcode", ctypes.c_int)]
CONV = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.POINTER(Message)),
                        ctypes.POINTER(ctypes.POINTER(Reply)), ctypes.c_void_p)
DELAY = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)
class Conv(ctypes.Structure):
    _fields_ = [("conv", CONV), ("appdata", ctypes.c_void_p)]
def answer(count, messages, out, _):
    replies = ctypes.cast(libc.calloc(count, ctypes.sizeof(Reply)), ctypes.POINTER(Reply))
    for i in range(count):
        if messages[i].contents.style in (1, 2):  # PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON
            replies[i].resp = libc.strdup(password.encode())
    out[0] = replies
    return 0
conv, no_delay = CONV(answer), DELAY(lambda *_: None)
os.chroot(tree)
os.chdir("/")
handle = ctypes.c_void_p()
assert pam.pam_start(service.encode(), user.encode(), ctypes.byref(Conv(conv, None)), ctypes.byref(handle)) == 0
pam.pam_set_item(handle, 10, ctypes.cast(no_delay, ctypes.c_void_p))  # PAM_FAIL_DELAY
code = pam.pam_authenticate(handle, 0)
pam.pam_end(handle, code)
print(code)
"""
PAM_SUCCESS = 0


def authenticate(tree: Path, user: str, password: str, service: str = "hostguard-probe") -> int:
    """pam_authenticate's answer for ``user``/``password`` through the tree's PAM service ``service`` (by
    default one that includes common-auth, as sshd and login do on Debian)."""
    need_root("chroot and unshare --mount")
    need_tool("unshare")
    probe = usable_root(tree) / "etc/pam.d/hostguard-probe"
    if not probe.exists():
        probe.write_text("@include common-auth\n")
    done = in_tree(tree, [sys.executable, "-c", PAM_CLIENT, str(tree), service, user, password])
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def empty_password(tree: Path, user: str, changed: str = "20000") -> None:
    """Empty ``user``'s password field in the tree's /etc/shadow (what ``passwd -d`` does), last changed on
    day ``changed`` ("0": must be changed at the next login, as ``chage -d 0`` says) and never expiring."""
    shadow = tree / "etc/shadow"
    lines = [line.split(":") for line in shadow.read_text().splitlines()]
    shadow.write_text("".join(":".join([f[0], "", changed, "0", "99999", *f[5:]] if f[0] == user else f) + "\n"
                              for f in lines))


@pytest.mark.parametrize(("auth_line", "accepts"), [
    ("pam_unix.so nullok", True),                      # Debian 12's common-auth
    ("pam_unix.so try_first_pass", False),             # near miss: no nullok
    ("pam_unix.so nullok_secure", True),               # pam_unix matches by prefix: this is nullok
    ("pam_unix.so try_first_pass # nullok", False),    # near miss: only in a comment
    ("pam_unix.so nullresetok", True),                 # an empty password that must be changed gets in
    ("pam_sss.so nullok", False),                      # near miss: another module's option
])
def test_the_nullok_lines_we_read_are_the_ones_pam_lets_an_empty_password_through(
        tmp_path: Path, auth_line: str, accepts: bool) -> None:
    tree = build_tree(tmp_path / "host")
    (tree / "etc/pam.d/common-auth").write_text(
        f"auth [success=1 default=ignore] {auth_line}\nauth requisite pam_deny.so\nauth required pam_permit.so\n")
    empty_password(tree, "alice", changed="0")
    nullok = collect_pam_auth(RootHost(str(tree))).nullok_lines()
    assert [(ln.path, ln.line) for ln in nullok] == ([("/etc/pam.d/common-auth", 1)] if accepts else [])
    assert (authenticate(tree, "alice", "") == PAM_SUCCESS) is accepts


def test_nullresetok_alone_needs_a_password_due_for_change(tmp_path: Path) -> None:
    """Why nullresetok is reported although this account gets nothing from it: ``chage -d 0`` (or expiry) is
    all it takes, and the line stays the same."""
    tree = build_tree(tmp_path / "host")
    (tree / "etc/pam.d/common-auth").write_text("auth [success=1 default=ignore] pam_unix.so nullresetok\n"
                                                "auth requisite pam_deny.so\nauth required pam_permit.so\n")
    empty_password(tree, "alice", changed="20000")
    assert authenticate(tree, "alice", "") != PAM_SUCCESS
    empty_password(tree, "alice", changed="0")
    assert authenticate(tree, "alice", "") == PAM_SUCCESS


def test_every_service_is_read_once_per_line_with_who_uses_it(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", HOSTS / "hits" / "password_policy.pam_nullok")
    pam_d = tree / "etc/pam.d"
    (pam_d / "login").write_text("auth optional pam_faildelay.so\n@include common-auth\n")
    (pam_d / "sshd.dpkg-old").write_text("auth required pam_unix.so nullok\n")  # a backup no service opens
    (pam_d / "su").write_text("-auth sufficient pam_unix.so nullok_secure # su's own line\n")
    auth = collect_pam_auth(RootHost(str(tree)))
    assert [(ln.path, ln.line, ln.args) for ln in auth.nullok_lines()] == [
        ("/etc/pam.d/common-auth", 2, ("nullok",)), ("/etc/pam.d/su", 1, ("nullok_secure",)),
        ("/etc/pam.d/vsftpd", 3, ("nullok_secure",))]
    assert auth.used_by["/etc/pam.d/common-auth"] == ("login", "sshd")
    assert auth.authselect is None


def test_authselect_auth_lines_keep_their_links(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", FIXES / "rhel_authselect")
    auth = collect_pam_auth(RootHost(str(tree)))
    assert [(ln.path, ln.line, ln.link) for ln in auth.nullok_lines()] == [
        ("/etc/pam.d/system-auth", 5, "/etc/authselect/system-auth"),
        ("/etc/pam.d/password-auth", 5, "/etc/authselect/password-auth")]
    assert all(auth.managed(ln) for ln in auth.nullok_lines())
    assert auth.used_by["/etc/pam.d/password-auth"] == ("sshd",)


def _facts(root: Path) -> Facts:
    return Facts(RootHost(str(root)), make_config())


@pytest.mark.parametrize("shape", ["empty", "checkout"])
def test_a_tree_that_is_no_os_is_unsupported_never_defaults(tmp_path: Path, shape: str) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    if shape == "checkout":  # a source checkout: files, even an etc/ directory, but no OS files in it
        (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
        (root / "etc").mkdir()
        (root / "etc/hostguard.toml").write_text("")
    host = RootHost(str(root))
    for collect in (collect_pam, collect_login_defs, collect_pam_auth):
        with pytest.raises(Unavailable) as caught:
            collect(host)
        assert caught.value.reason == SkipReason.UNSUPPORTED
        assert ("not an OS tree: none of /etc/passwd, /etc/os-release, /usr/lib/os-release, /etc/login.defs, /etc/pam.d "
                "exists") in caught.value.detail
    assert _facts(root).get(PAM_NULLOK) == ()  # what other checks see: no nullok line, and they still run


def test_one_os_file_is_enough_and_a_missing_login_defs_is_not_invented(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host")
    (tree / "etc/login.defs").unlink()
    defs = collect_login_defs(RootHost(str(tree)))
    assert (defs.present, defs.settings) == (False, {})
    (tree / "etc/pam.d/common-password").unlink()
    (tree / "etc/pam.d/common-auth").unlink()
    (tree / "etc/pam.d/sshd").unlink()
    (tree / "etc/pam.d").rmdir()
    pam = collect_pam(RootHost(str(tree)))  # /etc/passwd alone: an OS tree without PAM
    policy = effective_policy(pam, collect_login_defs(RootHost(str(tree))))
    assert pam.stacks == () and not pam.pam_d
    assert policy.quality_unknown is not None and "no /etc/pam.d in this tree" in policy.quality_unknown
    assert policy.method_unknown is not None and "there is no /etc/login.defs" in policy.method_unknown
    with pytest.raises(Unavailable, match="no /etc/pam.d in this tree"):
        collect_pam_auth(RootHost(str(tree)))


def test_without_login_defs_pam_unix_hashes_with_des_and_we_say_so(tmp_path: Path) -> None:
    """No hash option and no login.defs: pam_unix's own default, DES (chpasswd -R through the tree's stack)."""
    need_root("chpasswd -R and unshare --mount")
    need_tool("chpasswd", "unshare")
    tree = build_tree(tmp_path / "host")
    pam_file = tree / "etc/pam.d/common-password"
    pam_file.write_text(pam_file.read_text().replace(" yescrypt\n", "\n"))
    (tree / "etc/login.defs").unlink()
    host = RootHost(str(tree))
    policy = effective_policy(collect_pam(host), collect_login_defs(host))
    assert (policy.method, policy.method_at.path, policy.method_unknown) == ("des", None, None)
    assert _scheme(set_password(tree, "alice", "qX7#vLm2$pRt9w")[0]) == "des"


@pytest.mark.parametrize("path", ["/etc/login.defs", "/etc/pam.d/common-password", "/etc/security/pwquality.conf"])
def test_a_file_that_is_not_text_is_an_error_naming_it(tmp_path: Path, path: str) -> None:
    tree = build_tree(tmp_path / "host")
    (tree / path.lstrip("/")).write_bytes(b"ENCRYPT_METHOD MD5\n\x7fELF\x02\x01\x01\x00\x00\x00")
    host = RootHost(str(tree))
    with pytest.raises(Unavailable) as caught:
        effective_policy(collect_pam(host), collect_login_defs(host))
    assert caught.value.reason == SkipReason.ERROR
    assert caught.value.detail == f"{path} is not a text file (byte 0x02 at offset 23): no setting is read from it"


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_are_an_error_never_a_crash(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    root = tmp_path_factory.mktemp("t")
    for name in ("etc/login.defs", "etc/pam.d/common-password", "etc/pam.d/common-auth"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    host = RootHost(str(root))
    try:
        effective_policy(collect_pam(host), collect_login_defs(host))
        collect_pam_auth(host).nullok_lines()
    except Unavailable as exc:
        assert exc.reason == SkipReason.ERROR and "is not a text file" in exc.detail
