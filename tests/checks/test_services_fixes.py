"""services.*: every fix names the exact lines, and the lines work in the real service.

For each service and each way it can be open, a tree (the clean host plus the service's file, written here)
gives a finding; its steps are applied to a copy with ``respond/apply.py`` (or its by-hand line, the first
backticked part of the text, is written where the text says, with each Param's example value), and then:

* the real service is started with the fixed file and shows the effect: Redis, MariaDB, PostgreSQL,
  memcached and vsftpd run here, on loopback, a unix socket, or inside a pair of network namespaces this
  test creates (``tests/netns.py``) where a client must come from another address (protected mode,
  pg_hba lines for non-local sources, memcached's UDP);
* the fixed tree is scanned again (``RootHost``): the finding is gone, or what remains is asserted exactly.

MongoDB, Elasticsearch and proftpd are not installable next to the others here (Debian 12 packages neither
of the first two; proftpd-core conflicts with vsftpd): their lines are read back with hostguard's own
readers (YAML for the first two) and the tree scanned again.
"""

from __future__ import annotations

import ftplib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.checks.services import _hba_with, _yaml_set
from hostguard.findings import Finding
from hostguard.host.base import Host, RootHost
from hostguard.host.services.postgres import parse_hba
from hostguard.host.services.yamlconf import flatten
from hostguard.host.web.model import Where
from hostguard.host.web.nginx import ConfigText
from hostguard.remediation import Command, DeleteLine, Edit
from hostguard.respond.apply import apply
from tests.conftest import build_tree, need_root, need_tool, run_one
from tests.host.services.helpers import anonymous_ftp_login, free_port, resp, running, wait_for
from tests.netns import SERVER_V4, Pair, netns_pair
from tests.realservers import as_postgres, new_mariadb_datadir, postgres_cluster

OPEN = "services.open_without_auth"
WEAK = "services.weak_auth"


# -- helpers ------------------------------------------------------------------------------------------------

def make_tree(tmp_path: Path, files: dict[str, str], name: str = "host") -> Path:
    """The clean host (its boot-time firewall drops everything but SSH and web) with ``files`` written in."""
    root = build_tree(tmp_path / name)
    for path, text in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def scan(root: Path, check_id: str) -> list[Finding]:
    found, skipped = run_one(check_id, RootHost(str(root)))
    assert skipped == [], skipped
    return found


def one(root: Path, check_id: str) -> Finding:
    [finding] = scan(root, check_id)
    return finding


def copy(root: Path, dest: Path) -> Path:
    shutil.copytree(root, dest, symlinks=True)
    return dest


def fixed(root: Path, finding: Finding, dest: Path) -> Path:
    """A copy of ``root`` with the finding's file steps applied the way ``hostguard fix`` applies them."""
    tree = copy(root, dest)
    left = apply(finding.remediation.steps, str(tree))
    assert all(isinstance(s, Command) and s.live_only for s in left.not_run)
    return tree


def snippets(finding: Finding) -> list[str]:
    """The lines a by-hand fix says to write (its backticked parts, web.py's convention: the first is the
    line to write), each Param replaced by its example; the line as it reads now, quoted after a place as
    "(`old`)", is left out."""
    parts = (finding.remediation.manual or "").split("`")
    out = []
    for before, part in zip(parts[0::2], parts[1::2], strict=False):
        if before.endswith("("):
            continue
        for param in finding.remediation.params:
            part = part.replace(param.name, param.example)
        out.append(part)
    return out


def set_line(path: Path, number: int, text: str) -> None:
    """Write ``text`` in place of line ``number`` (1-based) of ``path``."""
    lines = path.read_text().split("\n")
    lines[number - 1] = text
    path.write_text("\n".join(lines))


def add_lines(path: Path, text: str) -> None:
    body = path.read_text()
    path.write_text(body + ("" if body.endswith("\n") else "\n") + text + "\n")


def restart(finding: Finding) -> tuple[str, ...]:
    [last] = [s for s in finding.remediation.steps if isinstance(s, Command)]
    assert last.live_only and finding.remediation.steps[-1] == last
    return last.argv


def file_steps(finding: Finding) -> list[Edit | DeleteLine]:
    return [s for s in finding.remediation.steps if isinstance(s, Edit | DeleteLine)]


@pytest.fixture
def pair() -> Iterator[Pair]:
    with netns_pair() as made:
        yield made


def in_ns(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def client_run(pair: Pair, code: str) -> str:
    """A Python snippet run in the client namespace (another address than the server's); its stdout."""
    done = pair.run(pair.client, [sys.executable, "-c", code], timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# -- Redis --------------------------------------------------------------------------------------------------

REDIS_CONF = "/etc/redis/redis.conf"
REDIS_OPEN = "# Redis config written for the tests\nbind 0.0.0.0\nprotected-mode no\nport 6379\n"


def _redis_server_conf(tree: Path, tmp_path: Path, extra: str) -> Path:
    """The tree's redis.conf as the server's file, with a private ``dir`` and ``extra`` (the last value
    wins in redis.conf)."""
    (tmp_path / "data").mkdir(exist_ok=True)
    conf = tmp_path / "server.conf"
    shutil.copy(tree / REDIS_CONF.lstrip("/"), conf)
    add_lines(conf, f"dir {tmp_path / 'data'}\nsave \"\"\n{extra}")
    return conf


REMOTE_PING = (f"import socket\ns = socket.create_connection(({SERVER_V4!r}, 6379), timeout=5)\n"
               "s.sendall(b'PING\\r\\n')\nprint(s.recv(200).decode().split(' ')[0].strip())\n")


def test_redis_protected_mode_step_makes_it_refuse_remote_clients(tmp_path: Path, pair: Pair) -> None:
    """Hit: protected-mode no on every interface, no password: the step edits line 3 and restarts the
    running server. A real redis-server in a namespace answers a client from another address PONG before
    and DENIED after; the fixed tree is quiet."""
    need_tool("redis-server")
    root = make_tree(tmp_path, {REDIS_CONF: REDIS_OPEN})
    finding = one(root, OPEN)
    assert file_steps(finding) == [Edit(REDIS_CONF, 3, "protected-mode no", "protected-mode yes")]
    assert restart(finding) == ("systemctl", "try-restart", "redis-server")
    after = fixed(root, finding, tmp_path / "fixed")
    assert scan(after, OPEN) == [] and scan(after, WEAK) == []
    for tree, answer in ((root, "+PONG"), (after, "-DENIED")):
        run_dir = tmp_path / answer.strip("+-")
        run_dir.mkdir()
        conf = _redis_server_conf(tree, run_dir, "")
        with running(in_ns(pair.server, ["redis-server", str(conf)]), conf.parent / "log"):
            wait_for(lambda: pair.connects(SERVER_V4, 6379), what="redis-server")
            assert client_run(pair, REMOTE_PING) == answer


def test_near_miss_redis_with_protected_mode_on_has_nothing_to_fix(tmp_path: Path) -> None:
    """Near miss: the same Redis with protected mode on (written) refuses the network itself: no finding."""
    root = make_tree(tmp_path, {REDIS_CONF: REDIS_OPEN.replace("protected-mode no", "protected-mode yes")})
    assert scan(root, OPEN) == []


def test_redis_password_line_makes_it_answer_noauth(tmp_path: Path) -> None:
    """The by-hand part: `requirepass <example>` as a new line; the real server asks for it (NOAUTH), takes
    the example password, and the tree is quiet even with protected mode still off."""
    need_tool("redis-server")
    root = make_tree(tmp_path, {REDIS_CONF: REDIS_OPEN})
    finding = one(root, OPEN)
    password_line, bind_line = snippets(finding)[:2]
    assert password_line == "requirepass 9f3c1b7e2a6d48c0b5e1f7a3d9c2e486"
    assert f"as a new line of {REDIS_CONF}" in (finding.remediation.manual or "")
    assert bind_line == "bind 127.0.0.1 -::1"
    assert f"in place of {REDIS_CONF}:2 (`bind 0.0.0.0`)" in (finding.remediation.manual or "")
    tree = copy(root, tmp_path / "password")
    add_lines(tree / REDIS_CONF.lstrip("/"), password_line)
    assert scan(tree, OPEN) == []
    sock = tmp_path / "r.sock"
    conf = _redis_server_conf(tree, tmp_path, f"port 0\nunixsocket {sock}\n")
    with running(["redis-server", str(conf)], tmp_path / "log"):
        wait_for(sock.exists, what="redis-server")
        ping, auth, again = resp(str(sock), ["PING"], ["AUTH", password_line.split()[1]], ["PING"])
    assert isinstance(ping, Exception) and str(ping).startswith("NOAUTH")
    assert (auth, again) == ("OK", "PONG")


def test_redis_bind_line_keeps_it_to_loopback(tmp_path: Path) -> None:
    need_tool("redis-server")
    root = make_tree(tmp_path, {REDIS_CONF: REDIS_OPEN})
    finding = one(root, OPEN)
    tree = copy(root, tmp_path / "bound")
    set_line(tree / REDIS_CONF.lstrip("/"), 2, snippets(finding)[1])
    assert scan(tree, OPEN) == []
    port = free_port()
    sock = tmp_path / "r.sock"
    conf = _redis_server_conf(tree, tmp_path, f"port {port}\nunixsocket {sock}\n")
    with running(["redis-server", str(conf)], tmp_path / "log"):
        wait_for(sock.exists, what="redis-server")
        [bind] = resp(str(sock), ["CONFIG", "GET", "bind"])
    assert bind == ["bind", "127.0.0.1 -::1"]


def test_redis_default_user_line_gets_a_password_in_place(tmp_path: Path) -> None:
    """A `user default ... nopass` line overrides requirepass: the fix writes that same line with the
    password instead of nopass, at its own line, and the real server then asks for it."""
    need_tool("redis-server")
    root = make_tree(tmp_path, {REDIS_CONF: REDIS_OPEN + "user default on nopass ~* &* +@all\n"})
    finding = one(root, OPEN)
    first = snippets(finding)[0]
    assert first == "user default on >9f3c1b7e2a6d48c0b5e1f7a3d9c2e486 ~* &* +@all"
    assert f"in place of {REDIS_CONF}:5 (`user default on nopass ~* &* +@all`)" in (finding.remediation.manual or "")
    tree = copy(root, tmp_path / "acl")
    set_line(tree / REDIS_CONF.lstrip("/"), 5, first)
    assert scan(tree, OPEN) == []
    sock = tmp_path / "r.sock"
    conf = _redis_server_conf(tree, tmp_path, f"port 0\nunixsocket {sock}\n")
    with running(["redis-server", str(conf)], tmp_path / "log"):
        wait_for(sock.exists, what="redis-server")
        ping, auth = resp(str(sock), ["PING"], ["AUTH", "default", "9f3c1b7e2a6d48c0b5e1f7a3d9c2e486"])
    assert isinstance(ping, Exception) and str(ping).startswith("NOAUTH") and auth == "OK"


def test_redis_aclfile_gets_the_default_user_line(tmp_path: Path) -> None:
    """With an aclfile requirepass is ignored: the line to write goes into the ACL file."""
    need_tool("redis-server")
    acl = "/etc/redis/users.acl"
    root = make_tree(tmp_path, {REDIS_CONF: REDIS_OPEN + f"aclfile {acl}\n",
                                acl: "user app on >app-secret-long-enough ~app:* +@read\n"})
    finding = one(root, OPEN)
    first = snippets(finding)[0]
    assert first == "user default on >9f3c1b7e2a6d48c0b5e1f7a3d9c2e486 ~* &* +@all"
    assert f"as a new line of {acl}" in (finding.remediation.manual or "")
    tree = copy(root, tmp_path / "aclfile")
    add_lines(tree / acl.lstrip("/"), first)
    assert scan(tree, OPEN) == []
    sock = tmp_path / "r.sock"
    conf = _redis_server_conf(tree, tmp_path, f"port 0\nunixsocket {sock}\naclfile {tree / acl.lstrip('/')}\n")
    with running(["redis-server", str(conf)], tmp_path / "log"):
        wait_for(sock.exists, what="redis-server")
        [ping] = resp(str(sock), ["PING"])
    assert isinstance(ping, Exception) and str(ping).startswith("NOAUTH")


# -- MariaDB/MySQL ------------------------------------------------------------------------------------------

MY_CNF = "/etc/mysql/my.cnf"


@pytest.fixture(scope="module")
def datadir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_mariadb_datadir(tmp_path_factory.mktemp("mariadb"))


def _stranger_gets_in(tree: Path, tmp_path: Path, datadir: Path, overrides: str = "bind-address=127.0.0.1\n"
                      ) -> tuple[bool, str]:
    """Start mariadbd with the tree's my.cnf (then a private datadir, socket and port); whether an unknown
    account with a wrong password is let in over the socket, and the server's bind address."""
    sock = tmp_path / "m.sock"
    conf = tmp_path / "server.cnf"
    shutil.copy(tree / MY_CNF.lstrip("/"), conf)
    add_lines(conf, f"[mysqld]\ndatadir={datadir}\nsocket={sock}\nuser=root\npid-file={tmp_path}/m.pid\n"
                    f"log-error={tmp_path}/err.log\nport={free_port()}\n{overrides}")
    with running(["mariadbd", f"--defaults-file={conf}"], tmp_path / "log"):
        wait_for(sock.exists, what="mariadbd")
        stranger = subprocess.run(["mariadb", "--no-defaults", "-S", str(sock), "-u", "nobody.test",
                                   "-pnot-the-password", "-N", "-B", "-e", "select 1"], capture_output=True, text=True)
        bind = subprocess.run(["mariadb", "--no-defaults", "-S", str(sock), "-N", "-B", "-e", "select @@bind_address"],
                              capture_output=True, text=True)
    assert bind.returncode == 0 or stranger.returncode != 0, bind.stderr
    return stranger.returncode == 0, bind.stdout.strip()


def test_mariadb_skip_grant_tables_lines_are_deleted(tmp_path: Path, datadir: Path) -> None:
    """Hit: skip-grant-tables turned on twice (`skip_grant_tables=1`, `loose-skip-grant-tables`), a `=0`
    line between them: both lines that turn it on are deleted, the one that turns it off stays. A stranger
    with a wrong password gets in before and is refused after; the fixed tree is quiet."""
    text = ("# MariaDB config written for the tests\n[mysqld]\nbind-address = 0.0.0.0\nskip_grant_tables=1\n"
            "skip-grant-tables=0\n[mariadb]\nloose-skip-grant-tables\nport = 3306\n")
    root = make_tree(tmp_path, {MY_CNF: text})
    finding = one(root, OPEN)
    assert file_steps(finding) == [DeleteLine(MY_CNF, 4, "skip_grant_tables=1"),
                                   DeleteLine(MY_CNF, 7, "loose-skip-grant-tables")]
    assert restart(finding) == ("systemctl", "try-restart", "mysql")
    after = fixed(root, finding, tmp_path / "fixed")
    assert scan(after, OPEN) == []
    assert (after / MY_CNF.lstrip("/")).read_text().count("skip") == 1   # the =0 line stays
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    assert _stranger_gets_in(root, tmp_path / "before", datadir)[0] is True
    assert _stranger_gets_in(after, tmp_path / "after", datadir)[0] is False


def test_mariadb_bind_line_is_taken_by_the_server(tmp_path: Path, datadir: Path) -> None:
    """The by-hand line: `bind-address = 127.0.0.1` in place of line 3; mariadbd binds it, the tree is quiet."""
    root = make_tree(tmp_path, {MY_CNF: "[mysqld]\nport = 3306\nbind-address = 0.0.0.0\nskip-grant-tables\n"})
    finding = one(root, OPEN)
    assert file_steps(finding) == [DeleteLine(MY_CNF, 4, "skip-grant-tables")]
    first = snippets(finding)[0]
    assert first == "bind-address = 127.0.0.1"
    assert f"in place of {MY_CNF}:3 (`bind-address = 0.0.0.0`)" in (finding.remediation.manual or "")
    tree = copy(root, tmp_path / "bound")
    set_line(tree / MY_CNF.lstrip("/"), 3, first)
    assert scan(tree, OPEN) == []
    (tmp_path / "run").mkdir()
    assert _stranger_gets_in(tree, tmp_path / "run", datadir, overrides="")[1] == "127.0.0.1"


# -- PostgreSQL ---------------------------------------------------------------------------------------------

PG_ETC = "/etc/postgresql/15/main"
PG_CONF = f"{PG_ETC}/postgresql.conf"
PG_HBA = f"{PG_ETC}/pg_hba.conf"
HBA_OPEN = ("# pg_hba written for the tests\nlocal   all   postgres   peer\n"
            "host    all   all        127.0.0.1/32   scram-sha-256\n"
            "host    all   all        0.0.0.0/0      trust   # the whole Internet\n"
            "host    sales app        198.51.100.0/24  md5\n")


_as_postgres = as_postgres


@pytest.fixture(scope="module")
def cluster() -> Iterator[Path]:
    """A fresh cluster owned by the postgres account, in a directory it can reach."""
    with postgres_cluster("hostguard-pgfix-") as base:
        yield base


def _owned(cluster: Path, name: str, source: Path) -> Path:
    target = cluster / name
    shutil.copy(source, target)
    os.chown(target, pwd.getpwnam("postgres").pw_uid, -1)
    return target


def _pg_tree(tmp_path: Path, hba: str = HBA_OPEN) -> Path:
    return make_tree(tmp_path, {PG_CONF: "# written for the tests\nlisten_addresses = '*'\nport = 5432\n"
                                         f"hba_file = '{PG_HBA}'\n", PG_HBA: hba})


def test_postgres_trust_line_becomes_scram_and_refuses_a_login_without_password(
        tmp_path: Path, cluster: Path, pair: Pair) -> None:
    """Hit: a non-local trust line (0.0.0.0/0) with a comment: the step writes the same line with
    scram-sha-256 (comment kept), then reloads the cluster. A real postgres in a namespace, with the fixed
    file as its pg_hba (no error in pg_hba_file_rules), refuses a client from another address that gives no
    password; before, the same client got in. The re-scan is left with the md5 line alone: weak_auth
    (low: the clean host's firewall lets nobody reach 5432), deciding line named."""
    root = _pg_tree(tmp_path)
    finding = one(root, OPEN)
    assert file_steps(finding) == [Edit(PG_HBA, 4, "host    all   all        0.0.0.0/0      trust   # the whole Internet",
                                        "host    all   all        0.0.0.0/0      scram-sha-256   # the whole Internet")]
    assert restart(finding) == ("systemctl", "try-reload-or-restart", "postgresql@15-main")
    after = fixed(root, finding, tmp_path / "fixed")
    assert scan(after, OPEN) == []
    [left] = scan(after, WEAK)
    assert str(left.severity) == "low" and left.evidence["decided_by"] == [f"{PG_HBA}:5"]
    port = free_port()
    sock_dir = cluster / "sock"
    sock_dir.mkdir(exist_ok=True)
    os.chown(sock_dir, pwd.getpwnam("postgres").pw_uid, -1)
    results = {}
    for label, tree in (("before", root), ("after", after)):
        hba = _owned(cluster, f"hba-{label}.conf", tree / PG_HBA.lstrip("/"))
        argv = ["runuser", "-u", "postgres", "--", "postgres", "-D", str(cluster / "data"), "-c", f"hba_file={hba}",
                "-c", f"listen_addresses={SERVER_V4}", "-k", str(sock_dir), "-p", str(port)]
        with running(in_ns(pair.server, argv), cluster / f"{label}.log"):
            wait_for((sock_dir / f".s.PGSQL.{port}").exists, what="postgres")
            errors = _as_postgres(["psql", "-h", str(sock_dir), "-p", str(port), "-U", "postgres", "-d", "postgres",
                                   "-Atc", "select count(*) from pg_hba_file_rules where error is not null"],
                                  ns=pair.server)
            assert errors.stdout.strip() == "0", errors.stderr
            results[label] = _as_postgres(["psql", "-w", "-h", SERVER_V4, "-p", str(port), "-U", "postgres", "-d",
                                           "postgres", "-Atc", "select 1"], ns=pair.client)
    assert results["before"].stdout.strip() == "1"
    assert results["after"].returncode != 0 and "no password supplied" in results["after"].stderr


def test_postgres_md5_line_is_given_by_hand_with_the_rehash_note(tmp_path: Path, cluster: Path) -> None:
    """Near miss of the step: an md5 line is not rewritten for the owner (stored md5 passwords would stop
    working): the text gives the exact line at its place and says to set the passwords again under
    scram-sha-256. Written there, the server reads it without error and the tree is quiet."""
    root = _pg_tree(tmp_path, HBA_OPEN.replace("trust   # the whole Internet", "scram-sha-256"))
    finding = one(root, WEAK)
    assert finding.remediation.steps == ()
    manual = finding.remediation.manual or ""
    first = snippets(finding)[0]
    assert first == "host    sales app        198.51.100.0/24  scram-sha-256"
    assert f"in place of {PG_HBA}:5 (`host    sales app        198.51.100.0/24  md5`)" in manual
    assert "password_encryption = scram-sha-256" in manual and "cannot log in with scram-sha-256" in manual
    tree = copy(root, tmp_path / "scram")
    set_line(tree / PG_HBA.lstrip("/"), 5, first)
    assert scan(tree, WEAK) == [] and scan(tree, OPEN) == []
    hba = _owned(cluster, "hba-md5.conf", tree / PG_HBA.lstrip("/"))
    port = free_port()
    sock_dir = cluster / "sock"
    sock_dir.mkdir(exist_ok=True)
    os.chown(sock_dir, pwd.getpwnam("postgres").pw_uid, -1)
    argv = ["runuser", "-u", "postgres", "--", "postgres", "-D", str(cluster / "data"), "-c", f"hba_file={hba}",
            "-c", "listen_addresses=", "-k", str(sock_dir), "-p", str(port)]
    with running(argv, cluster / "md5.log"):
        wait_for((sock_dir / f".s.PGSQL.{port}").exists, what="postgres")
        rules = _as_postgres(["psql", "-h", str(sock_dir), "-p", str(port), "-U", "postgres", "-d", "postgres",
                              "-Atc", "select line_number, auth_method, coalesce(error, '') from pg_hba_file_rules"])
    assert "5|scram-sha-256|" in rules.stdout.splitlines(), rules.stdout + rules.stderr


def test_postgres_listen_line_is_read_by_the_server(tmp_path: Path, cluster: Path) -> None:
    root = _pg_tree(tmp_path)
    finding = one(root, OPEN)
    listen = [s for s in snippets(finding) if s.startswith("listen_addresses")]
    assert listen == ["listen_addresses = 'localhost'"]
    assert f"in place of {PG_CONF}:2 (`listen_addresses = '*'`)" in (finding.remediation.manual or "")
    tree = copy(root, tmp_path / "listen")
    set_line(tree / PG_CONF.lstrip("/"), 2, listen[0])
    assert scan(tree, OPEN) == [] and scan(tree, WEAK) == []
    data = cluster / "data"
    saved = (data / "postgresql.conf").read_bytes()
    try:
        _owned(cluster, "data/postgresql.conf", tree / PG_CONF.lstrip("/"))
        (data / "postgresql.conf").write_text((data / "postgresql.conf").read_text().replace(f"hba_file = '{PG_HBA}'",
                                                                                               ""))
        shown = _as_postgres(["postgres", "-D", str(data), "-C", "listen_addresses"])
    finally:
        (data / "postgresql.conf").write_bytes(saved)
    assert shown.stdout.strip() == "localhost", shown.stderr


# -- Memcached ----------------------------------------------------------------------------------------------

MC_CONF = "/etc/memcached.conf"
MC_OPEN = "# memcached config written for the tests\n-m 16\n-p 11211\n-U 11211\n-u memcache\n-l 0.0.0.0\n"
WRAPPER = "/usr/share/memcached/scripts/systemd-memcached-wrapper"
UDP_STATS = (f"import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(2)\n"
             f"s.sendto(b'\\x00\\x01\\x00\\x00\\x00\\x01\\x00\\x00stats\\r\\n', ({SERVER_V4!r}, 11211))\n"
             "try:\n    print('udp answers' if b'STAT pid' in s.recv(65536) else 'udp odd')\n"
             "except OSError:\n    print('udp silent')\n")


def test_memcached_udp_step_turns_udp_off_and_the_tcp_finding_stays(tmp_path: Path, pair: Pair) -> None:
    """Hit: `-U 11211` on line 4 -> `-U 0` and a restart. The real memcached (Debian's wrapper reading the
    copy, in a namespace) answers a UDP stats request from another address before and is silent after. The
    re-scan still reports memcached on every interface without a password (TCP only now), as it must."""
    need_tool(WRAPPER, "memcached")
    root = make_tree(tmp_path, {MC_CONF: MC_OPEN})
    finding = one(root, OPEN)
    assert file_steps(finding) == [Edit(MC_CONF, 4, "-U 11211", "-U 0")]
    assert restart(finding) == ("systemctl", "try-restart", "memcached")
    assert [x.split(" (")[0] for x in finding.evidence["listens"]] == ["tcp 0.0.0.0:11211", "udp 0.0.0.0:11211"]
    after = fixed(root, finding, tmp_path / "fixed")
    left = one(after, OPEN)
    assert left.fingerprint == finding.fingerprint and str(left.severity) == "medium"
    assert [x.split(" (")[0] for x in left.evidence["listens"]] == ["tcp 0.0.0.0:11211"]
    assert file_steps(left) == []
    for tree, answer in ((root, "udp answers"), (after, "udp silent")):
        with running(in_ns(pair.server, [WRAPPER, str(tree / MC_CONF.lstrip("/"))]), tmp_path / f"{answer}.log"):
            wait_for(lambda: pair.connects(SERVER_V4, 11211), what="memcached")
            assert client_run(pair, UDP_STATS) == answer


def test_memcached_listen_line_keeps_it_to_loopback(tmp_path: Path, pair: Pair) -> None:
    need_tool(WRAPPER, "memcached")
    root = make_tree(tmp_path, {MC_CONF: MC_OPEN})
    finding = one(root, OPEN)
    first = snippets(finding)[0]
    assert first == "-l 127.0.0.1"
    assert f"in place of {MC_CONF}:6 (`-l 0.0.0.0`)" in (finding.remediation.manual or "")
    tree = copy(root, tmp_path / "bound")
    set_line(tree / MC_CONF.lstrip("/"), 6, first)
    assert scan(tree, OPEN) == []
    with running(in_ns(pair.server, [WRAPPER, str(tree / MC_CONF.lstrip("/"))]), tmp_path / "log"):
        wait_for(lambda: pair.run(pair.server, [sys.executable, "-c", "import socket; socket.create_connection("
                                                "('127.0.0.1', 11211), timeout=1)"]).returncode == 0,
                 what="memcached")
        assert not pair.connects(SERVER_V4, 11211)


def test_near_miss_memcached_on_a_socket_only_is_quiet(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {MC_CONF: "-s /run/memcached/memcached.sock\n-U 11211\n-l 0.0.0.0\n"})
    assert scan(root, OPEN) == []


# -- vsftpd -------------------------------------------------------------------------------------------------

VSFTPD_CONF = "/etc/vsftpd.conf"


@pytest.fixture
def ftp_dirs() -> Iterator[Path]:
    """An anonymous root and an empty secure_chroot_dir, owned by root, not writable by others."""
    base = Path(tempfile.mkdtemp(prefix="hostguard-ftpfix-"))
    try:
        base.chmod(0o755)
        (base / "anon").mkdir(mode=0o755)
        (base / "empty").mkdir(mode=0o755)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _vsftpd(tree: Path, tmp_path: Path, dirs: Path, port: int) -> list[str]:
    """vsftpd with the tree's file, then loopback, a free port, private directories and a certificate made
    here in place of the tree's snakeoil paths (vsftpd takes the last value of a setting)."""
    cert, key = _self_signed(tmp_path)
    conf = tmp_path / "vsftpd.conf"
    shutil.copy(tree / VSFTPD_CONF.lstrip("/"), conf)
    add_lines(conf, f"listen_address=127.0.0.1\nlisten_port={port}\nbackground=NO\nanon_root={dirs / 'anon'}\n"
                    f"secure_chroot_dir={dirs / 'empty'}\nseccomp_sandbox=NO\nxferlog_enable=NO\n"
                    f"pam_service_name=hostguard-test-none\nrsa_cert_file={cert}\nrsa_private_key_file={key}\n")
    return ["vsftpd", str(conf)]


def _up(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


VSFTPD_TLS = ("local_enable=YES\nssl_enable=YES\nforce_local_logins_ssl=YES\n"
              "rsa_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem\n")


@pytest.mark.parametrize(("text", "step"), [
    ("listen=YES\nanonymous_enable=YES\n" + VSFTPD_TLS,
     Edit(VSFTPD_CONF, 2, "anonymous_enable=YES", "anonymous_enable=NO")),
    # no anonymous_enable line: the compiled default is YES, so the line is added after the last one
    ("listen=YES\n" + VSFTPD_TLS, Edit(VSFTPD_CONF, 5, "rsa_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem",
                                       "rsa_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem\nanonymous_enable=NO")),
], ids=["written", "compiled_default"])
def test_vsftpd_anonymous_step_refuses_anonymous(tmp_path: Path, ftp_dirs: Path, text: str, step: Edit) -> None:
    """Hit: anonymous login on (written, or vsftpd's compiled default), local users over TLS: the step writes
    anonymous_enable=NO and reloads. The real vsftpd lets anonymous in before and refuses it after; the fixed
    tree is quiet for both checks. (With local logins off as well, vsftpd refuses every session: "both
    local and anonymous access disabled", which the fix says.)"""
    need_root("vsftpd (it chroots)")
    need_tool("vsftpd")
    root = make_tree(tmp_path, {VSFTPD_CONF: text})
    finding = one(root, OPEN)
    assert file_steps(finding) == [step]
    assert restart(finding) == ("systemctl", "try-reload-or-restart", "vsftpd")
    after = fixed(root, finding, tmp_path / "fixed")
    assert scan(after, OPEN) == [] and scan(after, WEAK) == []
    for tree, allowed in ((root, True), (after, False)):
        port = free_port()
        with running(_vsftpd(tree, tmp_path, ftp_dirs, port), tmp_path / "log"):
            wait_for(lambda port=port: _up(port), what="vsftpd")
            assert anonymous_ftp_login(port) is allowed


def test_vsftpd_anonymous_with_local_users_in_clear_leaves_the_weak_finding(tmp_path: Path) -> None:
    """What remains after the step, asserted exactly: local logins still in clear (weak_auth, low here)."""
    root = make_tree(tmp_path, {VSFTPD_CONF: "listen=YES\nanonymous_enable=YES\nlocal_enable=YES\n"})
    finding = one(root, OPEN)
    after = fixed(root, finding, tmp_path / "fixed")
    assert scan(after, OPEN) == []
    [left] = scan(after, WEAK)
    assert left.target == {"kind": "config", "path": VSFTPD_CONF, "service": "vsftpd"}
    assert str(left.severity) == "low" and left.remediation.steps == ()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    need_tool("openssl")
    cert, key = tmp_path / "ftp.pem", tmp_path / "ftp.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=ftp.test", "-keyout", str(key), "-out", str(cert)], capture_output=True, check=True)
    return cert, key


def test_vsftpd_tls_lines_make_local_logins_use_tls(tmp_path: Path, ftp_dirs: Path) -> None:
    """weak_auth's by-hand lines (the services.weak_auth hit tree: local logins, ssl_enable=NO), written at the
    end with a certificate made here for FTP_CERT/FTP_KEY: vsftpd refuses a login in clear ("must use
    encryption") and takes AUTH TLS; the tree is quiet."""
    need_root("vsftpd (it chroots)")
    need_tool("vsftpd")
    root = make_tree(tmp_path, {VSFTPD_CONF: "# vsftpd config written for the tests\nlisten=YES\nanonymous_enable=NO\n"
                                             "local_enable=YES\nwrite_enable=YES\nchroot_local_user=YES\n"
                                             "ssl_enable=NO\n"})
    finding = one(root, WEAK)
    assert finding.remediation.steps == ()
    manual = finding.remediation.manual or ""
    assert f"at the end of {VSFTPD_CONF}" in manual and f"{VSFTPD_CONF}:7 no longer counts" in manual
    assert "make-ssl-cert generate-default-snakeoil" in manual
    assert [(p.name, p.example) for p in finding.remediation.params] == [
        ("FTP_CERT", "/etc/ssl/certs/ssl-cert-snakeoil.pem"), ("FTP_KEY", "/etc/ssl/private/ssl-cert-snakeoil.key")]
    cert, key = _self_signed(tmp_path)
    lines = (finding.remediation.manual or "").split("`")[1].replace("FTP_CERT", str(cert)).replace("FTP_KEY", str(key))
    assert lines.splitlines()[:3] == ["ssl_enable=YES", "force_local_logins_ssl=YES", "force_local_data_ssl=YES"]
    tree = copy(root, tmp_path / "tls")
    add_lines(tree / VSFTPD_CONF.lstrip("/"), lines)
    assert scan(tree, WEAK) == [] and scan(tree, OPEN) == []
    port = free_port()
    with running(_vsftpd(tree, tmp_path, ftp_dirs, port), tmp_path / "log"):
        wait_for(lambda: _up(port), what="vsftpd")
        plain = ftplib.FTP()
        plain.connect("127.0.0.1", port, timeout=10)
        with pytest.raises(ftplib.error_perm, match="encryption"):
            plain.sendcmd("USER someone")
        plain.close()
        tls = ftplib.FTP_TLS()
        tls.connect("127.0.0.1", port, timeout=10)
        assert tls.auth().startswith("234")
        tls.close()


# -- proftpd (read back by hostguard's reader: not installable next to vsftpd) -------------------------------

PROFTPD_CONF = "/etc/proftpd/proftpd.conf"
PROFTPD_OPEN = ("# proftpd config written for the tests\nServerType standalone\nPort 21\n"
                "<Anonymous ~ftp>\n  User ftp\n  Group nogroup\n  <Limit WRITE>\n    DenyAll\n  </Limit>\n"
                "</Anonymous>\n")


def test_proftpd_anonymous_section_lines_then_tls_lines(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {PROFTPD_CONF: PROFTPD_OPEN})
    finding = one(root, OPEN)
    manual = finding.remediation.manual or ""
    assert finding.remediation.steps == ()
    assert snippets(finding)[0] == "<Anonymous ~ftp>"
    assert f"Delete lines 4-10 of {PROFTPD_CONF}" in manual
    tree = copy(root, tmp_path / "noanon")
    path = tree / PROFTPD_CONF.lstrip("/")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + lines[10:]) + "\n")
    assert scan(tree, OPEN) == []
    weak = one(tree, WEAK)      # what remains: logins in clear
    tls = (weak.remediation.manual or "").split("`")[1]
    assert tls.splitlines() == ["TLSEngine on", "TLSRequired on", "TLSRSACertificateFile FTP_CERT",
                                "TLSRSACertificateKeyFile FTP_KEY"]
    add_lines(path, "\n".join(snippets(weak)[0].splitlines()))
    assert scan(tree, WEAK) == [] and scan(tree, OPEN) == []


# -- MongoDB and Elasticsearch (read back as YAML by hostguard's readers) ------------------------------------

MONGO_CONF = "/etc/mongod.conf"


@pytest.mark.parametrize(("text", "auth_at", "bind_at", "auth_line", "bind_line"), [
    ("net:\n  port: 27017\n  bindIp: 0.0.0.0  # everyone\nsecurity:\n  authorization: disabled\n",
     5, 3, "  authorization: enabled", "  bindIp: 127.0.0.1  # everyone"),
    ("net.bindIpAll: true\n", 0, 1, "security:\n  authorization: enabled", "net.bindIp: 127.0.0.1"),
    ("net:\n  bindIpAll: true\nsecurity:\n  javascriptEnabled: false\n", 0, 2, "  authorization: enabled",
     "  bindIp: 127.0.0.1"),
], ids=["written_disabled", "dotted_default", "security_section"])
def test_mongodb_lines_read_back(tmp_path: Path, text: str, auth_at: int, bind_at: int, auth_line: str,
                                 bind_line: str) -> None:
    root = make_tree(tmp_path, {MONGO_CONF: text})
    finding = one(root, OPEN)
    auth, bind = snippets(finding)[:2]
    assert (auth, bind) == (auth_line, bind_line)
    manual = finding.remediation.manual or ""
    assert f"in place of {MONGO_CONF}:{bind_at}" in manual
    tree = copy(root, tmp_path / "fixed")
    path = tree / MONGO_CONF.lstrip("/")
    if auth_at:
        assert f"in place of {MONGO_CONF}:{auth_at}" in manual
        set_line(path, auth_at, auth)
    elif auth.startswith(" "):
        assert f"as a new line after {MONGO_CONF}:4" in manual
        add_lines(path, auth)
    else:
        assert f"at the end of {MONGO_CONF}" in manual
        add_lines(path, auth)
    values = flatten(path.read_text(), MONGO_CONF)
    assert values["security.authorization"].value == "enabled"
    assert scan(tree, OPEN) == []
    set_line(path, bind_at, bind)
    assert "127.0.0.1" in flatten(path.read_text(), MONGO_CONF)["net.bindIp"].value


ES_CONF = "/etc/elasticsearch/elasticsearch.yml"


def test_elasticsearch_lines_read_back(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {ES_CONF: "cluster.name: test\nnetwork.host: 0.0.0.0\nxpack:\n  security:\n"
                                         "    enabled: false\n"})
    finding = one(root, OPEN)
    security, host = snippets(finding)[0], [s for s in snippets(finding) if "host" in s][0]
    assert security == "    enabled: true"
    manual = finding.remediation.manual or ""
    assert f"in place of {ES_CONF}:5 (`enabled: false`)" in manual
    assert host == "network.host: 127.0.0.1"
    assert f"in place of {ES_CONF}:2 (`network.host: 0.0.0.0`)" in manual
    tree = copy(root, tmp_path / "secure")
    path = tree / ES_CONF.lstrip("/")
    set_line(path, 5, security)
    assert flatten(path.read_text(), ES_CONF)["xpack.security.enabled"].value == "true"
    assert scan(tree, OPEN) == []
    tree2 = copy(root, tmp_path / "local")
    set_line(tree2 / ES_CONF.lstrip("/"), 2, host)
    assert scan(tree2, OPEN) == []


# -- the line rewriters, on any input ------------------------------------------------------------------------

HBA_TYPE = st.sampled_from(["local", "host", "hostssl", "hostnossl"])
HBA_WORD = st.sampled_from(["all", "sales", '"trust"', '"a b"', "app,bob", "sameuser", "md5"])
HBA_ADDR = st.sampled_from(["0.0.0.0/0", "192.0.2.0/24", "198.51.100.7 255.255.255.255", "db.test", "all",
                            "2001:db8::/32"])
HBA_METHOD = st.sampled_from(["trust", "md5", "password", "ident", "scram-sha-256", "reject"])
SPACE = st.sampled_from([" ", "\t", "   "])


@settings(max_examples=300, deadline=None)
@given(HBA_TYPE, HBA_WORD, HBA_WORD, HBA_ADDR, HBA_METHOD, st.sampled_from(["", "map=x", "clientcert=verify-ca"]),
       SPACE, st.sampled_from(["", "  # a comment", "#x"]))
def test_hba_rewrite_reads_back_as_the_same_record_with_the_new_method(
        kind: str, db: str, user: str, address: str, method: str, option: str, space: str, comment: str) -> None:
    """Whatever the record looks like, the rewritten line (when there is one) is the same record to
    PostgreSQL's rules as hostguard reads them, only the method changed."""
    fields = [kind, db, user, *([] if kind == "local" else [address]), method, *([option] if option else [])]
    line = space.join(fields) + comment
    try:
        [record] = parse_hba(Host("/"), "/x/pg_hba.conf", line + "\n", [], ssl=True)
    except Exception:
        return   # a record PostgreSQL itself refuses: nothing to rewrite
    new = _hba_with(line, record, "scram-sha-256")
    assert new is not None
    [again] = parse_hba(Host("/"), "/x/pg_hba.conf", new + "\n", [], ssl=True)
    assert again == type(record)(record.type, record.databases, record.users, record.address, record.netmask,
                                 "scram-sha-256", record.options, record.where)
    assert new.endswith(comment)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["", "  ", "    "]), st.sampled_from(["authorization", "net.bindIp", "xpack.security.enabled"]),
       st.text(st.characters(whitelist_categories=["Ll", "Lu", "Nd"], whitelist_characters=".:-_"), min_size=1,
               max_size=12),
       st.sampled_from(["", "  # note", " #x"]), st.sampled_from(["enabled", "127.0.0.1", "true"]))
def test_yaml_rewrite_reads_back_with_the_new_value(indent: str, key: str, old: str, comment: str, value: str) -> None:
    """A one-line ``key: value`` setting rewritten keeps its key, indentation and comment, and YAML reads the
    new value (a line the rewriter does not recognise is left to the owner: None)."""
    line = f"{indent}{key}: {old}{comment}"
    text = ConfigText((("/x.yml", (line,)),))
    new = _yaml_set(text, Where("/x.yml", 1), None, value)
    if new is None:
        return
    assert new.startswith(f"{indent}{key}: ") and new.endswith(comment)
    document = f"top:\n{new}\n" if indent else f"{new}\n"
    values = flatten(document, "/x.yml")
    assert values[f"top.{key}" if indent else key].value == value
