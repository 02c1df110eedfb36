"""Shared pieces of the service-reader tests: free loopback ports, waiting for a real server, a tiny RESP
client (no redis-py needed), and files written into a temp tree."""

from __future__ import annotations

import contextlib
import ftplib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from hostguard.host.base import RootHost


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(check: object, timeout: float = 20.0, what: str = "server") -> None:
    """Poll ``check()`` until it is true; fail the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not come up in {timeout:g}s")


def accepting(sock_path: str) -> bool:
    """Whether a server listens on the unix socket ``sock_path`` (the file exists from bind(), before listen():
    waiting for the file alone races the server)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        s.connect(sock_path)
    return True


@contextlib.contextmanager
def running(argv: list[str], log: Path, **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    """A real server process for the duration of the block, stopped (by its own pid) afterwards."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                **kwargs)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def tree(root: Path, files: dict[str, str]) -> RootHost:
    """A host tree under ``root`` holding ``files`` (host path → text)."""
    for name, text in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return RootHost(str(root))


def line_of(path: str, startswith: str) -> int:
    """The 1-based number of the first line of ``path`` that starts with ``startswith``."""
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for number, line in enumerate(fh, 1):
            if line.startswith(startswith):
                return number
    raise AssertionError(f"{path}: no line starts with {startswith!r}")


def resp(sock_path: str, *commands: list[str]) -> list[object]:
    """Send Redis commands over a unix socket and return each reply (an error reply as ``Exception``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sock_path)
        data = b"".join(_encode(c) for c in commands)
        s.sendall(data)
        reader = s.makefile("rb")
        return [_reply(reader) for _ in commands]


def _encode(args: list[str]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        raw = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def _reply(reader: object) -> object:
    line: bytes = reader.readline()  # type: ignore[attr-defined]
    kind, body = line[:1], line[1:-2].decode()
    if kind == b"+":
        return body
    if kind == b"-":
        return Exception(body)
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data: bytes = reader.read(size + 2)  # type: ignore[attr-defined]
        return data[:-2].decode()
    if kind == b"*":
        return [_reply(reader) for _ in range(int(body))]
    raise AssertionError(f"unexpected RESP reply {line!r}")


def anonymous_ftp_login(port: int) -> bool:
    """Whether the FTP server on loopback ``port`` lets ``anonymous`` log in."""
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=10)
    try:
        ftp.login("anonymous", "probe@example.test")
    except ftplib.error_perm:
        return False
    finally:
        ftp.close()
    return True
