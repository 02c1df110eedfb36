"""Open ports: every listening socket compared with the allowed list; databases and FTP exposed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hostguard.data import load_toml
from hostguard.engine.context import Context
from hostguard.engine.registry import check
from hostguard.findings import Finding
from hostguard.host.sockets import Listener


def exposed_service(process: str | None, port: int, proto: str,
                    extra: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The database/FTP/cache service a socket belongs to (by process name, then TCP port), if any."""
    services = load_toml("services.toml")["service"] + list(extra or [])
    for svc in services:
        if process and process in svc.get("processes", []):
            return svc
    for svc in services:
        if port in svc.get("ports", []) and proto == "tcp":
            return svc
    return None


def allowed_ports(listeners: tuple[Listener, ...], allowed: list[Any]) -> set[int]:
    """The configured allowed list with "ssh" replaced by the ports sshd listens on."""
    ports = {int(p) for p in allowed if isinstance(p, int) or str(p).isdigit()}
    if "ssh" in allowed:
        ports |= {x.port for x in listeners if x.process == "sshd" and x.proto == "tcp"}
    return ports


@check(id="ports.not_allowed", family="ports", severity="medium",
       title="Port open to the network that is not in the allowed list", needs=("listeners",))
def not_allowed(ctx: Context) -> Iterator[Finding]:
    """``netstat -anp`` by hand: every socket listening beyond loopback whose port is not in
    ``ports.allowed`` is an unauthorized open port until you say otherwise (add it to the list, or stop
    the service, or bind it to 127.0.0.1)."""
    listeners: tuple[Listener, ...] = ctx.fact("listeners")
    allowed = allowed_ports(listeners, ctx.config["ports"]["allowed"])
    for x in listeners:
        if x.loopback_only or x.port in allowed or exposed_service(x.process, x.port, x.proto,
                                                                   ctx.config["ports"]["extra_services"]):
            continue
        who = f"{x.process} (pid {x.pid})" if x.process else "an unknown process"
        yield ctx.finding(f"{x.proto.upper()} port {x.port} on {x.address} is open ({who}) and not in the allowed list",
                          x.key(), evidence=x.describe(),
                          remediation=f"If {x.process or 'it'} must be reachable, add {x.port} to [ports] allowed in "
                                      "/etc/hostguard/hostguard.toml; otherwise stop it or bind it to 127.0.0.1.")


@check(id="ports.exposed_service", family="ports", severity="high",
       title="Database, cache or FTP service listening on a network address", needs=("listeners",))
def exposed_services(ctx: Context) -> Iterator[Finding]:
    """MySQL, PostgreSQL, Redis, MongoDB, Memcached, Elasticsearch and FTP are attacked within minutes when
    reachable; they belong on loopback or a unix socket, or behind a source-restricted firewall rule."""
    for x in ctx.fact("listeners"):
        if x.loopback_only:
            continue
        svc = exposed_service(x.process, x.port, x.proto, ctx.config["ports"]["extra_services"])
        if svc is None:
            continue
        yield ctx.finding(f"{svc['name']} listens on {x.address}:{x.port}/{x.proto} (not only loopback)",
                          x.key(), evidence={**x.describe(), "service": svc["name"]}, remediation=svc["fix"])
