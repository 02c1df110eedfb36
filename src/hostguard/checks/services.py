"""Databases, caches and FTP servers exposed by their own configuration.

Under ``--root`` there are no sockets, yet "databases and FTP only from chosen sources" must be answered:
each service's configuration is read the way the service reads it (``host/services``), giving where it
listens at boot and what a client from the network must present. A service on a network address that asks
for nothing (Redis without a password or protected mode, a PostgreSQL ``trust`` line for remote sources,
MongoDB without authorization, memcached, Elasticsearch without security, anonymous FTP) is critical;
one that takes passwords in clear text or stores them weakly (FTP without TLS, pg ``password``/``md5``) is
medium. Every finding quotes the lines that decide it.

Each finding also carries the firewall's answer for the ports the service binds (issue 2's evaluator over
the live ruleset on a host, over the boot-time ruleset under ``--root``): "Redis ... asks for nothing,
reachable from anyone". A firewall that lets nobody in lowers the severity but never silences the finding:
the service still trusts whoever gets to it (this host's containers and users, or anyone after a firewall
change). The live socket itself, named by its process, is the firewall family's finding
(``firewall.service_reachable``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hostguard.config import Config, setting
from hostguard.engine.context import Context
from hostguard.engine.facts import HOST_ID, STATE, Fact
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding, HostId, SkipReason
from hostguard.host.base import Host, HostError, Unavailable
from hostguard.host.exposure import Exposure, exposure_of
from hostguard.host.firewall import FIREWALL, FirewallFacts
from hostguard.host.identity import HOSTNAME
from hostguard.host.services.common import AuthKind, Scope
from hostguard.host.services.configured import SERVICES, Service, Services
from hostguard.passwords.guesses import Guess
from hostguard.probes.base import Endpoint, Prober
from hostguard.probes.mysql import MysqlProber
from hostguard.probes.mysql import lockout_limit as mysql_lockout_limit
from hostguard.probes.postgres import PostgresProber
from hostguard.probes.redis import RedisProber
from hostguard.probes.session import (
    ERROR,
    LOCKED,
    NO_PASSWORD,
    NOT_PROBED,
    OUT_OF_TIME,
    WEAK,
    Limits,
    probe_account,
    service_guesses,
)
from hostguard.remediation import Param, Remediation
from hostguard.store.state import StateStore


@dataclass(frozen=True)
class ServicesConfig:
    """[services]: trying passwords against the local database servers."""

    probe_passwords: bool = setting(True, "Try weak passwords against the local Redis, PostgreSQL and MariaDB/MySQL "
                                          "superusers over their unix socket or loopback (recorded in the state "
                                          "directory, kept below each server's lockout counter).")
    probe_attempts: int = setting(50, "Passwords tried per account and scan at most, the canary included.", min=1)
    probe_rate: float = setting(5.0, "Attempts per second per server at most.", min=0.1)
    probe_seconds: float = setting(60.0, "Seconds the password probes may take in all.", min=0)


FAMILY = Family("services", __doc__ or "", ServicesConfig)


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


# -- the firewall's answer for the ports a service binds ------------------------------------------------

def collect_service_exposure(host: Host, found: Services, firewall: FirewallFacts | None) -> dict[tuple[str, str], Exposure]:
    """(service, config) -> the firewall's answer for its network listeners (loopback and unix ones aside).

    Derived only (the host is read by SERVICES and FIREWALL): the live ruleset on a host, the boot-time one
    under ``--root``; a firewall that cannot be read is "unknown" for every service, never a reason to
    skip the services' own findings."""
    return {(s.name, s.config): exposure_of(firewall, ((i.proto, i.address, i.port) for i in s.listening.network))
            for s in found.services if s.listening.network}


SERVICE_EXPOSURE: Fact[dict[tuple[str, str], Exposure]] = Fact(
    "service_exposure", collect_service_exposure, inputs=(SERVICES, FIREWALL.best_effort))


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


# Severity by the firewall's answer: a firewall that lets nobody in lowers it, never silences it (the service
# still trusts whoever reaches it: this host's containers and users, or anyone after a firewall change).
OPEN_SEVERITY = {"anyone": "critical", "unknown": "critical", "sources": "high", "nobody": "medium"}
WEAK_SEVERITY = {"anyone": "medium", "unknown": "medium", "sources": "medium", "nobody": "low"}


def _exposed(ctx: Context, service: Service) -> Exposure:
    return ctx.fact(SERVICE_EXPOSURE).get((service.name, service.config)) or Exposure("unknown")


def _title(what: str, exposure: Exposure) -> str:
    sep = ", " if exposure.state in ("anyone", "sources") else "; "
    return f"{what}{sep}{exposure.phrase()}"


def _networked(ctx: Context, kind: AuthKind, severities: dict[str, str], title: str) -> Iterator[Finding]:
    """A finding per service on a network address whose authentication is ``kind``, severity by who the
    firewall lets reach it."""
    for service in services(ctx):
        if service.listening.network and service.auth.kind == kind:
            where = ", ".join(i.label() for i in service.listening.network)
            exposure = _exposed(ctx, service)
            yield ctx.finding(_title(title.format(name=service.name, where=where, detail=service.auth.detail),
                                     exposure),
                              _target(service), evidence={**_evidence(service), "firewall": exposure.evidence()},
                              severity=severities[exposure.state], remediation=_fix(service))


@check(id="services.open_without_auth", severity="critical",
       summary="Database, cache or FTP server on a network address that asks for nothing",
       needs=(SERVICES, SERVICE_EXPOSURE), tags=("T1190", "T1078"))
def open_without_auth(ctx: Context) -> Iterator[Finding]:
    """A service whose configuration binds it to a network address (every interface, or a chosen non-loopback
    one) and lets a client in without a password: Redis with no password and protected mode off, MariaDB with
    skip-grant-tables, a pg_hba ``trust`` line for remote sources, MongoDB without authorization, memcached,
    Elasticsearch without security, anonymous FTP. Loopback and unix sockets only are quiet. Critical when
    the firewall (live, or the boot-time ruleset under ``--root``) lets anyone reach it or cannot say; high
    when only chosen networks; medium when it lets nobody in (the service still trusts whoever gets to it)."""
    yield from _networked(ctx, AuthKind.NONE, OPEN_SEVERITY, "{name} listens on {where} and {detail}")


@check(id="services.weak_auth", severity="medium",
       summary="Service on a network address taking passwords in clear text or storing them weakly",
       needs=(SERVICES, SERVICE_EXPOSURE), tags=("T1040", "T1110"))
def weak_auth(ctx: Context) -> Iterator[Finding]:
    """A service on a network address whose logins can be sniffed or whose stored passwords are weak: FTP
    without TLS (every system account's password crosses the network in clear), PostgreSQL ``password`` or
    ``md5`` lines for remote sources. Low when the firewall lets nobody reach it."""
    yield from _networked(ctx, AuthKind.WEAK, WEAK_SEVERITY, "{name} on {where}: {detail}")


# -- weak passwords, tried against the local servers (active probes) ----------------------------------------

@dataclass(frozen=True)
class ProbeStore:
    """Where probe sessions are recorded (their failures count against each server's lockout counter)."""

    store: StateStore
    host_key: str


def collect_probe_store(host: Host, state: StateStore | None, host_id: HostId | None) -> ProbeStore:
    """The state store to record probes in; probes need the running services and that record."""
    if not host.live:
        raise Unavailable(SkipReason.LIVE_ONLY, "passwords are tried against running services only")
    if state is None or host_id is None:
        raise Unavailable(SkipReason.UNSUPPORTED, "no state directory: probes must be recorded (their failures "
                                                  "count against the servers' lockout counters)")
    return ProbeStore(state, host_id.id)


PROBE_STORE: Fact[ProbeStore] = Fact("probe_store", collect_probe_store,
                                     inputs=(STATE.best_effort, HOST_ID.best_effort))

# The account each server always has (its superuser): the one worth guessing.
SUPERUSERS = {"Redis": "default", "PostgreSQL": "postgres", "MariaDB/MySQL": "root"}


def endpoint_of(service: Service) -> Endpoint | None:
    """This host's own way in to ``service``: its unix socket, else loopback on its port (never another
    address: probes only talk to this host)."""
    listens = service.listening.listens
    for item in listens:
        if item.proto == "unix" or (item.port is None and item.address.startswith("/")):
            return Endpoint.unix(item.address)
    for item in listens:
        if item.port and item.scope in (Scope.LOOPBACK, Scope.WILDCARD):
            host = "::1" if item.address.strip("[]") == "::1" else "127.0.0.1"
            return Endpoint.tcp(host, item.port)
    return None


def _prober(service: Service, endpoint: Endpoint) -> Prober | None:
    if service.name == "Redis":
        return RedisProber(endpoint)
    if service.name == "PostgreSQL":
        return PostgresProber(endpoint)
    if service.name == "MariaDB/MySQL":
        return MysqlProber(endpoint, lockout_limit=mysql_lockout_limit(service.record))
    return None


def _probe_budget(config: Config) -> float:
    return config[ServicesConfig].probe_seconds


@check(id="services.weak_password", severity="high",
       summary="Local database or cache server with a guessable password, or none checked",
       needs=(SERVICES, PROBE_STORE, HOSTNAME), budget=_probe_budget, tags=("T1110.001",))
def weak_password(ctx: Context) -> Iterator[Finding]:
    """Tries passwords against the superuser of the local Redis (``default``), PostgreSQL (``postgres``) and
    MariaDB/MySQL (``root``), over their unix socket or loopback only, live. A long random password goes
    first: accepted means the server checks no password for that account (``trust``, ``unix_socket``, Redis
    without ``requirepass``), reported as that. Then the service's default credentials, empty, the names, and
    the common list, stopping at the first hit; at most ``[services] probe_attempts`` per account and scan,
    ``probe_rate`` per second, and below MariaDB's ``max_password_errors`` counting earlier scans' failures
    (every session is recorded in the state). The whole check stays within ``probe_seconds``: a session that
    would run past it ends between two attempts (said in ``skipped``), and a progress bar counts the attempts.
    A found password is never shown."""
    cfg = ctx.config[ServicesConfig]
    if not cfg.probe_passwords:
        return
    recorder = ctx.fact(PROBE_STORE)
    limits = Limits(per_account=cfg.probe_attempts, per_second=cfg.probe_rate)
    planned: list[tuple[Service, str, Prober, list[Guess]]] = []
    for service in services(ctx):
        account = SUPERUSERS.get(service.name)
        if account is None:
            continue
        try:
            endpoint = endpoint_of(service)
        except HostError as exc:
            ctx.skip(SkipReason.UNSUPPORTED, f"{service.name}: {exc}", service.config)
            continue
        prober = _prober(service, endpoint) if endpoint is not None else None
        if prober is not None:
            planned.append((service, account, prober, service_guesses(prober.service, account, ctx.fact(HOSTNAME))))
    total = sum(min(limits.per_account, len(guesses) + 1) for *_, guesses in planned)
    tried = 0

    def attempted() -> None:
        nonlocal tried
        tried += 1
        ctx.progress(tried, total)

    for service, account, prober, guesses in planned:
        if ctx.time_left() <= 0:
            ctx.skip(SkipReason.BUDGET, f"{service.name}: not tried (services.probe_seconds spent)", service.config)
            continue
        result = probe_account(prober, account, guesses, limits, store=recorder.store, host_key=recorder.host_key,
                               deadline=ctx.deadline, attempted=attempted)
        evidence = {"service": service.name, "endpoint": result.endpoint, "account": account,
                    "attempts": result.attempts, "config": service.config}
        if result.outcome == WEAK:
            yield ctx.finding(f"{service.name} account '{account}' has a guessable password ({result.source})",
                              {"kind": "user", "user": account, "service": service.name},
                              severity="critical", evidence={**evidence, "matched": result.source, "rank": result.rank},
                              remediation=_password_fix(service, account))
        elif result.outcome == NO_PASSWORD:
            yield ctx.finding(f"{service.name} lets '{account}' in over {result.endpoint} without checking a password",
                              {"kind": "user", "user": account, "service": service.name, "password": "none"},
                              severity="medium", evidence={**evidence, "detail": result.detail},
                              remediation=_password_fix(service, account))
        elif result.outcome == OUT_OF_TIME:
            ctx.skip(SkipReason.BUDGET, f"{service.name} '{account}' at {result.endpoint}: {result.attempts} "
                                        "passwords tried, none accepted, then services.probe_seconds ran out",
                     service.config)
        elif result.outcome == ERROR and result.detail.startswith("connection failed"):
            ctx.skip(SkipReason.UNSUPPORTED, f"{service.name} is not running (nothing answers at {result.endpoint}): "
                                             "its password is not tried", service.config)
        elif result.outcome in (ERROR, LOCKED, NOT_PROBED):
            ctx.skip(SkipReason.UNSUPPORTED if result.outcome != ERROR else SkipReason.ERROR,
                     f"{service.name} '{account}' at {result.endpoint}: {result.outcome}: {result.detail}",
                     service.config)


PASSWORD_FIXES = {
    "Redis": "set `requirepass` to a long random password in {config} (or give the default user one with an ACL), "
             "then restart Redis and update its clients",
    "PostgreSQL": "`ALTER ROLE {account} PASSWORD '…'` from psql (with password_encryption = scram-sha-256), and "
                  "make pg_hba.conf ask for it (`scram-sha-256`, or `peer` for local admin logins)",
    "MariaDB/MySQL": "`ALTER USER '{account}'@'localhost' IDENTIFIED BY '…'` (or `IDENTIFIED VIA unix_socket` for root, "
                     "Debian's default), then check the applications that log in with it",
}


def _password_fix(service: Service, account: str) -> Remediation:
    return Remediation.by_hand(
        f"Give {service.name}'s '{account}' a long password (or local-socket-only authentication)",
        PASSWORD_FIXES[service.name].format(config=service.config, account=account)
        + ". Only you can choose the password and know which clients use it.",
        Param("password", "the new password, stored where its clients read it", "32 random characters"))
