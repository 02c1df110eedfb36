"""The Redis reader against a real redis-server: same files, same bind, protected mode and password answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.host.base import Host, HostError, LiveHost
from hostguard.host.services.common import AuthKind, Scope, Setting
from hostguard.host.services.redis import CONFIG, parse, split_args
from hostguard.host.web.model import Where
from tests.conftest import need_tool
from tests.host.services.helpers import accepting, line_of, resp, running, tree, wait_for

# name: (main file, other files, credentials to run CONFIG GET with: [] for none)
CASES: dict[str, tuple[str, dict[str, str], list[str]]] = {
    "debian_like": ("bind 127.0.0.1 -::1\nprotected-mode yes\n", {}, []),
    "built_in_defaults": ("", {}, []),
    "include_in_place_last_wins": (
        "bind 0.0.0.0\ninclude {d}/extra.conf\nprotected-mode no\n",
        {"extra.conf": 'bind 192.0.2.1 ::1\nprotected-mode yes\nrequirepass "s3cr et"\n'}, ["AUTH", "s3cr et"]),
    "include_glob": ("include {d}/conf.d/*.conf\n", {"conf.d/10-a.conf": "bind 127.0.0.2\n",
                                                     "conf.d/20-b.conf": "bind 127.0.0.3\n"}, []),
    "quotes_and_case": ("BIND \"127.0.0.1\"\nProtected-Mode 'no'\nrequirepass abc\nrequirepass \"\"\n", {}, []),
    "user_line_overrides_requirepass": ("requirepass abc\nuser default on nopass ~* +@all\n", {}, []),
    "user_line_sets_password": ("user default on >pw ~* &* +@all\nrequirepass \"\"\n", {}, ["AUTH", "pw"]),
    "aclfile_without_default_ignores_requirepass": (
        "requirepass abc\naclfile {d}/users.acl\nprotected-mode no\n",
        {"users.acl": "user alice on >pw ~* +@all\n"}, []),
    "aclfile_default_with_password": ("aclfile {d}/users.acl\n",
                                      {"users.acl": "user default on >pw ~* &* +@all\n"}, ["AUTH", "pw"]),
    "default_off": ("user default off\nuser admin on >pw ~* &* +@all\n", {}, ["AUTH", "admin", "pw"]),
}
SERVER = "port 0\nunixsocket {d}/redis.sock\ndaemonize no\ndir {d}\nlogfile \"\"\nsave \"\"\n"


def _write(tmp_path: Path, case: str) -> Path:
    main, others, _ = CASES[case]
    for name, text in others.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text.format(d=tmp_path))
    config = tmp_path / "redis.conf"
    config.write_text(main.format(d=tmp_path) + SERVER.format(d=tmp_path))
    return config


@pytest.mark.parametrize("case", sorted(CASES))
def test_reader_agrees_with_redis_server(tmp_path: Path, case: str) -> None:
    need_tool("redis-server")
    config = _write(tmp_path, case)
    ours = parse(Host("/"), str(config))
    assert ours is not None
    sock = str(tmp_path / "redis.sock")
    with running(["redis-server", str(config)], tmp_path / "log"):
        wait_for(lambda: accepting(sock), what="redis-server")
        [ping] = resp(sock, ["PING"])
        creds = CASES[case][2]
        replies = resp(sock, *([creds] if creds else []), ["CONFIG", "GET", "bind"], ["CONFIG", "GET", "protected-mode"])
    # an unauthenticated client is served exactly when we say the default user needs no password
    assert (ping == "PONG") == ours.default_user.open, (ping, ours.default_user)
    assert replies[-2] == ["bind", " ".join(s.value for s in ours.bind)]
    assert replies[-1] == ["protected-mode", ours.protected_mode.value.lower()]


def test_where_each_value_came_from(tmp_path: Path) -> None:
    config = _write(tmp_path, "include_in_place_last_wins")
    ours = parse(Host("/"), str(config))
    assert ours is not None
    extra = str(tmp_path / "extra.conf")
    assert [(s.value, s.where) for s in ours.bind] == [("192.0.2.1", Where(extra, 1)), ("::1", Where(extra, 1))]
    assert ours.protected_mode.where == Where(str(config), 3)
    assert ours.requirepass == Where(extra, 3)
    assert ours.auth.kind is AuthKind.PASSWORD


def test_rename_command_disables_config(tmp_path: Path) -> None:
    need_tool("redis-server")
    config = tmp_path / "redis.conf"
    config.write_text('rename-command CONFIG ""\nrename-command FLUSHALL xyzzy\n' + SERVER.format(d=tmp_path))
    ours = parse(Host("/"), str(config))
    assert ours is not None
    assert ours.renamed_to("config") == ("", Where(str(config), 1))
    assert ours.renamed_to("flushall") == ("xyzzy", Where(str(config), 2))
    assert ours.renamed_to("debug") is None
    sock = str(tmp_path / "redis.sock")
    with running(["redis-server", str(config)], tmp_path / "log"):
        wait_for(lambda: accepting(sock), what="redis-server")
        [reply] = resp(sock, ["CONFIG", "GET", "bind"])
    assert isinstance(reply, Exception) and "unknown command" in str(reply)


def test_open_to_the_network_is_a_hit(tmp_path: Path) -> None:
    host = tree(tmp_path, {CONFIG: "bind 0.0.0.0 ::\nprotected-mode no\nport 6380\n"})
    ours = parse(host)
    assert ours is not None
    assert ours.listening.scope is Scope.WILDCARD
    assert [i.label() for i in ours.listening.network] == ["tcp 0.0.0.0:6380", "tcp [::]:6380"]
    assert ours.auth.kind is AuthKind.NONE
    assert Where(CONFIG, 2) in ours.auth.where


def test_near_miss_with_a_password(tmp_path: Path) -> None:
    host = tree(tmp_path, {CONFIG: "bind 0.0.0.0 ::\nprotected-mode no\nrequirepass Kx9-long-pass\n"})
    ours = parse(host)
    assert ours is not None and ours.listening.scope is Scope.WILDCARD
    assert ours.auth.kind is AuthKind.PASSWORD and ours.auth.where == (Where(CONFIG, 3),)


def test_aclfile_trap_is_named(tmp_path: Path) -> None:
    host = tree(tmp_path, {CONFIG: "requirepass abc\naclfile /etc/redis/users.acl\nprotected-mode no\n",
                           "/etc/redis/users.acl": "user alice on >pw ~* +@all\n"})
    ours = parse(host)
    assert ours is not None
    assert ours.auth.kind is AuthKind.NONE
    assert ours.notes == (f"{CONFIG}:1: requirepass is ignored: the aclfile /etc/redis/users.acl decides the "
                          "default user's password",)
    assert [(u.name, u.open) for u in ours.users] == [("default", True), ("alice", False)]


def test_unix_socket_only(tmp_path: Path) -> None:
    host = tree(tmp_path, {CONFIG: "port 0\nunixsocket /run/redis/redis.sock\n"})
    ours = parse(host)
    assert ours is not None
    assert ours.listening.scope is Scope.NONE
    assert [i.label() for i in ours.listening.listens] == ["unix /run/redis/redis.sock"]


def test_not_installed(tmp_path: Path) -> None:
    assert parse(tree(tmp_path, {"/etc/hostname": "h\n"})) is None


def test_debian_stock_config_through_live_host() -> None:
    need_tool("redis-server")
    ours = parse(LiveHost())
    assert ours is not None
    line = line_of(CONFIG, "bind ")
    assert [(s.value, s.where) for s in ours.bind] == [("127.0.0.1", Where(CONFIG, line)), ("-::1", Where(CONFIG, line))]
    assert ours.protected_mode == Setting("yes", Where(CONFIG, line_of(CONFIG, "protected-mode")))
    assert ours.requirepass is None and ours.aclfile is None
    assert ours.listening.scope is Scope.LOOPBACK
    assert ours.auth.kind is AuthKind.REFUSED


@pytest.mark.parametrize(("text", "message"), [
    ('bind "127.0.0.1\n', "redis.conf:1: unbalanced quotes"),
    ("port 6379\nprotected-mode maybe\n", "redis.conf:2: protected-mode must be one of no/yes, not 'maybe'"),
    ("port 99999\n", "redis.conf:1: port must be a port number 0-65535, not '99999'"),
    ("include /nonexistent/x.conf\n", "redis.conf:1: included file /nonexistent/x.conf does not exist"),
    ("include {d}/redis.conf\n", "includes nested deeper than 16"),
    ("rename-command CONFIG\n", "redis.conf:1: rename-command takes a command and a new name"),
    ("aclfile {d}/users.acl\n", "users.acl:1: an ACL file line must be 'user <name> <rules>'"),
])
def test_malformed_config_is_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "users.acl").write_text("# comments are not allowed here\n")
    config = tmp_path / "redis.conf"
    config.write_text(text.format(d=tmp_path))
    with pytest.raises(HostError) as err:
        parse(Host("/"), str(config))
    assert message in str(err.value) and "\n" not in str(err.value)


LINES = st.lists(st.sampled_from(["bind", "port", "protected-mode", "requirepass", "user", "aclfile", "include",
                                  "rename-command", "unixsocket", "tls-port", "#", ""]) |
                 st.text(max_size=10), min_size=1, max_size=4).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(LINES | st.text(max_size=40), max_size=8))
def test_garbage_gives_a_record_or_a_host_error(tmp_path_factory: pytest.TempPathFactory, lines: list[str]) -> None:
    root = tmp_path_factory.mktemp("r")
    (root / "etc/redis").mkdir(parents=True)
    (root / "etc/redis/redis.conf").write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")
    host = tree(root, {})
    try:
        ours = parse(host)
    except HostError as exc:
        assert "\n" not in str(exc)
        return
    assert ours is not None and ours.users[0].name == "default"


@given(st.text(max_size=60))
def test_split_args_never_raises(text: str) -> None:
    out = split_args(text)
    assert out is None or all(isinstance(a, str) for a in out)
