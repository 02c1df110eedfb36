"""Elasticsearch as ``/etc/elasticsearch/elasticsearch.yml`` makes it at boot: where its HTTP and transport
ports bind and whether security (users and passwords) is on.

Not packaged in Debian 12, so proven on written files only. The bind address of each layer is the first set
of ``<layer>.bind_host``, ``<layer>.host``, ``network.bind_host``, ``network.host``, else ``_local_`` (loopback).
Special values: ``_local_`` (loopback), ``_site_``/``_global_``/``_eth0_`` (chosen non-loopback addresses),
``0.0.0.0``/``::`` (every interface); ``${VAR}`` comes from the environment and is unknown here.

``xpack.security.enabled: false`` leaves the REST API open to anyone who reaches it. When the file does not
say, the answer depends on the version (on by default since 8.0, off before), so it is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostguard.engine.facts import Fact
from hostguard.host.base import Host
from hostguard.host.services.common import (
    Auth,
    AuthKind,
    Listen,
    Listening,
    Scope,
    Setting,
    as_bool,
    classify,
    defaults,
    read_config,
)
from hostguard.host.services.yamlconf import flatten
from hostguard.host.web.model import Where

CONFIG = "/etc/elasticsearch/elasticsearch.yml"
YAML_BOOL = {"true": True, "false": False}


@dataclass(frozen=True)
class ElasticConfig:
    """Elasticsearch's effective bind addresses and security switch, each with its line."""

    config: str
    settings: tuple[tuple[str, Setting], ...]
    http_host: Setting
    transport_host: Setting
    http_port: Setting
    security: Setting | None             # xpack.security.enabled as written; None when unset
    listening: Listening
    auth: Auth
    notes: tuple[str, ...] = ()


def es_scope(value: str) -> Scope:
    """The reach of one Elasticsearch host value (special ``_name_`` values included)."""
    text = value.strip()
    if "${" in text:
        return Scope.UNKNOWN
    if text.startswith("_") and text.endswith("_"):
        return Scope.LOOPBACK if text.startswith("_local") else Scope.ADDRESS
    return classify(text)


def _port(value: str) -> int | None:
    """The first port of ``9200`` or a range ``9200-9300`` (None when it is not a number)."""
    head = value.split("-", 1)[0].strip()
    return int(head) if head.isdigit() and int(head) <= 65535 else None


def parse(host: Host, path: str = CONFIG) -> ElasticConfig | None:
    """The effective settings from ``path``; None when Elasticsearch is not installed (no file)."""
    text = read_config(host, path)
    if text is None:
        return None
    values = flatten(text, path)
    built = defaults("elasticsearch")

    def layer(name: str) -> Setting:
        for key in (f"{name}.bind_host", f"{name}.host", "network.bind_host", "network.host"):
            if key in values:
                return values[key]
        return Setting(built["host"])

    http, transport = layer("http"), layer("transport")
    http_port = values.get("http.port", Setting(built["http-port"]))
    transport_port = values.get("transport.port", Setting("9300"))
    listens: list[Listen] = []
    notes: list[str] = []
    for setting, port in ((http, http_port), (transport, transport_port)):
        number = _port(port.value)
        if number is None:
            notes.append(f"{port.where}: port {port.value!r} is not a number hostguard can read")
        for address in (a.strip() for a in setting.value.split(",")):
            if address:
                listens.append(Listen(address, number, es_scope(address), setting.where))
    security = values.get("xpack.security.enabled")
    if security is None:
        auth = Auth(AuthKind.UNKNOWN, "xpack.security.enabled is not set: on by default from Elasticsearch 8, "
                    "off in 7.x", (Where(path),))
    elif as_bool(security.value, YAML_BOOL, security.where, "xpack.security.enabled"):
        auth = Auth(AuthKind.PASSWORD, "security is enabled: clients must authenticate", (security.where,))
    else:
        auth = Auth(AuthKind.NONE, "security is disabled: the REST API answers anyone", (security.where,))
    return ElasticConfig(path, tuple(sorted(values.items())), http, transport, http_port, security,
                         Listening(tuple(listens)), auth, tuple(notes))


def collect_elasticsearch(host: Host) -> ElasticConfig | None:
    """The Elasticsearch configuration of the host (None when it is not installed)."""
    return parse(host)


ELASTICSEARCH: Fact[ElasticConfig | None] = Fact("elasticsearch_config", collect_elasticsearch)
