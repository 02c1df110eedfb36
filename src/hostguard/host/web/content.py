"""What lies under a document root: one bounded walk per root, the names it holds, the few files whose
first bytes matter (``phpinfo()`` pages), and what the serving account can write there.

The web family asks three questions of the same tree: which admin applications are installed where
(marker files), which files must never be served (``.env``, ``.git/``, dumps, PHP source copies), and which
PHP files print the PHP configuration. One walk answers all three. It never follows a symlink (a link to
``/`` in a web root must not make hostguard walk the host), stays inside ``--root``, and stops at a deadline
or an entry limit, saying so: "nothing found" must never hide "not looked".
"""

from __future__ import annotations

import os
import re
import stat as stat_mod
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property

from hostguard.engine.facts import Fact
from hostguard.host.base import FileMissing, Host, HostError
from hostguard.host.web.writable import AllowRule, Identity, WritableReport, writable_under

MAX_ENTRIES = 2_000_000   # a root holding more is walked this far and said so


@dataclass(frozen=True)
class RootIndex:
    """The names under one document root (paths relative to it, ``/``-separated, directories without a
    trailing slash), in walk order; ``stopped`` says why the walk ended early (empty: it saw everything)."""

    root: str
    files: tuple[str, ...]
    dirs: tuple[str, ...]
    stopped: str = ""
    unreadable: tuple[str, ...] = ()

    def matching(self, globs: Iterable[str]) -> list[str]:
        """Files whose base name, or whose path relative to the root, matches one of ``globs``."""
        pats = tuple(globs)
        out = []
        for rel in self.files:
            name = rel.rpartition("/")[2]
            if any(fnmatchcase(name, p) or fnmatchcase(rel, p) for p in pats):
                out.append(rel)
        return out

    def exists(self, rel: str) -> bool:
        """Whether ``rel`` (a file or a directory) was seen."""
        return rel in self._all

    @cached_property
    def _all(self) -> frozenset[str]:
        return frozenset(self.files) | frozenset(self.dirs)


@dataclass
class WebContent:
    """Walks document roots of one host on demand (the check's deadline applies), each root once."""

    host: Host
    _cache: dict[str, RootIndex] = field(default_factory=dict)
    _writable: dict[tuple[str, Identity, tuple[AllowRule, ...], int], WritableReport] = field(default_factory=dict)

    def index(self, root: str, deadline: float | None = None, cancel: threading.Event | None = None,
              limit: int = MAX_ENTRIES) -> RootIndex:
        """The names under ``root`` (a host path), walked without following symlinks."""
        if root in self._cache:
            return self._cache[root]
        result = walk_root(self.host, root, deadline, cancel, limit)
        if not result.stopped:
            self._cache[root] = result
        return result

    def writable(self, root: str, identity: Identity, allow: tuple[AllowRule, ...], deadline: float | None,
                 samples: int) -> WritableReport:
        """What ``identity`` can write under ``root`` (see :func:`writable_under`); HostError when the root
        is missing or not a directory. A complete walk is kept: the writable-files check and the PHP check
        ask the same question of the same roots."""
        key = (root, identity, allow, samples)
        if key in self._writable:
            return self._writable[key]
        report = writable_under(self.host, root, identity, allow, deadline, samples)
        if report.complete:
            self._writable[key] = report
        return report

    def head(self, path: str, size: int) -> bytes | None:
        """The first ``size`` bytes of a regular file under a root (None: gone, not a regular file)."""
        try:
            fd = os.open(self.host.resolve(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (HostError, OSError):
            return None
        try:
            if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
                return None
            return os.read(fd, size)
        except OSError:
            return None
        finally:
            os.close(fd)


def walk_root(host: Host, root: str, deadline: float | None = None, cancel: threading.Event | None = None,
              limit: int = MAX_ENTRIES) -> RootIndex:
    """Walk ``root`` breadth-first by directory file descriptor (``O_NOFOLLOW``: a directory swapped for a
    link during the walk is not entered)."""
    try:
        real = host.resolve(root)
    except FileMissing:
        return RootIndex(root, (), (), "the document root does not exist")
    files: list[str] = []
    dirs: list[str] = []
    unreadable: list[str] = []
    queue: list[str] = [""]
    seen = 0
    while queue:
        rel = queue.pop(0)
        if (deadline is not None and time.monotonic() > deadline) or (cancel is not None and cancel.is_set()):
            return RootIndex(root, tuple(files), tuple(dirs), f"time budget spent in /{rel}", tuple(unreadable))
        try:
            fd = os.open(os.path.join(real, rel) if rel else real,
                         os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            unreadable.append(rel or ".")
            continue
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    seen += 1
                    if seen > limit:
                        return RootIndex(root, tuple(files), tuple(dirs), f"more than {limit} entries",
                                         tuple(unreadable))
                    child = f"{rel}/{entry.name}" if rel else entry.name
                    try:
                        mode = entry.stat(follow_symlinks=False).st_mode
                    except OSError:
                        continue
                    if stat_mod.S_ISDIR(mode):
                        dirs.append(child)
                        queue.append(child)
                    elif stat_mod.S_ISREG(mode):
                        files.append(child)
        except OSError:
            unreadable.append(rel or ".")
        finally:
            os.close(fd)
    return RootIndex(root, tuple(files), tuple(dirs), "", tuple(unreadable))


def calls_phpinfo(head: bytes, pattern: re.Pattern[bytes]) -> bool:
    """Whether the start of a PHP file calls ``phpinfo()`` outside a ``//`` or ``#`` comment line."""
    for line in head.splitlines():
        stripped = line.lstrip()
        if stripped.startswith((b"//", b"#", b"*", b"/*")):
            continue
        if pattern.search(line):
            return True
    return False


def collect_web_content(host: Host) -> WebContent:
    """The lazy walker of this host's document roots (the walking happens in the check, under its budget)."""
    return WebContent(host)


WEB_CONTENT: Fact[WebContent] = Fact("web_content", collect_web_content)
