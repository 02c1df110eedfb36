"""Host-file parsers: what they extract from known lines, and no crash on arbitrary bytes."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.findings import SkipReason
from hostguard.host.accounts import parse_group, parse_passwd, parse_shadow
from hostguard.host.authorized_keys import parse_authorized_keys
from hostguard.host.base import RootHost, Unavailable
from hostguard.host.pam import collect_login_defs, collect_pam, effective_policy, parse_login_defs
from hostguard.host.sudoers import collect_sudoers

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(":,#=\n\t "),
               max_size=400)


def test_passwd_keeps_malformed_lines_visible() -> None:
    users, bad = parse_passwd("root:x:0:0:root:/root:/bin/bash\nbroken:line\nx:x:a:0::/:/bin/sh\n")
    assert [u.name for u in users] == ["root"]
    assert [(b.line, b.reason) for b in bad] == [(2, "2 fields instead of 7"), (3, "empty name or non-numeric UID/GID")]


@settings(max_examples=150)
@given(TEXT)
def test_account_parsers_never_crash(text: str) -> None:
    for parse in (parse_passwd, parse_shadow, parse_group):
        items, bad = parse(text)
        assert all(b.line >= 1 for b in bad)
    parse_authorized_keys(text, "u", "/home/u/.ssh/authorized_keys")
    parse_login_defs(text)


def test_authorized_key_options_with_quotes() -> None:
    line = 'from="192.0.2.0/24",command="echo \\"hi, there\\"" ssh-ed25519 AAAAC3Nza key@host.test\n'
    [key] = parse_authorized_keys(line, "root", "/root/.ssh/authorized_keys")
    assert key.options == ('from="192.0.2.0/24"', 'command="echo \\"hi, there\\""')
    assert key.comment == "key@host.test"


def _tree(tmp_path: Path, files: dict[str, str]) -> RootHost:
    for name, text in files.items():
        path = tmp_path / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return RootHost(str(tmp_path))


def test_pwquality_positive_credits_lower_the_minimum(tmp_path: Path) -> None:
    host = _tree(tmp_path, {
        "/etc/pam.d/common-password": "password requisite pam_pwquality.so retry=3 minlen=10 dcredit=2 ucredit=1\n"
                                      "password [success=1 default=ignore] pam_unix.so obscure yescrypt\n",
        "/etc/security/pwquality.conf": "minlen = 14\nminclass = 2\nlcredit = -1\n",
        "/etc/login.defs": "ENCRYPT_METHOD SHA512\n"})
    policy = effective_policy(collect_pam(host), collect_login_defs(host))
    assert policy.min_length == 7  # 10 from the module line (it beats the conf file) minus 3 credits
    assert policy.min_length_at.where() == "/etc/pam.d/common-password:1"
    assert policy.classes == 2 and policy.classes_at.where() == "/etc/security/pwquality.conf:2"
    assert policy.method == "yescrypt"  # pam_unix's option wins over login.defs


def test_cracklib_defaults_and_passwdqc(tmp_path: Path) -> None:
    host = _tree(tmp_path, {"/etc/pam.d/system-auth": "password requisite pam_cracklib.so\n"
                                                       "password sufficient pam_unix.so md5\n"})
    policy = effective_policy(collect_pam(host), collect_login_defs(host))
    assert (policy.min_length, policy.classes, policy.method) == (6, 0, "md5")  # minlen 9 minus four +1 credits
    host = _tree(tmp_path / "q", {"/etc/pam.d/common-password":
                                  "password requisite pam_passwdqc.so min=disabled,disabled,disabled,disabled,10\n"})
    policy = effective_policy(collect_pam(host), collect_login_defs(host))
    assert (policy.min_length, policy.classes) == (10, 4)


def test_sudoers_includes_aliases_and_continuations(tmp_path: Path) -> None:
    host = _tree(tmp_path, {
        "/etc/sudoers": "Defaults env_reset\n#includedir /etc/sudoers.d\n",
        "/etc/sudoers.d/ops": "User_Alias OPS = bob, carol\nOPS ALL = (root) \\\n  NOPASSWD: ALL\n",
        "/etc/sudoers.d/skipped.bak": "mallory ALL=(ALL) NOPASSWD: ALL\n"})
    [rule] = collect_sudoers(host)
    assert (rule.who, rule.runas, rule.nopasswd, rule.line) == (("bob", "carol"), ("root",), True, 2)


@settings(max_examples=100)
@given(TEXT)
def test_sudoers_and_pam_never_crash(tmp_path_factory, text: str) -> None:
    root = tmp_path_factory.mktemp("t")
    host = _tree(root, {"/etc/sudoers": text, "/etc/pam.d/common-password": text,
                        "/etc/security/pwquality.conf": text, "/etc/login.defs": text})
    collect_sudoers(host)
    try:
        effective_policy(collect_pam(host), collect_login_defs(host))
    except Unavailable as exc:  # text with NUL or control bytes is not a config file: "not looked", one line
        assert exc.reason == SkipReason.ERROR and "is not a text file" in exc.detail
