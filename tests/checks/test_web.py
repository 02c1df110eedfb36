"""The web family's wiring: fixture configurations the real nginx accepts, the serving account read from
real worker processes, and `hostguard webroots` on trees (the access rules themselves are proven against
real servers in tests/host/web/)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hostguard.cli import main
from hostguard.engine.facts import Facts
from hostguard.findings import Finding
from hostguard.host.base import LiveHost, RootHost
from hostguard.host.processes import PROCESSES
from hostguard.host.web.servers import live_workers
from tests.conftest import HITS, HOSTS, build_tree, make_config, need_root, need_tool, run_one

WEB_FIXTURES = [p for kind in ("hits", "misses") for p in sorted((HOSTS / kind).glob("web.*"))
                if (p / "etc/nginx/nginx.conf").exists()]


@pytest.mark.parametrize("overlay", WEB_FIXTURES, ids=[f"{p.parent.name}/{p.name}" for p in WEB_FIXTURES])
def test_fixture_configs_are_configs_nginx_accepts(overlay: Path, tmp_path: Path) -> None:
    """A fixture the real nginx would refuse would prove nothing: each is checked with `nginx -t` (in a
    network namespace of its own, since -t binds the listen addresses)."""
    need_tool("nginx", "unshare")
    need_root("unshare -n")
    conf = overlay / "etc/nginx/nginx.conf"
    copy = tmp_path / "nginx.conf"
    copy.write_text(conf.read_text().replace("include /etc/nginx/mime.types;",
                                             f"include {overlay}/etc/nginx/mime.types;"))
    done = subprocess.run(["unshare", "-n", "nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(copy),
                           "-e", "stderr", "-g", f"pid {tmp_path}/nginx.pid;"], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def nginx_as_nobody(tmp_path: Path) -> Iterator[int]:
    """A real nginx on 127.0.0.1 whose master runs as root and whose worker runs as nobody."""
    need_tool("nginx")
    need_root("an nginx master as root")
    (tmp_path / "html").mkdir()
    with socket.socket() as probe:   # a free loopback port (nginx has no "any port")
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "nginx.conf").write_text(
        f"user nobody nogroup;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{ worker_connections 16; }}\nhttp {{ access_log off; client_body_temp_path {tmp_path}/b; "
        f"proxy_temp_path {tmp_path}/p; fastcgi_temp_path {tmp_path}/f; uwsgi_temp_path {tmp_path}/u; "
        f"scgi_temp_path {tmp_path}/s; server {{ listen 127.0.0.1:{port}; root {tmp_path}/html; }} }}\n")
    proc = subprocess.Popen([shutil.which("nginx") or "nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                             "-e", str(tmp_path / "error.log"), "-g", "daemon off;"])
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "nginx.pid").exists() or not (tmp_path / "nginx.pid").read_text().strip():
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "error.log").read_text()
            time.sleep(0.05)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_serving_account_comes_from_the_running_workers(nginx_as_nobody: int) -> None:
    """Hit: the worker's account (nobody), named by its pid. Near miss: the master (root) is not a
    serving account, and Apache's worker names do not pick nginx's processes."""
    procs = Facts(LiveHost(), make_config()).get(PROCESSES)
    workers = [p for p in procs if p.ppid == nginx_as_nobody]
    assert workers and all(p.user == "nobody" for p in workers)
    found = live_workers("nginx", procs)
    assert "nobody" in {r.user for r in found} and "root" not in {r.user for r in found}
    [nobody] = [r for r in found if r.user == "nobody"]
    assert nobody.source == "process" and nobody.detail.startswith("pid ")
    assert "nobody" not in {r.user for r in live_workers("apache", procs)}


def test_webroots_lists_sites_roots_and_where_they_come_from(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    tree = build_tree(tmp_path / "host", HITS / "web.admin_exposed")
    assert main(["webroots", "--root", str(tree), "--format", "json"]) == 0
    [server] = json.loads(capsys.readouterr().out)
    assert server["server"] == "nginx" and server["run_as"][0]["user"] == "www-data"
    assert server["run_as"][0]["where"] == "/etc/nginx/nginx.conf:1"
    [site] = server["sites"]
    assert site["names"] == ["shop.test"] and site["roots"] == [
        {"url": "/", "path": "/var/www/shop", "where": "/etc/nginx/nginx.conf:10"}]
    assert site["php"] == ["unix:/run/php/php8.2-fpm.sock"]


def test_webroots_on_a_broken_config_is_one_line_and_exit_2(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Bad input: an unbalanced brace in nginx.conf gives one line on stderr naming file:line, exit 2."""
    tree = build_tree(tmp_path / "host", HITS / "web.admin_exposed")
    conf = tree / "etc/nginx/nginx.conf"
    conf.write_text(conf.read_text() + "server {\n")
    assert main(["webroots", "--root", str(tree)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hostguard: webroots: nginx: ") and "/etc/nginx/nginx.conf" in err[0]


def test_a_tree_without_web_servers_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["webroots", "--root", str(HOSTS / "clean")]) == 0
    assert capsys.readouterr().out == "no web server configuration found (nginx, Apache, Tomcat)\n"


# -- what the serving account can write ---------------------------------------------------------------------

WEB_UID = 4242   # a numeric account of the tree only: nothing is created on this machine

SITE_CONF = """user web;
events {{ worker_connections 16; }}
http {{
    server {{
        listen 80;
        server_name site.test;
        root /srv/site;
{extra}        location ~ \\.php$ {{
            fastcgi_pass unix:/run/php/php8.2-fpm.sock;
        }}
    }}
}}
"""


def _site_tree(tmp_path: Path, extra: str = "") -> Path:
    """The clean tree plus an nginx serving /srv/site as the tree's account `web` (uid 4242), every file
    root's and read-only to it, and an upload directory `up/` owned by it."""
    need_root("chown to another uid")
    tree = build_tree(tmp_path / "host")
    with open(tree / "etc/passwd", "a") as f:
        f.write(f"web:x:{WEB_UID}:{WEB_UID}:web server:/var/www:/usr/sbin/nologin\n")
    with open(tree / "etc/group", "a") as f:
        f.write(f"web:x:{WEB_UID}:\n")
    (tree / "etc/nginx").mkdir(parents=True)
    (tree / "etc/nginx/nginx.conf").write_text(SITE_CONF.format(extra=extra))
    site = tree / "srv/site"
    (site / "up").mkdir(parents=True)
    (site / "index.php").write_text("<?php echo 'shop';\n")
    (site / "lib.php").write_text("<?php\n")
    for path in (tree / "srv", site, site / "index.php", site / "lib.php"):
        os.chown(path, 0, 0)
        path.chmod(0o755 if path.is_dir() else 0o644)
    os.chown(site / "up", WEB_UID, WEB_UID)
    return tree


def _web(tree: Path, check: str, **web: object) -> list[Finding]:
    found, skipped = run_one(check, RootHost(str(tree)), make_config(web={"writable_allow": ["up"], **web}))
    assert skipped == []
    return found


def test_a_read_only_site_with_an_upload_directory_that_runs_no_php_is_quiet(tmp_path: Path) -> None:
    """Near miss of both checks: only the allowed upload directory is writable, and nginx serves it through a
    prefix location without PHP."""
    tree = _site_tree(tmp_path, "        location ^~ /up/ { }\n")
    assert _web(tree, "web.writable_by_web_user") == []
    assert _web(tree, "web.php_in_writable_dir") == []


def test_php_running_in_the_upload_directory_is_found(tmp_path: Path) -> None:
    """Hit: the same upload directory, but the PHP location matches /up/x.php: an upload bug is a webshell."""
    tree = _site_tree(tmp_path)
    [found] = _web(tree, "web.php_in_writable_dir")
    assert found.target == {"kind": "path", "path": "/srv/site", "user": "web", "php": "writable"}
    assert [d["url"] for d in found.evidence["dirs"]] == ["/up/"]
    assert found.evidence["dirs"][0]["allowed_for"] == "up"
    assert _web(tree, "web.writable_by_web_user") == []   # the directory itself is allowed to be writable


def test_files_the_web_user_owns_or_others_may_write_are_found_and_the_printed_fix_works(tmp_path: Path) -> None:
    """Hit: a file the account owns (a chmod would not help), a world-writable one; the fix's find commands,
    run on the tree as printed (the root path moved into the tree), leave nothing writable and the upload
    directory as it was."""
    tree = _site_tree(tmp_path, "        location ^~ /up/ { }\n")
    site = tree / "srv/site"
    os.chown(site / "index.php", WEB_UID, WEB_UID)
    (site / "lib.php").chmod(0o666)
    [found] = _web(tree, "web.writable_by_web_user")
    assert found.target == {"kind": "path", "path": "/srv/site", "user": "web"}
    assert {(s["path"], s["reason"]) for s in found.evidence["samples"]} == {
        ("/srv/site/index.php", "owner"), ("/srv/site/lib.php", "other")}
    assert found.evidence["allowed"]["dirs"] == 1
    manual = found.remediation.manual or ""
    commands = [c for c in manual.split("`") if c.startswith("find ")]
    assert len(commands) == 2
    for command in commands:
        argv = [f"{tree}{a}" if a.startswith("/srv/site") else a for a in command.split()]
        subprocess.run(argv, check=True, timeout=30)
    assert _web(tree, "web.writable_by_web_user") == []
    assert (site / "up").stat().st_uid == WEB_UID and (site / "index.php").stat().st_uid == 0


@pytest.mark.parametrize(("check", "setting", "before", "after"), [
    ("web.php_url_include", "allow_url_include", "1", ""),
    ("web.php_expose", "expose_php", "1", ""),
    ("web.php_disable_functions", "disable_functions", "", "exec,passthru,shell_exec,system,proc_open,popen,pcntl_exec"),
])
def test_the_php_fix_is_read_by_php_itself(tmp_path: Path, check: str, setting: str, before: str, after: str) -> None:
    """The drop-in the fix writes, applied to a copy of the hit tree, is what the real PHP then runs with
    (`php -n -c php.ini` with the tree's conf.d as its scan directory), and the re-scan is quiet."""
    need_tool("php")
    from hostguard.respond.apply import apply

    tree = build_tree(tmp_path / "host", HITS / check)
    [found] = run_one(check, RootHost(str(tree)))[0]

    def php_value() -> str:
        env = {"PHP_INI_SCAN_DIR": str(tree / "etc/php/8.2/fpm/conf.d"), "PATH": os.environ.get("PATH", "")}
        out = subprocess.run(["php", "-c", str(tree / "etc/php/8.2/fpm/php.ini"), "-r",
                              f"echo '@', ini_get('{setting}');"], env=env, capture_output=True, text=True,
                             check=True, timeout=30).stdout
        return out.rpartition("@")[2]   # after PHP's own startup notices (allow_url_include is deprecated)

    assert php_value() == before
    apply([s for s in found.remediation.steps if s.kind == "write"], str(tree))
    assert php_value() == after
    assert run_one(check, RootHost(str(tree)))[0] == []


# -- the exact steps of server_tokens and directory listing (proven by the servers in test_web_fixes.py) --------

def test_server_tokens_fix_rewrites_the_line_in_force(tmp_path: Path) -> None:
    """Hit: `server_tokens on;` at nginx.conf:7 becomes `server_tokens off;` (indentation kept), then nginx's
    own test, then the reload; applied to the tree, the re-scan is quiet."""
    from hostguard.remediation import Command, Edit
    from hostguard.respond.apply import apply

    tree = build_tree(tmp_path / "host", HITS / "web.server_tokens")
    [found] = run_one("web.server_tokens", RootHost(str(tree)))[0]
    assert found.remediation.steps == (
        Edit("/etc/nginx/nginx.conf", 7, "    server_tokens on;", "    server_tokens off;"),
        Command(("nginx", "-t")), Command(("systemctl", "try-reload-or-restart", "nginx")))
    assert found.remediation.manual is None
    apply(found.remediation.steps, str(tree))
    assert run_one("web.server_tokens", RootHost(str(tree)))[0] == []


def test_directory_listing_fix_rewrites_the_autoindex_line(tmp_path: Path) -> None:
    """Hit: `autoindex on;` of location /files/ (nginx.conf:14) becomes `autoindex off;`."""
    from hostguard.remediation import Command, Edit

    tree = build_tree(tmp_path / "host", HITS / "web.directory_listing")
    [found] = run_one("web.directory_listing", RootHost(str(tree)))[0]
    assert found.target["line"] == "14"
    assert found.remediation.steps[0] == Edit("/etc/nginx/nginx.conf", 14, "            autoindex on;",
                                              "            autoindex off;")
    assert found.remediation.steps[1:] == (Command(("nginx", "-t")),
            Command(("systemctl", "try-reload-or-restart", "nginx")))


def test_a_line_holding_two_directives_is_left_to_the_owner(tmp_path: Path) -> None:
    """Near miss of the exact step: `gzip on; server_tokens on;` on one line is not rewritten (the edit would
    have to keep the other directive); the fix says why and what to write, with no step."""
    tree = build_tree(tmp_path / "host", HITS / "web.server_tokens")
    conf = tree / "etc/nginx/nginx.conf"
    conf.write_text(conf.read_text().replace("    server_tokens on;", "    gzip on; server_tokens on;"))
    [found] = run_one("web.server_tokens", RootHost(str(tree)))[0]
    assert found.remediation.steps == ()
    assert "/etc/nginx/nginx.conf:7 holds more than `server_tokens on;`" in (found.remediation.manual or "")


def test_a_directive_in_a_linked_file_is_edited_where_the_link_points(tmp_path: Path) -> None:
    """Hit through a link: sites-enabled/shop is a link to sites-available/shop (Debian's way); the finding
    names the file nginx read, the edit names the real file (respond/apply.py writes through no link)."""
    from hostguard.remediation import Edit

    tree = build_tree(tmp_path / "host", HITS / "web.directory_listing")
    conf = tree / "etc/nginx/nginx.conf"
    text = conf.read_text()
    start, end = text.index("    server {"), text.rindex("}")
    (tree / "etc/nginx/sites-available").mkdir()
    (tree / "etc/nginx/sites-enabled").mkdir()
    (tree / "etc/nginx/sites-available/shop").write_text(text[start:end])
    (tree / "etc/nginx/sites-enabled/shop").symlink_to("../sites-available/shop")
    conf.write_text(text[:start] + "    include /etc/nginx/sites-enabled/*;\n}\n")
    [found] = run_one("web.directory_listing", RootHost(str(tree)))[0]
    assert found.target["path"] == "/etc/nginx/sites-enabled/shop"
    assert found.remediation.steps[0] == Edit("/etc/nginx/sites-available/shop", 7, "            autoindex on;",
                                              "            autoindex off;")
