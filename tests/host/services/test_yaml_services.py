"""The MongoDB and Elasticsearch readers on written files (neither is packaged in Debian 12, so no server runs
here): values, lines, defaults, and bad YAML as one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.host.base import HostError
from hostguard.host.services.common import AuthKind, Scope, Setting
from hostguard.host.services.elasticsearch import CONFIG as ES_CONFIG
from hostguard.host.services.elasticsearch import parse as parse_es
from hostguard.host.services.mongodb import CONFIG as MONGO_CONFIG
from hostguard.host.services.mongodb import parse as parse_mongo
from hostguard.host.web.model import Where
from tests.host.services.helpers import tree

MONGO_HIT = """\
# mongod.conf written for this test
storage:
  dbPath: /var/lib/mongodb
net:
  port: 27018
  bindIp: 127.0.0.1,192.0.2.40
security:
  authorization: disabled
"""


def test_mongodb_public_address_without_authorization_is_a_hit(tmp_path: Path) -> None:
    ours = parse_mongo(tree(tmp_path, {MONGO_CONFIG: MONGO_HIT}))
    assert ours is not None
    assert ours.bind_ip == Setting("127.0.0.1,192.0.2.40", Where(MONGO_CONFIG, 6))
    assert [(i.label(), i.scope) for i in ours.listening.listens] == [
        ("tcp 127.0.0.1:27018", Scope.LOOPBACK), ("tcp 192.0.2.40:27018", Scope.ADDRESS),
        ("unix /tmp/mongodb-27018.sock", Scope.NONE)]
    assert ours.auth.kind is AuthKind.NONE and ours.auth.where == (Where(MONGO_CONFIG, 8),)


def test_mongodb_near_miss_authorization_enabled(tmp_path: Path) -> None:
    ours = parse_mongo(tree(tmp_path, {MONGO_CONFIG: MONGO_HIT.replace("disabled", "enabled")}))
    assert ours is not None and ours.listening.scope is Scope.ADDRESS
    assert ours.auth.kind is AuthKind.PASSWORD


def test_mongodb_defaults_dotted_keys_and_keyfile(tmp_path: Path) -> None:
    ours = parse_mongo(tree(tmp_path, {MONGO_CONFIG: "net.bindIpAll: true\nnet.ipv6: true\n"
                                                     "security:\n  keyFile: /etc/mongo.key\n"}))
    assert ours is not None
    assert [i.label() for i in ours.listening.network] == ["tcp 0.0.0.0:27017", "tcp [::]:27017"]
    assert ours.authorization == Setting("enabled", Where(MONGO_CONFIG, 4))   # a keyFile turns authorization on
    empty = parse_mongo(tree(tmp_path / "e", {MONGO_CONFIG: "# nothing\n"}))
    assert empty is not None
    assert empty.bind_ip == Setting("localhost") and empty.listening.scope is Scope.LOOPBACK
    assert empty.auth.kind is AuthKind.NONE and empty.authorization == Setting("disabled")


ES_HIT = """\
cluster.name: test
network.host: 0.0.0.0
http:
  port: 9201
xpack.security.enabled: false
"""


def test_elasticsearch_open_rest_api_is_a_hit(tmp_path: Path) -> None:
    ours = parse_es(tree(tmp_path, {ES_CONFIG: ES_HIT}))
    assert ours is not None
    assert ours.http_host == Setting("0.0.0.0", Where(ES_CONFIG, 2))
    assert ours.http_port == Setting("9201", Where(ES_CONFIG, 4))
    assert [i.label() for i in ours.listening.listens] == ["tcp 0.0.0.0:9201", "tcp 0.0.0.0:9300"]
    assert ours.auth.kind is AuthKind.NONE and ours.auth.where == (Where(ES_CONFIG, 5),)


def test_elasticsearch_near_miss_security_on_and_http_on_loopback(tmp_path: Path) -> None:
    ours = parse_es(tree(tmp_path, {ES_CONFIG: "network.host: [_site_]\nhttp.host: _local_\n"
                                               "xpack:\n  security:\n    enabled: true\n"}))
    assert ours is not None
    assert ours.http_host == Setting("_local_", Where(ES_CONFIG, 2))
    assert ours.transport_host == Setting("_site_", Where(ES_CONFIG, 1))
    assert [(i.label(), i.scope) for i in ours.listening.listens] == [
        ("tcp _local_:9200", Scope.LOOPBACK), ("tcp _site_:9300", Scope.ADDRESS)]
    assert ours.auth.kind is AuthKind.PASSWORD


def test_elasticsearch_unset_security_and_environment_values_are_unknown(tmp_path: Path) -> None:
    ours = parse_es(tree(tmp_path, {ES_CONFIG: "network.host: ${ES_HOST}\n"}))
    assert ours is not None
    assert ours.listening.scope is Scope.UNKNOWN
    assert ours.auth.kind is AuthKind.UNKNOWN


@pytest.mark.parametrize(("service", "text", "message"), [
    ("mongo", "net:\n  bindIp: [a\n", "mongod.conf:3: not valid YAML"),
    ("mongo", "- a\n- b\n", "mongod.conf:1: the file must be a mapping of settings"),
    ("mongo", "security:\n  authorization: on\n", "mongod.conf:2: security.authorization must be enabled or disabled"),
    ("mongo", "net:\n  port: http\n", "mongod.conf:2: net.port must be a port number"),
    ("mongo", "net:\n  bindIp: 127.0.0.1\n  bindIpAll: true\n", "mongod.conf:3: net.bindIp and net.bindIpAll"),
    ("es", "xpack.security.enabled: maybe\n", "elasticsearch.yml:1: xpack.security.enabled must be one of"),
    ("es", "a: &x [*x]\n", "elasticsearch.yml"),
    ("es", "network.host:\n  - {a: 1}\n", "elasticsearch.yml:2: network.host: a list of plain values expected"),
])
def test_malformed_config_is_one_clear_line(tmp_path: Path, service: str, text: str, message: str) -> None:
    config = MONGO_CONFIG if service == "mongo" else ES_CONFIG
    host = tree(tmp_path, {config: text})
    with pytest.raises(HostError) as err:
        (parse_mongo if service == "mongo" else parse_es)(host)
    assert message in str(err.value) and "\n" not in str(err.value)


YAML_BITS = st.sampled_from(["net:", "  bindIp: 0.0.0.0", "  port: 1", "security:", "  authorization: enabled",
                             "network.host: _site_", "xpack.security.enabled: true", "- x", "&a", "*a", "{", "[",
                             "  ", ":", "'", '"', "\t"])


@settings(max_examples=200, deadline=None)
@given(st.lists(YAML_BITS | st.text(max_size=15), max_size=8))
def test_garbage_gives_a_record_or_a_host_error(tmp_path_factory: pytest.TempPathFactory, lines: list[str]) -> None:
    text = "\n".join(lines)
    host = tree(tmp_path_factory.mktemp("y"), {MONGO_CONFIG: text, ES_CONFIG: text})
    for parse in (parse_mongo, parse_es):
        try:
            ours = parse(host)
        except HostError as exc:
            assert "\n" not in str(exc)
            continue
        assert ours is not None and ours.auth.kind in AuthKind
