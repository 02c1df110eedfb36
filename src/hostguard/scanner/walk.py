"""The file walk of a malware scan: which files are candidates, and why the others are not.

The walk never follows a symbolic link (a link is not a file to scan, and its target is either inside the
tree, where the walk reaches it anyway, or outside, where it must not go), never enters a directory twice
(bind mounts, and the same file system mounted at two places, are read once: directories are remembered
by device and inode), never enters a skipped mount (its ``st_dev`` is one of the skipped devices of the
mount table: pseudo and network file systems) and never enters an excluded path. FIFOs, sockets and
devices are counted as ``not_regular`` and never opened. Everything it leaves out is counted by reason.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from hostguard.scanner.files import EXCLUDED, NOATIME, NOT_REGULAR, UNREADABLE, VANISHED


class Excludes:
    """``[malware] exclude``: paths and fnmatch globs over the whole path (``*`` also crosses ``/``).

    Under ``--root`` a pattern names a path of the scanned host, so it is matched against the path below the
    root as well as against the real path."""

    def __init__(self, patterns: Sequence[str], root: str | None = None) -> None:
        parts = [fnmatch.translate(p.rstrip("/") or "/") for p in patterns if p.strip()]
        self._regex = re.compile("|".join(parts)) if parts else None
        self._root = root.rstrip("/") if root and root.rstrip("/") else None

    def __bool__(self) -> bool:
        return self._regex is not None

    def match(self, path: str) -> bool:
        """True when ``path`` (a real path on this machine) is excluded."""
        if self._regex is None:
            return False
        if self._regex.match(path):
            return True
        if self._root is not None and path.startswith(self._root + "/"):
            return self._regex.match(path[len(self._root):]) is not None
        return False


@dataclass
class WalkStats:
    """What the walk left out, by reason, and the mounts it did not enter."""

    skipped: Counter[str] = field(default_factory=Counter)
    mounts_skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Directory:
    """One directory's candidate files (name, lstat) as listed; ``complete`` when the listing was whole
    (then cache rows of names not in it can be dropped)."""

    path: str
    files: list[tuple[str, os.stat_result]]
    complete: bool = True
    identity: tuple[int, int] | None = None  # the directory's (device, inode) as listed; None for a named file


def walk(targets: Sequence[str], stats: WalkStats, *, skip_devices: Mapping[int, str] | None = None,
         excludes: Excludes | None = None, max_errors: int = 20) -> Iterator[Directory]:
    """The regular files below ``targets`` (directories or files), one directory at a time."""
    skip_devices = skip_devices or {}
    excludes = excludes or Excludes(())
    seen: set[tuple[int, int]] = set()

    def note(reason: str, path: str, detail: str = "") -> None:
        stats.skipped[reason] += 1
        if reason in (UNREADABLE,) and len(stats.errors) < max_errors:
            stats.errors.append(f"{os.fsencode(path).decode('utf-8', 'backslashreplace')}: {detail or reason}")

    for target in targets:
        if excludes.match(target):
            note(EXCLUDED, target)
            continue
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            note(VANISHED, target)
            continue
        except OSError as exc:
            note(UNREADABLE, target, exc.strerror or "")
            continue
        if stat.S_ISREG(st.st_mode):
            yield Directory(os.path.dirname(target) or ".", [(os.path.basename(target), st)], complete=False)
            continue
        if not stat.S_ISDIR(st.st_mode):
            note(NOT_REGULAR, target)
            continue
        stack = [(target, st)]
        while stack:
            path, dst = stack.pop()
            reason = skip_devices.get(dst.st_dev)
            if reason is not None:
                stats.skipped[reason] += 1
                stats.mounts_skipped.append(path)
                continue
            key = (dst.st_dev, dst.st_ino)
            if key in seen:
                continue
            seen.add(key)
            files: list[tuple[str, os.stat_result]] = []
            subdirs: list[tuple[str, os.stat_result]] = []
            complete = True
            try:
                fd = _open_directory(path, dst)
            except FileNotFoundError:
                note(VANISHED, path)
                continue
            except (NotADirectoryError, _Replaced):
                note(VANISHED, path)  # replaced (by a symlink, a file, another directory) since it was listed
                continue
            except OSError as exc:
                note(UNREADABLE, path, exc.strerror or "")
                continue
            try:
                with os.scandir(fd) as it:
                    for entry in it:
                        child = os.path.join(path, entry.name)
                        if excludes and excludes.match(child):
                            note(EXCLUDED, child)
                            continue
                        try:
                            est = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            note(VANISHED, child)
                            continue
                        except OSError as exc:
                            note(UNREADABLE, child, exc.strerror or "")
                            complete = False
                            continue
                        mode = est.st_mode
                        if stat.S_ISREG(mode):
                            files.append((entry.name, est))
                        elif stat.S_ISDIR(mode):
                            subdirs.append((child, est))
                        else:
                            note(NOT_REGULAR, child)  # symlinks, FIFOs, sockets, devices: never opened
            except OSError as exc:
                note(UNREADABLE, path, exc.strerror or "")
                continue
            finally:
                os.close(fd)
            if files or complete:
                yield Directory(path, files, complete, (dst.st_dev, dst.st_ino))
            stack.extend(reversed(subdirs))


class _Replaced(Exception):
    """The directory opened is not the one the walk listed."""


def _open_directory(path: str, expected: os.stat_result) -> int:
    """``path`` opened as a directory without following a symlink (nor updating its atime where permitted),
    checked to be the directory the walk saw (device and inode): the walk never leaves the tree, even when a
    directory is swapped for a symlink between its listing and its reading."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | NOATIME) if NOATIME else os.open(path, flags)
    except PermissionError as exc:
        if not NOATIME or exc.errno != errno.EPERM:
            raise
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Replaced(path) from None
        raise
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
        os.close(fd)
        raise _Replaced(path)
    return fd
