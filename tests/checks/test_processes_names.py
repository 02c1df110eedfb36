"""processes.name_mismatch on real processes the test starts, then on process facts for what cannot run here.

Hits: a copy of `sleep` started as ``exec -a "/usr/sbin/sshd -D"``; a Python program that rewrites its own
title and kernel name to ``sshd: root@pts/0``; one that names itself ``systemd-journal`` (the kernel's 15
characters of systemd-journald). Near misses: ``exec -a sleep sleep``, a login shell (``exec -a -bash
bash``), a copy of sleep that really is named ``sshd`` and titles itself ``sshd: root@pts/0`` (that is
processes.exe_location's), a copy named ``systemd-journald`` (the kernel cuts it to 15 characters), a
Python script named ``cron`` run through its ``#!`` line (python3's kernel name is the script's), and the
same retitling program as the hit writing its own name.
As facts (no such daemons on this machine): OpenSSH's ``sshd-session``, titles of nginx, PostgreSQL and
php-fpm, MariaDB's mysqld that is mariadbd, a busybox applet, ``vi`` that is vim.basic, and an executable
the package shipping the name owns (quiet) or another package owns (hit).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.findings import Finding
from hostguard.host.base import LiveHost, ProcessInfo
from hostguard.host.packages import EXE_OWNERS, FileOwners
from hostguard.host.processes import PROCESSES
from tests.checks.test_processes import Zoo, cmdline, wait_until
from tests.conftest import need_tool, run_one

CHECK = "processes.name_mismatch"

# Rewrites its own title (argv in place, as setproctitle does) and kernel name (/proc/self/comm), then sleeps.
RETITLE = """
import ctypes, sys, time
title = sys.argv[1]
rest = open('/proc/self/stat').read().rsplit(')', 1)[1].split()
start, end = int(rest[45]), int(rest[46])
ctypes.memmove(start, title.encode().ljust(end - start, b'\\0'), end - start)
with open('/proc/self/comm', 'w') as f:
    f.write(sys.argv[2])
time.sleep(30)
"""
CRON_SCRIPT = "#!{python}\nimport time\ntime.sleep(30)\n"


def by_pid(findings: list[Finding]) -> dict[int, Finding]:
    return {int(p["pid"]): f for f in findings for p in f.evidence["processes"]}


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zoo]:
    need_tool("bash", "sleep")
    z = Zoo(tmp_path_factory.mktemp("names"))
    try:
        sleep = os.path.realpath(shutil.which("sleep") or "")
        bin_dir = z.tmp / "bin"
        bin_dir.mkdir()
        for name in ("sleep", "sshd", "systemd-journald"):
            shutil.copy(sleep, bin_dir / name)
        z.start("sshd_D", ["bash", "-c", f'exec -a "/usr/sbin/sshd -D" {bin_dir / "sleep"} 30'])
        z.start("sleep_as_sleep", ["bash", "-c", "exec -a sleep sleep 30"])
        z.start("login_shell", ["bash", "-c", "exec -a -bash bash"], stdin=-1)  # waits on its stdin pipe
        z.start("real_sshd_title", ["bash", "-c", f"exec -a 'sshd: root@pts/0' {bin_dir / 'sshd'} 30"])
        z.start("journald_copy", [str(bin_dir / "systemd-journald"), "30"])
        script = z.tmp / "cron"
        script.write_text(CRON_SCRIPT.format(python=os.path.realpath(sys.executable)))
        script.chmod(0o755)
        z.start("cron_script", [str(script)])
        z.start("retitled_sshd", [sys.executable, "-c", RETITLE, "sshd: root@pts/0", "sshd"])
        z.start("retitled_journal", [sys.executable, "-c", RETITLE, "systemd-journal", "systemd-journal"])
        z.start("retitled_own", [sys.executable, "-c", RETITLE, "hg-worker: idle", "hg-worker"])
        for role in ("sshd_D", "sleep_as_sleep", "login_shell", "real_sshd_title"):
            pid = z.pids[role]
            wait_until(f"{role} runs", lambda pid=pid: cmdline(pid) and not cmdline(pid).startswith(b"bash\0-c"))
        for role, name in (("retitled_sshd", "sshd"), ("retitled_journal", "systemd-journal"),
                           ("retitled_own", "hg-worker"), ("cron_script", "cron")):
            pid = z.pids[role]
            wait_until(f"{role} names itself", lambda pid=pid, name=name: comm(pid) == name)
        yield z
    finally:
        z.stop()


def test_name_mismatch_live(zoo: Zoo) -> None:
    findings, skipped = run_one(CHECK, LiveHost())
    assert not skipped
    hits = by_pid(findings)
    f = hits[zoo.pids["sshd_D"]]
    assert f.evidence["claimed"] == "sshd" and f.target["exe"] == str(zoo.tmp / "bin" / "sleep")
    assert f.evidence["shown_as"] == ["/usr/sbin/sshd -D"]
    [step] = f.remediation.steps
    assert dict(step.args)["pid"] == str(zoo.pids["sshd_D"])  # type: ignore[union-attr]
    retitled = hits[zoo.pids["retitled_sshd"]]
    assert retitled.evidence["claimed"] == "sshd" and retitled.target["exe"] == os.path.realpath(sys.executable)
    assert hits[zoo.pids["retitled_journal"]].evidence["claimed"] == "systemd-journal"
    for quiet in ("sleep_as_sleep", "login_shell", "real_sshd_title", "journald_copy", "cron_script", "retitled_own"):
        assert zoo.pids[quiet] not in hits, hits[zoo.pids[quiet]].title
    assert os.getpid() not in hits


def fact(pid: int, name: str, exe: str, *argv: str) -> ProcessInfo:
    return ProcessInfo(pid, 1, name, exe, "root", 1700000000.0 + pid, argv or (exe,), exe, user_maps=True)


QUIET = [
    fact(101, "sshd-session", "/usr/lib/openssh/sshd-session", "sshd-session: root@pts/0"),
    fact(102, "sshd", "/usr/lib/openssh/sshd-session", "sshd: root [priv]"),
    fact(103, "nginx", "/usr/sbin/nginx", "nginx: worker process"),
    fact(104, "postgres", "/usr/lib/postgresql/15/bin/postgres", "postgres: 15/main: checkpointer"),
    fact(105, "php-fpm8.2", "/usr/sbin/php-fpm8.2", "php-fpm: pool www"),
    fact(106, "mysqld", "/usr/sbin/mariadbd", "/usr/sbin/mysqld"),
    fact(107, "crond", "/usr/bin/busybox", "crond", "-f"),
    fact(108, "vi", "/usr/bin/vim.basic", "vi", "notes.txt"),
    fact(109, "systemd-udevd", "/usr/bin/udevadm", "/lib/systemd/systemd-udevd"),
    fact(110, "redis-server", "/usr/bin/redis-check-rdb", "/usr/bin/redis-server 127.0.0.1:6379"),
    fact(111, "unattended-upgr", "/usr/bin/python3.11", "/usr/bin/python3", "/usr/bin/unattended-upgrade-shutdown"),
    fact(112, "cron", "/usr/lib/openssh/cron-helper", "cron"),  # owned by a package that ships cron: see OWNERS
]
OWNERS = FileOwners({"/usr/lib/openssh/cron-helper": "cron", "/usr/lib/x/helper": "coreutils"}, "dpkg")


def test_quiet_on_names_that_are_honest() -> None:
    findings, skipped = run_one(CHECK, LiveHost(), given={PROCESSES: tuple(QUIET), EXE_OWNERS: OWNERS})
    assert not skipped
    assert findings == [], [f.title for f in findings]


def test_a_package_that_does_not_ship_the_name_does_not_excuse_it() -> None:
    """The same name with an executable another package owns (or none, or no database at all) is a hit."""
    procs = (fact(201, "cron", "/usr/lib/x/helper", "cron"),
             fact(202, "rsyslogd", "/usr/lib/x/other", "/usr/sbin/rsyslogd", "-n"))
    for owners in (OWNERS, FileOwners({}, None)):
        findings, _ = run_one(CHECK, LiveHost(), given={PROCESSES: procs, EXE_OWNERS: owners})
        hits = by_pid(findings)
        assert hits[201].evidence["claimed"] == "cron"
        assert hits[201].evidence["exe_package"] == ("coreutils" if owners.database else None)
        assert hits[202].evidence["claimed"] == "rsyslogd"
