"""Sources: plain, rotated and compressed files, garbage that must be skipped and counted, constant memory."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hostguard.host.base import HostError
from hostguard.logons.parse import parse_lines
from hostguard.logons.sources import MAX_LINE, SourceStats, open_log, read_blocks
from hostguard.logons.timestamps import Clock

FAIL = b"Mar  4 10:00:%02d gw.test sshd[%d]: Failed password for root from 192.0.2.%d port %d ssh2\n"
CLOCK = Clock(UTC, datetime(2024, 3, 5, tzinfo=UTC))


def lines(n: int, start: int = 0) -> bytes:
    return b"".join(FAIL % (i % 60, 100 + i, 1 + i % 200, 1024 + i % 60000) for i in range(start, start + n))


def events(path: Path) -> tuple[list[tuple[int, str | None, int | None]], SourceStats]:
    stats = SourceStats(str(path))
    with open_log(str(path)) as stream:
        found = [(e.line, e.ip, e.port) for e in parse_lines(read_blocks(stream, stats), str(path), CLOCK, stats)]
    return found, stats


@pytest.mark.parametrize("name,pack", [("auth.log.1", lambda b: b), ("auth.log.2.gz", gzip.compress),
                                       ("auth.log.3.bz2", bz2.compress), ("auth.log.4.xz", lzma.compress),
                                       ("renamed-gzip.log", gzip.compress)])
def test_rotated_and_compressed_files(tmp_path: Path, name: str, pack: object) -> None:
    path = tmp_path / name
    path.write_bytes(pack(lines(3)))  # type: ignore[operator]
    found, stats = events(path)
    assert found == [(1, "192.0.2.1", 1024), (2, "192.0.2.2", 1025), (3, "192.0.2.3", 1026)]
    assert stats.lines == 3 and not stats.damaged()


def test_truncated_gzip_gives_what_is_there_and_says_so(tmp_path: Path) -> None:
    data = gzip.compress(lines(2000))
    path = tmp_path / "auth.log.2.gz"
    path.write_bytes(data[: len(data) // 2])
    found, stats = events(path)
    assert found and found[0] == (1, "192.0.2.1", 1024)
    assert [n for n, _, _ in found] == list(range(1, len(found) + 1)) and len(found) < 2000
    assert stats.truncated == "compressed stream ended early"
    assert "truncated: compressed stream ended early" in stats.summary()


def test_garbage_lines_are_skipped_or_repaired_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    with path.open("wb") as fh:
        fh.write(lines(1))                                   # line 1: good
        fh.write(b"\x00" * 4096 + lines(1, start=1))          # line 2: NUL run after a crash, then a good line
        fh.write(b"A" * (10 * 1024 * 1024) + b"\n")           # line 3: a 10 MB line
        fh.write(b"\xff\xfe garbage \x80\n")                  # line 4: not UTF-8, no attempt
        fh.write(b"Mar  4 10:00:09 gw.test sshd[9]: Failed password for invalid user \xe9t\xe9 from 192.0.2.9 "
                 b"port 40009 ssh2\n")                        # line 5: Latin-1 user name
        fh.write(lines(1, start=5)[:-1])                      # line 6: last line, no newline
    stats = SourceStats(str(path))
    with open_log(str(path)) as stream:
        found = [e.to_json() for e in parse_lines(read_blocks(stream, stats), str(path), CLOCK, stats)]
    assert [(e["line"], e["ip"]) for e in found] == [(1, "192.0.2.1"), (2, "192.0.2.2"), (5, "192.0.2.9"), (6, "192.0.2.6")]
    assert found[2]["user"] == {"text": "\\xe9t\\xe9", "base64": "6XTp"}
    assert (stats.lines, stats.too_long, stats.nul, stats.non_utf8) == (6, 1, 1, 2)


def test_line_just_at_the_cap_is_kept(tmp_path: Path) -> None:
    line = FAIL % (1, 1, 1, 40000)
    padded = line[:-1] + b" " * (MAX_LINE - len(line) + 1)
    path = tmp_path / "auth.log"
    path.write_bytes(padded + b"\n" + padded + b"x\n")
    found, stats = events(path)
    # the first (exactly the cap) is read (its padding fails the sshd pattern), the longer one is skipped
    assert [n for n, _, _ in found] == [] and stats.too_long == 1
    assert stats.lines == 2


def test_missing_unreadable_and_odd_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(HostError, match=r"nope\.log: no such file"):
        open_log(str(tmp_path / "nope.log"))
    with pytest.raises(HostError, match="not a regular file"):
        open_log(str(tmp_path))
    secret = tmp_path / "secret.log"
    secret.write_bytes(b"x\n")
    secret.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(HostError, match="Permission denied"):
            open_log(str(secret))


def _peak(path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        stats = SourceStats(str(path))
        count = 0
        with open_log(str(path)) as stream:
            for _ in parse_lines(read_blocks(stream, stats), str(path), CLOCK, stats):
                count += 1
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_parsing_runs_in_constant_memory(tmp_path: Path) -> None:
    """Three times the lines (each its own connection: the worst case for the session table) must not need
    more memory: every per-stream table is bounded."""
    peaks = []
    for n in (20_000, 60_000):
        path = tmp_path / f"big-{n}.log.gz"
        with gzip.open(path, "wb") as fh:
            for block in range(0, n, 10_000):
                fh.write(lines(10_000, start=block))
        count, peak = _peak(path)
        assert count == n
        peaks.append(peak)
    assert peaks[1] < peaks[0] * 1.2 + 256 * 1024, peaks
    assert peaks[1] < 8 * 1024 * 1024, peaks
