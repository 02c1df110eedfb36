"""Open ports: every listening socket compared with the allowed list; databases and FTP exposed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache

from hostguard.config import DEFAULT_PATH, build_section, setting
from hostguard.data import load_toml
from hostguard.engine.context import Context
from hostguard.engine.facts import Fact, config_input
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding
from hostguard.host.sockets import LISTENERS, Listener
from hostguard.remediation import Remediation


@dataclass(frozen=True)
class ServiceSpec:
    """A service that belongs on loopback: matched by process name first, then by TCP port."""

    name: str
    fix: str
    processes: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for port in self.ports:
            if not 0 < port < 65536:
                raise ValueError(f"{self.name}: {port} is not a port number")
        if any(not p for p in self.processes):
            raise ValueError(f"{self.name}: an empty process name matches nothing")


@dataclass(frozen=True)
class PortsConfig:
    """[ports]: which ports anyone may reach, and which services must stay local."""

    allowed: tuple[int | str, ...] = setting(("ssh", 80, 443), 'Ports anyone may reach. "ssh" stands for whatever '
                                                               "ports sshd listens on.")
    extra_services: tuple[ServiceSpec, ...] = setting(
        (), "Services that should listen on loopback (or a unix socket) only, beyond data/ports/services.toml: "
            '[[ports.extra_services]] with name, fix, processes = [...], ports = [...].')

    def __post_init__(self) -> None:
        for port in self.allowed:
            if isinstance(port, str) and port != "ssh" and not port.isdigit():
                raise ValueError(f'allowed: {port!r} is neither a port number nor "ssh"')
            if isinstance(port, int) and not 0 < port < 65536:
                raise ValueError(f"allowed: {port} is not a port number")


FAMILY = Family("ports", __doc__ or "", PortsConfig)


@cache
def known_services() -> tuple[ServiceSpec, ...]:
    """The shipped list (data/ports/services.toml)."""
    return tuple(build_section(ServiceSpec, entry, f"services.toml service {i}")
                 for i, entry in enumerate(load_toml("ports/services.toml")["service"], 1))


def exposed_service(process: str | None, port: int, proto: str,
                    extra: Iterable[ServiceSpec] = ()) -> ServiceSpec | None:
    """The database/FTP/cache service a socket belongs to (by process name, then TCP port), if any."""
    services = (*known_services(), *extra)
    for svc in services:
        if process and process in svc.processes:
            return svc
    for svc in services:
        if port in svc.ports and proto == "tcp":
            return svc
    return None


def allowed_ports(listeners: Iterable[Listener], allowed: Iterable[int | str]) -> set[int]:
    """The configured allowed list with "ssh" replaced by the ports sshd listens on."""
    allowed = tuple(allowed)
    ports = {int(p) for p in allowed if isinstance(p, int) or p.isdigit()}
    if "ssh" in allowed:
        ports |= {x.port for x in listeners if x.process == "sshd" and x.proto == "tcp"}
    return ports


def collect_allowed_ports(host: object, listeners: tuple[Listener, ...], cfg: PortsConfig) -> frozenset[int]:
    """The allowed list in force on this host: [ports] allowed with "ssh" made sshd's listening ports."""
    return frozenset(allowed_ports(listeners, cfg.allowed))


ALLOWED_PORTS: Fact[frozenset[int]] = Fact("allowed_ports", collect_allowed_ports,
                                          inputs=(LISTENERS, config_input("ports")))


@check(id="ports.not_allowed", severity="medium", summary="Port open to the network that is not in the allowed list",
       needs=(ALLOWED_PORTS,), each=LISTENERS, tags=("T1190",))
def not_allowed(x: Listener, ctx: Context) -> Iterator[Finding]:
    """``netstat -anp`` by hand: every socket listening beyond loopback whose port is not in
    ``ports.allowed`` is an unauthorized open port until you say otherwise (add it to the list, or stop
    the service, or bind it to 127.0.0.1)."""
    if x.loopback_only or x.port in ctx.fact(ALLOWED_PORTS) or \
            exposed_service(x.process, x.port, x.proto, ctx.config[PortsConfig].extra_services):
        return
    who = f"{x.process} (pid {x.pid})" if x.process else "an unknown process"
    config = ctx.config.path or DEFAULT_PATH
    fix = Remediation.by_hand(
        f"Decide whether {x.proto.upper()} port {x.port} ({x.process or 'unknown process'}) should be open: if it "
        f"must be reachable, add {x.port} to `allowed` under [ports] in {config}; otherwise stop the service or "
        f"make it listen on 127.0.0.1 (or ::1) only.",
        f"Only you know whether {x.process or 'this service'} is meant to be reachable, and hostguard does not "
        "parse its own configuration yet, so it cannot name the line that sets its listen address.")
    yield ctx.finding(f"{x.proto.upper()} port {x.port} on {x.address} is open ({who}) and not in the allowed list",
                      x.key(), evidence=x.describe(), remediation=fix)


@check(id="ports.exposed_service", severity="high",
       summary="Database, cache or FTP service listening on a network address", needs=(LISTENERS,), each=LISTENERS,
       tags=("T1190",))
def exposed_services(x: Listener, ctx: Context) -> Iterator[Finding]:
    """MySQL, PostgreSQL, Redis, MongoDB, Memcached, Elasticsearch and FTP are attacked within minutes when
    reachable; they belong on loopback or a unix socket, or behind a source-restricted firewall rule."""
    if x.loopback_only:
        return
    svc = exposed_service(x.process, x.port, x.proto, ctx.config[PortsConfig].extra_services)
    if svc is None:
        return
    yield ctx.finding(f"{svc.name} listens on {x.address}:{x.port}/{x.proto} (not only loopback)",
                      x.key(), evidence={**x.describe(), "service": svc.name},
                      remediation=Remediation.by_hand(
                          f"Make {svc.name} listen on loopback (or a unix socket) only, not {x.address}: {svc.fix}",
                          f"hostguard does not parse {svc.name}'s own configuration yet, so it cannot name the line "
                          "that sets its listen address; if remote clients need it, keep it listening and allow "
                          "only their network in the firewall (see firewall.service_reachable)."))
