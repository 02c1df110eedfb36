"""The peer connection on its own: a tiny unix-socket server in a temp directory tells, over the very socket
hostguard gets back, which uid, gid and supplementary groups the kernel says connected to it."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.probes.base import Endpoint, ProbeError
from hostguard.probes.peer import PeerError, connect_as, peer_credentials
from tests.conftest import need_root

SO_PEERGROUPS = 59   # Linux's SO_PEERGROUPS (asm-generic/socket.h); Python's socket module does not name it


def _account(name: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        pytest.skip(reason=f"no {name} account on this machine (base-passwd / the postgresql package makes it)")
    return entry.pw_uid, entry.pw_gid


class CredServer:
    """Accepts connections on ``path`` and answers each with ``uid=U gid=G groups=A,B`` as SO_PEERCRED and
    SO_PEERGROUPS report them, then echoes one line back (proving the caller can use the socket)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        os.chmod(path, 0o777)             # any account may connect; the directory decides who can reach it
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                _, uid, gid = struct.unpack("3i", raw)
                groups_raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 256)
                groups = struct.unpack(f"{len(groups_raw) // 4}I", groups_raw)
                conn.sendall(f"uid={uid} gid={gid} groups={','.join(map(str, groups))}\n".encode())
                try:
                    line = conn.recv(100)
                except OSError:
                    continue
                conn.sendall(b"echo " + line)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def server() -> Iterator[CredServer]:
    """The credential server in a directory every account can reach (pytest's own tmp_path is root-only)."""
    need_root("connecting as another account")
    base = Path(tempfile.mkdtemp(prefix="hostguard-peer-"))
    os.chmod(base, 0o755)
    srv = CredServer(base / "creds.sock")
    try:
        yield srv
    finally:
        srv.close()
        shutil.rmtree(base, ignore_errors=True)


def _talk(conn: socket.socket) -> tuple[str, str]:
    with conn:
        reader = conn.makefile("rb")
        creds = reader.readline().decode().strip()
        conn.sendall(b"hello\n")
        echo = reader.readline().decode().strip()
        reader.close()
    return creds, echo


@pytest.mark.parametrize("account", ["postgres", "nobody"])
def test_server_sees_the_other_account_and_no_supplementary_groups(server: CredServer, account: str) -> None:
    uid, gid = _account(account)
    conn = connect_as(Endpoint.unix(str(server.path)), uid, gid, timeout=10)
    assert (conn.family, conn.type) == (socket.AF_UNIX, socket.SOCK_STREAM)
    # the server end belongs to us (root, this process): what a caller checks before trusting a socket
    assert peer_credentials(conn)[:2] == (os.getpid(), 0)
    creds, echo = _talk(conn)
    assert creds == f"uid={uid} gid={gid} groups="     # no supplementary group at all, not even root's
    assert echo == "echo hello"


def test_the_connect_is_really_made_as_the_account(server: CredServer) -> None:
    """Near miss: a socket only root can reach. Root would connect; the account may not, so it must fail."""
    uid, gid = _account("nobody")
    server.path.parent.chmod(0o700)
    try:
        with pytest.raises(PeerError) as err:
            connect_as(Endpoint.unix(str(server.path)), uid, gid, timeout=5)
    finally:
        server.path.parent.chmod(0o755)
    message = str(err.value)
    assert "Permission denied" in message and str(server.path) in message and "\n" not in message


def test_no_server_is_one_line(server: CredServer) -> None:
    uid, gid = _account("postgres")
    missing = server.path.parent / "none.sock"
    with pytest.raises(PeerError) as err:
        connect_as(Endpoint.unix(str(missing)), uid, gid, timeout=5)
    assert str(err.value) == f"connecting as uid {uid}: {missing}: No such file or directory"


@pytest.mark.parametrize(("endpoint", "uid", "message"), [
    (Endpoint(host="127.0.0.1", port=5432), 101, "tcp 127.0.0.1:5432 is not a unix socket"),
    (Endpoint(host="::1", port=5432), 101, "tcp [::1]:5432 is not a unix socket"),
    (Endpoint(path="@abstract"), 101, "is not a socket file path"),
    (Endpoint(path="/run/x.sock"), 0, "uid 0, gid 0 is not a service account"),
])
def test_refused_before_any_process_starts(endpoint: Endpoint, uid: int, message: str) -> None:
    with pytest.raises(ProbeError) as err:
        connect_as(endpoint, uid, 0 if uid == 0 else 65534)
    assert message in str(err.value)


def test_non_local_address_is_refused_by_the_endpoint_itself() -> None:
    with pytest.raises(ProbeError, match="not a loopback address"):
        connect_as(Endpoint(host="192.0.2.10", port=5432), 101, 104)
