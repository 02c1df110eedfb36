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
