"""Every web server of the host in one fact, with the account that really serves each site.

Each reader (nginx, Apache; Tomcat as it lands) is asked separately: one server's broken configuration
is that server's problem (named in ``problems``, reported as not checked) and never hides the others'
sites. On a live host the serving account comes from the running worker processes (an nginx master runs as
root; its workers run as the ``user`` directive says, or as whatever a hand-started nginx was given), and
from the configuration otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from hostguard.engine.facts import Fact
from hostguard.host.base import Host, HostError, ProcessInfo
from hostguard.host.processes import PROCESSES
from hostguard.host.web.apache import collect_apache
from hostguard.host.web.model import RunAs, Site, WebServer, Where
from hostguard.host.web.nginx import read_nginx

# Worker process names per server kind (the kernel's name; nginx workers keep "nginx").
WORKER_NAMES = {"nginx": ("nginx",), "apache": ("apache2", "httpd")}
READERS: dict[str, Callable[[Host], WebServer | None]] = {"nginx": read_nginx, "apache": collect_apache}


@dataclass(frozen=True)
class WebServers:
    """The host's web servers, and the ones whose configuration could not be read (kind, why)."""

    servers: tuple[WebServer, ...]
    problems: tuple[tuple[str, str], ...] = ()

    def sites(self) -> list[tuple[WebServer, Site]]:
        """Every site with its server."""
        return [(server, site) for server in self.servers for site in server.sites]


def live_workers(kind: str, processes: tuple[ProcessInfo, ...] | None) -> tuple[RunAs, ...]:
    """The accounts the running workers of ``kind`` use (not root: that is the master), one per account."""
    names = WORKER_NAMES.get(kind, ())
    seen: dict[str, RunAs] = {}
    for proc in processes or ():
        if proc.name in names and proc.user and proc.user != "root" and proc.user not in seen:
            seen[proc.user] = RunAs(proc.user, None, "process", Where(""), f"pid {proc.pid} ({proc.name})")
    return tuple(seen.values())


def collect_web_servers(host: Host, processes: tuple[ProcessInfo, ...] | None) -> WebServers:
    """Each reader's server (None: not installed), the live workers' accounts put first where known."""
    servers: list[WebServer] = []
    problems: list[tuple[str, str]] = []
    for kind, read in READERS.items():
        try:
            server = read(host)
        except HostError as exc:
            problems.append((kind, str(exc)))
            continue
        if server is None:
            continue
        workers = live_workers(kind, processes)
        if workers:
            server = replace(server, run_as=workers,
                             sites=tuple(replace(s, run_as=(*workers, *s.run_as[1:])) for s in server.sites))
        servers.append(server)
    return WebServers(tuple(servers), tuple(problems))


WEB_SERVERS: Fact[WebServers] = Fact("web_servers", collect_web_servers, inputs=(PROCESSES.best_effort,))
