"""Reading one file to scan it: without following a symlink, without touching its atime, never blocking on a
FIFO, never beyond the size cap, and knowing whether it changed while it was read.

The file is opened ``O_RDONLY|O_NOFOLLOW|O_NOATIME|O_NONBLOCK`` (``O_NOATIME`` is refused with EPERM on a
file the caller does not own unless it has CAP_FOWNER: the open is retried without it). Its identity is
taken with ``fstat`` before and after reading: when they differ (:func:`unchanged`), the bytes read may be a
mix of two versions, so the result is reported but not cached.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

NOATIME = getattr(os, "O_NOATIME", 0)
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1 << 20

# Skip reasons (the keys of stats.skipped)
VANISHED = "vanished"
UNREADABLE = "unreadable"
NOT_REGULAR = "not_regular"
TOO_LARGE = "too_large"
EXCLUDED = "excluded"
TIMEOUT = "timeout"


@dataclass(frozen=True)
class Identity:
    """What tells one version of a file from another: device, inode, size, mtime and ctime (ns).

    Any write, truncation, chmod, chown, rename or replacement changes at least one of them."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        """The identity in a stat result."""
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def unchanged(before: os.stat_result, after: os.stat_result) -> bool:
    """True when two stats of one open file show the same version (the bytes read between them are one file)."""
    return Identity.of(before) == Identity.of(after)


@dataclass(frozen=True)
class ReadResult:
    """The bytes of a regular file and its identity, or why it was not read (``skipped``, a skip reason)."""

    data: bytes | None
    identity: Identity | None
    stable: bool = False
    skipped: str | None = None
    detail: str = ""


def open_noatime(path: str, dir_fd: int | None = None) -> int:
    """``path`` opened read-only without following a symlink or updating its atime where permitted."""
    if NOATIME:
        try:
            return os.open(path, OPEN_FLAGS | NOATIME, dir_fd=dir_fd)
        except PermissionError as exc:
            if exc.errno != errno.EPERM:  # EACCES: really unreadable; EPERM: O_NOATIME on another's file
                raise
    return os.open(path, OPEN_FLAGS, dir_fd=dir_fd)


def read_file(path: str, max_size: int, dir_fd: int | None = None) -> ReadResult:
    """The content of regular file ``path`` (at most ``max_size`` bytes) and whether it held still."""
    try:
        fd = open_noatime(path, dir_fd)
    except FileNotFoundError:
        return ReadResult(None, None, skipped=VANISHED)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP, errno.EISDIR):
            return ReadResult(None, None, skipped=NOT_REGULAR, detail=exc.strerror or "")  # a symlink or socket now
        if exc.errno == errno.ENOTDIR:
            return ReadResult(None, None, skipped=VANISHED)
        return ReadResult(None, None, skipped=UNREADABLE, detail=exc.strerror or str(exc))
    try:
        before = os.fstat(fd)
        identity = Identity.of(before)
        if not stat.S_ISREG(before.st_mode):
            return ReadResult(None, identity, skipped=NOT_REGULAR)
        if before.st_size > max_size:
            return ReadResult(None, identity, skipped=TOO_LARGE)
        chunks: list[bytes] = []
        total = 0
        want = max(before.st_size, 0) + 1  # one more: a file that grew is noticed without a second read
        while True:
            chunk = os.read(fd, min(max(want - total, CHUNK), max_size + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_size:
                return ReadResult(None, identity, skipped=TOO_LARGE)
        after = os.fstat(fd)
    except OSError as exc:
        return ReadResult(None, None, skipped=UNREADABLE, detail=exc.strerror or str(exc))
    finally:
        os.close(fd)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return ReadResult(data, identity, stable=unchanged(before, after))


class Replaced(Exception):
    """A directory opened is not the one expected: it was swapped (for a symlink, another directory) since."""


def open_directory(path: str, expected: tuple[int, int]) -> int:
    """``path`` opened as a directory and checked to be the one listed (device, inode). A component swapped
    for a symlink leads elsewhere, and the check refuses it: opening a directory touches nothing, while
    opening a file through a swapped path could reach a device or a FIFO outside the tree."""
    fd = os.open(path, DIR_FLAGS)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != expected:
        os.close(fd)
        raise Replaced(path)
    return fd


def open_beneath(root: str, directory: str) -> int:
    """``directory`` (below ``root``, a tree the operator named) opened one component at a time from
    ``root``, none of them followed if it is a symlink (:class:`Replaced` then)."""
    relative = os.path.relpath(directory, root)
    if relative == ".":
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    if relative.startswith(".."):
        raise Replaced(directory)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in relative.split("/"):
            try:
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Replaced(directory) from None
                raise
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise
