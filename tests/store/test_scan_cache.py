"""cache/scan.db: an unchanged tree is answered from the cache; any change of file or rules reads again."""

from __future__ import annotations

import os
from pathlib import Path

from hostguard.store.scan_cache import ScanCache
from tests.scanner.helpers import MARKER, PACK, hits, run, write_pack


def _tree(root: Path) -> dict[str, Path]:
    files = {"clean": root / "a" / "clean.txt", "bad": root / "a" / "bad.php", "other": root / "b" / "other.bin",
             "deep": root / "b" / "c" / "deep.txt"}
    for name, path in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(MARKER if name == "bad" else f"content of {name}".encode())
    return files


def test_an_unchanged_rescan_answers_every_file_from_the_cache(tmp_path: Path) -> None:
    files = _tree(tmp_path / "tree")
    pack = write_pack(tmp_path / "pack")
    first = run([tmp_path / "tree"], pack, tmp_path / "state")
    assert (first.stats.scanned, first.stats.cached) == (4, 0)
    again = run([tmp_path / "tree"], pack, tmp_path / "state")
    assert (again.stats.scanned, again.stats.cached, again.stats.files) == (0, 4, 4)
    assert hits(again) == hits(first) == {(str(files["bad"]), "pack1:test_marker")}
    assert again.detections[0].evidence["sha256"] == first.detections[0].evidence["sha256"]


def test_touch_modify_replace_and_chmod_invalidate_only_that_file(tmp_path: Path) -> None:
    files = _tree(tmp_path / "tree")
    pack = write_pack(tmp_path / "pack")
    run([tmp_path / "tree"], pack, tmp_path / "state")
    st = os.stat(files["clean"])
    os.utime(files["clean"], ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # touched
    with open(files["other"], "ab") as fh:  # modified: now it matches
        fh.write(MARKER)
    replacement = files["deep"].with_suffix(".new")
    replacement.write_bytes(b"content of deep")
    os.replace(replacement, files["deep"])  # replaced: same name and content, another inode
    files["bad"].chmod(0o600)  # ctime only
    result = run([tmp_path / "tree"], pack, tmp_path / "state")
    assert (result.stats.scanned, result.stats.cached) == (4, 0)
    assert hits(result) == {(str(files["bad"]), "pack1:test_marker"), (str(files["other"]), "pack1:test_marker")}
    again = run([tmp_path / "tree"], pack, tmp_path / "state")
    assert (again.stats.scanned, again.stats.cached) == (0, 4)


def test_one_file_changed_is_the_only_one_read(tmp_path: Path) -> None:
    files = _tree(tmp_path / "tree")
    pack = write_pack(tmp_path / "pack")
    run([tmp_path / "tree"], pack, tmp_path / "state")
    files["clean"].write_bytes(b"changed " + MARKER)
    result = run([tmp_path / "tree"], pack, tmp_path / "state")
    assert (result.stats.scanned, result.stats.cached) == (1, 3)
    assert (str(files["clean"]), "pack1:test_marker") in hits(result)


def test_a_rules_change_invalidates_every_file(tmp_path: Path) -> None:
    files = _tree(tmp_path / "tree")
    pack = write_pack(tmp_path / "pack")
    run([tmp_path / "tree"], pack, tmp_path / "state")
    write_pack(tmp_path / "pack", PACK + '\nrule content_of_deep { strings: $a = "content of deep" condition: $a }\n')
    result = run([tmp_path / "tree"], pack, tmp_path / "state")
    assert (result.stats.scanned, result.stats.cached) == (4, 0)
    assert (str(files["deep"]), "pack1:content_of_deep") in hits(result)


def test_a_deleted_file_leaves_the_cache(tmp_path: Path) -> None:
    files = _tree(tmp_path / "tree")
    pack = write_pack(tmp_path / "pack")
    run([tmp_path / "tree"], pack, tmp_path / "state")
    files["other"].unlink()
    run([tmp_path / "tree"], pack, tmp_path / "state")
    cache = ScanCache.open(tmp_path / "state")
    try:
        assert cache.lookup(str(files["other"])) is None
        assert cache.lookup(str(files["deep"])) is not None
    finally:
        cache.close()


def test_a_corrupt_cache_is_rebuilt_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "scan.db").write_bytes(b"this is not sqlite" * 100)
    files = _tree(tmp_path / "tree")
    result = run([tmp_path / "tree"], write_pack(tmp_path / "pack"), tmp_path / "state")
    assert hits(result) == {(str(files["bad"]), "pack1:test_marker")}
    assert any("rebuilt" in note for note in result.stats.notes)
    assert run([tmp_path / "tree"], write_pack(tmp_path / "pack"), tmp_path / "state").stats.cached == 4


def test_an_unstable_read_is_not_cached(tmp_path: Path) -> None:
    from hostguard.iocs import IocSet
    from hostguard.scanner.engine import FileResult, RuleSet, Scan, ScanOptions
    from hostguard.scanner.files import Identity

    # the before/after compare itself is tested in tests/scanner/test_read.py; here: its verdict is obeyed
    (tmp_path / "state").mkdir()
    cache = ScanCache.open(tmp_path / "state")
    assert cache.enabled

    scan = Scan(RuleSet([write_pack(tmp_path / "pack")]), IocSet(), cache, ScanOptions())
    ident = Identity(1, 2, 3, 4, 5)
    scan._collect([FileResult(str(tmp_path / "moving"), ident, "0" * 64, stable=False),
                   FileResult(str(tmp_path / "still"), ident, "1" * 64, stable=True)])
    cache.flush()
    assert cache.lookup(str(tmp_path / "moving")) is None
    assert cache.lookup(str(tmp_path / "still")) is not None
    cache.close()
