"""connections.*: real processes on loopback and a real packet socket; canned sockets only where a
non-loopback peer would be needed (fed through the real collector, which decides the direction)."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.checks.connections import IOCS
from hostguard.engine.facts import SCAN_TIME
from hostguard.host.base import LiveHost, ProcessInfo, RootHost, SocketInfo
from hostguard.host.connections import CONNECTIONS, collect_connections
from tests.conftest import CLEAN, make_config, need_root, run_one

CLIENT = "import socket,sys,time\ns = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n" \
         "print('ok', s.getsockname()[1], flush=True)\ntime.sleep(30)\n"
NOW = {SCAN_TIME: dt.datetime(2026, 12, 3, tzinfo=dt.UTC)}


@pytest.fixture
def connected() -> Iterator[tuple[int, int, int]]:
    """A loopback listener (this test) and a child connected to it: (port, child pid, child's local port)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-c", CLIENT, str(port)], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        conn, _ = srv.accept()
        yield port, child.pid, int(line[1])
        conn.close()
    finally:
        child.kill()
        child.wait()
        srv.close()


def _ioc_config(tmp_path: Path, port: int, address: str) -> object:
    ioc = tmp_path / "mine.toml"
    ioc.write_text(f'source = "test"\n[[ioc]]\ntype = "ip"\nvalue = "{address}"\ncomment = "port {port}"\n')
    return make_config(connections={"ioc_lists": [str(ioc)]})


def test_connection_to_a_listed_address_is_found(tmp_path: Path, connected: tuple[int, int, int]) -> None:
    need_root("seeing every socket's process")
    port, pid, _ = connected
    found, _ = run_one("connections.ioc_address", LiveHost(), _ioc_config(tmp_path, port, "127.0.0.1"),  # type: ignore[arg-type]
                       given=NOW)
    mine = [f for f in found if f.evidence["pid"] == pid]
    assert [f.target for f in mine] == [{"kind": "ip", "address": "127.0.0.1", "port": port, "proto": "tcp",
                                         "program": mine[0].evidence["exe"]}]
    assert mine[0].evidence["ioc"]["comment"] == f"port {port}"
    [step] = mine[0].remediation.steps
    assert step.kind == "action" and ("pid", str(pid)) in step.args  # type: ignore[union-attr]


def test_the_same_connection_without_the_ioc_is_quiet(tmp_path: Path, connected: tuple[int, int, int]) -> None:
    need_root("seeing every socket's process")
    port, pid, _ = connected
    found, _ = run_one("connections.ioc_address", LiveHost(), _ioc_config(tmp_path, port, "127.0.0.2"),  # type: ignore[arg-type]
                       given=NOW)
    assert [f for f in found if f.evidence["pid"] == pid] == []


def test_loopback_connection_to_a_pool_port_is_not_mining(connected: tuple[int, int, int]) -> None:
    need_root("seeing every socket's process")
    port, pid, _ = connected
    facts = LiveHost()
    conns = collect_connections(facts, facts.sockets(), facts.processes())
    [mine] = [c for c in conns if c.pid == pid]
    assert not mine.inbound and mine.remote_loopback
    canned = (mine.__class__(**{**mine.__dict__, "remote_port": 3333}),)
    found, _ = run_one("connections.pool_port", LiveHost(), given={CONNECTIONS: canned})
    assert found == []


def _canned(remote: str, rport: int, name: str, argv0: str, listen: int | None = None) -> tuple[object, ...]:
    socks = [SocketInfo("tcp", 4, "198.51.100.1", 41000, remote, rport, "ESTABLISHED", 4242)]
    if listen is not None:
        socks = [SocketInfo("tcp", 4, "0.0.0.0", 41000, None, None, "LISTEN", 4242), *socks]
    procs = (ProcessInfo(4242, 1, name, f"/usr/sbin/{name}", "www-data", 1.0, (argv0,)),)
    return collect_connections(RootHost(str(CLEAN)), tuple(socks), procs)


def test_pool_port_and_web_outbound_on_another_machine() -> None:
    """Canned sockets (a peer beyond loopback): outbound hits; the same sockets accepted by a listener
    (a client whose ephemeral port happens to be 3333) and allowed ports are near misses."""
    out = _canned("203.0.113.9", 3333, "nginx", "nginx: worker process")
    found, _ = run_one("connections.pool_port", LiveHost(), given={CONNECTIONS: out})
    assert [f.target["port"] for f in found] == [3333]
    found, _ = run_one("connections.web_outbound", LiveHost(), given={CONNECTIONS: out})
    assert [(f.target["address"], f.target["port"]) for f in found] == [("203.0.113.9", 3333)]
    inbound = tuple(c for c in _canned("203.0.113.9", 3333, "nginx", "nginx", listen=41000) if c.remote_port)
    assert run_one("connections.pool_port", LiveHost(), given={CONNECTIONS: inbound})[0] == []
    assert run_one("connections.web_outbound", LiveHost(), given={CONNECTIONS: inbound})[0] == []
    allowed = _canned("203.0.113.9", 5432, "php-fpm8.2", "php-fpm: pool www")
    assert run_one("connections.web_outbound", LiveHost(), given={CONNECTIONS: allowed})[0] == []
    other = _canned("203.0.113.9", 8443, "python3", "python3")
    assert run_one("connections.web_outbound", LiveHost(), given={CONNECTIONS: other})[0] == []


def test_packet_socket_of_an_unknown_program_is_found_and_a_known_one_is_not(tmp_path: Path) -> None:
    need_root("a packet socket")
    code = ("import socket,sys,time\ns = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)\n"
            "print('ok', flush=True)\ntime.sleep(30)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"ok"
        found, _ = run_one("connections.raw_socket", LiveHost())
        mine = [f for f in found if f.evidence["pid"] == child.pid]
        assert [f.target["socket"] for f in mine] == ["packet"]
        name = Path(mine[0].evidence["exe"]).name
        quiet, _ = run_one("connections.raw_socket", LiveHost(),
                           make_config(connections={"raw_socket_allowed": [name]}))
        assert [f for f in quiet if f.evidence["pid"] == child.pid] == []
    finally:
        child.kill()
        child.wait()


def test_expired_entries_of_an_owner_list_are_named(tmp_path: Path) -> None:
    lst = tmp_path / "l.toml"
    lst.write_text('source = "me"\n[[ioc]]\ntype = "ip"\nvalue = "192.0.2.1"\nexpiry = 2026-01-01\n'
                   '[[ioc]]\ntype = "ip"\nvalue = "192.0.2.2"\nexpiry = 2027-01-01\n')
    cfg = make_config(connections={"ioc_lists": [str(lst)]})
    found, _ = run_one("connections.ioc_expired", RootHost(str(CLEAN)), cfg, given=NOW)
    assert [f.target for f in found] == [{"kind": "config", "path": str(lst), "line": 2}]
    assert "192.0.2.1" in found[0].title
    assert run_one("connections.ioc_expired", RootHost(str(CLEAN)), given=NOW)[0] == []
    assert IOCS.name == "iocs"


def test_under_root_the_live_checks_say_live_only() -> None:
    for check_id in ("connections.ioc_address", "connections.raw_socket"):
        found, skipped = run_one(check_id, RootHost(str(CLEAN)), given=NOW)
        assert found == [] and [s.reason for s in skipped] == ["live_only"]


def test_an_inbound_connection_is_keyed_by_the_service_port_not_the_peers_ephemeral_one(tmp_path: Path) -> None:
    """Two connections of a listed peer to this host's port 22, from different ephemeral ports (two logins,
    fed through the real direction code) are one problem with one fingerprint; the same peer reached from
    this host (outbound) is another problem, keyed by the remote port."""
    def inbound(peer_port: int) -> tuple[object, ...]:
        socks = (SocketInfo("tcp", 4, "0.0.0.0", 22, None, None, "LISTEN", 4242),
                 SocketInfo("tcp", 4, "198.51.100.1", 22, "192.0.2.7", peer_port, "ESTABLISHED", 4242))
        procs = (ProcessInfo(4242, 1, "sshd", "/usr/sbin/sshd", "root", 1.0, ("sshd",)),)
        return collect_connections(RootHost(str(CLEAN)), socks, procs)

    cfg = _ioc_config(tmp_path, 22, "192.0.2.7")
    first, _ = run_one("connections.ioc_address", LiveHost(), cfg, given={**NOW, CONNECTIONS: inbound(50001)})  # type: ignore[arg-type]
    again, _ = run_one("connections.ioc_address", LiveHost(), cfg, given={**NOW, CONNECTIONS: inbound(50002)})  # type: ignore[arg-type]
    assert [f.target for f in first] == [{"kind": "ip", "address": "192.0.2.7", "port": 22, "proto": "tcp",
                                          "program": "/usr/sbin/sshd", "direction": "inbound"}]
    assert [f.fingerprint for f in again] == [first[0].fingerprint]
    assert first[0].evidence["remote_port"] == 50001   # the ephemeral port stays in the evidence
    out = _canned("192.0.2.7", 22, "ssh", "ssh")
    outbound, _ = run_one("connections.ioc_address", LiveHost(), cfg, given={**NOW, CONNECTIONS: out})  # type: ignore[arg-type]
    assert [f.target for f in outbound] == [{"kind": "ip", "address": "192.0.2.7", "port": 22, "proto": "tcp",
                                             "program": "/usr/sbin/ssh"}]
