"""The nginx reader against the real nginx: what ``access()`` and ``runs_php()`` answer is what nginx does.

The test writes a configuration into a temporary prefix (never /etc/nginx, never the system service),
checks it with ``nginx -t``, starts nginx on 127.0.0.1 with ``daemon off`` and asks every URI of a table over
loopback with http.client, once from 127.0.0.1 and once from 127.0.0.2 (the only allow-listed source).
Each location adds an ``X-Loc`` header naming itself, so the location nginx chose is compared too.

How statuses map to a reach (exact, stated once):

* every source gets the file (200; or, for a FastCGI location, our listener saw nginx connect) -> OPEN
* some source gets 401, or one source gets the file and the other 403 -> RESTRICTED
* every source gets 403, 404, a redirect (301/302) or a closed connection (444) -> DENIED
"""

from __future__ import annotations

import grp
import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hostguard.host.base import LiveHost
from hostguard.host.web.model import Reach, Site
from hostguard.host.web.nginx import NginxPolicy, read_nginx

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian package nginx-light)")

SOURCES = ("127.0.0.1", "127.0.0.2")

# One location per line; "{fcgi}", "{d}" are filled in. Every block gets its own X-Loc header.
SITE = """\
server {{
    listen 127.0.0.1:{port};
    server_name site.test www.site.test;
    root {d}/www;
    server_tokens off;
    add_header X-Loc server always;
    location / {{ }}
    location /admin/ {{ allow 127.0.0.2; deny all; }}
    location /private/ {{ auth_basic "staff only"; auth_basic_user_file {d}/htpasswd; }}
    location /noauthfile/ {{ auth_basic "no file"; }}
    location /either/ {{ satisfy any; allow 127.0.0.2; deny all; auth_basic "x"; auth_basic_user_file {d}/htpasswd; }}
    location /anyopen/ {{ satisfy any; allow all; auth_basic "x"; auth_basic_user_file {d}/htpasswd; }}
    location = /exact.html {{ return 404; }}
    location /exact {{ }}
    location ^~ /static/ {{ }}
    location ~* \\.CSS$ {{ deny all; }}
    location /assets/ {{ }}
    location ~ \\.php$ {{ fastcgi_pass 127.0.0.1:{fcgi}; }}
    location /uploads/ {{ location ~ \\.php$ {{ return 403; }} }}
    location /media/ {{ }}
    location ~ /\\.git {{ deny all; }}
    location /phpmyadmin/ {{ alias {d}/pma/; }}
    location /gone/ {{ return 404; }}
    location /moved/ {{ return 301 /elsewhere/; }}
    location /int/ {{ internal; }}
    location /closed/ {{ return 444; }}
    location ~ ^/order/a {{ return 403; }}
    location ~ ^/order/ {{ }}
    location ~ \\.TXT$ {{ deny all; }}
    location /api/ {{ fastcgi_pass 127.0.0.1:{fcgi}; }}
    location /deep/ {{ deny all; location /deep/open/ {{ allow all; }} }}
    location ^~ /plain/ {{ location ~ \\.html$ {{ deny all; }} }}
    location /rw/ {{ rewrite ^/rw/(.*)$ /static/$1 last; }}
}}
server {{
    listen 127.0.0.1:{port2};
    server_name redirect.test;
    return 301 https://site.test$request_uri;
}}
"""

MAIN = """\
worker_processes 1;
{user}
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include sites/*.conf;
}}
"""

# URI -> the reach hostguard must answer (and nginx must show).
TABLE = {
    "/": Reach.OPEN,
    "/index.html": Reach.OPEN,
    "/admin/": Reach.RESTRICTED,
    "/admin/x.php": Reach.OPEN,            # the php regex wins over a plain prefix: the allow-list is bypassed
    "/phpmyadmin/": Reach.OPEN,
    "/.git/config": Reach.DENIED,
    "/uploads/a.php": Reach.DENIED,         # the regex nested in the prefix is tried before the outer ones
    "/media/a.php": Reach.OPEN,
    "/static/x.css": Reach.OPEN,            # ^~ stops the regexes
    "/assets/x.css": Reach.DENIED,          # ~* matches .css
    "/assets/x.CsS": Reach.DENIED,
    "/exact.html": Reach.DENIED,            # = beats the longer-matching... and the prefix /exact
    "/exact.htm": Reach.OPEN,
    "/private/": Reach.RESTRICTED,
    "/noauthfile/": Reach.OPEN,             # auth_basic without a user file asks nothing
    "/either/": Reach.RESTRICTED,
    "/anyopen/": Reach.OPEN,
    "/gone/x.html": Reach.DENIED,
    "/moved/x.html": Reach.DENIED,
    "/int/x.html": Reach.DENIED,
    "/closed/x.html": Reach.DENIED,
    "/order/a.html": Reach.DENIED,          # the first regex in configuration order wins
    "/order/b.html": Reach.OPEN,
    "/case/x.txt": Reach.OPEN,              # ~ is case-sensitive
    "/case/y.TXT": Reach.DENIED,
    "/api": Reach.DENIED,                   # a *_pass location named "/api/": nginx redirects /api to /api/
    "/deep/x.html": Reach.DENIED,
    "/deep/open/x.html": Reach.OPEN,
    "/plain/x.html": Reach.DENIED,          # a regex nested in a ^~ location still runs
    "/plain/x.txt": Reach.OPEN,
    "/static/../admin/": Reach.RESTRICTED,  # dot segments are resolved before locations are chosen
    "//admin//": Reach.RESTRICTED,          # slashes are merged
    "/%61dmin/": Reach.RESTRICTED,          # %XX is decoded
}

PHP = {
    "/x.php": True,
    "/admin/x.php": True,
    "/media/a.php": True,
    "/uploads/a.php": False,
    "/static/a.php": False,
    "/api/a.php": True,
    "/api/": True,
    "/deep/a.php": True,    # the outer php regex wins over the deny-all prefix
    "/plain/a.php": False,
}

FILES = ("index.html", "admin/index.html", "private/index.html", "noauthfile/index.html", "either/index.html",
         "anyopen/index.html", "exact.html", "exact.htm", "static/x.css", "static/a.php", "assets/x.css",
         "assets/x.CsS", ".git/config", "gone/x.html", "moved/x.html", "int/x.html", "closed/x.html",
         "order/a.html", "order/b.html", "case/x.txt", "case/y.TXT", "deep/x.html", "deep/open/x.html",
         "plain/x.html", "plain/x.txt", "plain/a.php", "rw/x.html", "uploads/a.php", "media/a.php")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class FastCgiProbe:
    """A loopback listener standing in for PHP-FPM: it records that nginx connected, then hangs up."""

    sock: socket.socket = field(default_factory=socket.socket)
    seen: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.seen.set()
            conn.close()


@dataclass
class Running:
    """A started nginx: its prefix, ports and our reading of its configuration."""

    prefix: Path
    port: int
    port2: int
    fcgi: FastCgiProbe
    sites: tuple[Site, ...]

    def policy(self, name: str) -> NginxPolicy:
        site = next(s for s in self.sites if name in s.names)
        assert isinstance(site.policy, NginxPolicy)
        return site.policy

    def get(self, uri: str, source: str = "127.0.0.1", port: int | None = None) -> tuple[int, str | None]:
        """Status and X-Loc header of a GET from ``source``; 444 when nginx closes without answering."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=5, source_address=(source, 0))
        try:
            conn.request("GET", uri, headers={"Host": "site.test"})
            response = conn.getresponse()
            response.read()
            return response.status, response.getheader("X-Loc")
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return 444, None
        finally:
            conn.close()


def _write_config(d: Path, port: int, port2: int, fcgi: int) -> None:
    group = "nogroup" if _group_exists("nogroup") else "nobody"
    user = f"user nobody {group};" if os.geteuid() == 0 else ""
    (d / "nginx.conf").write_text(MAIN.format(d=d, user=user))
    (d / "sites").mkdir()
    numbered = []
    for number, line in enumerate(SITE.format(d=d, port=port, port2=port2, fcgi=fcgi).splitlines(), 1):
        if line.strip().startswith("location") and line.rstrip().endswith("}"):
            # the outermost block gets the header; a nested location gets its own before its closing brace
            head, _, rest = line.partition("{")
            line = f"{head}{{ add_header X-Loc L{number} always; {rest}"
            if rest.count("{"):
                inner_head, _, inner_rest = rest.partition("{")
                line = (f"{head}{{ add_header X-Loc L{number} always; "
                        f"{inner_head}{{ add_header X-Loc N{number} always; {inner_rest}")
        numbered.append(line)
    (d / "sites" / "site.conf").write_text("\n".join(numbered) + "\n")
    (d / "htpasswd").write_text("staff:{PLAIN}never-sent\n")
    for name in FILES:
        path = d / "www" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"file {name}\n")
    (d / "pma").mkdir()
    (d / "pma" / "index.html").write_text("pma\n")
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / "tmp" / sub).mkdir(parents=True)
    for root, dirs, files in os.walk(d):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _nginx(d: Path, *extra: str) -> list[str]:
    assert NGINX is not None
    return [NGINX, "-p", f"{d}/", "-c", f"{d}/nginx.conf", "-e", f"{d}/error.log", *extra]


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    d = Path(tempfile.mkdtemp(prefix="hg-nginx-", dir="/tmp"))
    os.chmod(d, 0o755)
    fcgi = FastCgiProbe()
    port, port2 = _free_port(), _free_port()
    proc: subprocess.Popen[bytes] | None = None
    try:
        _write_config(d, port, port2, fcgi.port)
        test = subprocess.run(_nginx(d, "-t"), capture_output=True, timeout=30)
        assert test.returncode == 0, test.stderr.decode()
        with open(d / "stderr.log", "wb") as stderr:
            proc = subprocess.Popen(_nginx(d, "-g", "daemon off;"), stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                socket.create_connection(("127.0.0.1", port2), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = (d / "stderr.log").read_text(errors="replace")
                    pytest.fail(f"nginx did not start: {err} {(d / 'error.log').read_text(errors='replace')}")
                time.sleep(0.05)
        server = read_nginx(LiveHost(), f"{d}/nginx.conf", prefix=str(d))
        assert server is not None
        yield Running(d, port, port2, fcgi, server.sites)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        fcgi.sock.close()
        shutil.rmtree(d, ignore_errors=True)


def _observed(uri: str, run: Running) -> tuple[Reach, dict[str, int]]:
    """What nginx did for ``uri`` from each source, mapped as the module docstring states."""
    statuses: dict[str, int] = {}
    through: dict[str, bool] = {}
    for source in SOURCES:
        run.fcgi.seen.clear()
        status, _ = run.get(uri, source)
        statuses[source] = status
        through[source] = status == 200 or (status == 502 and run.fcgi.seen.is_set())
    assert all(s in (200, 301, 302, 401, 403, 404, 444, 502) for s in statuses.values()), statuses
    if all(through.values()):
        return Reach.OPEN, statuses
    if 401 in statuses.values() or (any(through.values()) and 403 in statuses.values()):
        return Reach.RESTRICTED, statuses
    assert not any(through.values()), statuses
    assert all(s in (301, 302, 403, 404, 444) for s in statuses.values()), statuses
    return Reach.DENIED, statuses


@pytest.mark.parametrize("uri", list(TABLE))
def test_access_agrees_with_nginx(running: Running, uri: str) -> None:
    observed, statuses = _observed(uri, running)
    answer = running.policy("site.test").access(uri)
    assert observed is TABLE[uri], f"the table is wrong about nginx for {uri}: {statuses}"
    assert answer.reach is observed, f"{uri}: nginx {statuses}, hostguard {answer}"


@pytest.mark.parametrize("uri", list(TABLE))
def test_location_choice_agrees_with_nginx(running: Running, uri: str) -> None:
    """The X-Loc header names the block nginx used; ours must be the same block."""
    _, header = running.get(uri, "127.0.0.2")
    if header is None:  # return 444 closes the connection: there is no response to carry the header
        assert uri.startswith("/closed/")
        return
    chosen = running.policy("site.test").location(uri)
    if chosen is None:
        assert header == "server"
        return
    ours = next(d.args[1] for d in chosen.block or () if d.name == "add_header" and d.args[0] == "X-Loc")
    assert header == ours, f"{uri}: nginx used {header}, hostguard chose {chosen.args} ({chosen.where})"


@pytest.mark.parametrize("uri", list(PHP))
def test_runs_php_agrees_with_nginx(running: Running, uri: str) -> None:
    running.fcgi.seen.clear()
    running.get(uri, "127.0.0.2")
    connected = running.fcgi.seen.wait(0.5) if PHP[uri] else running.fcgi.seen.is_set()
    assert connected is PHP[uri], f"the table is wrong about nginx for {uri}"
    assert running.policy("site.test").runs_php(uri) is connected


def test_server_level_redirect_and_rewrite(running: Running) -> None:
    status, _ = running.get("/admin/", "127.0.0.1", port=running.port2)
    assert status == 301
    answer = running.policy("redirect.test").access("/admin/")
    assert answer.reach is Reach.DENIED and "return 301" in answer.how
    assert answer.where[0].path.endswith("sites/site.conf")
    # a rewrite ... last changes the URI before the location is chosen again: not evaluated, said so
    rewritten = running.policy("site.test").access("/rw/x.html")
    assert rewritten.reach is Reach.UNKNOWN and "rewrite" in rewritten.how


def test_sites_as_read(running: Running) -> None:
    site = next(s for s in running.sites if "site.test" in s.names)
    assert site.names == ("site.test", "www.site.test")
    assert site.listens == (f"127.0.0.1:{running.port}",)
    assert [(r.url, r.path) for r in site.roots] == [("/", f"{running.prefix}/www"),
                                                     ("/phpmyadmin/", f"{running.prefix}/pma/")]
    assert site.php_backends == (f"127.0.0.1:{running.fcgi.port}",)
    assert ("server_tokens", "off") in [(n, v) for n, v, _ in site.settings]
    assert site.where.path == f"{running.prefix}/sites/site.conf" and site.where.line == 1


@pytest.mark.skipif(not os.path.exists("/etc/nginx/sites-enabled/default"),
                    reason="Debian's stock nginx configuration is not installed (package nginx-light)")
def test_debian_default_config_as_installed() -> None:
    """This machine's own /etc/nginx (Debian's stock files, read-only) through LiveHost: the parser reads a
    real distribution layout, modules-enabled and sites-enabled globs included."""
    server = read_nginx(LiveHost())
    assert server is not None and server.config == "/etc/nginx/nginx.conf"
    [run_as] = server.run_as
    assert (run_as.user, run_as.group, run_as.source) == ("www-data", "www-data", "config")
    assert str(run_as.where) == "/etc/nginx/nginx.conf:1"
    assert server.settings == (("server_tokens", "on", server.settings[0][2]),)
    assert str(server.settings[0][2]) == "built-in default"   # Debian ships `# server_tokens off;` commented out
    [site] = server.sites
    assert site.names == ("_",)
    assert site.listens == ("80 default_server", "[::]:80 default_server")
    assert [(r.url, r.path, r.where.path) for r in site.roots] == [
        ("/", "/var/www/html", "/etc/nginx/sites-enabled/default")]
    assert site.where.path == "/etc/nginx/sites-enabled/default"
    assert site.php_backends == ()
    assert site.policy is not None
    assert site.policy.access("/index.nginx-debian.html").reach is Reach.OPEN
    assert site.policy.runs_php("/x.php") is False      # the PHP location is commented out in Debian's file
