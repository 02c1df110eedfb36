"""Private database servers for the tests: a fresh MariaDB data directory, and a fresh PostgreSQL cluster owned by
the postgres account, each in a temp directory and never the machine's own instance. Each test module starts the
server its way (socket only, loopback, a tree's config); what they share is how the data is made."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_root, need_tool


def new_mariadb_datadir(parent: Path) -> Path:
    """``parent/data``: a MariaDB data directory made by the real mariadb-install-db, root by unix_socket (as
    Debian sets it up), no test database. Skips when MariaDB is not installed."""
    need_tool("mariadb-install-db", "mariadbd", "mariadb")
    data = parent / "data"
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                    "--auth-root-authentication-method=socket", "--skip-test-db"], capture_output=True, check=True)
    return data


def as_postgres(argv: list[str], ns: str | None = None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as the postgres account (inside network namespace ``ns`` when given), output as text."""
    return subprocess.run([*(["ip", "netns", "exec", ns] if ns else []), "runuser", "-u", "postgres", "--", *argv],
                          capture_output=True, text=True, timeout=60, **kwargs)  # type: ignore[call-overload, no-any-return]


@contextlib.contextmanager
def postgres_cluster(prefix: str) -> Iterator[Path]:
    """A temp directory owned by the postgres account with a fresh cluster in ``data/`` (initdb, trust, no
    sync), removed afterwards. Skips without root, PostgreSQL's programs or the postgres account."""
    need_root("running postgres as its own account")
    need_tool("initdb", "postgres", "psql", "runuser")
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip(reason="no postgres account (the postgresql package creates it)")
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        os.chmod(base, 0o755)
        os.chown(base, owner.pw_uid, owner.pw_gid)
        done = as_postgres(["initdb", "-D", str(base / "data"), "-A", "trust", "-U", "postgres", "--no-sync"])
        assert done.returncode == 0, done.stderr
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
