"""Quarantine: move a detected file away, never delete it; restore it byte-exact with its metadata.

hostguard runs as root inside directories attackers write (web roots, /tmp), so every move goes through
directory file descriptors:

* the path is opened one component at a time with ``O_NOFOLLOW | O_DIRECTORY`` from the root down (a
  symlink anywhere on the way is refused, never followed); the file itself is looked at with ``lstat`` and
  opened with ``O_NOFOLLOW | O_NOATIME`` relative to its parent's fd; it must be a regular file and its
  (device, inode) must be the one the caller scanned, else nothing is done;
* immutable/append-only inode flags (``chattr +i``, common with miners) are recorded, cleared to act, and set
  again on restore (a parent directory with those flags is refused: hostguard does not change directories);
* the content is always *copied* into ``<state>/quarantine/`` (0700, root's), transformed (below), synced,
  read back and its SHA-256 verified against the original's (and the scanner's, when given), recorded in the
  ledger, and only then is the original name removed (``unlinkat`` on the parent fd) after checking once more
  that the name is still the same inode and the inode unchanged (size, mtime and ctime as when copied). A
  file is never removed without a verified copy recorded first. Since the stored form differs from the
  original, a copy is made even on the same file system (so /tmp and /dev/shm are no special case);
* a file with other hard links (``st_nlink > 1``) keeps its other names: only this name is removed, and the
  result says so; a process running the file is reported (and killed through ``respond/kill.py`` when asked).

The stored copy (``<id>.hgq``, mode 0400, never executable) is a header line ``hostguard quarantine v1 <id>``
and the content XORed with a keystream: SHAKE-256 of the entry's random 32-byte key and the chunk number, per
MiB. The key lives only in the ledger (state.db), so no scanner, hostguard's included, finds the malware in the
stored copy, and a stray copy cannot be run or served.

Restore writes the bytes to a new temporary file beside the target (``O_EXCL | O_NOFOLLOW``), then ``fchown``,
then ``fchmod`` (a chown clears setuid/setgid and ``security.capability``), then the extended attributes, then
the times (ns), links it into place (``link`` never replaces a name) and removes the temporary name, and only
then sets the immutable/append-only flags. ctime cannot be set by any call, and the other hard links of the
original are not re-created. Every quarantine, restore, purge and refusal is in the audit log.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import secrets
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hostguard.findings import portable
from hostguard.remediation import Action
from hostguard.respond.kill import DEFAULT_GRACE, exe_of, kill_process, read_stat, start_time
from hostguard.store.quarantine import (
    FAILED,
    PURGED,
    QUARANTINED,
    RESTORED,
    Entry,
    LedgerError,
    QuarantineStore,
    printable,
)
from hostguard.store.state import StateStore

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FS_IOC_GETFLAGS, FS_IOC_SETFLAGS = 0x80086601, 0x40086602
FS_SYNC_FL, FS_IMMUTABLE_FL, FS_APPEND_FL, FS_NODUMP_FL, FS_NOATIME_FL = 0x08, 0x10, 0x20, 0x40, 0x80
GUARD_FLAGS = FS_IMMUTABLE_FL | FS_APPEND_FL          # cleared to act, set again on restore
RESTORED_FLAGS = GUARD_FLAGS | FS_SYNC_FL | FS_NODUMP_FL | FS_NOATIME_FL   # the flags a restore sets again
QUARANTINE_DIR = "quarantine"
HEADER = b"hostguard quarantine v1 "
CHUNK = 1 << 20
KEY_BYTES = 32
DISPLACED_RULE = "hostguard.restore"   # the rule recorded for a file quarantined to make room for a restore

Clock = Callable[[], str]


class QuarantineError(Exception):
    """A quarantine, restore or purge refused or failed; the message is one line for people."""


def now_iso() -> str:
    """The time recorded in the ledger and the audit log."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RunningProcess:
    """A process whose executable is the quarantined file (same device and inode), and what a kill did."""

    pid: int
    exe: str | None
    start: float
    outcome: str | None = None   # a kill's outcome (respond/kill.py), None when no kill was asked
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """For the ledger and the audit record."""
        return {"pid": self.pid, "exe": self.exe, "start_time": round(self.start, 2), "kill": self.outcome,
                "detail": self.detail}


@dataclass
class Quarantined:
    """What :func:`quarantine` did: the ledger entry, the processes running the file, and notes for people."""

    entry: Entry
    processes: list[RunningProcess] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The result for people."""
        e = self.entry
        return [f"quarantined {e.readable_path} as {e.id} (sha256 {e.sha256}, {e.size} bytes, rule {e.rule})",
                *self.notes, f"restore with: hostguard quarantine restore {e.id}"]


@dataclass
class Restored:
    """What :func:`restore` did: the entry (now restored), where to, and notes (what could not be restored)."""

    entry: Entry
    target: bytes
    notes: list[str] = field(default_factory=list)
    displaced: Quarantined | None = None

    def lines(self) -> list[str]:
        """The result for people."""
        out = [] if self.displaced is None else [f"the file in the way was quarantined first: "
                                                 f"{self.displaced.entry.id} ({self.displaced.entry.readable_path})"]
        return [*out, f"restored {self.entry.id} to {printable(self.target)} (sha256 {self.entry.sha256} verified)",
                *self.notes]


# --- the remediation step a malware finding carries ------------------------------------------------------------

def quarantine_action(path: str, dev: int, ino: int, sha256: str, rule: str) -> Action:
    """The ``action`` step of a malware finding's remediation (``hostguard fix`` carries it out)."""
    return Action("quarantine", (("path", path), ("dev", str(dev)), ("ino", str(ino)), ("sha256", sha256),
                                 ("rule", rule)))


@dataclass(frozen=True)
class Request:
    """The arguments of a quarantine step."""

    path: str
    dev: int
    ino: int
    sha256: str | None
    rule: str


def request_of(step: Action) -> Request:
    """The arguments of a ``quarantine`` action step; ValueError when it does not name them."""
    args = dict(step.args)
    try:
        return Request(args["path"], int(args["dev"]), int(args["ino"]), args.get("sha256") or None,
                       args.get("rule") or "unknown")
    except (KeyError, ValueError) as exc:
        raise ValueError(f"`{step.describe()}` needs path, dev and ino ({exc})") from None


# --- paths, directories, flags, attributes ---------------------------------------------------------------------

def _split(path: bytes) -> tuple[list[bytes], bytes]:
    """The directories and the name of an absolute path (no ``..`` or ``.``: a path is taken as written)."""
    parts = [p for p in path.split(b"/") if p]
    if not path.startswith(b"/") or not parts or any(p in (b".", b"..") for p in parts) or path.endswith(b"/"):
        raise QuarantineError(f"{printable(path)}: a path must be absolute, name a file and hold no '.' or '..'")
    return parts[:-1], parts[-1]


@contextlib.contextmanager
def _walk(root: str, parts: list[bytes], create: bool = False) -> Iterator[int]:
    """An fd of the directory ``parts`` below ``root``, each component opened with ``O_NOFOLLOW``; a missing
    one is created (0700) with ``create``, else refused."""
    fd = os.open(root, DIR_FLAGS)
    try:
        for i, part in enumerate(parts):
            try:
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                where = printable(b"/" + b"/".join(parts[:i + 1]))
                if not create:
                    raise QuarantineError(f"directory {where} is missing: not created") from None
                os.mkdir(part, 0o700, dir_fd=fd)
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                where = printable(b"/" + b"/".join(parts[:i + 1]))
                try:   # O_DIRECTORY | O_NOFOLLOW answers ENOTDIR for a symlink: say which it is
                    link = stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
                except OSError:
                    link = False
                kind = "a symbolic link (never followed)" if link or exc.errno == errno.ELOOP else (
                    "not a directory" if exc.errno == errno.ENOTDIR else exc.strerror)
                raise QuarantineError(f"{where}: {kind}") from None
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def get_flags(fd: int) -> int | None:
    """The inode flags (``FS_IOC_GETFLAGS``), None where the file system has none."""
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, struct.pack("i", 0)))[0])
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return None
        raise


def set_flags(fd: int, flags: int) -> None:
    """Set the inode flags (``FS_IOC_SETFLAGS``)."""
    fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags))


def read_xattrs(fd: int) -> tuple[tuple[bytes, bytes], ...]:
    """Every extended attribute of the open file, all namespaces root can read (``security.*`` labels and
    capabilities, ``system.posix_acl_*``, ``trusted.*``, ``user.*``), as exact bytes."""
    try:
        names = os.listxattr(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return ()
        raise
    out = []
    for name in names:
        with contextlib.suppress(FileNotFoundError, OSError):   # ENODATA: removed meanwhile
            out.append((os.fsencode(name), os.getxattr(fd, name)))
    return tuple(out)


def _private_dir(state_dir: str) -> int:
    """An fd of ``<state>/quarantine``: created 0700, refused when a symlink or not root's (hostguard's user's),
    set back to 0700 when found looser."""
    parent = os.open(state_dir, DIR_FLAGS)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(QUARANTINE_DIR, 0o700, dir_fd=parent)
        try:
            fd = os.open(QUARANTINE_DIR, DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise QuarantineError(f"{state_dir}/{QUARANTINE_DIR}: not a plain directory ({exc.strerror})") from None
    finally:
        os.close(parent)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid():
        os.close(fd)
        raise QuarantineError(f"{state_dir}/{QUARANTINE_DIR} belongs to uid {st.st_uid}, not to hostguard's user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.fchmod(fd, 0o700)
    return fd


def _xor(chunk: bytes, key: bytes, index: int) -> bytes:
    stream = hashlib.shake_256(key + index.to_bytes(8, "big")).digest(len(chunk))
    return (int.from_bytes(chunk, "little") ^ int.from_bytes(stream, "little")).to_bytes(len(chunk), "little")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _header(entry_id: str) -> bytes:
    return HEADER + entry_id.encode() + b"\n"


def _store(source: int, qdir: int, name: str, key: bytes, entry_id: str) -> tuple[str, int]:
    """Write the transformed copy of ``source`` as ``name`` (0400, ``O_EXCL``), synced; the original's sha256
    and size as read."""
    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o400, dir_fd=qdir)
    try:
        _write_all(out, _header(entry_id))
        h, offset, index = hashlib.sha256(), 0, 0
        while chunk := os.pread(source, CHUNK, offset):
            h.update(chunk)
            _write_all(out, _xor(chunk, key, index))
            offset += len(chunk)
            index += 1
        os.fchmod(out, 0o400)
        os.fsync(out)
    finally:
        os.close(out)
    os.fsync(qdir)
    return h.hexdigest(), offset


def _decoded(stored: int, key: bytes, entry_id: str) -> Iterator[bytes]:
    """The original bytes of an open stored copy, chunk by chunk."""
    head = _header(entry_id)
    if os.pread(stored, len(head), 0) != head:
        raise QuarantineError(f"quarantine entry {entry_id}: the stored copy has no valid header (damaged)")
    offset, index = len(head), 0
    while chunk := os.pread(stored, CHUNK, offset):
        yield _xor(chunk, key, index)
        offset += len(chunk)
        index += 1


def _verify(qdir: int, name: str, key: bytes, entry_id: str) -> tuple[str, int]:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=qdir)
    try:
        h, size = hashlib.sha256(), 0
        for chunk in _decoded(fd, key, entry_id):
            h.update(chunk)
            size += len(chunk)
        return h.hexdigest(), size
    finally:
        os.close(fd)


def running(dev: int, ino: int) -> list[RunningProcess]:
    """Every process whose executable is the inode (``dev``, ``ino``): ``/proc/PID/exe`` is stat'ed, which
    follows the kernel's link to the program even when deleted or reached through another hard link."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{name}/exe")
            if (st.st_dev, st.st_ino) != (dev, ino):
                continue
            pid = int(name)
            found.append(RunningProcess(pid, exe_of(pid), start_time(read_stat(pid))))
        except (OSError, ValueError, IndexError):
            continue   # a kernel thread, a process gone meanwhile
    return sorted(found, key=lambda p: p.pid)


# --- quarantine -------------------------------------------------------------------------------------------------

def quarantine(state: StateStore, host_key: str, path: str | bytes, dev: int, ino: int, *, sha256: str | None,
               rule: str, reason: str, kill: bool = False, kill_grace: float = DEFAULT_GRACE, root: str = "/",
               clock: Clock = now_iso) -> Quarantined:
    """Move the file at ``path`` (below ``root``) into the quarantine, if it is still the regular file
    (``dev``, ``ino``) the caller scanned and, when ``sha256`` is given, still has that content.

    ``rule`` is what matched and ``reason`` why it is quarantined (both recorded). Processes running the file
    are reported (live only, ``root`` "/"), and killed first when ``kill`` is set (``respond/kill.py``: pidfd,
    start time and exe re-checked). Raises :class:`QuarantineError` (audited) when refused; nothing is moved
    then, except as the message says."""
    raw = os.fsencode(path)
    try:
        return _quarantine(state, host_key, raw, dev, ino, sha256, rule, reason, kill, kill_grace, root, clock)
    except QuarantineError as exc:
        state.audit(host_key, "quarantine", printable(raw), f"refused: {exc}", clock(),
                    json.dumps({"path": portable(raw), "dev": dev, "ino": ino, "sha256": sha256, "rule": rule},
                               sort_keys=True))
        raise
    except OSError as exc:
        message = f"{printable(raw)}: {exc.strerror or exc}"
        state.audit(host_key, "quarantine", printable(raw), f"failed: {message}", clock(),
                    json.dumps({"path": portable(raw), "rule": rule}, sort_keys=True))
        raise QuarantineError(message) from exc


def _open_file(dfd: int, name: bytes, shown: str, dev: int, ino: int) -> int:
    """The file ``name`` in ``dfd``, only if it is a regular file with the identity scanned."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        raise QuarantineError(f"{shown}: no such file (gone since the scan?)") from None
    if stat.S_ISLNK(st.st_mode):
        raise QuarantineError(f"{shown}: a symbolic link now (never followed): nothing moved")
    if not stat.S_ISREG(st.st_mode):
        raise QuarantineError(f"{shown}: not a regular file: nothing moved")
    if (st.st_dev, st.st_ino) != (dev, ino):
        raise QuarantineError(f"{shown}: not the file scanned (device:inode {st.st_dev}:{st.st_ino} now, "
                              f"{dev}:{ino} scanned): replaced since the scan, nothing moved")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags | os.O_NOATIME, dir_fd=dfd)
    except PermissionError:   # O_NOATIME needs the owner or CAP_FOWNER
        fd = os.open(name, flags, dir_fd=dfd)
    except OSError as exc:
        raise QuarantineError(f"{shown}: {'a symbolic link now' if exc.errno == errno.ELOOP else exc.strerror}: "
                              "nothing moved") from None
    now = os.fstat(fd)
    if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (dev, ino):
        os.close(fd)
        raise QuarantineError(f"{shown}: replaced while being opened: nothing moved")
    return fd


def _quarantine(state: StateStore, host_key: str, raw: bytes, dev: int, ino: int, sha256: str | None, rule: str,
                reason: str, kill: bool, kill_grace: float, root: str, clock: Clock) -> Quarantined:
    shown = printable(raw)
    parts, name = _split(raw)
    with _walk(root, parts) as dfd:
        if (get_flags(dfd) or 0) & GUARD_FLAGS:
            raise QuarantineError(f"{shown}: its directory is immutable or append-only, so no name can be removed "
                                  "from it (hostguard does not change directories; chattr -ia it first)")
        fd = _open_file(dfd, name, shown, dev, ino)
        try:
            return _move(state, host_key, raw, dfd, name, fd, sha256, rule, reason, kill, kill_grace, root, clock)
        finally:
            os.close(fd)


def _move(state: StateStore, host_key: str, raw: bytes, dfd: int, name: bytes, fd: int, sha256: str | None,
          rule: str, reason: str, kill: bool, kill_grace: float, root: str, clock: Clock) -> Quarantined:
    """Report (and, when asked, kill) the processes running the file, clear its guard flags, move it."""
    flags = get_flags(fd)
    st = os.fstat(fd)
    processes = running(st.st_dev, st.st_ino) if os.path.realpath(root) == "/" else []
    for p in processes:
        if kill:
            result = kill_process(p.pid, p.start, p.exe, grace=kill_grace)
            p.outcome, p.detail = result.outcome, result.detail
    cleared = flags is not None and bool(flags & GUARD_FLAGS)
    if flags is not None and cleared:
        set_flags(fd, flags & ~GUARD_FLAGS)
    try:
        return _copy_and_unlink(state, host_key, raw, dfd, name, fd, flags, sha256, rule, reason, processes, clock)
    except BaseException:
        if flags is not None and cleared:   # the file stays: as it was found
            with contextlib.suppress(OSError):
                set_flags(fd, flags)
        raise


def _copy_and_unlink(state: StateStore, host_key: str, raw: bytes, dfd: int, name: bytes, fd: int,
                     flags: int | None, sha256: str | None, rule: str, reason: str,
                     processes: list[RunningProcess], clock: Clock) -> Quarantined:
    shown = printable(raw)
    base = os.fstat(fd)   # after the flags were cleared (that moved ctime): any later change moves it again
    xattrs = read_xattrs(fd)
    ledger = QuarantineStore(state)
    entry_id, key = secrets.token_hex(6), secrets.token_bytes(KEY_BYTES)
    stored = f"{entry_id}.hgq"
    qdir = _private_dir(str(state.directory))
    recorded = False
    try:
        digest, size = _store(fd, qdir, stored, key, entry_id)

        def drop(why: str) -> QuarantineError:
            os.unlink(stored, dir_fd=qdir)   # our own copy of a file left in place
            return QuarantineError(f"{shown}: {why}: nothing moved")

        if sha256 is not None and digest != sha256.lower():
            raise drop(f"content differs from the scan (sha256 {digest}, scanned {sha256})")
        if size != base.st_size:
            raise drop(f"read {size} bytes of {base.st_size}: changed while copied")
        if _verify(qdir, stored, key, entry_id) != (digest, size):
            raise drop("the stored copy did not read back the same")
        entry = Entry(entry_id, host_key, raw, digest, size, base.st_mode, base.st_uid, base.st_gid,
                      base.st_atime_ns, base.st_mtime_ns, base.st_ctime_ns, base.st_dev, base.st_ino, base.st_nlink,
                      flags, xattrs, rule, reason, key, stored, clock(), tuple(p.to_dict() for p in processes))
        ledger.add(entry)
        recorded = True
    finally:
        if not recorded:   # a copy without its ledger row (and key) could never be restored nor purged
            with contextlib.suppress(OSError):
                os.unlink(stored, dir_fd=qdir)
        os.close(qdir)
    # the copy is verified and recorded: now, and only now, the name may go
    after = os.fstat(fd)
    try:
        if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (base.st_size, base.st_mtime_ns, base.st_ctime_ns):
            raise QuarantineError(f"{shown}: changed while being copied")
        _remove_name(dfd, name, f".hostguard-quarantine-{entry_id}".encode(), base, fd, shown)
    except (QuarantineError, OSError) as exc:
        why = str(exc) if isinstance(exc, QuarantineError) else f"{shown}: not removed ({exc.strerror})"
        ledger.mark(entry, FAILED, clock(), note=why)   # audited by quarantine() with the message below
        raise QuarantineError(f"{why}: the original is left in place; its copy is kept as entry {entry_id} "
                              f"(hostguard quarantine purge {entry_id} deletes it)") from None
    with contextlib.suppress(OSError):
        os.fsync(dfd)
    notes = _notes(entry, processes)
    if flags is not None and flags & GUARD_FLAGS and after.st_nlink > 1:
        with contextlib.suppress(OSError):   # the other names keep the content as it was found
            set_flags(fd, flags)
    state.audit(host_key, "quarantine", entry_id, f"{rule}: {reason}", entry.quarantined_at, _detail(entry))
    return Quarantined(entry, processes, notes)


RENAME_NOREPLACE = 1


def _rename_noreplace(dfd: int, old: bytes, new: bytes) -> None:
    """``renameat2(dfd, old, dfd, new, RENAME_NOREPLACE)``: never replaces ``new`` (glibc 2.28+)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(dfd, old, dfd, new, RENAME_NOREPLACE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _remove_name(dfd: int, name: bytes, private: bytes, base: os.stat_result, fd: int, shown: str) -> None:
    """Remove ``name`` only if it still is the file copied (``base``): in a directory others can write, a name
    checked then unlinked may have been swapped in between, so the name is first moved (atomically, never
    over anything) to ``private``, checked there and put back if it is another file; the file's own link
    count then tells whether the name removed was its."""
    links = os.fstat(fd).st_nlink
    _rename_noreplace(dfd, name, private)
    now = os.stat(private, dir_fd=dfd, follow_symlinks=False)
    if (now.st_dev, now.st_ino) != (base.st_dev, base.st_ino):
        with contextlib.suppress(OSError):
            _rename_noreplace(dfd, private, name)   # someone else's file: back where it was
        raise QuarantineError(f"{shown}: the name was replaced while the file was copied")
    try:
        os.unlink(private, dir_fd=dfd)
    except OSError:
        with contextlib.suppress(OSError):
            _rename_noreplace(dfd, private, name)   # not removed: left as it was found
        raise
    if os.fstat(fd).st_nlink != links - 1:
        raise QuarantineError(f"{shown}: a name other than the file's was removed while it was quarantined "
                              f"(.{printable(private)} was swapped): check the directory")


def _notes(entry: Entry, processes: list[RunningProcess]) -> list[str]:
    notes = []
    if entry.flags is not None and entry.flags & GUARD_FLAGS:
        notes.append("it was immutable/append-only (chattr +i/+a): recorded, cleared to move it, set again on restore")
    if entry.nlink > 1:
        notes.append(f"it had {entry.nlink} hard links: only this name was removed, {entry.nlink - 1} other "
                     f"name(s) still point at the same content (find them: find / -xdev -inum {entry.ino})")
    for p in processes:
        if p.outcome is None:
            notes.append(f"pid {p.pid} is running it ({p.exe}): it keeps running from the removed file; "
                         "kill it with hostguard fix --kill, or quarantine with kill")
        else:
            notes.append(f"pid {p.pid} was running it ({p.exe}): kill {p.outcome} ({p.detail})")
    return notes


def _detail(entry: Entry, **more: Any) -> str:
    return json.dumps({"path": portable(entry.path), "sha256": entry.sha256, "size": entry.size, "rule": entry.rule,
                       "nlink": entry.nlink, "flags": entry.flags, "stored": entry.stored,
                       "processes": list(entry.processes), **more}, sort_keys=True)


# --- restore ----------------------------------------------------------------------------------------------------

def _entry(state: StateStore, entry_id: str) -> Entry:
    try:
        return QuarantineStore(state).get(entry_id)
    except LedgerError as exc:
        raise QuarantineError(str(exc)) from None


def restore(state: StateStore, host_key: str, entry_id: str, to: str | bytes | None = None, force: bool = False,
            root: str = "/", clock: Clock = now_iso) -> Restored:
    """Put a quarantined file back, byte-exact with its metadata, at its original path or at ``to``.

    The original path must be free (``force``: what is there now is quarantined first, never deleted) and its
    directory must exist (never created: an attacker may have chosen it); ``to`` is created with ``O_EXCL``
    (never replaces anything) and its missing directories are created (0700)."""
    try:
        return _restore(state, host_key, entry_id, to, force, root, clock)
    except QuarantineError as exc:
        state.audit(host_key, "restore", entry_id, f"refused: {exc}", clock(),
                    json.dumps({"to": portable(os.fsencode(to)) if to is not None else None, "force": force}))
        raise
    except OSError as exc:
        message = f"restore of {entry_id}: {exc.strerror or exc}"
        state.audit(host_key, "restore", entry_id, f"failed: {message}", clock(), "")
        raise QuarantineError(message) from exc


def _open_stored(state: StateStore, entry: Entry) -> int:
    qdir = _private_dir(str(state.directory))
    try:
        return os.open(entry.stored, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=qdir)
    except FileNotFoundError:
        raise QuarantineError(f"quarantine entry {entry.id}: its stored copy {state.directory}/{QUARANTINE_DIR}/"
                              f"{entry.stored} is missing") from None
    except OSError as exc:
        raise QuarantineError(f"quarantine entry {entry.id}: its stored copy cannot be opened ({exc.strerror})") from None
    finally:
        os.close(qdir)


def _restore(state: StateStore, host_key: str, entry_id: str, to: str | bytes | None, force: bool, root: str,
             clock: Clock) -> Restored:
    entry = _entry(state, entry_id)
    if entry.state != QUARANTINED:
        where = f" to {printable(entry.restored_to)}" if entry.restored_to else ""
        raise QuarantineError(f"quarantine entry {entry.id} is {entry.state}{where}: nothing to restore")
    target = os.fsencode(os.path.abspath(to)) if to is not None else entry.path
    parts, name = _split(target)
    shown = printable(target)
    stored = _open_stored(state, entry)
    try:
        with _walk(root, parts, create=to is not None) as dfd:
            displaced = _make_room(state, host_key, dfd, name, target, entry, to is not None, force, root, clock)
            notes = _write_back(dfd, name, shown, stored, entry)
    finally:
        os.close(stored)
    entry = QuarantineStore(state).mark(entry, RESTORED, clock(), restored_to=target)
    notes.append("ctime cannot be restored (no call sets it): it is the time of the restore")
    if entry.nlink > 1:
        notes.append(f"the original had {entry.nlink} hard links: only this name is restored (the others were "
                     "never removed; they are separate files from now on)")
    notes.append(f"the stored copy stays until: hostguard quarantine purge {entry.id}")
    state.audit(host_key, "restore", entry.id, f"restored to {shown}", clock(),
                _detail(entry, to=portable(target), displaced=displaced.entry.id if displaced else None))
    return Restored(entry, target, notes, displaced)


def _make_room(state: StateStore, host_key: str, dfd: int, name: bytes, target: bytes, entry: Entry, elsewhere: bool,
               force: bool, root: str, clock: Clock) -> Quarantined | None:
    """None when the name is free; with ``force`` (original path only), what is there is quarantined first."""
    shown = printable(target)
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if elsewhere:
        raise QuarantineError(f"{shown} exists: restore --to never replaces a file")
    if not force:
        raise QuarantineError(f"{shown} exists now: restore --force quarantines it first, or restore --to PATH")
    if not stat.S_ISREG(st.st_mode):
        raise QuarantineError(f"{shown} exists and is not a regular file: move it away yourself (never deleted)")
    return quarantine(state, host_key, target, st.st_dev, st.st_ino, sha256=None, rule=DISPLACED_RULE,
                      reason=f"in the way of restoring {entry.id}", root=root, clock=clock)


def _write_back(dfd: int, name: bytes, shown: str, stored: int, entry: Entry) -> list[str]:
    """The restore proper: temporary file, bytes (verified), owner, mode, attributes, times, link, flags."""
    notes: list[str] = []
    # an unnamed file (O_TMPFILE) where the file system allows: nobody can swap a name that does not exist,
    # and a crash leaves nothing behind in the (attacker-writable) directory
    tmp: bytes | None = None
    try:
        out = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=dfd)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
        tmp = f".hostguard-restore-{secrets.token_hex(6)}".encode()
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
    linked = False
    try:
        h, size = hashlib.sha256(), 0
        for chunk in _decoded(stored, entry.key, entry.id):
            h.update(chunk)
            size += len(chunk)
            _write_all(out, chunk)
        if (h.hexdigest(), size) != (entry.sha256, entry.size):
            raise QuarantineError(f"quarantine entry {entry.id}: the stored copy is damaged (sha256 {h.hexdigest()}, "
                                  f"{size} bytes; recorded {entry.sha256}, {entry.size} bytes): nothing restored")
        os.fchown(out, entry.uid, entry.gid)            # clears setuid/setgid and security.capability ...
        os.fchmod(out, stat.S_IMODE(entry.mode))        # ... so the mode comes after it
        for key, value in entry.xattrs:                 # ... and the attributes after both
            try:
                os.setxattr(out, key, value)
            except OSError as exc:
                notes.append(f"extended attribute {printable(key)} not restored: {exc.strerror}")
        os.fsync(out)
        os.utime(out, ns=(entry.atime_ns, entry.mtime_ns))   # last of the file's own metadata
        try:
            if tmp is None:
                os.link(f"/proc/self/fd/{out}", name, dst_dir_fd=dfd, follow_symlinks=True)
            else:
                os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        except FileExistsError:
            raise QuarantineError(f"{shown} appeared while restoring: nothing replaced") from None
        linked = True
        if tmp is not None:
            os.unlink(tmp, dir_fd=dfd)
        placed, ours = os.stat(name, dir_fd=dfd, follow_symlinks=False), os.fstat(out)
        if (placed.st_dev, placed.st_ino) != (ours.st_dev, ours.st_ino):
            raise QuarantineError(f"{shown} was swapped right after the restore: check it (the restored file "
                                  "is not the one at that name)")
        if entry.flags is not None and entry.flags & RESTORED_FLAGS:
            try:
                set_flags(out, (get_flags(out) or 0) | (entry.flags & RESTORED_FLAGS))
            except OSError as exc:
                notes.append(f"inode flags {entry.flags & RESTORED_FLAGS:#x} (chattr) not restored: {exc.strerror}")
        with contextlib.suppress(OSError):
            os.fsync(dfd)
    except BaseException:
        if not linked and tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
        raise
    finally:
        os.close(out)
    return notes


# --- purge ------------------------------------------------------------------------------------------------------

def purge(state: StateStore, host_key: str, entry_id: str, clock: Clock = now_iso) -> tuple[Entry, str]:
    """Delete an entry's stored copy (the one deletion hostguard does, asked by the owner) and mark it purged;
    the entry and one line for people."""
    try:
        entry = _entry(state, entry_id)
        if entry.state == PURGED:
            raise QuarantineError(f"quarantine entry {entry.id} was purged at {entry.purged_at}: nothing to delete")
        qdir = _private_dir(str(state.directory))
        try:
            os.unlink(entry.stored, dir_fd=qdir)
            line = f"purged {entry.id}: its stored copy of {entry.readable_path} is deleted"
        except FileNotFoundError:
            line = f"purged {entry.id}: its stored copy was already missing"
        finally:
            os.close(qdir)
    except QuarantineError as exc:
        state.audit(host_key, "purge", entry_id, f"refused: {exc}", clock(), "")
        raise
    except OSError as exc:
        state.audit(host_key, "purge", entry_id, f"failed: {exc.strerror}", clock(), "")
        raise QuarantineError(f"purge of {entry_id}: {exc.strerror or exc}") from exc
    entry = QuarantineStore(state).mark(entry, PURGED, clock())
    state.audit(host_key, "purge", entry.id, line, clock(), _detail(entry))
    return entry, line


def listing(state: StateStore) -> list[Entry]:
    """Every ledger entry, oldest first."""
    try:
        return QuarantineStore(state).listing()
    except LedgerError as exc:
        raise QuarantineError(str(exc)) from None


__all__ = ["FAILED", "PURGED", "QUARANTINED", "RESTORED", "QuarantineError", "Quarantined", "Restored", "listing",
           "purge", "quarantine", "quarantine_action", "request_of", "restore", "running"]
