"""processes.unpackaged_exe on real processes: copies of `sleep` put in /usr/libexec (and /usr/local/sbin) by a
tmpfs mounted over those directories in a private mount namespace the test creates, so nothing on this
machine is written outside the test's temp dir; the kernel names their executables by those system paths
from outside the namespace too, and this machine's real dpkg database owns none of them.

Hits: two processes of one unpackaged program (one finding listing both, a kill each; high, the file is
new), a root-owned copy judged medium once recent changes do not count, a copy owned by nobody (high
either way). Near misses: the packaged /usr/bin/sleep, a copy in /usr/local/sbin (installed by hand: not
looked at), a process in another root (a chroot: the host's package database does not describe its
files), and a host without a package database (the check says unsupported instead of guessing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hostguard.findings import Finding
from hostguard.host.base import LiveHost, ProcessInfo
from hostguard.host.packages import EXE_OWNERS, FileOwners
from hostguard.host.processes import PROCESSES
from tests.checks.test_processes import Zoo, children, exe_of, wait_until
from tests.conftest import make_config, need_root, need_tool, run_one

CHECK = "processes.unpackaged_exe"


def hits_by_pid(findings: list[Finding]) -> dict[int, Finding]:
    fingerprints = [f.fingerprint for f in findings]
    assert len(fingerprints) == len(set(fingerprints))
    return {int(p["pid"]): f for f in findings for p in f.evidence["processes"]}


@pytest.fixture(scope="module")
def namespace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[int]]]:
    need_root("a private mount namespace")
    need_tool("unshare", "mount", "sleep", "chown")
    if not os.path.isdir("/var/lib/dpkg/info"):
        pytest.skip(reason="this machine has no dpkg database to tell packaged programs from the others")
    sleep = os.path.realpath(shutil.which("sleep") or "")
    script = ("set -e; mount -t tmpfs none /usr/libexec; mount -t tmpfs none /usr/local/sbin; "
              f"cp {sleep} /usr/libexec/hg-agent; cp {sleep} /usr/libexec/hg-nobody; chown 65534 /usr/libexec/hg-nobody; "
              f"cp {sleep} /usr/local/sbin/hg-tool; "
              "/usr/libexec/hg-agent 30 & /usr/libexec/hg-agent 30 & /usr/libexec/hg-nobody 30 & "
              f"/usr/local/sbin/hg-tool 30 & {sleep} 30 & wait")
    z = Zoo(tmp_path_factory.mktemp("unpackaged"))
    try:
        ns = z.start("ns", ["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
        wait_until("the programs run", lambda: len(children(ns)) == 5 and all(
            exe_of(c) not in ("", "/usr/bin/dash") for c in children(ns)))
        pids: dict[str, list[int]] = {}
        for c in children(ns):
            pids.setdefault(exe_of(c), []).append(c)
        yield pids
    finally:
        z.stop()


def test_unpackaged_program_in_a_system_directory(namespace: dict[str, list[int]]) -> None:
    findings, skipped = run_one(CHECK, LiveHost())
    assert not skipped
    hits = hits_by_pid(findings)
    agents = sorted(namespace["/usr/libexec/hg-agent"])
    f = hits[agents[0]]
    assert f.target["exe"] == "/usr/libexec/hg-agent"
    assert sorted(p["pid"] for p in f.evidence["processes"]) == agents and f.evidence["process_count"] == 2
    assert sorted(int(dict(s.args)["pid"]) for s in f.remediation.steps) == agents  # type: ignore[union-attr]
    assert {dict(s.args)["exe"] for s in f.remediation.steps} == {"/usr/libexec/hg-agent"}  # type: ignore[union-attr]
    assert f.severity == "high" and f.evidence["reasons"] == ["changed within 7 days"]
    assert f.evidence["package_database"] == "dpkg" and f.evidence["exe_uid"] == 0
    assert "dpkg -S /usr/libexec/hg-agent" in (f.remediation.manual or "")
    [nobody] = namespace["/usr/libexec/hg-nobody"]
    assert "owned by uid 65534, not root" in hits[nobody].evidence["reasons"]
    for quiet in ("/usr/local/sbin/hg-tool", os.path.realpath(shutil.which("sleep") or "")):
        [pid] = namespace[quiet]
        assert pid not in hits, hits[pid].title


def test_severity_without_recent_changes(namespace: dict[str, list[int]]) -> None:
    """A root-owned unpackaged program is medium when recent changes are not counted; one owned by another
    user stays high."""
    findings, _ = run_one(CHECK, LiveHost(), make_config(processes={"recent_change_days": 0}))
    hits = hits_by_pid(findings)
    agent = hits[namespace["/usr/libexec/hg-agent"][0]]
    assert agent.severity == "medium" and agent.evidence["reasons"] == []
    nobody = hits[namespace["/usr/libexec/hg-nobody"][0]]
    assert nobody.severity == "high" and nobody.evidence["reasons"] == ["owned by uid 65534, not root"]


def test_listing_is_capped(namespace: dict[str, list[int]]) -> None:
    findings, _ = run_one(CHECK, LiveHost(), make_config(processes={"processes_per_finding": 1}))
    [f] = [f for f in findings if f.target["exe"] == "/usr/libexec/hg-agent"]
    assert f.evidence["process_count"] == 2 and len(f.evidence["processes"]) == 1
    assert len(f.remediation.steps) == 1 and "1 more processes" in (f.remediation.manual or "")


def test_no_package_database_is_unsupported(namespace: dict[str, list[int]]) -> None:
    """Without a database hostguard reads, "no owner" would be a guess: the check is not run."""
    findings, skipped = run_one(CHECK, LiveHost(), given={EXE_OWNERS: FileOwners({}, None)})
    assert findings == []
    assert [(s.check, s.reason) for s in skipped] == [(CHECK, "unsupported")]


def test_a_process_in_another_root_is_not_judged(tmp_path: Path) -> None:
    """A chrooted copy of sleep at <tree>/usr/sbin: the live listing marks it as seeing another root, and the
    check leaves such processes alone even when their path reads like a system one."""
    need_root("chroot")
    need_tool("chroot", "sleep", "ldd")
    sleep = os.path.realpath(shutil.which("sleep") or "")
    tree = tmp_path / "tree"
    libs = [w for w in subprocess.run(["ldd", sleep], capture_output=True, text=True, check=True).stdout.split()
            if w.startswith("/")]
    for path in (sleep, *libs):
        copy = tree / path.lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, copy)
    (tree / "usr/sbin").mkdir(parents=True, exist_ok=True)
    shutil.copy(sleep, tree / "usr/sbin/hg-jailed")
    z = Zoo(tmp_path)
    try:
        pid = z.start("jailed", ["chroot", str(tree), "/usr/sbin/hg-jailed", "30"])
        wait_until("the chrooted program runs", lambda: exe_of(pid).endswith("/usr/sbin/hg-jailed"))
        [proc] = [p for p in LiveHost().processes() if p.pid == pid]
        assert proc.host_root is False
        assert all(p.host_root for p in LiveHost().processes() if p.pid == os.getpid())
        # what a container's process looks like from the host: a system path, another root
        inside = ProcessInfo(pid, 1, "hg-jailed", "/usr/sbin/hg-jailed", "root", proc.create_time,
                             ("/usr/sbin/hg-jailed", "30"), "/usr/sbin/hg-jailed", exe_uid=0, host_root=False)
        findings, _ = run_one(CHECK, LiveHost(), given={PROCESSES: (inside,),
                                                         EXE_OWNERS: FileOwners({}, "dpkg")})
        assert findings == []
        findings, _ = run_one(CHECK, LiveHost(), given={PROCESSES: (replace(inside, host_root=True),),
                                                         EXE_OWNERS: FileOwners({}, "dpkg")})
        assert [f.target["exe"] for f in findings] == ["/usr/sbin/hg-jailed"]  # the same process on the host is a hit
    finally:
        z.stop()
