"""weak_passwords.database_account on real servers: the hashes a real MariaDB and a real PostgreSQL keep are
read over their local admin paths and cracked offline; weak ones are reported (never shown), strong ones never,
an account without a password at once."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hostguard.engine.facts import Fact
from hostguard.findings import Finding
from hostguard.host.base import LiveHost, RootHost
from hostguard.host.services.configured import Services, collect_services
from hostguard.host.services.mysql_accounts import MYSQL_ACCOUNTS, collect_mysql_accounts
from hostguard.host.services.postgres_roles import POSTGRES_ROLES, collect_postgres_roles
from hostguard.host.services.stored import StoredCredentials
from hostguard.host.services.wordpress import WORDPRESS_USERS
from tests.conftest import HITS, build_tree, make_config, need_tool, run_one
from tests.host.services.test_mysql_accounts import LiveTree, datadir, server  # noqa: F401 (fixtures)
from tests.host.services.test_postgres_roles import Cluster, _as_postgres, _service, cluster  # noqa: F401

NOTHING = StoredCredentials()
CONFIG = make_config(weak_passwords={"budget_seconds": 5, "floor": 100})


def _run(given: dict[Fact[StoredCredentials], StoredCredentials]) -> tuple[list[Finding], list[str]]:
    facts = {MYSQL_ACCOUNTS: NOTHING, POSTGRES_ROLES: NOTHING, WORDPRESS_USERS: NOTHING, **given}
    found, skipped = run_one("weak_passwords.database_account", LiveHost(), CONFIG, dict(facts))
    return found, [f"{s.reason}: {s.detail}" for s in skipped]


def test_mariadb_accounts_weak_found_strong_never_and_no_password_at_once(
        server: tuple[Path, Path, int]) -> None:  # noqa: F811
    tree, _, _ = server
    host = LiveTree(str(tree))
    accounts = collect_mysql_accounts(host, collect_services(host))
    found, skipped = _run({MYSQL_ACCOUNTS: accounts})
    assert skipped == []
    by_account = {f.target["user"]: f for f in found}
    # 'shadow', 'dragon' (ed25519) and 'monkey' are common passwords; strong@% and the maint accounts are not
    assert set(by_account) == {"app@localhost", "edwards@%", "either@localhost", "nopass@localhost"}
    assert by_account["nopass@localhost"].evidence["password"] == "empty"
    assert str(by_account["nopass@localhost"].severity) == "critical"
    assert by_account["edwards@%"].evidence["scheme"] == "mariadb-ed25519"
    for account in ("app@localhost", "edwards@%", "either@localhost"):
        hit = by_account[account]
        assert hit.target["service"] == "MariaDB/MySQL" and hit.evidence["matched"].startswith("common password")
        assert not {"shadow", "dragon", "monkey"} & set(repr(hit.to_dict()).replace("'", " ").split())


def test_postgres_roles_weak_found_strong_never(cluster: Cluster) -> None:  # noqa: F811
    done = _as_postgres(["psql", "-h", str(Path(cluster.sock).parent), "-p", cluster.sock.rsplit(".", 1)[1],
                         "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c",
                         "CREATE ROLE weakling LOGIN PASSWORD 'dragon'; SET password_encryption = 'md5'; "
                         "CREATE ROLE oldstyle LOGIN PASSWORD 'monkey';"])
    assert done.returncode == 0, done.stderr
    roles = collect_postgres_roles(LiveHost(), Services((_service(cluster.data / "postgresql.conf", cluster.data),)))
    assert {"weakling", "oldstyle", "scram_app", "md5_app"} <= {c.account for c in roles.credentials}
    found, skipped = _run({POSTGRES_ROLES: roles})
    # the strong roles may outlast the budget: said as such, never as weak
    assert all(s.startswith("budget: PostgreSQL '") and "'weakling'" not in s and "'oldstyle'" not in s
               for s in skipped), skipped
    assert {(f.target["user"], f.evidence["scheme"]) for f in found} == {("weakling", "pg-scram-sha-256"),
                                                                         ("oldstyle", "pg-md5")}


def test_problems_are_said_as_not_checked_and_live_only_under_root(tmp_path: Path) -> None:
    found, skipped = _run({MYSQL_ACCOUNTS: StoredCredentials((), ("MariaDB/MySQL /etc/mysql/my.cnf: no admin "
                                                                  "login worked: not read",))})
    assert found == [] and skipped == ["unsupported: MariaDB/MySQL /etc/mysql/my.cnf: no admin login worked: not read"]
    tree = build_tree(tmp_path / "host")
    found, skipped_root = run_one("weak_passwords.database_account", RootHost(str(tree)), CONFIG)
    assert found == [] and [s.reason for s in skipped_root] == ["live_only"]


def test_the_clear_text_fix_run_by_the_real_htpasswd_leaves_the_file_quiet(tmp_path: Path) -> None:
    """stored_in_clear's htpasswd fix (`htpasswd -B FILE NAME` for each user named in the evidence), run by the
    real htpasswd on a copy of the hit tree (the new password given on stdin, as its prompt would take it):
    the re-scan is quiet, and the hashed entry is one nginx's scheme reader accepts."""
    need_tool("htpasswd")
    tree = build_tree(tmp_path / "host", HITS / "weak_passwords.stored_in_clear")
    [finding] = run_one("weak_passwords.stored_in_clear", RootHost(str(tree)))[0]
    path = finding.target["path"]
    assert "`htpasswd -B " + path + " NAME`" in (finding.remediation.manual or "")
    for user in finding.evidence["users"]:
        done = subprocess.run(["htpasswd", "-B", "-i", str(tree / path.lstrip("/")), user],
                              input="four-random-words-go-here\n", capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert run_one("weak_passwords.stored_in_clear", RootHost(str(tree)))[0] == []
    assert all(line.split(":", 1)[1].startswith("$2y$")
               for line in (tree / path.lstrip("/")).read_text().splitlines() if line.startswith("admin:"))
