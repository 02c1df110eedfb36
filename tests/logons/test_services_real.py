"""Real servers of this machine on loopback, each in a temp dir with its own config and log: a wrong and a
right password (or an anonymous login) against PostgreSQL, MariaDB and vsftpd, and the log lines these
versions write must give exactly those attempts."""

from __future__ import annotations

import ftplib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from hostguard.cli import main
from tests.conftest import need_root, need_tool
from tests.host.services.helpers import free_port, running, wait_for
from tests.realservers import postgres_cluster


def parse(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["logons", "parse", *argv]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def brief(events: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(e["service"], e["outcome"], e["user"], e["ip"], e["method"]) for e in events]


def test_postgresql_password_failure_and_login(capsys: pytest.CaptureFixture[str]) -> None:
    with postgres_cluster("hostguard-logons-pg-") as base:
        as_pg = ["runuser", "-u", "postgres", "--"]
        (base / "data/pg_hba.conf").write_text("local all postgres trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        port = free_port()
        log = base / "server.log"
        with running([*as_pg, "postgres", "-D", str(base / "data"), "-c", "listen_addresses=127.0.0.1", "-k",
                      str(base), "-p", str(port), "-c", "log_connections=on"], log):
            wait_for((base / f".s.PGSQL.{port}").exists, what="postgres")
            done = subprocess.run([*as_pg, "psql", "-h", str(base), "-p", str(port), "-U", "postgres", "-qc",
                                   "CREATE ROLE shop LOGIN PASSWORD 'right-horse'"], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            for password in ("wrong-horse", "right-horse"):
                subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "shop", "-d", "postgres", "-Atc",
                                "select 1"], env={**os.environ, "PGPASSWORD": password}, capture_output=True)
            time.sleep(0.3)
        events = parse(capsys, str(log))
        lines = log.read_text().splitlines()
        assert brief(events) == [("postgresql", "success", "postgres", None, None),  # the setup, over the socket
                                 ("postgresql", "failure", "shop", "127.0.0.1", "password"),
                                 ("postgresql", "success", "shop", "127.0.0.1", "scram-sha-256")], lines
        assert "password authentication failed" in lines[int(str(events[1]["line"])) - 1]
        assert "connection authorized: user=shop" in lines[int(str(events[2]["line"])) - 1]
        assert all(isinstance(e["port"], int) for e in events[1:]) and events[0]["port"] is None
        assert all(str(e["time"]).endswith("+00:00") for e in events)


def test_mariadb_access_denied_and_general_log_connect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need_tool("mariadb-install-db", "mariadbd", "mariadb")
    data = tmp_path / "data"
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                    "--auth-root-authentication-method=socket", "--skip-test-db"], capture_output=True, check=True)
    port, sock = free_port(), tmp_path / "m.sock"
    config = tmp_path / "my.cnf"
    config.write_text(f"[mysqld]\ndatadir={data}\nsocket={sock}\nuser=root\npid-file={tmp_path}/m.pid\n"
                      f"log-error={tmp_path}/err.log\nport={port}\nbind-address=127.0.0.1\nskip-name-resolve\n"
                      f"general-log=1\ngeneral-log-file={tmp_path}/general.log\nlog-warnings=2\n")
    with running(["mariadbd", f"--defaults-file={config}"], tmp_path / "out.log"):
        wait_for(sock.exists, what="mariadbd")
        done = subprocess.run(["mariadb", "--no-defaults", "-S", str(sock), "-e",
                               "CREATE USER 'shop'@'%' IDENTIFIED BY 'right-horse'"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        for password in ("wrong-horse", "right-horse"):
            subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(port), "-u", "shop",
                            f"-p{password}", "-e", "select 1"], capture_output=True)
        time.sleep(0.3)
    errors = parse(capsys, str(tmp_path / "err.log"))
    assert brief(errors) == [("mysql", "failure", "shop", "127.0.0.1", "password")], (tmp_path / "err.log").read_text()
    # the general log writes "Connect shop@127.0.0.1" before authentication ends (then Access denied, same
    # thread): only the denial is an attempt; the lines after the first of a second carry no stamp
    general = parse(capsys, str(tmp_path / "general.log"))
    assert brief(general) == [("mysql", "failure", "shop", "127.0.0.1", "password")], (
        tmp_path / "general.log").read_text()
    assert general[0]["time"] is not None


def test_vsftpd_failed_and_anonymous_logins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need_root("vsftpd runs as root and drops to its own accounts")
    need_tool("vsftpd")
    anon = tmp_path / "anon"
    anon.mkdir()
    port = free_port()
    log = tmp_path / "vsftpd.log"
    config = tmp_path / "vsftpd.conf"
    config.write_text(f"listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\nbackground=NO\n"
                      f"anonymous_enable=YES\nno_anon_password=YES\nanon_root={anon}\nlocal_enable=YES\n"
                      f"pam_service_name=vsftpd\nxferlog_enable=YES\nvsftpd_log_file={log}\nseccomp_sandbox=NO\n"
                      "connect_from_port_20=NO\n")
    config.chmod(0o600)
    with running(["vsftpd", str(config)], tmp_path / "out.log"):
        def listening() -> bool:
            return "LISTEN" in subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                                                text=True).stdout or _connects(port)
        wait_for(listening, what="vsftpd")
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", port, timeout=10)
            with pytest.raises(ftplib.error_perm):
                ftp.login("hg-nosuch-user", "wrong-horse")
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", port, timeout=10)
            ftp.login("anonymous", "")
        time.sleep(0.3)
    events = parse(capsys, str(log))
    assert brief(events) == [("vsftpd", "failure", "hg-nosuch-user", "127.0.0.1", "password"),
                             ("vsftpd", "success", "ftp", "127.0.0.1", "anonymous")], log.read_text()


def _connects(port: int) -> bool:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
