"""WORDPRESS_USERS against a real mariadbd holding wp_users rows made by WordPress's own phpass class (Debian's
wordpress package) and PHP's bcrypt in WordPress 6.8's form: installs found under nginx's roots (in a root, with
the config one level above, Debian's shared config through /etc/wordpress), the database over its socket and
loopback TCP; near misses (remote DB_HOST, computed DB_PASSWORD, no wp-config.php, a wrong password); the
wp-config.php reader on PHP's quoting rules and, with hypothesis, on any text."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.findings import SkipReason
from hostguard.host.base import RootHost, Unavailable
from hostguard.host.services.configured import collect_services
from hostguard.host.services.stored import StoredCredentials
from hostguard.host.services.wordpress import (
    RemoteDatabase,
    db_endpoint,
    parse_db_host,
    parse_wp_config,
    tokens,
)
from hostguard.host.services.wordpress import collect_wordpress_users as collect
from hostguard.host.web.content import WebContent
from hostguard.host.web.servers import collect_web_servers
from hostguard.passwords.services_verifiers import service_verifier
from tests.conftest import need_tool
from tests.host.services.test_mysql_accounts import SOCKET, LiveTree, mariadb_in_tree, sql

STRONG = "Qx7-vT2p!eL9#wRk4zN8uYb3"
WRONG = "not-the-password"
DB_PW = "wp-db-Secret-51'\"\\x"          # quotes and a backslash: both quote styles must unescape it
DEB_PW = "debian-db-Secret-77"
PHPASS = Path("/usr/share/wordpress/wp-includes/class-phpass.php")
# WordPress's own wp_hash_password() of Debian's 6.1 (PasswordHash(8, true)), and WordPress 6.8's bcrypt form
# (password_hash() of base64(HMAC-SHA384(pw, 'wp-sha384')), '$wp' in front), each printed on one line
HASH_PHP = r"""
require $argv[1];
$h = new PasswordHash(8, true);
$pre = function ($pw) { return base64_encode(hash_hmac('sha384', $pw, 'wp-sha384', true)); };
for ($i = 2; $i < count($argv); $i++) {
  [$kind, $pw] = explode(':', $argv[$i], 2);
  echo $kind === 'bcrypt' ? '$wp' . password_hash($pre($pw), PASSWORD_BCRYPT, ['cost' => 5]) : $h->HashPassword($pw), "\n";
}
"""
# login -> (password, how WordPress stored it)
BLOG = {"admin": ("letmein", "phpass"), "editor": (STRONG, "phpass"), "author": ("sunshine", "bcrypt"),
        "legacy": ("password", "md5"), "ghost": ("", "empty")}
BLOG2 = {"admin2": ("qwerty", "phpass")}
DEBIAN = {"debadmin": ("football", "phpass")}
SCHEMES = {"phpass": "phpass", "bcrypt": "wordpress-bcrypt", "md5": None}


def _hashes(users: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Each user's stored user_pass, made by WordPress's (and PHP's) own code."""
    out = {login: hashlib.md5(pw.encode()).hexdigest() for login, (pw, kind) in users.items() if kind == "md5"}
    out.update({login: "" for login, (_, kind) in users.items() if kind == "empty"})
    made = [(login, f"{kind}:{pw}") for login, (pw, kind) in users.items() if kind in ("phpass", "bcrypt")]
    done = subprocess.run(["php", "-r", HASH_PHP, str(PHPASS), *(arg for _, arg in made)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    out.update(zip((login for login, _ in made), done.stdout.split("\n"), strict=False))
    return out


def _table(db: str, table: str, hashes: dict[str, str]) -> str:
    rows = ", ".join(f"('{login}', '{hashed}')" for login, hashed in hashes.items())
    return (f"CREATE TABLE {db}.{table} (ID BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            f"user_login VARCHAR(60) NOT NULL, user_pass VARCHAR(255) NOT NULL, "
            f"user_email VARCHAR(100) NOT NULL DEFAULT '') DEFAULT CHARSET=utf8mb4;"
            f"INSERT INTO {db}.{table} (user_login, user_pass) VALUES {rows};")


def _quoted_sql(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, dict[str, str]]]:
    """A mariadbd with the blog (wp_ and wp2_ tables) and Debian's wordpress databases: (socket, port, the
    stored hashes by login)."""
    need_tool("mariadb-install-db", "mariadbd", "mariadb", "php")
    if not PHPASS.exists():
        pytest.skip(reason="the wordpress package is not installed (scripts/install-system-deps.sh test installs it)")
    base = tmp_path_factory.mktemp("wordpress-db")
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={base}/pristine", "--user=root",
                    "--auth-root-authentication-method=socket", "--skip-test-db"], capture_output=True, check=True)
    hashes = _hashes(BLOG) | _hashes(BLOG2) | _hashes(DEBIAN)
    with mariadb_in_tree(base, base / "pristine") as (_, sock, port):
        pw = _quoted_sql(DB_PW)
        sql(sock, "CREATE DATABASE blog; CREATE DATABASE wordpress;"
                  + _table("blog", "wp_users", {k: hashes[k] for k in BLOG})
                  + _table("blog", "wp2_users", {k: hashes[k] for k in BLOG2})
                  + _table("wordpress", "wp_users", {k: hashes[k] for k in DEBIAN})
                  + f"CREATE USER wpuser@localhost IDENTIFIED BY {pw}; CREATE USER wpuser@'127.0.0.1' IDENTIFIED BY {pw};"
                  "GRANT SELECT ON blog.* TO wpuser@localhost; GRANT SELECT ON blog.* TO wpuser@'127.0.0.1';"
                  f"CREATE USER wordpress@localhost IDENTIFIED BY '{DEB_PW}'; GRANT SELECT ON wordpress.* TO "
                  "wordpress@localhost;")
        yield sock, port, hashes


NGINX = "events {}\nhttp {\n%s}\n"


def site_tree(root: Path, sock: Path | None, files: dict[str, str], servers: str) -> LiveTree:
    """A host tree: nginx serving ``servers`` (server blocks), ``files``, MariaDB's my.cnf naming
    :data:`SOCKET`, and the real server's socket linked in there (a hard link: the same socket)."""
    files = {"/etc/nginx/nginx.conf": NGINX % servers,
             "/etc/mysql/my.cnf": f"[mysqld]\nsocket = {SOCKET}\n", **files}
    for name, text in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if sock is not None:
        (root / SOCKET.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        os.link(sock, root / SOCKET.lstrip("/"))
    return LiveTree(str(root))


def read(host: LiveTree) -> StoredCredentials:
    return collect(host, collect_web_servers(host, None, None), WebContent(host), collect_services(host))


def wp_config(db_host: str, prefix: str = "wp_", name: str = "blog", password: str = "") -> str:
    """A wp-config.php as an admin writes it, DB_PASSWORD in double quotes with its escapes."""
    escaped = password.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f"""<?php
/** The name of the database for WordPress */
define( 'DB_NAME', '{name}' );
// define( 'DB_PASSWORD', 'commented-out' );
# define( 'DB_USER', 'commented-out' );
/* define( 'DB_HOST', 'db.example.test' ); */
define( 'DB_USER', 'wpuser' );
define( "DB_PASSWORD", "{escaped}" );
define( 'DB_HOST', '{db_host}' );
define( 'DB_CHARSET', 'utf8mb4' );
$table_prefix = '{prefix}';
if ( ! defined( 'ABSPATH' ) ) {{
\tdefine( 'ABSPATH', __DIR__ . '/' );
}}
require_once ABSPATH . 'wp-settings.php';
"""


def _assert_users(found: StoredCredentials, users: dict[str, tuple[str, str]], hashes: dict[str, str],
                  source: str) -> None:
    """Exactly the users with a stored hash, each stored value as it is, proven against the verifier."""
    wanted = {login for login, (_, kind) in users.items() if kind != "empty"}
    assert {c.account for c in found.credentials} == wanted
    verifier = service_verifier()
    for cred in found.credentials:
        password, kind = users[cred.account]
        assert (cred.service, cred.hashed, cred.source, cred.plain_text) == ("WordPress", hashes[cred.account],
                                                                             source, False)
        assert verifier.scheme(cred.hashed) == SCHEMES[kind], cred.account
        if SCHEMES[kind] is not None:
            assert verifier.verify(password.encode(), cred.hashed), cred.account
            assert not verifier.verify(WRONG.encode(), cred.hashed), cred.account


def test_wordpress_in_a_root_over_the_socket(server: tuple[Path, int, dict[str, str]], tmp_path: Path) -> None:
    sock, _, hashes = server
    host = site_tree(tmp_path, sock, {
        "/srv/blog/wp-settings.php": "<?php\n", "/srv/blog/index.php": "<?php\n",
        "/srv/blog/wp-config.php": wp_config(f"localhost:{SOCKET}", password=DB_PW)},
        "server { listen 80; server_name blog.test; root /srv/blog; }\n")
    found = read(host)
    assert found.problems == ()
    _assert_users(found, BLOG, hashes, f"/srv/blog/wp-config.php (blog.wp_users over {SOCKET})")
    # the old plain MD5 comes back as stored: the verifier does not know it yet (said in the report)
    assert service_verifier().scheme(hashes["legacy"]) is None
    assert DB_PW not in repr(found) and "wp-db-Secret" not in repr(found)


def test_config_above_the_root_over_loopback_tcp(server: tuple[Path, int, dict[str, str]], tmp_path: Path) -> None:
    """WordPress loads ../wp-config.php when its own directory has none; DB_HOST 127.0.0.1:port is TCP."""
    sock, port, hashes = server
    host = site_tree(tmp_path, None, {
        "/srv/b/public/wp-settings.php": "<?php\n", "/srv/b/public/wp-login.php": "<?php\n",
        "/srv/b/wp-config.php": wp_config(f"127.0.0.1:{port}", prefix="wp2_", password=DB_PW)},
        "server { listen 80; server_name b.test; root /srv/b/public; }\n")
    found = read(host)
    assert found.problems == ()
    _assert_users(found, BLOG2, hashes, f"/srv/b/wp-config.php (blog.wp2_users over tcp 127.0.0.1:{port})")


def test_config_above_a_second_wordpress_is_not_this_ones(server: tuple[Path, int, dict[str, str]],
                                                          tmp_path: Path) -> None:
    """Near miss: the parent directory is a WordPress itself (wp-settings.php): its wp-config.php is not loaded
    for the install below, which has none; the parent is not served, so nothing is read."""
    sock, _, _ = server
    host = site_tree(tmp_path, sock, {
        "/srv/b/public/wp-settings.php": "<?php\n", "/srv/b/wp-settings.php": "<?php\n",
        "/srv/b/wp-config.php": wp_config(f"localhost:{SOCKET}", password=DB_PW)},
        "server { listen 80; server_name b.test; root /srv/b/public; }\n")
    found = read(host)
    assert found == StoredCredentials((), ("WordPress: /srv/b/public: no wp-config.php (not installed yet?)",))


def test_debian_packaged_wordpress(server: tuple[Path, int, dict[str, str]], tmp_path: Path) -> None:
    """Debian's shared wp-config.php (written here in its shape) loads /etc/wordpress/config-<host>.php: each
    site file is read with the shared file's defaults (DB_NAME, DB_USER, DB_HOST 'localhost' = the server's
    socket, wp_), and config-default.php linked to a site file is the same database, read once."""
    sock, _, hashes = server
    shared = """<?php
/* The per-host file comes first: /etc/wordpress/config-<host>.php */
$file = '/etc/wordpress/config-' . strtolower(preg_replace('/:.*/', '', $_SERVER['HTTP_HOST'])) . '.php';
if (file_exists($file)) { require_once($file); }
if (!defined('DB_NAME')) define('DB_NAME', 'wordpress');
if (!defined('DB_USER')) define('DB_USER', 'wordpress');
if (!defined('DB_HOST')) define('DB_HOST', 'localhost');
if (!isset($table_prefix)) { $table_prefix = 'wp_'; }
require_once(ABSPATH . 'wp-settings.php');
"""
    host = site_tree(tmp_path, sock, {
        "/usr/share/wordpress/wp-settings.php": "<?php\n", "/usr/share/wordpress/wp-config.php": shared,
        "/etc/wordpress/config-debian.test.php": f"<?php\ndefine('DB_PASSWORD', '{DEB_PW}');\n",
        "/var/www/html/index.html": "hello\n"},
        "server { listen 80; server_name debian.test; root /var/www/html;\n"
        "  location /blog/ { alias /usr/share/wordpress/; } }\n")
    os.symlink("config-debian.test.php", tmp_path / "etc/wordpress/config-default.php")
    found = read(host)
    assert found.problems == ()
    _assert_users(found, DEBIAN, hashes, "/etc/wordpress/config-debian.test.php (through "
                                         f"/usr/share/wordpress/wp-config.php) (wordpress.wp_users over {SOCKET})")


@pytest.mark.parametrize(("config", "problem"), [
    (wp_config("db.example.test", password=DB_PW),
     "WordPress: /srv/x/wp-config.php: database on another host (db.example.test): not read"),
    (wp_config("192.0.2.10:3306", password=DB_PW),
     "WordPress: /srv/x/wp-config.php: database on another host (192.0.2.10:3306): not read"),
    (wp_config(f"localhost:{SOCKET}").replace('define( "DB_PASSWORD", "" );',
                                              "define( 'DB_PASSWORD', getenv('WP_DB_PASSWORD') );"),
     "WordPress: /srv/x/wp-config.php: DB_PASSWORD computed at run time: not read"),
    (wp_config(f"localhost:{SOCKET}", password="$secret"),      # "\$secret": escaped, so a literal
     "WordPress: /srv/x/wp-config.php: blog.wp_users not read: unix /SOCK: login as 'wpuser': access denied"),
    (wp_config(f"localhost:{SOCKET}", prefix="wp_'.$x.'", password=DB_PW),
     "WordPress: /srv/x/wp-config.php: $table_prefix computed at run time: not read"),
])
def test_near_misses_are_problem_lines(server: tuple[Path, int, dict[str, str]], tmp_path: Path, config: str,
                                       problem: str) -> None:
    sock, _, _ = server
    host = site_tree(tmp_path, sock, {"/srv/x/wp-settings.php": "<?php\n", "/srv/x/wp-config.php": config},
                     "server { listen 80; root /srv/x; }\n")
    found = read(host)
    assert found.credentials == ()
    assert found.problems == (problem.replace("/SOCK", str(tmp_path) + SOCKET),)
    assert DB_PW not in repr(found) and "secret" not in repr(found)


def test_no_wordpress_under_the_roots_reads_nothing(server: tuple[Path, int, dict[str, str]], tmp_path: Path) -> None:
    """Near miss: a wp-config.php left in a root that holds no WordPress (no wp-settings.php) is not a site."""
    sock, _, _ = server
    host = site_tree(tmp_path, sock, {"/srv/x/index.php": "<?php\n",
                                      "/srv/x/wp-config.php": wp_config(f"localhost:{SOCKET}", password=DB_PW)},
                     "server { listen 80; root /srv/x; }\n")
    assert read(host) == StoredCredentials()


def test_a_live_only_fact(tmp_path: Path) -> None:
    host = RootHost(str(tmp_path))
    with pytest.raises(Unavailable) as caught:
        collect(host, collect_web_servers(host, None, None), WebContent(host), None)
    assert caught.value.reason == SkipReason.LIVE_ONLY


# -- DB_HOST ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "parsed"), [
    ("localhost", ("localhost", None, None)),
    ("localhost:3307", ("localhost", 3307, None)),
    ("localhost:/run/mysqld/other.sock", ("localhost", None, "/run/mysqld/other.sock")),
    ("127.0.0.1:3307", ("127.0.0.1", 3307, None)),
    ("[::1]:3307", ("::1", 3307, None)),
    ("::1", ("::1", None, None)),
    (" db.example.test ", ("db.example.test", None, None)),
])
def test_db_host_is_split_as_wordpress_does(value: str, parsed: tuple[str, int | None, str | None]) -> None:
    assert parse_db_host(value) == parsed


@pytest.mark.parametrize("value", ["db.example.test", "192.0.2.7", "[2001:db8::5]:3306", "127.0.0.1.example.test"])
def test_db_host_elsewhere_is_never_connected(tmp_path: Path, value: str) -> None:
    with pytest.raises(RemoteDatabase):
        db_endpoint(RootHost(str(tmp_path)), value, None)


def test_loopback_db_hosts_are_tcp_endpoints(tmp_path: Path) -> None:
    host = RootHost(str(tmp_path))
    assert db_endpoint(host, "127.0.0.2", None)[1] == "tcp 127.0.0.2:3306"
    assert db_endpoint(host, "[::1]:3310", None)[1] == "tcp [::1]:3310"


# -- the wp-config.php reader -----------------------------------------------------------------------------


def test_php_literals_as_php_reads_them() -> None:
    text = r"""<html><?php echo 1; ?> define('DB_NAME', 'html-not-php'); <?php
define('DB_NAME', 'it\'s \\ \n');
define('DB_NAME', 'second define: ignored by PHP');
DEFINE("DB_USER", "tab\there \x41\101\u{1F600} \$x \q");
define('DB_HOST', 'local' . "host");
const DB_PASSWORD = 'from-const';
define('AUTH_KEY', "interpolated $key");
$table_prefix  = 'old_';
$table_prefix = "wp_";
define('WP_DEBUG', false);
"""
    config = parse_wp_config(text, "/x/wp-config.php")
    assert config.constants == {"DB_NAME": "it's \\ \\n", "DB_USER": "tab\there AA\U0001F600 $x \\q",
                                "DB_HOST": "localhost", "DB_PASSWORD": "from-const"}
    assert config.computed == frozenset({"AUTH_KEY", "WP_DEBUG"})
    assert (config.table_prefix, config.prefix_computed) == ("wp_", False)
    assert "from-const" not in repr(config)


def test_the_installed_debian_shared_config() -> None:
    """Debian's own /usr/share/wordpress/wp-config.php (read where the package put it, not copied): its
    defaults are what the site files fall back to."""
    path = Path("/usr/share/wordpress/wp-config.php")
    if not path.exists():
        pytest.skip(reason="the wordpress package is not installed (scripts/install-system-deps.sh test installs it)")
    text = path.read_text()
    config = parse_wp_config(text, str(path))
    assert {k: config.constants[k] for k in ("DB_NAME", "DB_USER", "DB_HOST")} == {
        "DB_NAME": "wordpress", "DB_USER": "wordpress", "DB_HOST": "localhost"}
    assert "DB_PASSWORD" not in config.constants and config.table_prefix == "wp_"
    assert "/etc/wordpress/config-" in text


_FRAGMENTS = st.sampled_from([
    "<?php", "?>", "<?=", "define(", "DEFINE (", "const ", "$table_prefix", "=", ";", ",", ")", "(", "'", '"', "\\",
    "\\'", '\\"', "$x", "{$", "//", "#", "/*", "*/", "\n", " ", ".", "'DB_NAME'", '"DB_PASSWORD"', "'v'", "\\u{",
    "\\x4", "\\101", "[", "]", "{", "}", "getenv('X')", "<<<EOT\n", "\x00", "\udcff", "é"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=400), st.lists(_FRAGMENTS, max_size=60).map("".join)))
def test_the_reader_takes_any_text(text: str) -> None:
    config = parse_wp_config(text, "/fuzz/wp-config.php")
    assert set(config.constants).isdisjoint(config.computed)
    assert config.prefix_computed == (config.prefix_computed and config.table_prefix is None)
    assert all(tok.kind in ("str", "id", "var", "op", "end") for tok in tokens(text))
