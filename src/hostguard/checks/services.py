"""Databases, caches and FTP servers exposed by their own configuration.

Under ``--root`` there are no sockets, yet "databases and FTP only from chosen sources" must be answered:
each service's configuration is read the way the service reads it (``host/services``), giving where it
listens at boot and what a client from the network must present. A service on a network address that asks
for nothing (Redis without a password or protected mode, a PostgreSQL ``trust`` line for remote sources,
MongoDB without authorization, memcached, Elasticsearch without security, anonymous FTP) is critical;
one that takes passwords in clear text or stores them weakly (FTP without TLS, pg ``password``/``md5``) is
medium. Every finding quotes the lines that decide it. Whether the firewall lets anyone reach the port is
the firewall family's answer (``firewall.service_reachable``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hostguard.engine.context import Context
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding, SkipReason
from hostguard.host.services.common import AuthKind
from hostguard.host.services.configured import SERVICES, Service
from hostguard.remediation import Remediation

FAMILY = Family("services", __doc__ or "")


# How to keep each service to this host, or make it ask for a password (the owner picks and edits the line).
ADVICE = {
    "Redis": "bind it to loopback (`bind 127.0.0.1 -::1`), keep `protected-mode yes`, and set a long "
             "`requirepass` (or an ACL user for the default user)",
    "MariaDB/MySQL": "bind it to loopback (`bind-address = 127.0.0.1`) or the one address clients use, and never "
                     "run with `skip-grant-tables`",
    "PostgreSQL": "keep `listen_addresses` to the addresses clients use and make every non-local pg_hba.conf "
                  "line `scram-sha-256` (never `trust`, `password` or `md5`)",
    "MongoDB": "set `security.authorization: enabled` and bind `net.bindIp` to loopback or the clients' network",
    "Memcached": "bind it to loopback (`-l 127.0.0.1`) and turn UDP off (`-U 0`); memcached has no password "
                 "unless built with SASL (`-S`)",
    "Elasticsearch": "set `xpack.security.enabled: true` and `network.host` to loopback or the cluster's "
                     "network",
    "vsftpd": "set `anonymous_enable=NO`, and `ssl_enable=YES` with `force_local_logins_ssl=YES` (or use SFTP "
              "over SSH instead)",
    "proftpd": "remove the `<Anonymous>` section, and require TLS (`TLSEngine on`, `TLSRequired on`) or use SFTP",
}


def services(ctx: Context) -> Iterator[Service]:
    """Every configured service; one whose configuration could not be read is said in ``skipped``."""
    found = ctx.fact(SERVICES)
    for name, why in found.problems:
        ctx.skip(SkipReason.ERROR, why, name)
    yield from found.services


def _evidence(service: Service) -> dict[str, Any]:
    return {"service": service.name, "config": service.config,
            "listens": [f"{item.label()} ({item.scope}, {item.where})" for item in service.listening.listens],
            "auth": str(service.auth.kind), "why": service.auth.detail,
            "decided_by": [str(w) for w in service.auth.where], "notes": list(service.notes)}


def _target(service: Service) -> dict[str, str]:
    return {"kind": "config", "path": service.config, "service": service.name}


def _fix(service: Service) -> Remediation:
    lines = ", ".join(str(w) for w in (*service.auth.where, *(i.where for i in service.listening.network))
                      if w.path) or service.config
    return Remediation.by_hand(
        f"Keep {service.name} to this host or make it ask for a password",
        f"{ADVICE.get(service.name, 'bind it to loopback and require authentication')}. The deciding lines: "
        f"{lines}. Which addresses must reach it is yours to say; then restart it and check that its clients "
        "still connect (and close the port in the firewall to anyone else).")


@check(id="services.open_without_auth", severity="critical",
       summary="Database, cache or FTP server on a network address that asks for nothing",
       needs=(SERVICES,), tags=("T1190", "T1078"))
def open_without_auth(ctx: Context) -> Iterator[Finding]:
    """A service whose configuration binds it to a network address (every interface, or a chosen non-loopback
    one) and lets a client in without a password: Redis with no password and protected mode off, MariaDB with
    skip-grant-tables, a pg_hba ``trust`` line for remote sources, MongoDB without authorization, memcached,
    Elasticsearch without security, anonymous FTP. Loopback and unix sockets only are quiet."""
    for service in services(ctx):
        if service.listening.network and service.auth.kind == AuthKind.NONE:
            where = ", ".join(i.label() for i in service.listening.network)
            yield ctx.finding(f"{service.name} listens on {where} and {service.auth.detail}", _target(service),
                              evidence=_evidence(service), remediation=_fix(service))


@check(id="services.weak_auth", severity="medium",
       summary="Service on a network address taking passwords in clear text or storing them weakly",
       needs=(SERVICES,), tags=("T1040", "T1110"))
def weak_auth(ctx: Context) -> Iterator[Finding]:
    """A service on a network address whose logins can be sniffed or whose stored passwords are weak: FTP
    without TLS (every system account's password crosses the network in clear), PostgreSQL ``password`` or
    ``md5`` lines for remote sources."""
    for service in services(ctx):
        if service.listening.network and service.auth.kind == AuthKind.WEAK:
            where = ", ".join(i.label() for i in service.listening.network)
            yield ctx.finding(f"{service.name} on {where}: {service.auth.detail}", _target(service),
                              evidence=_evidence(service), remediation=_fix(service))
