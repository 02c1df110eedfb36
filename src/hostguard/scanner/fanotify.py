"""Which files to scan as they appear, through fanotify file-system marks: one mark per file system holding a
watched tree (and per file system mounted inside a tree at start), however many directories the trees have.

inotify (``watch.py``) needs one watch per directory, counted against per-user limits every program shares.
As root, a fanotify *file-system* mark (``FAN_MARK_FILESYSTEM``) sees every directory entry change and every
close of a written file on the whole file system, with no per-directory cost; hostguard keeps the events
whose directory lies in one of the trees. The group reports each event with the directory's file handle
and the entry's name (``FAN_REPORT_DFID_NAME``, Linux 5.9), never an open file descriptor, so hostguard
opens nothing it is told about and the kernel pins no file.

The events and what this module makes of them are those of :class:`~hostguard.scanner.watch.TreeWatch`:

* ``FAN_CLOSE_WRITE`` (a file written in place) and ``FAN_MOVED_TO`` (moved or renamed in): scan it now;
* ``FAN_CREATE`` alone (a hard link): scan it :data:`~hostguard.scanner.watch.SETTLE` seconds later unless
  its close comes first;
* ``FAN_MOVED_TO`` with ``FAN_ONDIR`` (a tree moved or renamed in): list it, so the files it already holds
  are scanned. ``FAN_CREATE`` with ``FAN_ONDIR`` (``mkdir``) needs nothing: unlike inotify, where a new
  directory's files may come before its watch, the mark already covers everything created in it;
* ``FAN_Q_OVERFLOW`` (the queue of 16384 events overflowed): every tree is scanned again.

A directory's file handle is turned into its path with ``open_by_handle_at(2)`` (``O_PATH``) through a
descriptor of a watched tree (so the path is the one seen through that tree's mount) and
``readlink(/proc/self/fd/N)``. The answers are kept in a bounded cache; any directory renamed or moved on
a marked file system empties it, so a renamed directory is looked up afresh and reported under its new
name. Only regular files are reported (``lstat``: a symlink is never followed, and a symlink planted in a
tree cannot widen the watch, since events are placed by the real directory they happen in).

:func:`open_watch` chooses: fanotify where the kernel allows it (root, or ``CAP_SYS_ADMIN``, a kernel with
``FAN_REPORT_DFID_NAME``, file systems whose file handles can be opened again), inotify otherwise, with the
reason as the first of the watch's ``problems``. One tree that cannot take a mark makes every tree use inotify.

What the kernel accepts (Linux 6.18, ext4 and tmpfs, tried): ``FAN_MARK_FILESYSTEM`` with ``FAN_CLOSE_WRITE``
alone under any report flags; ``FAN_CREATE``/``FAN_MOVED_TO``/``FAN_ONDIR`` only with a FID report flag
(``FAN_REPORT_FID``, ``FAN_REPORT_DIR_FID`` or ``FAN_REPORT_DFID_NAME``), ``EINVAL`` without. The man pages
date ``FAN_REPORT_FID`` (and the directory entry events) to 5.1, ``FAN_REPORT_DFID_NAME`` to 5.9,
``FAN_MARK_FILESYSTEM`` to 4.20. ``FAN_REPORT_FID`` is not asked for: the child's own handle is not needed.
An unprivileged ``fanotify_init`` succeeds (5.13 and later) and the mark fails with ``EPERM``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import struct
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from hostguard.scanner.watch import Change, Settling, TreeWatch, WatchError

# <linux/fanotify.h>
FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
FAN_MARK_ADD = 0x1
FAN_MARK_FILESYSTEM = 0x100
FAN_CLOSE_WRITE = 0x8
FAN_MOVED_TO = 0x80
FAN_CREATE = 0x100
FAN_Q_OVERFLOW = 0x4000
FAN_ONDIR = 0x40000000
FANOTIFY_METADATA_VERSION = 3
FAN_EVENT_INFO_TYPE_DFID_NAME = 2
INIT_FLAGS = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME
EVENT_F_FLAGS = os.O_RDONLY | getattr(os, "O_LARGEFILE", 0)
MARK_MASK = FAN_CLOSE_WRITE | FAN_MOVED_TO | FAN_CREATE | FAN_ONDIR
MAX_HANDLE_SZ = 128
AT_EMPTY_PATH = 0x1000
CACHE_SIZE = 4096  # directory handles -> paths kept; a miss costs three system calls
_METADATA = struct.Struct("=IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
_INFO_HEADER = struct.Struct("=BBH")  # info_type, pad, len
_HANDLE_HEADER = struct.Struct("=Ii")  # handle_bytes, handle_type


class FanotifyUnavailable(WatchError):
    """The kernel, the privileges or a file system do not allow fanotify file-system marks here (the message
    says why); inotify can still watch."""


class _Statfs(ctypes.Structure):
    """``struct statfs`` of 64-bit Linux, as far as ``f_fsid`` (what fanotify events name a file system by)."""

    _fields_ = [("f_type", ctypes.c_long), ("f_bsize", ctypes.c_long), ("f_blocks", ctypes.c_ulong),
                ("f_bfree", ctypes.c_ulong), ("f_bavail", ctypes.c_ulong), ("f_files", ctypes.c_ulong),
                ("f_ffree", ctypes.c_ulong), ("f_fsid", ctypes.c_int * 2), ("f_namelen", ctypes.c_long),
                ("f_frsize", ctypes.c_long), ("f_flags", ctypes.c_long), ("f_spare", ctypes.c_long * 4)]


class _Libc:
    """The few libc calls Python's os module lacks, checked once."""

    def __init__(self) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self.fanotify_init = libc.fanotify_init
            self.fanotify_mark = libc.fanotify_mark
            self.open_by_handle_at = libc.open_by_handle_at
            self.name_to_handle_at = libc.name_to_handle_at
            self.fstatfs = libc.fstatfs
        except (OSError, AttributeError) as exc:
            raise FanotifyUnavailable(f"this C library has no fanotify calls ({exc})") from None
        self.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
        self.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
        self.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.name_to_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
                                           ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        self.fstatfs.argtypes = [ctypes.c_int, ctypes.POINTER(_Statfs)]
        for function in (self.fanotify_init, self.fanotify_mark, self.open_by_handle_at, self.name_to_handle_at,
                         self.fstatfs):
            function.restype = ctypes.c_int

    def fsid(self, fd: int) -> bytes:
        buf = _Statfs()
        if self.fstatfs(fd, ctypes.byref(buf)) != 0:
            raise _errno_error("fstatfs")
        return bytes(buf.f_fsid)

    def handle_of(self, fd: int) -> bytes:
        """The file handle (``struct file_handle``, header included) of the directory open as ``fd``."""
        buf = ctypes.create_string_buffer(_HANDLE_HEADER.size + MAX_HANDLE_SZ)
        struct.pack_into("=Ii", buf, 0, MAX_HANDLE_SZ, 0)
        mount_id = ctypes.c_int()
        if self.name_to_handle_at(fd, b"", buf, ctypes.byref(mount_id), AT_EMPTY_PATH) != 0:
            raise _errno_error("name_to_handle_at")
        size, _ = _HANDLE_HEADER.unpack_from(buf.raw)
        return buf.raw[:_HANDLE_HEADER.size + size]

    def path_of(self, mount_fd: int, handle: bytes) -> bytes:
        """The path of the directory with ``handle``, as seen through the mount of ``mount_fd``."""
        fd = self.open_by_handle_at(mount_fd, handle, os.O_PATH | os.O_CLOEXEC)
        if fd < 0:
            raise _errno_error("open_by_handle_at")
        try:
            return os.readlink(b"/proc/self/fd/%d" % fd)
        finally:
            os.close(fd)


def _errno_error(call: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{call}: {os.strerror(code)}")


@dataclass
class _Root:
    given: bytes  # as the caller named it: changes are reported under this
    real: bytes  # symlinks resolved: what open_by_handle_at's paths start with
    fd: int  # descriptor of the root: the mount that handles are opened through


@dataclass
class FanotifyWatch:
    """fanotify file-system marks on every file system holding one of ``roots`` (paths, bytes or text), with
    the interface of :class:`TreeWatch`; :meth:`watched` counts file systems, not directories."""

    roots: Sequence[bytes | str]
    problems: list[str] = field(default_factory=list)
    cache_size: int = CACHE_SIZE
    _fd: int = -1
    _libc: _Libc | None = None
    _mounts: dict[bytes, dict[int, list[_Root]]] = field(default_factory=dict)  # fsid -> mount id -> roots
    _cache: OrderedDict[bytes, tuple[bytes, ...]] = field(default_factory=OrderedDict)  # fsid+handle -> dirs
    _pending: Settling = field(default_factory=Settling)

    def start(self) -> list[Change]:
        """Mark the file systems of the trees (nothing to list: the trees are the caller's first scan);
        :class:`FanotifyUnavailable` when the kernel or the privileges do not allow it."""
        for root in self.roots:
            path = os.fsencode(root)
            if not os.path.isdir(path) or os.path.islink(path):
                raise WatchError(f"{os.fsdecode(path)}: not a directory")
        self._libc = libc = _Libc()
        try:
            self._fd = libc.fanotify_init(INIT_FLAGS, EVENT_F_FLAGS)
            if self._fd < 0:
                raise FanotifyUnavailable(_init_reason(ctypes.get_errno()))
            for root in self.roots:
                given = os.fsencode(root)
                real = os.path.realpath(given)
                self._mark(given, real)
                for below in _mount_points_below(real):  # another file system mounted inside the tree
                    self._mark(os.path.join(given, os.path.relpath(below, real)), below)
        except BaseException:
            self.close()
            raise
        return []

    def close(self) -> None:
        """Remove the marks (closing the group does it) and the trees' descriptors."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for mounts in self._mounts.values():
            for roots in mounts.values():
                for root in roots:
                    with contextlib.suppress(OSError):
                        os.close(root.fd)
        self._mounts.clear()
        self._cache.clear()

    def watched(self) -> int:
        """How many file systems are marked (each one covers every directory of the trees on it)."""
        return len(self._mounts)

    def describe(self) -> str:
        """What is watched, for people: ``1 file system (fanotify)``."""
        count = self.watched()
        return f"{count} file system{'' if count == 1 else 's'} (fanotify)"

    def changes(self, timeout: float) -> Iterator[Change]:
        """The changes of the next ``timeout`` seconds, as :meth:`TreeWatch.changes` gives them."""
        if self._fd < 0:
            raise WatchError("the watch is not started")
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)

        def events(seconds: float) -> Iterator[Change]:
            if poller.poll(seconds * 1000):
                yield from self._read()

        yield from self._pending.changes(timeout, events)

    def _read(self) -> Iterator[Change]:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        offset = 0
        while offset + _METADATA.size <= len(data):
            length, version, _, meta_len, mask, fd, _pid = _METADATA.unpack_from(data, offset)
            if version != FANOTIFY_METADATA_VERSION or length < _METADATA.size:
                self.problems.append(f"fanotify: unexpected event record (version {version}, length {length})")
                return
            if fd >= 0:  # never asked for (FID reporting), closed all the same
                os.close(fd)
            yield from self._event(mask, data[offset + meta_len:offset + length])
            offset += length

    def _event(self, mask: int, info: bytes) -> Iterator[Change]:
        if mask & FAN_Q_OVERFLOW:
            yield from self._pending.lost(self.roots)
            return
        record = _dfid_name(info)
        if record is None:
            return
        fsid, handle, name = record
        if mask & FAN_ONDIR and mask & FAN_MOVED_TO:
            self._cache.clear()  # some directory has a new path: every path cached below it is stale
        if name in (b"", b".", b".."):
            return
        for directory in self._directories(fsid, handle):
            path = os.path.join(directory, name)
            if mask & FAN_ONDIR:
                if mask & FAN_MOVED_TO:  # a tree moved in: its files predate it here
                    yield from _list_tree(path, self.problems)
            elif mask & (FAN_CLOSE_WRITE | FAN_MOVED_TO):
                yield from self._pending.closed(path)
            elif mask & FAN_CREATE:
                self._pending.created(path)

    def _directories(self, fsid: bytes, handle: bytes) -> tuple[bytes, ...]:
        """Where the directory with ``handle`` is in the trees (as the caller named them): nothing when it lies
        outside them, more than one path only when the trees reach it through more than one mount."""
        key = fsid + handle
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        mounts = self._mounts.get(fsid)
        if mounts is None:
            return ()
        assert self._libc is not None
        found: list[bytes] = []
        for roots in mounts.values():
            try:
                real = self._libc.path_of(roots[0].fd, handle)
            except OSError as exc:
                if exc.errno not in (errno.ESTALE, errno.ENOENT):  # gone already: nothing to scan
                    self.problems.append(f"fanotify: a directory of {os.fsdecode(roots[0].given)}'s file system "
                                         f"cannot be found again: {exc.strerror}")
                continue
            place = _within(real, roots)
            if place is not None:
                found.append(place)
        answer = tuple(found)
        self._cache[key] = answer
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return answer

    def _mark(self, path: bytes, real: bytes) -> None:
        """Mark the file system of ``path`` (``real`` without symlinks), opened as a tree of its own."""
        assert self._libc is not None
        fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)  # not O_PATH: fanotify_mark
        try:
            fsid = self._libc.fsid(fd)
            if self._libc.fanotify_mark(self._fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, MARK_MASK, fd, None) != 0:
                raise FanotifyUnavailable(_mark_reason(ctypes.get_errno(), path))
            try:  # a handle must lead back to its directory, or events cannot be placed
                back = self._libc.path_of(fd, self._libc.handle_of(fd))
            except OSError as exc:
                raise FanotifyUnavailable(f"{os.fsdecode(path)}: its file system's file handles cannot be opened "
                                          f"again ({exc.strerror})") from None
            if back != real:
                raise FanotifyUnavailable(f"{os.fsdecode(path)}: its file handle leads to {os.fsdecode(back)}, "
                                          "not to itself")
        except BaseException:
            os.close(fd)
            raise
        self._mounts.setdefault(fsid, {}).setdefault(_mount_id(fd), []).append(_Root(path, real, fd))


def _within(real: bytes, roots: list[_Root]) -> bytes | None:
    """``real`` as a path under the deepest root holding it, named as the caller named that root."""
    best: _Root | None = None
    for root in roots:
        prefix = root.real.rstrip(b"/") + b"/"
        if (real == root.real or real.startswith(prefix)) and (best is None or len(root.real) > len(best.real)):
            best = root
    if best is None:
        return None
    rest = real[len(best.real):].lstrip(b"/")
    return os.path.join(best.given, rest) if rest else best.given


def _dfid_name(info: bytes) -> tuple[bytes, bytes, bytes] | None:
    """The file system id, the directory's file handle and the entry's name of an event's info records."""
    offset = 0
    while offset + _INFO_HEADER.size <= len(info):
        kind, _, length = _INFO_HEADER.unpack_from(info, offset)
        if length < _INFO_HEADER.size:
            return None
        if kind == FAN_EVENT_INFO_TYPE_DFID_NAME:
            body = info[offset + _INFO_HEADER.size:offset + length]
            fsid, rest = body[:8], body[8:]
            if len(rest) < _HANDLE_HEADER.size:
                return None
            size, _ = _HANDLE_HEADER.unpack_from(rest)
            handle = rest[:_HANDLE_HEADER.size + size]
            name = rest[_HANDLE_HEADER.size + size:].split(b"\0", 1)[0]
            return fsid, handle, name
        offset += length
    return None


def _list_tree(top: bytes, problems: list[str]) -> Iterator[Change]:
    """Every regular file under a new directory (never through a symlink): they may predate its event."""
    queue = [top]
    while queue:
        directory = queue.pop(0)
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            queue.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            yield Change("file", entry.path)
                    except OSError:
                        continue
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                problems.append(f"{os.fsdecode(directory)}: cannot be listed: {exc.strerror}")


def _mount_points_below(top: bytes) -> list[bytes]:
    """The mount points strictly below ``top`` (as this process sees them), shallowest first."""
    prefix = top.rstrip(b"/") + b"/"
    found: set[bytes] = set()
    try:
        with open("/proc/self/mountinfo", "rb") as mountinfo:
            for line in mountinfo:
                fields = line.split(b" ")
                if len(fields) > 4:
                    point = _unescape(fields[4])
                    if point.startswith(prefix) and os.path.isdir(point) and not os.path.islink(point):
                        found.add(point)
    except OSError:
        return []
    return sorted(found, key=lambda p: (p.count(b"/"), p))


def _unescape(field: bytes) -> bytes:
    """A mountinfo path: space, tab, newline and backslash are written as octal escapes (``\\040``)."""
    if b"\\" not in field:
        return field
    out, i = bytearray(), 0
    while i < len(field):
        if field[i:i + 1] == b"\\" and field[i + 1:i + 4].isdigit():
            out.append(int(field[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return bytes(out)


def _mount_id(fd: int) -> int:
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as info:
            for line in info:
                if line.startswith(b"mnt_id:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return -1


def _init_reason(code: int) -> str:
    if code == errno.EPERM:
        return f"fanotify needs CAP_SYS_ADMIN here (running as uid {os.geteuid()})"
    if code == errno.EINVAL:
        return "this kernel's fanotify cannot report directories and names (FAN_REPORT_DFID_NAME, Linux 5.9)"
    if code == errno.ENOSYS:
        return "this kernel has no fanotify"
    if code == errno.EMFILE:
        return "no fanotify group left for this user (fs.fanotify.max_user_groups)"
    return f"fanotify_init: {os.strerror(code)}"


def _mark_reason(code: int, path: bytes) -> str:
    where = os.fsdecode(path)
    if code == errno.EPERM:
        return f"fanotify file-system marks need CAP_SYS_ADMIN (running as uid {os.geteuid()})"
    if code in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENODEV, errno.EXDEV):
        return f"{where}: its file system does not take fanotify file-system marks with file handles " \
               f"({os.strerror(code)})"
    if code == errno.ENOSPC:
        return "no fanotify mark left for this user (fs.fanotify.max_user_marks)"
    return f"{where}: fanotify_mark: {os.strerror(code)}"


def open_watch(roots: Sequence[bytes | str]) -> TreeWatch | FanotifyWatch:
    """A started watch of ``roots``: fanotify file-system marks where the kernel allows them, inotify otherwise,
    with why fanotify was not used as the first of its ``problems``. :class:`WatchError` when neither can."""
    fanotify = FanotifyWatch(roots)
    try:
        fanotify.start()
        return fanotify
    except FanotifyUnavailable as exc:
        reason = str(exc)
    inotify = TreeWatch(roots)
    inotify.problems.append(f"fanotify not used ({reason}): watching every directory with inotify")
    inotify.start()
    return inotify
