"""Where log lines come from: plain, rotated and compressed files, and the journal through ``journalctl``.

Every source streams: lines are read one at a time with a length cap, so a 1 GB log parses in constant
memory and a 10 MB garbage line costs one bounded read, not 10 MB of RAM. Compression is recognised by its
magic bytes, not the name (``auth.log.2.gz``, but also a ``.1`` that logrotate's ``delaycompress`` left
plain, or a gzip someone renamed). A truncated compressed file (a rotation interrupted, a disk full) gives
every line up to the damage and is then counted as ``truncated``; it never raises.

The live journal is read with ``journalctl -o json`` (its MESSAGE may be a list of byte values when it is
not UTF-8). Without root (or the ``adm``/``systemd-journal`` group) journalctl silently shows only the
calling user's own entries: the caller is told so on stderr, since an empty answer would look like "no
logons". Under ``--root`` the tree's own journal directory is read (``journalctl -D ROOT/var/log/journal``).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import stat
import subprocess
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Protocol

from hostguard.host.base import HostError, system_which

MAX_LINE = 64 * 1024  # no authentication message is near this; longer lines are garbage or an attack on us
MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))


@dataclass
class SourceStats:
    """What reading one source met: the counts ``logons parse`` reports on stderr.

    ``too_long`` lines were skipped; ``nul`` and ``non_utf8`` lines were still parsed (NULs dropped, bytes
    kept with ``surrogateescape``: an attacker must not hide a user name behind one invalid byte);
    ``truncated`` names the damage that ended a compressed file early.
    """

    name: str
    lines: int = 0
    events: int = 0
    too_long: int = 0
    nul: int = 0
    non_utf8: int = 0
    unreadable: int = 0  # journal entries that were not valid JSON objects
    truncated: str | None = None
    notes: list[str] = field(default_factory=list)

    def damaged(self) -> bool:
        """Whether anything was skipped or repaired (the summary is then always printed)."""
        return bool(self.too_long or self.nul or self.non_utf8 or self.unreadable or self.truncated)

    def summary(self) -> str:
        """One line: lines read, events, and what was skipped."""
        parts = [f"{self.lines} lines", f"{self.events} events"]
        for label, value in (("too long (skipped)", self.too_long), ("with NUL bytes", self.nul),
                             ("not UTF-8", self.non_utf8), ("unreadable entries (skipped)", self.unreadable)):
            if value:
                parts.append(f"{value} {label}")
        if self.truncated:
            parts.append(f"truncated: {self.truncated}")
        return f"{self.name}: " + ", ".join(parts + self.notes)


@contextlib.contextmanager
def _opening(path: str) -> Iterator[None]:
    """Turns the error of reaching ``path`` into the one-line :class:`HostError` the commands print."""
    try:
        yield
    except FileNotFoundError as exc:
        raise HostError(f"{path}: no such file") from exc
    except OSError as exc:
        raise HostError(f"{path}: {exc.strerror or exc}") from exc


def check_log(path: str) -> None:
    """That ``path`` can be read as a log, without reading it (a pipe, ``<(zcat ...)``, is only looked at):
    :class:`HostError` otherwise. The command checks every file so before printing anything."""
    with _opening(path):
        st = os.stat(path)
    if stat.S_ISFIFO(st.st_mode):
        return
    open_log(path).close()


def open_log(path: str) -> IO[bytes]:
    """A binary stream of the file's lines, decompressed when its magic says so.

    Raises :class:`HostError` (one line) for a missing, unreadable or non-regular file: bad input the
    command reports and exits 2 on, before any output.
    """
    with _opening(path):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
            raise HostError(f"{path}: not a regular file")
        os.set_blocking(fd, True)
    except OSError as exc:
        os.close(fd)
        raise HostError(f"{path}: {exc.strerror or exc}") from exc
    except HostError:
        os.close(fd)
        raise
    raw = io.BufferedReader(io.FileIO(fd, "rb", closefd=True), 1 << 20)
    try:
        head = raw.peek(6)[:6]
    except OSError as exc:
        raw.close()
        raise HostError(f"{path}: {exc.strerror or exc}") from exc
    for magic, kind in MAGIC:
        if head.startswith(magic):
            if kind == "gzip":
                return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
            if kind == "bzip2":
                return bz2.BZ2File(raw, "rb")
            return lzma.LZMAFile(raw, "rb")
    return raw


DECOMPRESS_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError, OSError)


class Chunks(Protocol):
    """Anything :func:`read_blocks` reads: a binary stream with ``read1`` (files, decompressors, pipes)."""

    def read1(self, size: int, /) -> bytes: ...


def read_blocks(stream: IO[bytes] | Chunks, stats: SourceStats, start: int = 0) -> Iterator[tuple[int, bytes | None]]:
    """Blocks of complete lines, ``(number of the first line, the lines joined by newlines)``, read up to
    :data:`MAX_LINE` bytes at a time (the parsers decode and split a block at once: see ``parse.py``);
    ``start`` is the number of lines before the stream's first (a reader that starts inside a file).

    An over-long line is skipped without ever holding more than :data:`MAX_LINE` bytes of it: since a read is
    no longer than that, only the line carried over from the previous read can be too long. It is handed on
    as ``(its number, None)``: the consumer counts it, so counts stay exact wherever reading is cut. An
    unterminated last line is a line.
    """
    read = stream.read1  # type: ignore[union-attr]  # every IO[bytes] this is given has it
    number = start
    carry = b""
    skipping = False  # inside an over-long line whose end is not read yet
    while True:
        try:
            chunk = read(MAX_LINE)
        except DECOMPRESS_ERRORS as exc:
            stats.truncated = _damage(exc)
            return
        if not chunk:
            break
        if skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                continue
            number += 1
            stats.lines = number
            yield number, None
            skipping = False
            chunk = chunk[newline + 1:]
        data = carry + chunk if carry else chunk
        end = data.rfind(b"\n")
        if end < 0:
            carry = data
        else:
            begin = 0
            first = data.find(b"\n")
            if first > MAX_LINE:
                number += 1
                stats.lines = number
                yield number, None
                begin = first + 1
            if begin <= end:
                block = data[begin:end]
                count = block.count(b"\n") + 1
                stats.lines = number + count
                yield number + 1, block
                number += count
            carry = data[end + 1:]
        if len(carry) > MAX_LINE:
            carry = b""
            skipping = True
    if skipping or carry:
        number += 1
        stats.lines = number
        yield number, carry or None


def lines_of(blocks: Iterable[tuple[int, bytes | None]], stats: SourceStats) -> Iterator[tuple[int, bytes]]:
    """``(line number, bytes)`` of every line of ``blocks`` (for a reader that keeps something per line);
    over-long lines are counted in ``stats``."""
    for first, block in blocks:
        if block is None:
            stats.too_long += 1
        else:
            yield from enumerate(block.split(b"\n"), first)


def _damage(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "compressed stream ended early"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def journal_argv(root: str | None, files: list[str], since: str | None) -> list[str]:
    """The ``journalctl`` command reading the live journal, a tree's journal directory or journal files."""
    exe = system_which("journalctl")
    if exe is None:
        raise HostError("journalctl is not installed (reading the journal needs it)")
    argv = [exe, "-o", "json", "--no-pager", "--output-fields=MESSAGE,__REALTIME_TIMESTAMP,SYSLOG_IDENTIFIER,"
            "_COMM,SYSLOG_PID,_PID,_HOSTNAME"]
    for name in files:
        argv += ["--file", name]
    if root is not None and not files:
        argv += ["-D", os.path.join(root, "var/log/journal")]
    if since:
        argv += ["--since", since]
    return argv


def journal_blocks(argv: list[str], stats: SourceStats) -> Iterator[tuple[int, bytes | None]]:
    """Blocks of the entries ``journalctl -o json`` prints, one JSON object a line (as :func:`read_blocks`);
    its failure is a HostError."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "LC_ALL": "C"})
    except OSError as exc:
        raise HostError(f"journalctl: {exc.strerror or exc}") from exc
    assert proc.stdout is not None and proc.stderr is not None
    try:
        yield from read_blocks(proc.stdout, stats)
    finally:
        proc.stdout.close()
        err = proc.stderr.read(4096).decode("utf-8", "replace").strip()
        proc.stderr.close()
        code = proc.wait()
    if code != 0:
        raise HostError(f"journalctl exited {code}: {err.splitlines()[0] if err else 'no message'}")
    if os.geteuid() != 0 and "-D" not in argv and "--file" not in argv:
        stats.notes.append("not root: journalctl shows only this user's own entries")
