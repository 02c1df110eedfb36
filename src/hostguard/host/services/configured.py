"""Every configured service in one fact, each read separately: one service's broken configuration is that
service's problem (named in ``problems`` and reported as not checked), never a reason to skip the others."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hostguard.engine.facts import Fact
from hostguard.host.base import Host, HostError
from hostguard.host.services.common import Auth, Listening
from hostguard.host.services.elasticsearch import collect_elasticsearch
from hostguard.host.services.ftp import collect_ftp
from hostguard.host.services.memcached import collect_memcached
from hostguard.host.services.mongodb import collect_mongodb
from hostguard.host.services.mysql import collect_mysql
from hostguard.host.services.postgres import collect_postgres
from hostguard.host.services.redis import collect_redis
from hostguard.host.web.nginx import ConfigText, read_text_of


@dataclass(frozen=True)
class Service:
    """One configured service: its name, main file, where it listens and what a network client presents."""

    name: str
    config: str
    listening: Listening
    auth: Auth
    notes: tuple[str, ...] = ()
    record: Any = field(default=None, compare=False, repr=False)   # the reader's own record (RedisConfig, ...)


@dataclass(frozen=True)
class Services:
    """The configured services, and those whose configuration could not be read (name, why)."""

    services: tuple[Service, ...]
    problems: tuple[tuple[str, str], ...] = ()


READERS: tuple[tuple[str, Callable[[Host], Any]], ...] = (
    ("Redis", collect_redis), ("MariaDB/MySQL", collect_mysql), ("PostgreSQL", collect_postgres),
    ("MongoDB", collect_mongodb), ("Memcached", collect_memcached), ("Elasticsearch", collect_elasticsearch),
    ("FTP", collect_ftp))


def _records(found: Any) -> Iterable[Any]:
    if found is None:
        return ()
    return found if isinstance(found, tuple) else (found,)


def collect_services(host: Host) -> Services:
    """Each reader's records (vsftpd and proftpd name themselves), problems kept apart."""
    out: list[Service] = []
    problems: list[tuple[str, str]] = []
    for name, read in READERS:
        try:
            found = read(host)
        except HostError as exc:
            problems.append((name, str(exc)))
            continue
        for record in _records(found):
            out.append(Service(getattr(record, "server", name), record.config, record.listening, record.auth,
                               tuple(getattr(record, "notes", ())), record))
    return Services(tuple(out), tuple(problems))


SERVICES: Fact[Services] = Fact("services", collect_services)


def _paths_of(service: Service) -> list[str]:
    """Every file a service's deciding values were read from: its main file and includes, the lines its
    listeners and authentication name, pg_hba files and their includes, a Redis ACL file."""
    record = service.record
    paths = [service.config, *getattr(record, "files", ())]
    paths += [w.path for w in service.auth.where if w.path]
    paths += [i.where.path for i in service.listening.listens if i.where.path]
    paths += [line.where.path for line in getattr(record, "hba", ())]
    paths += [opt.where.path for opt in getattr(record, "options", ())]
    aclfile = getattr(record, "aclfile", None)
    if aclfile is not None:
        paths.append(aclfile.value)
    return paths


def collect_service_text(host: Host, found: Services) -> ConfigText:
    """The lines of the services' configuration files as written, for fixes: an
    :class:`~hostguard.remediation.Edit` must name the line as it reads now, and the readers keep only
    file:line. A file that cannot be read again is left out (its fix stays by hand), never an error."""
    files, real = read_text_of(host, [p for s in found.services for p in _paths_of(s)])
    return ConfigText(files, real)


SERVICE_TEXT: Fact[ConfigText] = Fact("service_text", collect_service_text, inputs=(SERVICES,))
