"""The tree watch on real directories: files written by other processes, links, renames, new directories,
lost events, symlinks it must not follow, and the per-user watch limit (set inside a user namespace the test
creates, so the host's own limit is never touched)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.scanner.fanotify import FanotifyWatch
from hostguard.scanner.watch import SETTLE, Change, TreeWatch, WatchError


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, Path, TreeWatch]]:
    root, outside = tmp_path / "www", tmp_path / "outside"
    (root / "wp-content" / "uploads").mkdir(parents=True)
    outside.mkdir()
    watch = TreeWatch([str(root)])
    watch.start()
    try:
        yield root, outside, watch
    finally:
        watch.close()


def collect(watch: TreeWatch | FanotifyWatch, until: set[bytes], within: float = 2.0) -> tuple[list[Change], float]:
    """The changes until every path of ``until`` was seen (or ``within`` seconds), and when the last came."""
    started = time.monotonic()
    seen: list[Change] = []
    while time.monotonic() - started < within:
        seen.extend(watch.changes(0.1))
        if until <= {c.path for c in seen}:
            break
    return seen, time.monotonic() - started


def sh(command: str) -> None:
    subprocess.run(["sh", "-c", command], check=True)


def test_a_file_written_by_another_process_is_seen_within_two_seconds(tree: tuple[Path, Path, TreeWatch]) -> None:
    root, _, watch = tree
    target = root / "wp-content" / "uploads" / "x.php"
    sh(f"printf '<?php eval($_POST[1]);' > '{target}'")
    seen, took = collect(watch, {bytes(target)})
    assert Change("file", bytes(target)) in seen and took < 2


def test_writes_outside_the_tree_and_through_symlinks_are_not_seen(tree: tuple[Path, Path, TreeWatch]) -> None:
    root, outside, watch = tree
    (root / "link").symlink_to(outside)  # a symlink planted in the web root must not widen the watch
    seen, _ = collect(watch, set(), within=0.3)
    sh(f"printf x > '{outside / 'a.php'}' && printf x > '{root / 'link' / 'b.php'}'")
    seen, _ = collect(watch, {b"never"}, within=1.0)
    assert seen == []


def test_a_new_directory_is_watched_and_listed(tree: tuple[Path, Path, TreeWatch]) -> None:
    root, outside, watch = tree
    # created with its file at once: the file may predate the new directory's watch
    fresh = root / "new" / "deeper"
    sh(f"mkdir -p '{fresh}' && printf x > '{fresh / 'one.php'}'")
    seen, _ = collect(watch, {bytes(fresh / "one.php")})
    assert Change("file", bytes(fresh / "one.php")) in seen
    # a tree built elsewhere and moved in: every file in it, and later writes inside it
    (outside / "pkg" / "sub").mkdir(parents=True)
    (outside / "pkg" / "sub" / "shell.jsp").write_text("x")
    sh(f"mv '{outside / 'pkg'}' '{root / 'pkg'}'")
    moved = root / "pkg" / "sub" / "shell.jsp"
    seen, _ = collect(watch, {bytes(moved)})
    assert Change("file", bytes(moved)) in seen
    sh(f"printf y > '{root / 'pkg' / 'sub' / 'later.php'}'")
    seen, _ = collect(watch, {bytes(root / "pkg" / "sub" / "later.php")})
    assert Change("file", bytes(root / "pkg" / "sub" / "later.php")) in seen


def test_a_hard_link_and_a_rename_are_seen(tree: tuple[Path, Path, TreeWatch]) -> None:
    root, outside, watch = tree
    source = outside / "dropper"
    source.write_bytes(b"\x7fELF")
    link = root / "wp-content" / "linked.php"
    started = time.monotonic()
    os.link(source, link)  # only IN_CREATE: no close of a write
    seen, _ = collect(watch, {bytes(link)})
    assert Change("file", bytes(link)) in seen
    assert SETTLE <= time.monotonic() - started < 1.5
    (outside / "upload.tmp").write_text("x")
    os.rename(outside / "upload.tmp", root / "renamed.php")  # an upload's temp file moved in
    seen, _ = collect(watch, {bytes(root / "renamed.php")})
    assert Change("file", bytes(root / "renamed.php")) in seen


def test_a_directory_moved_away_is_forgotten_and_a_renamed_one_keeps_its_new_name(
        tree: tuple[Path, Path, TreeWatch]) -> None:
    root, outside, watch = tree
    (root / "old").mkdir()
    collect(watch, set(), within=0.3)
    os.rename(root / "old", root / "new")
    os.rename(root / "wp-content", outside / "gone")
    collect(watch, set(), within=0.3)
    (root / "new" / "a.php").write_text("x")
    (outside / "gone" / "b.php").write_text("x")
    seen, _ = collect(watch, {b"never"}, within=1.0)
    assert seen == [Change("file", bytes(root / "new" / "a.php"))]


def test_lost_events_ask_for_a_rescan(tree: tuple[Path, Path, TreeWatch]) -> None:
    root, _, watch = tree
    queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    many = root / "many"
    many.mkdir()
    collect(watch, set(), within=0.3)
    for i in range(queued // 2 + 100):  # a create and a close each: more than the queue holds, unread
        (many / f"f{i}").write_bytes(b"")
    seen, _ = collect(watch, {bytes(root)}, within=5.0)
    assert Change("rescan", bytes(root)) in seen


def test_the_watch_limit_is_said_with_the_setting_to_raise(tmp_path: Path) -> None:
    root = tmp_path / "www"
    for name in ("a", "b", "c", "d", "e"):
        (root / name).mkdir(parents=True)
    # the limit is per user and per user namespace: set a tiny one in a namespace of the test's own
    script = (
        "import json, sys\n"
        "open('/proc/sys/user/max_inotify_watches', 'w').write('3')\n"
        "from hostguard.scanner.watch import TreeWatch\n"
        "w = TreeWatch([sys.argv[1]]); w.start()\n"
        "print(json.dumps({'watched': w.watched(), 'problems': w.problems}))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, "-c", script, str(root)],
                          capture_output=True, text=True, env=env, check=True)
    answer = json.loads(done.stdout)
    assert answer["watched"] == 3
    assert len(answer["problems"]) == 1
    assert "inotify watch limit reached after 3 directories" in answer["problems"][0]
    assert "NOT watched" in answer["problems"][0] and "sysctl -w fs.inotify.max_user_watches=" in answer["problems"][0]


def test_a_root_that_is_not_a_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(WatchError, match="not a directory"):
        TreeWatch([str(tmp_path / "file")]).start()
