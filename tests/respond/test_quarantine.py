"""Quarantine on real files: moved never deleted, refused when the path or the file changed since the scan,
immutable and hard-linked files, other file systems, running programs, restore's refusals, the audit log."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.findings import Finding, Severity
from hostguard.remediation import Remediation
from hostguard.respond import quarantine as q
from hostguard.respond.fix import FixSettings, make_plan, preview
from hostguard.store.quarantine import FAILED, PURGED, QUARANTINED, RESTORED, QuarantineStore
from hostguard.store.state import StateStore
from tests.conftest import need_root
from tests.respond.quarantine_helpers import HOST, chattr, flags_of, ident, snapshot, tmpfs, unfreeze

SHELL = b"<?php @eval($_POST['hostguard-test-webshell']); ?>\n"
T = "2026-01-01T12:00:00+00:00"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    need_root("quarantine (chattr, chown, security.* attributes)")
    store = StateStore(str(tmp_path / "state"))
    yield store
    store.close()
    unfreeze(tmp_path)


def plant(tmp_path: Path, data: bytes = SHELL, name: str = "shell.php") -> Path:
    web = tmp_path / "www" / "site"
    web.mkdir(parents=True, exist_ok=True)
    path = web / name
    path.write_bytes(data)
    return path


def quarantine(state: StateStore, path: Path | bytes, **kw: object) -> q.Quarantined:
    dev, ino = ident(path)
    args: dict[str, object] = {"sha256": None, "rule": "hostguard.webshell_eval", "reason": "malware scan",
                               "clock": lambda: T}
    args.update(kw)
    return q.quarantine(state, HOST, os.fsdecode(path), dev, ino, **args)  # type: ignore[arg-type]


def stored_dir(state: StateStore) -> Path:
    return Path(state.directory) / "quarantine"


def test_the_stored_copy_is_private_unreadable_to_scanners_and_the_original_is_gone(state: StateStore,
                                                                                  tmp_path: Path) -> None:
    path = plant(tmp_path)
    before = snapshot(path)
    done = quarantine(state, path, sha256=hashlib.sha256(SHELL).hexdigest().upper())   # the scanner's digest
    assert not path.exists() and path.parent.is_dir()
    files = os.listdir(stored_dir(state))
    assert files == [f"{done.entry.id}.hgq"]
    copy = stored_dir(state) / files[0]
    assert stat.S_IMODE(os.stat(stored_dir(state)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(copy).st_mode) == 0o400
    raw = copy.read_bytes()
    assert raw.startswith(b"hostguard quarantine v1 " + done.entry.id.encode() + b"\n")
    assert SHELL not in raw and b"eval" not in raw and b"hostguard-test-webshell" not in raw
    assert subprocess.run(["grep", "-c", "-F", "eval($_POST", str(copy)], capture_output=True).stdout == b"0\n"
    assert len(raw) == len(b"hostguard quarantine v1 \n") + 12 + len(SHELL)
    entry = QuarantineStore(state).get(done.entry.id)
    assert (entry.path, entry.size, entry.state, entry.rule, entry.reason, entry.nlink) == (
        os.fsencode(path), len(SHELL), QUARANTINED, "hostguard.webshell_eval", "malware scan", 1)
    assert (entry.uid, entry.gid, oct(entry.mode), entry.mtime_ns) == (0, 0, before["mode"], before["mtime_ns"])
    assert done.notes == [] and done.processes == []
    restored = q.restore(state, HOST, done.entry.id, clock=lambda: T)
    assert snapshot(path) == before
    assert restored.notes == ["ctime cannot be restored (no call sets it): it is the time of the restore",
                              f"the stored copy stays until: hostguard quarantine purge {done.entry.id}"]
    assert [(a.action, a.subject, a.reason) for a in state.audit_log()] == [
        ("quarantine", done.entry.id, "hostguard.webshell_eval: malware scan"),
        ("restore", done.entry.id, f"restored to {path}")]


def test_the_scanners_sha256_is_checked_and_a_changed_file_stays(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path)
    dev, ino = ident(path)
    with path.open("r+b") as f:   # same inode, other content
        f.write(b"<?php echo 1; ?>")
    with pytest.raises(q.QuarantineError, match="content differs from the scan") as caught:
        q.quarantine(state, HOST, str(path), dev, ino, sha256="ab" * 32, rule="r", reason="scan", clock=lambda: T)
    assert str(caught.value).endswith(f"scanned {'ab' * 32}): nothing moved")
    assert path.read_bytes().startswith(b"<?php echo 1; ?>")
    assert os.listdir(stored_dir(state)) == [] and QuarantineStore(state).listing() == []
    assert [(a.action, a.subject, a.reason.split(":")[0]) for a in state.audit_log()] == [
        ("quarantine", str(path), "refused")]


def test_a_file_replaced_since_the_scan_is_refused(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path)
    dev, ino = ident(path)
    other = path.with_name("new.php")
    other.write_bytes(b"owner's file")
    os.rename(other, path)
    with pytest.raises(q.QuarantineError, match=f"{path}: not the file scanned .* replaced since the scan, nothing moved"):
        q.quarantine(state, HOST, str(path), dev, ino, sha256=None, rule="r", reason="scan")
    assert path.read_bytes() == b"owner's file" and QuarantineStore(state).listing() == []


def test_a_symlink_swapped_into_the_path_is_never_followed(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path)
    dev, ino = ident(path)
    site = path.parent
    moved = site.with_name("moved")
    os.rename(site, moved)
    os.symlink(moved, site)          # the same file, reached through a link: identity alone would pass
    with pytest.raises(q.QuarantineError, match=f"^{site}: a symbolic link \\(never followed\\)$"):
        q.quarantine(state, HOST, str(path), dev, ino, sha256=None, rule="r", reason="scan")
    assert (moved / "shell.php").read_bytes() == SHELL
    os.unlink(site)
    os.mkdir(site)
    os.symlink(moved / "shell.php", path)   # the name itself a link to the scanned file
    with pytest.raises(q.QuarantineError, match="a symbolic link now \\(never followed\\): nothing moved"):
        q.quarantine(state, HOST, str(path), dev, ino, sha256=None, rule="r", reason="scan")
    assert (moved / "shell.php").read_bytes() == SHELL and QuarantineStore(state).listing() == []


def test_a_fifo_or_directory_is_refused(state: StateStore, tmp_path: Path) -> None:
    fifo = tmp_path / "www" / "pipe"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    with pytest.raises(q.QuarantineError, match="pipe: not a regular file: nothing moved"):
        quarantine(state, fifo)
    with pytest.raises(q.QuarantineError, match="www: not a regular file"):
        quarantine(state, tmp_path / "www")


def test_an_immutable_file_is_moved_and_comes_back_immutable(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path)
    chattr(path, add=q.FS_IMMUTABLE_FL)
    before = snapshot(path)
    assert before["flags"] == q.FS_IMMUTABLE_FL
    done = quarantine(state, path)
    assert not path.exists()
    assert done.entry.flags is not None and done.entry.flags & q.FS_IMMUTABLE_FL
    assert done.notes == ["it was immutable/append-only (chattr +i/+a): recorded, cleared to move it, set again on "
                          "restore"]
    q.restore(state, HOST, done.entry.id)
    assert snapshot(path) == before
    with pytest.raises(PermissionError):
        path.write_bytes(b"x")


def test_an_append_only_file_round_trips(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path, b"log line\n" * 100, "miner.log")
    chattr(path, add=q.FS_APPEND_FL | q.FS_NODUMP_FL)
    before = snapshot(path)
    done = quarantine(state, path)
    q.restore(state, HOST, done.entry.id)
    assert snapshot(path) == before and before["flags"] == q.FS_APPEND_FL | q.FS_NODUMP_FL


def test_an_immutable_directory_is_refused_before_anything(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path)
    chattr(path.parent, add=q.FS_IMMUTABLE_FL)
    with pytest.raises(q.QuarantineError, match="its directory is immutable or append-only"):
        quarantine(state, path)
    assert path.read_bytes() == SHELL and QuarantineStore(state).listing() == []


def test_hard_links_keep_their_other_names_and_flags(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path)
    other = tmp_path / "www" / "other-name"
    os.link(path, other)
    chattr(path, add=q.FS_IMMUTABLE_FL)
    done = quarantine(state, path)
    assert done.entry.nlink == 2
    assert (f"it had 2 hard links: only this name was removed, 1 other name(s) still point at the same content "
            f"(find them: find / -xdev -inum {done.entry.ino})") in done.notes
    assert not path.exists() and other.read_bytes() == SHELL
    assert os.stat(other).st_nlink == 1 and (flags_of(other) or 0) & q.FS_IMMUTABLE_FL
    restored = q.restore(state, HOST, done.entry.id)
    assert ("the original had 2 hard links: only this name is restored (the others were never removed; they are "
            "separate files from now on)") in restored.notes
    assert path.read_bytes() == SHELL and ident(path) != ident(other)


def test_across_file_systems_from_a_tmpfs(state: StateStore, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "shm") as shm:
        path = shm / "kdevtmpfsi"
        path.write_bytes(bytes(range(256)) * 4096)
        os.chown(path, 1001, 1002)
        os.chmod(path, 0o4751)
        os.setxattr(path, "user.dropper", b"\x00\xffcurl")
        os.setxattr(path, "security.capability", q_cap())
        os.utime(path, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
        chattr(path, add=q.FS_IMMUTABLE_FL)
        before = snapshot(path)
        assert os.stat(path).st_dev != os.stat(state.directory).st_dev
        done = quarantine(state, path)
        assert not path.exists()
        q.restore(state, HOST, done.entry.id)
        after = snapshot(path)
        assert after == before and after["mode"] == "0o104751" and after["uid"] == 1001
        assert after["xattrs"] == {"user.dropper": b"\x00\xffcurl", "security.capability": q_cap()}


def q_cap() -> bytes:
    from tests.respond.quarantine_helpers import CAPABILITY
    return CAPABILITY


def test_restore_never_replaces_and_force_quarantines_the_file_in_the_way(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path)
    done = quarantine(state, path)
    path.write_bytes(b"the owner's new file")
    with pytest.raises(q.QuarantineError, match=f"^{path} exists now: restore --force quarantines it first, or "
                                                "restore --to PATH$"):
        q.restore(state, HOST, done.entry.id)
    assert path.read_bytes() == b"the owner's new file"
    forced = q.restore(state, HOST, done.entry.id, force=True)
    assert path.read_bytes() == SHELL
    assert forced.displaced is not None
    displaced = forced.displaced.entry
    assert (displaced.rule, displaced.reason, displaced.state) == (
        q.DISPLACED_RULE, f"in the way of restoring {done.entry.id}", QUARANTINED)
    back = q.restore(state, HOST, displaced.id, to=str(tmp_path / "kept" / "deep" / "new.txt"))
    assert (tmp_path / "kept" / "deep" / "new.txt").read_bytes() == b"the owner's new file"
    assert stat.S_IMODE(os.stat(tmp_path / "kept" / "deep").st_mode) == 0o700
    assert back.target == os.fsencode(tmp_path / "kept" / "deep" / "new.txt")
    assert [(e.id, e.state) for e in QuarantineStore(state).listing()] == [(done.entry.id, RESTORED),
                                                                           (displaced.id, RESTORED)]
    actions = [(a.action, a.subject, a.reason.split(":")[0]) for a in state.audit_log()]
    assert actions == [("quarantine", done.entry.id, "hostguard.webshell_eval"),
                       ("restore", done.entry.id, "refused"),
                       ("quarantine", displaced.id, "hostguard.restore"),
                       ("restore", done.entry.id, f"restored to {path}"),
                       ("restore", displaced.id, f"restored to {tmp_path}/kept/deep/new.txt")]


def test_restore_to_never_replaces_even_with_force(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path)
    done = quarantine(state, path)
    there = tmp_path / "there"
    there.write_bytes(b"keep me")
    for force in (False, True):
        with pytest.raises(q.QuarantineError, match=f"^{there} exists: restore --to never replaces a file$"):
            q.restore(state, HOST, done.entry.id, to=str(there), force=force)
    assert there.read_bytes() == b"keep me"
    os.symlink(tmp_path / "target", tmp_path / "link")
    with pytest.raises(q.QuarantineError, match="link exists: restore --to never replaces a file"):
        q.restore(state, HOST, done.entry.id, to=str(tmp_path / "link"))
    assert not (tmp_path / "target").exists()


def test_a_missing_directory_is_not_created_for_the_original_path(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path)
    done = quarantine(state, path)
    shutil.rmtree(tmp_path / "www")
    with pytest.raises(q.QuarantineError, match=f"^directory {tmp_path}/www is missing: not created$"):
        q.restore(state, HOST, done.entry.id)
    assert not (tmp_path / "www").exists()


def test_a_damaged_or_missing_stored_copy_restores_nothing(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path)
    done = quarantine(state, path)
    copy = stored_dir(state) / f"{done.entry.id}.hgq"
    os.chmod(copy, 0o600)
    with copy.open("r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(q.QuarantineError, match=f"quarantine entry {done.entry.id}: the stored copy is damaged"):
        q.restore(state, HOST, done.entry.id)
    assert os.listdir(path.parent) == []   # no temporary file left behind
    copy.unlink()
    with pytest.raises(q.QuarantineError, match=f"{done.entry.id}.hgq is missing$"):
        q.restore(state, HOST, done.entry.id)


def test_purge_deletes_the_stored_copy_only_and_once(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path)
    done = quarantine(state, path)
    entry, line = q.purge(state, HOST, done.entry.id, clock=lambda: T)
    assert line == f"purged {done.entry.id}: its stored copy of {path} is deleted"
    assert (entry.state, entry.purged_at) == (PURGED, T) and os.listdir(stored_dir(state)) == []
    with pytest.raises(q.QuarantineError, match=re.escape(f"entry {done.entry.id} was purged at {T}: nothing to delete")):
        q.purge(state, HOST, done.entry.id)
    with pytest.raises(q.QuarantineError, match=f"entry {done.entry.id} is purged: nothing to restore"):
        q.restore(state, HOST, done.entry.id)
    assert [(a.action, a.reason.split(":")[0]) for a in state.audit_log()] == [
        ("quarantine", "hostguard.webshell_eval"), ("purge", f"purged {done.entry.id}"), ("purge", "refused"),
        ("restore", "refused")]


def test_a_name_that_cannot_be_removed_keeps_the_file_and_a_failed_entry(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path)
    dev, ino = ident(path)
    real_unlink = os.unlink

    def refuse(name: object, *, dir_fd: int | None = None) -> None:
        if isinstance(name, bytes) and name.startswith(b".hostguard-quarantine-"):
            raise PermissionError(1, "Operation not permitted")
        real_unlink(name, dir_fd=dir_fd)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(q.os, "unlink", refuse)
        with pytest.raises(q.QuarantineError, match="not removed \\(Operation not permitted\\): the original is left "
                                                    "in place; its copy is kept as entry"):
            q.quarantine(state, HOST, str(path), dev, ino, sha256=None, rule="r", reason="scan")
    assert path.read_bytes() == SHELL  # put back under its own name
    assert sorted(p.name for p in path.parent.iterdir()) == ["shell.php"]
    [entry] = QuarantineStore(state).listing()
    assert entry.state == FAILED and entry.note == f"{path}: not removed (Operation not permitted)"


def sleeper(directory: Path, name: str = "kworker-fake") -> Path:
    program = directory / name
    shutil.copy2("/bin/sleep", program)
    return program


def wait_exec(proc: subprocess.Popen[bytes], program: Path) -> None:
    for _ in range(200):
        if os.stat(f"/proc/{proc.pid}/exe").st_ino == os.stat(program).st_ino:
            return
        time.sleep(0.01)
    raise AssertionError("the program did not start")


def test_a_running_program_is_reported_and_killed_only_when_asked(state: StateStore, tmp_path: Path) -> None:
    program = sleeper(tmp_path)
    proc = subprocess.Popen([str(program), "300"])
    try:
        wait_exec(proc, program)
        done = quarantine(state, program)
        assert [(p.pid, p.exe, p.outcome) for p in done.processes] == [(proc.pid, str(program), None)]
        assert (f"pid {proc.pid} is running it ({program}): it keeps running from the removed file; kill it with "
                "hostguard fix --kill, or quarantine with kill") in done.notes
        assert proc.poll() is None
        assert done.entry.processes[0]["pid"] == proc.pid and done.entry.processes[0]["kill"] is None
    finally:
        proc.kill()
        proc.wait()


def test_kill_stops_a_process_running_a_deleted_name_of_the_file(state: StateStore, tmp_path: Path) -> None:
    program = sleeper(tmp_path, "a")
    second = tmp_path / "b"
    os.link(program, second)
    proc = subprocess.Popen([str(program), "300"])
    try:
        wait_exec(proc, program)
        program.unlink()   # the process's exe is "(deleted)" now; the content lives on as b
        assert os.readlink(f"/proc/{proc.pid}/exe") == f"{program} (deleted)"
        done = quarantine(state, second, kill=True, kill_grace=2.0)
        assert [(p.pid, p.exe, p.outcome) for p in done.processes] == [(proc.pid, str(program), "terminated")]
        assert proc.wait(timeout=5) == -15
        assert f"pid {proc.pid} was running it ({program}): kill terminated (exited after SIGTERM)" in done.notes
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_malware_finding_quarantines_through_fix(state: StateStore, tmp_path: Path) -> None:
    path = plant(tmp_path)
    dev, ino = ident(path)
    step = q.quarantine_action(str(path), dev, ino, "cd" * 32, "hostguard.webshell_eval")
    assert step.describe() == (f"hostguard quarantine path={path} dev={dev} ino={ino} sha256={'cd' * 32} "
                               "rule=hostguard.webshell_eval")
    assert q.request_of(step) == q.Request(str(path), dev, ino, "cd" * 32, "hostguard.webshell_eval")
    finding = Finding("malware.yara", "malware", Severity.CRITICAL, "webshell", {"kind": "path", "path": str(path)},
                      remediation=Remediation("quarantine the file", (step,)))
    plan = make_plan(finding, FixSettings(state_dir=str(state.directory)))
    assert plan.blocked is None and plan.quarantines == [step]
    assert preview(plan, "/") == [f"  quarantine (moved into the state directory, restorable): quarantine path={path} "
                                  f"dev={dev} ino={ino} sha256={'cd' * 32} rule=hostguard.webshell_eval"]
    with pytest.raises(ValueError, match="needs path, dev and ino"):
        q.request_of(q.Action("quarantine", (("path", "/x"),)))
