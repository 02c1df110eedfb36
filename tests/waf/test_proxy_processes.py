"""`hostguard waf proxy --processes N`: worker processes sharing one listening socket, each with its own
engine; SIGTERM ends them all (exit 0); a worker that dies on its own ends the others (exit 2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.waf.corpus import send_raw
from tests.waf.test_engine import _need_library

ROOT = Path(__file__).resolve().parents[2]


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _start(tmp_path: Path, upstream: int) -> tuple[subprocess.Popen[str], int]:
    _need_library()
    proc = subprocess.Popen([sys.executable, "-m", "hostguard.cli", "--state", str(tmp_path / "state"), "waf", "proxy",
                             "--listen", "127.0.0.1:0", "--upstream", f"http://127.0.0.1:{upstream}",
                             "--processes", "2"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "listening on http://127.0.0.1:" in line, line
    port = int(line.split("listening on http://127.0.0.1:", 1)[1].split()[0])
    return proc, port


def _get(port: int, target: str) -> int:
    return send_raw(f"GET {target} HTTP/1.1\r\nHost: shop.example.test\r\nConnection: close\r\n\r\n".encode(),
                    "127.0.0.1", port, timeout=10)[0]


def test_workers_share_the_socket_and_stop_together(tmp_path: Path, upstream: int) -> None:
    proc, port = _start(tmp_path, upstream)
    try:
        workers = _children(proc.pid)
        assert len(workers) == 2
        assert [_get(port, "/?q=tea") for _ in range(6)] == [200] * 6
        assert _get(port, "/?id=1%27%20OR%20%271%27%3D%271") == 403
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        time.sleep(0.2)
        assert not [w for w in workers if os.path.exists(f"/proc/{w}")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_worker_dying_ends_the_proxy_with_one_line(tmp_path: Path, upstream: int) -> None:
    proc, port = _start(tmp_path, upstream)
    try:
        first, second = _children(proc.pid)
        os.kill(first, signal.SIGKILL)
        assert proc.wait(30) == 2
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert "a worker process ended on its own" in err and "Traceback" not in err
        time.sleep(0.2)
        assert not os.path.exists(f"/proc/{second}")   # the other worker was ended and reaped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
