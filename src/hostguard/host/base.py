"""Read-only views of one host: files under a root, commands and live state.

One interface, two implementations: :class:`LiveHost` (this machine, root ``/``) and :class:`RootHost`
(a mounted image or a fixture tree given with ``--root``). Every file read resolves symlinks *inside* the
root and refuses to escape it, so an image's absolute links (``/etc/alternatives/x``) point into the
image, never into the scanning machine. Facts only a running system has (sockets, processes, firewall
state, ``sshd -T``) raise :class:`Unavailable` under ``--root`` instead of guessing.
"""

from __future__ import annotations

import errno
import os
import shutil
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
        real = self.resolve(path)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise FileMissing(f"{path}: no such file") from exc
        except OSError as exc:
            raise HostError(f"{path}: {exc.strerror or exc}") from exc
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode):
                raise HostError(f"{path}: not a regular file")
            if st.st_size > limit:
                raise HostError(f"{path}: larger than {limit} bytes")
            chunks = []
            total = 0
            while chunk := os.read(fd, 1 << 20):
                total += len(chunk)
                if total > limit:
                    raise HostError(f"{path}: larger than {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise HostError(f"{path}: {exc.strerror or exc}") from exc
        finally:
            os.close(fd)

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

    def require_live(self, what: str) -> None:
        """Raise :class:`Unavailable` when ``what`` needs a running system."""
        if not self.live:
            raise Unavailable(SkipReason.LIVE_ONLY, f"{what} is only known on a running system, not under --root")


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

    def run(self, argv: list[str], timeout: float = 20, input_bytes: bytes | None = None) -> CommandResult:
        """Run a command; :class:`Unavailable` (tool_missing) when it is not installed."""
        exe = shutil.which(argv[0], path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
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


def open_host(root: str | None) -> Host:
    """The host to scan: this machine, or the tree at ``root``."""
    return LiveHost() if root is None else RootHost(root)
