"""Which mounted file systems a full scan reads: ``/proc/self/mountinfo`` parsed, each mount classified.

A full scan reads every *local* file system, including ``tmpfs`` (``/tmp``, ``/dev/shm`` and ``/run`` are
where droppers live) and ``overlay`` (containers). It leaves out kernel pseudo file systems (their files
are not files: ``/proc/kcore``, ``/sys`` attributes, ``debugfs`` knobs) and network file systems (another
host's disk, possibly slow or huge; scan them on the host that owns them). The walk compares each
directory's ``st_dev`` with the devices of the skipped mounts, so it never descends into one.

Mount points are written with octal escapes (``\\040`` a space, ``\\011`` a tab, ``\\012`` a newline,
``\\134`` a backslash) and need not be UTF-8: they are decoded to ``str`` with ``surrogateescape``, like
every path hostguard handles.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"

PSEUDO = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs", "bpf",
    "pstore", "mqueue", "hugetlbfs", "configfs", "fusectl", "autofs", "binfmt_misc", "efivarfs", "rpc_pipefs",
    "nsfs", "selinuxfs", "ramfs_kernel", "rdt", "resctrl", "sockfs", "pipefs",
})
NETWORK = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "sshfs", "9p",
    "afs", "ncpfs", "coda", "lustre", "gfs2", "ocfs2", "fuse.s3fs", "fuse.rclone", "fuse.cephfs", "davfs",
    "fuse.davfs2", "beegfs", "gpfs", "orangefs", "virtiofs_remote",
})
NETWORK_PREFIXES = ("nfs", "cifs", "smb", "ceph", "fuse.sshfs", "fuse.glusterfs")

_ESCAPE = re.compile(rb"\\([0-7]{3})")


class MountinfoError(Exception):
    """The mount table cannot be read."""


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo: its device (``st_dev`` of its files), where it is mounted, and its type."""

    mount_id: int
    parent_id: int
    device: int
    root: str
    mount_point: str
    fstype: str
    source: str

    @property
    def skip_reason(self) -> str | None:
        """``pseudo_fs`` or ``network_fs`` when a full scan leaves this mount out, else None."""
        return skip_reason(self.fstype)


def skip_reason(fstype: str) -> str | None:
    """Why a file system of type ``fstype`` is not scanned (None: it is scanned; tmpfs and overlay are)."""
    base = fstype.lower()
    if base in PSEUDO:
        return "pseudo_fs"
    if base in NETWORK or base.startswith(NETWORK_PREFIXES):
        return "network_fs"
    return None


def unescape(field: bytes) -> str:
    """A mountinfo field with its octal escapes decoded, as a surrogateescape ``str``."""
    return os.fsdecode(_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), field))


def parse_line(line: bytes) -> Mount | None:
    """One mountinfo line, or None when it is not one (garbage is skipped, never guessed at)."""
    fields = line.rstrip(b"\n").split(b" ")  # the kernel escapes " \t\n\\" only: any other byte is the name's
    try:
        dash = fields.index(b"-", 6)
    except ValueError:
        return None
    if len(fields) < dash + 3:
        return None
    try:
        mount_id, parent_id = int(fields[0]), int(fields[1])
        major, minor = (int(part) for part in fields[2].split(b":"))
        if min(mount_id, parent_id, major, minor) < 0:
            return None
        device = os.makedev(major, minor)
        fstype = fields[dash + 1].decode("ascii")
    except (ValueError, UnicodeDecodeError, OverflowError):
        return None
    mount_point = unescape(fields[4])
    if not mount_point.startswith("/"):
        return None
    return Mount(mount_id, parent_id, device, unescape(fields[3]), mount_point, fstype, unescape(fields[dash + 2]))


@dataclass(frozen=True)
class MountTable:
    """The mounts, and how many lines could not be read (a note in the scan's stats)."""

    mounts: tuple[Mount, ...]
    bad_lines: int = 0

    def skipped_devices(self) -> dict[int, str]:
        """``st_dev`` -> skip reason of every device mounted only as skipped file systems."""
        scanned = {m.device for m in self.mounts if m.skip_reason is None}
        return {m.device: reason for m in self.mounts
                if (reason := m.skip_reason) is not None and m.device not in scanned}

    def skipped_mount_points(self) -> dict[str, str]:
        """Mount point -> skip reason of every skipped mount (the walk also checks ``st_dev``)."""
        return {m.mount_point: reason for m in self.mounts if (reason := m.skip_reason) is not None}


def parse_mountinfo(data: bytes | Iterable[bytes]) -> MountTable:
    """Every mount of mountinfo ``data``; unreadable lines are counted in ``bad_lines``."""
    lines = data.split(b"\n") if isinstance(data, bytes) else data
    mounts: list[Mount] = []
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        mount = parse_line(line)
        if mount is None:
            bad += 1
        else:
            mounts.append(mount)
    return MountTable(tuple(mounts), bad)


def read_mounts(path: str = MOUNTINFO) -> MountTable:
    """This process's mount table (:class:`MountinfoError` when it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            return parse_mountinfo(fh.read())
    except OSError as exc:
        raise MountinfoError(f"{path}: {exc.strerror or exc}") from None
