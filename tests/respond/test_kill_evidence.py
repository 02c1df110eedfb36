"""The program kept before a kill (`respond/kill.py`, issue 9): ``<state>/evidence/<sha256>``.

Each target runs a program the test made: a copy of ``sleep`` with random bytes appended (an ELF runs
with trailing bytes; the digest is then this test's alone), deleted once running, so the only copy is
the one the kernel holds for the process. Targets are bounded in time and killed at teardown.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hostguard.respond.fix import EVIDENCE_DIR
from hostguard.respond.kill import (
    ALREADY_KEPT,
    KEPT,
    NOT_KEPT,
    REFUSED,
    TERMINATED,
    TOO_BIG,
    keep_program,
    kill_process,
)
from tests.respond.test_kill import LIFETIME, hg, kills


class Program:
    """A unique program file (sleep plus random bytes) and the processes started from it."""

    def __init__(self, directory: Path) -> None:
        sleep = shutil.which("sleep")
        assert sleep is not None
        self.path = directory / f"hg-evidence-{secrets.token_hex(3)}"
        self.data = Path(sleep).read_bytes() + secrets.token_bytes(64)
        self.path.write_bytes(self.data)
        self.path.chmod(0o700)
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> tuple[int, float]:
        """A process of the program: (pid, start time as the findings carry it)."""
        proc = subprocess.Popen([str(self.path), LIFETIME])
        self.procs.append(proc)
        for _ in range(100):
            if os.readlink(f"/proc/{proc.pid}/exe").startswith(str(self.path)):
                break
            time.sleep(0.01)
        return proc.pid, psutil.Process(proc.pid).create_time()

    def delete(self) -> None:
        self.path.unlink()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def program(tmp_path: Path) -> Iterator[Program]:
    p = Program(tmp_path)
    try:
        yield p
    finally:
        p.stop()


def fingerprint(state: Path, pid: int) -> str:
    """The target's own processes.deleted_exe finding (fix acts on nothing else of this host)."""
    rc, out = hg(state, "scan", "--only", "processes.deleted_exe", "--format", "json")
    assert rc in (0, 1), out
    [fp] = [f["fingerprint"] for f in json.loads(out)["findings"]
            if f["id"] == "processes.deleted_exe" and f["evidence"]["pid"] == pid]
    return str(fp)


def evidence(state: Path) -> dict[str, tuple[int, int]]:
    """name -> (inode, mtime_ns) of every entry of the evidence store."""
    directory = state / EVIDENCE_DIR
    if not directory.exists():
        return {}
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.iterdir()}


def test_fix_kill_keeps_the_deleted_program_and_names_it(tmp_path: Path, program: Program) -> None:
    pid, _ = program.start()
    program.delete()
    state = tmp_path / "state"
    fp = fingerprint(state, pid)
    rc, out = hg(state, "fix", "--kill", "--yes", "--only", "processes", fp)
    assert rc == 0, out
    assert program.procs[0].wait(timeout=10) == -signal.SIGTERM
    kept = state / EVIDENCE_DIR / program.sha256
    assert kept.read_bytes() == program.data
    assert stat.S_IMODE(kept.stat().st_mode) == 0o400
    assert stat.S_IMODE((state / EVIDENCE_DIR).stat().st_mode) == 0o700
    assert list(evidence(state)) == [program.sha256]   # no private name left behind
    [(subject, _, detail)] = kills(state)
    assert subject == str(pid)
    assert detail["kept"] == {"status": KEPT, "path": str(kept), "sha256": program.sha256, "size": len(program.data),
                              "detail": ""}
    assert f"program kept: {kept} (sha256 {program.sha256}, {len(program.data)} bytes)" in out
    manifest = json.loads(next((state / "fixes").glob("*/manifest.json")).read_text())
    assert any(str(kept) in note for note in manifest["notes"])


def test_the_same_program_already_kept_is_not_rewritten(tmp_path: Path, program: Program) -> None:
    first, first_start = program.start()
    second, second_start = program.start()
    program.delete()
    store = str(tmp_path / "state" / EVIDENCE_DIR)
    (tmp_path / "state").mkdir()
    one = kill_process(first, first_start, None, grace=2, evidence_dir=store)
    assert one.outcome == TERMINATED and one.kept is not None and one.kept.status == KEPT
    before = evidence(tmp_path / "state")
    time.sleep(0.02)   # a rewrite would change the mtime
    two = kill_process(second, second_start, None, grace=2, evidence_dir=store)
    assert two.outcome == TERMINATED and two.kept is not None
    assert (two.kept.status, two.kept.path, two.kept.sha256) == (ALREADY_KEPT, one.kept.path, program.sha256)
    assert evidence(tmp_path / "state") == before == {program.sha256: before[program.sha256]}


def test_a_refused_kill_keeps_nothing(tmp_path: Path, program: Program) -> None:
    pid, start = program.start()
    program.delete()
    store = str(tmp_path / "state" / EVIDENCE_DIR)
    (tmp_path / "state").mkdir()
    late = kill_process(pid, start + 1.0, None, grace=0.1, evidence_dir=store)
    assert late.outcome == REFUSED and "started at" in late.detail and late.kept is None
    other = kill_process(pid, start, "/usr/bin/sleep", grace=0.1, evidence_dir=store)
    assert other.outcome == REFUSED and other.kept is None
    assert evidence(tmp_path / "state") == {} and program.procs[0].poll() is None


def test_a_program_over_the_limit_is_recorded_as_too_big_and_still_killed(tmp_path: Path, program: Program) -> None:
    pid, start = program.start()
    (tmp_path / "state").mkdir()
    result = kill_process(pid, start, None, grace=2, evidence_dir=str(tmp_path / "state" / EVIDENCE_DIR),
                          keep_limit=len(program.data) - 1)
    assert result.outcome == TERMINATED and result.kept is not None
    assert (result.kept.status, result.kept.size, result.kept.path) == (TOO_BIG, len(program.data), None)
    assert evidence(tmp_path / "state") == {}
    # the limit itself is kept
    pid, start = program.start()
    exact = kill_process(pid, start, None, grace=2, evidence_dir=str(tmp_path / "state" / EVIDENCE_DIR),
                         keep_limit=len(program.data))
    assert exact.kept is not None and exact.kept.status == KEPT


def test_a_failed_copy_is_reported_and_the_kill_goes_on(tmp_path: Path, program: Program) -> None:
    """The evidence directory is a symlink (planted, say): it is not followed, nothing is written where it
    points, the kill still happens and the output and the audit record say the program was not kept."""
    pid, _ = program.start()
    program.delete()
    state = tmp_path / "state"
    fp = fingerprint(state, pid)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (state / EVIDENCE_DIR).symlink_to(elsewhere)
    rc, out = hg(state, "fix", "--kill", "--yes", "--only", "processes", fp)
    assert rc == 0, out
    assert program.procs[0].wait(timeout=10) == -signal.SIGTERM
    assert list(elsewhere.iterdir()) == []
    [(subject, reason, detail)] = kills(state)
    assert subject == str(pid) and reason.startswith(TERMINATED)
    kept = detail["kept"]
    assert isinstance(kept, dict) and kept["status"] == NOT_KEPT and kept["path"] is None
    assert "warning: program not kept:" in out


def test_a_program_run_from_a_memfd_is_kept(tmp_path: Path) -> None:
    """A fileless program (memfd, executed through /proc/self/fd): /proc/<pid>/exe still reads it."""
    sleep = shutil.which("sleep")
    assert sleep is not None
    data = Path(sleep).read_bytes() + secrets.token_bytes(64)
    fd = os.memfd_create("hg-evidence", 0)
    try:
        os.write(fd, data)
        proc = subprocess.Popen([f"/proc/self/fd/{fd}", LIFETIME], pass_fds=(fd,))
    finally:
        os.close(fd)
    try:
        for _ in range(100):
            if os.readlink(f"/proc/{proc.pid}/exe").startswith("/memfd:"):
                break
            time.sleep(0.01)
        (tmp_path / "state").mkdir()
        store = tmp_path / "state" / EVIDENCE_DIR
        result = kill_process(proc.pid, psutil.Process(proc.pid).create_time(), None, grace=2,
                              evidence_dir=str(store))
        assert result.outcome == TERMINATED and result.kept is not None and result.kept.status == KEPT
        digest = hashlib.sha256(data).hexdigest()
        assert result.kept.path == str(store / digest) and (store / digest).read_bytes() == data
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_a_file_of_another_size_under_the_digest_is_left_alone(tmp_path: Path) -> None:
    """Something already named by the digest that cannot be those bytes is neither trusted nor replaced."""
    source = tmp_path / "prog"
    source.write_bytes(b"\x7fELF not really" + secrets.token_bytes(32))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    store = tmp_path / "evidence"
    store.mkdir(mode=0o755)
    (store / digest).write_bytes(b"short")
    fd = os.open(source, os.O_RDONLY)
    try:
        kept = keep_program(fd, str(store))
    finally:
        os.close(fd)
    assert kept.status == NOT_KEPT and "left alone" in kept.detail and kept.sha256 == digest
    assert (store / digest).read_bytes() == b"short" and sorted(p.name for p in store.iterdir()) == [digest]
    assert stat.S_IMODE(store.stat().st_mode) == 0o700   # tightened: it holds malware samples
