"""Every web server of the host in one fact, with the account that really serves each site.

Each reader (nginx, Apache, Tomcat) is asked separately: one server's broken configuration
is that server's problem (named in ``problems``, reported as not checked) and never hides the others'
sites. On a live host the serving account comes from the running worker processes (an nginx master runs as
root; its workers run as the ``user`` directive says, or as whatever a hand-started nginx was given), and
from the configuration otherwise. A site that hands PHP to a PHP-FPM pool (``fastcgi_pass``, a ``proxy:``
handler) is also served by that pool's account, matched by the pool's ``listen`` address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from hostguard.engine.facts import Fact
from hostguard.host.base import Host, HostError, ProcessInfo
from hostguard.host.processes import PROCESSES
from hostguard.host.web.apache import collect_apache
from hostguard.host.web.model import PhpPool, RunAs, Site, WebServer, Where
from hostguard.host.web.nginx import read_nginx
from hostguard.host.web.php import PHP_FPM
from hostguard.host.web.tomcat import collect_tomcat

# Worker process names per server kind (the kernel's name; nginx workers keep "nginx").
WORKER_NAMES = {"nginx": ("nginx",), "apache": ("apache2", "httpd")}
READERS: dict[str, Callable[[Host], WebServer | None]] = {"nginx": read_nginx, "apache": collect_apache,
                                                          "tomcat": collect_tomcat}


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


def _same_endpoint(backend: str, listen: str) -> bool:
    """Whether a site's PHP back end (``unix:/run/php/x.sock``, ``proxy:unix:/run/php/x.sock|fcgi://…``,
    ``127.0.0.1:9000``, ``fcgi://127.0.0.1:9000``) is the pool listening on ``listen`` (``/run/php/x.sock``,
    ``127.0.0.1:9000``, ``9000``)."""
    target = backend.removeprefix("proxy:").split("|", 1)[0].removeprefix("unix:").removeprefix("fcgi://")
    target = target.rstrip("/")
    if listen.startswith("/"):
        return target == listen
    port = listen.rpartition(":")[2]
    host = listen.rpartition(":")[0] or "127.0.0.1"
    return target in (f"{host}:{port}", f"localhost:{port}" if host in ("127.0.0.1", "0.0.0.0") else "",
                      f"127.0.0.1:{port}" if host in ("0.0.0.0", "[::]", "*") else "")


def _title(proc: ProcessInfo) -> str:
    """The title php-fpm gives its processes (it overwrites argv: ``php-fpm: pool www``, padded)."""
    return " ".join(proc.cmdline).strip()


def fpm_pool_workers(pool: PhpPool, processes: tuple[ProcessInfo, ...] | None) -> tuple[RunAs, ...]:
    """The accounts the running workers of ``pool`` use: processes titled ``php-fpm: pool NAME`` whose master
    (``php-fpm: master process (CONFIG)``) was started from the configuration the pool was read from, so two
    PHP versions' ``www`` pools are never confused. A changed ``user =`` not yet reloaded shows here first."""
    masters = {p.pid: _title(p) for p in processes or () if _title(p).startswith("php-fpm: master process")}
    seen: dict[str, RunAs] = {}
    for proc in processes or ():
        master = masters.get(proc.ppid)
        if (master is None or _title(proc) != f"php-fpm: pool {pool.name}" or not proc.user
                or (pool.config and f"({pool.config})" not in master) or proc.user in seen):
            continue
        seen[proc.user] = RunAs(proc.user, None, "process", pool.where,
                                f"pid {proc.pid} (PHP-FPM pool {pool.name})")
    return tuple(seen.values())


def pool_accounts(site: Site, pools: tuple[PhpPool, ...],
                  processes: tuple[ProcessInfo, ...] | None = None) -> tuple[RunAs, ...]:
    """The accounts of the PHP-FPM pools ``site`` hands PHP to: the running workers' where there are any,
    else the pool's configured ``user``."""
    out: list[RunAs] = []
    for pool in pools:
        if pool.listen and any(_same_endpoint(b, pool.listen) for b in site.php_backends):
            live = fpm_pool_workers(pool, processes)
            if live:
                out.extend(live)
            elif pool.user:
                out.append(RunAs(pool.user, pool.group, "config", pool.where, f"PHP-FPM pool {pool.name}"))
    return tuple(out)


def collect_web_servers(host: Host, processes: tuple[ProcessInfo, ...] | None,
                        pools: tuple[PhpPool, ...] | None) -> WebServers:
    """Each reader's server (None: not installed), the live workers' accounts put first where known, and the
    PHP-FPM pools' accounts of the sites that use them."""
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
        if pools:
            server = replace(server, sites=tuple(replace(s, run_as=(*s.run_as, *pool_accounts(s, pools, processes)))
                                                 for s in server.sites))
        servers.append(server)
    return WebServers(tuple(servers), tuple(problems))


WEB_SERVERS: Fact[WebServers] = Fact("web_servers", collect_web_servers,
                                     inputs=(PROCESSES.best_effort, PHP_FPM.best_effort))
