"""The Apache reader against Apache itself: a private httpd on loopback serves a temporary tree, and for every
URL of a table the status httpd answers must be what :class:`ApachePolicy` says.

The mapping of an HTTP answer to a :class:`Reach` (the same in every row):

* 200 from 127.0.0.1 → OPEN;
* 401 → RESTRICTED (a password is asked for);
* 403 from 127.0.0.1 but 200 from 127.0.0.2 (the address the configuration lets in) → RESTRICTED;
* 403 or 500 from both addresses → DENIED (a 500 is httpd refusing an ``.htaccess`` line: nobody gets the
  file).

Each row also states the Reach it was written to show, so a row that stopped exercising its case fails too.
``runs_php`` is checked the same way without PHP: a ``proxy:unix:`` handler pointing at a socket that does not
exist makes httpd answer 503 when it hands the file on, and 200 with the file's text when it serves it.

Also read: this machine's own Debian configuration (/etc/apache2 with envvars), through LiveHost.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.host.base import LiveHost
from hostguard.host.web.apache import APACHE, build_server, collect_apache, read_config
from hostguard.host.web.model import Reach, Site
from tests.conftest import need_tool

MODULES = "/usr/lib/apache2/modules"
NEEDED = ("mpm_event", "authz_core", "authz_host", "authz_user", "authn_core", "authn_file", "auth_basic",
          "access_compat", "alias", "dir", "autoindex", "proxy", "proxy_fcgi", "mime")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _config(d: Path, port: int) -> str:
    """The server configuration of the test: every case of the table has its section here or in an
    .htaccess file written by :func:`_tree`."""
    loads = "\n".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in NEEDED)
    user = "User www-data\nGroup www-data\n" if os.geteuid() == 0 else ""
    www = d / "www"
    sock = d / "no-such-php-fpm.sock"
    return f"""# written by tests/host/web/test_apache_reality.py
ServerRoot {d}
PidFile {d}/httpd.pid
DefaultRuntimeDir {d}/run
ErrorLog {d}/error.log
LogLevel warn
Listen 127.0.0.1:{port}
ServerName reality.test
{loads}
{user}TypesConfig {d}/mime.types
DocumentRoot {www}
Define GUARDED {www}/defined
AccessFileName .htaccess

<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory {www}>
    Options Indexes
    AllowOverride AuthConfig Limit
    Require all granted
</Directory>
<Directory {www}/secret>
    Require all denied
</Directory>
<Directory {www}/ipallow>
    Require ip 127.0.0.2
</Directory>
<Directory {www}/nooverride>
    AllowOverride None
</Directory>
<Directory {www}/badoverride>
    AllowOverride AuthConfig
</Directory>
<Directory {www}/nonfatal>
    AllowOverride AuthConfig Nonfatal=Override
</Directory>
<Directory {www}/aolist>
    AllowOverride None
    AllowOverrideList Require
</Directory>
<Directory {www}/htinclude>
    AllowOverride All
</Directory>
<Directory {www}/merge>
    Require all denied
</Directory>
<Directory {www}/merge/sub>
    Require all granted
</Directory>
<Directory {www}/w*/inner>
    Require all denied
</Directory>
<DirectoryMatch "/dm$">
    Require all denied
</DirectoryMatch>
<DirectoryMatch "/dmfile/a\\.html">
    Require all denied
</DirectoryMatch>
<DirectoryMatch "/dmslash/">
    Require all denied
</DirectoryMatch>
<Directory ${{GUARDED}}>
    Require all denied
</Directory>
<Directory {www}/combo>
    <RequireAll>
        Require all granted
        Require not ip 127.0.0.2
    </RequireAll>
</Directory>
<Directory {www}/combo2>
    AuthType Basic
    AuthName "combo"
    AuthUserFile {d}/htpasswd
    <RequireAny>
        Require valid-user
        Require ip 127.0.0.2
    </RequireAny>
</Directory>
<Directory {www}/andmerge>
    Require ip 127.0.0.2
</Directory>
<Directory {www}/andmerge/sub>
    AuthMerging And
    Require all granted
</Directory>
<Directory {www}/ormerge>
    Require all denied
</Directory>
<Directory {www}/ormerge/sub>
    AuthMerging Or
    Require ip 127.0.0.2
</Directory>
<Directory {www}/limitpost>
    AuthType Basic
    AuthName "post only"
    AuthUserFile {d}/htpasswd
    <Limit POST>
        Require valid-user
    </Limit>
</Directory>
<Directory {www}/limitget>
    <LimitExcept POST>
        Require all denied
    </LimitExcept>
</Directory>
<Directory {www}/none>
    <RequireAll>
        Require all granted
        <RequireNone>
            Require ip 192.0.2.1
        </RequireNone>
    </RequireAll>
</Directory>
<Directory {www}/idx>
    DirectoryIndex index.html
</Directory>
<Files "ifexpr.html">
    <If "%{{REMOTE_ADDR}} == '192.0.2.1'">
        Require all denied
    </If>
</Files>
<Directory {www}/idx>
    <Files "index.html">
        Require all denied
    </Files>
</Directory>
<LocationMatch "^/lm/.*\\.txt$">
    Require all denied
</LocationMatch>
<Location /wl/*/deep>
    Require all denied
</Location>
AliasMatch "^/am/(.*)$" "{d}/aliased/$1"
<Directory {d}/aliased>
    Require all granted
</Directory>
Alias /al/ {d}/aliased/
Alias /al2 {d}/aliased2

<FilesMatch "\\.bak$">
    Require all denied
</FilesMatch>
<Location /loc>
    Require all denied
</Location>
<IfModule mod_nonexistent.c>
    <Location /ifm-off>
        Require all denied
    </Location>
</IfModule>
<IfModule authz_core_module>
    <Location /ifm-on>
        Require all denied
    </Location>
</IfModule>
<IfModule !mod_alias.c>
    <Location /not-alias>
        Require all denied
    </Location>
</IfModule>

<FilesMatch "\\.php$">
    SetHandler "proxy:unix:{sock}|fcgi://localhost"
</FilesMatch>
<Directory {www}/uploads>
    <FilesMatch "\\.php$">
        SetHandler none
    </FilesMatch>
</Directory>

IncludeOptional conf.d/*.conf
IncludeOptional nothing-here/*.conf
"""


def _htpasswd(user: str, password: str) -> str:
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return f"{user}:{{SHA}}{digest}\n"


def _tree(d: Path) -> None:
    """The files served, with the .htaccess cases."""
    www = d / "www"
    _write(d / "mime.types", "")
    _write(d / "htpasswd", _htpasswd("owner", "a-test-password-only"))
    _write(d / "conf.d" / "extra.conf", f"<Location /included>\n    Require all denied\n</Location>\n"
                                      f"<Directory {www}/compat2>\n    Order allow,deny\n"
                                      f"    Allow from 127.0.0.2\n</Directory>\n")
    pages = ["index.html", "index.bak", "secret/a.html", "ipallow/a.html", "auth/a.html", "authonly/a.html",
             "htdeny/a.html", "compat/a.html", "compatallow/a.html", "compat2/a.html", "nooverride/a.html",
             "badoverride/a.html", "merge/a.html", "merge/sub/a.html", "wild/a.html", "wild/inner/a.html",
             "dm/a.html", "dm/sub/a.html", "dmslash/a.html", "defined/a.html", "combo/a.html", "combo2/a.html",
             "loc/a.html", "locother.html", "ifm-off/a.html", "ifm-on/a.html", "not-alias/a.html",
             "included/a.html", "dmfile/a.html", "dmfile/b.html",
             "andmerge/sub/a.html", "ormerge/sub/a.html", "limitpost/a.html", "limitget/a.html", "none/a.html",
             "idx/index.html", "lm/a.txt", "lm/a.html", "wl/x/deep/a.html", "wl/y/deep", "ifexpr.html", "htfiles/a.html",
             "htfiles/a.txt", "compat3/a.html",
             "nonfatal/a.html", "aolist/a.html", "htinclude/a.html",
             "noauthtype/a.html", "satisfy/a.html", "uploads/a.html", "app/a.html"]
    for page in pages:
        _write(www / page, f"page {page}\n")
    _write(d / "aliased" / "a.html", "aliased\n")
    _write(d / "aliased2" / "a.html", "aliased2\n")
    _write(www / "auth" / ".htaccess", f'AuthType Basic\nAuthName "private"\nAuthUserFile {d}/htpasswd\n'
                                       "Require valid-user\n")
    _write(www / "authonly" / ".htaccess", f'AuthType Basic\nAuthName "x"\nAuthUserFile {d}/htpasswd\n'
                                           "Require all granted\n")
    _write(www / "htdeny" / ".htaccess", "Require all denied\n")
    _write(www / "compat" / ".htaccess", "Order deny,allow\nDeny from all\n")
    _write(www / "compatallow" / ".htaccess", "Order deny,allow\nDeny from all\nAllow from 127.0.0.2\n")
    _write(www / "nooverride" / ".htaccess", "Require all denied\n")
    _write(www / "badoverride" / ".htaccess", "Order deny,allow\nDeny from all\n")
    _write(www / "noauthtype" / ".htaccess", "Require valid-user\n")
    _write(www / "satisfy" / ".htaccess", f'AuthType Basic\nAuthName "s"\nAuthUserFile {d}/htpasswd\n'
                                          "Require valid-user\nOrder deny,allow\nDeny from all\n"
                                          "Allow from 127.0.0.2\nSatisfy Any\n")
    _write(www / "htfiles" / ".htaccess", '<Files "a.txt">\n    Require all denied\n</Files>\n')
    _write(www / "compat3" / ".htaccess", "Order allow,deny\nAllow from all\nDeny from 127.0.0.2\n")
    _write(www / "nonfatal" / ".htaccess", "Order deny,allow\nDeny from all\n")
    _write(www / "aolist" / ".htaccess", "Require all denied\n")
    _write(www / "htinclude" / ".htaccess", f"Include {d}/mime.types\n")
    _write(www / "app" / "x.php", "<?php echo 1;\n")
    _write(www / "uploads" / "x.php", "<?php echo 2;\n")


# (URL, the Reach the row was written to show)
TABLE: list[tuple[str, Reach]] = [
    ("/index.html", Reach.OPEN),
    ("/", Reach.OPEN),
    ("/index.bak", Reach.DENIED),
    ("/secret/a.html", Reach.DENIED),
    ("/ipallow/a.html", Reach.RESTRICTED),
    ("/auth/a.html", Reach.RESTRICTED),
    ("/authonly/a.html", Reach.OPEN),
    ("/htdeny/a.html", Reach.DENIED),
    ("/compat/a.html", Reach.DENIED),
    ("/compatallow/a.html", Reach.RESTRICTED),
    ("/compat2/a.html", Reach.RESTRICTED),
    ("/nooverride/a.html", Reach.OPEN),
    ("/badoverride/a.html", Reach.DENIED),
    ("/merge/a.html", Reach.DENIED),
    ("/merge/sub/a.html", Reach.OPEN),
    ("/wild/a.html", Reach.OPEN),
    ("/wild/inner/a.html", Reach.DENIED),
    ("/dm/a.html", Reach.OPEN),           # a DirectoryMatch sees the directory with its trailing slash
    ("/dm/sub/a.html", Reach.OPEN),
    ("/dmslash/a.html", Reach.DENIED),
    ("/defined/a.html", Reach.DENIED),
    ("/combo/a.html", Reach.OPEN),
    ("/combo2/a.html", Reach.RESTRICTED),
    ("/loc/a.html", Reach.DENIED),
    ("/loc", Reach.DENIED),
    ("/locother.html", Reach.OPEN),
    ("/ifm-off/a.html", Reach.OPEN),
    ("/ifm-on/a.html", Reach.DENIED),
    ("/not-alias/a.html", Reach.OPEN),
    ("/included/a.html", Reach.DENIED),
    ("/dmfile/a.html", Reach.DENIED),      # ... against the whole file name
    ("/dmfile/b.html", Reach.OPEN),
    ("/dm/", Reach.OPEN),
    ("/noauthtype/a.html", Reach.DENIED),
    ("/satisfy/a.html", Reach.RESTRICTED),
    ("/andmerge/sub/a.html", Reach.RESTRICTED),
    ("/ormerge/sub/a.html", Reach.RESTRICTED),
    ("/limitpost/a.html", Reach.OPEN),
    ("/limitget/a.html", Reach.DENIED),
    ("/none/a.html", Reach.OPEN),          # a RequireNone only shuts out the addresses it names
    ("/idx/", Reach.DENIED),
    ("/lm/a.txt", Reach.DENIED),
    ("/lm/a.html", Reach.OPEN),
    ("/wl/y/deep", Reach.DENIED),
    ("/wl/x/deep/a.html", Reach.OPEN),
    ("/htfiles/a.txt", Reach.DENIED),
    ("/htfiles/a.html", Reach.OPEN),
    ("/compat3/a.html", Reach.OPEN),
    ("/am/a.html", Reach.OPEN),
    ("/nonfatal/a.html", Reach.OPEN),       # Nonfatal=Override: the refused lines are skipped, not a 500
    ("/aolist/a.html", Reach.DENIED),       # AllowOverrideList lets Require through AllowOverride None
    ("/htinclude/a.html", Reach.DENIED),    # Include is never allowed in .htaccess: 500
    ("/al/a.html", Reach.OPEN),
    ("/al2/a.html", Reach.DENIED),
    ("/%73ecret/a.html", Reach.DENIED),
    ("/app/../secret/a.html", Reach.DENIED),
]

PHP_TABLE: list[tuple[str, bool]] = [("/app/x.php", True), ("/uploads/x.php", False)]


def _status(port: int, uri: str, source: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", uri, headers={"Host": "reality.test"})
        return conn.getresponse().status
    finally:
        conn.close()


def _httpd_reach(port: int, uri: str) -> tuple[Reach, tuple[int, int]]:
    """The Reach httpd's answers stand for (the mapping in the module docstring)."""
    one, two = _status(port, uri, "127.0.0.1"), _status(port, uri, "127.0.0.2")
    if one == 200:
        return Reach.OPEN, (one, two)
    if one == 401 or (one == 403 and two == 200):
        return Reach.RESTRICTED, (one, two)
    if one in (403, 500) and two in (403, 500):
        return Reach.DENIED, (one, two)
    raise AssertionError(f"{uri}: httpd answered {one} and {two}, which the table does not map")


@pytest.fixture
def httpd() -> Iterator[tuple[Path, int]]:
    """A private httpd serving the tree on 127.0.0.1 (never the system's /etc/apache2 configuration)."""
    need_tool("apache2")
    for module in NEEDED:
        if not os.path.exists(f"{MODULES}/mod_{module}.so"):
            pytest.skip(reason=f"mod_{module} is not installed (scripts/install-system-deps.sh test installs apache2)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("www-data")
        except KeyError:
            pytest.skip(reason="httpd run as root needs the www-data user (the apache2 package creates it)")
    # not under pytest's tmp_path: its parents are 0700 and the httpd worker (www-data) must read the tree
    d = Path(tempfile.mkdtemp(prefix="hostguard-apache-", dir="/tmp"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        os.chmod(d, 0o755)
        port = _free_port()
        _tree(d)
        (d / "run").mkdir()
        _write(d / "httpd.conf", _config(d, port))
        apache2 = shutil.which("apache2", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
        assert apache2 is not None
        check = subprocess.run([apache2, "-d", str(d), "-f", str(d / "httpd.conf"), "-t"],
                               capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        proc = subprocess.Popen([apache2, "-d", str(d), "-f", str(d / "httpd.conf"), "-X"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    log = (d / "error.log").read_text() if (d / "error.log").exists() else ""
                    raise AssertionError(f"httpd did not start: {err} {log}") from None
                time.sleep(0.05)
        yield d, port
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(d, ignore_errors=True)


def _site(d: Path) -> Site:
    host = LiveHost()
    config = read_config(host, str(d / "httpd.conf"), str(d))
    server = build_server(host, config, "www-data")
    [site] = server.sites   # no VirtualHost: the main server is the one site
    return site


def test_access_matches_httpd(httpd: tuple[Path, int]) -> None:
    d, port = httpd
    site = _site(d)
    assert site.policy is not None
    wrong = []
    for uri, meant in TABLE:
        seen, statuses = _httpd_reach(port, uri)
        ours = site.policy.access(uri)
        if not (ours.reach == seen == meant):
            wrong.append(f"{uri}: httpd {statuses} -> {seen}, hostguard {ours.reach} ({ours.how}), row meant {meant}")
    assert not wrong, "\n".join(wrong)


def test_if_expression_is_unknown_not_guessed(httpd: tuple[Path, int]) -> None:
    """httpd decides ``<If>`` per request; hostguard does not evaluate expressions and says UNKNOWN, even
    though this client (not 192.0.2.1) is served."""
    d, port = httpd
    site = _site(d)
    assert site.policy is not None
    assert _status(port, "/ifexpr.html", "127.0.0.1") == 200
    answer = site.policy.access("/ifexpr.html")
    assert answer.reach is Reach.UNKNOWN, answer
    assert "<If> expression not evaluated" in answer.how


def test_auth_row_opens_with_the_password(httpd: tuple[Path, int]) -> None:
    """The 401 rows are a password prompt, not a refusal: the right password gets the page."""
    _d, port = httpd
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    token = base64.b64encode(b"owner:a-test-password-only").decode()
    conn.request("GET", "/auth/a.html", headers={"Host": "reality.test", "Authorization": f"Basic {token}"})
    assert conn.getresponse().status == 200
    conn.close()


def test_runs_php_matches_httpd(httpd: tuple[Path, int]) -> None:
    d, port = httpd
    site = _site(d)
    assert site.policy is not None
    assert site.php_backends == (f"proxy:unix:{d}/no-such-php-fpm.sock|fcgi://localhost",)
    for uri, meant in PHP_TABLE:
        status = _status(port, uri, "127.0.0.1")
        handed_on = status == 503      # the proxy handler took it and found no PHP-FPM behind the socket
        assert status in (200, 503), (uri, status)
        assert site.policy.runs_php(uri) is handed_on is meant, (uri, status)


def test_reader_notes_the_empty_include(httpd: tuple[Path, int]) -> None:
    d, _port = httpd
    config = read_config(LiveHost(), str(d / "httpd.conf"), str(d))
    assert any("IncludeOptional nothing-here/*.conf matches no file" in n for n in config.notes), config.notes
    assert str(d / "conf.d" / "extra.conf") in config.files


# -- this machine's own Debian configuration ------------------------------------------------------------

def test_debian_default_config_read_through_livehost() -> None:
    """apt-get install apache2 ships apache2.conf with envvars and 000-default: read them as they are."""
    if not os.path.exists("/etc/apache2/apache2.conf") or not os.path.exists("/etc/apache2/envvars"):
        pytest.skip(reason="apache2 is not installed (scripts/install-system-deps.sh test installs it)")
    server = collect_apache(LiveHost())
    assert server is not None
    assert APACHE.name == "apache"
    [run_as] = server.run_as
    assert (run_as.user, run_as.group, run_as.source) == ("www-data", "www-data", "config")
    assert run_as.where.path == "/etc/apache2/apache2.conf"
    settings = {name: (value, where) for name, value, where in server.settings}
    tokens, where = settings["ServerTokens"]
    assert (tokens, where.path) == ("OS", "/etc/apache2/conf-enabled/security.conf")
    default = [s for s in server.sites if s.where.path == "/etc/apache2/sites-enabled/000-default.conf"]
    assert default, [s.label() for s in server.sites]
    [site] = default
    assert site.listens == ("*:80",)
    assert [(r.url, r.path) for r in site.roots][0] == ("/", "/var/www/html")
    assert site.policy is not None
    assert site.policy.access("/").reach is Reach.OPEN
    assert site.policy.access("/.htaccess").reach is Reach.DENIED          # Debian's <FilesMatch "^\.ht">
    assert site.policy.access("/server-status").reach is Reach.RESTRICTED  # mod_status: Require local
