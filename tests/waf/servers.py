"""Real web servers with ModSecurity for the ``waf enable`` tests: trees, a PHP application, servers on loopback.

A test builds a host tree under /tmp (the servers' workers, www-data and nobody, must read it): this
machine's stock /etc/nginx or /etc/apache2 and /etc/modsecurity, the package files hostguard looks for
under ``--root`` (the module, CRS), and a site of the test's own on a free loopback port in front of a
PHP-FPM pool running a tiny application written here. ``hostguard waf enable --root TREE`` changes the tree;
the server then runs in a private mount namespace where the tree's configuration directories are
bind-mounted over /etc/nginx (/etc/apache2, /etc/modsecurity) and a directory of the test over the log
directory, so it reads exactly the absolute paths hostguard wrote, writes its audit log where the test reads
it, and nothing of this machine's own configuration or logs is read or touched. The network is the
machine's: the test reaches the server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need_root, need_tool, stop_listening, wait_listening

SBIN = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
SOURCES = Path(__file__).resolve().parents[2] / "src"   # this checkout's hostguard, for commands run inside
FPM = "php-fpm8.2"
APP_MARK = b"X-Hostguard-Test-App: served"
# The application: answers every path and method, says it served the request (a header the servers never add)
# and how much body it read. Whatever it answers (200 or its own error), the request reached it.
APP = """<?php
header('X-Hostguard-Test-App: served');
header('Content-Type: text/plain');
$body = file_get_contents('php://input');
echo 'shop: ', $_SERVER['REQUEST_METHOD'], ' ', strlen($body), " bytes\\n";
"""
PACKAGES = {"nginx": ("nginx", "libnginx-mod-http-modsecurity"), "apache": ("apache2", "libapache2-mod-security2")}
MODULE_FILES = {"nginx": "/usr/lib/nginx/modules/ngx_http_modsecurity_module.so",
                "apache": "/usr/lib/apache2/modules/mod_security2.so"}


def need_server(kind: str) -> None:
    """Skip (with the reason) unless root and the server, its ModSecurity module, CRS and PHP-FPM are here."""
    need_root("web servers in private mount namespaces")
    need_tool("unshare", FPM, "nginx" if kind == "nginx" else "apache2")
    for path in (MODULE_FILES[kind], "/usr/share/modsecurity-crs/rules"):
        if not os.path.exists(path):
            pytest.skip(reason=f"{path} is missing: scripts/install-system-deps.sh test installs "
                               f"{' '.join(PACKAGES[kind])} modsecurity-crs")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def readable(path: Path) -> None:
    """Directories 0755, files 0644 (the servers' workers read the site and the tree)."""
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o755)
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), 0o644)
        for name in dirs:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), 0o755)


def snapshot(tree: Path) -> dict[str, str]:
    """Every entry under ``tree``: a file's sha256 with its mode and owner, a link's target, a directory."""
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(tree):
        for name in [*dirs, *files]:
            path = Path(root) / name
            st = path.lstat()
            rel = str(path.relative_to(tree))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                out[rel] = f"dir {st.st_mode:o}"
            else:
                out[rel] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {st.st_mode:o} {st.st_uid}:{st.st_gid}"
    return out


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A directory under /tmp that the servers' unprivileged workers can read (pytest's are private)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def package_files(tree: Path, kind: str) -> None:
    """What the packages put outside /etc that hostguard looks for in a tree: the module and CRS (and
    nginx's modules-available, which its modules-enabled links name)."""
    module = tree / MODULE_FILES[kind].lstrip("/")
    module.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(MODULE_FILES[kind], module)
    shutil.copytree("/usr/share/modsecurity-crs", tree / "usr/share/modsecurity-crs", symlinks=True,
                    dirs_exist_ok=True)
    if kind == "nginx" and os.path.isdir("/usr/share/nginx/modules-available"):
        shutil.copytree("/usr/share/nginx/modules-available", tree / "usr/share/nginx/modules-available",
                        dirs_exist_ok=True)


def stock_tree(tree: Path, kind: str) -> Path:
    """This machine's stock configuration of ``kind`` in ``tree`` with the package files."""
    dirs = ("/etc/nginx", "/etc/logrotate.d") if kind == "nginx" else ("/etc/apache2", "/etc/modsecurity")
    for d in dirs:
        if not os.path.isdir(d):
            pytest.skip(reason=f"{d} is missing (the {' '.join(PACKAGES[kind])} packages create it)")
        shutil.copytree(d, tree / d.lstrip("/"), symlinks=True)
    package_files(tree, kind)
    if kind == "apache":
        enable_apache_modules(tree, ("security2", "unique_id"))
    return tree


def enable_apache_modules(tree: Path, modules: tuple[str, ...]) -> None:
    """``a2enmod`` on the tree: links in mods-enabled for each module's .load (and .conf)."""
    for module in modules:
        for ext in ("load", "conf"):
            link = tree / f"etc/apache2/mods-enabled/{module}.{ext}"
            if (tree / f"etc/apache2/mods-available/{module}.{ext}").exists() and not link.is_symlink():
                link.symlink_to(f"../mods-available/{module}.{ext}")


@dataclass
class Fpm:
    """A php-fpm master on a unix socket, its pool running as nobody, and the application's directory."""

    socket: str
    www: Path


@contextlib.contextmanager
def php_fpm(base: Path) -> Iterator[Fpm]:
    """PHP-FPM (its own config, no ini scan) serving the application in ``base/www``."""
    exe = shutil.which(FPM, path=SBIN)
    assert exe is not None
    www = base / "www"
    www.mkdir(parents=True)
    (www / "index.php").write_text(APP)
    conf = base / "php-fpm.conf"
    conf.write_text(f"[global]\nerror_log = {base}/fpm.log\ndaemonize = no\n[app]\nuser = nobody\ngroup = nogroup\n"
                    f"listen = {base}/php.sock\nlisten.mode = 0666\npm = static\npm.max_children = 4\n")
    readable(base)
    proc = subprocess.Popen([exe, "-F", "-n", "-y", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"PATH": "/usr/bin:/bin", "PHP_INI_SCAN_DIR": ""})
    try:
        deadline = time.monotonic() + 15
        while not _accepting(str(base / "php.sock")):
            assert proc.poll() is None and time.monotonic() < deadline, \
                (base / "fpm.log").read_text() if (base / "fpm.log").exists() else "php-fpm did not start"
            time.sleep(0.05)
        yield Fpm(str(base / "php.sock"), www)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _accepting(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


NGINX_MAIN = """\
worker_processes 2;
pid /run/nginx.pid;
error_log {run}/error.log;
include /etc/nginx/modules-enabled/*.conf;
events {{ worker_connections 256; }}
http {{
    access_log off;
    include /etc/nginx/mime.types;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    include /etc/nginx/conf.d/*.conf;
    include /etc/nginx/sites-enabled/*;
}}
"""
NGINX_SITE = """\
server {{
    listen 127.0.0.1:{port};
    server_name shop.example.test;
    root {www};
    location / {{
        try_files $uri /index.php$is_args$args;
    }}
    location ~ \\.php$ {{
        include fastcgi_params;
        fastcgi_param SCRIPT_FILENAME {www}/index.php;
        fastcgi_pass unix:{sock};
    }}
}}
"""
APACHE_SITE = """\
<VirtualHost 127.0.0.1:{port}>
    ServerName shop.example.test
    DocumentRoot {www}
    <Directory {www}>
        Require all granted
        FallbackResource /index.php
    </Directory>
    <FilesMatch "\\.php$">
        SetHandler "proxy:unix:{sock}|fcgi://localhost"
    </FilesMatch>
</VirtualHost>
"""


def nginx_site_tree(tree: Path, run: Path, fpm: Fpm, port: int) -> None:
    """A host tree whose nginx (Debian's files, the test's nginx.conf) serves the application on ``port``
    through a site enabled by a link, as Debian does it."""
    stock_tree(tree, "nginx")
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    etc = tree / "etc/nginx"
    (etc / "nginx.conf").write_text(NGINX_MAIN.format(run=run))
    for name in os.listdir(etc / "sites-enabled"):
        (etc / "sites-enabled" / name).unlink()
    (etc / "sites-available/shop").write_text(NGINX_SITE.format(port=port, www=fpm.www, sock=fpm.socket))
    (etc / "sites-enabled/shop").symlink_to("../sites-available/shop")
    readable(run)


def apache_site_tree(tree: Path, fpm: Fpm, port: int) -> None:
    """A host tree whose Apache (Debian's files) serves the application through proxy_fcgi on ``port``."""
    stock_tree(tree, "apache")
    etc = tree / "etc/apache2"
    (etc / "ports.conf").write_text(f"Listen 127.0.0.1:{port}\n")
    for name in os.listdir(etc / "sites-enabled"):
        (etc / "sites-enabled" / name).unlink()
    (etc / "sites-available/shop.conf").write_text(APACHE_SITE.format(port=port, www=fpm.www, sock=fpm.socket))
    (etc / "sites-enabled/shop.conf").symlink_to("../sites-available/shop.conf")
    enable_apache_modules(tree, ("proxy", "proxy_fcgi"))


# The servers run with the tree's configuration over /etc, a directory of the test over their log directory
# (the audit log lands there), and a private /run (their pid files are where Debian puts them, so hostguard run
# inside the namespace finds the running server to reload, as on a live host).
START = ('set -e; kind=$1; shift; mount --bind "$1" "$2"; mount --bind "$3" "$4"; shift 4; '
         'mount -t tmpfs -o mode=755 tmpfs /run; mkdir -p -m 1777 /run/lock; '
         'if [ "$kind" = apache ]; then mount --bind "$1" /etc/modsecurity; mkdir -p /run/apache2 /run/lock/apache2; '
         '. /etc/apache2/envvars; exec apache2 -D FOREGROUND; fi; exec "$@"')


class Server:
    """A real nginx or Apache from a host tree, in its own mount namespace, on a loopback port."""

    def __init__(self, kind: str, tree: Path, logs: Path, port: int, run: Path) -> None:
        self.kind, self.tree, self.logs, self.port, self.run = kind, tree, logs, port, run
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def audit_log(self) -> Path:
        return self.logs / ("hostguard-waf-audit.jsonl" if self.kind == "nginx" else "hostguard-waf-audit.log")

    def argv(self) -> list[str]:
        ns = ["unshare", "-m", "--propagation", "private", "sh", "-c", START, "sh", self.kind]
        if self.kind == "nginx":
            return [*ns, str(self.tree / "etc/nginx"), "/etc/nginx", str(self.logs), "/var/log/nginx",
                    shutil.which("nginx", path=SBIN) or "nginx", "-g", "daemon off;"]
        return [*ns, str(self.tree / "etc/apache2"), "/etc/apache2", str(self.logs), "/var/log/apache2",
                str(self.tree / "etc/modsecurity")]

    def inside(self, argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``argv`` run in the server's mount namespace: the tree is this host's /etc there, the server runs."""
        assert self.proc is not None
        return subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "--", *argv], capture_output=True,
                              text=True, timeout=timeout, check=False,
                              env={**os.environ, "PATH": SBIN, "PYTHONPATH": str(SOURCES)})

    def start(self) -> None:
        self.logs.mkdir(exist_ok=True)
        os.chmod(self.logs, 0o755)
        out = open(self.run / f"{self.kind}.out", "wb")   # noqa: SIM115 - the server's own output, kept open
        self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "PATH": SBIN})
        out.close()
        wait_listening(self.proc, self.port, 30, lambda: f"{self.kind} did not start: {self.output()}")

    def output(self) -> str:
        parts = [(self.run / f"{self.kind}.out").read_text(errors="replace")]
        for log in (self.run / "error.log", self.logs / "error.log"):
            if log.exists():
                parts.append(log.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_listening(self.proc, self.port)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
