"""Open ports: every listening socket compared with the allowed list; databases and FTP exposed.

A listening program is named by what it is, not by its port: its executable, the package that installed
it, what an interpreter runs, then its process name (data/ports/services.toml). A program none of these
name that listens on a database's usual port is "an unknown service on Redis's port", with a fix that
fits any program, never Redis's.

These checks are the fallback for hosts whose firewall cannot be read (nft or iptables unreadable, not
root): where it can, the firewall family reports each port with who can reach it, and these stay quiet
so that one open port is one finding.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from typing import TYPE_CHECKING, Literal

from hostguard.config import DEFAULT_PATH, build_section, setting
from hostguard.data import load_toml
from hostguard.engine.context import Context
from hostguard.engine.facts import Fact, config_input
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding
from hostguard.host.firewall import FIREWALL
from hostguard.host.packages import EXE_OWNERS, FileOwners
from hostguard.host.processes import UNKNOWN_PROCESS, Interpreter, Program, program_of
from hostguard.host.sockets import LISTENERS, Listener
from hostguard.remediation import Remediation

if TYPE_CHECKING:
    from hostguard.host.base import Host
    from hostguard.host.firewall import FirewallFacts


@dataclass(frozen=True)
class ServiceSpec:
    """A service that belongs on loopback, and what names it (see data/ports/services.toml)."""

    name: str
    fix: str
    processes: tuple[str, ...] = ()
    executables: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    scripts: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for port in self.ports:
            if not 0 < port < 65536:
                raise ValueError(f"{self.name}: {port} is not a port number")
        for kind in ("processes", "executables", "packages", "scripts"):
            if any(not p for p in getattr(self, kind)):
                raise ValueError(f"{self.name}: an empty entry in {kind} matches nothing")


@dataclass(frozen=True)
class PortsConfig:
    """[ports]: which ports anyone may reach, and which services must stay local."""

    allowed: tuple[int | str, ...] = setting(("ssh", 80, 443), 'Ports anyone may reach. "ssh" stands for whatever '
                                                               "ports sshd listens on.")
    extra_services: tuple[ServiceSpec, ...] = setting(
        (), "Services that should listen on loopback (or a unix socket) only, beyond data/ports/services.toml: "
            "[[ports.extra_services]] with name, fix, and what names it: processes, executables, packages, "
            "scripts = [...] (globs but processes), ports = [...].")

    def __post_init__(self) -> None:
        for port in self.allowed:
            if isinstance(port, str) and port != "ssh" and not port.isdigit():
                raise ValueError(f'allowed: {port!r} is neither a port number nor "ssh"')
            if isinstance(port, int) and not 0 < port < 65536:
                raise ValueError(f"allowed: {port} is not a port number")


FAMILY = Family("ports", __doc__ or "", PortsConfig)

MatchedBy = Literal["executable", "package", "script", "name", "port"]


@dataclass(frozen=True)
class Catalogue:
    """The shipped data: the services, the generic fix for an unknown program, the interpreters."""

    services: tuple[ServiceSpec, ...]
    unknown_fix: str
    interpreters: tuple[Interpreter, ...]


@cache
def catalogue() -> Catalogue:
    """data/ports/services.toml, read and checked once."""
    data = load_toml("ports/services.toml")
    return Catalogue(
        tuple(build_section(ServiceSpec, e, f"services.toml service {i}") for i, e in enumerate(data["service"], 1)),
        str(data["unknown_fix"]),
        tuple(build_section(Interpreter, e, f"services.toml interpreter {i}")
              for i, e in enumerate(data["interpreter"], 1)))


def known_services() -> tuple[ServiceSpec, ...]:
    """The shipped list (data/ports/services.toml)."""
    return catalogue().services


@dataclass(frozen=True)
class ServiceMatch:
    """The service a listener was named as, and by what; ``by == "port"`` means only its port number fits."""

    service: ServiceSpec
    by: MatchedBy
    program: str              # what runs, as a person names it: "python3 -m http.server", "redis-server"
    package: str | None = None

    @property
    def confirmed(self) -> bool:
        """True when the program itself was recognised, not merely its port number."""
        return self.by != "port"

    def display_name(self, port: int) -> str:
        """"Redis", or "an unknown service (python3 -m http.server) on Redis's port 6379"."""
        if self.confirmed:
            return self.service.name
        return f"{unknown_service(self.program)} on {self.service.name}'s port {port}"

    @property
    def fix(self) -> str:
        """The service's own fix once recognised; otherwise one that fits any program."""
        return self.service.fix if self.confirmed else catalogue().unknown_fix

    def evidence(self) -> dict[str, object]:
        """How it was named: by what, and (by port only) whose port it is."""
        ev: dict[str, object] = {"service": self.service.name if self.confirmed else None, "identified_by": self.by,
                                 "program": self.program}
        if self.package:
            ev["package"] = self.package
        if not self.confirmed:
            ev["usual_port_of"] = self.service.name
        return ev


def unknown_service(program: str) -> str:
    """"an unknown service (python3 -m http.server)", without the parenthesis when nothing is known."""
    return "an unknown service" if program == UNKNOWN_PROCESS else f"an unknown service ({program})"


def _globs(value: str | None, patterns: Iterable[str]) -> bool:
    return bool(value) and any(fnmatchcase(value or "", p) for p in patterns)


def identify(program: Program, package: str | None, port: int, proto: str,
             services: Iterable[ServiceSpec]) -> ServiceMatch | None:
    """The service ``program`` is, strongest evidence first: executable, package, script, name; else the
    first service whose TCP port it listens on (an unconfirmed match), else None."""
    services = tuple(services)
    exe = program.exe
    script = program.script
    stages: tuple[tuple[MatchedBy, Callable[[ServiceSpec], bool]], ...] = (
        ("executable", lambda s: bool(exe) and (os.path.basename(exe or "") in s.processes
                                                or _globs(exe, s.executables))),
        ("package", lambda s: _globs(package, s.packages)),
        ("script", lambda s: _globs(script, s.scripts) or _globs(os.path.basename(script or ""), s.scripts)),
        ("name", lambda s: any(n in s.processes for n in program.names)),
    )
    for by, matches in stages:
        for svc in services:
            if matches(svc):
                return ServiceMatch(svc, by, program.label, package)
    if proto == "tcp":
        for svc in services:
            if port in svc.ports:
                return ServiceMatch(svc, "port", program.label, package)
    return None


@dataclass(frozen=True)
class ListenerServices:
    """The service of every listening socket, named once per scan (the ports and firewall families share it)."""

    by_socket: Mapping[tuple[str, str, int], ServiceMatch | None] = field(default_factory=dict)
    extra: tuple[ServiceSpec, ...] = ()

    def at(self, proto: str, address: str, port: int, process: str | None = None) -> ServiceMatch | None:
        """The service of the socket at (proto, address, port); a port with no local listener (published by
        DNAT to another machine) can only be matched by its number."""
        key = (proto, address, port)
        if key in self.by_socket:
            return self.by_socket[key]
        program = program_of(process, None, (), catalogue().interpreters)
        return identify(program, None, port, proto, (*known_services(), *self.extra))


def collect_listener_services(host: Host, listeners: tuple[Listener, ...], owners: FileOwners | None,
                              cfg: PortsConfig) -> ListenerServices:
    """Name each listener's service from its process (and its executable's package, when dpkg can say)."""
    cat = catalogue()
    services = (*cat.services, *cfg.extra_services)
    out: dict[tuple[str, str, int], ServiceMatch | None] = {}
    for x in listeners:
        program = program_of(x.process, x.exe, x.cmdline, cat.interpreters)
        package = owners.owner(x.exe) if owners else None
        out[(x.proto, x.address, x.port)] = identify(program, package, x.port, x.proto, services)
    return ListenerServices(out, cfg.extra_services)


LISTENER_SERVICES: Fact[ListenerServices] = Fact(
    "listener_services", collect_listener_services,
    inputs=(LISTENERS, EXE_OWNERS.best_effort, config_input("ports")))


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


def collect_firewall_known(host: Host, firewall: FirewallFacts | None) -> bool:
    """True when the firewall family can say who reaches each port (the ruleset was read, even an empty
    one); False when it could not be read for any reason, and these checks stand in for it."""
    return firewall is not None


FIREWALL_KNOWN: Fact[bool] = Fact("firewall_known", collect_firewall_known, inputs=(FIREWALL.best_effort,))


def _reported_here(x: Listener, ctx: Context) -> bool:
    """Only sockets beyond loopback, and only when the firewall family cannot report them itself."""
    return not x.loopback_only and not ctx.fact(FIREWALL_KNOWN)


@check(id="ports.not_allowed", severity="medium", summary="Port open to the network that is not in the allowed list",
       needs=(LISTENERS, ALLOWED_PORTS, LISTENER_SERVICES, FIREWALL_KNOWN), each=LISTENERS, tags=("T1190",))
def not_allowed(x: Listener, ctx: Context) -> Iterator[Finding]:
    """``netstat -anp`` by hand: every socket listening beyond loopback whose port is not in
    ``ports.allowed`` is an unauthorized open port until you say otherwise (add it to the list, or stop
    the service, or bind it to 127.0.0.1). Reported here only when the firewall cannot be read: otherwise
    firewall.port_reachable reports the port together with who can reach it."""
    if not _reported_here(x, ctx) or x.port in ctx.fact(ALLOWED_PORTS) or \
            ctx.fact(LISTENER_SERVICES).at(x.proto, x.address, x.port, x.process):
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
       summary="Database, cache or FTP service listening on a network address",
       needs=(LISTENERS, ALLOWED_PORTS, LISTENER_SERVICES, FIREWALL_KNOWN), each=LISTENERS, tags=("T1190",))
def exposed_services(x: Listener, ctx: Context) -> Iterator[Finding]:
    """MySQL, PostgreSQL, Redis, MongoDB, Memcached, Elasticsearch and FTP are attacked within minutes when
    reachable; they belong on loopback or a unix socket, or behind a source-restricted firewall rule.

    The service is named from its program (executable, package, script, process name). An unrecognised
    program on such a service's port is reported as "an unknown service on its port" (medium, with a fix
    for any program) unless the port is in ``ports.allowed``. Reported here only when the firewall cannot
    be read: otherwise firewall.service_reachable reports the port together with who can reach it."""
    if not _reported_here(x, ctx):
        return
    match = ctx.fact(LISTENER_SERVICES).at(x.proto, x.address, x.port, x.process)
    if match is None or (not match.confirmed and x.port in ctx.fact(ALLOWED_PORTS)):
        return
    name = match.display_name(x.port)
    evidence = {**x.describe(), **match.evidence()}
    if match.confirmed:
        yield ctx.finding(f"{name} listens on {x.address}:{x.port}/{x.proto} (not only loopback)", x.key(),
                          evidence=evidence, remediation=Remediation.by_hand(
                              f"Make {name} listen on loopback (or a unix socket) only, not {x.address}: "
                              f"{match.fix}",
                              f"hostguard does not parse {name}'s own configuration yet, so it cannot name the "
                              "line that sets its listen address; if remote clients need it, keep it listening "
                              "and allow only their network in the firewall (see firewall.service_reachable)."))
        return
    exe = f" ({x.exe})" if x.exe else ""
    yield ctx.finding(f"{name[0].upper()}{name[1:]} listens on {x.address} (not only loopback)", x.key(),
                      evidence=evidence, severity="medium", remediation=Remediation.by_hand(
                          f"{match.program}{exe} listens on {x.address}:{x.port}/{x.proto}, the port "
                          f"{match.service.name} usually uses. {match.fix} If it must stay reachable, add "
                          f"{x.port} to `allowed` under [ports] in {ctx.config.path or DEFAULT_PATH}.",
                          f"hostguard could not tell what this program is from its executable, package or name; "
                          f"only its port number is {match.service.name}'s, so a {match.service.name} fix would "
                          "be a guess."))
