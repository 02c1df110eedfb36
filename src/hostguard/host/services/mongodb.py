"""MongoDB as ``/etc/mongod.conf`` makes it at boot: where mongod listens and whether it checks users.

MongoDB is not packaged in Debian 12, so this reader is proven on written files only (no server here). The
YAML settings read (``net.bindIp`` may also be written as a dotted key):

* ``net.bindIp``: comma-separated addresses, host names or unix socket paths (default ``localhost`` since
  3.6); ``net.bindIpAll: true`` binds every interface (``::`` too with ``net.ipv6: true``);
* ``net.port`` (27017); ``net.unixDomainSocket.enabled`` (on) with ``pathPrefix`` (``/tmp``);
* ``security.authorization: enabled`` makes clients log in; so does internal authentication
  (``security.keyFile``, ``security.clusterAuthMode: x509``), which turns authorization on by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostguard.engine.facts import Fact
from hostguard.host.base import Host, HostError
from hostguard.host.services.common import (
    DEFAULT,
    Auth,
    AuthKind,
    Listen,
    Listening,
    Scope,
    Setting,
    as_bool,
    as_port,
    classify,
    defaults,
    one_line,
    read_config,
)
from hostguard.host.services.yamlconf import flatten

CONFIG = "/etc/mongod.conf"
YAML_BOOL = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


@dataclass(frozen=True)
class MongoConfig:
    """mongod's effective network and security settings, each with its line."""

    config: str
    settings: tuple[tuple[str, Setting], ...]
    bind_ip: Setting
    bind_ip_all: Setting
    port: Setting
    authorization: Setting               # "enabled"/"disabled" as mongod will behave
    listening: Listening
    auth: Auth
    notes: tuple[str, ...] = ()


def parse(host: Host, path: str = CONFIG) -> MongoConfig | None:
    """The effective settings from ``path``; None when MongoDB is not installed (no file)."""
    text = read_config(host, path)
    if text is None:
        return None
    values = flatten(text, path)
    built = defaults("mongodb")
    bind = values.get("net.bindIp", Setting(built["bindIp"]))
    bind_all = values.get("net.bindIpAll", Setting("false"))
    all_on = as_bool(bind_all.value, YAML_BOOL, bind_all.where, "net.bindIpAll")
    if all_on and "net.bindIp" in values:
        raise HostError(f"{bind_all.where}: net.bindIp and net.bindIpAll cannot both be set (mongod refuses)")
    ipv6 = values.get("net.ipv6", Setting("false"))
    port = values.get("net.port", Setting(built["port"]))
    port_no = as_port(port.value, port.where, "net.port")
    listens: list[Listen] = []
    if all_on:
        listens.append(Listen("0.0.0.0", port_no, Scope.WILDCARD, bind_all.where))
        if as_bool(ipv6.value, YAML_BOOL, ipv6.where, "net.ipv6"):
            listens.append(Listen("::", port_no, Scope.WILDCARD, bind_all.where))
    else:
        for address in (a.strip() for a in bind.value.split(",")):
            if address.startswith("/"):
                listens.append(Listen(address, None, Scope.NONE, bind.where, "unix"))
            elif address:
                listens.append(Listen(address, port_no, classify(address), bind.where))
    sock = values.get("net.unixDomainSocket.enabled", Setting(built["unixDomainSocket"]))
    if as_bool(sock.value, YAML_BOOL, sock.where, "net.unixDomainSocket.enabled"):
        prefix = values.get("net.unixDomainSocket.pathPrefix", Setting("/tmp"))
        listens.append(Listen(f"{prefix.value.rstrip('/')}/mongodb-{port_no}.sock", None, Scope.NONE,
                              prefix.where if prefix.where != DEFAULT else sock.where, "unix"))
    authz = values.get("security.authorization")
    if authz is not None and authz.value not in ("enabled", "disabled"):
        raise HostError(f"{authz.where}: security.authorization must be enabled or disabled, "
                        f"not {one_line(authz.value)!r}")
    internal = values.get("security.keyFile") or (
        values.get("security.clusterAuthMode") if values.get("security.clusterAuthMode", Setting("")).value
        in ("x509", "sendX509", "sendKeyFile") else None)
    if authz is not None and authz.value == "enabled":
        authorization = authz
    elif authz is None and internal is not None:
        authorization = Setting("enabled", internal.where)
    else:
        authorization = authz or Setting(built["authorization"])
    if authorization.value == "enabled":
        auth = Auth(AuthKind.PASSWORD, "authorization is enabled: clients must log in", (authorization.where,))
    else:
        auth = Auth(AuthKind.NONE, "authorization is disabled: any client may read and write every database",
                    (authorization.where,))
    return MongoConfig(path, tuple(sorted(values.items())), bind, bind_all, port, authorization,
                       Listening(tuple(listens)), auth)


def collect_mongodb(host: Host) -> MongoConfig | None:
    """The mongod configuration of the host (None when MongoDB is not installed)."""
    return parse(host)


MONGODB: Fact[MongoConfig | None] = Fact("mongodb_config", collect_mongodb)
