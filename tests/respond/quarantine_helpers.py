"""Shared by the quarantine tests: what a file is (bytes and every piece of metadata), flags, tmpfs mounts."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hostguard.respond.quarantine import RESTORED_FLAGS, get_flags, set_flags

HOST = "0123456789abcdef0123456789abcdef:6f1c7a52-4c2e-4f7e-9a59-0d7f0a1b2c3d"
# security.capability, revision 2, effective, permitted cap_net_raw (13) and cap_net_bind_service (10)
CAPABILITY = (0x02000001).to_bytes(4, "little") + ((1 << 13) | (1 << 10)).to_bytes(4, "little") + bytes(12)


def ident(path: bytes | str | Path) -> tuple[int, int]:
    """(device, inode) as a scanner saw it."""
    st = os.stat(path, follow_symlinks=False)
    return st.st_dev, st.st_ino


def flags_of(path: bytes | str | Path) -> int | None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        return get_flags(fd)
    finally:
        os.close(fd)


def chattr(path: bytes | str | Path, add: int = 0, remove: int = 0) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        set_flags(fd, ((get_flags(fd) or 0) | add) & ~remove)
    finally:
        os.close(fd)


def snapshot(path: bytes | str | Path) -> dict[str, Any]:
    """Everything a restore must bring back: stat first (reading would move atime), then the bytes read
    with O_NOATIME."""
    st = os.stat(path, follow_symlinks=False)
    names = os.listxattr(path, follow_symlinks=False)
    xattrs = {n: os.getxattr(path, n, follow_symlinks=False) for n in names}
    fd = os.open(path, os.O_RDONLY | os.O_NOATIME | os.O_NOFOLLOW)
    try:
        data = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
        flags = get_flags(fd)
    finally:
        os.close(fd)
    return {"data": data, "mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid, "atime_ns": st.st_atime_ns,
            "mtime_ns": st.st_mtime_ns, "xattrs": xattrs,
            "flags": None if flags is None else flags & RESTORED_FLAGS}


def unfreeze(directory: Path) -> None:
    """Clear immutable/append-only flags below ``directory`` so its removal works."""
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in [*dirnames, *filenames, "."]:
            path = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                if not os.path.islink(path):
                    chattr(path, remove=0x30)


@contextlib.contextmanager
def tmpfs(where: Path) -> Iterator[Path]:
    """A tmpfs mounted on a directory the test made, unmounted in a finally."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        unfreeze(where)
        subprocess.run(["umount", "-l", str(where)], check=True)


@contextlib.contextmanager
def scratch(base: Path) -> Iterator[Path]:
    """A fresh directory under ``base`` (one per hypothesis example), flags cleared and the directory removed
    afterwards (its files may carry set-id modes, which must not outlive the test on this machine)."""
    d = Path(tempfile.mkdtemp(dir=base))
    try:
        yield d
    finally:
        unfreeze(d)
        shutil.rmtree(d, ignore_errors=True)
