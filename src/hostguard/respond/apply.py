"""Applying remediation steps to a host (``/``) or a tree, the one way hostguard changes files.

hostguard runs as root inside directories attackers may write, so every change goes through directory
file descriptors opened with ``O_NOFOLLOW`` from the root down (a planted symlink is refused, never
followed), is written to a temporary file beside the target (``O_EXCL``) and renamed over it atomically,
keeps the file's mode and owner, and re-checks that the file is still the one that was read before the
rename. An :class:`~hostguard.remediation.Edit` or :class:`~hostguard.remediation.DeleteLine` whose line no
longer reads ``old`` is refused: the file changed since the scan. All file steps are checked before any
is written. Commands and actions are not run here: they are returned for the caller (tests validate
them with the real tools; ``hostguard fix`` will run them on the live host).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

from hostguard.host.base import FileMissing, HostError, read_regular
from hostguard.remediation import Action, Command, DeleteLine, Edit, Step, Write

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ApplyError(Exception):
    """A step cannot be applied safely (the file changed, a symlink on the way, a missing directory)."""


@dataclass
class Applied:
    """What :func:`apply` did: the file steps written, and the commands and actions left to the caller."""

    written: list[Step] = field(default_factory=list)
    not_run: list[Command | Action] = field(default_factory=list)


@contextlib.contextmanager
def _open_dir(root_fd: int, parts: tuple[str, ...], create: bool) -> Iterator[int]:
    """A descriptor of directory ``parts`` below ``root_fd``, every component opened without following links."""
    with _walk(root_fd, parts, "create" if create else "refuse") as fd:
        assert fd is not None
        yield fd


@contextlib.contextmanager
def _walk(root_fd: int, parts: tuple[str, ...], missing: Literal["create", "refuse", "stop"]) -> Iterator[int | None]:
    """Open ``parts`` one directory at a time with ``O_NOFOLLOW``; a missing one is created (``create``), an
    error (``refuse``) or ends the walk with None (``stop``: nothing below it exists yet)."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            try:
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if missing == "stop":
                    yield None
                    return
                if missing == "refuse":
                    raise ApplyError(f"directory {part} is missing") from None
                os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise ApplyError(f"{part}: not a plain directory ({exc.strerror})") from exc
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def _split(path: str) -> tuple[tuple[str, ...], str]:
    parts = PurePosixPath(path).parts
    if not path.startswith("/") or ".." in parts or len(parts) < 2:
        raise ApplyError(f"{path}: a step path must be absolute, without '..'")
    return tuple(parts[1:-1]), parts[-1]


def _read(dir_fd: int, name: str) -> tuple[bytes, os.stat_result]:
    try:
        return read_regular(name, name, dir_fd=dir_fd)
    except FileMissing:
        raise ApplyError(f"{name}: no such file") from None
    except HostError as exc:
        raise ApplyError(f"{exc} (a symlink is never followed)") from exc


def _replace(dir_fd: int, name: str, data: bytes, mode: int, uid: int, gid: int,
             expect: os.stat_result | None) -> None:
    """Write ``data`` to a temporary file beside ``name`` and rename it over ``name``."""
    tmp = f".{name}.hostguard-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        if expect is not None:
            try:
                now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise ApplyError(f"{name}: removed while being changed") from None
            if (now.st_dev, now.st_ino, now.st_mtime_ns, now.st_size) != (
                    expect.st_dev, expect.st_ino, expect.st_mtime_ns, expect.st_size):
                raise ApplyError(f"{name}: changed while being edited")
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _owner_ids(root_fd: int, owner: str) -> tuple[int, int]:
    """uid and gid of ``user:group`` from the tree's own passwd and group (never this machine's)."""
    user, _, group = owner.partition(":")

    def lookup(path: str, name: str) -> int:
        if name.isdigit():
            return int(name)
        parts, base = _split(path)
        with _open_dir(root_fd, parts, create=False) as fd:
            text = _read(fd, base)[0].decode("utf-8", "surrogateescape")
        for line in text.splitlines():
            fields = line.split(":")
            if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
                return int(fields[2])
        raise ApplyError(f"owner {owner}: {name} is not in {path}")

    return lookup("/etc/passwd", user), lookup("/etc/group", group or user)


def _edited(data: bytes, path: str, steps: list[Edit | DeleteLine]) -> bytes:
    """The file with its line steps applied (checked first, applied bottom-up so numbers stay true)."""
    lines = data.decode("utf-8", "surrogateescape").splitlines(keepends=True)
    for step in steps:
        if not 1 <= step.line <= len(lines) or lines[step.line - 1].rstrip("\r\n") != step.old:
            found = lines[step.line - 1].rstrip("\r\n") if 1 <= step.line <= len(lines) else "(no such line)"
            raise ApplyError(f"{path} line {step.line} reads `{found}`, not `{step.old}`: the file changed since the scan")
    if len({s.line for s in steps}) != len(steps):
        raise ApplyError(f"{path}: two steps change the same line")
    for step in sorted(steps, key=lambda s: s.line, reverse=True):
        ending = lines[step.line - 1][len(lines[step.line - 1].rstrip("\r\n")):] or "\n"
        if isinstance(step, Edit):
            lines[step.line - 1] = "".join(part + ending for part in step.new.split("\n"))
        else:
            del lines[step.line - 1]
    return "".join(lines).encode("utf-8", "surrogateescape")


def apply(steps: Iterable[Step], root: str = "/") -> Applied:
    """Apply the file steps to the host at ``root``; return the commands and actions for the caller."""
    steps = list(steps)
    result = Applied()
    line_steps: dict[str, list[Edit | DeleteLine]] = defaultdict(list)
    for step in steps:
        if isinstance(step, Edit | DeleteLine):
            line_steps[step.path].append(step)
        elif isinstance(step, Command | Action):
            result.not_run.append(step)
    root_fd = os.open(root, DIR_FLAGS)
    try:
        # Check everything before writing anything: a half-applied fix (an include line naming a drop-in that
        # could not be written) can be worse than none.
        planned: list[tuple[str, bytes, os.stat_result]] = []
        for path, group in line_steps.items():
            parts, name = _split(path)
            with _open_dir(root_fd, parts, create=False) as fd:
                data, st = _read(fd, name)
            planned.append((path, _edited(data, path, group), st))
        writes: list[tuple[Write, int, int]] = []
        for step in steps:
            if isinstance(step, Write):
                _check_write_target(root_fd, step.path)
                writes.append((step, *_owner_ids(root_fd, step.owner)))
        # Drop-ins first, then the edits that may refer to them.
        for step, uid, gid in writes:
            parts, name = _split(step.path)
            with _open_dir(root_fd, parts, create=True) as fd:
                current = _regular_or_none(fd, name, step.path)
                _replace(fd, name, step.content.encode("utf-8", "surrogateescape"), int(step.mode, 8), uid, gid,
                         current)
            result.written.append(step)
        for path, data, st in planned:
            parts, name = _split(path)
            with _open_dir(root_fd, parts, create=False) as fd:
                _replace(fd, name, data, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st)
        result.written += [s for group in line_steps.values() for s in group]
    finally:
        os.close(root_fd)
    return result


def _regular_or_none(dir_fd: int, name: str, path: str) -> os.stat_result | None:
    """The stat of an existing regular file, None when absent; anything else (a symlink, a directory) refused."""
    try:
        current = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(current.st_mode):
        raise ApplyError(f"{path}: exists and is not a regular file")
    return current


def _check_write_target(root_fd: int, path: str) -> None:
    """A Write can be done: every existing directory on the way is a plain directory, the target is absent or
    a regular file. (Missing directories are created when writing.)"""
    parts, name = _split(path)
    with _walk(root_fd, parts, "stop") as fd:
        if fd is not None:
            _regular_or_none(fd, name, path)
