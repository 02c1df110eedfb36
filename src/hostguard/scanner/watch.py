"""Which files to scan as they appear: inotify on every directory of some trees (web roots, by default).

What a webshell upload or a dropper looks like to inotify, and what this module makes of it:

* a file written in place — ``IN_CLOSE_WRITE``: scan it now;
* a file moved or renamed in (an upload's temporary file renamed into the web root) — ``IN_MOVED_TO``:
  scan it now;
* a hard link (``ln``, ``link(2)``) — only ``IN_CREATE``, no close: a created file is scanned
  :data:`SETTLE` seconds later unless its close comes first (so a file still being written is not scanned
  half-written, and a link is not missed);
* a new directory (``mkdir``, or a tree moved in) — watched at once, then listed: files created in it
  before its watch existed have no event of their own, so every regular file found there is scanned;
* ``IN_Q_OVERFLOW`` — the kernel dropped events: every tree is scanned again (the scan cache makes that
  cheap for what did not change).

Symbolic links are never followed (``IN_DONT_FOLLOW``, ``scandir`` without following), so a link planted
in a web root cannot widen the watch. The watch limits are per user and shared with every program the
user runs (an editor, a file sync, a container runtime): a limit reached is said once, with the sysctl to
raise, and the trees are watched as far as the limit allowed — never silently.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from asyncinotify import Inotify, Mask, Watch

SETTLE = 0.5  # seconds a created file gets to be closed before it is scanned anyway (well within 1 s)
DIRECTORY_MASK = (Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.CREATE | Mask.DELETE_SELF
                  | Mask.ONLYDIR | Mask.DONT_FOLLOW | Mask.EXCL_UNLINK)
WATCHES_SYSCTL = "fs.inotify.max_user_watches"
INSTANCES_SYSCTL = "fs.inotify.max_user_instances"


class WatchError(Exception):
    """No watch at all can be set up (no inotify instance left, a tree that is not a directory)."""


@dataclass(frozen=True)
class Change:
    """Something to scan: one file (``kind`` ``file``), or a whole tree again (``rescan``: events were lost)."""

    kind: Literal["file", "rescan"]
    path: bytes


class Settling:
    """Created files waiting for their close (a hard link never has one): each is scanned when it is closed,
    or :data:`SETTLE` seconds after it appeared, whichever comes first. Shared by both watches."""

    def __init__(self) -> None:
        self._due: dict[bytes, float] = {}

    def created(self, path: bytes) -> None:
        """``path`` appeared: scan it by its close, or when it has settled."""
        self._due.setdefault(path, time.monotonic() + SETTLE)

    def closed(self, path: bytes) -> Iterator[Change]:
        """``path`` was written and closed, or moved in: scan it now (a regular file only)."""
        self._due.pop(path, None)
        if is_regular(path):  # not a symlink, a FIFO or a device moved in
            yield Change("file", path)

    def lost(self, roots: Sequence[bytes | str]) -> Iterator[Change]:
        """The kernel dropped events: forget what waits, scan every tree again."""
        self._due.clear()
        for root in roots:
            yield Change("rescan", os.fsencode(root))

    def changes(self, timeout: float, events: Callable[[float], Iterator[Change]]) -> Iterator[Change]:
        """The changes of the next ``timeout`` seconds: ``events(seconds)`` waits at most that long for events
        and yields their changes; created files are yielded as they settle."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            for path in [p for p, when in self._due.items() if when <= now]:
                del self._due[path]
                if is_regular(path):
                    yield Change("file", path)
            wait = deadline - now
            if self._due:
                wait = min(wait, min(self._due.values()) - now)
            if wait <= 0 and now >= deadline:
                return
            yield from events(max(wait, 0.0))


@dataclass
class TreeWatch:
    """inotify watches on every directory of ``roots`` (file system paths, bytes or text)."""

    roots: Sequence[bytes | str]
    problems: list[str] = field(default_factory=list)  # limits reached, directories that could not be watched
    _inotify: Inotify | None = None
    _paths: dict[int, bytes] = field(default_factory=dict)  # watch descriptor -> directory path
    _watches: dict[int, Watch] = field(default_factory=dict)
    _pending: Settling = field(default_factory=Settling)
    _limited: bool = False

    def start(self) -> list[Change]:
        """Watch every directory of the trees; the changes found while doing so (none: the trees themselves
        are the caller's first scan)."""
        try:
            self._inotify = Inotify()
        except OSError as exc:
            if exc.errno == errno.EMFILE:
                raise WatchError(f"no inotify instance left for this user ({INSTANCES_SYSCTL} = "
                                 f"{_sysctl(INSTANCES_SYSCTL)}, shared with every program this user runs): raise it, "
                                 f"e.g. sysctl -w {INSTANCES_SYSCTL}={_raise_to(INSTANCES_SYSCTL)}") from None
            raise WatchError(f"inotify: {exc.strerror or exc}") from None
        for root in self.roots:
            path = os.fsencode(root)
            if not os.path.isdir(path) or os.path.islink(path):
                raise WatchError(f"{os.fsdecode(path)}: not a directory")
            self._watch_tree(path, list_files=False)
        return []

    def close(self) -> None:
        """Remove every watch (closing the inotify instance does it)."""
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def watched(self) -> int:
        """How many directories are watched."""
        return len(self._paths)

    def describe(self) -> str:
        """What is watched, for people: ``12 directories (inotify)``."""
        count = self.watched()
        return f"{count} director{'y' if count == 1 else 'ies'} (inotify)"

    def changes(self, timeout: float) -> Iterator[Change]:
        """The changes of the next ``timeout`` seconds (fewer when the events stop coming): a file to scan is
        yielded once its event is read, a created file once it is closed or has settled."""
        inotify = self._inotify
        if inotify is None:
            raise WatchError("the watch is not started")

        def events(seconds: float) -> Iterator[Change]:
            inotify.sync_timeout = seconds
            event = inotify.sync_get()
            if event is not None:
                yield from self._event(event.mask, event.watch.wd if event.watch is not None else -1,
                                       os.fsencode(event.name) if event.name is not None else b"")

        yield from self._pending.changes(timeout, events)

    def _event(self, mask: Mask, wd: int, name: bytes) -> Iterator[Change]:
        if Mask.Q_OVERFLOW in mask:
            yield from self._pending.lost(self.roots)
            return
        if Mask.IGNORED in mask:
            self._paths.pop(wd, None)
            self._watches.pop(wd, None)
            return
        directory = self._paths.get(wd)
        if directory is None or not name:
            return
        path = os.path.join(directory, name)
        if Mask.ISDIR in mask:
            if Mask.MOVED_FROM in mask:  # moved away or renamed: its watches name paths that are gone
                self._forget_tree(path)
            elif mask & (Mask.CREATE | Mask.MOVED_TO):
                yield from self._watch_tree(path, list_files=True)
            return
        if mask & (Mask.CLOSE_WRITE | Mask.MOVED_TO):
            yield from self._pending.closed(path)
        elif Mask.CREATE in mask:
            self._pending.created(path)

    def _watch_tree(self, top: bytes, *, list_files: bool) -> list[Change]:
        """Watch ``top`` and every directory below it (breadth first, never through a symlink); with
        ``list_files``, the regular files found on the way are changes (they may predate the watch)."""
        found: list[Change] = []
        queue = [top]
        while queue:
            directory = queue.pop(0)
            if not self._add(directory):
                continue
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                queue.append(entry.path)
                            elif list_files and entry.is_file(follow_symlinks=False):
                                found.append(Change("file", entry.path))
                        except OSError:
                            continue
            except OSError as exc:  # gone already, or not readable
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                    self.problems.append(f"{os.fsdecode(directory)}: cannot be listed: {exc.strerror}")
        return found

    def _add(self, directory: bytes) -> bool:
        assert self._inotify is not None
        if self._limited:
            return False
        try:
            watch = self._inotify.add_watch(directory, DIRECTORY_MASK)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._limited = True
                self.problems.append(
                    f"inotify watch limit reached after {len(self._paths)} directories ({WATCHES_SYSCTL} = "
                    f"{_sysctl(WATCHES_SYSCTL)}, shared with every program this user runs): directories from "
                    f"{os.fsdecode(directory)} on are NOT watched; raise it, e.g. sysctl -w "
                    f"{WATCHES_SYSCTL}={_raise_to(WATCHES_SYSCTL)}")
            elif exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                self.problems.append(f"{os.fsdecode(directory)}: cannot be watched: {exc.strerror}")
            return False
        self._paths[watch.wd] = directory
        self._watches[watch.wd] = watch
        return True

    def _forget_tree(self, top: bytes) -> None:
        assert self._inotify is not None
        prefix = top + b"/"
        for wd, path in list(self._paths.items()):
            if path == top or path.startswith(prefix):
                del self._paths[wd]
                watch = self._watches.pop(wd, None)
                if watch is not None:
                    with contextlib.suppress(OSError):  # already gone with its directory
                        self._inotify.rm_watch(watch)


def is_regular(path: bytes) -> bool:
    """Whether ``path`` is a regular file (not through a symlink)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _sysctl(name: str) -> str:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return "unknown"


def _raise_to(name: str) -> int:
    current = _sysctl(name)
    return max(int(current) * 4, 524288) if current.isdigit() else 524288
