"""The fanotify watch on real files: a tmpfs the test mounts (so the file-system mark sees only this test's files,
a near miss included: a file on the same file system outside the tree), files written by other processes, links,
renames, new and renamed directories, lost events, and the choice of inotify where fanotify is not allowed
(a process running as nobody)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.scanner.fanotify import FanotifyWatch, open_watch
from hostguard.scanner.watch import SETTLE, Change, TreeWatch
from tests.respond.quarantine_helpers import tmpfs
from tests.scanner.test_watch import collect, sh

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="fanotify file-system marks and mount need root")


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, Path, FanotifyWatch]]:
    with tmpfs(tmp_path / "fs") as fs:
        root, outside = fs / "www", fs / "outside"  # one file system: the mark sees both
        (root / "wp-content" / "uploads").mkdir(parents=True)
        outside.mkdir()
        watch = open_watch([str(root)])
        try:
            assert isinstance(watch, FanotifyWatch), watch.problems  # root on tmpfs: fanotify is chosen
            assert watch.problems == [] and watch.watched() == 1
            yield root, outside, watch
        finally:
            watch.close()


def test_a_file_written_by_another_process_is_seen_within_two_seconds(
        tree: tuple[Path, Path, FanotifyWatch]) -> None:
    root, _, watch = tree
    target = root / "wp-content" / "uploads" / "x.php"
    odd = bytes(root / "wp-content") + b"/\xff\xfe.php"  # not UTF-8: paths stay bytes
    started = time.monotonic()
    sh(f"printf '<?php eval($_POST[1]);' > '{target}'")
    subprocess.run([b"sh", b"-c", b"printf x > \"$0\"", odd], check=True)
    seen, _ = collect(watch, {bytes(target), odd})
    assert time.monotonic() - started < 2
    assert Change("file", bytes(target)) in seen and Change("file", odd) in seen


def test_files_outside_the_tree_on_the_same_file_system_are_not_seen(
        tree: tuple[Path, Path, FanotifyWatch]) -> None:
    root, outside, watch = tree
    (root / "link").symlink_to(outside)  # a symlink planted in the web root must not widen the watch
    (outside / "wwwx").mkdir()  # shares the root's name as a prefix: www vs wwwx
    collect(watch, set(), within=0.3)
    sh(f"printf x > '{outside / 'a.php'}' && printf x > '{root / 'link' / 'b.php'}' && "
       f"printf x > '{outside / 'wwwx' / 'c.php'}' && ln '{outside / 'a.php'}' '{outside / 'd.php'}'")
    seen, _ = collect(watch, {b"never"}, within=1.0)
    assert seen == []
    sh(f"printf x > '{root / 'e.php'}'")  # the same watch still reports what lands in the tree
    seen, _ = collect(watch, {bytes(root / "e.php")})
    assert seen == [Change("file", bytes(root / "e.php"))]


def test_a_hard_link_is_scanned_after_it_settles_and_a_rename_at_once(
        tree: tuple[Path, Path, FanotifyWatch]) -> None:
    root, outside, watch = tree
    source = outside / "dropper"
    source.write_bytes(b"\x7fELF")
    collect(watch, set(), within=0.3)
    link = root / "wp-content" / "linked.php"
    started = time.monotonic()
    os.link(source, link)  # only FAN_CREATE: no close of a write
    seen, _ = collect(watch, {bytes(link)})
    assert seen == [Change("file", bytes(link))]
    assert time.monotonic() - started >= SETTLE  # not before it settled
    (outside / "upload.tmp").write_text("x")
    collect(watch, set(), within=0.3)
    os.rename(outside / "upload.tmp", root / "renamed.php")  # an upload's temp file moved in
    seen, _ = collect(watch, {bytes(root / "renamed.php")})
    assert seen == [Change("file", bytes(root / "renamed.php"))]


def test_a_new_directory_with_a_file_at_once_and_a_tree_moved_in(tree: tuple[Path, Path, FanotifyWatch]) -> None:
    root, outside, watch = tree
    fresh = root / "new" / "deeper"
    sh(f"mkdir -p '{fresh}' && printf x > '{fresh / 'one.php'}'")
    seen, _ = collect(watch, {bytes(fresh / "one.php")})
    assert Change("file", bytes(fresh / "one.php")) in seen
    # a tree built elsewhere and moved in: every file in it (they have no event in the tree), and later writes
    (outside / "pkg" / "sub").mkdir(parents=True)
    (outside / "pkg" / "sub" / "shell.jsp").write_text("x")
    collect(watch, set(), within=0.3)
    sh(f"mv '{outside / 'pkg'}' '{root / 'pkg'}'")
    moved = root / "pkg" / "sub" / "shell.jsp"
    seen, _ = collect(watch, {bytes(moved)})
    assert seen == [Change("file", bytes(moved))]
    sh(f"printf y > '{root / 'pkg' / 'sub' / 'later.php'}'")
    seen, _ = collect(watch, {bytes(root / "pkg" / "sub" / "later.php")})
    assert seen == [Change("file", bytes(root / "pkg" / "sub" / "later.php"))]


def test_a_renamed_directory_is_reported_under_its_new_name_and_one_moved_away_not_at_all(
        tree: tuple[Path, Path, FanotifyWatch]) -> None:
    root, outside, watch = tree
    (root / "old").mkdir()
    (root / "old" / "first.php").write_text("x")  # the directories' paths are now cached
    (root / "wp-content" / "before.php").write_text("x")
    seen, _ = collect(watch, {bytes(root / "old" / "first.php"), bytes(root / "wp-content" / "before.php")})
    assert sorted(seen, key=lambda c: c.path) == [Change("file", bytes(root / "old" / "first.php")),
                                                  Change("file", bytes(root / "wp-content" / "before.php"))]
    os.rename(root / "old", root / "new")
    os.rename(root / "wp-content", outside / "gone")
    seen, _ = collect(watch, {b"never"}, within=0.5)
    assert seen == [Change("file", bytes(root / "new" / "first.php"))]  # listed, as any directory moved in
    (root / "new" / "a.php").write_text("x")  # the directory's handle is the same: its path must not be
    (outside / "gone" / "b.php").write_text("x")
    seen, _ = collect(watch, {b"never"}, within=1.0)
    assert seen == [Change("file", bytes(root / "new" / "a.php"))]


def test_a_file_system_mounted_inside_the_tree_is_marked_too(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs") as fs:
        root = fs / "www"
        root.mkdir()
        with tmpfs(root / "up loads"), tmpfs(fs / "other"):  # inside the tree (a space: escaped in mountinfo); beside it
            watch = open_watch([str(root)])
            try:
                assert isinstance(watch, FanotifyWatch) and watch.watched() == 2
                assert watch.describe() == "2 file systems (fanotify)"
                sh(f"printf x > '{root / 'up loads' / 'x.php'}' && printf x > '{fs / 'other' / 'y.php'}' && "
                   f"printf x > '{root / 'z.php'}'")
                seen, _ = collect(watch, {b"never"}, within=1.0)
                assert sorted(c.path for c in seen) == [bytes(root / "up loads" / "x.php"), bytes(root / "z.php")]
            finally:
                watch.close()


def test_a_small_cache_still_places_every_directory(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs") as fs:
        root = fs / "www"
        names = [root / f"d{i}" for i in range(6)]
        for directory in names:
            directory.mkdir(parents=True)
        (fs / "elsewhere").mkdir()
        watch = FanotifyWatch([str(root)], cache_size=2)
        watch.start()
        try:
            for _ in range(2):  # twice over: every lookup misses the cache, evicted by the others
                for directory in [*names, fs / "elsewhere"]:
                    (directory / "f.php").write_text("x")
            seen, _ = collect(watch, {b"never"}, within=0.5)
            assert sorted({c.path for c in seen}) == sorted(bytes(d / "f.php") for d in names)
            assert len(watch._cache) <= 2
        finally:
            watch.close()


def test_lost_events_ask_for_a_rescan(tree: tuple[Path, Path, FanotifyWatch]) -> None:
    root, _, watch = tree
    queued = int(Path("/proc/sys/fs/fanotify/max_queued_events").read_text())
    many = root / "many"
    many.mkdir()
    collect(watch, set(), within=0.3)
    for i in range(queued + 1000):  # a file's create and close may merge into one event: more files than room
        (many / f"f{i}").write_bytes(b"")
    seen, _ = collect(watch, {bytes(root)}, within=10.0)
    assert Change("rescan", bytes(root)) in seen


def test_without_privileges_inotify_is_chosen_and_the_reason_said(tmp_path: Path) -> None:
    top = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own temp dirs are closed to other users
    try:
        top.chmod(0o755)
        (top / "www" / "sub").mkdir(parents=True)
        script = (
            "import json, os, sys\n"
            "from hostguard.scanner.fanotify import open_watch\n"
            "w = open_watch([sys.argv[1]])\n"
            "print(json.dumps({'uid': os.geteuid(), 'kind': type(w).__name__, 'watched': w.watched(),\n"
            "                  'what': w.describe(), 'problems': w.problems}))\n"
            "w.close()\n")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                               script, str(top / "www")], capture_output=True, text=True, env=env, check=True,
                              cwd="/")
        answer = json.loads(done.stdout)
        assert answer["uid"] == 65534 and answer["kind"] == TreeWatch.__name__
        assert answer["watched"] == 2 and answer["what"] == "2 directories (inotify)"
        assert answer["problems"] == ["fanotify not used (fanotify file-system marks need CAP_SYS_ADMIN (running as "
                                      "uid 65534)): watching every directory with inotify"]
    finally:
        shutil.rmtree(top)
