"""The PostgreSQL reader against a real server: ``postgres -C`` for the settings, the ``pg_hba_file_rules``
view for every pg_hba.conf record."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.host.base import Host, HostError, LiveHost
from hostguard.host.services.common import AuthKind, Scope, Setting
from hostguard.host.services.postgres import parse, parse_cluster, parse_hba, parse_line
from hostguard.host.web.model import Where
from tests.conftest import need_root, need_tool
from tests.host.services.helpers import free_port, line_of, running, tree, wait_for


def _as_postgres(argv: list[str], check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Path]:
    """A fresh cluster owned by the postgres account (the server refuses to run as root)."""
    need_root("running postgres as its own account")
    need_tool("initdb", "postgres", "psql", "runuser")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip(reason="no postgres account (the postgresql package creates it)")
    base = Path(tempfile.mkdtemp(prefix="hostguard-pg-"))
    try:
        os.chown(base, pwd.getpwnam("postgres").pw_uid, -1)
        done = _as_postgres(["initdb", "-D", str(base / "data"), "-A", "trust", "--no-sync"])
        assert done.returncode == 0, done.stderr
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    os.chown(path, pwd.getpwnam("postgres").pw_uid, -1)


SETTING_CASES: dict[str, tuple[str, dict[str, str], str]] = {
    "defaults": ("", {}, ""),
    "forms_and_case": ("LISTEN_ADDRESSES = '192.0.2.5, ::1'\nport 5499 # comment\n"
                       "unix_socket_directories='/tmp/a,/tmp/b'\n", {}, ""),
    "includes_in_place": ("listen_addresses='*'\ninclude 'extra.conf'\ninclude_if_exists 'missing.conf'\n"
                          "include_dir 'conf.d'\nport = 5433\n",
                          {"extra.conf": "listen_addresses = 'localhost'\nport=6000\n",
                           "conf.d/01.conf": "unix_socket_directories = '/tmp/it''s'\n",
                           "conf.d/02.txt": "port = 1\n"}, ""),
    "auto_conf_overrides": ("listen_addresses = 'localhost'\n", {}, "listen_addresses = '*'\nport = '5444'\n"),
}
KEYS = ("listen_addresses", "port", "unix_socket_directories", "hba_file")


@pytest.mark.parametrize("case", sorted(SETTING_CASES))
def test_settings_agree_with_postgres_C(cluster: Path, case: str) -> None:
    data = cluster / "data"
    main, others, auto = SETTING_CASES[case]
    for name, text in others.items():
        (data / name).parent.mkdir(exist_ok=True)
        os.chown((data / name).parent, pwd.getpwnam("postgres").pw_uid, -1)
        _write(data / name, text)
    _write(data / "postgresql.conf", main)
    _write(data / "postgresql.auto.conf", auto)
    ours = parse_cluster(Host("/"), str(data / "postgresql.conf"), str(data))
    for key in KEYS:
        real = _as_postgres(["postgres", "-D", str(data), "-C", key], check=True).stdout.strip()
        mine = {"listen_addresses": ours.listen_addresses, "port": ours.port,
                "unix_socket_directories": ours.unix_socket_directories, "hba_file": ours.hba_file}[key]
        assert mine.value == real, key


HBA = """\
local   all   all   trust
host    all   all   127.0.0.1/32   scram-sha-256
host    "all",sales   app,"Mixed Case"   192.0.2.0/24   md5
host    all   all   198.51.100.7  255.255.255.255   password
host    all   all   0.0.0.0/0   trust
host    all   all   ::1/128   trust
host    all   all   samenet   reject
host    replication   all   db.test   scram-sha-256
hostnossl all \\
        all   2001:db8::/32   ident   # a continued line
host    all   all   all   ident map=omicron
"""


def _rules(sock_dir: Path, port: int) -> list[tuple[str, ...]]:
    query = ("select line_number, type, array_to_string(database, ','), array_to_string(user_name, ','), "
             "coalesce(address, ''), coalesce(netmask, ''), auth_method, coalesce(error, '') "
             "from pg_hba_file_rules order by line_number")
    out = _as_postgres(["psql", "-h", str(sock_dir), "-p", str(port), "-U", "postgres", "-d", "postgres", "-At",
                        "-F", "|", "-c", query], check=True).stdout
    return [tuple(line.split("|")) for line in out.splitlines()]


def test_pg_hba_agrees_with_pg_hba_file_rules(cluster: Path) -> None:
    data = cluster / "data"
    _write(data / "postgresql.conf", "")
    _write(data / "postgresql.auto.conf", "")
    _write(data / "pg_hba.conf", "local all all trust\n")
    sock_dir = cluster / "sock"
    sock_dir.mkdir(exist_ok=True)
    os.chown(sock_dir, pwd.getpwnam("postgres").pw_uid, -1)
    port = free_port()
    argv = ["runuser", "-u", "postgres", "--", "postgres", "-D", str(data), "-c", "listen_addresses=", "-k",
            str(sock_dir), "-p", str(port)]
    with running(argv, cluster / "server.log"):
        wait_for((sock_dir / f".s.PGSQL.{port}").exists, what="postgres")
        _write(data / "pg_hba.conf", HBA)      # the view reads the file as it is now: no reload needed
        real = _rules(sock_dir, port)
    ours = parse_hba(Host("/"), str(data / "pg_hba.conf"), HBA, [])
    mine = [(str(r.where.line), r.type, ",".join(d.strip('"') for d in r.databases),
             ",".join(u.strip('"') for u in r.users), r.address or "", r.netmask or "", r.method, "") for r in ours]
    assert mine == real
    assert [(r.where.line, r.method, r.weak) for r in ours if r.weak] == [
        (3, "md5", AuthKind.WEAK), (4, "password", AuthKind.WEAK), (5, "trust", AuthKind.NONE),
        (9, "ident", AuthKind.WEAK), (11, "ident", AuthKind.WEAK)]
    assert ours[-1].options == ("map=omicron",)


def test_settings_and_hba_of_a_debian_style_tree(tmp_path: Path) -> None:
    etc = "/etc/postgresql/15/main"
    host = tree(tmp_path, {
        f"{etc}/postgresql.conf": "data_directory = '/var/lib/postgresql/15/main'\n"
                                  f"hba_file = '{etc}/pg_hba.conf'\nlisten_addresses = '*'\nport = 5432\n",
        f"{etc}/pg_hba.conf": "local all postgres peer\nhostssl all all 127.0.0.1/32 trust\n"
                              "host all all 0.0.0.0/0 trust\n",
        "/var/lib/postgresql/15/main/postgresql.auto.conf": "port = '5433'\nssl = on\n"})
    [ours] = parse(host)
    assert ours.listen_addresses == Setting("*", Where(f"{etc}/postgresql.conf", 3))
    assert ours.port == Setting("5433", Where("/var/lib/postgresql/15/main/postgresql.auto.conf", 1))
    assert ours.listening.scope is Scope.WILDCARD
    assert [line.where for line in ours.weak_lines] == [Where(f"{etc}/pg_hba.conf", 3)]
    assert ours.auth.kind is AuthKind.NONE
    assert ours.auth.detail == "non-local trust line: host all all 0.0.0.0/255.255.255.255 trust".replace(
        "255.255.255.255", "0.0.0.0")


def test_near_miss_trust_only_on_loopback(tmp_path: Path) -> None:
    etc = "/etc/postgresql/15/main"
    host = tree(tmp_path, {
        f"{etc}/postgresql.conf": "listen_addresses = '*'\nssl = on\n",
        f"{etc}/pg_hba.conf": "host all all 127.0.0.0/8 trust\nhost all all ::1/128 trust\n"
                              "hostssl all all 0.0.0.0/0 scram-sha-256\n"})
    [ours] = parse(host)
    assert ours.weak_lines == ()
    assert ours.auth.kind is AuthKind.PASSWORD and ours.auth.where == (Where(f"{etc}/pg_hba.conf", 3),)


def test_debian_stock_cluster_through_live_host() -> None:
    need_tool("postgres")
    clusters = {c.config: c for c in parse(LiveHost())}
    config = "/etc/postgresql/15/main/postgresql.conf"
    if config not in clusters:
        pytest.skip(reason="no Debian cluster 15/main on this machine (pg_createcluster makes it)")
    ours = clusters[config]
    assert ours.listen_addresses == Setting("localhost")          # commented out: the built-in default
    assert ours.port == Setting("5432", Where(config, line_of(config, "port =")))
    assert ours.hba_file.value == "/etc/postgresql/15/main/pg_hba.conf"
    assert ours.listening.scope is Scope.LOOPBACK
    assert ours.weak_lines == ()
    assert ours.auth.kind is AuthKind.REFUSED   # every host line is loopback


@pytest.mark.parametrize(("conf", "hba", "message"), [
    ("port = 5432 junk\n", "", "postgresql.conf:1: syntax error near 'junk'"),
    ("listen_addresses = 'x\n", "", "postgresql.conf:1: unterminated quoted string"),
    ("include 'nope.conf'\n", "", "postgresql.conf:1: included file"),
    ("port = 'http'\n", "", "postgresql.conf:1: port must be a port number"),
    ("", "host all all 192.0.2.1 md5\n", "pg_hba.conf:1: an IP address needs a /mask or a mask column"),
    ("", "host all all 192.0.2.0/24 md6\n", "pg_hba.conf:1: invalid authentication method 'md6'"),
    ("", "hots all all 192.0.2.0/24 md5\n", "pg_hba.conf:1: invalid connection type 'hots'"),
    ("", "local all\n", "pg_hba.conf:1: end-of-line before"),
    ("", "host all all 192.0.2.0/24 cert\n", "pg_hba.conf:1: cert authentication is only supported on hostssl"),
    ("", "hostssl all all 192.0.2.0/24 md5\n", "pg_hba.conf:1: hostssl record cannot match because SSL is disabled"),
    ("ssl = maybe\n", "", "postgresql.conf:1: ssl must be one of"),
    ("", "host all all 192.0.2.0/24 peer\n", "pg_hba.conf:1: peer authentication is only supported on local"),
])
def test_malformed_config_is_one_clear_line(tmp_path: Path, conf: str, hba: str, message: str) -> None:
    (tmp_path / "postgresql.conf").write_text(conf)
    (tmp_path / "pg_hba.conf").write_text(hba)
    with pytest.raises(HostError) as err:
        parse_cluster(Host("/"), str(tmp_path / "postgresql.conf"), str(tmp_path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_parse_line_forms() -> None:
    w = Where("x", 1)
    assert parse_line("Port=5432", w) == ("port", "5432")
    assert parse_line("listen_addresses '*'  # all", w) == ("listen_addresses", "*")
    assert parse_line("x.y = 'a\\'b''c'", w) == ("x.y", "a'b'c")
    assert parse_line("   # nothing", w) is None


HBA_WORDS = st.sampled_from(["local", "host", "hostssl", "all", "0.0.0.0/0", "::1/128", "trust", "md5", "\"",
                             ",", "\\", "#", "include", "192.0.2.1", "255.0.0.0", "samehost", "reject", " "])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(HBA_WORDS | st.text(max_size=8), max_size=7).map(" ".join), max_size=6),
       st.lists(st.sampled_from(["port = 5432", "listen_addresses = '*'", "include_dir 'x'", "a = 'b",
                                 "x y z", "=", "''"]) | st.text(max_size=20), max_size=5))
def test_garbage_gives_a_record_or_a_host_error(tmp_path_factory: pytest.TempPathFactory, hba: list[str],
                                                conf: list[str]) -> None:
    root = tmp_path_factory.mktemp("p")
    host = tree(root, {"/etc/postgresql/15/main/postgresql.conf": "\n".join(conf),
                       "/etc/postgresql/15/main/pg_hba.conf": "\n".join(hba)})
    try:
        [ours] = parse(host)
    except HostError as exc:
        assert "\n" not in str(exc)
        return
    assert all(line.where.line >= 1 for line in ours.hba)


def test_pg16_include_lines_are_read_in_place(tmp_path: Path) -> None:
    etc = "/etc/postgresql/16/main"
    host = tree(tmp_path, {
        f"{etc}/postgresql.conf": "listen_addresses = '*'\n",
        f"{etc}/pg_hba.conf": "local all all peer\ninclude hba.d/extra.conf\ninclude_if_exists missing.conf\n"
                              "include_dir hba.d\nhost all all ::/0 scram-sha-256\n",
        f"{etc}/hba.d/extra.conf": "host all all 198.51.100.0/24 trust\n",
        f"{etc}/hba.d/20-more.conf": "host all all 192.0.2.0/24 md5\n"})
    [ours] = parse(host)
    assert [(line.where, line.method) for line in ours.hba] == [
        (Where(f"{etc}/pg_hba.conf", 1), "peer"), (Where(f"{etc}/hba.d/extra.conf", 1), "trust"),
        (Where(f"{etc}/hba.d/20-more.conf", 1), "md5"), (Where(f"{etc}/hba.d/extra.conf", 1), "trust"),
        (Where(f"{etc}/pg_hba.conf", 5), "scram-sha-256")]
    assert ours.notes == (f"{etc}/pg_hba.conf:3: include_if_exists {etc}/missing.conf: no such file, skipped",)
    assert ours.auth.kind is AuthKind.NONE
