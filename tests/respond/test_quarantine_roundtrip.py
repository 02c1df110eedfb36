"""Quarantine then restore gives back the same file: bytes, mode (setuid/setgid/sticky too), numeric owner,
atime/mtime in ns, user.* and security.* attributes, POSIX ACLs (setfacl), inode flags, odd names; on the
state directory's file system and on a tmpfs (a copy across file systems)."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.respond import quarantine as q
from hostguard.store.quarantine import QuarantineStore
from hostguard.store.state import StateStore
from tests.conftest import need_root, need_tool
from tests.respond.quarantine_helpers import CAPABILITY, HOST, chattr, ident, scratch, snapshot, tmpfs

NAMES = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))
SIZES = st.one_of(st.integers(0, 300), st.integers(0, 1 << 20))
XATTRS = st.dictionaries(st.from_regex(r"user\.[a-z][a-z0-9._-]{0,20}", fullmatch=True), st.binary(max_size=200),
                         max_size=3)
NS = st.integers(0, 4_000_000_000 * 10**9)   # up to 2096, in ns
ACL = st.one_of(st.none(), st.tuples(st.integers(1, 2**31), st.sampled_from("rwx-"), st.integers(1, 2**31)))


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A directory on the state directory's file system and one on a tmpfs the test mounts."""
    need_root("quarantine round trips (chown, security.* attributes, mount)")
    need_tool("setfacl", "mount")
    base = tmp_path_factory.mktemp("quarantine-roundtrip")
    (base / "disk").mkdir()
    with tmpfs(base / "tmpfs") as mounted:
        yield {"disk": base / "disk", "tmpfs": mounted, "state": base / "state"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["disk", "tmpfs"]), name=NAMES, size=SIZES, seed=st.integers(0, 2**32),
       mode=st.integers(0, 0o7777), uid=st.integers(0, 2**32 - 2), gid=st.integers(0, 2**32 - 2), xattrs=XATTRS,
       capability=st.booleans(), label=st.one_of(st.none(), st.binary(min_size=1, max_size=40)), acl=ACL,
       atime=NS, mtime=NS, flags=st.sampled_from([0, q.FS_IMMUTABLE_FL, q.FS_APPEND_FL, q.FS_NODUMP_FL]),
       to=st.booleans())
def test_quarantine_then_restore_is_the_same_file(places: dict[str, Path], where: str, name: bytes, size: int,
                                                 seed: int, mode: int, uid: int, gid: int, xattrs: dict[str, bytes],
                                                 capability: bool, label: bytes | None,
                                                 acl: tuple[int, str, int] | None, atime: int, mtime: int, flags: int,
                                                 to: bool) -> None:
    data = random.Random(seed).randbytes(size)
    state = StateStore(str(places["state"]))
    try:
        with scratch(places[where]) as directory:
            path = os.fsencode(directory) + b"/" + name
            with open(path, "xb") as f:
                f.write(data)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
            for key, value in xattrs.items():
                os.setxattr(path, key, value)
            if label is not None:
                os.setxattr(path, "security.hostguard-test", label)
            if capability:
                os.setxattr(path, "security.capability", CAPABILITY)
            if acl is not None:
                subprocess.run(["setfacl", "-m", f"u:{acl[0]}:{acl[1]},g:{acl[2]}:r", os.fsdecode(path)], check=True)
            os.utime(path, ns=(atime, mtime))
            if flags:
                chattr(path, add=flags)
            before = snapshot(path)
            dev, ino = ident(path)
            done = q.quarantine(state, HOST, path, dev, ino, sha256=None, rule="hostguard.test", reason="round trip")
            assert not os.path.lexists(path)
            stored = (places["state"] / "quarantine" / done.entry.stored).read_bytes()
            if size >= 16:
                assert data[:16] not in stored and data[-16:] not in stored
            assert QuarantineStore(state).get(done.entry.id).path == path
            target = os.fsencode(directory) + b"/restored-" + name if to else path
            restored = q.restore(state, HOST, done.entry.id, to=target if to else None)
            assert restored.target == target
            assert [n for n in restored.notes if "not restored" in n] == []
            after = snapshot(target)
            assert after == before
            assert ("system.posix_acl_access" in after["xattrs"]) == (acl is not None)
            assert ("security.capability" in after["xattrs"]) == capability
    finally:
        state.close()
