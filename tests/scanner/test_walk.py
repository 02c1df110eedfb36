"""The walk: symlinks never followed, skipped mounts never entered, tmpfs scanned, excludes honoured."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hostguard.scanner.engine import ScanOptions
from hostguard.scanner.mounts import read_mounts
from hostguard.scanner.walk import Excludes, WalkStats, walk
from tests.scanner.helpers import MARKER, hits, mounted, run, write_pack


def _files(targets: list[str], **kwargs: object) -> tuple[set[str], WalkStats]:
    stats = WalkStats()
    found = {os.path.join(d.path, name) for d in walk(targets, stats, **kwargs) for name, _ in d.files}  # type: ignore[arg-type]
    return found, stats


def test_symlinks_out_of_the_tree_and_loops_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.php").write_bytes(MARKER)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "kept.txt").write_bytes(MARKER)
    (tree / "to_outside").symlink_to(outside)
    (tree / "file_link").symlink_to(outside / "evil.php")
    (tree / "sub" / "loop").symlink_to(tree)
    found, stats = _files([str(tree)])
    assert found == {str(tree / "sub" / "kept.txt")}
    assert stats.skipped["not_regular"] == 3  # the three links, counted, never opened
    result = run([tree], write_pack(tmp_path / "pack"), tmp_path / "state")
    assert hits(result) == {(str(tree / "sub" / "kept.txt"), "pack1:test_marker")}


def test_a_tmpfs_is_scanned_and_a_proc_mount_is_not_entered(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    with mounted("tmpfs", tree / "shm"):
        (tree / "shm" / "dropper").write_bytes(b"\x7fELF" + MARKER)
        with mounted("proc", tree / "proc"):
            skip = read_mounts().skipped_devices()
            assert os.stat(tree / "proc").st_dev in skip
            result = run([tree], write_pack(tmp_path / "pack"), tmp_path / "state", skip_devices=skip)
            assert hits(result) == {(str(tree / "shm" / "dropper"), "pack1:test_marker")}
            assert result.stats.skipped["pseudo_fs"] == 1
            assert result.stats.mounts_skipped == [str(tree / "proc")]
            assert result.stats.files == 1  # nothing of /proc was read


def test_excludes_paths_and_globs(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for rel in ("cache/a.bin", "cache/deep/b.bin", "www/x.php", "www/y.log", "www/z.php"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(MARKER)
    found, stats = _files([str(tree)], excludes=Excludes([str(tree / "cache") + "/", "*.log"]))
    assert found == {str(tree / "www" / "x.php"), str(tree / "www" / "z.php")}
    assert stats.skipped["excluded"] == 2  # the directory (not entered) and the log


def test_excludes_under_root_name_host_paths(tmp_path: Path) -> None:
    excludes = Excludes(["/var/cache/*"], root=str(tmp_path))
    assert excludes.match(f"{tmp_path}/var/cache/apt")
    assert not excludes.match(f"{tmp_path}/var/www/index.php")


def test_a_directory_bind_mounted_twice_is_read_once(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "f").write_bytes(MARKER)
    (tree / "b").mkdir()
    subprocess.run(["mount", "--bind", str(tree / "a"), str(tree / "b")], check=True)
    try:
        found, _ = _files([str(tree)])
        assert len(found) == 1 and found <= {str(tree / "a" / "f"), str(tree / "b" / "f")}
    finally:
        subprocess.run(["umount", str(tree / "b")], check=False)


def test_options_default_to_all_cpus() -> None:
    assert ScanOptions().workers == 0
