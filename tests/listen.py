"""Test helper run inside a namespace: bind the given sockets, print "ready", accept until killed.

Usage: listen.py tcp:0.0.0.0:6379 tcp:[::]:80 tcp6only:[::]:81 udp:0.0.0.0:53
"""

from __future__ import annotations

import select
import socket
import sys


def main(specs: list[str]) -> None:
    socks = []
    for spec in specs:
        kind, _, rest = spec.partition(":")
        addr, _, port = rest.rpartition(":")
        addr = addr.strip("[]")
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if kind == "tcp6only" else 0)
        s.bind((addr, int(port)))
        if kind != "udp":
            s.listen(16)
        socks.append(s)
    print("ready", flush=True)
    streams = [s for s in socks if s.type == socket.SOCK_STREAM]
    while True:
        ready, _, _ = select.select(streams, [], [], 1.0)
        for s in ready:
            conn, _ = s.accept()
            conn.close()


if __name__ == "__main__":
    main(sys.argv[1:])
