"""A unix-socket connection made under another account's credentials, for services that trust the peer.

PostgreSQL's ``peer`` method (Debian's ``local all postgres peer``), MariaDB's ``unix_socket`` plugin and
Redis ACLs on a socket with tight permissions let a local account in because the *kernel* tells the server
who connected (``SO_PEERCRED``). That is the configured administration path of the service, not a guess, so
hostguard (root) may use it to read what the service stores: it connects as the account that owns the
service, once.

The credentials a unix stream socket reports are fixed when ``connect()`` is called, so only the connect has to
happen under the other uid. hostguard is threaded and must not ``fork()`` or ``setuid()`` itself (the change
would hit every thread), so a short child process is started with :mod:`subprocess`; it leaves root (no
supplementary groups, the account's group, then the uid), connects, passes the connected socket back over a
socketpair (``SCM_RIGHTS``) and exits. The parent goes on with that socket: the server still sees the child's
credentials.

The child runs the same interpreter as hostguard and drops its privileges itself, after its modules are
loaded, rather than being exec'd as the other account: a virtualenv's interpreter often lives where that
account cannot read (``/root/.pyenv``, a 0700 home), and the drop is then the only way the helper can start.

Only unix sockets on this host, by path: anything else is refused before a process is started.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys

from hostguard.host.base import HostError
from hostguard.probes.base import Endpoint, ProbeError

# The child: import what it needs while still root (its interpreter may be unreadable to the target account),
# leave root for good, connect, hand the socket back. Any failure goes back as one line, prefixed "E".
_CHILD = r"""
import os, socket, sys
path, back_fd, uid, gid, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
back = socket.socket(fileno=back_fd)
def fail(text):
    back.sendall(("E" + text).encode("utf-8", "replace")[:400])
    sys.exit(1)
try:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
except OSError as exc:
    fail("cannot become uid %d: %s" % (uid, exc.strerror or exc))
if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups() not in ([], [gid]):
    fail("the helper did not leave its privileges")
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.settimeout(timeout)
try:
    conn.connect(path)
except OSError as exc:
    fail("%s: %s" % (path, exc.strerror or exc))
socket.send_fds(back, [b"K"], [conn.fileno()])
"""

MAX_REPLY = 512


class PeerError(HostError):
    """The connection under the other account could not be made (one line: what and why)."""


def _interpreter() -> str:
    """The interpreter running hostguard (the child needs exactly the modules this one has)."""
    if not sys.executable:
        raise PeerError("cannot start the peer helper: the Python interpreter's path is unknown")
    return sys.executable


def connect_as(endpoint: Endpoint, uid: int, gid: int, timeout: float = 10.0) -> socket.socket:
    """A stream socket connected to the unix socket ``endpoint`` by a process running as ``uid``/``gid``
    with no supplementary groups, so the server's ``SO_PEERCRED`` names that account.

    Refuses (:class:`ProbeError`) anything that is not a unix socket path and uid 0 (root needs no helper, and
    handing a service root's identity is never what a peer login means). Raises :class:`PeerError` when the
    helper cannot run or cannot connect (no server, no permission). The caller owns the returned socket.
    """
    endpoint.check()
    path = endpoint.path
    if path is None:
        raise ProbeError(f"peer connection refused: {endpoint.label()} is not a unix socket (peer credentials "
                         "exist only on unix sockets of this host)")
    if "\0" in path or path.startswith("@"):
        raise ProbeError(f"peer connection refused: {path!r} is not a socket file path")
    if uid <= 0 or gid < 0:
        raise ProbeError(f"peer connection refused: uid {uid}, gid {gid} is not a service account")
    if os.geteuid() == uid and os.getegid() == gid:
        return _connect_here(path, timeout)
    if os.geteuid() != 0:
        raise PeerError(f"connecting to {path} as uid {uid} needs root (hostguard runs as uid {os.geteuid()})")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        try:
            proc = subprocess.Popen(
                [_interpreter(), "-I", "-S", "-c", _CHILD, path, str(theirs.fileno()), str(uid), str(gid),
                 repr(float(timeout))],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, cwd="/", env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, close_fds=True)
        except OSError as exc:
            raise PeerError(f"cannot start the peer helper: {exc.strerror or exc}") from exc
        finally:
            theirs.close()
        try:
            return _receive(ours, proc, path, uid, timeout)
        finally:
            _reap(proc)


def _connect_here(path: str, timeout: float) -> socket.socket:
    """Already the right account: a plain connect."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(path)
    except OSError as exc:
        conn.close()
        raise PeerError(f"{path}: {exc.strerror or exc}") from exc
    return conn


def _receive(ours: socket.socket, proc: subprocess.Popen[bytes], path: str, uid: int,
             timeout: float) -> socket.socket:
    """The connected socket the child sent, checked to be a unix stream socket; the child's one-line
    reason otherwise."""
    ours.settimeout(timeout + 5.0)
    try:
        data, fds, flags, _ = socket.recv_fds(ours, MAX_REPLY, 4)
    except TimeoutError as exc:
        raise PeerError(f"connecting to {path} as uid {uid}: the helper did not answer in {timeout + 5.0:g}s") from exc
    except OSError as exc:
        raise PeerError(f"connecting to {path} as uid {uid}: {exc.strerror or exc}") from exc
    received = [socket.socket(fileno=fd) for fd in fds]
    if data == b"K" and len(received) == 1 and not flags & socket.MSG_CTRUNC:
        conn = received[0]
        if conn.family == socket.AF_UNIX and conn.type == socket.SOCK_STREAM:
            conn.settimeout(timeout)
            return conn
    for extra in received:
        extra.close()
    if data.startswith(b"E"):
        raise PeerError(f"connecting as uid {uid}: {_one_line(data[1:])}")
    stderr = b""
    with contextlib.suppress(subprocess.TimeoutExpired, OSError, ValueError):
        _, stderr = proc.communicate(timeout=timeout)
    last = stderr.strip().splitlines()[-1] if stderr.strip() else b"no message"
    raise PeerError(f"connecting to {path} as uid {uid}: the helper failed ({_one_line(last)})")


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Wait for the child (it exits right after sending); kill it by its own pid if it hangs."""
    try:
        proc.communicate(timeout=5.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    except (OSError, ValueError):
        pass


def _one_line(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return " ".join(text.split())[:300] or "no message"


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a connected unix socket (``SO_PEERCRED``): for a
    client socket, the server that accepted it, which tells a real service from a socket someone else made."""
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError as exc:
        raise PeerError(f"cannot tell who is at the other end of the socket: {exc.strerror or exc}") from exc
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid
