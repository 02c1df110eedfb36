"""Abnormal connections: sockets of running processes that talk to known-bad addresses, look like mining,
leave a web server or a database for odd ports, or sniff and forge packets (live only).

Addresses come from IOC lists (hostguard.iocs: the shipped data/iocs/ lists and the owner's own, named in
``[connections] ioc_lists``). Pool ports, web server and database names and the programs known to hold raw
sockets are data (data/connections/connections.toml). Loopback is this host talking to itself: it is never a
pool or a web server's escape, but an address the owner listed as an IOC counts wherever it is.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache

from hostguard.config import DEFAULT_PATH, setting
from hostguard.data import load_toml
from hostguard.engine.context import Context
from hostguard.engine.facts import SCAN_TIME, Fact, config_input
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding
from hostguard.host.base import Host
from hostguard.host.connections import CONNECTIONS, RAW_SOCKETS, Connection, RawSocket
from hostguard.iocs import IocSet, load_file, shipped
from hostguard.remediation import Action, Remediation


@dataclass(frozen=True)
class ConnectionsConfig:
    """[connections]: your own IOC lists, and where web servers may connect."""

    ioc_lists: tuple[str, ...] = setting((), "IOC lists (TOML files of [[ioc]] tables: type ip|cidr|domain|url|"
                                             "sha256, value, source, expiry, comment) used beside the shipped ones. "
                                             "A malformed entry is a configuration error naming its file and line.")
    web_allowed_ports: tuple[int, ...] = setting((80, 443, 53, 25, 587, 3306, 5432, 6379, 11211),
                                                 "Remote ports a web server or PHP worker may connect to on other "
                                                 "machines (web, DNS, mail, databases, caches); add your back ends'.")
    database_allowed_ports: tuple[int, ...] = setting((53, 3306, 5432, 6379, 26379, 27017),
                                                      "Remote ports a database or cache server may connect to on other "
                                                      "machines (DNS, and its primary's port for replication); add "
                                                      "your cluster's.")
    raw_socket_allowed: tuple[str, ...] = setting((), "Programs (executable base names) allowed to hold packet or "
                                                      "raw sockets, beyond data/connections/connections.toml.")

    def __post_init__(self) -> None:
        for name, ports in (("web_allowed_ports", self.web_allowed_ports),
                            ("database_allowed_ports", self.database_allowed_ports)):
            for port in ports:
                if not 0 < port < 65536:
                    raise ValueError(f"{name}: {port} is not a port number")
        for path in self.ioc_lists:
            if not os.path.isabs(path):
                raise ValueError(f"ioc_lists: {path!r} is not an absolute path")
            load_file(path)  # a broken list is a configuration error now, not a quiet scan later


FAMILY = Family("connections", __doc__ or "", ConnectionsConfig)


@dataclass(frozen=True)
class Catalogue:
    """data/connections/connections.toml, read once."""

    pool_ports: dict[int, str]
    web_servers: tuple[str, ...]
    raw_known: tuple[str, ...]
    databases: tuple[str, ...]


@cache
def catalogue() -> Catalogue:
    """The shipped data of this family."""
    data = load_toml("connections/connections.toml")
    return Catalogue({int(e["port"]): str(e["reason"]) for e in data["pool_port"]},
                     tuple(str(n) for n in data["web_server"]["names"]),
                     tuple(str(n) for n in data["raw_socket"]["known"]),
                     tuple(str(n) for n in data["database"]["names"]))


def collect_iocs(host: Host, scan_time: dt.datetime, cfg: ConnectionsConfig) -> IocSet:
    """The shipped lists and the owner's, without the entries expired at the scan's date."""
    entries = list(shipped())
    for path in cfg.ioc_lists:
        entries.extend(load_file(path))
    return IocSet.build(entries, scan_time.date())


IOCS: Fact[IocSet] = Fact("iocs", collect_iocs, inputs=(SCAN_TIME, config_input("connections")))


def _program(c: Connection | RawSocket) -> str:
    return c.exe or c.process or "unknown process"


def _target(c: Connection) -> dict[str, object]:
    """The problem's key: who talks to which address and port (never the pid or an ephemeral port).

    An outbound connection is keyed by the remote port it was made to (the local one is ephemeral). An
    inbound one is keyed by this host's service port the peer reached, with ``direction``: the peer's
    port is ephemeral, so keying on it would give the same problem a new fingerprint on every
    reconnection (and baselines, suppression and "new since last scan" would never hold).
    """
    if c.inbound:
        return {"kind": "ip", "address": c.remote_address, "port": c.local_port, "proto": c.proto,
                "program": _program(c), "direction": "inbound"}
    return {"kind": "ip", "address": c.remote_address, "port": c.remote_port, "proto": c.proto,
            "program": _program(c)}


def _kill_fix(summary: str, pid: int | None, create_time: float, exe: str | None, why: str) -> Remediation:
    """Kill the process (hostguard's audited kill re-checks start time and executable), or say why not."""
    if pid is None:
        return Remediation.by_hand(summary, "The socket's owner could not be seen (run the scan as root), so there "
                                            "is no process to name.")
    args = [("pid", str(pid)), ("start_time", f"{create_time:.2f}")]
    if exe:
        args.append(("exe", exe))
    return Remediation(f"{summary} {why}", steps=(Action("kill", tuple(args)),))


def _who(c: Connection | RawSocket) -> str:
    return f"{c.process} (pid {c.pid})" if c.process else "an unseen process"


@check(id="connections.ioc_address", severity="high", summary="Connection to an address on an IOC list",
       needs=(CONNECTIONS, IOCS), each=CONNECTIONS, tags=("T1071", "T1105"))
def ioc_address(c: Connection, ctx: Context) -> Iterator[Finding]:
    """A process is connected to an IP address (or a network) that an IOC list names: a command-and-control
    server, a known attacker or a mining pool. Both directions count (a known attacker logged in is as bad
    as a trojan calling home), and so does loopback, because the owner chose the list."""
    ioc = ctx.fact(IOCS).match_ip(c.remote_address)
    if ioc is None:
        return
    summary = (f"Find out what {_program(c)} is and how it started, then stop it; remove what starts it "
               "(persistence findings name the cron entries and units).")
    yield ctx.finding(f"{_who(c)} is connected to {c.remote_address}:{c.remote_port}, listed as an IOC"
                      f"{f' ({ioc.comment})' if ioc.comment else ''}", _target(c),
                      evidence={**c.describe(), "ioc": ioc.describe()},
                      remediation=_kill_fix(summary, c.pid, c.create_time, c.exe,
                                            "Killing it cuts the connection now."))


@check(id="connections.pool_port", severity="medium", summary="Outbound connection to a mining pool port",
       needs=(CONNECTIONS,), each=CONNECTIONS, tags=("T1496",))
def pool_port(c: Connection, ctx: Context) -> Iterator[Finding]:
    """A process made a connection to another machine on a port mining pools use (3333, 5555, 7777, …:
    data/connections/connections.toml says why each is listed). Connections this host accepted, and
    connections to loopback (a local mining proxy, a developer's service) are not counted."""
    reason = catalogue().pool_ports.get(c.remote_port)
    if reason is None or c.inbound or c.remote_loopback:
        return
    yield ctx.finding(f"{_who(c)} connects to {c.remote_address}:{c.remote_port}, a mining pool port",
                      _target(c), evidence={**c.describe(), "port_reason": reason},
                      remediation=_kill_fix(f"Check whether {_program(c)} is a miner (its command line, its CPU use, "
                                            "whether a package installed it); if it is not yours, stop it and "
                                            "remove what starts it.", c.pid, c.create_time, c.exe,
                                            "Killing it stops the mining now."))


def _named(c: Connection, globs: tuple[str, ...]) -> bool:
    """True when the process name or argv[0]'s base name matches one of ``globs`` (nginx workers and
    PostgreSQL back ends rename argv[0]: "nginx: worker process", "postgres: walreceiver")."""
    names = [c.process or ""]
    if c.cmdline and c.cmdline[0].strip():
        names.append(os.path.basename(c.cmdline[0].split()[0]).rstrip(":"))
    return any(fnmatchcase(n, g) for n in names if n for g in globs)


def is_web_server(c: Connection) -> bool:
    """True for a web server's or PHP worker's process."""
    return _named(c, catalogue().web_servers)


@check(id="connections.web_outbound", severity="medium",
       summary="Web server process connecting to an unusual port on another machine",
       needs=(CONNECTIONS,), each=CONNECTIONS, tags=("T1505.003", "T1071"))
def web_outbound(c: Connection, ctx: Context) -> Iterator[Finding]:
    """nginx, Apache and PHP-FPM workers answer requests and call their back ends (databases, caches,
    mail, DNS, web APIs). A connection they make to another port on another machine is how a webshell
    opens a reverse shell or a proxy for its operator. Allowed remote ports: ``[connections]
    web_allowed_ports``; loopback back ends are never counted."""
    cfg = ctx.config[ConnectionsConfig]
    if c.inbound or c.remote_loopback or c.remote_port in cfg.web_allowed_ports or not is_web_server(c):
        return
    yield ctx.finding(f"Web server process {_who(c)} connects to {c.remote_address}:{c.remote_port}", _target(c),
                      evidence=c.describe(), remediation=Remediation.by_hand(
                          f"Find what in {c.process} opened this connection: a proxy_pass/ProxyPass or PHP "
                          f"application calling a back end on port {c.remote_port}, or a webshell (look for "
                          "recently changed files in the web roots). If the back end is yours, add "
                          f"{c.remote_port} to `web_allowed_ports` under [connections] in "
                          f"{ctx.config.path or DEFAULT_PATH}.",
                          "Only you know whether this back end is yours; killing a web server worker would only "
                          "make its master start another."))


@check(id="connections.database_outbound", severity="medium",
       summary="Database or cache server connecting to an unusual port on another machine",
       needs=(CONNECTIONS,), each=CONNECTIONS, tags=("T1190", "T1071"))
def database_outbound(c: Connection, ctx: Context) -> Iterator[Finding]:
    """MariaDB, PostgreSQL, Redis, MongoDB and memcached answer their clients; the only connections they
    make themselves are a replica's to its primary (on the database's own port) and name lookups. A
    connection to another port on another machine is how an exploited database talks to its operator: a
    Redis turned into a replica of an attacker's server to load a module, a ``COPY ... PROGRAM`` reverse
    shell. Allowed remote ports: ``[connections] database_allowed_ports``; loopback is never counted."""
    cfg = ctx.config[ConnectionsConfig]
    if c.inbound or c.remote_loopback or c.remote_port in cfg.database_allowed_ports or \
            not _named(c, catalogue().databases):
        return
    yield ctx.finding(f"Database process {_who(c)} connects to {c.remote_address}:{c.remote_port}", _target(c),
                      evidence=c.describe(), remediation=Remediation.by_hand(
                          f"Find why {c.process} connects to {c.remote_address}:{c.remote_port}: a replication "
                          "or federation link you set up (then add the port to `database_allowed_ports` under "
                          f"[connections] in {ctx.config.path or DEFAULT_PATH}), or an exploited server (Redis: "
                          "`CONFIG GET replicaof`/`INFO replication` and `MODULE LIST`; PostgreSQL: its log for "
                          "`COPY ... PROGRAM`). Then close what let it in: a password, a bind to loopback.",
                          "Restarting or stopping a database is the owner's decision (clients and replicas "
                          "depend on it), so hostguard does not kill it."))


@check(id="connections.raw_socket", severity="medium",
       summary="Packet or raw socket held by a program not known to need one",
       needs=(RAW_SOCKETS,), each=RAW_SOCKETS, tags=("T1040", "T1205"))
def raw_socket(s: RawSocket, ctx: Context) -> Iterator[Finding]:
    """A packet socket sees every frame on an interface (passwords in clear-text protocols, other hosts'
    traffic); a raw socket can forge packets or wait for a magic packet (port-knocking backdoors). DHCP
    clients, network managers, capture tools and routing daemons hold them for a living
    (data/connections/connections.toml, and ``[connections] raw_socket_allowed``); any other holder is
    reported."""
    allowed = (*catalogue().raw_known, *ctx.config[ConnectionsConfig].raw_socket_allowed)
    if s.program in allowed:
        return
    yield ctx.finding(f"{s.program} (pid {s.pid}) holds a {s.kind} socket ({s.family}, protocol {s.protocol})",
                      {"kind": "process", "program": _program(s), "socket": s.kind},
                      evidence=s.describe(),
                      remediation=_kill_fix(f"Find out what {_program(s)} is and why it sniffs or forges packets; "
                                            "if it is a tool of yours, add its name to `raw_socket_allowed` under "
                                            f"[connections] in {ctx.config.path or DEFAULT_PATH}.",
                                            s.pid, s.create_time, s.exe, "If it is not yours, kill it."))


@check(id="connections.ioc_expired", severity="info", summary="IOC list entry past its expiry date",
       needs=(IOCS,))
def ioc_expired(ctx: Context) -> Iterator[Finding]:
    """IOC lists go stale (addresses are reassigned, domains change hands), so an entry with an ``expiry``
    is ignored after that date. Each ignored entry is named here, so "nothing matched" never hides "the
    list no longer counts": renew the entry or delete it."""
    for note in ctx.fact(IOCS).notes:
        where, _, text = note.partition(": ")
        path, _, line = where.rpartition(":")
        target: dict[str, object] = {"kind": "config", "path": path or where}
        if line.isdigit():
            target["line"] = int(line)
        yield ctx.finding(f"IOC list entry ignored: {text}", target, evidence={"note": note},
                          remediation=Remediation.by_hand(
                              f"Renew the entry's `expiry` in {path or where} if it still holds, or delete it.",
                              "Only you (or the list's source) know whether the indicator is still bad."))
