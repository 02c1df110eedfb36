"""Test helper run inside a namespace: TCP listeners that echo what they read, and a client that keeps one
connection open and sends a line on request.

Server: ``echo.py serve 0.0.0.0:2222 0.0.0.0:8080`` prints "ready" once bound, echoes until killed.
Client: ``echo.py hold ADDRESS PORT`` connects (prints "connected" or "refused"), then for every line read on
stdin sends it (a literal ``\\r`` as CR) and prints what came back as a JSON string, or "lost" when the
connection no longer answers within 2 s; a greeting the server sends first (sshd's banner) is read at once.
Unlike ``tests/listen.py`` (which closes every connection at once), this lets a test prove that an
established session survives a firewall change.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)


def _accept(server: socket.socket) -> None:
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def serve(specs: list[str]) -> None:
    threads = []
    for spec in specs:
        address, _, port = spec.rpartition(":")
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((address, int(port)))
        server.listen(16)
        threads.append(threading.Thread(target=_accept, args=(server,), daemon=True))
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    threading.Event().wait()


def hold(address: str, port: int) -> None:
    conn = socket.socket()
    conn.settimeout(2.0)
    try:
        conn.connect((address, port))
    except OSError:
        print("refused", flush=True)
        return
    with contextlib.suppress(OSError):   # a greeting (sshd's banner) is not an answer: read it now
        conn.settimeout(0.5)
        conn.recv(4096)
    conn.settimeout(2.0)
    print("connected", flush=True)
    for line in sys.stdin:
        try:
            conn.sendall(line.replace("\\r", "\r").encode())
            data = conn.recv(4096)
        except OSError:
            data = b""
        print(json.dumps(data.decode("latin-1")) if data else "lost", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2:])
    else:
        hold(sys.argv[2], int(sys.argv[3]))
