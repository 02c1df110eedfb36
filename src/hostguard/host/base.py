"""Read-only views of one host: files under a root, commands and live state.

One interface, two implementations: :class:`LiveHost` (this machine, root ``/``) and :class:`RootHost`
(a mounted image or a fixture tree given with ``--root``). Every file read resolves symlinks *inside* the
root and refuses to escape it, so an image's absolute links (``/etc/alternatives/x``) point into the
image, never into the scanning machine. Facts only a running system has (sockets, processes, firewall
state, ``sshd -T``) raise :class:`Unavailable` under ``--root`` instead of guessing.

psutil is imported here and nowhere else, lazily inside :class:`LiveHost`: collectors see sockets and
processes as plain frozen records (:class:`SocketInfo`, :class:`ProcessInfo`), so they can be tested
with a fake host and never depend on psutil's types.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
import socket
import stat as stat_mod
import subprocess
from dataclasses import dataclass
from pathlib import PurePosixPath

from hostguard.findings import SkipReason

MAX_SYMLINKS = 40
MAX_READ = 64 * 1024 * 1024  # no config or database file we read is larger; a bigger one is an input error


class HostError(Exception):
    """A host fact could not be read (missing, unreadable, escaping the root)."""


class FileMissing(HostError):
    """The file does not exist on the host."""


class Unavailable(Exception):
    """A fact cannot be known here; carries the skip reason the report will show."""

    def __init__(self, reason: SkipReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FileStat:
    """The parts of stat(2) checks use."""

    mode: int
    uid: int
    gid: int
    size: int
    mtime: float

    @property
    def is_dir(self) -> bool:
        """True for a directory."""
        return stat_mod.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        """True for a regular file."""
        return stat_mod.S_ISREG(self.mode)


@dataclass(frozen=True)
class CommandResult:
    """What a command run on the live host returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class SocketInfo:
    """One inet socket of the running system, as the kernel lists it.

    Plain data rather than psutil's named tuples, so collectors can be fed canned sockets in tests.
    """

    proto: str                  # "tcp" or "udp"
    family: int                 # 4 or 6 (the socket's own family: a dual-stack [::] socket is 6)
    address: str                # local address: "0.0.0.0", "::", "127.0.0.1", "::ffff:127.0.0.1", ...
    port: int                   # local port
    remote_address: str | None  # None when not connected (listening TCP, unconnected UDP)
    remote_port: int | None
    status: str                 # TCP state ("LISTEN", "ESTABLISHED", ...); "NONE" for UDP
    pid: int | None             # None when the owner cannot be seen (another user's socket, not root)


@dataclass(frozen=True)
class ProcessInfo:
    """One process of the running system: what socket, sshd and process checks need to know of it."""

    pid: int
    ppid: int
    name: str
    exe: str | None             # None for kernel threads, exited binaries we may not read, or no permission
    user: str | None            # user name (the uid as text when it has no name); None when unreadable
    create_time: float          # seconds since the epoch
    cmdline: tuple[str, ...]    # empty for kernel threads, zombies, or when unreadable
    # What the process checks read (defaults: nothing seen). ``exe_link`` is /proc/PID/exe as the kernel
    # shows it, " (deleted)" and "/memfd:" included (psutil strips the former).
    exe_link: str | None = None
    stdio: tuple[str, ...] = ()         # /proc/PID/fd/0, 1, 2 link targets ("" when closed or unreadable)
    stdio_inet: tuple[int, ...] = ()    # which of fds 0-2 are TCP/UDP sockets (not unix sockets)
    cpu_seconds: float = 0.0            # user + system CPU time since start
    user_maps: bool = False             # has a user-space memory map (kernel threads have none)
    exe_replaced: bool = False          # the exe was deleted but a file now exists at its path (an upgrade)
    # The running executable file itself (stat of /proc/PID/exe, which reaches it whatever mount namespace
    # the process is in): its owner and times, None when unreadable.
    exe_uid: int | None = None
    exe_mtime: float | None = None
    exe_ctime: float | None = None
    # Whether the process sees this host's / (False in a container or a chroot: its paths name files of
    # another tree, which this host's package database does not describe).
    host_root: bool = True

    def label(self) -> str:
        """How a skipped entry names the process."""
        return f"pid {self.pid} ({self.name})"


@dataclass(frozen=True)
class ProcessFiles:
    """A closer look at one live process, taken only for the few processes a check needs it for (listing
    every process's open files would cost the whole scan its speed).

    ``open_files`` are the process's open file descriptors whose link names a path (`` (deleted)`` kept:
    bash holds the script it runs on fd 255); ``present`` are those of the names asked about that exist
    as the process sees them: an absolute name inside its root (a container's own tree), a relative one
    against its working directory or, when it changed directory since, the ``$PWD`` it was started with.
    """

    cwd: str | None
    pwd: str | None
    open_files: tuple[tuple[int, str], ...]
    present: frozenset[str]


class Host:
    """File access confined to ``root``; subclasses add live facts."""

    live = False

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)

    # -- paths -------------------------------------------------------------------------------------

    def resolve(self, path: str) -> str:
        """The real path on this machine of host path ``path``, following symlinks inside the root.

        ``..`` stops at the root and absolute link targets restart at the root, the way the kernel
        would resolve them after ``chroot(root)``. Raises :class:`FileMissing` for a missing component
        and :class:`HostError` for a link loop.
        """
        parts = list(PurePosixPath("/", path).parts[1:])
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            real = os.path.join(self.root, *done, part)
            try:
                st = os.lstat(real)
            except FileNotFoundError as exc:
                raise FileMissing(f"{path}: no such file") from exc
            except NotADirectoryError as exc:
                raise FileMissing(f"{path}: not a directory on the way") from exc
            except OSError as exc:
                raise HostError(f"{path}: {exc.strerror}") from exc
            if stat_mod.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise HostError(f"{path}: too many levels of symbolic links")
                target = os.readlink(real)
                if target.startswith("/"):
                    done = []
                parts = list(PurePosixPath(target).parts) + parts
                if target.startswith("/"):
                    parts = parts[1:]
                continue
            done.append(part)
        return os.path.join(self.root, *done)

    # -- files -------------------------------------------------------------------------------------

    def read_bytes(self, path: str, limit: int = MAX_READ) -> bytes:
        """Contents of a regular file; :class:`FileMissing` or :class:`HostError` otherwise."""
        return read_regular(self.resolve(path), path, limit)[0]

    def read_text(self, path: str) -> str:
        """Contents decoded as UTF-8 with ``surrogateescape`` (exact bytes recoverable)."""
        return self.read_bytes(path).decode("utf-8", "surrogateescape")

    def read_optional(self, path: str) -> str | None:
        """Like :meth:`read_text`, but ``None`` when the file does not exist."""
        try:
            return self.read_text(path)
        except FileMissing:
            return None

    def exists(self, path: str) -> bool:
        """True when the path resolves to something inside the root."""
        try:
            self.resolve(path)
            return True
        except HostError:
            return False

    def stat(self, path: str) -> FileStat:
        """stat(2) of the resolved path."""
        real = self.resolve(path)
        try:
            st = os.stat(real, follow_symlinks=False)
        except OSError as exc:
            raise HostError(f"{path}: {exc.strerror}") from exc
        return FileStat(st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime)

    def listdir(self, path: str) -> list[str]:
        """Sorted names in a directory; empty when it does not exist."""
        try:
            real = self.resolve(path)
        except FileMissing:
            return []
        try:
            return sorted(os.listdir(real))
        except FileNotFoundError:
            return []
        except OSError as exc:
            if exc.errno == errno.ENOTDIR:
                return []
            raise HostError(f"{path}: {exc.strerror}") from exc

    def glob(self, pattern: str) -> list[str]:
        """Host paths matching an absolute glob, as glob(3) finds them: each component matched in its
        directory (resolved inside the root), ``*``, ``?`` and ``[...]`` never matching a leading dot, results
        sorted. Configs include with it (nginx and Apache ``include``, sshd ``Include``, nft ``include``)."""
        found = ["/"]
        for part in (p for p in pattern.split("/") if p):
            step: list[str] = []
            for base in found:
                prefix = base.rstrip("/")
                if glob_magic(part):
                    step += [f"{prefix}/{n}" for n in self.listdir(base)
                             if not n.startswith(".") and fnmatch.fnmatchcase(n, part)]
                else:
                    step.append(f"{prefix}/{part}")
            found = step
        return sorted(p for p in found if self.exists(p))

    # -- identity ----------------------------------------------------------------------------------

    def machine_id(self) -> str:
        """/etc/machine-id of the host (empty when absent)."""
        for candidate in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
            try:
                value = self.read_text(candidate).strip()
            except HostError:
                continue
            if value:
                return value
        return ""

    def hostname(self) -> str:
        """The host's name from /etc/hostname (a live host asks the kernel)."""
        try:
            return self.read_text("/etc/hostname").strip().splitlines()[0]
        except (HostError, IndexError):
            return ""

    # -- live facts --------------------------------------------------------------------------------

    def run(self, argv: list[str], timeout: float = 20, input_bytes: bytes | None = None) -> CommandResult:
        """Run a command on the live host. A root tree has no running system."""
        raise Unavailable(SkipReason.LIVE_ONLY, f"`{argv[0]}` needs the running system, not a --root tree")

    def which(self, name: str) -> str | None:
        """Where command ``name`` is installed on the running system; None under --root.

        Sources that only apply when a tool exists (``nft``, ``iptables-legacy-save``) ask this instead of
        catching :class:`Unavailable` from :meth:`run`. A tree's own binaries are never run, so a root tree
        has none.
        """
        return None

    def sockets(self) -> tuple[SocketInfo, ...]:
        """Every inet socket of the running system. A root tree has no sockets to see."""
        raise Unavailable(SkipReason.LIVE_ONLY, "sockets are only known on a running system, not under --root")

    def processes(self) -> tuple[ProcessInfo, ...]:
        """Every process of the running system. A root tree has no processes to see."""
        raise Unavailable(SkipReason.LIVE_ONLY, "processes are only known on a running system, not under --root")

    def process_files(self, pid: int, names: tuple[str, ...] = ()) -> ProcessFiles | None:
        """A running process's working directory, open files and which of ``names`` it can see (None when
        the process is gone). A root tree has no processes to see."""
        raise Unavailable(SkipReason.LIVE_ONLY, "processes are only known on a running system, not under --root")



def glob_magic(part: str) -> bool:
    """Whether a path component is a pattern (holds ``*``, ``?`` or ``[``)."""
    return any(c in part for c in "*?[")


def read_regular(name: str, label: str, limit: int = MAX_READ, dir_fd: int | None = None) -> tuple[bytes, os.stat_result]:
    """A regular file's bytes and stat, opened with ``O_NOFOLLOW`` (relative to ``dir_fd`` when given).

    The one way hostguard reads a file it may act on: :class:`FileMissing` when absent, :class:`HostError`
    (naming ``label``) for a symlink, a non-regular file, one larger than ``limit``, or a read error.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError as exc:
        raise FileMissing(f"{label}: no such file") from exc
    except OSError as exc:
        raise HostError(f"{label}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise HostError(f"{label}: not a regular file")
        if st.st_size > limit:
            raise HostError(f"{label}: larger than {limit} bytes")
        chunks = []
        total = 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > limit:
                raise HostError(f"{label}: larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks), st
    except OSError as exc:
        raise HostError(f"{label}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def system_which(name: str) -> str | None:
    """Where a system tool is installed on this machine, also looking in /usr/sbin and /sbin (a non-login
    PATH lacks them, and ``ip``, ``nft``, ``sshd`` live there); an absolute path is taken as it is."""
    if name.startswith("/"):
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


class RootHost(Host):
    """A host tree that is not running: a mounted image or a fixture."""

    def __init__(self, root: str) -> None:
        if not os.path.isdir(root):
            raise HostError(f"--root {root}: not a directory")
        super().__init__(root)


class LiveHost(Host):
    """This running machine."""

    live = True

    def __init__(self) -> None:
        super().__init__("/")

    def hostname(self) -> str:
        """The kernel's hostname."""
        return os.uname().nodename

    def which(self, name: str) -> str | None:
        """The installed path of ``name`` (see :func:`system_which`)."""
        return system_which(name)

    def run(self, argv: list[str], timeout: float = 20, input_bytes: bytes | None = None) -> CommandResult:
        """Run a command; :class:`Unavailable` (tool_missing) when it is not installed."""
        exe = self.which(argv[0])
        if exe is None:
            raise Unavailable(SkipReason.TOOL_MISSING, f"`{argv[0]}` is not installed")
        try:
            proc = subprocess.run([exe, *argv[1:]], input=input_bytes, capture_output=True, timeout=timeout,
                                  check=False, env={**os.environ, "LC_ALL": "C"})
        except subprocess.TimeoutExpired as exc:
            raise Unavailable(SkipReason.ERROR, f"`{' '.join(argv)}` did not finish in {timeout:g}s") from exc
        except OSError as exc:
            raise Unavailable(SkipReason.ERROR, f"`{argv[0]}`: {exc.strerror}") from exc
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def sockets(self) -> tuple[SocketInfo, ...]:
        """Every inet socket, in the kernel's order, with its owning pid where it can be seen.

        Sockets without a local port (not yet bound) are left out: nothing can reach them. Raises
        :class:`Unavailable` (not_root) where the system refuses the listing to a non-root user.
        """
        import psutil

        try:
            conns = psutil.net_connections(kind="inet")
        except psutil.AccessDenied as exc:
            raise Unavailable(SkipReason.NOT_ROOT, "seeing every socket's process needs root") from exc
        out = []
        for c in conns:
            if not c.laddr:
                continue
            local_ip, local_port = c.laddr[0], c.laddr[1]
            remote_ip, remote_port = (c.raddr[0], c.raddr[1]) if c.raddr else (None, None)
            out.append(SocketInfo("tcp" if c.type == socket.SOCK_STREAM else "udp",
                                    4 if c.family == socket.AF_INET else 6, local_ip, local_port,
                                    remote_ip, remote_port, c.status, c.pid))
        return tuple(out)

    def processes(self) -> tuple[ProcessInfo, ...]:
        """Every process, read once. A field the system refuses (another user's ``exe`` when not root)
        is None or empty rather than an error, and a process that exits while being read is left out:
        a listing is a snapshot, and callers map pids to records without asking again.
        """
        import psutil

        attrs = ["pid", "ppid", "name", "exe", "uids", "create_time", "cmdline", "cpu_times"]
        users: dict[int, str] = {}  # one passwd lookup per uid, not per process
        own_root = _identity("/")
        out = []
        try:
            for p in psutil.process_iter(attrs):
                info = p.info
                uid = info["uids"].real if info["uids"] else None
                cpu = info["cpu_times"]
                link, stdio, inet, maps, replaced = _proc_extras(info["pid"])
                exe_st = _stat(f"/proc/{info['pid']}/exe") if link else None
                root = _identity(f"/proc/{info['pid']}/root")
                out.append(ProcessInfo(info["pid"], info["ppid"] or 0, info["name"] or "", info["exe"] or None,
                                       _user_name(uid, users), info["create_time"] or 0.0,
                                       tuple(info["cmdline"] or ()), link, stdio, inet,
                                       cpu.user + cpu.system if cpu else 0.0, maps, replaced,
                                       exe_st.st_uid if exe_st else None, exe_st.st_mtime if exe_st else None,
                                       exe_st.st_ctime if exe_st else None,
                                       root is None or own_root is None or root == own_root))
        except psutil.AccessDenied as exc:
            raise Unavailable(SkipReason.NOT_ROOT, "listing processes needs root") from exc
        return tuple(out)

    def process_files(self, pid: int, names: tuple[str, ...] = ()) -> ProcessFiles | None:
        """See :meth:`Host.process_files`: read from /proc/PID (cwd, environ's PWD, fd/*, root/...)."""
        base = f"/proc/{pid}"
        if not os.path.isdir(base):
            return None
        cwd = _readlink(f"{base}/cwd") or None
        pwd = _environ_value(f"{base}/environ", b"PWD")
        try:
            fds = sorted(int(fd) for fd in os.listdir(f"{base}/fd") if fd.isdigit())
        except OSError:
            fds = []
        files = tuple((fd, t) for fd in fds if (t := _readlink(f"{base}/fd/{fd}")).startswith("/"))
        present = frozenset(n for n in names if _visible(base, n, pwd))
        return ProcessFiles(cwd, pwd, files, present)


def _visible(base: str, name: str, pwd: str | None) -> bool:
    """Whether ``name`` exists as process ``base`` (/proc/PID) sees it (see :class:`ProcessFiles`)."""
    if name.startswith("/"):
        return os.path.lexists(f"{base}/root{os.path.normpath(name)}")
    if os.path.lexists(f"{base}/cwd/{name}"):
        return True
    return bool(pwd and pwd.startswith("/") and os.path.lexists(f"{base}/root{pwd}/{name}"))


def _environ_value(path: str, key: bytes) -> str | None:
    """One variable of a process's initial environment (None when unset or unreadable)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 20)
    except OSError:
        return None
    for entry in data.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name == key:
            return os.fsdecode(value)
    return None


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of what ``path`` leads to, to tell one root directory from another."""
    st = _stat(path)
    return (st.st_dev, st.st_ino) if st else None


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _proc_extras(pid: int) -> tuple[str | None, tuple[str, ...], tuple[int, ...], bool, bool]:
    """What psutil does not say of a live process: its raw exe link, its stdio, whether it maps user memory,
    and whether a deleted exe's path holds a new file (a package upgrade while it ran).

    Only a stdio fd that is a socket costs more: the socket's inode is looked up in the process's own
    network namespace (/proc/PID/net/{tcp,udp}{,6}) to tell a network socket from a unix one.
    """
    base = f"/proc/{pid}"
    link = _readlink(f"{base}/exe") or None
    stdio = tuple(_readlink(f"{base}/fd/{fd}") for fd in range(3))
    inet: tuple[int, ...] = ()
    inodes = {fd: t[8:-1] for fd, t in enumerate(stdio) if t.startswith("socket:[")}
    if inodes:
        known: set[str] = set()
        for table in ("tcp", "tcp6", "udp", "udp6"):
            try:
                with open(f"{base}/net/{table}", encoding="ascii", errors="replace") as fh:
                    next(fh, None)
                    known.update(f[9] for f in (line.split() for line in fh) if len(f) > 9)
            except OSError:
                continue
        inet = tuple(fd for fd, inode in inodes.items() if inode in known)
    try:
        with open(f"{base}/maps", "rb") as fh:
            maps = bool(fh.read(64))
    except OSError:
        maps = False
    replaced = bool(link and link.endswith(" (deleted)") and os.path.isfile(link[:-10]))
    return link, stdio, inet, maps, replaced


def _user_name(uid: int | None, cache: dict[int, str]) -> str | None:
    """The live system's name for ``uid`` (the uid as text when it has none), looked up once per uid."""
    if uid is None:
        return None
    if uid not in cache:
        import pwd

        try:
            cache[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            cache[uid] = str(uid)
    return cache[uid]


def open_host(root: str | None) -> Host:
    """The host to scan: this machine, or the tree at ``root``."""
    return LiveHost() if root is None else RootHost(root)
