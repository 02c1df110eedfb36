"""Password policy fixes, proven by the tools that read them: chpasswd -R (through the tree's own PAM stack
and login.defs) for the hash scheme and rounds, libpwquality's pwscore (chrooted into the tree) and
pam_pwquality's verdict in chpasswd for the quality policy, libpam's pam_authenticate for nullok. Never by
re-running our own check alone. Missing OS files are skipped with their reason, never judged on defaults."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from hostguard.cli import main
from hostguard.findings import Finding
from hostguard.host.base import RootHost
from hostguard.remediation import Command, Edit, Remediation, Write
from hostguard.respond.apply import ApplyError, apply
from tests.conftest import HITS, HOSTS, MISSES, build_tree, need_root, need_tool, run_one
from tests.fix_validation import findings, pwscore, set_password
from tests.host.test_pam import PAM_SUCCESS, authenticate, empty_password

FIXES = HOSTS / "fixes" / "password_policy"
UNIX = "password        [success=1 default=ignore]      pam_unix.so obscure use_authtok try_first_pass"
QUALITY = "password        requisite                       "
PASSWORD = "qX7#vLm2$pRt9w"  # 14 characters, four classes, no dictionary word


def _fix(tree: Path, check_id: str) -> Remediation:
    [finding] = run_one(check_id, RootHost(str(tree)))[0]
    return finding.remediation


def _tools() -> None:
    need_root("chpasswd -R and unshare --mount")
    need_tool("chpasswd", "unshare", "pwscore")


def test_hash_method_on_pam_unix_becomes_yescrypt_and_chpasswd_hashes_so(tmp_path: Path) -> None:
    _tools()
    tree = build_tree(tmp_path / "host", HITS / "password_policy.hash_method")
    fix = _fix(tree, "password_policy.hash_method")
    assert fix.steps == (Edit("/etc/pam.d/common-password", 3, f"{UNIX} md5", f"{UNIX} yescrypt"),)
    assert set_password(tree, "alice", PASSWORD)[0].startswith("$1$")  # the fixture really hashes with MD5
    apply(fix.steps, str(tree))
    assert set_password(tree, "alice", PASSWORD)[0].startswith("$y$")
    assert findings(tree, "password_policy.hash_method") == []


def test_hash_method_in_login_defs_is_fixed_there(tmp_path: Path) -> None:
    _tools()
    tree = build_tree(tmp_path / "host", FIXES / "login_defs_md5")
    fix = _fix(tree, "password_policy.hash_method")
    assert fix.steps == (Edit("/etc/login.defs", 8, "ENCRYPT_METHOD MD5", "ENCRYPT_METHOD YESCRYPT"),)
    assert set_password(tree, "alice", PASSWORD)[0].startswith("$1$")  # pam_unix follows login.defs
    apply(fix.steps, str(tree))
    assert set_password(tree, "alice", PASSWORD)[0].startswith("$y$")
    assert findings(tree, "password_policy.hash_method") == []


def test_sha_rounds_on_pam_unix(tmp_path: Path) -> None:
    _tools()
    tree = build_tree(tmp_path / "host", HITS / "password_policy.sha_rounds")
    fix = _fix(tree, "password_policy.sha_rounds")
    assert fix.steps == (Edit("/etc/pam.d/common-password", 3, f"{UNIX} sha512 rounds=1000",
                              f"{UNIX} sha512 rounds=65536"),)
    assert set_password(tree, "alice", PASSWORD)[0].startswith("$6$rounds=1000$")
    apply(fix.steps, str(tree))
    assert set_password(tree, "alice", PASSWORD)[0].startswith("$6$rounds=65536$")
    assert findings(tree, "password_policy.sha_rounds") == []


def test_sha_rounds_in_login_defs_sets_min_and_max(tmp_path: Path) -> None:
    """pam_unix reads SHA_CRYPT_MAX_ROUNDS only (shadow's tools both): with MIN alone, chpasswd through PAM
    hashes with the 5000-round default; after the fix, with 65536."""
    _tools()
    tree = build_tree(tmp_path / "host", FIXES / "login_defs_rounds")
    fix = _fix(tree, "password_policy.sha_rounds")
    assert fix.steps == (Edit("/etc/login.defs", 9, "SHA_CRYPT_MIN_ROUNDS 1000",
                              "SHA_CRYPT_MIN_ROUNDS 65536\nSHA_CRYPT_MAX_ROUNDS 65536"),)
    before = set_password(tree, "alice", PASSWORD)[0]
    assert before.startswith("$6$") and "rounds=" not in before
    apply(fix.steps, str(tree))
    assert set_password(tree, "alice", PASSWORD)[0].startswith("$6$rounds=65536$")
    assert findings(tree, "password_policy.sha_rounds") == []


def test_min_length_credits_are_zeroed_and_pwscore_refuses_short_passwords(tmp_path: Path) -> None:
    _tools()
    tree = build_tree(tmp_path / "host", HITS / "password_policy.min_length")
    fix = _fix(tree, "password_policy.min_length")
    conf = "/etc/security/pwquality.conf"
    assert fix.steps == (Edit(conf, 3, "dcredit = 1", "dcredit = 0"), Edit(conf, 4, "ucredit = 1", "ucredit = 0"))
    assert pwscore(tree, "Ab1!xyZ")[0] == 0  # 7 characters pass today: credits lower minlen 9
    apply(fix.steps, str(tree))
    code, said = pwscore(tree, "Ab1!xyZ")
    assert code != 0 and "shorter than 9 characters" in said
    assert pwscore(tree, PASSWORD)[0] == 0
    assert findings(tree, "password_policy.min_length") == []


def test_char_classes_edit_the_minclass_line(tmp_path: Path) -> None:
    _tools()
    tree = build_tree(tmp_path / "host", HITS / "password_policy.char_classes")
    fix = _fix(tree, "password_policy.char_classes")
    assert fix.steps == (Edit("/etc/security/pwquality.conf", 2, "minclass = 2", "minclass = 4"),)
    assert pwscore(tree, "vlmqrtxz73925")[0] == 0  # two classes pass today
    apply(fix.steps, str(tree))
    code, said = pwscore(tree, "vlmqrtxz73925")
    assert code != 0 and "less than 4 character classes" in said
    assert pwscore(tree, PASSWORD)[0] == 0


def test_minlen_on_the_pam_line_is_edited_there_and_pam_pwquality_says_so(tmp_path: Path) -> None:
    """An option on the pam_pwquality line overrides pwquality.conf: the fix edits the PAM line, and
    pam_pwquality's verdict (printed by chpasswd, run as root so it only warns) changes."""
    _tools()
    tree = build_tree(tmp_path / "host", FIXES / "pam_minlen")
    fix = _fix(tree, "password_policy.min_length")
    line = f"{QUALITY}pam_pwquality.so retry=3 minlen={{}} # short on purpose"
    assert fix.steps == (Edit("/etc/pam.d/common-password", 2, line.format(6), line.format(8)),)
    assert "BAD PASSWORD" not in set_password(tree, "alice", "Ab1!xyZ")[1]
    apply(fix.steps, str(tree))
    assert "BAD PASSWORD: The password is shorter than 8 characters" in set_password(tree, "alice", "Ab1!xyZ")[1]
    assert "BAD PASSWORD" not in set_password(tree, "alice", PASSWORD)[1]
    assert findings(tree, "password_policy.min_length") == []


def test_without_a_quality_module_install_it_and_write_winning_drop_ins(tmp_path: Path) -> None:
    """No pam_pwquality.so and no pwquality.conf: apt-get (live only) and one drop-in per key, which win
    because no other file sets the key; pwscore (libpwquality, which reads pwquality.conf.d) agrees."""
    _tools()
    tree = build_tree(tmp_path / "host", FIXES / "no_quality_module")
    install = Command(("apt-get", "install", "-y", "libpam-pwquality"), live_only=True,
                      undo=("apt-get", "remove", "-y", "libpam-pwquality"), reversible=True)
    length = _fix(tree, "password_policy.min_length")
    classes = _fix(tree, "password_policy.char_classes")
    drop_in = "/etc/security/pwquality.conf.d/00-hostguard-{}.conf"
    assert length.steps == (install, Write(drop_in.format("minlen"), "# written by hostguard: minlen for new "
                                                                    "passwords\nminlen = 8\n"))
    assert classes.steps == (install, Write(drop_in.format("minclass"), "# written by hostguard: minclass for "
                                                                        "new passwords\nminclass = 4\n"))
    apply([*length.steps, *classes.steps], str(tree))
    assert "shorter than 8" in pwscore(tree, "Ab1!xyZ")[1]
    assert "less than 4 character classes" in pwscore(tree, "vlmqrtxz73925")[1]
    assert pwscore(tree, PASSWORD)[0] == 0


def test_a_stricter_value_is_never_lowered_only_the_module_installed(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", FIXES / "no_quality_module")
    (tree / "etc/security").mkdir(exist_ok=True)
    (tree / "etc/security/pwquality.conf").write_text("minlen = 12\nminclass = 4\n")
    fix = _fix(tree, "password_policy.min_length")
    assert [s.kind for s in fix.steps] == ["command"]


def test_cracklib_options_are_set_on_its_line(tmp_path: Path) -> None:
    """pam_cracklib reads only its PAM options (credits default to 1): minlen and zero credits go there."""
    tree = build_tree(tmp_path / "host", FIXES / "cracklib")
    old = f"{QUALITY}pam_cracklib.so retry=3 minlen=6"
    assert _fix(tree, "password_policy.min_length").steps == (
        Edit("/etc/pam.d/common-password", 2, old,
             f"{QUALITY}pam_cracklib.so retry=3 minlen=8 dcredit=0 ucredit=0 lcredit=0 ocredit=0"),)
    assert _fix(tree, "password_policy.char_classes").steps == (
        Edit("/etc/pam.d/common-password", 2, old, f"{old} minclass=4"),)
    apply(_fix(tree, "password_policy.min_length").steps, str(tree))
    assert findings(tree, "password_policy.min_length") == []


def test_ageing_edits_the_line_that_sets_it(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", HITS / "password_policy.ageing")
    assert _fix(tree, "password_policy.ageing").steps == (
        Edit("/etc/login.defs", 3, "PASS_MAX_DAYS   99999", "PASS_MAX_DAYS 365"),)


def test_unset_ageing_is_added_after_the_last_setting(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host")
    defs = tree / "etc/login.defs"
    defs.write_text(defs.read_text().replace("PASS_WARN_AGE   7\n", ""))
    fix = _fix(tree, "password_policy.ageing")
    assert fix.steps == (Edit("/etc/login.defs", 7, "ENCRYPT_METHOD YESCRYPT",
                              "ENCRYPT_METHOD YESCRYPT\nPASS_WARN_AGE 7"),)
    apply(fix.steps, str(tree))
    assert findings(tree, "password_policy.ageing") == []


# RHEL shapes: system-auth (local logins, su, passwd) and password-auth (sshd), with and without authselect.
RHEL_UNIX = "password    sufficient                                   pam_unix.so {} shadow nullok use_authtok"
POLICY_CHECKS = ("min_length", "char_classes", "hash_method", "sha_rounds")


def _through(tree: Path, stack: str) -> Path:
    """Make chpasswd's own PAM service use ``stack``, so chpasswd -R exercises that stack (RHEL's sshd does
    the same with password-auth)."""
    (tree / "etc/pam.d/chpasswd").write_text(f"password include {stack}\n")
    return tree


def _found(tree: Path, check_id: str) -> list[Finding]:
    return run_one(check_id, RootHost(str(tree)))[0]


def test_rhel_weak_password_auth_beside_a_good_system_auth(tmp_path: Path) -> None:
    """`yescrypt ... md5` in password-auth: pam_unix keeps the last option, so sshd's stack hashes with MD5
    while system-auth is fine; one finding, on password-auth's line, fixed there."""
    _tools()
    tree = build_tree(tmp_path / "host", FIXES / "rhel_password_auth_md5")
    [finding] = _found(tree, "password_policy.hash_method")
    assert finding.target == {"kind": "config", "path": "/etc/pam.d/password-auth", "setting": "hash_method"}
    assert finding.evidence["stacks"] == ["/etc/pam.d/password-auth"]
    assert finding.remediation.steps == (Edit("/etc/pam.d/password-auth", 11, f"{RHEL_UNIX.format('yescrypt')} md5",
                                              RHEL_UNIX.format("yescrypt")),)
    assert set_password(_through(tree, "system-auth"), "alice", PASSWORD)[0].startswith("$y$")
    assert set_password(_through(tree, "password-auth"), "alice", PASSWORD)[0].startswith("$1$")
    apply(finding.remediation.steps, str(tree))
    assert set_password(tree, "alice", PASSWORD)[0].startswith("$y$")
    assert findings(tree, "password_policy.hash_method") == []


@pytest.mark.parametrize("check", POLICY_CHECKS)
def test_rhel_near_miss_both_stacks_good(tmp_path: Path, check: str) -> None:
    """The same two stacks, both with pwquality above pam_unix and yescrypt last: nothing to say."""
    tree = build_tree(tmp_path / "host", FIXES / "rhel_good")
    assert findings(tree, f"password_policy.{check}") == []


def test_rhel_without_a_quality_module_gets_pwquality_above_pam_unix(tmp_path: Path) -> None:
    """Neither stack checks quality: one finding per stack, each fix inserts pam_pwquality above that
    stack's pam_unix (which then takes the checked password); chpasswd through the fixed stack refuses a
    short password and still hashes the given one with yescrypt, the other stack stays reported."""
    _tools()
    tree = build_tree(tmp_path / "host", FIXES / "rhel_no_quality")
    found = _found(tree, "password_policy.min_length")
    assert [f.target["path"] for f in found] == ["/etc/pam.d/system-auth", "/etc/pam.d/password-auth"]
    unix = "password    sufficient                                   pam_unix.so yescrypt shadow nullok"
    quality = "password    requisite                                    pam_pwquality.so local_users_only"
    assert found[0].remediation.steps == (Edit("/etc/pam.d/system-auth", 10, unix,
                                               f"{quality}\n{unix} use_authtok"),)
    assert "BAD PASSWORD" not in set_password(tree, "alice", "Ab1!xyZ")[1]
    apply(found[0].remediation.steps, str(tree))
    hashed, said = set_password(tree, "alice", "Ab1!xyZ")
    assert "BAD PASSWORD: The password is shorter than" in said and hashed.startswith("$y$")
    for check in ("min_length", "char_classes"):
        assert [f.target["path"] for f in _found(tree, f"password_policy.{check}")] == ["/etc/pam.d/password-auth"]


def test_authselect_pwquality_conf_is_an_edit_and_one_finding_for_both_stacks(tmp_path: Path) -> None:
    """Both authselect stacks take minlen from pwquality.conf: one finding there, an exact Edit (outside the
    generated PAM files), proven by pwscore and by pam_pwquality through the linked system-auth."""
    _tools()
    tree = build_tree(tmp_path / "host", FIXES / "rhel_authselect")
    [finding] = _found(tree, "password_policy.min_length")
    assert finding.target == {"kind": "config", "path": "/etc/security/pwquality.conf", "setting": "minlen"}
    assert finding.evidence["stacks"] == ["/etc/pam.d/system-auth", "/etc/pam.d/password-auth"]
    assert finding.remediation.steps == (Edit("/etc/security/pwquality.conf", 2, "minlen = 6", "minlen = 8"),)
    assert finding.remediation.manual is None
    assert pwscore(tree, "Ab1!xyZ")[0] == 0
    apply(finding.remediation.steps, str(tree))
    assert "shorter than 8" in pwscore(tree, "Ab1!xyZ")[1]
    assert "BAD PASSWORD: The password is shorter than 8" in set_password(tree, "alice", "Ab1!xyZ")[1]
    assert findings(tree, "password_policy.min_length") == []


def test_authselect_pam_line_change_is_by_hand_through_a_custom_profile(tmp_path: Path) -> None:
    """md5 on password-auth's pam_unix line, which authselect generates: no step (an Edit through the link
    is refused by apply.py, and one into /etc/authselect would be regenerated away); the fix names the
    custom-profile commands with this host's profile and features."""
    _tools()
    tree = build_tree(tmp_path / "host", FIXES / "rhel_authselect")
    assert set_password(_through(tree, "password-auth"), "alice", PASSWORD)[0].startswith("$1$")  # PAM follows links
    [finding] = _found(tree, "password_policy.hash_method")
    assert finding.target == {"kind": "config", "path": "/etc/pam.d/password-auth", "setting": "hash_method"}
    fix = finding.remediation
    assert fix.steps == () and fix.manual is not None
    assert "`authselect create-profile hostguard -b sssd --symlink-meta`" in fix.manual
    assert "`authselect select custom/hostguard with-faillock with-silent-lastlog`" in fix.manual
    want = "must read `password sufficient pam_unix.so yescrypt shadow nullok use_authtok`"
    assert "/etc/authselect/custom/hostguard/password-auth" in fix.manual and want in fix.manual
    raw = RHEL_UNIX.format("md5")
    with pytest.raises(ApplyError):
        apply((Edit("/etc/pam.d/password-auth", 11, raw, RHEL_UNIX.format("yescrypt")),), str(tree))
    authselect_conf = tree / "etc/authselect/authselect.conf"
    authselect_conf.write_text("custom/hardened\nwith-faillock\n")
    [finding] = _found(tree, "password_policy.hash_method")
    assert finding.remediation.manual is not None
    assert "/etc/authselect/custom/hardened/password-auth" in finding.remediation.manual
    assert "`authselect apply-changes`" in finding.remediation.manual


def test_bcrypt_in_login_defs_is_des_for_pam_unix(tmp_path: Path) -> None:
    """shadow's tools know ENCRYPT_METHOD BCRYPT, pam_unix does not and falls back to DES: passwords set
    through PAM are DES hashes; the fix makes login.defs say YESCRYPT."""
    _tools()
    tree = build_tree(tmp_path / "host")
    pam_file = tree / "etc/pam.d/common-password"
    pam_file.write_text(pam_file.read_text().replace(" yescrypt\n", "\n"))
    defs = tree / "etc/login.defs"
    defs.write_text(defs.read_text().replace("ENCRYPT_METHOD YESCRYPT", "ENCRYPT_METHOD BCRYPT"))
    [finding] = _found(tree, "password_policy.hash_method")
    assert (finding.severity.value, finding.target["path"]) == ("critical", "/etc/login.defs")
    assert finding.remediation.steps == (Edit("/etc/login.defs", 8, "ENCRYPT_METHOD BCRYPT", "ENCRYPT_METHOD YESCRYPT"),)
    assert re.fullmatch(r"[./0-9A-Za-z]{13}", set_password(tree, "alice", PASSWORD)[0])  # DES
    apply(finding.remediation.steps, str(tree))
    assert set_password(tree, "alice", PASSWORD)[0].startswith("$y$")


# pam_nullok: the fix drops nullok, proven by libpam itself (pam_authenticate chrooted into the tree).
NULLOK_HIT = HITS / "password_policy.pam_nullok"
COMMON_AUTH = "auth    [success=1 default=ignore]      pam_unix.so"


def test_nullok_removed_and_pam_then_refuses_the_empty_password_not_a_real_one(tmp_path: Path) -> None:
    """The hit tree: Debian's common-auth and an FTP service with its own nullok_secure line. One Edit per line;
    before, alice with an empty password logs in through both services with nothing typed; after, neither lets
    her in without a password, and a real password still works (nobody is shut out who has one)."""
    need_tool("chpasswd")
    tree = build_tree(tmp_path / "host", NULLOK_HIT)
    found = {f.target["path"]: f for f in _found(tree, "password_policy.pam_nullok")}
    vsftpd = "auth    required        pam_unix.so {}"
    assert {p: f.remediation.steps for p, f in found.items()} == {
        "/etc/pam.d/common-auth": (Edit("/etc/pam.d/common-auth", 2, f"{COMMON_AUTH} nullok", COMMON_AUTH),),
        "/etc/pam.d/vsftpd": (Edit("/etc/pam.d/vsftpd", 3, vsftpd.format("nullok_secure"), vsftpd.format("")[:-1]),)}
    assert {k: found["/etc/pam.d/vsftpd"].evidence[k] for k in ("set_at", "lines", "options", "services")} == {
        "set_at": "/etc/pam.d/vsftpd:3", "lines": [3], "options": ["nullok_secure"], "services": ["vsftpd"]}
    assert found["/etc/pam.d/common-auth"].evidence["services"] == ["sshd"]
    summary = found["/etc/pam.d/common-auth"].remediation.summary
    assert "pam-auth-update does not silently undo a local edit of common-auth" in summary
    empty_password(tree, "alice")
    assert [authenticate(tree, "alice", "", s) for s in ("hostguard-probe", "vsftpd")] == [PAM_SUCCESS] * 2
    apply([s for f in found.values() for s in f.remediation.steps], str(tree))
    assert PAM_SUCCESS not in [authenticate(tree, "alice", "", s) for s in ("hostguard-probe", "vsftpd")]
    set_password(tree, "alice", PASSWORD)
    assert [authenticate(tree, "alice", PASSWORD, s) for s in ("hostguard-probe", "vsftpd")] == [PAM_SUCCESS] * 2
    assert findings(tree, "password_policy.pam_nullok") == []


def test_nullok_near_miss_refuses_the_empty_password(tmp_path: Path) -> None:
    """The near-miss tree says nothing, and PAM agrees: its nullok words (a comment, the password line) let
    no empty password in."""
    tree = build_tree(tmp_path / "host", MISSES / "password_policy.pam_nullok")
    assert findings(tree, "password_policy.pam_nullok") == []
    empty_password(tree, "alice")
    assert authenticate(tree, "alice", "") != PAM_SUCCESS


def test_nullok_with_an_account_that_uses_it_is_by_hand(tmp_path: Path) -> None:
    """Removing nullok would shut out an account that logs in with an empty password today: the fix says to
    give it a password or lock it first, and has no step."""
    tree = build_tree(tmp_path / "host", NULLOK_HIT)
    empty_password(tree, "alice")
    for finding in _found(tree, "password_policy.pam_nullok"):
        assert finding.remediation.steps == () and finding.remediation.manual is not None
        assert finding.remediation.manual.startswith("'alice' has an empty password and can log in today only "
                                                     "because of nullok")
        assert finding.evidence["empty_password_accounts"] == ["alice"]


def test_nullok_under_authselect_is_the_without_nullok_feature(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", FIXES / "rhel_authselect")
    found = _found(tree, "password_policy.pam_nullok")
    assert [f.target["path"] for f in found] == ["/etc/pam.d/system-auth", "/etc/pam.d/password-auth"]
    for finding in found:
        assert finding.remediation.steps == () and finding.remediation.manual is not None
        assert "`authselect enable-feature without-nullok`" in finding.remediation.manual
    (tree / "etc/authselect/authselect.conf").write_text("custom/hardened\n")
    [first, _] = _found(tree, "password_policy.pam_nullok")
    assert first.remediation.manual is not None
    assert "/etc/authselect/custom/hardened/system-auth writes nullok" in first.remediation.manual


# Missing OS files: skipped with the reason, never a default reported as a fact.
CHECKS = ("min_length", "char_classes", "hash_method", "sha_rounds", "ageing", "pam_nullok")


def _skips(tree: Path, check: str) -> tuple[list[Finding], list[tuple[str, str, str]]]:
    found, skipped = run_one(f"password_policy.{check}", RootHost(str(tree)))
    return found, [(s.reason.value, s.detail, s.item) for s in skipped]


@pytest.mark.parametrize("check", CHECKS)
def test_no_os_tree_every_check_is_unsupported(tmp_path: Path, check: str) -> None:
    root = tmp_path / "checkout"
    (root / "src").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    found, skipped = _skips(root, check)
    assert found == []
    assert [(r, i) for r, _, i in skipped] == [("unsupported", "")]
    assert skipped[0][1].startswith("not an OS tree: none of /etc/passwd, /etc/os-release, /usr/lib/os-release, "
                                    "/etc/login.defs, /etc/pam.d exists")


def test_no_login_defs_ageing_is_skipped_and_des_is_pam_units_default(tmp_path: Path) -> None:
    """An OS tree without login.defs: ageing says it did not look; a pam_unix line with no hash option hashes
    with DES (chpasswd -R shows it), reported as pam_unix's default and fixed on that line."""
    _tools()
    tree = build_tree(tmp_path / "host")
    pam_file = tree / "etc/pam.d/common-password"
    pam_file.write_text(pam_file.read_text().replace(" yescrypt\n", "\n"))
    (tree / "etc/login.defs").unlink()
    found, skipped = _skips(tree, "ageing")
    assert found == [] and skipped == [("unsupported", "/etc/login.defs does not exist: no ageing defaults are set "
                                                       "where hostguard can read them", "")]
    [finding] = _found(tree, "password_policy.hash_method")
    assert finding.title == ("new passwords are hashed with des (pam_unix's built-in default: no hash option on its "
                             "line, no ENCRYPT_METHOD in /etc/login.defs)")
    assert (finding.severity.value, finding.evidence["value"], finding.evidence["set_at"]) == (
        "critical", "des", "built-in default")
    assert finding.remediation.steps == (Edit("/etc/pam.d/common-password", 3, UNIX, f"{UNIX} yescrypt"),)
    assert re.fullmatch(r"[./0-9A-Za-z]{13}", set_password(tree, "alice", PASSWORD)[0])
    apply(finding.remediation.steps, str(tree))
    assert set_password(tree, "alice", PASSWORD)[0].startswith("$y$")


def test_no_pam_quality_is_skipped_and_the_method_comes_from_login_defs(tmp_path: Path) -> None:
    """passwd and login.defs but no /etc/pam.d (a host without PAM): length and classes are not looked at;
    the method is ENCRYPT_METHOD as shadow's own tools read it."""
    tree = build_tree(tmp_path / "host")
    shutil.rmtree(tree / "etc/pam.d")
    for check in ("min_length", "char_classes"):
        found, skipped = _skips(tree, check)
        assert found == []
        assert [(r, d.split(":")[0]) for r, d, _ in skipped] == [("unsupported", "no /etc/pam.d in this tree")]
    assert _skips(tree, "hash_method") == ([], [])  # YESCRYPT in login.defs
    assert _skips(tree, "pam_nullok")[1][0][:2] == ("unsupported", "no /etc/pam.d in this tree: PAM is not installed, so "
                                                                    "no service authenticates through pam_unix")
    defs = tree / "etc/login.defs"
    defs.write_text(defs.read_text().replace("ENCRYPT_METHOD YESCRYPT\n", ""))
    found, skipped = _skips(tree, "hash_method")
    assert found == [] and skipped[0][0] == "unsupported"
    assert "/etc/login.defs sets no ENCRYPT_METHOD" in skipped[0][1]


def test_a_stack_without_anything_that_checks_passwords_is_skipped_by_name(tmp_path: Path) -> None:
    """RHEL's two stacks, password-auth handing passwords to sssd only: that stack is skipped (by its path) for
    quality, system-auth still judged."""
    tree = build_tree(tmp_path / "host", FIXES / "rhel_no_quality")
    (tree / "etc/pam.d/password-auth").write_text("password sufficient pam_sss.so use_authtok\n"
                                                  "password required pam_deny.so\n")
    found, skipped = _skips(tree, "min_length")
    assert [f.target["path"] for f in found] == ["/etc/pam.d/system-auth"]
    assert [(r, i) for r, _, i in skipped] == [("unsupported", "/etc/pam.d/password-auth")]


def test_binary_login_defs_is_one_error_line_in_the_scan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """End to end: a login.defs that is binary makes the checks reading it `skipped: error` with one clear
    detail (the scan goes on, the report is incomplete), never a finding made of defaults."""
    tree = build_tree(tmp_path / "host")
    (tree / "etc/login.defs").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    code = main(["--state", str(tmp_path / "state"), "scan", "--root", str(tree), "--only", "password_policy",
                 "--format", "json"])
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert (code, out.err, report["complete"], report["findings"]) == (0, "", False, [])
    errors = {s["check"]: s["detail"] for s in report["skipped"] if s["reason"] == "error"}
    want = "/etc/login.defs is not a text file (byte 0x02 at offset 4): no setting is read from it"
    assert errors == {f"password_policy.{c}": want for c in CHECKS if c != "pam_nullok"}
