"""The MariaDB/MySQL reader against ``my_print_defaults`` and a real mariadbd: same options, same answers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.host.base import Host, HostError, LiveHost
from hostguard.host.services.common import AuthKind, Scope, Setting
from hostguard.host.services.mysql import canonical, package_version, parse
from hostguard.host.web.model import Where
from tests.conftest import need_tool
from tests.host.services.helpers import free_port, line_of, running, tree, wait_for
from tests.realservers import new_mariadb_datadir

VERSION = "10.11"
CASES: dict[str, tuple[str, dict[str, str]]] = {
    "groups_and_order": ("[client]\nport=1\n[mysqld]\nbind-address = 127.0.0.1\n[server]\nport = 3307\n"
                         "[Mariadb]\nbind_address=192.0.2.10\n[mysqldump]\nquick\n", {}),
    "includes_in_place": ("[mysqld]\nport=3306\n!includedir {d}/conf.d\n!include {d}/last.cnf\nsocket=/tmp/x.sock\n",
                          {"conf.d/50-server.cnf": "[mysqld]\nbind-address=0.0.0.0\n",
                           "conf.d/10-first.cnf": "[mariadbd]\nskip-networking\n",
                           "conf.d/ignored.txt": "[mysqld]\nport=1\n",
                           "last.cnf": "[server]\nport=3310\n"}),
    "quotes_comments_escapes": ("# top\n; also a comment\n[mysqld]\nbind-address = \"127.0.0.1\"  # loopback\n"
                                "socket = '/run/my sql.sock'\nkey = it's # kept\npath = C:\\\\x\\sy\n", {}),
    "versioned_groups": ("[mysqld-10.11]\nskip-grant-tables\n[mariadb-10.6]\nport=1\n[mariadbd-10.11]\n"
                         "loose-skip-networking=0\n", {}),
}


def _write(tmp_path: Path, case: str) -> Path:
    main, others = CASES[case]
    for name, text in others.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text.format(d=tmp_path))
    config = tmp_path / "my.cnf"
    config.write_text(main.format(d=tmp_path))
    return config


@pytest.mark.parametrize("case", sorted(CASES))
def test_options_agree_with_my_print_defaults(tmp_path: Path, case: str) -> None:
    need_tool("my_print_defaults")
    config = _write(tmp_path, case)
    real = subprocess.run(["my_print_defaults", f"--defaults-file={config}", "--mysqld"], capture_output=True,
                          text=True, check=True).stdout.splitlines()
    ours = parse(Host("/"), (str(config),), version=VERSION)
    assert ours is not None
    assert [o.arg() for o in ours.options] == real


def test_effective_values_and_lines(tmp_path: Path) -> None:
    config = _write(tmp_path, "includes_in_place")
    ours = parse(Host("/"), (str(config),), version=VERSION)
    assert ours is not None
    d = tmp_path / "conf.d"
    assert ours.bind_address == Setting("0.0.0.0", Where(str(d / "50-server.cnf"), 2))
    assert ours.skip_networking == Setting("1", Where(str(d / "10-first.cnf"), 2))
    assert ours.port == Setting("3310", Where(str(tmp_path / "last.cnf"), 2))
    # skip-networking: the bind address is not used, only the socket
    assert [i.label() for i in ours.listening.listens] == ["unix /tmp/x.sock"]
    assert ours.listening.scope is Scope.NONE


def test_unknown_version_leaves_versioned_groups_out_with_a_note(tmp_path: Path) -> None:
    config = _write(tmp_path, "versioned_groups")
    ours = parse(Host("/"), (str(config),), version=None)
    assert ours is not None
    assert ours.skip_grant_tables.value == "0"
    assert any(n.startswith("[mysqld-10.11] is read only by that server version") for n in ours.notes)


@pytest.mark.parametrize(("name", "expected"), [
    ("bind_address", ("bind-address", None)), ("loose-skip_networking", ("skip-networking", None)),
    ("disable-skip-networking", ("skip-networking", False)), ("enable-skip-grant-tables", ("skip-grant-tables", True)),
    ("skip-bind-address", ("bind-address", False)), ("Port", ("port", None)),
])
def test_option_names_are_normalised(name: str, expected: tuple[str, bool | None]) -> None:
    assert canonical(name) == expected


@pytest.fixture(scope="module")
def datadir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_mariadb_datadir(tmp_path_factory.mktemp("mariadb"))


@pytest.mark.parametrize("variant", ["grant_tables_skipped_on_loopback", "checked_and_no_networking"])
def test_reader_agrees_with_a_real_mariadbd(tmp_path: Path, datadir: Path, variant: str) -> None:
    port = free_port()
    sock = tmp_path / "m.sock"
    base = (f"[mysqld]\ndatadir={datadir}\nsocket={sock}\nuser=root\npid-file={tmp_path}/m.pid\n"
            f"log-error={tmp_path}/err.log\nport={port}\n!includedir {tmp_path}/conf.d\n")
    (tmp_path / "conf.d").mkdir()
    if variant == "grant_tables_skipped_on_loopback":
        (tmp_path / "conf.d/50-server.cnf").write_text("[server]\nbind_address = 127.0.0.1\nskip-grant-tables\n")
    else:
        (tmp_path / "conf.d/50-server.cnf").write_text("[mariadb]\nbind-address=127.0.0.1\nskip_networking=1\n")
    config = tmp_path / "my.cnf"
    config.write_text(base)
    ours = parse(Host("/"), (str(config),), version=VERSION)
    assert ours is not None
    with running(["mariadbd", f"--defaults-file={config}"], tmp_path / "log"):
        wait_for(sock.exists, what="mariadbd")
        shown = subprocess.run(["mariadb", "--no-defaults", "-S", str(sock), "-N", "-B", "-e",
                                "select @@bind_address, @@skip_networking, @@port"],
                               capture_output=True, text=True, check=True).stdout.split()
        stranger = subprocess.run(["mariadb", "--no-defaults", "-S", str(sock), "-u", "nobody.test",
                                   "-pnot-the-password", "-N", "-B", "-e", "select 1"], capture_output=True, text=True)
    # with networking off the server reports port 0: there is no TCP listener, as our listening says
    tcp_port = ours.port.value if ours.skip_networking.value == "0" else "0"
    assert shown == [ours.bind_address.value, ours.skip_networking.value, tcp_port]
    # a stranger with a wrong password is let in exactly when we say no password is checked
    assert (stranger.returncode == 0) == (ours.auth.kind is AuthKind.NONE), stranger.stderr
    if variant == "grant_tables_skipped_on_loopback":
        assert [i.label() for i in ours.listening.listens] == [f"tcp 127.0.0.1:{port}", f"unix {sock}"]
        assert ours.auth.where == (Where(str(tmp_path / "conf.d/50-server.cnf"), 3),)
    else:
        assert ours.listening.scope is Scope.NONE


def test_network_without_grant_tables_is_a_hit(tmp_path: Path) -> None:
    host = tree(tmp_path, {"/etc/mysql/my.cnf": "[mysqld]\n!includedir /etc/mysql/conf.d/\n",
                           "/etc/mysql/conf.d/z.cnf": "[mysqld]\nbind-address = 0.0.0.0\nskip-grant-tables\n"})
    ours = parse(host, version=VERSION)
    assert ours is not None
    assert ours.listening.scope is Scope.WILDCARD
    assert ours.bind_address.where == Where("/etc/mysql/conf.d/z.cnf", 2)
    assert ours.auth.kind is AuthKind.NONE and ours.auth.where == (Where("/etc/mysql/conf.d/z.cnf", 3),)


def test_near_miss_grant_tables_turned_back_on(tmp_path: Path) -> None:
    host = tree(tmp_path, {"/etc/mysql/my.cnf": "[mysqld]\nbind-address = 0.0.0.0\nskip-grant-tables\n"
                                                "[mariadb]\ndisable-skip-grant-tables\n"})
    ours = parse(host, version=VERSION)
    assert ours is not None
    assert ours.skip_grant_tables == Setting("0", Where("/etc/mysql/my.cnf", 5))
    assert ours.auth.kind is AuthKind.PASSWORD


def test_default_binds_every_interface(tmp_path: Path) -> None:
    ours = parse(tree(tmp_path, {"/etc/my.cnf": "[mysqld]\nport=3306\n"}), version=VERSION)
    assert ours is not None and ours.listening.scope is Scope.WILDCARD
    assert ours.bind_address.where == Where("")


def test_debian_stock_config_through_live_host() -> None:
    need_tool("mariadbd")
    host = LiveHost()
    ours = parse(host, version=package_version(host))
    assert ours is not None
    assert ours.version == VERSION
    server = "/etc/mysql/mariadb.conf.d/50-server.cnf"
    assert ours.bind_address == Setting("127.0.0.1", Where(server, line_of(server, "bind-address")))
    assert ours.skip_networking.value == "0" and ours.skip_grant_tables.value == "0"
    assert ours.listening.scope is Scope.LOOPBACK
    assert [i.label() for i in ours.listening.listens] == ["tcp 127.0.0.1:3306", "unix /run/mysqld/mysqld.sock"]
    assert ours.auth.kind is AuthKind.PASSWORD


@pytest.mark.parametrize(("text", "message"), [
    ("port=3306\n", "my.cnf:1: option 'port=3306' before any [group] header"),
    ("[mysqld\nport=1\n", "my.cnf:1: a group header must be [name]"),
    ("[mysqld]\n!includ x\n", "my.cnf:2: unknown or empty directive '!includ x'"),
    ("[mysqld]\nskip-networking = maybe\n", "my.cnf:2: skip-networking must be one of"),
    ("[mysqld]\nport = http\n", "my.cnf:2: port must be a port number 0-65535, not 'http'"),
    ("[mysqld]\n!includedir {d}/nope\n", "my.cnf:2: !includedir {d}/nope: no such directory"),
])
def test_malformed_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "my.cnf"
    config.write_text(text.format(d=tmp_path))
    with pytest.raises(HostError) as err:
        parse(Host("/"), (str(config),), version=VERSION)
    assert message.format(d=tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_an_include_loop_stops_where_the_server_stops(tmp_path: Path) -> None:
    need_tool("my_print_defaults")
    config = tmp_path / "my.cnf"
    config.write_text(f"[mysqld]\nport=1\n!include {config}\n")
    real = subprocess.run(["my_print_defaults", f"--defaults-file={config}", "--mysqld"], capture_output=True,
                          text=True, check=True).stdout.split()
    ours = parse(Host("/"), (str(config),), version=VERSION)
    assert ours is not None
    assert [o.arg() for o in ours.options] == real == ["--port=1"] * 11
    assert ours.notes == (f"{config}:3: !include skipped: includes nested deeper than 10 levels",)


def test_missing_include_file_is_a_note_as_the_server_skips_it(tmp_path: Path) -> None:
    need_tool("my_print_defaults")
    config = tmp_path / "my.cnf"
    config.write_text(f"[mysqld]\n!include {tmp_path}/nope.cnf\nport=2\n")
    real = subprocess.run(["my_print_defaults", f"--defaults-file={config}", "--mysqld"], capture_output=True,
                          text=True, check=True).stdout.split()
    ours = parse(Host("/"), (str(config),), version=VERSION)
    assert ours is not None
    assert real == [o.arg() for o in ours.options] == ["--port=2"]
    assert ours.notes == (f"{config}:2: !include {tmp_path}/nope.cnf: no such file (the server skips it)",)


LINES = st.sampled_from(["[mysqld]", "[client]", "bind-address=0.0.0.0", "skip-networking", "port=1",
                         "!include /etc/x", "!includedir /etc/mysql/conf.d", "# c", "", "skip_grant_tables=0"])


@settings(max_examples=200, deadline=None)
@given(st.lists(LINES | st.text(max_size=30), max_size=8))
def test_garbage_gives_a_record_or_a_host_error(tmp_path_factory: pytest.TempPathFactory, lines: list[str]) -> None:
    root = tmp_path_factory.mktemp("m")
    host = tree(root, {"/etc/mysql/my.cnf": "\n".join(lines)})
    try:
        ours = parse(host, version=VERSION)
    except HostError as exc:
        assert "\n" not in str(exc)
        return
    assert ours is not None and ours.listening.scope in Scope
