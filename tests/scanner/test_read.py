"""Reading one file: vanished, unreadable, not regular, too large, replaced, and atime untouched."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from hostguard.scanner.engine import ScanOptions
from hostguard.scanner.files import read_file, unchanged
from tests.scanner.helpers import MARKER, hits, mounted, run, write_pack

NOBODY = 65534


def test_a_file_that_vanished_is_counted_never_fatal(tmp_path: Path) -> None:
    assert read_file(str(tmp_path / "gone"), 1 << 20).skipped == "vanished"


def test_a_file_replaced_after_the_walk_counts_as_vanished(tmp_path: Path) -> None:
    from hostguard.scanner.engine import FileScanner, RuleSet

    target = tmp_path / "f"
    target.write_bytes(MARKER)
    listed = os.stat(target)
    target.unlink()
    target.write_bytes(MARKER)  # another inode at the same path
    scanner = FileScanner(RuleSet([write_pack(tmp_path / "pack")]).compiled().rules)
    result = scanner.scan_file(str(target), expected=(listed.st_dev, listed.st_ino + 10**9))
    assert result.skipped == "vanished"
    assert scanner.scan_file(str(target)).matches[0].rule == "pack1:test_marker"


def test_fifo_and_device_are_not_opened(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    os.mkfifo(tree / "fifo")  # opening it for reading would block forever
    os.mknod(tree / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    (tree / "plain").write_bytes(MARKER)
    result = run([tree], write_pack(tmp_path / "pack"), tmp_path / "state")
    assert hits(result) == {(str(tree / "plain"), "pack1:test_marker")}
    assert result.stats.skipped["not_regular"] == 2
    assert read_file(str(tree / "fifo"), 100).skipped == "not_regular"  # even when asked directly: O_NONBLOCK


def test_size_cap(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "big").write_bytes(MARKER + b"x" * 2000)
    (tree / "small").write_bytes(MARKER)
    result = run([tree], write_pack(tmp_path / "pack"), tmp_path / "state",
                 options=ScanOptions(max_file_size=1000, workers=1, nice=0, ionice="none"))
    assert hits(result) == {(str(tree / "small"), "pack1:test_marker")}
    assert result.stats.skipped["too_large"] == 1
    assert read_file(str(tree / "big"), 1000).skipped == "too_large"


def test_an_unreadable_file_is_counted_as_non_root() -> None:
    tree = Path(tempfile.mkdtemp(prefix="hostguard-read-"))  # pytest's own tmp dirs are 0700: nobody cannot pass
    tree.chmod(0o755)
    try:
        _unreadable_as_nobody(tree)
    finally:
        shutil.rmtree(tree)


def _unreadable_as_nobody(tree: Path) -> None:
    secret = tree / "secret"
    secret.write_bytes(MARKER)
    secret.chmod(0o600)
    mine = tree / "theirs"  # readable, owned by root: O_NOATIME gives EPERM to nobody, the retry reads it
    mine.write_bytes(MARKER)
    mine.chmod(0o644)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child drops to nobody and reports
        try:
            os.close(read)
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            a = read_file(str(secret), 100)
            b = read_file(str(mine), 100)
            os.write(write, f"{a.skipped}|{b.skipped}|{b.data == MARKER}".encode())
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 200).decode()
    os.waitpid(pid, 0)
    assert answer == "unreadable|None|True"


def test_atime_is_not_changed_by_a_scan(tmp_path: Path) -> None:
    with mounted("tmpfs", tmp_path / "mnt", "strictatime") as mnt:
        target = mnt / "file.php"
        target.write_bytes(MARKER)
        os.utime(target, (1_000_000_000, 1_000_000_000))
        result = run([mnt], write_pack(tmp_path / "pack"), tmp_path / "state", cache=False)
        assert hits(result) == {(str(target), "pack1:test_marker")}
        assert os.stat(target).st_atime_ns == 1_000_000_000 * 10**9
        with open(target, "rb") as fh:  # the control: a plain read on this mount does change it
            fh.read()
        assert os.stat(target).st_atime_ns != 1_000_000_000 * 10**9


def test_a_file_changed_between_the_two_fstats_is_not_stable(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"one")
    with open(target, "rb") as fh:
        before = os.fstat(fh.fileno())
        with open(target, "ab") as out:
            out.write(b" two")
        after = os.fstat(fh.fileno())
    assert not unchanged(before, after)
    assert unchanged(before, before)
    assert read_file(str(target), 100).stable
