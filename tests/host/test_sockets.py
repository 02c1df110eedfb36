"""collect_listeners joins the host's socket and process listings; psutil stays inside LiveHost.

The collector is fed canned records by a fake host, so every rule (dual-stack ``[::]``, IPv6-only,
loopback, connected UDP, a vanished process) is pinned without opening sockets; one test checks the
real LiveHost records against a socket this test opens.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from hostguard.findings import SkipReason
from hostguard.host.base import CommandResult, Host, LiveHost, ProcessInfo, RootHost, SocketInfo, Unavailable
from hostguard.host.sockets import Listener, collect_listeners

SS_TCP = (
    "LISTEN 0      128          *:80          *:* ino:101 sk:1 cgroup:/ v6only:0 <->\n"
    "LISTEN 0      128       [::]:81       [::]:* ino:102 sk:2 cgroup:/ v6only:1 <->\n"
    "LISTEN 0      128    127.0.0.1:3306 0.0.0.0:* ino:103 sk:3 cgroup:/ <->\n"
)
SS_UDP = "UNCONN 0      0      0.0.0.0:53 0.0.0.0:* ino:104 sk:4 cgroup:/ <->\n"

NGINX = ProcessInfo(100, 1, "nginx", "/usr/sbin/nginx", "root", 1700000000.0, ("nginx: master process",))
MYSQL = ProcessInfo(200, 1, "mysqld", "/usr/sbin/mysqld", "mysql", 1700000001.0, ("/usr/sbin/mysqld",))
KTHREAD = ProcessInfo(2, 0, "kthreadd", None, "root", 1699999999.0, ())


def sock(proto: str, family: int, address: str, port: int, pid: int | None, status: str = "LISTEN",
         remote: tuple[str, int] | None = None) -> SocketInfo:
    """A canned socket record."""
    return SocketInfo(proto, family, address, port, remote[0] if remote else None, remote[1] if remote else None,
                      status if proto == "tcp" else "NONE", pid)


class FakeHost(Host):
    """A running host whose sockets, processes and ``ss`` output are given by the test."""

    live = True

    def __init__(self, root: Path, sockets: list[SocketInfo], processes: list[ProcessInfo],
                 ss: bool = True) -> None:
        super().__init__(str(root))
        self._sockets = tuple(sockets)
        self._processes = tuple(processes)
        self._ss = ss
        self.process_listings = 0

    def sockets(self) -> tuple[SocketInfo, ...]:
        return self._sockets

    def processes(self) -> tuple[ProcessInfo, ...]:
        self.process_listings += 1
        return self._processes

    def run(self, argv: list[str], timeout: float = 20, input_bytes: bytes | None = None) -> CommandResult:
        if argv[0] != "ss" or not self._ss:
            raise Unavailable(SkipReason.TOOL_MISSING, f"`{argv[0]}` is not installed")
        out = SS_TCP if argv[1] == "-Hltne" else SS_UDP
        return CommandResult(tuple(argv), 0, out.encode(), b"")


SOCKETS = [
    sock("tcp", 6, "::", 80, 100),                                   # dual-stack: v6only:0
    sock("tcp", 6, "::", 81, 100),                                   # ss says v6only:1
    sock("tcp", 4, "127.0.0.1", 3306, 200),                          # loopback
    sock("tcp", 4, "192.0.2.10", 3306, 200, status="ESTABLISHED", remote=("198.51.100.7", 50000)),
    sock("udp", 4, "0.0.0.0", 53, 300),                              # pid 300 has exited
    sock("udp", 4, "192.0.2.10", 41000, 200, remote=("192.0.2.53", 53)),  # connected UDP: a client
    sock("tcp", 6, "::ffff:127.0.0.1", 8125, None),                  # v4-mapped: IPv4 only
    sock("tcp", 4, "0.0.0.0", 8080, None),                           # SO_REUSEPORT twins: the one with
    sock("tcp", 4, "0.0.0.0", 8080, 100),                            # a visible owner wins
]


def test_listeners_from_canned_sockets_and_processes(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, SOCKETS, [KTHREAD, NGINX, MYSQL])
    listeners = collect_listeners(host, host.sockets(), host.processes())
    title, mysqld = ("nginx: master process",), ("/usr/sbin/mysqld",)
    assert listeners == (
        Listener("udp", "0.0.0.0", 53, (4,), 300, None, None, None),
        Listener("tcp", "::", 80, (4, 6), 100, "nginx", "/usr/sbin/nginx", "root", title),
        Listener("tcp", "::", 81, (6,), 100, "nginx", "/usr/sbin/nginx", "root", title),
        Listener("tcp", "127.0.0.1", 3306, (4,), 200, "mysqld", "/usr/sbin/mysqld", "mysql", mysqld),
        Listener("tcp", "0.0.0.0", 8080, (4,), 100, "nginx", "/usr/sbin/nginx", "root", title),
        Listener("tcp", "::ffff:127.0.0.1", 8125, (4,), None, None, None, None),
    )
    # the command line names what an interpreter runs, but is never evidence (it may carry a password)
    assert "master process" not in str(by_port_describe(listeners, 80))
    by_port = {x.port: x for x in listeners}
    assert by_port[3306].loopback_only and not by_port[80].loopback_only
    assert host.process_listings == 1  # one listing, joined by pid


def by_port_describe(listeners: tuple[Listener, ...], port: int) -> dict[str, object]:
    """The evidence of the listener on ``port``."""
    return next(x for x in listeners if x.port == port).describe()


def test_without_ss_every_wildcard_v6_listener_counts_as_dual_stack(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, SOCKETS, [NGINX], ss=False)
    families = {x.port: x.families for x in collect_listeners(host, host.sockets(), host.processes())}
    assert families[80] == (4, 6) and families[81] == (4, 6)


def test_sockets_and_processes_are_live_only(tmp_path: Path) -> None:
    host = RootHost(str(tmp_path))
    for call in (host.sockets, host.processes, lambda: collect_listeners(host, host.sockets(), host.processes())):
        with pytest.raises(Unavailable) as info:
            call()
        assert info.value.reason == SkipReason.LIVE_ONLY


def test_live_host_records_show_this_process_and_its_listener() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        host = LiveHost()
        [mine] = [x for x in host.sockets() if x.port == port and x.status == "LISTEN"]
        assert mine == SocketInfo("tcp", 4, "127.0.0.1", port, None, None, "LISTEN", os.getpid())
        me = {p.pid: p for p in host.processes()}[os.getpid()]
        assert me.ppid == os.getppid() and me.exe == os.path.realpath("/proc/self/exe")
        assert me.cmdline and me.create_time > 0
        [listener] = [x for x in collect_listeners(host, host.sockets(), host.processes()) if x.port == port]
        assert (listener.pid, listener.process, listener.families) == (os.getpid(), me.name, (4,))
        assert listener.cmdline == tuple(Path("/proc/self/cmdline").read_bytes().decode().split("\0")[:-1])


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("127.0.0.53", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("0.0.0.0", False), ("::", False), ("::ffff:192.0.2.1", False), ("fe80::1%eth0", False), ("*", False),
])
def test_loopback_only_includes_v4_mapped_loopback(address: str, loopback: bool) -> None:
    listener = Listener("tcp", address, 6379, (4,), None, None, None, None)
    assert listener.loopback_only is loopback
