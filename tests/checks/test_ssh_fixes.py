"""sshd fixes that work: the exact steps for each way a value can be set, proven by the real sshd.

Each fixtures/hosts/fixes/ssh/<case> tree is scanned with the ssh family; the steps are asserted exactly,
applied with respond/apply.py, and then (1) the real ``sshd -t`` accepts the patched files and ``sshd -T``
(globally and with ``-C`` for root and an admin) shows the safe value, run in a private mount namespace with
the tree's /etc/ssh over /etc/ssh, and (2) the ssh family scanned again finds the problem gone and nothing
new. The lockout guard (USABLE_ADMIN_KEYS) is tested per refusal reason, each with its near miss.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from hostguard.checks.ssh import LOCKOUT
from hostguard.engine.facts import Facts
from hostguard.findings import Finding
from hostguard.host.base import RootHost
from hostguard.host.ssh_keys import USABLE_ADMIN_KEYS, KeyVerdict
from hostguard.remediation import Command, Edit, Remediation, Step, Write
from hostguard.respond.apply import apply
from tests.conftest import HITS, build_tree, make_config, run_one
from tests.sshd_fix_helpers import (
    FIXES,
    SPECS,
    file_steps,
    fix_all,
    fix_tree,
    ssh_scan,
    sshd_dump,
    sshd_etc,
    sshd_isolated,
)

CONF = "/etc/ssh/sshd_config"
DROPINS = "/etc/ssh/sshd_config.d"
RELOAD: tuple[Step, ...] = (Command(("sshd", "-t")), Command(("systemctl", "reload", "sshd")))


def _line(case: str, path: str, number: int) -> str:
    return (FIXES / case / path.lstrip("/")).read_text().splitlines()[number - 1]


def _key(f: Finding) -> str:
    user = f.target.get("user")
    return f"{f.id}[{user}]" if user else f"{f.id}[{f.target.get('setting')}]"


# case -> {finding key: file steps}; every finding of the case is listed (nothing else may be reported)
CASES: dict[str, dict[str, tuple[Step, ...]]] = {
    "cloud_init": {
        "ssh.password_auth[alice]": (
            Edit(f"{DROPINS}/50-cloud-init.conf", 1, "PasswordAuthentication yes", "PasswordAuthentication no"),),
    },
    "above_include": {
        "ssh.password_auth[alice]": (Edit(CONF, 2, "PasswordAuthentication yes", "PasswordAuthentication no"),),
        "ssh.max_auth_tries[MaxAuthTries]": (Edit(CONF, 3, "MaxAuthTries 8", "MaxAuthTries 4"),),
    },
    "no_include": {
        "ssh.password_auth[alice]": (
            Edit(CONF, 1, _line("no_include", CONF, 1),
                 "PasswordAuthentication no\n" + _line("no_include", CONF, 1)),),
        "ssh.max_auth_tries[MaxAuthTries]": (
            Edit(CONF, 1, _line("no_include", CONF, 1), "MaxAuthTries 4\n" + _line("no_include", CONF, 1)),),
    },
    "match_block": {
        "ssh.root_password_login[PermitRootLogin]": (
            Edit(CONF, 15, "    PermitRootLogin yes", "    PermitRootLogin prohibit-password"),),
        "ssh.password_auth[alice]": (
            Edit(CONF, 12, "\tPasswordAuthentication yes", "\tPasswordAuthentication no"),
            Edit(CONF, 16, "    KbdInteractiveAuthentication yes", "    KbdInteractiveAuthentication no")),
        "ssh.empty_passwords[PermitEmptyPasswords]": (
            Edit(CONF, 13, "\tPermitEmptyPasswords yes", "\tPermitEmptyPasswords no"),),
    },
    "unset": {
        "ssh.password_auth[alice]": (
            Write(f"{DROPINS}/00-hostguard-passwordauthentication.conf", "PasswordAuthentication no\n"),),
        "ssh.max_auth_tries[MaxAuthTries]": (
            Write(f"{DROPINS}/00-hostguard-maxauthtries.conf", "MaxAuthTries 4\n"),),
    },
    "occurrence_earlier": {
        "ssh.max_auth_tries[MaxAuthTries]": (
            Edit(CONF, 1, _line("occurrence_earlier", CONF, 1),
                 "MaxAuthTries 4\n" + _line("occurrence_earlier", CONF, 1)),),
    },
    "weak_explicit": {
        "ssh.weak_algorithms[Ciphers]": (
            Edit(f"{DROPINS}/05-legacy.conf", 1, "Ciphers aes256-gcm@openssh.com,aes128-cbc,aes256-ctr",
                 "Ciphers aes256-gcm@openssh.com,aes256-ctr"),),
        "ssh.weak_algorithms[MACs]": (
            Edit(f"{DROPINS}/05-legacy.conf", 2, "MACs hmac-sha2-256-etm@openssh.com,hmac-md5,hmac-sha2-256",
                 "MACs hmac-sha2-256-etm@openssh.com,hmac-sha2-256"),),
    },
}

# what the real sshd -T must show after the fix: (spec index in SPECS or None for global, keyword, value)
SAFE: dict[str, list[tuple[int | None, str, str]]] = {
    "cloud_init": [(None, "passwordauthentication", "no"), (2, "passwordauthentication", "no"),
                   (3, "passwordauthentication", "no")],
    "above_include": [(None, "passwordauthentication", "no"), (2, "passwordauthentication", "no"),
                      (None, "maxauthtries", "4")],
    "no_include": [(None, "passwordauthentication", "no"), (2, "passwordauthentication", "no"),
                   (None, "maxauthtries", "4"), (0, "maxauthtries", "4")],
    "match_block": [(0, "permitrootlogin", "without-password"), (1, "permitrootlogin", "without-password"),
                    (0, "kbdinteractiveauthentication", "no"), (2, "passwordauthentication", "no"),
                    (3, "kbdinteractiveauthentication", "no"), (2, "permitemptypasswords", "no")],
    "unset": [(None, "passwordauthentication", "no"), (2, "passwordauthentication", "no"),
              (None, "maxauthtries", "4"), (0, "maxauthtries", "4")],
    "occurrence_earlier": [(None, "maxauthtries", "4"), (0, "maxauthtries", "4"), (2, "maxauthtries", "4")],
    "weak_explicit": [(None, "ciphers", "aes256-gcm@openssh.com,aes256-ctr"),
                      (None, "macs", "hmac-sha2-256-etm@openssh.com,hmac-sha2-256")],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_steps_edit_the_line_in_force_or_add_one_read_first(tmp_path: Path, case: str) -> None:
    tree = fix_tree(tmp_path / "host", case)
    found = {_key(f): f.remediation.steps for f in ssh_scan(tree).values()}
    assert found == {k: (*steps, *RELOAD) for k, steps in CASES[case].items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fixed_tree_passes_the_real_sshd_and_a_new_scan(tmp_path: Path, case: str) -> None:
    tree = fix_tree(tmp_path / "host", case)
    before = ssh_scan(tree)
    applied = fix_all(tree)
    assert applied and {_key(f) for f in applied} <= set(CASES[case])  # one fix may settle another finding
    after = ssh_scan(tree)
    assert [f"{f.id}: {f.title}" for fp, f in after.items()] == []  # gone, and nothing new
    assert set(after) <= set(before)
    etc = sshd_etc(tree, tmp_path / "etc-ssh")
    check = sshd_isolated(etc, "-t")
    assert (check.returncode, check.stderr) == (0, "")
    dumps: dict[int | None, dict[str, list[str]]] = {}
    for spec, keyword, value in SAFE[case]:
        if spec not in dumps:
            dumps[spec] = sshd_dump(etc, None if spec is None else SPECS[spec])
        assert dumps[spec][keyword] == [value], (spec, keyword)


def test_the_broken_fixture_is_what_sshd_reads_before_the_fix(tmp_path: Path) -> None:
    """The fixtures show the trap: a later `no` does not help, sshd keeps the first value (the real sshd says)."""
    etc = sshd_etc(fix_tree(tmp_path / "host", "cloud_init"), tmp_path / "etc-ssh")
    assert sshd_dump(etc)["passwordauthentication"] == ["yes"]
    etc2 = sshd_etc(fix_tree(tmp_path / "host2", "occurrence_earlier"), tmp_path / "etc-ssh2")
    assert sshd_dump(etc2)["maxauthtries"] == ["6"]


def test_no_usable_admin_key_makes_password_fixes_manual(tmp_path: Path) -> None:
    tree = fix_tree(tmp_path / "host", "lockout")
    found = {_key(f): f.remediation for f in ssh_scan(tree).values()}
    assert found == {"ssh.password_auth[alice]": Remediation.by_hand(
        "Set `PasswordAuthentication no` where sshd reads it first, check with `sshd -t` and reload sshd "
        "(existing sessions stay)", LOCKOUT)}
    assert LOCKOUT == ("no root-capable account has a key sshd would accept now: install one first with "
                       "ssh-copy-id")


def test_no_usable_admin_key_makes_root_login_fix_manual(tmp_path: Path) -> None:
    tree = fix_tree(tmp_path / "host", "match_block")
    (tree / "root/.ssh/authorized_keys").unlink()
    (tree / "home/alice/.ssh/authorized_keys").unlink()
    found = {_key(f): f.remediation for f in ssh_scan(tree).values()}
    assert found["ssh.root_password_login[PermitRootLogin]"] == Remediation.by_hand(
        "Set `PermitRootLogin prohibit-password` where sshd reads it first, check with `sshd -t` and reload "
        "sshd (existing sessions stay)", LOCKOUT)
    assert found["ssh.password_auth[alice]"].manual == LOCKOUT
    # not a lockout risk: empty passwords are fixed as steps all the same
    assert found["ssh.empty_passwords[PermitEmptyPasswords]"].steps == (
        Edit(CONF, 13, "\tPermitEmptyPasswords yes", "\tPermitEmptyPasswords no"), *RELOAD)


def test_default_port_is_manual_with_the_port_as_a_param(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", HITS / "ssh.default_port")
    [finding] = [f for f in ssh_scan(tree).values() if f.id == "ssh.default_port"]
    rem = finding.remediation
    assert (rem.summary, rem.steps, [p.name for p in rem.params], [p.example for p in rem.params]) == (
        "Move sshd off port 22 to a port you choose", (), ["SSH_PORT"], ["22022"])
    assert rem.manual is not None and "add `Port SSH_PORT` as the first line of /etc/ssh/sshd_config" in rem.manual


def test_config_not_reloaded_fix_is_check_then_reload() -> None:
    from hostguard.checks.ssh import reload_steps

    assert reload_steps(CONF) == RELOAD
    assert reload_steps("/srv/sshd.conf") == (Command(("sshd", "-t", "-f", "/srv/sshd.conf")), RELOAD[1])


# -- the lockout guard: USABLE_ADMIN_KEYS --------------------------------------------------------------

ALICE_KEYS = "/home/alice/.ssh/authorized_keys"
ALICE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGB9Hv2GPto6Ya1LYV6UUb5uExrNccRS+lYZV3cl9pnI alice@laptop.test"
DSA_KEY = "ssh-dss AAAAB3NzaC1kc3MAAACBAP1234567890abcdefABCDEF alice@old.test"


def _conf(text: str) -> Callable[[Path], None]:
    """Put settings in a drop-in read before the fixture's own lines."""
    def setup(tree: Path) -> None:
        (tree / "etc/ssh/sshd_config.d/01-test.conf").write_text(text)
    return setup


def _keyline(text: str) -> Callable[[Path], None]:
    def setup(tree: Path) -> None:
        (tree / ALICE_KEYS.lstrip("/")).write_text(text + "\n")
    return setup


def _chmod(path: str, mode: int) -> Callable[[Path], None]:
    def setup(tree: Path) -> None:
        os.chmod(tree / path.lstrip("/"), mode)
    return setup


def _chown(path: str, uid: int) -> Callable[[Path], None]:
    def setup(tree: Path) -> None:
        os.chown(tree / path.lstrip("/"), uid, 0)
    return setup


def _both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(tree: Path) -> None:
        for s in setups:
            s(tree)
    return setup


def _shell(shell: str) -> Callable[[Path], None]:
    def setup(tree: Path) -> None:
        passwd = tree / "etc/passwd"
        passwd.write_text(passwd.read_text().replace("/home/alice:/bin/bash", f"/home/alice:{shell}"))
    return setup


def _key_at(path: str) -> Callable[[Path], None]:
    def setup(tree: Path) -> None:
        target = tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tree / ALICE_KEYS.lstrip("/"), target)
    return setup


def _lock_alice(tree: Path) -> None:
    shadow = tree / "etc/shadow"
    shadow.write_text(shadow.read_text().replace("alice:$y$", "alice:!$y$"))


def _alice_in_wheel_only(tree: Path) -> None:
    group = tree / "etc/group"
    group.write_text(group.read_text().replace("sudo:x:27:alice", "sudo:x:27:") + "wheel:x:10:alice\n")


def _sudo_rule(rule: str) -> Callable[[Path], None]:
    def setup(tree: Path) -> None:
        (tree / "etc/sudoers.d/zz-test").write_text(rule + "\n")
    return setup


KEY = (ALICE_KEYS, 1)
ACCOUNT = ("", 0)
# reason: (setup that refuses alice's key, where the verdict is, the exact reason, near-miss setup)
REFUSALS: dict[str, tuple[Callable[[Path], None], tuple[str, int], str, Callable[[Path], None]]] = {
    "forced_command": (_keyline(f'command="/usr/local/bin/backup" {ALICE_KEY}'), KEY,
                       'forced command (command="/usr/local/bin/backup")',
                       _keyline(f"no-pty,no-X11-forwarding {ALICE_KEY}")),
    "from_excludes_outside": (_keyline(f'from="10.0.0.0/8" {ALICE_KEY}'), KEY,
                              'from="10.0.0.0/8" excludes outside address 192.0.2.10',
                              _keyline(f'from="192.0.2.0/24,2001:db8::/32" {ALICE_KEY}')),
    "from_excludes_ipv6": (_keyline(f'from="192.0.2.0/24" {ALICE_KEY}'), KEY,
                           'from="192.0.2.0/24" excludes outside address 2001:db8::10',
                           _keyline(f'from="*" {ALICE_KEY}')),
    "strictmodes_group_writable_dir": (_chmod("/home/alice/.ssh", 0o775), KEY,
                                       "StrictModes: /home/alice/.ssh is writable by group or others (mode 0775)",
                                       _both(_chmod("/home/alice/.ssh", 0o775), _conf("StrictModes no\n"))),
    "strictmodes_world_writable_file": (_chmod(ALICE_KEYS, 0o666), KEY,
                                        f"StrictModes: {ALICE_KEYS} is writable by group or others (mode 0666)",
                                        _chmod(ALICE_KEYS, 0o600)),
    "strictmodes_owner": (_chown(ALICE_KEYS, 1234), KEY,
                          f"StrictModes: {ALICE_KEYS} is owned by uid 1234, not alice or root",
                          _chown(ALICE_KEYS, 1000)),
    "not_in_authorized_keys_file": (_conf("AuthorizedKeysFile /etc/ssh/keys/%u\n"), ACCOUNT,
                                    "no key in AuthorizedKeysFile (/etc/ssh/keys/%u)",
                                    _both(_conf("AuthorizedKeysFile /etc/ssh/keys/%u\n"),
                                          _key_at("/etc/ssh/keys/alice"))),
    "allow_users": (_conf("AllowUsers bob\n"), ACCOUNT, "AllowUsers bob does not name alice",
                    _conf("AllowUsers al* root@192.0.2.0/24\n")),
    "deny_users": (_conf("DenyUsers alice\n"), ACCOUNT, "DenyUsers alice refuses alice", _conf("DenyUsers bob\n")),
    "deny_users_at_outside": (_conf("DenyUsers alice@192.0.2.0/24\n"), KEY,
                              "DenyUsers alice@192.0.2.0/24 refuses alice",
                              _conf("DenyUsers alice@198.51.100.0/24\n")),
    "deny_groups": (_conf("DenyGroups sudo\n"), ACCOUNT, "DenyGroups sudo refuses alice",
                    _conf("DenyGroups www-data\n")),
    "allow_groups": (_conf("AllowGroups www-data\n"), ACCOUNT, "AllowGroups www-data names none of alice's groups",
                     _conf("AllowGroups sudo\n")),
    "authentication_methods": (_conf("AuthenticationMethods publickey,password\n"), ACCOUNT,
                               "AuthenticationMethods publickey,password: publickey alone cannot complete a logon",
                               _conf("AuthenticationMethods publickey,password publickey\n")),
    "pubkey_off": (_conf("PubkeyAuthentication no\n"), ACCOUNT, "PubkeyAuthentication no",
                   _conf("Match User backup\n    PubkeyAuthentication no\n")),
    "pubkey_off_for_outside_in_match": (_conf("Match Address 2001:db8::/32\n    PubkeyAuthentication no\n"), KEY,
                                        "PubkeyAuthentication no",
                                        _conf("Match Address 198.51.100.0/24\n    PubkeyAuthentication no\n")),
    "key_type_not_accepted": (_keyline(DSA_KEY), KEY, "key type ssh-dss is not in PubkeyAcceptedAlgorithms",
                              _both(_keyline(DSA_KEY), _conf("PubkeyAcceptedAlgorithms +ssh-dss\n"))),
    "no_login_shell": (_shell("/usr/sbin/nologin"), ACCOUNT, "alice has no login shell (/usr/sbin/nologin)",
                       _shell("/bin/sh")),
    # an admin group is not root: sudo must give the account ALL, and must be able to ask for its password
    "password_locked_for_sudo": (_lock_alice, ACCOUNT,
                                 "the account's password is locked or empty, so sudo cannot ask for it",
                                 _both(_lock_alice, _sudo_rule("alice ALL=(ALL) NOPASSWD: ALL"))),
    "group_without_sudo_rule": (_alice_in_wheel_only, ACCOUNT, "no sudo rule gives the account every command as root",
                                _both(_alice_in_wheel_only, _sudo_rule("%wheel ALL=(ALL:ALL) ALL"))),
}


def _verdicts(tree: Path) -> list[KeyVerdict]:
    return list(Facts(RootHost(str(tree)), make_config()).get(USABLE_ADMIN_KEYS).verdicts)


ROOT_REFUSED = KeyVerdict("root", "", 0, False, "PermitRootLogin no refuses root's keys")  # the clean tree says no


@pytest.mark.parametrize("reason", sorted(REFUSALS))
def test_admin_key_refused_for_each_reason_and_its_near_miss_accepted(tmp_path: Path, reason: str) -> None:
    setup, (path, line), why, near_miss = REFUSALS[reason]
    hit = build_tree(tmp_path / "hit")
    setup(hit)
    verdicts = _verdicts(hit)
    assert verdicts == [ROOT_REFUSED, KeyVerdict("alice", path, line, False, why)]
    assert Facts(RootHost(str(hit)), make_config()).get(USABLE_ADMIN_KEYS).usable == ()
    miss = build_tree(tmp_path / "miss")
    near_miss(miss)
    usable = [v for v in _verdicts(miss) if v.usable]
    expect_path = "/etc/ssh/keys/alice" if reason == "not_in_authorized_keys_file" else ALICE_KEYS
    assert usable == [KeyVerdict("alice", expect_path, 1, True, "")]


def test_root_key_counts_when_root_may_use_keys(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host")
    (tree / ALICE_KEYS.lstrip("/")).unlink()
    assert _verdicts(tree) == [ROOT_REFUSED, KeyVerdict("alice", "", 0, False, "no key in AuthorizedKeysFile "
                                                        "(.ssh/authorized_keys .ssh/authorized_keys2)")]
    _conf("PermitRootLogin prohibit-password\n")(tree)
    assert [v for v in _verdicts(tree) if v.usable] == [KeyVerdict("root", "/root/.ssh/authorized_keys", 1, True, "")]
    _conf("PermitRootLogin forced-commands-only\n")(tree)
    assert _verdicts(tree)[0] == KeyVerdict("root", "", 0, False,
                                            "PermitRootLogin forced-commands-only refuses root's keys")


SSH_HITS = sorted(p.name for p in HITS.iterdir()
                  if p.name.startswith("ssh."))


@pytest.mark.parametrize("check_id", SSH_HITS)
def test_hit_fixture_fixes_pass_the_real_sshd(tmp_path: Path, check_id: str) -> None:
    """The steps tests/test_fixes.py applies to each ssh hit tree also satisfy sshd -t (e.g. the explicit
    KexAlgorithms list written from the defaults must name algorithms this sshd knows)."""
    tree = build_tree(tmp_path / "host", HITS / check_id)
    found, _ = run_one(check_id, RootHost(str(tree)))
    fixable = [f for f in found if file_steps(f)]
    if check_id == "ssh.default_port":
        assert fixable == []  # the new port is the owner's to choose
        return
    assert fixable
    for finding in fixable:
        apply(finding.remediation.steps, str(tree))
    etc = sshd_etc(tree, tmp_path / "etc-ssh")
    check = sshd_isolated(etc, "-t")
    assert (check.returncode, check.stderr) == (0, "")
    assert [f.id for f in found if f.fingerprint in ssh_scan(tree)] == []


DROPIN_CASES = {
    # name: (sshd_config, drop-ins, read first?)
    "include_first_no_other_line": ("Include /etc/ssh/sshd_config.d/*.conf\nPort 2222\n", {}, True),
    "occurrence_in_a_later_dropin_match": ("Include /etc/ssh/sshd_config.d/*.conf\n",
                                           {"50-cloud-init.conf": "Match User backup\n  MaxAuthTries 9\n"}, True),
    "no_include": ("Port 2222\n", {}, False),
    "include_of_another_directory": ("Include /etc/ssh/other.d/*.conf\n", {}, False),
    "include_not_matching_the_name": ("Include /etc/ssh/sshd_config.d/*.local\n", {}, False),
    "include_inside_match": ("Port 2222\nMatch User root\n  Include /etc/ssh/sshd_config.d/*.conf\n", {}, False),
    "occurrence_above_the_include": ("Match User backup\n  MaxAuthTries 9\n", {}, False),
    "occurrence_in_an_earlier_dropin": ("Include /etc/ssh/sshd_config.d/*.conf\n",
                                        {"00-backup.conf": "Match User backup\n  MaxAuthTries 9\n"}, False),
}


@pytest.mark.parametrize("name", sorted(DROPIN_CASES))
def test_dropin_only_where_the_include_reads_it_before_every_other_line(tmp_path: Path, name: str) -> None:
    from hostguard.checks.ssh import dropin_read_first
    from hostguard.host.sshd import parse_files

    config, dropins, expected = DROPIN_CASES[name]
    ssh = tmp_path / "etc/ssh"
    (ssh / "sshd_config.d").mkdir(parents=True)
    (ssh / "sshd_config").write_text(config)
    for file, text in dropins.items():
        (ssh / "sshd_config.d" / file).write_text(text)
    parsed = parse_files(RootHost(str(tmp_path)), CONF)
    assert dropin_read_first(parsed, CONF, "MaxAuthTries") is expected


def test_a_value_set_in_match_all_is_edited_there(tmp_path: Path) -> None:
    """`Match all` applies to the global settings too: a drop-in would change nothing (sshd -T still says 10)."""
    tree = build_tree(tmp_path / "host")
    cfg = tree / "etc/ssh/sshd_config"
    cfg.write_text(cfg.read_text() + "Match all\n    MaxAuthTries 10\n")
    number = len(cfg.read_text().splitlines())
    [finding] = run_one("ssh.max_auth_tries", RootHost(str(tree)))[0]
    assert finding.remediation.steps[0] == Edit("/etc/ssh/sshd_config", number, "    MaxAuthTries 10", "    MaxAuthTries 4")
    apply(finding.remediation.steps, str(tree))
    assert run_one("ssh.max_auth_tries", RootHost(str(tree)))[0] == []
