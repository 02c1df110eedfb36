"""MYSQL_ACCOUNTS against a real mariadbd: which accounts come back, in which form, through which login
(root over the socket, debian.cnf, root's ~/.my.cnf over loopback TCP), what is left out (roles, locked,
unix_socket only) and what a missing or wrong login says; the query client's guard and its behaviour on
garbage replies (hypothesis); MySQL 8's caching_sha2 form converted for the verifier."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.findings import SkipReason
from hostguard.host.base import HostError, RootHost, Unavailable
from hostguard.host.services.configured import collect_services
from hostguard.host.services.mysql_accounts import (
    ROOT_OVER_SOCKET,
    accounts_from_user_table,
    collect_mysql_accounts,
    configured_logins,
    option_file_login,
    stored_form,
    user_table_query,
)
from hostguard.passwords import service_schemes as algo
from hostguard.passwords.services_verifiers import known_answers, service_verifier
from hostguard.probes.base import Endpoint, Reader
from hostguard.probes.mysql import MysqlSession, QueryError, ResultSet
from tests.host.services.helpers import free_port, running, wait_for
from tests.realservers import new_mariadb_datadir

STRONG = "Qx7-vT2p!eL9#wRk4zN8uYb3"
WRONG = "not-the-password"
MAINT_PW = "maint-Secret-7f1c2e9a"
SOCKET = "/run/mysqld/mysqld.sock"      # the host path the tree's my.cnf names
PASSWORDS = {"app@localhost": "shadow", "strong@%": STRONG, "edwards@%": "dragon", "either@localhost": "monkey",
             "nopass@localhost": "", "maint@localhost": MAINT_PW}
USERS = f"""
INSTALL SONAME 'auth_ed25519';
CREATE USER 'app'@'localhost' IDENTIFIED BY 'shadow';
CREATE USER 'strong'@'%' IDENTIFIED BY '{STRONG}';
CREATE USER 'edwards'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('dragon');
CREATE USER 'sock'@'localhost' IDENTIFIED VIA unix_socket;
CREATE ROLE 'reporting';
CREATE USER 'locked'@'localhost' IDENTIFIED BY 'shadow' ACCOUNT LOCK;
CREATE USER 'nopass'@'localhost';
CREATE USER 'either'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('monkey');
CREATE USER 'maint'@'localhost' IDENTIFIED BY '{MAINT_PW}';
CREATE USER 'maint'@'127.0.0.1' IDENTIFIED BY '{MAINT_PW}';
GRANT SELECT ON mysql.* TO 'maint'@'localhost';
GRANT SELECT ON mysql.* TO 'maint'@'127.0.0.1';
"""
EXPECTED = {"app@localhost": "mysql-native", "strong@%": "mysql-native", "edwards@%": "mariadb-ed25519",
            "either@localhost": "mysql-native", "nopass@localhost": None, "maint@localhost": "mysql-native",
            "maint@127.0.0.1": "mysql-native"}
PASSWORDS["maint@127.0.0.1"] = MAINT_PW


class LiveTree(RootHost):
    """A tree read as a live host: its files are the host's, its sockets are real (the server runs)."""

    live = True


@pytest.fixture(scope="module")
def datadir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine data directory (root@localhost by unix_socket, as Debian sets it up), never run itself."""
    return new_mariadb_datadir(tmp_path_factory.mktemp("mariadb-accounts"))


@contextmanager
def mariadb_in_tree(base: Path, datadir: Path) -> Iterator[tuple[Path, Path, int]]:
    """mariadbd on a copy of ``datadir``, its socket inside a host tree at :data:`SOCKET` (the tree's
    /etc/mysql/my.cnf says so) and on 127.0.0.1: (tree, real socket path, port)."""
    shutil.copytree(datadir, base / "data")
    tree = base / "tree"
    sock = tree / SOCKET.lstrip("/")
    sock.parent.mkdir(parents=True)
    port = free_port()
    (tree / "etc/mysql").mkdir(parents=True)
    (tree / "etc/mysql/my.cnf").write_text(f"[mysqld]\nsocket = {SOCKET}\nport = {port}\nbind-address = 127.0.0.1\n")
    config = base / "server.cnf"
    config.write_text(f"[mysqld]\ndatadir={base / 'data'}\nsocket={sock}\nuser=root\npid-file={base}/m.pid\n"
                      f"log-error={base}/err.log\nport={port}\nbind-address=127.0.0.1\n")
    with running(["mariadbd", f"--defaults-file={config}"], base / "log"):
        wait_for(sock.exists, what="mariadbd")
        yield tree, sock, port


def sql(sock: Path, text: str, user: str = "root", password: str | None = None) -> str:
    """Run SQL with the real client (as root over the socket by default)."""
    argv = ["mariadb", "--no-defaults", "-S", str(sock), "-u", user, "-N", "-B", "-e", text]
    if password is not None:
        argv.insert(-2, f"-p{password}")
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, datadir: Path) -> Iterator[tuple[Path, Path, int]]:
    with mariadb_in_tree(tmp_path_factory.mktemp("mariadb-accounts-run"), datadir) as (tree, sock, port):
        sql(sock, USERS)
        yield tree, sock, port


def _read(tree: Path) -> tuple[dict[str, str], tuple[str, ...], set[str]]:
    host = LiveTree(str(tree))
    found = collect_mysql_accounts(host, collect_services(host))
    accounts = {c.account: c.hashed for c in found.credentials}
    assert len(accounts) == len(found.credentials), "an account came back twice"
    assert {c.service for c in found.credentials} <= {"MariaDB/MySQL"}
    return accounts, found.problems, {c.source for c in found.credentials}


def _assert_verifiable(accounts: dict[str, str]) -> None:
    verifier = service_verifier()
    for account, hashed in accounts.items():
        if hashed == "":
            continue
        assert verifier.verify(PASSWORDS[account].encode(), hashed), account
        assert not verifier.verify(WRONG.encode(), hashed), account


def test_root_over_the_socket_reads_every_account_with_a_password(server: tuple[Path, Path, int]) -> None:
    tree, _, _ = server
    accounts, problems, sources = _read(tree)
    assert problems == ()
    assert sources == {f"mysql.global_priv over {SOCKET}"}
    # roles, locked accounts (and mariadb.sys), unix_socket-only accounts and root's unusable 'invalid' native
    # string are nowhere; an OR chain keeps its password alternative
    assert {a: service_verifier().scheme(h) if h else None for a, h in accounts.items()} == EXPECTED
    assert accounts["nopass@localhost"] == ""
    _assert_verifiable(accounts)


def test_a_live_only_fact(server: tuple[Path, Path, int]) -> None:
    tree, _, _ = server
    host = RootHost(str(tree))
    with pytest.raises(Unavailable) as caught:
        collect_mysql_accounts(host, collect_services(host))
    assert caught.value.reason == SkipReason.LIVE_ONLY


def test_debian_cnf_login_is_used_when_root_is_refused(server: tuple[Path, Path, int]) -> None:
    """root with a password (not the socket): the empty-password attempt fails once, the maintenance login of
    debian.cnf reads the accounts, root's own hash among them."""
    tree, sock, _ = server
    root_pw = "root-Secret-0b8d3c"
    sql(sock, f"ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('{root_pw}')")
    try:
        cnf = tree / "etc/mysql/debian.cnf"
        cnf.write_text(f"# written by the test\n[client]\nhost = localhost\nuser = maint\npassword = \"{MAINT_PW}\"\n"
                       f"socket = {SOCKET}\n[mysql_upgrade]\nuser = nobody\n")
        accounts, problems, sources = _read(tree)
    finally:
        sql(sock, "ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING 'invalid' OR unix_socket",
            password=root_pw)
        (tree / "etc/mysql/debian.cnf").unlink()
    assert problems == ()
    assert sources == {f"mysql.global_priv over {SOCKET}"}
    assert set(accounts) == set(EXPECTED) | {"root@localhost"}
    assert service_verifier().verify(root_pw.encode(), accounts["root@localhost"])
    assert not service_verifier().verify(WRONG.encode(), accounts["root@localhost"])


def test_roots_my_cnf_over_loopback_tcp(server: tuple[Path, Path, int], tmp_path: Path) -> None:
    """No socket where the server's config says (so no root-over-socket), root's ~/.my.cnf (home from the
    tree's /etc/passwd) names 127.0.0.1 and the port: the accounts are read over TCP."""
    _, _, port = server
    tree = tmp_path / "tree"
    (tree / "etc/mysql").mkdir(parents=True)
    (tree / "etc/mysql/my.cnf").write_text(f"[mysqld]\nsocket = /run/none.sock\nport = {port}\n")
    (tree / "etc/passwd").write_text("root:x:0:0:root:/home/admin:/bin/bash\n")
    (tree / "home/admin").mkdir(parents=True)
    (tree / "home/admin/.my.cnf").write_text(f"[client]\nuser=nobody\n[mysql]\nuser=maint\npassword={MAINT_PW}\n"
                                             f"host=127.0.0.1\nport={port}\n")
    accounts, problems, sources = _read(tree)
    assert problems == ()
    assert sources == {f"mysql.global_priv over tcp 127.0.0.1:{port}"}
    assert {a: service_verifier().scheme(h) if h else None for a, h in accounts.items()} == EXPECTED
    _assert_verifiable(accounts)


def test_no_working_login_is_one_problem_line(server: tuple[Path, Path, int], tmp_path: Path) -> None:
    """Near miss: a server but no way in (no socket, a wrong debian.cnf password): nothing read, one line
    naming each attempt, and the configured password written nowhere."""
    _, _, port = server
    tree = tmp_path / "tree"
    (tree / "etc/mysql").mkdir(parents=True)
    (tree / "etc/mysql/my.cnf").write_text(f"[mysqld]\nsocket = /run/none.sock\nport = {port}\n")
    (tree / "etc/mysql/debian.cnf").write_text("[client]\nuser = maint\npassword = wrong-Secret-93\n")
    host = LiveTree(str(tree))
    found = collect_mysql_accounts(host, collect_services(host))
    assert found.credentials == ()
    assert found.problems == (
        "MariaDB/MySQL (/etc/mysql/my.cnf): account hashes not read: root over the unix socket: no unix socket at "
        f"/run/none.sock; /etc/mysql/debian.cnf: tcp 127.0.0.1:{port}: login as 'maint': access denied",)
    assert "wrong-Secret-93" not in repr(found)


def test_a_server_not_running_is_said_as_such(tmp_path: Path) -> None:
    port = free_port()                               # nothing listens there
    tree = tmp_path / "tree"
    (tree / "etc/mysql").mkdir(parents=True)
    (tree / "etc/mysql/my.cnf").write_text(f"[mysqld]\nsocket = /run/none.sock\nport = {port}\n")
    (tree / "etc/mysql/debian.cnf").write_text("[client]\nuser = maint\npassword = wrong-Secret-93\n")
    host = LiveTree(str(tree))
    [problem] = collect_mysql_accounts(host, collect_services(host)).problems
    assert problem.startswith("MariaDB/MySQL (/etc/mysql/my.cnf) is not running (nothing answers: root over the "
                              "unix socket: no unix socket at /run/none.sock; /etc/mysql/debian.cnf: tcp "
                              f"127.0.0.1:{port}: cannot connect")
    assert problem.endswith("its account hashes are not read")


def test_no_mariadb_configured_reads_nothing(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    host = LiveTree(str(tmp_path))
    assert collect_mysql_accounts(host, collect_services(host)).credentials == ()


def test_user_table_of_older_servers_is_read_by_its_columns(server: tuple[Path, Path, int]) -> None:
    """The mysql.user path (MariaDB < 10.4, MySQL) run against the real server's mysql.user: the columns it has
    are asked for (no account_locked here), the Password column and plugin read as those servers keep them."""
    _, sock, _ = server
    with MysqlSession.login(Endpoint.unix(str(sock)), "root", "") as session:
        columns = session.query("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'mysql' "
                                "AND TABLE_NAME = 'user'")
        query = user_table_query((row[0] or b"").decode() for row in columns.rows)
        assert query == ("SELECT HEX(`User`) AS `User`, HEX(`Host`) AS `Host`, HEX(`plugin`) AS `plugin`, "
                         "HEX(`authentication_string`) AS `authentication_string`, HEX(`Password`) AS `Password`, "
                         "HEX(`is_role`) AS `is_role` FROM mysql.user")
        problems: list[str] = []
        found = {c.account: c.hashed for c in accounts_from_user_table(session.query(query), "t", problems)}
    assert problems == []
    assert "sock@localhost" not in found and "reporting@" not in found       # unix_socket, role
    assert found["nopass@localhost"] == ""
    subset = {a: found[a] for a in ("app@localhost", "strong@%", "edwards@%")}
    assert {a: service_verifier().scheme(h) for a, h in subset.items()} == {
        "app@localhost": "mysql-native", "strong@%": "mysql-native", "edwards@%": "mariadb-ed25519"}
    _assert_verifiable(subset)


def test_user_table_rows_of_old_versions() -> None:
    """Rows as MariaDB 10.3 / MySQL 5.6 keep them (Password column, empty plugin), and MySQL 8's
    account_locked = 'Y' role rows."""
    def hexed(*values: str) -> tuple[bytes, ...]:
        return tuple(v.encode().hex().upper().encode() for v in values)
    native = algo.mysql_native(b"shadow")
    result = ResultSet(("User", "Host", "Password", "plugin", "authentication_string", "account_locked"), (
        hexed("old", "localhost", native, "", "", "N"),
        hexed("older", "localhost", "6f8c114b58f2ce9e", "", "", "N"),
        hexed("role8", "%", "", "caching_sha2_password", "", "Y"),
        hexed("empty", "localhost", "", "", "", "N")))
    problems: list[str] = []
    found = {c.account: c.hashed for c in accounts_from_user_table(result, "mysql.user over t", problems)}
    assert found == {"old@localhost": native, "empty@localhost": ""}
    assert problems == ["MariaDB/MySQL account older@localhost (mysql.user over t): authentication plugin "
                        "mysql_old_password is not checked"]


# -- stored forms ---------------------------------------------------------------------------------------


def test_caching_sha2_stored_bytes_become_the_verifiers_form() -> None:
    """MySQL 8 stores ``$A$005$`` + 20 binary salt bytes + 43 characters; the hashcat example (made by a real
    MySQL 8) taken back to those bytes converts to itself, and a value made here verifies."""
    kat = known_answers()["mysql-caching-sha2"]
    _, _, rounds, salt_hex, digest_hex = kat["hash"].replace("*", "$").split("$")[1:]
    stored = b"$A$" + rounds.encode() + b"$" + bytes.fromhex(salt_hex) + bytes.fromhex(digest_hex)
    assert stored_form("caching_sha2_password", stored) == kat["hash"]
    salt = bytes([0, 36, 255, 10, 13]) + b"saltsaltsaltsalt"[:15]          # '$', NUL, newline: binary is binary
    made = b"$A$005$" + salt + algo.sha256_crypt_digest(b"dragon", salt, 5000).encode()
    hashed = stored_form("caching_sha2_password", made)
    assert hashed is not None and service_verifier().scheme(hashed) == "mysql-caching-sha2"
    assert service_verifier().verify(b"dragon", hashed) and not service_verifier().verify(b"dragon!", hashed)
    assert stored_form("caching_sha2_password", b"") == ""


@pytest.mark.parametrize(("plugin", "stored", "expected"), [
    ("mysql_native_password", b"invalid", None),              # Debian's root: no password matches it
    ("mysql_native_password", b"", ""),
    ("ed25519", b"", None),                                   # no key: nobody logs in with ed25519
    ("caching_sha2_password", b"$A$005$short", None),
])
def test_stored_values_no_password_can_match(plugin: str, stored: bytes, expected: str | None) -> None:
    assert stored_form(plugin, stored) == expected


def test_an_unknown_plugin_is_said_not_checked() -> None:
    with pytest.raises(ValueError, match="authentication plugin sha256_password is not checked"):
        stored_form("sha256_password", b"$5$x")


# -- option files -----------------------------------------------------------------------------------------


def test_option_files_are_read_as_the_client_reads_them(tmp_path: Path) -> None:
    (tmp_path / "etc/mysql/conf.d").mkdir(parents=True)
    (tmp_path / "etc/mysql/debian.cnf").write_text(
        "[client]\nuser = first\npassword = 'quoted # not a comment'\n!include /etc/mysql/conf.d/more.cnf\n"
        "[mysqld]\nuser = mysql\n")
    (tmp_path / "etc/mysql/conf.d/more.cnf").write_text("[mysql]\nuser = second\nsocket = /run/x.sock\n")
    host = RootHost(str(tmp_path))
    login = option_file_login(host, "/etc/mysql/debian.cnf")
    assert login is not None
    assert (login.user, login.password, login.socket, login.host, login.source) == (
        "second", "quoted # not a comment", "/run/x.sock", None, "/etc/mysql/debian.cnf")
    assert "quoted" not in repr(login)


def test_debian_12_debian_cnf_names_no_login(tmp_path: Path) -> None:
    """Near miss: Debian 12's debian.cnf holds only comments: no login, and nothing said about it."""
    (tmp_path / "etc/mysql").mkdir(parents=True)
    (tmp_path / "etc/mysql/debian.cnf").write_text("# THIS FILE IS OBSOLETE. root uses unix_socket.\n")
    host = RootHost(str(tmp_path))
    assert option_file_login(host, "/etc/mysql/debian.cnf") is None
    assert configured_logins(host) == ([ROOT_OVER_SOCKET], [])


def test_a_broken_option_file_is_a_problem_line(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root/.my.cnf").write_text("user = before-any-group\n")
    logins, problems = configured_logins(RootHost(str(tmp_path)))
    assert logins == [ROOT_OVER_SOCKET]
    assert problems == ["MariaDB/MySQL: /root/.my.cnf not read: /root/.my.cnf:1: option 'user = before-any-group' "
                        "before any [group] header"]


# -- the query client -------------------------------------------------------------------------------------


def test_only_select_is_ever_sent(server: tuple[Path, Path, int]) -> None:
    _, sock, _ = server
    with MysqlSession.login(Endpoint.unix(str(sock)), "root", "") as session:
        for text in ("DROP USER app@localhost", "SELECT 1; DROP USER app@localhost", "  delete from mysql.user"):
            with pytest.raises(QueryError, match="only single SELECT statements are sent"):
                session.query(text)
        with pytest.raises(QueryError, match="server error 1146: Table 'mysql.nothing' doesn't exist"):
            session.query("SELECT 1 FROM mysql.nothing")
        assert session.query("SELECT 1, NULL, 'x'") == ResultSet(("1", "NULL", "x"), ((b"1", None, b"x"),))
    assert "app@localhost" in sql(sock, "SELECT CONCAT(User, '@', Host) FROM mysql.global_priv")


def _packets(payloads: list[bytes]) -> bytes:
    return b"".join(len(p).to_bytes(3, "little") + bytes([n & 0xFF]) + p for n, p in enumerate(payloads, 1))


_lenenc = st.binary(max_size=12).map(lambda b: bytes([len(b)]) + b)
_column = st.lists(_lenenc, min_size=6, max_size=7).map(b"".join)
_reply = st.one_of(
    st.binary(max_size=300),                                           # anything at all
    st.lists(st.binary(max_size=40), max_size=8).map(_packets),        # well-framed packets of anything
    st.tuples(st.integers(1, 3), st.lists(_column, max_size=3), st.lists(st.binary(max_size=30), max_size=4))
    .map(lambda t: _packets([bytes([t[0]]), *t[1], b"\xfe\0\0\2\0", *t[2]])),   # a plausible result set's shape
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_reply)
def test_garbage_replies_to_a_query_raise_only_query_error(reply: bytes) -> None:
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(reply)
        theirs.close()
        session = MysqlSession(Endpoint.unix("/garbage.sock"), ours, Reader(ours, timeout=2), "fuzz", 2.0)
        try:
            result = session.query("SELECT 1")
        except QueryError as exc:
            assert "\n" not in str(exc)
        else:
            assert all(len(row) == len(result.columns) for row in result.rows)
    finally:
        ours.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_reply)
def test_garbage_greetings_raise_only_query_error(reply: bytes) -> None:
    path = f"/tmp/hg-fuzz-{os.getpid()}-{threading.get_ident()}.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    Path(path).unlink(missing_ok=True)
    listener.bind(path)
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(reply)
            conn.settimeout(2)
            with suppress(OSError):
                conn.recv(4096)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        try:
            MysqlSession.login(Endpoint.unix(path), "root", "", timeout=2).close()
        except QueryError as exc:
            assert "\n" not in str(exc)
    finally:
        thread.join(5)
        listener.close()
        Path(path).unlink(missing_ok=True)


def test_query_error_is_a_host_error() -> None:
    """Collectors let HostError through as "not checked": a failed admin session is one of those."""
    assert issubclass(QueryError, HostError)
