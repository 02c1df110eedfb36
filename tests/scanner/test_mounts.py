"""mountinfo parsing and the classification of mounts a full scan reads or leaves out."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from hostguard.scanner.mounts import parse_line, parse_mountinfo, read_mounts, skip_reason

SAMPLE = b"""22 27 0:21 / /proc rw,relatime - proc proc rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683568k
27 1 254:0 / / rw,relatime shared:1 master:2 - ext4 /dev/vda rw
40 27 0:35 / /mnt/my\\040share rw - nfs4 server.test:/export rw,vers=4.2
41 27 0:36 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=/a
42 27 0:37 / /run rw - tmpfs tmpfs rw
43 27 0:38 / /media/odd\\011tab\\134slash rw - fuse.sshfs user@host.test: rw
"""


def test_sample_lines_are_classified() -> None:
    table = parse_mountinfo(SAMPLE)
    by_point = {m.mount_point: m for m in table.mounts}
    assert table.bad_lines == 0
    assert by_point["/proc"].skip_reason == "pseudo_fs"
    assert by_point["/dev/shm"].skip_reason is None  # tmpfs: droppers live there
    assert by_point["/run"].skip_reason is None
    assert by_point["/var/lib/docker/overlay2/x/merged"].skip_reason is None
    assert by_point["/"].skip_reason is None and by_point["/"].device == os.makedev(254, 0)
    assert by_point["/mnt/my share"].skip_reason == "network_fs"
    assert by_point["/media/odd\ttab\\slash"].skip_reason == "network_fs"
    assert table.skipped_devices() == {os.makedev(0, 21): "pseudo_fs", os.makedev(0, 35): "network_fs",
                                       os.makedev(0, 38): "network_fs"}


def test_every_listed_pseudo_and_network_type_is_skipped_but_not_tmpfs_or_overlay() -> None:
    for fstype in ("proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs",
                   "bpf", "pstore", "mqueue", "hugetlbfs", "configfs", "fusectl", "autofs"):
        assert skip_reason(fstype) == "pseudo_fs", fstype
    for fstype in ("nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "fuse.sshfs", "9p", "afs"):
        assert skip_reason(fstype) == "network_fs", fstype
    for fstype in ("tmpfs", "overlay", "ext4", "xfs", "btrfs", "vfat"):
        assert skip_reason(fstype) is None, fstype


def test_garbage_lines_are_counted_not_guessed() -> None:
    table = parse_mountinfo(b"garbage\n27 1 254:0 / / rw - ext4 /dev/vda rw\n1 2 x:y / /a rw - ext4 s rw\n"
                            b"3 4 0:1 / /b rw no-dash-here ext4\n5 6 0:2 / relative rw - ext4 s rw\n")
    assert [m.mount_point for m in table.mounts] == ["/"]
    assert table.bad_lines == 4


def _escape(raw: bytes) -> bytes:
    return b"".join(b"\\%03o" % b if b in b" \t\n\\" else bytes([b]) for b in raw)


@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b and b"/" not in b))
def test_escaped_mount_points_round_trip(name: bytes) -> None:
    point = b"/mnt/" + name
    line = b"50 27 0:99 / " + _escape(point) + b" rw,relatime shared:5 - tmpfs tmpfs rw"
    mount = parse_line(line)
    assert mount is not None
    assert os.fsencode(mount.mount_point) == point
    assert mount.fstype == "tmpfs"


@given(st.binary(max_size=200))
def test_any_bytes_never_raise(data: bytes) -> None:
    table = parse_mountinfo(data)
    assert all(m.mount_point.startswith("/") for m in table.mounts)


def test_this_hosts_table_reads() -> None:
    table = read_mounts()
    assert any(m.mount_point == "/proc" and m.skip_reason == "pseudo_fs" for m in table.mounts)
