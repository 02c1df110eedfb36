"""cache/advisories.db at the row level: written whole or not at all (0600, renamed into place), an id's rows
replaced with its copy, withdrawn records dropped, batched reads counted, unreadable files said in one line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hostguard.store import advisories
from hostguard.store.advisories import AdvisoryReader, AdvisoryStoreError, AdvisoryWriter


def _write(directory: Path) -> None:
    with AdvisoryWriter(directory) as writer:
        writer.put("A-1", "2024-01-01", False, 0, '["a1"]', [("npm", "x", "[1]"), ("npm", "y", "[2]")])
        writer.put("A-2", "2024-01-01", True, 1, '["a2"]', [("npm", "x", "[3]")])
        writer.put("A-1", "2024-02-01", False, 2, '["a1 v2"]', [("npm", "z", "[4]")])  # the later copy
        assert writer.drop_withdrawn() == 1
        assert writer.totals() == (1, 1, 2)
        writer.commit({"k": "v"})


def test_written_whole_and_read_back(tmp_path: Path) -> None:
    _write(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["advisories.db"]
    assert stat.S_IMODE((tmp_path / "advisories.db").stat().st_mode) == 0o600
    reader = AdvisoryReader(tmp_path)
    assert reader.meta == {"k": "v"}
    assert reader.rows("npm", ["x", "y", "z"]) == [("z", "A-1", "[4]")]  # A-1's first copy's rows went with it
    assert reader.records(["A-1", "A-2"]) == {"A-1": '["a1 v2"]'}
    assert (reader.queries, reader.rows_read) == (2, 2)
    reader.close()


def test_reads_are_batched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(advisories, "BATCH", 3)
    with AdvisoryWriter(tmp_path) as writer:
        for i in range(10):
            writer.put(f"A-{i}", "m", False, 0, "[]", [("PyPI", f"p{i}", "[]")])
        writer.commit({})
    reader = AdvisoryReader(tmp_path)
    assert [name for name, _, _ in reader.rows("PyPI", [f"p{i}" for i in range(7)] + ["p0", "nope"])] == [
        f"p{i}" for i in range(7)]
    assert reader.queries == 3  # 8 distinct names, 3 a query
    reader.close()


def test_an_aborted_build_leaves_nothing_and_keeps_the_old_index(tmp_path: Path) -> None:
    _write(tmp_path)
    before = (tmp_path / "advisories.db").read_bytes()
    with pytest.raises(RuntimeError), AdvisoryWriter(tmp_path) as writer:
        writer.put("B-1", "m", False, 0, "[]", [("npm", "b", "[]")])
        raise RuntimeError("the build died")
    assert [p.name for p in tmp_path.iterdir()] == ["advisories.db"]
    assert (tmp_path / "advisories.db").read_bytes() == before


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"), (b"", "is unreadable: schema 0 is not 1"), (b"garbage" * 200, "is unreadable")])
def test_an_unreadable_file_is_one_line(tmp_path: Path, content: bytes | None, message: str) -> None:
    if content is not None:
        (tmp_path / "advisories.db").write_bytes(content)
    with pytest.raises(AdvisoryStoreError, match=message) as caught:
        AdvisoryReader(tmp_path)
    assert "\n" not in str(caught.value)


def test_an_unwritable_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(AdvisoryStoreError, match="cannot be written"):
        AdvisoryWriter(tmp_path / "missing")


def test_a_symlink_in_place_of_the_temporary_file_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    (tmp_path / f".advisories.db.{os.getpid()}.tmp").symlink_to(target)
    _write(tmp_path)  # the stale name is removed, never written through
    assert target.read_text() == "keep me"
