"""Naming a listening service from its program, not its port (data/ports/services.toml).

Command lines here are the shapes the real daemons run with (Debian's redis-server is a link to
redis-check-rdb, proftpd rewrites argv[0] into a title, Elasticsearch 7 and 8 start a JVM with a main class
or a module); each hit has a near miss that must not be named. The live test (test_ports_live.py) runs a
real redis-server and a real ``python3 -m http.server``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hostguard.checks.ports import (
    PortsConfig,
    ServiceMatch,
    ServiceSpec,
    catalogue,
    collect_listener_services,
    identify,
)
from hostguard.config import ConfigError
from hostguard.host.base import RootHost
from hostguard.host.packages import FileOwners
from hostguard.host.processes import program_of
from hostguard.host.sockets import Listener
from tests.conftest import make_config


def name(process: str | None, exe: str | None, cmdline: list[str], port: int, package: str | None = None,
         extra: tuple[ServiceSpec, ...] = ()) -> tuple[str, str] | None:
    """(matched by, name shown) for a program listening on TCP ``port``, or None."""
    program = program_of(process, exe, tuple(cmdline), catalogue().interpreters)
    match = identify(program, package, port, "tcp", (*catalogue().services, *extra))
    return (match.by, match.display_name(port)) if match else None


ES = "/usr/share/elasticsearch/jdk/bin/java"


@pytest.mark.parametrize("process, exe, cmdline, port, package, expected", [
    # the case: Python's web server on Redis's port is not Redis
    ("python3", "/usr/bin/python3.11", ["python3", "-m", "http.server", "6379"], 6379, "python3.11-minimal",
     ("port", "an unknown service (python3 -m http.server) on Redis's port 6379")),
    # Debian's redis-server runs as /usr/bin/redis-check-rdb with a rewritten argv, on any port
    ("redis-server", "/usr/bin/redis-check-rdb", ["/usr/bin/redis-server 0.0.0.0:7000", "", ""], 7000,
     "redis-tools", ("executable", "Redis")),
    # a self-built redis-server in /usr/local (no package): by its executable's name
    ("redis-server", "/usr/local/bin/redis-server", ["redis-server *:6380"], 6380, None, ("executable", "Redis")),
    # executable name unknown to the data, package known
    ("mysqld-wrap", "/usr/libexec/mysqld-wrap", ["/usr/libexec/mysqld-wrap"], 3307, "mariadb-server-core",
     ("package", "MySQL/MariaDB")),
    # Elasticsearch 8 on a system JDK: the module/main class names it
    ("java", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
     ["java", "-Xms1g", "--module-path", "/usr/share/elasticsearch/lib", "--add-modules=jdk.net", "-m",
      "org.elasticsearch.server/org.elasticsearch.bootstrap.Elasticsearch"], 9200, "openjdk-17-jre-headless",
     ("script", "Elasticsearch")),
    # Elasticsearch 7 with its bundled JDK: the executable's path names it
    ("java", ES, [ES, "-Xms1g", "-cp", "/usr/share/elasticsearch/lib/*", "org.elasticsearch.bootstrap.Elasticsearch"],
     9200, None, ("executable", "Elasticsearch")),
    # a JVM running something else on 9200 is not Elasticsearch: the -cp value is not its main class
    ("java", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
     ["java", "-cp", "org.elasticsearch.bootstrap.Elasticsearch", "com.example.Main"], 9200, None,
     ("port", "an unknown service (java com.example.Main) on Elasticsearch's port 9200")),
    # proftpd's title: "proftpd: (accepting connections)"; exe unreadable
    ("proftpd", None, ["proftpd: (accepting connections)"], 2121, None, ("name", "FTP")),
    # a Python app whose *argument* names memcached is still a Python app
    ("python3", "/usr/bin/python3.11", ["python3", "/srv/app.py", "--cache", "memcached"], 11211, None,
     ("port", "an unknown service (python3 /srv/app.py) on Memcached's port 11211")),
    ("python3", "/usr/bin/python3.11", ["python3", "-c", "import socket"], 5432, None,
     ("port", "an unknown service (python3 -c …) on PostgreSQL's port 5432")),
    (None, None, [], 27017, None, ("port", "an unknown service on MongoDB's port 27017")),
    # memcached on a port of its own choosing is Memcached; an unknown program on an unknown port is nothing
    ("memcached", "/usr/bin/memcached", ["/usr/bin/memcached", "-p", "11311"], 11311, "memcached",
     ("executable", "Memcached")),
    ("node", "/usr/bin/node", ["node", "-r", "dotenv/config", "server.js"], 8080, "nodejs", None),
])
def test_a_service_is_named_by_its_program(process: str | None, exe: str | None, cmdline: list[str], port: int,
                                           package: str | None, expected: tuple[str, str] | None) -> None:
    assert name(process, exe, cmdline, port, package) == expected


def test_a_port_only_match_carries_no_service_fix() -> None:
    program = program_of("python3", "/usr/bin/python3.11", ("python3", "-m", "http.server"), catalogue().interpreters)
    match = identify(program, None, 6379, "tcp", catalogue().services)
    assert isinstance(match, ServiceMatch) and not match.confirmed
    assert "redis" not in match.fix.lower() and match.fix == catalogue().unknown_fix
    assert match.evidence() == {"service": None, "identified_by": "port", "program": "python3 -m http.server",
                                "usual_port_of": "Redis"}
    # UDP ports never match by number (the service list names TCP ports)
    assert identify(program, None, 6379, "udp", catalogue().services) is None


def test_extra_services_from_the_config_name_by_script(tmp_path: Path) -> None:
    """[[ports.extra_services]] takes the same keys as the shipped list: a Gitea run by a wrapper script."""
    cfg = make_config(ports={"extra_services": [{"name": "Gitea", "fix": "bind it", "scripts": ["*/gitea-run"],
                                                 "ports": [3000]}]})
    extra = cfg[PortsConfig].extra_services
    assert name("bash", "/usr/bin/bash", ["/bin/bash", "/opt/gitea/gitea-run"], 3001, extra=extra) == \
        ("script", "Gitea")
    assert name("bash", "/usr/bin/bash", ["/bin/bash", "/opt/gitea/other"], 3001, extra=extra) is None
    listeners = (Listener("tcp", "0.0.0.0", 3001, (4,), 10, "bash", "/usr/bin/bash", "git",
                          ("/bin/bash", "/opt/gitea/gitea-run")),
                 Listener("tcp", "0.0.0.0", 6379, (4,), 11, "redis-server", "/usr/bin/redis-check-rdb", "redis",
                          ("/usr/bin/redis-server 0.0.0.0:6379",)))
    owners = FileOwners({"/usr/bin/redis-check-rdb": "redis-tools"}, "dpkg")
    services = collect_listener_services(RootHost(str(tmp_path)), listeners, owners, cfg[PortsConfig])
    gitea, redis = services.at("tcp", "0.0.0.0", 3001), services.at("tcp", "0.0.0.0", 6379)
    assert gitea is not None and (gitea.service.name, gitea.by) == ("Gitea", "script")
    assert redis is not None and (redis.service.name, redis.by, redis.package) == ("Redis", "executable",
                                                                                   "redis-tools")
    # a DNAT-published port has no local listener: only its number can be matched
    published = services.at("tcp", "0.0.0.0", 3000)
    assert published is not None and (published.by, published.display_name(3000)) == \
        ("port", "an unknown service on Gitea's port 3000")


@pytest.mark.parametrize("entry, error", [
    ({"name": "x", "fix": "y", "packages": [""]}, "an empty entry in packages matches nothing"),
    ({"name": "x", "fix": "y", "scripts": ["ok", ""]}, "an empty entry in scripts matches nothing"),
])
def test_an_empty_pattern_is_a_config_error(entry: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        make_config(ports={"extra_services": [entry]})
