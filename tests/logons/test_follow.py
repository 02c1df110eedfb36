"""`hostguard logons follow` on real files in a temp dir, run as a real subprocess (no --block): events stored
once, each new alert printed once, rotation (rename and a new file) and copytruncate, SIGTERM ends it with 0.

The follower is paused with SIGSTOP while a rotation is made, so the test decides exactly which lines are
unread when the path changes (without it, a poll landing in the middle would hide a bug). Its own pieces that
need no process (the copy finder, the repeat-offender duration, the block request of an alert) are tested
in-process below; the repeat-offender blocks use a real Blocker whose nft runs in throwaway network namespaces
(`unshare -n`), never this machine's ruleset."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostguard.detect import brute_force
from hostguard.detect.base import Context
from hostguard.findings import Alert
from hostguard.logons.follow import Responder, block_request, find_copy, repeat_duration, still_current
from hostguard.respond.block import Blocker
from hostguard.respond.nft_block import Nft
from hostguard.respond.protect import LOOPBACK, Protected, ProtectedNet
from hostguard.store.state import StateStore
from tests.conftest import need_root, need_tool
from tests.detect.streams import configured, failures
from tests.logons.test_journal_real import REMOTE, export_entry

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
ATTACKER, QUIET, ELSEWHERE = "192.0.2.9", "198.51.100.7", "203.0.113.50"
CONFIG = "[detect.brute_force]\nfast_failures = 3\n[detect.success_after]\nfailures = 50\n"


def line(second: int, ip: str, user: str = "root") -> str:
    """One sshd failure in classic syslog form, ``second`` seconds into the minute (distinct lines)."""
    return (f"Dec  3 10:{second // 60:02d}:{second % 60:02d} web1 sshd[{1000 + second}]: Failed password for {user} "
            f"from {ip} port {40000 + second} ssh2\n")


class Follow:
    """`hostguard logons follow` as a subprocess; its stdout lines collected by a thread."""

    def __init__(self, tmp: Path, *args: str) -> None:
        (tmp / "hg.toml").write_text(CONFIG)
        self.state = tmp / "state"
        argv = [sys.executable, "-m", "hostguard.cli", "--config", str(tmp / "hg.toml"), "--state", str(self.state),
                "logons", "follow", "--format", "jsonl", "--interval", "0.1", *args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self.err_thread = threading.Thread(target=self._pump_err, daemon=True)
        self.err_thread.start()
        self.until(lambda: any("following " in e for e in self.err), "follow did not say it is following")

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            self.lines.put(text)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        self.err.extend(self.proc.stderr)

    def stored(self) -> list[tuple[str, int, str | None]]:
        """(file, line, ip) of every stored event, in storing order."""
        if not (self.state / "state.db").exists():
            return []
        db = sqlite3.connect(self.state / "state.db", timeout=10)
        try:
            return [(os.path.basename(p), n, ip) for p, n, ip in
                    db.execute("SELECT path, line, ip FROM logon_events ORDER BY id")]
        except sqlite3.OperationalError:  # the tables are not made yet
            return []
        finally:
            db.close()

    def until(self, what: Callable[[], bool], message: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert self.proc.poll() is None, f"follow ended: {''.join(self.err)}"
            assert time.monotonic() < deadline, f"{message}; stored: {self.stored()}"
            time.sleep(0.05)

    def stored_count(self, n: int) -> None:
        self.until(lambda: len(self.stored()) >= n, f"{n} events not stored")
        time.sleep(0.3)  # a few more polls: nothing more may come

    def stop(self) -> tuple[int, list[dict[str, object]], str]:
        """SIGTERM; the exit code, the alerts printed, stderr."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        time.sleep(0.1)
        alerts = []
        while not self.lines.empty():
            alerts.append(json.loads(self.lines.get()))
        self.err_thread.join(timeout=5)
        return code, alerts, "".join(self.err)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The follower stopped (SIGSTOP) while the block runs: no poll can see a half-made rotation."""
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def follow(tmp_path: Path) -> Iterator[Callable[..., Follow]]:
    started: list[Follow] = []

    def start(*args: str) -> Follow:
        started.append(Follow(tmp_path, *args))
        return started[-1]

    yield start
    for f in started:
        f.kill()


def targets(alerts: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(a["id"], a["target"]) for a in alerts]


def test_a_growing_file_is_stored_once_and_each_alert_printed_once(tmp_path: Path,
                                                                   follow: Callable[..., Follow]) -> None:
    log = tmp_path / "auth.log"
    log.write_text(line(1, ATTACKER) + line(2, QUIET))
    f = follow(str(log))
    f.stored_count(2)
    with log.open("a") as out:  # the attacker crosses the threshold of 3; the quiet source stays at 2
        out.write(line(3, ATTACKER) + line(4, QUIET))
        out.flush()
        time.sleep(0.4)
        out.write(line(5, ATTACKER) + line(6, ATTACKER))
        out.write(line(7, ATTACKER)[:30])  # a line still being written: not read until complete
    f.stored_count(6)
    with log.open("a") as out:
        out.write(line(7, ATTACKER)[30:])
    f.stored_count(7)
    code, alerts, err = f.stop()
    assert code == 0, err
    assert targets(alerts) == [("logon.brute_force", {"kind": "ip", "address": ATTACKER})]
    assert f.stored() == [("auth.log", n, ip) for n, ip in
                          enumerate([ATTACKER, QUIET, ATTACKER, QUIET, ATTACKER, ATTACKER, ATTACKER], start=1)]
    # started again on the same state: nothing is stored twice, the alert is not printed again
    again = follow(str(log))
    time.sleep(1.0)
    code, alerts, err = again.stop()
    assert code == 0 and alerts == [], (alerts, err)
    assert len(again.stored()) == 7


def test_rotation_finishes_the_old_file_under_its_new_name_then_reads_the_new_one(
        tmp_path: Path, follow: Callable[..., Follow]) -> None:
    log = tmp_path / "auth.log"
    log.write_text(line(1, ATTACKER))
    f = follow(str(log))
    f.stored_count(1)
    with f.paused():
        with log.open("a") as out:
            out.write(line(2, ATTACKER))               # unread when the rotation happens
        log.rename(tmp_path / "auth.log.1")
        log.write_text(line(3, ATTACKER) + line(4, QUIET))  # the new file
    f.stored_count(4)
    with log.open("a") as out:
        out.write(line(5, QUIET))
    f.stored_count(5)
    code, alerts, err = f.stop()
    assert code == 0, err
    assert f.stored() == [("auth.log", 1, ATTACKER), ("auth.log.1", 2, ATTACKER), ("auth.log", 1, ATTACKER),
                          ("auth.log", 2, QUIET), ("auth.log", 3, QUIET)]
    assert targets(alerts) == [("logon.brute_force", {"kind": "ip", "address": ATTACKER})]
    assert [s["at"] for s in alerts[0]["evidence"]["samples"]] == [  # type: ignore[index]
        f"{log}:1", f"{tmp_path / 'auth.log.1'}:2", f"{log}:1"]


def test_rotation_to_a_deleted_file_still_reads_its_last_lines(tmp_path: Path,
                                                               follow: Callable[..., Follow]) -> None:
    log = tmp_path / "auth.log"
    log.write_text(line(1, QUIET))
    f = follow(str(log))
    f.stored_count(1)
    with f.paused():
        with log.open("a") as out:
            out.write(line(2, ELSEWHERE))
        log.unlink()                                   # rotated and compressed away at once
        log.write_text(line(3, QUIET))
    f.stored_count(3)
    code, _, err = f.stop()
    assert code == 0, err
    assert [(n, ip) for _, n, ip in f.stored()] == [(1, QUIET), (2, ELSEWHERE), (1, QUIET)]


@pytest.mark.parametrize("new_content", ["shorter", "longer"])
def test_copytruncate_reads_the_copy_then_the_new_start_and_ignores_other_archives(
        tmp_path: Path, follow: Callable[..., Follow], new_content: str) -> None:
    log = tmp_path / "auth.log"
    log.write_text(line(1, QUIET) + line(2, QUIET))
    with gzip.open(tmp_path / "auth.log.2.gz", "wt") as old:  # an older archive: never the copy, never read
        old.write(line(50, ELSEWHERE))
    f = follow(str(log))
    f.stored_count(2)
    with f.paused():
        with log.open("a") as out:
            out.write(line(3, ATTACKER))               # unread when logrotate copies and truncates
        (tmp_path / "auth.log.1").write_bytes(log.read_bytes())
        os.truncate(log, 0)
        more = [line(10 + i, ATTACKER) for i in range(2 if new_content == "shorter" else 6)]
        with log.open("a") as out:
            out.write("".join(more))
    f.stored_count(3 + len(more))
    code, alerts, err = f.stop()
    assert code == 0, err
    assert f.stored() == [("auth.log", 1, QUIET), ("auth.log", 2, QUIET), ("auth.log.1", 3, ATTACKER),
                          *[("auth.log", n, ATTACKER) for n in range(1, len(more) + 1)]]
    assert ELSEWHERE not in {ip for _, _, ip in f.stored()}
    assert targets(alerts) == [("logon.brute_force", {"kind": "ip", "address": ATTACKER})]


def test_a_journal_file_is_followed_from_the_stored_cursor(tmp_path: Path, follow: Callable[..., Follow]) -> None:
    if REMOTE is None:
        pytest.skip(reason="systemd-journal-remote is not installed (Debian package systemd-journal-remote)")
    need_tool("journalctl")
    journal = tmp_path / "remote.journal"
    base = 1709546400_000000

    failed = "Failed password for invalid user deploy from {ip} port {port} ssh2"
    closed = "Connection closed by invalid user deploy {ip} port {port} [preauth]"

    def append(*entries: tuple[int, str], message: str = failed) -> None:
        data = b"".join(export_entry(base + at * 1_000_000, [("SYSLOG_IDENTIFIER", b"sshd"), ("_PID", b"11"), (
            "MESSAGE", message.format(ip=ip, port=40000 + at).encode())]) for at, ip in entries)
        subprocess.run([REMOTE, "-o", str(journal), "-"], input=data, check=True, capture_output=True)

    append((1, ATTACKER), (2, QUIET))
    f = follow("--journal-file", str(journal))
    f.stored_count(2)
    append((3, ATTACKER), (4, ATTACKER))  # written to the same file while it is followed
    f.stored_count(4)
    # a read later, the close of connection 4 (its failure stored: no attempt) and of one that tried nothing
    append((4, ATTACKER), (5, ELSEWHERE), message=closed)
    f.stored_count(5)
    code, alerts, err = f.stop()
    assert code == 0, err
    assert [ip for _, _, ip in f.stored()] == [ATTACKER, QUIET, ATTACKER, ATTACKER, ELSEWHERE]
    assert targets(alerts) == [("logon.brute_force", {"kind": "ip", "address": ATTACKER})]
    again = follow("--journal-file", str(journal))
    time.sleep(1.0)
    code, alerts, err = again.stop()
    assert code == 0 and alerts == [] and len(again.stored()) == 5, (alerts, err)


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hostguard.cli", "--state", str(tmp_path / "s"), "logons", "follow",
                           str(tmp_path / "nope.log")], capture_output=True, text=True, env=ENV, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "nope.log: no such file" in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    ([], "logons follow needs at least one FILE"),
    (["x.log", "--max-block", "3x"], "--max-block '3x': a duration is"),
    (["x.log", "--interval", "0"], "--interval 0.0: from 0.05 to 3600 seconds"),
])
def test_bad_arguments_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "x.log").write_text("")
    done = subprocess.run([sys.executable, "-m", "hostguard.cli", "--state", str(tmp_path / "s"), "logons", "follow",
                           *args], capture_output=True, text=True, env=ENV, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


# -- the pieces, in-process ----------------------------------------------------------------------------------------

def test_the_copy_is_the_sibling_starting_with_the_old_content(tmp_path: Path) -> None:
    head = line(1, QUIET).encode()
    (tmp_path / "auth.log").write_bytes(b"new start\n")
    (tmp_path / "auth.log.2.gz").write_bytes(gzip.compress(line(9, ELSEWHERE).encode()))  # near miss
    (tmp_path / "auth.logger").write_bytes(head)             # near miss: another log's name, not a sibling
    assert find_copy(str(tmp_path / "auth.log"), head) is None
    (tmp_path / "auth.log-20261203.gz").write_bytes(gzip.compress(head + line(2, QUIET).encode()))
    assert find_copy(str(tmp_path / "auth.log"), head) == str(tmp_path / "auth.log-20261203.gz")


@given(st.integers(min_value=60, max_value=365 * 86400), st.integers(min_value=0, max_value=10_000),
       st.integers(min_value=60, max_value=365 * 86400))
def test_a_repeat_duration_doubles_never_shrinks_and_stays_under_the_maximum(base: int, previous: int,
                                                                            maximum: int) -> None:
    seconds = repeat_duration(base, previous, maximum)
    assert seconds >= base and (seconds <= maximum or seconds == base)
    assert repeat_duration(base, previous + 1, maximum) >= seconds
    if previous < 20 and base << previous <= maximum:
        assert seconds == base << previous


T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def brute_force_alert(ip: str, at: datetime = T0) -> Alert:
    """The alert the real detector raises for four failures of ``ip`` ending at ``at``."""
    cfg = configured(brute_force={"fast_failures": 3})
    state, ctx = brute_force.State(), Context(cfg, lambda _: None)
    raised = []
    for e in failures(4):
        raised += brute_force.detect(replace(e, ip=ip, ts=at.timestamp() - 4 + e.ts - failures(1)[0].ts,
                                             time=None), state, ctx)
    return raised[-1].alert


def test_the_block_request_is_the_alerts_action_step() -> None:
    alert = brute_force_alert(ATTACKER)
    assert block_request(alert) == (ATTACKER, 3600)
    assert block_request(replace(alert, remediation=replace(alert.remediation, steps=()))) is None  # near miss
    assert still_current(alert, T0 + timedelta(seconds=60))
    assert not still_current(alert, T0 + timedelta(seconds=301))  # after the window: catching up on old logs


def test_repeat_offenders_are_blocked_twice_as_long_each_time_up_to_the_maximum(tmp_path: Path) -> None:
    need_root("nft in a throwaway network namespace (unshare -n)")
    need_tool("unshare", "nft")
    now = [T0]
    state = StateStore(str(tmp_path / "state"))
    try:
        protected = Protected(tuple(ProtectedNet(n, "loopback") for n in LOOPBACK))
        blocker = Blocker(state, Nft(("unshare", "-n", "nft")), lambda: protected, host_key="test",
                          clock=lambda: now[0])
        responder = Responder(blocker, maximum=5 * 3600)
        got = []
        for _ in range(4):
            line_ = responder.respond(brute_force_alert(ATTACKER, now[0]), now[0])
            assert line_ is not None and line_.startswith(f"blocked {ATTACKER}/32 until "), line_
            [record] = blocker.listing()
            got.append(((record.expires or now[0]) - now[0]).total_seconds())
            now[0] += timedelta(hours=6)  # expired before the next attack
        assert got == [3600, 7200, 14400, 18000]
        # the neighbour has no history: the detector's own hour
        line_ = responder.respond(brute_force_alert("192.0.2.10", now[0]), now[0])
        assert line_ is not None and "192.0.2.10/32" in line_
        assert [(str(r.network), r.source, ((r.expires or now[0]) - now[0]).total_seconds())
                for r in blocker.listing()] == [("192.0.2.10/32", "logon.brute_force", 3600)]
        # an owner's address is refused, with the reason, and nothing is recorded
        line_ = responder.respond(brute_force_alert("127.0.0.1", now[0]), now[0])
        assert line_ is not None and line_.startswith("not blocking: refusing to block 127.0.0.1/32") and \
            "(loopback)" in line_
        assert len(blocker.store.history()) == 5
    finally:
        state.close()
