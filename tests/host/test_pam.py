"""The PAM reading against PAM itself: the hash method we say pam_unix uses is the one chpasswd -R (through
the tree's own PAM stack, Debian's pam_unix) really hashes with; every stack and authselect's links read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hostguard.host.base import RootHost
from hostguard.host.pam import Authselect, collect_login_defs, collect_pam, effective_policy
from tests.conftest import HOSTS, build_tree, need_root, need_tool
from tests.fix_validation import set_password

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
