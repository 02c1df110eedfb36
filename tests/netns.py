"""Test hosts in network namespaces this test run creates: a server and a client joined by veth.

Addresses are documentation ranges that exist only inside these namespaces (198.51.100.0/24,
2001:db8:100::/64). Nothing here touches the host's own network, firewall or addresses.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import need_root, need_tool

SERVER_V4, CLIENT_V4 = "198.51.100.1", "198.51.100.2"
SERVER_V6, CLIENT_V6 = "2001:db8:100::1", "2001:db8:100::2"
LISTENER = Path(__file__).parent / "listen.py"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Pair:
    """Two namespaces: ``server`` (listeners, firewall under test) and ``client`` (connects to it)."""

    server: str
    client: str
    server_if: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    def add_container(self, address: str = "192.0.2.2", gateway: str = "192.0.2.1") -> str:
        """A third namespace behind the server (like a Docker container), routed through it."""
        ns = self.server.replace("hgsrv", "hgctr")
        host_if, ctr_if = "hgb" + ns[5:], "hgk" + ns[5:]
        ip("netns", "add", ns)
        self.extra.append(ns)
        ip("link", "add", host_if, "type", "veth", "peer", "name", ctr_if)
        ip("link", "set", host_if, "netns", self.server)
        ip("link", "set", ctr_if, "netns", ns)
        ip("-n", self.server, "addr", "add", f"{gateway}/24", "dev", host_if)
        ip("-n", self.server, "link", "set", host_if, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", ctr_if)
        ip("-n", ns, "link", "set", ctr_if, "up")
        ip("-n", ns, "route", "add", "default", "via", gateway)
        self.run(self.server, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        return ns

    def listen_in(self, ns: str, *specs: str) -> None:
        """Listeners in another namespace of this pair."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(LISTENER), *specs],
                                stdout=subprocess.PIPE)
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"

    def run(self, ns: str, argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, **kw)

    def listen(self, *specs: str) -> None:
        """Start listeners in the server namespace: "tcp:0.0.0.0:6379", "tcp:[::]:80", "udp:0.0.0.0:53"."""
        self.listen_in(self.server, *specs)

    def spawn(self, ns: str, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv])
        self.procs.append(proc)
        return proc

    def connects(self, address: str, port: int, ns: str | None = None) -> bool:
        """A real TCP connection attempt from the client namespace (or ``ns``)."""
        code = ("import socket,sys\n"
                f"fam = socket.AF_INET6 if ':' in {address!r} else socket.AF_INET\n"
                "s = socket.socket(fam); s.settimeout(1.0)\n"
                f"sys.exit(0 if s.connect_ex(({address!r}, {port})) == 0 else 1)\n")
        return self.run(ns or self.client, [sys.executable, "-c", code]).returncode == 0

    def hostguard(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run hostguard inside the server namespace (it sees that namespace's sockets and firewall)."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        return subprocess.run(["ip", "netns", "exec", self.server, sys.executable, "-m", "hostguard.cli", *args],
                              capture_output=True, text=True, env=env)


@contextlib.contextmanager
def netns_pair() -> Iterator[Pair]:
    """Create the pair, wire it, and remove everything afterwards."""
    need_root("network namespaces")
    need_tool("ip")
    tag = secrets.token_hex(3)
    veth_s, veth_c = f"hgs{tag}", f"hgc{tag}"
    pair = Pair(f"hgsrv{tag}", f"hgcli{tag}", veth_s)
    try:
        ip("netns", "add", pair.server)
        ip("netns", "add", pair.client)
        ip("link", "add", veth_s, "type", "veth", "peer", "name", veth_c)
        ip("link", "set", veth_s, "netns", pair.server)
        ip("link", "set", veth_c, "netns", pair.client)
        for ns, dev, v4, v6 in ((pair.server, veth_s, SERVER_V4, SERVER_V6), (pair.client, veth_c, CLIENT_V4, CLIENT_V6)):
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
            ip("-n", ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            ip("-n", ns, "link", "set", dev, "up")
        deadline = time.time() + 5
        while time.time() < deadline and pair.run(pair.client, ["ping", "-c1", "-W1", SERVER_V4]).returncode != 0:
            time.sleep(0.1)
        yield pair
    finally:
        for proc in pair.procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for ns in (pair.server, pair.client, *pair.extra):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONNECT_MANY = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor

def one(target):
    address, port = target
    s = socket.socket(socket.AF_INET6 if ':' in address else socket.AF_INET)
    s.settimeout(1.0)
    try:
        return s.connect_ex((address, port)) == 0
    finally:
        s.close()

targets = [tuple(t) for t in json.loads(sys.argv[1])]
with ThreadPoolExecutor(max(1, len(targets))) as pool:
    print(json.dumps(list(pool.map(one, targets))))
"""


def connects_many(pair: Pair, ns: str, targets: list[tuple[str, int]]) -> dict[tuple[str, int], bool]:
    """Real TCP connection attempts from ``ns`` to every (address, port), all at once: a dropped one costs
    its one-second timeout once for the whole batch, not once per port."""
    import json

    if not targets:
        return {}
    r = pair.run(ns, [sys.executable, "-c", CONNECT_MANY, json.dumps(targets)])
    assert r.returncode == 0, r.stderr
    return dict(zip(targets, json.loads(r.stdout), strict=True))
