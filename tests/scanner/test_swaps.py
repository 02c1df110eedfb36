"""What an attacker who writes into the scanned tree can try between the walk and the read: a directory swapped
for a symlink to elsewhere (the file is then never opened through it), a symlinked PATH given by the operator
(followed: the operator named it), a slow directory against the time limit, and names that would break a line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostguard.findings import one_line, readable
from hostguard.iocs import IocSet
from hostguard.scanner import engine, rules
from hostguard.scanner.engine import FileScanner, RuleSet, Scan, ScanOptions
from hostguard.scanner.files import Replaced, open_beneath
from hostguard.store.scan_cache import ScanCache
from tests.cli.test_malware import _scan
from tests.scanner.helpers import MARKER, write_pack


@pytest.fixture
def scanner(tmp_path: Path) -> FileScanner:
    return FileScanner(rules.load([write_pack(tmp_path / "pack")], None).rules, max_file_size=1 << 20)


def test_a_directory_swapped_for_a_symlink_is_not_read_through(tmp_path: Path, scanner: FileScanner) -> None:
    tree, outside = tmp_path / "www", tmp_path / "outside"
    (tree / "up").mkdir(parents=True)
    outside.mkdir()
    (tree / "up" / "x.php").write_bytes(MARKER)
    (outside / "x.php").write_bytes(MARKER)
    listed = os.stat(tree / "up")
    (tree / "up" / "x.php").unlink()
    (tree / "up").rmdir()
    (tree / "up").symlink_to(outside)  # after the walk listed it
    result = scanner.scan_file(str(tree / "up" / "x.php"), directory=(listed.st_dev, listed.st_ino))
    assert (result.skipped, result.matches) == ("vanished", ())
    # the watcher's way: every component below the watched tree opened without following a symlink
    result = scanner.scan_file(str(tree / "up" / "x.php"), root=str(tree))
    assert (result.skipped, result.matches) == ("vanished", ())
    with pytest.raises(Replaced):
        open_beneath(str(tree), str(tree / "up"))
    # the near miss: the same file in a real directory is read and matched
    (outside / "sub").mkdir()
    (outside / "sub" / "y.php").write_bytes(MARKER)
    assert [m.rule for m in scanner.scan_file(str(outside / "sub" / "y.php"), root=str(outside)).matches] == [
        "pack1:test_marker"]


def test_a_symlinked_path_named_by_the_operator_is_scanned(tmp_path: Path) -> None:
    real = tmp_path / "site"
    real.mkdir()
    (real / "x.php").write_bytes(MARKER)
    (tmp_path / "link").symlink_to(real)
    code, data, err = _scan(tmp_path, str(tmp_path / "link"))
    assert code == 1, err
    assert [d["path"] for d in data["detections"]] == [str(real / "x.php")]


def test_the_time_limit_holds_inside_one_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "www"
    tree.mkdir()
    for i in range(50):
        (tree / f"f{i}.php").write_bytes(MARKER)
    ticks = iter(range(10**6))  # a clock that moves one second each time it is read: files "take" time
    monkeypatch.setattr(engine.time, "monotonic", lambda: float(next(ticks)))
    scan = Scan(RuleSet([write_pack(tmp_path / "pack")], None), IocSet.build([], None), ScanCache.disabled(),
                ScanOptions(workers=1, nice=0, ionice="none"), inline=True, deadline_seconds=10)
    result = scan.run([str(tree)])  # one directory of 50 files: the limit must stop it inside
    assert scan.complete is False and 0 < result.stats.scanned < 50
    assert any("stopped after" in note for note in result.stats.notes)


def test_names_with_control_characters_stay_on_one_line() -> None:
    assert one_line(b"bad\nname\r\x1b[2J" + b"\xff") == "bad\\nname\\r\\x1b[2J\\xff"
    assert one_line("ok name \u00fc") == "ok name \u00fc"
    assert readable("a diff\n+ keeps its lines") == "a diff\n+ keeps its lines"  # the multi-line form stays


def test_a_file_name_with_a_newline_is_one_line_of_the_table(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.cli.test_malware import _config

    tree = tmp_path / "www"
    tree.mkdir()
    (tree / "a\nFAKE: all clean.php").write_bytes(MARKER)
    done = subprocess.run([sys.executable, "-m", "hostguard.cli", "--config", _config(tmp_path), "--state",
                           str(tmp_path / "state"), "malware", "scan", str(tree)], capture_output=True, text=True)
    assert done.returncode == 1
    assert not any(line.startswith("FAKE") for line in done.stdout.splitlines())
    assert [line for line in done.stdout.splitlines() if "test_marker" in line][0].endswith(
        "a\\nFAKE: all clean.php  sha256:" + __import__("hashlib").sha256(MARKER).hexdigest()[:16])
