"""The service facts through the fact graph, under ``--root``: one tree with every service configured, one
without any; and a broken file makes the fact fail with its one line, the others still answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostguard.engine.facts import Facts
from hostguard.findings import SkipReason
from hostguard.host.base import Unavailable
from hostguard.host.services.common import AuthKind, Scope
from hostguard.host.services.elasticsearch import ELASTICSEARCH
from hostguard.host.services.ftp import FTP
from hostguard.host.services.memcached import MEMCACHED
from hostguard.host.services.mongodb import MONGODB
from hostguard.host.services.mysql import MYSQL
from hostguard.host.services.postgres import POSTGRES
from hostguard.host.services.redis import REDIS
from tests.conftest import make_config
from tests.host.services.helpers import tree

EVERY_SERVICE = {
    "/etc/redis/redis.conf": "bind 0.0.0.0\nprotected-mode no\n",
    "/etc/mysql/my.cnf": "[mysqld]\nbind-address = 127.0.0.1\n",
    "/var/lib/dpkg/status": "Package: mariadb-server-core\nStatus: install ok installed\nVersion: 1:10.11.6-0+deb12u1\n\n",
    "/etc/postgresql/15/main/postgresql.conf": "listen_addresses = ''\n",
    "/etc/postgresql/15/main/pg_hba.conf": "local all all peer\n",
    "/etc/mongod.conf": "net:\n  bindIp: 192.0.2.7\n",
    "/etc/memcached.conf": "-l 127.0.0.1\n",
    "/etc/elasticsearch/elasticsearch.yml": "xpack.security.enabled: true\n",
    "/etc/vsftpd.conf": "listen=YES\nanonymous_enable=YES\n",
}


def test_every_service_fact_under_root(tmp_path: Path) -> None:
    facts = Facts(tree(tmp_path, EVERY_SERVICE), make_config())
    redis, mysql, mongo = facts.get(REDIS), facts.get(MYSQL), facts.get(MONGODB)
    memcached, elastic = facts.get(MEMCACHED), facts.get(ELASTICSEARCH)
    assert redis is not None and (redis.listening.scope, redis.auth.kind) == (Scope.WILDCARD, AuthKind.NONE)
    assert mysql is not None and mysql.version == "10.11" and mysql.listening.scope is Scope.LOOPBACK
    [pg] = facts.get(POSTGRES)
    assert (pg.listening.scope, pg.auth.kind) == (Scope.NONE, AuthKind.REFUSED)
    assert mongo is not None and (mongo.listening.scope, mongo.auth.kind) == (Scope.ADDRESS, AuthKind.NONE)
    assert memcached is not None and memcached.listening.scope is Scope.LOOPBACK
    assert elastic is not None and elastic.auth.kind is AuthKind.PASSWORD
    [ftp] = facts.get(FTP)
    assert (ftp.server, ftp.listening.scope, ftp.auth.kind) == ("vsftpd", Scope.WILDCARD, AuthKind.NONE)


def test_no_service_installed(tmp_path: Path) -> None:
    facts = Facts(tree(tmp_path, {"/etc/hostname": "h.test\n"}), make_config())
    assert [facts.get(f) for f in (REDIS, MYSQL, MONGODB, MEMCACHED, ELASTICSEARCH)] == [None] * 5
    assert facts.get(POSTGRES) == () and facts.get(FTP) == ()


def test_a_broken_file_fails_only_its_fact(tmp_path: Path) -> None:
    facts = Facts(tree(tmp_path, {**EVERY_SERVICE, "/etc/redis/redis.conf": "port sixty\n"}), make_config())
    with pytest.raises(Unavailable) as err:
        facts.get(REDIS)
    assert err.value.reason is SkipReason.ERROR
    assert err.value.detail == "/etc/redis/redis.conf:1: port must be a port number 0-65535, not 'sixty'"
    assert facts.get(MEMCACHED) is not None
