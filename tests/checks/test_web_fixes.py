"""The web family's fixes, proven by the servers that read them.

* ``web.server_tokens`` and ``web.directory_listing`` are exact steps: applied (respond/apply.py) to a copy of
  this machine's stock Debian /etc/nginx and /etc/apache2, the configuration test the fix prints (``nginx -t``,
  ``apache2ctl configtest``) accepts the copy -- run in a private mount and network namespace where the copy is
  bind-mounted over /etc/nginx or /etc/apache2, so the real files are never read or written -- and a re-scan
  of the tree is quiet. On a private nginx and a private httpd on loopback: before the fix the ``Server:``
  header names the version and a directory lists its files; after it, neither.
* Every by-hand fix that prints server configuration (the first `...` part of its text: admin back ends,
  PHP in writable directories, and the by-hand forms of the two above) is inserted where the text says and
  checked by the server; the access restrictions are asked over loopback: the allowed address is served
  (PHP executed by a real php-fpm, not sent as text), 127.0.0.2 gets 403, and the re-scan is quiet.

Servers run from temporary directories under /tmp (their workers, nobody and www-data, must read them); the
host tree each scan reads holds a link from the tree's own path back to its root, so the same absolute paths
name the same files for the real server and for hostguard under ``--root``.
"""

from __future__ import annotations

import http.client
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostguard.checks.web import _listing_fix, _tokens_fix, _without_indexes
from hostguard.findings import Finding
from hostguard.host.base import RootHost
from hostguard.host.web.apache import _merge_options
from hostguard.host.web.model import WebServer, Where
from hostguard.host.web.nginx import ConfigText, block_end, nginx_word, parse_text
from hostguard.remediation import Command, Edit
from hostguard.respond.apply import apply
from tests.conftest import build_tree, make_config, need_root, need_tool, run_one, stop_listening, wait_listening
from tests.host.services.helpers import accepting

SBIN = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
MODULES = "/usr/lib/apache2/modules"
APACHE_MODULES = ("mpm_event", "authz_core", "authz_host", "authn_core", "alias", "dir", "autoindex", "proxy",
                  "proxy_fcgi", "mime")
FPM = "php-fpm8.2"
PHP_PAGE = "<?php echo 'php-', 6 * 7, \"\\n\";\n"   # executed: "php-42"; sent as text: the source



def _accepting(sock_path: str) -> bool:
    """Whether php-fpm listens yet (its socket file exists from bind(), before listen())."""
    try:
        return accepting(sock_path)
    except OSError:
        return False

def _tool(name: str) -> str:
    need_tool(name)
    found = shutil.which(name, path=SBIN)
    assert found is not None
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _snippet(finding: Finding) -> str:
    """The configuration a by-hand fix prints: the first `...` part of its text (web.py's convention)."""
    parts = (finding.remediation.manual or "").split("`")
    assert len(parts) >= 3, finding.remediation.manual
    return parts[1]


def _filled(finding: Finding, text: str, **values: str) -> str:
    """``text`` with each Param replaced by the value given, or by the Param's own example."""
    for param in finding.remediation.params:
        text = text.replace(param.name, values.get(param.name, param.example))
    return text


def _insert(path: Path, after_line: int, text: str) -> None:
    """``text`` inserted after line ``after_line`` (1-based; 0: at the top) of ``path``."""
    lines = path.read_text().split("\n")
    lines[after_line:after_line] = text.split("\n")
    path.write_text("\n".join(lines))


def _line_of(path: Path, pattern: str, start: int = 0) -> int:
    """The 1-based number of the first line after ``start`` matching ``pattern``."""
    for number, line in enumerate(path.read_text().split("\n"), 1):
        if number > start and re.search(pattern, line):
            return number
    raise AssertionError(f"{path}: no line matches {pattern}")


def _link_tree_to_itself(tree: Path) -> None:
    """A link at the tree's own absolute path pointing at its root: under ``--root`` the absolute paths the
    real server uses (``root /tmp/…/srv/site``) then name the same files inside the tree."""
    link = tree / str(tree).lstrip("/")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("/")


def _readable(path: Path) -> None:
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


@pytest.fixture
def tmp_tree() -> Iterator[Path]:
    """A directory under /tmp that the servers' unprivileged workers can read (pytest's are private)."""
    need_root("servers whose workers run as nobody and www-data")
    d = Path(tempfile.mkdtemp(prefix="hg-webfix-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- the printed configuration test, on a copy, in a private namespace -------------------------------------

CHECK_SCRIPT = ('mount --bind "$1" "$2" && mount -t tmpfs tmpfs "$3" && mount -t tmpfs -o mode=755 tmpfs /run '
                '&& mkdir -m 1777 /run/lock && shift 3 && exec "$@"')


def _config_test(tree: Path, kind: str, argv: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (the fix's own configuration test) with the tree's /etc/<kind> over /etc/<kind>, a
    fresh /run and log directory, in a new mount and network namespace: the machine's files stay untouched."""
    need_tool("unshare", argv[0])
    log = "/var/log/nginx" if kind == "nginx" else "/var/log/apache2"
    if not os.path.isdir(log) or not os.path.isdir(f"/etc/{kind}"):
        pytest.skip(reason=f"/etc/{kind} or {log} is missing (the {kind} package creates them)")
    return subprocess.run(["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", CHECK_SCRIPT, "sh",
                           str(tree / "etc" / kind), f"/etc/{kind}", log, *argv],
                          capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PATH": SBIN})


def _stock_tree(dest: Path) -> Path:
    """The clean fixture host with this machine's stock Debian /etc/nginx and /etc/apache2 copied in."""
    for path in ("/etc/nginx/nginx.conf", "/etc/apache2/apache2.conf", "/etc/apache2/envvars"):
        if not os.path.exists(path):
            pytest.skip(reason=f"{path} is missing: the stock configuration comes from the nginx-light and "
                               "apache2 packages")
    tree = build_tree(dest)
    shutil.copytree("/etc/nginx", tree / "etc/nginx", symlinks=True)
    shutil.copytree("/etc/apache2", tree / "etc/apache2", symlinks=True)
    return tree


def _find(check: str, tree: Path) -> list[Finding]:
    return run_one(check, RootHost(str(tree)), make_config(web={"writable_allow": ["up"]}))[0]


def _tests_of(finding: Finding) -> list[tuple[str, ...]]:
    """The configuration-test commands of a fix (the step before the reload)."""
    return [s.argv for s in finding.remediation.steps if isinstance(s, Command) and s.argv[0] != "systemctl"]


def test_debian_stock_configs_fixed_by_the_steps_pass_their_servers_test_and_rescan_quiet(tmp_path: Path) -> None:
    """Hit on the stock files: nginx's commented ``# server_tokens off;`` is uncommented, Apache's
    ``ServerTokens OS``/``ServerSignature On`` in conf-available/security.conf (conf-enabled holds a link, and a
    fix writes through no link) and ``Options Indexes FollowSymLinks`` in apache2.conf are rewritten."""
    need_root("mount namespaces")
    tree = _stock_tree(tmp_path / "host")
    nginx_conf = tree / "etc/nginx/nginx.conf"
    comment = _line_of(nginx_conf, r"^\s*#\s*server_tokens")
    security = tree / "etc/apache2/conf-available/security.conf"
    tokens_line, signature_line = _line_of(security, r"^ServerTokens "), _line_of(security, r"^ServerSignature On")
    options_line = _line_of(tree / "etc/apache2/apache2.conf", r"^\s*Options Indexes FollowSymLinks$")

    by_server = {f.evidence["server"]: f for f in _find("web.server_tokens", tree)}
    assert set(by_server) == {"nginx", "apache"}
    nginx_old = nginx_conf.read_text().split("\n")[comment - 1]
    assert by_server["nginx"].remediation.steps == (
        Edit("/etc/nginx/nginx.conf", comment, nginx_old, nginx_old.replace("# ", "")),
        Command(("nginx", "-t")), Command(("systemctl", "try-reload-or-restart", "nginx")))
    apache_steps = by_server["apache"].remediation.steps
    assert by_server["apache"].target["path"] == "/etc/apache2/conf-enabled/security.conf"
    assert apache_steps[:2] == (
        Edit("/etc/apache2/conf-available/security.conf", tokens_line,
             security.read_text().split("\n")[tokens_line - 1], "ServerTokens Prod"),
        Edit("/etc/apache2/conf-available/security.conf", signature_line, "ServerSignature On", "ServerSignature Off"))
    assert apache_steps[2:] == (Command(("apache2ctl", "configtest")),
            Command(("systemctl", "try-reload-or-restart", "apache2")))
    [listing] = _find("web.directory_listing", tree)
    assert listing.target["line"] == str(options_line)
    assert listing.remediation.steps[0] == Edit("/etc/apache2/apache2.conf", options_line,
                                                "\tOptions Indexes FollowSymLinks", "\tOptions FollowSymLinks")

    for finding in (*by_server.values(), listing):
        apply(finding.remediation.steps, str(tree))
    assert (tree / "etc/apache2/conf-enabled/security.conf").is_symlink()   # the link itself is left alone
    for finding in (*by_server.values(), listing):
        for argv in _tests_of(finding):
            done = _config_test(tree, finding.evidence["server"].replace("apache", "apache2"), argv)
            assert done.returncode == 0, (argv, done.stderr)
    assert _find("web.server_tokens", tree) == []
    assert _find("web.directory_listing", tree) == []


def test_nginx_without_any_server_tokens_line_gets_one_after_http(tmp_path: Path) -> None:
    """Hit: the stock nginx.conf without its commented line; the fix inserts ``server_tokens off;`` right
    after ``http {`` with the block's own indentation, nginx -t accepts it and the re-scan is quiet."""
    need_root("mount namespaces")
    tree = _stock_tree(tmp_path / "host")
    shutil.rmtree(tree / "etc/apache2")
    conf = tree / "etc/nginx/nginx.conf"
    conf.write_text("\n".join(x for x in conf.read_text().split("\n") if "server_tokens" not in x))
    http = _line_of(conf, r"^http\s*\{")
    [found] = _find("web.server_tokens", tree)
    first = next(x for x in conf.read_text().split("\n")[http:] if x.strip())
    indent = first[:len(first) - len(first.lstrip())]
    assert indent == "\t"   # Debian's file is indented with tabs
    assert found.remediation.steps[0] == Edit("/etc/nginx/nginx.conf", http, "http {",
                                              f"http {{\n{indent}server_tokens off;")
    apply(found.remediation.steps, str(tree))
    done = _config_test(tree, "nginx", _tests_of(found)[0])
    assert done.returncode == 0, done.stderr
    assert _find("web.server_tokens", tree) == []


# -- by-hand forms: what stays by hand is still text the server accepts ------------------------------------

def test_lines_that_cannot_be_rewritten_stay_by_hand_and_their_text_is_accepted(tmp_path: Path) -> None:
    """Near miss of the exact steps: two nginx directives on one line, an Apache line continued with ``\\``,
    an Options line mixing +/- with plain options: no step, a reason; the text printed instead, put where it
    says, passes ``nginx -t`` / ``apache2ctl configtest``."""
    need_root("mount namespaces")
    tree = _stock_tree(tmp_path / "host")
    conf = tree / "etc/nginx/nginx.conf"
    conf.write_text(re.sub(r"(?m)^\s*#\s*server_tokens off;$", "\tgzip_vary on; server_tokens on;", conf.read_text()))
    nginx = next(f for f in _find("web.server_tokens", tree) if f.evidence["server"] == "nginx")
    assert nginx.remediation.steps == () and "holds more than" in (nginx.remediation.manual or "")
    assert _snippet(nginx) == "server_tokens off;"
    conf.write_text(conf.read_text().replace("gzip_vary on; server_tokens on;", "gzip_vary on; " + _snippet(nginx)))

    site = tree / "etc/nginx/sites-available/default"
    site.write_text(re.sub(r"(?m)^(\s*)location / \{$", r"\1location / {\n\1\tautoindex on; gzip on;",
                           site.read_text()))
    [listing] = [f for f in _find("web.directory_listing", tree) if f.evidence["server"] == "nginx"]
    assert listing.remediation.steps == () and _snippet(listing) == "autoindex off;"
    site.write_text(site.read_text().replace("autoindex on; gzip on;", _snippet(listing) + " gzip on;"))
    done = _config_test(tree, "nginx", ("nginx", "-t"))
    assert done.returncode == 0, done.stderr

    security = tree / "etc/apache2/conf-available/security.conf"
    security.write_text(re.sub(r"(?m)^ServerTokens OS$", "ServerTokens \\\\\n    OS", security.read_text()))
    apache = next(f for f in _find("web.server_tokens", tree) if f.evidence["server"] == "apache")
    assert apache.remediation.steps == () and "continued" in (apache.remediation.manual or "")
    assert _snippet(apache) == "ServerTokens Prod"
    security.write_text(security.read_text().replace("ServerTokens \\\n    OS", "ServerTokens Prod\nServerSignature Off"))
    main = tree / "etc/apache2/apache2.conf"
    main.write_text(main.read_text().replace("\tOptions Indexes FollowSymLinks", "\tOptions Indexes +FollowSymLinks"))
    [listing] = _find("web.directory_listing", tree)
    assert listing.remediation.steps == () and "mixes" in (listing.remediation.manual or "")
    assert _snippet(listing) == "Options -Indexes"
    refused = _config_test(tree, "apache2", ("apache2ctl", "configtest"))
    assert refused.returncode != 0 and "Either all Options" in refused.stdout + refused.stderr   # httpd agrees
    main.write_text(main.read_text().replace("\tOptions Indexes +FollowSymLinks", "\t" + _snippet(listing)))
    done = _config_test(tree, "apache2", ("apache2ctl", "configtest"))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("line", "expected"), [
    ("\tOptions Indexes FollowSymLinks", "\tOptions FollowSymLinks"),
    ("Options Indexes", "Options None"),
    ("Options All", "Options FollowSymLinks Includes ExecCGI"),
    ("Options All Indexes MultiViews", "Options FollowSymLinks Includes ExecCGI MultiViews"),
    ("  options +Indexes -ExecCGI", "  options -Indexes -ExecCGI"),
    ("Options MultiViews Indexes SymLinksIfOwnerMatch IncludesNoExec",
     "Options MultiViews SymLinksIfOwnerMatch IncludesNoExec"),
])
def test_options_without_indexes_is_a_line_httpd_accepts(tmp_tree: Path, line: str, expected: str) -> None:
    """Which line the rewrite gives, that it turns listing off even where a parent section turned it on, and
    httpd's own test accepting it in a <Directory>."""
    new, why = _without_indexes(line)
    assert (new, why) == (expected, "") and new is not None
    assert "indexes" not in _merge_options({"indexes", "followsymlinks"}, new.split()[1:])
    apache2 = _tool("apache2")
    (tmp_tree / "run").mkdir()
    conf = tmp_tree / "httpd.conf"
    loads = "\n".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in ("mpm_event", "authz_core"))
    conf.write_text(f"ServerName t.test\nDefaultRuntimeDir {tmp_tree}/run\nPidFile {tmp_tree}/run/pid\n"
                    f"ErrorLog {tmp_tree}/run/error.log\n{loads}\n"
                    f"Listen 127.0.0.1:{_free_port()}\n<Directory {tmp_tree}>\n{new}\n</Directory>\n")
    done = subprocess.run([apache2, "-d", str(tmp_tree), "-f", str(conf), "-t"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("line", ["Options Indexes +FollowSymLinks", "Options +All", "Options Indexes \\",
                                  'Options "Indexes"', "Options"])
def test_options_lines_not_rewritten(line: str) -> None:
    new, why = _without_indexes(line)
    assert new is None and why


def test_tokens_and_listing_fixes_are_pure_functions_of_the_text() -> None:
    """Hit and near miss without any server: Apache with no ServerTokens anywhere gets one after the main
    file's last line; an nginx line with a quoted value stays by hand."""
    main = "/etc/httpd/conf/httpd.conf"
    text = ConfigText(((main, ("Listen 80", "IncludeOptional conf.d/*.conf")),), ((main, main),))
    server = WebServer("apache", main, (), (), (("ServerTokens", "Full", Where("")),
                                                 ("ServerSignature", "Off", Where(""))))
    fix = _tokens_fix(server, {"ServerTokens": ("Full", Where("")), "ServerSignature": ("Off", Where(""))}, text)
    assert fix.steps == (Edit(main, 2, "IncludeOptional conf.d/*.conf",
                              "IncludeOptional conf.d/*.conf\nServerTokens Prod"),
                         Command(("apachectl", "configtest")), Command(("systemctl", "try-reload-or-restart", "httpd")))
    conf = "/etc/nginx/conf.d/x.conf"
    nginx = WebServer("nginx", "/etc/nginx/nginx.conf", (), ())
    quoted = ConfigText(((conf, ('    autoindex "on";',)),))
    fix = _listing_fix(nginx, Where(conf, 1), quoted)
    assert fix.steps == () and _snippet_of(fix.manual) == "autoindex off;"
    plain = ConfigText(((conf, ("    autoindex on;  # share the isos",)),), ((conf, "/etc/nginx/real.conf"),))
    assert _listing_fix(nginx, Where(conf, 1), plain).steps[0] == Edit(
        "/etc/nginx/real.conf", 1, "    autoindex on;  # share the isos", "    autoindex off; # share the isos")


def _snippet_of(manual: str | None) -> str:
    return (manual or "").split("`")[1]


# -- parsers of the text a fix writes (hypothesis) ----------------------------------------------------------

@given(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=30))
def test_nginx_word_reads_back_as_written(value: str) -> None:
    """Any value hostguard writes into a location line is read back by nginx's tokenizer as the same word."""
    [d] = parse_text(f"location {nginx_word(value)} {{ }}", "/x.conf")
    assert d.args == (value,)


@given(st.lists(st.sampled_from(["a;", "b {", "}", "# c {", "'q }'", "\"r {\"", "d;"]), max_size=12))
def test_block_end_matches_the_parser(parts: list[str]) -> None:
    """block_end finds the closing line of the block opened on line 1 exactly when the parser says the
    whole text is that one block (garbage gives 0, never an exception)."""
    text = "http {\n" + "\n".join(parts) + "\n}\n"
    end = block_end(text, "/x.conf", 1)
    try:
        parsed = parse_text(text, "/x.conf")
    except Exception:
        return
    if len(parsed) == 1:
        assert end == text.count("\n")


# -- real servers on loopback --------------------------------------------------------------------------------

@dataclass
class Fpm:
    """A php-fpm master on a unix socket, its pool running as nobody."""

    socket: str


@pytest.fixture(scope="module")
def fpm() -> Iterator[Fpm]:
    need_root("php-fpm's pool user")
    exe = _tool(FPM)
    d = Path(tempfile.mkdtemp(prefix="hg-webfix-fpm-", dir="/tmp"))
    os.chmod(d, 0o755)
    group = "nogroup"
    conf = d / "php-fpm.conf"
    conf.write_text(f"[global]\nerror_log = {d}/fpm.log\ndaemonize = no\n[site]\nuser = nobody\ngroup = {group}\n"
                    f"listen = {d}/php.sock\nlisten.mode = 0666\npm = static\npm.max_children = 2\n")
    proc = subprocess.Popen([exe, "-F", "-n", "-y", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"PATH": "/usr/bin:/bin", "PHP_INI_SCAN_DIR": ""})
    try:
        deadline = time.monotonic() + 15
        while not (d / "php.sock").exists() or not _accepting(str(d / "php.sock")):
            assert proc.poll() is None and time.monotonic() < deadline, \
                (d / "fpm.log").read_text() if (d / "fpm.log").exists() else "php-fpm did not start"
            time.sleep(0.05)
        yield Fpm(str(d / "php.sock"))
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        shutil.rmtree(d, ignore_errors=True)


def _get(port: int, uri: str, source: str = "127.0.0.1") -> tuple[int, str, str]:
    """Status, Server header and body of a GET from ``source`` (a loopback address)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", uri, headers={"Host": "site.test"})
        response = conn.getresponse()
        return response.status, response.getheader("Server") or "", response.read().decode(errors="replace")
    finally:
        conn.close()


class Server:
    """A private nginx or httpd started from a config file, restartable after a fix."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.argv, self.port, self.log = argv, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.proc, self.port, 15, lambda: f"{self.argv[0]} did not start: " +
                       (self.log.read_text(errors="replace") if self.log.exists() else ""))

    def stop(self) -> None:
        if self.proc is not None:
            stop_listening(self.proc, self.port, 10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _site_files(www: Path, owner: int) -> None:
    """The site: an index page and a PHP page, phpMyAdmin (found by its marker file), a directory without an
    index file (listed when listing is on) and an upload directory the serving account owns."""
    for rel, content in (("index.html", "home\n"), ("index.php", PHP_PAGE), ("files/secret-backup.sql", "dump\n"),
                         ("phpmyadmin/index.php", PHP_PAGE), ("phpmyadmin/show_config_errors.php", "<?php\n"),
                         ("up/x.php", PHP_PAGE)):
        (www / rel).parent.mkdir(parents=True, exist_ok=True)
        (www / rel).write_text(content)
    _readable(www)
    os.chown(www / "up", owner, owner)


NGINX_MAIN = """\
worker_processes 1;
pid {run}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    include sites/*.conf;
}}
"""

NGINX_SITE = """\
server {{
    listen 127.0.0.1:{port};
    server_name site.test;
    root {www};
    index index.php index.html;
    location /files/ {{
        autoindex on;
    }}
    location ~ \\.php$ {{
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_param REQUEST_METHOD $request_method;
        fastcgi_pass unix:{sock};
    }}
}}
"""


@pytest.fixture
def nginx_site(tmp_tree: Path, fpm: Fpm) -> Iterator[tuple[Path, Server]]:
    """The clean host tree with an nginx of its own in /etc/nginx (relative includes, so the real nginx given
    ``-c`` and hostguard under ``--root`` read the same files), started on 127.0.0.1."""
    nginx = _tool("nginx")
    tree = build_tree(tmp_tree / "host")
    _link_tree_to_itself(tree)
    run, www = tmp_tree / "run", tree / "srv/site"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run / sub).mkdir(parents=True)
    nobody = pwd.getpwnam("nobody").pw_uid
    _site_files(www, nobody)
    (tree / "etc/nginx/sites").mkdir(parents=True)
    port = _free_port()
    (tree / "etc/nginx/nginx.conf").write_text(NGINX_MAIN.format(run=run))
    (tree / "etc/nginx/sites/site.conf").write_text(NGINX_SITE.format(port=port, www=www, sock=fpm.socket))
    _readable(tree / "etc/nginx")
    conf = tree / "etc/nginx/nginx.conf"
    server = Server([nginx, "-p", f"{run}/", "-c", str(conf), "-e", f"{run}/error.log", "-g", "daemon off;"], port,
                    run / "error.log")
    server.start()
    try:
        yield tree, server
    finally:
        server.stop()


def _nginx_test(tree: Path, server: Server) -> None:
    done = subprocess.run([*server.argv[:7], "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


def test_nginx_on_loopback_stops_naming_its_version_and_listing_after_the_fix(nginx_site: tuple[Path, Server]) -> None:
    tree, server = nginx_site
    status, banner, _ = _get(server.port, "/")
    assert status == 200 and re.fullmatch(r"nginx/\d+\.\d+\.\d+.*", banner)
    status, _, body = _get(server.port, "/files/")
    assert status == 200 and "secret-backup.sql" in body
    [tokens] = _find("web.server_tokens", tree)
    [listing] = _find("web.directory_listing", tree)
    assert tokens.remediation.steps[0] == Edit("/etc/nginx/nginx.conf", 4, "http {", "http {\n    server_tokens off;")
    assert listing.remediation.steps[0] == Edit("/etc/nginx/sites/site.conf", 7, "        autoindex on;",
                                                "        autoindex off;")
    apply([*tokens.remediation.steps, *listing.remediation.steps], str(tree))
    _nginx_test(tree, server)
    server.restart()
    status, banner, _ = _get(server.port, "/")
    assert (status, banner) == (200, "nginx")
    status, _, body = _get(server.port, "/files/")
    assert status == 403 and "secret-backup.sql" not in body
    assert _find("web.server_tokens", tree) == [] and _find("web.directory_listing", tree) == []


def test_nginx_admin_restriction_snippet_keeps_php_running_for_the_allowed_address(
        nginx_site: tuple[Path, Server]) -> None:
    """Hit: phpMyAdmin open to 127.0.0.2. The printed location, with the Param's example address, passes
    ``nginx -t``; with 127.0.0.1 as ADMIN_ADDRESS it serves 127.0.0.1 (PHP executed, not sent as text) and
    refuses 127.0.0.2 (403); the re-scan is quiet."""
    tree, server = nginx_site
    assert _get(server.port, "/phpmyadmin/", "127.0.0.2")[::2] == (200, "php-42\n")
    [found] = _find("web.admin_exposed", tree)
    assert (found.target["app"], found.target["url"]) == ("phpMyAdmin", "/phpmyadmin/")
    assert "server block at /etc/nginx/sites/site.conf:1" in (found.remediation.manual or "")
    snippet = _snippet(found)
    assert snippet.startswith("location ^~ /phpmyadmin/ {\n    allow ADMIN_ADDRESS;\n    deny all;\n"
                              "    location ~ \\.php$ {\n")
    site = tree / "etc/nginx/sites/site.conf"
    original = site.read_text()
    _insert(site, 1, _filled(found, snippet))
    _nginx_test(tree, server)
    site.write_text(original)
    _insert(site, 1, _filled(found, snippet, ADMIN_ADDRESS="127.0.0.1"))
    _nginx_test(tree, server)
    server.restart()
    for uri in ("/phpmyadmin/", "/phpmyadmin/index.php"):
        assert _get(server.port, uri, "127.0.0.1")[::2] == (200, "php-42\n"), uri
        assert _get(server.port, uri, "127.0.0.2")[0] == 403, uri
    assert _get(server.port, "/index.php", "127.0.0.2")[::2] == (200, "php-42\n")   # the rest of the site is open
    assert _find("web.admin_exposed", tree) == []


def test_nginx_no_php_in_upload_dir_snippet(nginx_site: tuple[Path, Server]) -> None:
    """Hit: /up/ (owned by the serving account) runs PHP. The printed regex location, put just before the PHP
    location as the text says, passes ``nginx -t``; /up/x.php is then refused (403) while /index.php still
    runs, and the re-scan is quiet."""
    tree, server = nginx_site
    assert _get(server.port, "/up/x.php")[::2] == (200, "php-42\n")
    [found] = _find("web.php_in_writable_dir", tree)
    assert [d["url"] for d in found.evidence["dirs"]] == ["/up/"]
    site = tree / "etc/nginx/sites/site.conf"
    php_line = _line_of(site, r"location ~ \\\.php\$")
    assert f"In /etc/nginx/sites/site.conf, add just before line {php_line} " in (found.remediation.manual or "")
    snippet = _snippet(found)
    assert snippet == "location ~* ^/up/.*[.]php$ { deny all; }"
    _insert(site, php_line - 1, _filled(found, snippet))
    _nginx_test(tree, server)
    server.restart()
    assert _get(server.port, "/up/x.php")[0] == 403
    assert _get(server.port, "/up/X.PHP")[0] in (403, 404)
    assert _get(server.port, "/index.php")[::2] == (200, "php-42\n")
    assert _find("web.php_in_writable_dir", tree) == []


APACHE_MAIN = """\
PidFile {run}/httpd.pid
DefaultRuntimeDir {run}
ErrorLog {run}/error.log
Listen 127.0.0.1:{port}
ServerName site.test
{loads}
User www-data
Group www-data
IncludeOptional conf-enabled/*.conf
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory {www}>
    Options Indexes FollowSymLinks
    AllowOverride None
    Require all granted
</Directory>
<VirtualHost 127.0.0.1:{port}>
    ServerName site.test
    DocumentRoot {www}
    DirectoryIndex index.php index.html
    <FilesMatch "\\.php$">
        SetHandler "proxy:unix:{sock}|fcgi://localhost"
    </FilesMatch>
</VirtualHost>
"""


@pytest.fixture
def apache_site(tmp_tree: Path, fpm: Fpm) -> Iterator[tuple[Path, Server]]:
    """The clean host tree with an Apache in /etc/apache2 (Debian's layout: conf-enabled/security.conf is a
    link into conf-available), run with ``-d`` on that directory and started on 127.0.0.1."""
    apache2 = _tool("apache2")
    for module in APACHE_MODULES:
        if not os.path.exists(f"{MODULES}/mod_{module}.so"):
            pytest.skip(reason=f"mod_{module} is missing (the apache2 package installs it)")
    www_data = pwd.getpwnam("www-data").pw_uid
    tree = build_tree(tmp_tree / "host")
    _link_tree_to_itself(tree)
    run, www, etc = tmp_tree / "run", tree / "srv/site", tree / "etc/apache2"
    run.mkdir()
    _site_files(www, www_data)
    port = _free_port()
    loads = "\n".join(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in APACHE_MODULES)
    (etc / "conf-available").mkdir(parents=True)
    (etc / "conf-enabled").mkdir()
    (etc / "apache2.conf").write_text(APACHE_MAIN.format(run=run, port=port, www=www, sock=fpm.socket, loads=loads))
    (etc / "conf-available/security.conf").write_text("# how much the server tells about itself\n"
                                                      "ServerTokens Full\nServerSignature On\n")
    (etc / "conf-enabled/security.conf").symlink_to("../conf-available/security.conf")
    (etc / "mime.types").write_text("")   # mod_mime's default TypesConfig, relative to ServerRoot
    _readable(etc)
    server = Server([apache2, "-d", str(etc), "-f", str(etc / "apache2.conf"), "-X"], port, run / "error.log")
    server.start()
    try:
        yield tree, server
    finally:
        server.stop()


def _apache_test(server: Server) -> None:
    done = subprocess.run([*server.argv[:5], "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


def test_apache_on_loopback_stops_naming_its_version_and_listing_after_the_fix(
        apache_site: tuple[Path, Server]) -> None:
    tree, server = apache_site
    status, banner, _ = _get(server.port, "/")
    assert status == 200 and re.match(r"Apache/2\.\d+\.\d+", banner)
    status, _, body = _get(server.port, "/files/")
    assert status == 200 and "secret-backup.sql" in body
    status, _, body = _get(server.port, "/no-such-page")
    assert status == 404 and re.search(r"Apache/2\.\d+\.\d+", body)   # ServerSignature On: the version again
    [tokens] = _find("web.server_tokens", tree)
    [listing] = _find("web.directory_listing", tree)
    assert tokens.remediation.steps[:2] == (
        Edit("/etc/apache2/conf-available/security.conf", 2, "ServerTokens Full", "ServerTokens Prod"),
        Edit("/etc/apache2/conf-available/security.conf", 3, "ServerSignature On", "ServerSignature Off"))
    options = _line_of(tree / "etc/apache2/apache2.conf", r"^    Options Indexes FollowSymLinks$")
    assert listing.remediation.steps[0] == Edit("/etc/apache2/apache2.conf", options,
                                                "    Options Indexes FollowSymLinks", "    Options FollowSymLinks")
    apply([*tokens.remediation.steps, *listing.remediation.steps], str(tree))
    _apache_test(server)
    server.restart()
    status, banner, _ = _get(server.port, "/")
    assert (status, banner) == (200, "Apache")
    status, _, body = _get(server.port, "/files/")
    assert status == 403 and "secret-backup.sql" not in body
    status, _, body = _get(server.port, "/no-such-page")
    assert status == 404 and "Apache/" not in body
    assert _find("web.server_tokens", tree) == [] and _find("web.directory_listing", tree) == []


def test_apache_snippets_restrict_the_back_end_and_stop_php_in_the_upload_dir(apache_site: tuple[Path, Server]) -> None:
    """Hits: phpMyAdmin open to anyone, PHP run from /up/. Both printed sections, put just before
    ``</VirtualHost>`` as the texts say (with the Param's example, then with 127.0.0.1), pass httpd's test;
    127.0.0.1 gets phpMyAdmin executed, 127.0.0.2 gets 403; /up/x.php is refused, /index.php still runs;
    the re-scan is quiet."""
    tree, server = apache_site
    assert _get(server.port, "/phpmyadmin/index.php", "127.0.0.2")[::2] == (200, "php-42\n")
    assert _get(server.port, "/up/x.php")[::2] == (200, "php-42\n")
    [admin] = [f for f in _find("web.admin_exposed", tree) if f.target["site"] == "site.test"]
    [php] = [f for f in _find("web.php_in_writable_dir", tree) if "site.test" in f.evidence["site"]]
    conf = tree / "etc/apache2/apache2.conf"
    vhost = _line_of(conf, r"^<VirtualHost ")
    for found in (admin, php):
        assert f"just before the </VirtualHost> line that closes the site at /etc/apache2/apache2.conf:{vhost}" in \
            (found.remediation.manual or "")
    assert _snippet(admin) == '<Location "/phpmyadmin/">\n    Require ip ADMIN_ADDRESS\n</Location>'
    assert _snippet(php).startswith(f'<Directory "{tree}/srv/site/up">\n')
    original = conf.read_text()
    for values in ({}, {"ADMIN_ADDRESS": "127.0.0.1"}):
        conf.write_text(original)
        for found in (admin, php):
            _insert(conf, _line_of(conf, r"^</VirtualHost>", vhost) - 1, _filled(found, _snippet(found), **values))
        _apache_test(server)
    server.restart()
    for uri in ("/phpmyadmin/", "/phpmyadmin/index.php"):
        assert _get(server.port, uri, "127.0.0.1")[::2] == (200, "php-42\n"), uri
        assert _get(server.port, uri, "127.0.0.2")[0] == 403, uri
    assert _get(server.port, "/up/x.php")[0] == 403
    assert _get(server.port, "/index.php", "127.0.0.2")[::2] == (200, "php-42\n")
    assert [f for f in _find("web.admin_exposed", tree) if f.target["site"] == "site.test"] == []
    assert [f for f in _find("web.php_in_writable_dir", tree) if "site.test" in f.evidence["site"]] == []


def test_nginx_existing_location_gets_the_allow_lines_inside_it(nginx_site: tuple[Path, Server]) -> None:
    """Hit: phpMyAdmin already has its own ``^~`` location (with PHP nested): nginx refuses a second location
    of that name, so the fix puts ``allow``/``deny`` inside the existing one, which nginx accepts and which
    then refuses 127.0.0.2 and serves 127.0.0.1 with PHP executed. Near miss of that snippet: a plain prefix
    location whose .php requests go to the outer PHP location gets no snippet (allow/deny there would not
    hold for .php), only the reason."""
    tree, server = nginx_site
    site = tree / "etc/nginx/sites/site.conf"
    original = site.read_text()
    php = "\n".join(original.split("\n")[_line_of(site, r"location ~ \\\.php\$") - 1:][:5])
    _insert(site, 1, "    location ^~ /phpmyadmin/ {\n    " + php.replace("\n", "\n    ") + "\n    }")
    server.restart()
    assert _get(server.port, "/phpmyadmin/", "127.0.0.2")[::2] == (200, "php-42\n")
    [found] = _find("web.admin_exposed", tree)
    assert "inside the location at /etc/nginx/sites/site.conf:2, right after its opening line" in \
        (found.remediation.manual or "")
    assert _snippet(found) == "allow ADMIN_ADDRESS;\ndeny all;"
    _insert(site, 2, _filled(found, _snippet(found)))
    _nginx_test(tree, server)
    site.write_text(original)
    _insert(site, 1, "    location ^~ /phpmyadmin/ {\n    " + php.replace("\n", "\n    ") + "\n    }")
    _insert(site, 2, _filled(found, _snippet(found), ADMIN_ADDRESS="127.0.0.1"))
    _nginx_test(tree, server)
    server.restart()
    assert _get(server.port, "/phpmyadmin/", "127.0.0.1")[::2] == (200, "php-42\n")
    assert _get(server.port, "/phpmyadmin/index.php", "127.0.0.2")[0] == 403
    assert _find("web.admin_exposed", tree) == []

    site.write_text(original)
    _insert(site, 1, "    location /phpmyadmin/ { }")
    [plain] = _find("web.admin_exposed", tree)
    assert "`" not in (plain.remediation.manual or "") and "decided by another location" in \
        (plain.remediation.manual or "")


def test_apache_snippets_for_the_main_server_go_at_the_end_of_the_main_file(apache_site: tuple[Path, Server]) -> None:
    """Hit without a <VirtualHost>: the site is the main server, the texts say "at the end of" apache2.conf;
    appended there, httpd accepts them and they hold (403 for 127.0.0.2 and for /up/x.php, PHP still runs)."""
    tree, server = apache_site
    conf = tree / "etc/apache2/apache2.conf"
    conf.write_text("\n".join(x for x in conf.read_text().split("\n")
                              if not re.match(r"\s*(</?VirtualHost|ServerName site)", x)))
    _apache_test(server)
    server.restart()
    assert _get(server.port, "/phpmyadmin/index.php", "127.0.0.2")[::2] == (200, "php-42\n")
    [admin] = _find("web.admin_exposed", tree)
    [php] = _find("web.php_in_writable_dir", tree)
    for found in (admin, php):
        assert "at the end of /etc/apache2/apache2.conf" in (found.remediation.manual or "")
        with open(conf, "a") as f:
            f.write("\n" + _filled(found, _snippet(found), ADMIN_ADDRESS="127.0.0.1") + "\n")
    _apache_test(server)
    server.restart()
    assert _get(server.port, "/phpmyadmin/", "127.0.0.1")[::2] == (200, "php-42\n")
    assert _get(server.port, "/phpmyadmin/", "127.0.0.2")[0] == 403
    assert _get(server.port, "/up/x.php")[0] == 403
    assert _get(server.port, "/index.php", "127.0.0.2")[::2] == (200, "php-42\n")
    assert _find("web.admin_exposed", tree) == [] and _find("web.php_in_writable_dir", tree) == []
