"""connections.*: real processes with real connections to a peer beyond loopback, and the real scan run
inside the namespace that holds them.

Two namespaces joined by veth (``tests/netns.py``): B (``pair.server``, 198.51.100.1) holds listeners that
accept and keep every connection on a mining pool port (3333), an allowed port (443) and an odd port
(8081). In A (``pair.client``, 198.51.100.2), where hostguard scans:

* a plain client connected to B:3333 (``pool_port`` hit) and one connected to B:443 (its near miss);
* a real nginx (a config of the test's own, in a temp dir) proxying two hanging requests to B:8081 and
  B:443: its worker's connection to 8081 is the ``web_outbound`` hit, the one to 443 its near miss (and the
  plain client to 3333 is a non-web process on an odd port: not ``web_outbound`` either);
* a listener on 5555 (a pool port) that B connects to *from* source port 7777 (another pool port): an
  accepted connection, whose remote port is a pool port, must not count as mining;
* an IOC list naming B's address: every connection to or from B is ``ioc_address``; a list naming another
  address of the same /24 matches nothing;
* two real redis-servers (no TCP port of their own, a unix socket in the temp dir), replicas of "primaries"
  in B: one on odd port 8082 (``database_outbound`` hit, what an attacker's ``REPLICAOF`` looks like) and
  one on 6379, Redis's own port (its near miss: replication).

Every process is bounded in time (``LIFETIME``) and killed at teardown with the namespaces.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import need_root, need_tool
from tests.netns import CLIENT_V4, SERVER_V4, Pair, netns_pair

LIFETIME = "120"          # seconds any process of the scene lives at most, should teardown never run
HOSTGUARD = str(Path(sys.executable).parent / "hostguard")
CHECKS = ("connections.ioc_address", "connections.pool_port", "connections.web_outbound",
          "connections.database_outbound")

# Listens on the given ports of every address and keeps each accepted connection open (never answers),
# printing "ready PID" once bound and "accepted LOCALPORT PEER PEERPORT" per connection.
HOLD = r"""
import os, select, socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
socks = []
for port in sys.argv[2:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(16)
    socks.append(s)
print("ready", os.getpid(), flush=True)
held = []
while time.monotonic() < deadline:
    for s in select.select(socks, [], [], 0.5)[0]:
        conn, peer = s.accept()
        held.append(conn)
        print("accepted", s.getsockname()[1], peer[0], peer[1], flush=True)
"""

# Connects to ADDRESS:PORT (from SOURCE port unless 0), sends REQUEST if given, prints "PID LOCALPORT"
# and keeps the connection until LIFETIME has passed.
CLIENT = r"""
import os, socket, sys, time
address, port, source, lifetime = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket()
if source:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", source))
s.settimeout(5)
s.connect((address, port))
if len(sys.argv) > 5:
    s.sendall(sys.argv[5].encode())
print(os.getpid(), s.getsockname()[1], flush=True)
time.sleep(lifetime)
"""

# The test's own nginx: listens on A's loopback, proxies /odd to B:8081 and /ok to B:443 and waits long
# for an answer that never comes, so its worker holds both upstream connections while the scan runs.
NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    proxy_read_timeout 300s;
    server {{
        listen 127.0.0.1:8080;
        location /odd {{ proxy_pass http://{server}:8081; }}
        location /ok {{ proxy_pass http://{server}:443; }}
    }}
}}
"""


def _lines(proc: subprocess.Popen[bytes], count: int, seconds: float = 15.0) -> list[list[str]]:
    """The next ``count`` lines ``proc`` prints (split in words), failing after ``seconds``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out: list[list[str]] = []
    buf = b""
    deadline = time.monotonic() + seconds
    while len(out) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {out} of {count} lines within {seconds} s"
        if not select.select([fd], [], [], left)[0]:
            continue
        chunk = os.read(fd, 4096)
        assert chunk, f"process ended after {out}"
        buf += chunk
        while b"\n" in buf and len(out) < count:
            line, buf = buf.split(b"\n", 1)
            out.append(line.decode().split())
    assert not buf, f"unexpected output {buf!r}"
    return out


@dataclass
class Scene:
    """Who is connected where, as the test started it."""

    pair: Pair
    directory: Path
    pool_client: int        # pid in A connected to B:3333
    plain_client: int       # pid in A connected to B:443
    nginx_worker: int       # pid of the nginx worker in A, connected to B:8081 and B:443
    listener_a: int         # pid in A listening on 5555, holding B's connection from port 7777
    redis_odd: int          # pid of the redis-server in A replicating from B:8082
    redis_ok: int           # pid of the redis-server in A replicating from B:6379

    def scan(self, ioc_address: str) -> list[dict[str, Any]]:
        """``hostguard scan --only connections`` inside A, with an IOC list naming ``ioc_address``."""
        tag = ioc_address.replace(".", "-")
        ioc = self.directory / f"ioc-{tag}.toml"
        ioc.write_text(f'source = "test"\n[[ioc]]\ntype = "ip"\nvalue = "{ioc_address}"\ncomment = "test peer"\n')
        config = self.directory / f"config-{tag}.toml"
        config.write_text(f'[connections]\nioc_lists = ["{ioc}"]\n')
        r = self.pair.run(self.pair.client, [HOSTGUARD, "--config", str(config), "--state",
                                              str(self.directory / f"state-{tag}"), "scan", "--only", "connections",
                                              "--format", "json"], timeout=120)
        assert r.returncode in (0, 1), r.stderr
        report = json.loads(r.stdout)
        assert not [s for s in report["skipped"] if s["check"] in CHECKS], report["skipped"]
        return [f for f in report["findings"] if f["id"] in CHECKS]


def seen(findings: list[dict[str, Any]], check: str) -> set[tuple[str, int, int, str]]:
    """(address, port, pid, direction) of each finding of ``check``: the target's address and port (the
    remote port of an outbound connection, this host's service port of an inbound one)."""
    return {(f["target"]["address"], f["target"]["port"], f["evidence"]["pid"], f["evidence"]["direction"])
            for f in findings if f["id"] == check}


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    need_root("network namespaces")
    need_tool("ip", "nginx", "timeout", "redis-server")
    directory = tmp_path_factory.mktemp("conn-live")
    with netns_pair() as pair:
        a, b = pair.client, pair.server

        def start(ns: str, *argv: str) -> subprocess.Popen[bytes]:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE)
            pair.procs.append(proc)
            return proc

        hold_b = start(b, sys.executable, "-c", HOLD, LIFETIME, "3333", "443", "8081", "8082", "6379")
        hold_a = start(a, sys.executable, "-c", HOLD, LIFETIME, "5555")
        _lines(hold_b, 1)
        [[_, listener_a]] = _lines(hold_a, 1)

        def client(ns: str, address: str, port: int, source: int = 0, request: str | None = None) -> int:
            proc = start(ns, sys.executable, "-c", CLIENT, address, str(port), str(source), LIFETIME,
                         *([request] if request else []))
            [[pid, _]] = _lines(proc, 1)
            return int(pid)

        pool_client = client(a, SERVER_V4, 3333)
        plain_client = client(a, SERVER_V4, 443)

        conf = directory / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=directory, server=SERVER_V4))
        start(a, "timeout", LIFETIME, shutil.which("nginx") or "nginx", "-e", str(directory / "error.log"),
              "-p", str(directory), "-c", str(conf), "-g", "daemon off;")
        pidfile = directory / "nginx.pid"
        deadline = time.monotonic() + 15
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline, (directory / "error.log").read_text()
            time.sleep(0.05)
        master = psutil.Process(int(pidfile.read_text()))
        for path in ("/odd", "/ok"):
            client(a, "127.0.0.1", 8080, request=f"GET {path} HTTP/1.0\r\nHost: app.test\r\n\r\n")
        client(b, CLIENT_V4, 5555, source=7777)
        redis = {}
        for port in (8082, 6379):
            proc = start(a, "timeout", LIFETIME, shutil.which("redis-server") or "redis-server", "--port", "0",
                         "--unixsocket", str(directory / f"redis-{port}.sock"), "--dir", str(directory),
                         "--dbfilename", f"dump-{port}.rdb", "--save", "", "--appendonly", "no",
                         "--replicaof", SERVER_V4, str(port), "--logfile", str(directory / f"redis-{port}.log"))
            redis[port] = proc
        accepted = {(int(w[1]), w[2]) for w in _lines(hold_b, 6)}
        assert accepted == {(3333, CLIENT_V4), (443, CLIENT_V4), (8081, CLIENT_V4), (8082, CLIENT_V4),
                            (6379, CLIENT_V4)}
        assert [w[1:3] for w in _lines(hold_a, 1)] == [["5555", SERVER_V4]]
        [worker] = master.children()
        servers = {port: psutil.Process(p.pid).children()[0].pid for port, p in redis.items()}  # under timeout
        yield Scene(pair, directory, pool_client, plain_client, worker.pid, int(listener_a), servers[8082],
                    servers[6379])


def test_pool_port_is_the_client_on_3333_only(scene: Scene) -> None:
    """Hit: the client connected to B:3333. Near misses: the client on 443, nginx's upstreams, and the
    connection B made to A's pool-port listener from its own pool port 7777 (inbound)."""
    found = scene.scan("192.0.2.1")
    assert seen(found, "connections.pool_port") == {(SERVER_V4, 3333, scene.pool_client, "outbound")}


def test_web_outbound_is_the_nginx_worker_to_the_odd_port_only(scene: Scene) -> None:
    """Hit: the real nginx worker's upstream connection to B:8081. Near misses: its upstream on 443 (an
    allowed port), its loopback clients, and a plain process connected to odd port 3333."""
    found = scene.scan("192.0.2.1")
    assert seen(found, "connections.web_outbound") == {(SERVER_V4, 8081, scene.nginx_worker, "outbound")}
    [hit] = [f for f in found if f["id"] == "connections.web_outbound"]
    assert hit["evidence"]["process"] == "nginx" and hit["target"]["program"] == hit["evidence"]["exe"]


def test_database_outbound_is_the_replica_of_the_odd_port_only(scene: Scene) -> None:
    """Hit: a real redis-server replicating from B:8082 (an attacker's REPLICAOF). Near misses: the replica of
    B:6379 (replication on Redis's own port), nginx's upstream to 8081 (not a database)."""
    found = scene.scan("192.0.2.1")
    assert seen(found, "connections.database_outbound") == {(SERVER_V4, 8082, scene.redis_odd, "outbound")}
    [hit] = [f for f in found if f["id"] == "connections.database_outbound"]
    assert hit["evidence"]["process"] == "redis-server" and hit["remediation"]["steps"] == []


def test_ioc_address_names_every_connection_to_and_from_the_listed_peer(scene: Scene) -> None:
    found = scene.scan(SERVER_V4)
    assert seen(found, "connections.ioc_address") == {
        (SERVER_V4, 3333, scene.pool_client, "outbound"),
        (SERVER_V4, 443, scene.plain_client, "outbound"),
        (SERVER_V4, 8081, scene.nginx_worker, "outbound"),
        (SERVER_V4, 443, scene.nginx_worker, "outbound"),
        (SERVER_V4, 5555, scene.listener_a, "inbound"),   # keyed by A's service port, not B's 7777
        (SERVER_V4, 8082, scene.redis_odd, "outbound"),
        (SERVER_V4, 6379, scene.redis_ok, "outbound"),
    }
    assert {f["evidence"]["ioc"]["value"] for f in found if f["id"] == "connections.ioc_address"} == {SERVER_V4}
    [inbound] = [f for f in found if f["evidence"]["direction"] == "inbound"]
    assert inbound["target"]["direction"] == "inbound" and inbound["evidence"]["remote_port"] == 7777


def test_ioc_address_of_a_neighbour_in_the_same_network_matches_nothing(scene: Scene) -> None:
    found = scene.scan("198.51.100.3")
    assert seen(found, "connections.ioc_address") == set()
    # the scene is still up: the other checks see the same connections as with the matching list
    assert seen(found, "connections.pool_port") == {(SERVER_V4, 3333, scene.pool_client, "outbound")}
