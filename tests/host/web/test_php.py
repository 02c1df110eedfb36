"""PHP-FPM pools and php.ini settings, proven against PHP itself.

The same files are read by hostguard and by the real tools: ``php-fpm8.2 -t``/``-tt`` (does php-fpm accept
the configuration, and which user/listen/chdir/php_admin_value does it keep per pool), ``php -c``/``-n`` and
``php-fpm8.2 -i`` (the effective php.ini values), and a php-fpm master started on a unix socket in a temp
directory, asked over FastCGI what a pool's workers really run with.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.host.base import HostError, LiveHost, RootHost, Unavailable
from hostguard.host.web.model import Where
from hostguard.host.web.php import (
    SETTINGS,
    FpmConfig,
    IniSyntaxError,
    PhpIni,
    collect_php_fpm,
    collect_php_ini,
    read_fpm,
    read_php_ini,
    scan_ini,
)
from tests.conftest import need_tool

FPM = "php-fpm8.2"
PHP = "php8.2"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _fpm_tt(conf: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(FPM, path=os.environ.get("PATH", "") + ":/usr/sbin")
    assert exe
    return subprocess.run([exe, "-tt", "-y", str(conf), *extra], capture_output=True, text=True, timeout=30,
                          check=False, env={"PATH": "/usr/bin:/bin", "PHP_INI_SCAN_DIR": ""})


def _fpm_dump(output: str) -> dict[str, dict[str, str]]:
    """php-fpm -tt's NOTICE lines as {section: {key: value}} (an "undefined" value is left out)."""
    pools: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in output.splitlines():
        text = re.sub(r"^\[[^]]*\] NOTICE: ", "", line)
        if m := re.match(r"^\[(.+)\]$", text):
            current = pools.setdefault(m.group(1), {})
        elif (m := re.match(r"^\t(\S+) = (.*)$", text)) and m.group(2) != "undefined":
            current[m.group(1)] = m.group(2)
    return pools


def _fpm_tree(tmp_path: Path) -> Path:
    """A php-fpm configuration written with the real temp paths, so php-fpm and hostguard read the same
    files: two pools over two included files, a pool continued in a second file, an include inside a
    pool, ``$pool`` in paths and values, flags, quoting, a trailing comment."""
    base = tmp_path / "fpm"
    (base / "srv" / "shop").mkdir(parents=True)
    conf = _write(base / "php-fpm.conf", f"""\
; written by hostguard's tests
[global]
pid = {base}/fpm.pid
error_log = {base}/fpm.log
include={base}/pool.d/*.conf
""")
    _write(base / "pool.d" / "10-shop.conf", f"""\
[shop]
user = nobody
group = nogroup
listen = {base}/$pool.sock
chdir = {base}/srv/$pool
pm = static
pm.max_children = 1
php_admin_value[open_basedir] = {base}/srv/$pool:/tmp ; the shop's own files only
php_admin_flag[display_errors] = off
php_value[error_log] = "{base}/$pool errors.log"
env[POOL] = $pool
include={base}/extra/shop-*.inc
""")
    _write(base / "extra" / "shop-listen.inc", "listen = 127.0.0.1:9047\n")
    _write(base / "pool.d" / "20-blog.conf", """\
[blog]
user = 'www-data'
group = www-data
listen = 127.0.0.1:9048
pm = static
pm.max_children = 1
php_flag[display_errors] = yes
php_admin_value[disable_functions] = exec,passthru
""")
    _write(base / "pool.d" / "30-shop-more.conf", "[shop]\nuser = daemon\n")
    return conf


def test_fpm_pools_match_what_php_fpm_keeps(tmp_path: Path) -> None:
    need_tool(FPM)
    conf = _fpm_tree(tmp_path)
    base = conf.parent
    shop, blog = read_fpm(LiveHost(), FpmConfig(str(conf), "/usr", "8.2", "fpm"))
    assert (shop.name, shop.user, shop.group, shop.listen, shop.chdir) == (
        "shop", "daemon", "nogroup", "127.0.0.1:9047", f"{base}/srv/shop")
    assert shop.where == Where(f"{base}/pool.d/10-shop.conf", 1)
    assert dict((k, str(w)) for k, _, w in shop.directives)["user"] == f"{base}/pool.d/30-shop-more.conf:2"
    assert dict((k, str(w)) for k, _, w in shop.directives)["listen"] == f"{base}/extra/shop-listen.inc:1"
    assert (blog.name, blog.user, blog.listen) == ("blog", "www-data", "127.0.0.1:9048")

    result = _fpm_tt(conf)
    assert result.returncode == 0, result.stderr
    dump = _fpm_dump(result.stderr + result.stdout)
    for pool in (shop, blog):
        printed = dump[pool.name]
        assert (printed["user"], printed["group"], printed["listen"]) == (pool.user, pool.group, pool.listen)
        assert printed.get("chdir") == pool.chdir
        assert {k: v for k, v in printed.items() if k.startswith(("php_", "env["))} == \
            {k: v for k, v, _ in pool.directives if k.startswith(("php_", "env["))}
    assert dump["shop"]["php_admin_value[open_basedir]"] == f"{base}/srv/shop:/tmp"
    assert dump["blog"]["php_value[display_errors]"] == "1"


@pytest.mark.parametrize(("bad", "message"), [
    ("include=/nonexistent-hostguard/*.conf\n", "include=/nonexistent-hostguard/*.conf matches no file"),
    ("# a shell comment is not a comment here\n", "has no value"),
    ("[unclosed\n", "without its closing"),
    ('chdir = "/srv\n', "never closed"),
    ("php_admin_flag[expose_php] = maybe\n", "needs a boolean"),
])
def test_configs_php_fpm_refuses_are_one_line_errors(tmp_path: Path, bad: str, message: str) -> None:
    need_tool(FPM)
    conf = _write(tmp_path / "php-fpm.conf", f"[global]\nerror_log = {tmp_path}/log\n[bad]\nuser = nobody\n"
                                             f"listen = 127.0.0.1:9049\npm = static\npm.max_children = 1\n{bad}")
    with pytest.raises(HostError) as err:
        read_fpm(LiveHost(), FpmConfig(str(conf), "/usr", "8.2", "fpm"))
    assert message in str(err.value)
    assert str(err.value).startswith(f"{conf}:")
    assert "\n" not in str(err.value)
    assert _fpm_tt(conf).returncode != 0           # php-fpm refuses the same file


def test_stock_debian_config_through_live_host() -> None:
    need_tool(FPM)
    if not Path("/etc/php/8.2/fpm/php-fpm.conf").exists():
        pytest.skip(reason="php8.2-fpm's stock config is not installed")
    host = LiveHost()
    pools = collect_php_fpm(host)
    [www] = [p for p in pools if p.name == "www" and p.config == "/etc/php/8.2/fpm/php-fpm.conf"]
    assert (www.user, www.group, www.listen) == ("www-data", "www-data", "/run/php/php8.2-fpm.sock")
    assert www.where.path == "/etc/php/8.2/fpm/pool.d/www.conf"

    views = collect_php_ini(host, pools)
    [fpm] = [v for v in views if (v.version, v.sapi, v.pool) == ("8.2", "fpm", None)]
    assert fpm.files[0] == "/etc/php/8.2/fpm/php.ini"
    assert fpm.get("expose_php").where.path == "/etc/php/8.2/fpm/php.ini"
    info = subprocess.run([shutil.which(FPM, path="/usr/sbin:/usr/bin") or FPM, "-i"], capture_output=True,
                          text=True, timeout=30, check=True).stdout
    shown = dict(re.findall(r"^(\w+) => (.*?) => ", info, re.M))
    for name in ("expose_php", "allow_url_include", "allow_url_fopen", "display_errors"):
        assert shown[name] == ("On" if fpm.get(name).enabled else "Off"), name
    assert shown["disable_functions"] in (fpm.get("disable_functions").value or "no value",)
    [pool] = [v for v in views if v.pool == "www"]
    assert pool.settings == fpm.settings and pool.pool_where == www.where


def _php(ini: Path, scan_dir: Path | None, code: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(PHP) or "php"
    argv = [exe, "-c", str(ini), "-r", code] if scan_dir else [exe, "-n", "-c", str(ini), "-r", code]
    env = {"PATH": "/usr/bin:/bin", "PHP_INI_SCAN_DIR": str(scan_dir) if scan_dir else ""}
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, env=env)


def _ini_get_all(ini: Path, scan_dir: Path | None) -> dict[str, str]:
    names = json.dumps(list(SETTINGS))
    out = _php(ini, scan_dir, f'$r = []; foreach (json_decode(\'{names}\') as $k) $r[$k] = ini_get($k); '
                              'echo json_encode($r);')
    result: dict[str, str] = json.loads(out.stdout[out.stdout.index("{"):])
    return result


def test_php_ini_and_conf_d_values_match_php(tmp_path: Path) -> None:
    need_tool(PHP)
    ini = _write(tmp_path / "php.ini", """\
[PHP]
expose_php = On        ; later turned off in conf.d
allow_url_fopen = "Off"
disable_functions = exec, system ,shell_exec
display_errors = stderr
open_basedir = "/srv/www" :/tmp
[PATH=/srv/www/legacy]
allow_url_include = On
[Date]
display_errors = On
""")
    scan = tmp_path / "conf.d"
    _write(scan / "90-hardening.ini", "expose_php = Off\n")
    _write(scan / "20-broken.ini", "allow_url_include = Off\nopen_basedir = a=b\ndisplay_errors = 1\n")
    _write(scan / "10-notini.conf", "expose_php = On\n")
    host = LiveHost()
    files = [str(ini), str(scan / "20-broken.ini"), str(scan / "90-hardening.ini")]
    values, notes = read_php_ini(host, files)
    php = _ini_get_all(ini, scan)
    assert {k: v.value for k, v in values.items()} == php
    assert values["expose_php"].where == Where(str(scan / "90-hardening.ini"), 1)
    assert values["display_errors"].where == Where(str(ini), 5)     # not the [Date] line under [PATH=]
    assert values["allow_url_include"].where == Where(str(scan / "20-broken.ini"), 1)
    assert values["disable_functions"].items == ("exec", "system", "shell_exec")
    assert any(n.startswith(f"{ini}:8: allow_url_include under [PATH=/srv/www/legacy]") for n in notes)
    assert any(n.startswith(f"{scan}/20-broken.ini:2:") and "ignores the rest" in n for n in notes)

    alone, _ = read_php_ini(host, [str(ini)])          # php -n: php.ini only, no scan directory
    assert {k: v.value for k, v in alone.items()} == _ini_get_all(ini, None)


def test_sapi_discovery_and_scan_order_on_a_tree(tmp_path: Path) -> None:
    root = tmp_path / "host"
    _write(root / "etc/php/8.2/fpm/php.ini", "expose_php = On\nallow_url_include = On\n")
    _write(root / "etc/php/8.2/fpm/conf.d/20-b.ini", "expose_php = Off\n")
    _write(root / "etc/php/8.2/fpm/conf.d/10-a.ini", "expose_php = On\ndisable_functions = system\n")
    _write(root / "etc/php/8.2/fpm/php-fpm.conf", "[global]\ninclude=/etc/php/8.2/fpm/pool.d/*.conf\n")
    _write(root / "etc/php/8.2/fpm/pool.d/www.conf", """\
[www]
user = www-data
listen = /run/php/php8.2-fpm.sock
php_admin_value[allow_url_include] = Off
php_value[expose_php] = On
php_value[display_errors] = Off
php_admin_value[disable_functions] = exec,system
""")
    _write(root / "etc/php/8.2/cli/php.ini", "display_errors = Off\n")
    _write(root / "etc/php/8.2/mods-available/x.ini", "expose_php = On\n")
    host = RootHost(str(root))
    pools = collect_php_fpm(host)
    views = {(v.sapi, v.pool): v for v in collect_php_ini(host, pools)}
    assert set(views) == {("cli", None), ("fpm", None), ("fpm", "www")}
    fpm, www = views[("fpm", None)], views[("fpm", "www")]
    assert fpm.files == ("/etc/php/8.2/fpm/php.ini", "/etc/php/8.2/fpm/conf.d/10-a.ini",
                         "/etc/php/8.2/fpm/conf.d/20-b.ini")
    assert (fpm.get("expose_php").value, str(fpm.get("expose_php").where)) == ("", "/etc/php/8.2/fpm/conf.d/20-b.ini:1")
    assert fpm.get("allow_url_include").enabled
    assert not www.get("allow_url_include").enabled
    assert str(www.get("allow_url_include").where) == "/etc/php/8.2/fpm/pool.d/www.conf:4"
    assert www.get("expose_php").enabled              # php_value sets even a php.ini-only setting
    assert str(www.get("expose_php").where) == "/etc/php/8.2/fpm/pool.d/www.conf:5"
    assert (www.get("display_errors").value, www.get("display_errors").where.line) == ("", 6)
    assert www.get("disable_functions").items == ("system", "exec")
    assert views[("cli", None)].get("expose_php").where == Where("")     # built-in default: on
    assert views[("cli", None)].get("expose_php").enabled
    assert www.label() == "PHP 8.2 fpm pool www"


def test_rhel_layout(tmp_path: Path) -> None:
    root = tmp_path / "host"
    _write(root / "etc/php.ini", "expose_php = Off\n")
    _write(root / "etc/php.d/50-x.ini", "allow_url_fopen = Off\n")
    _write(root / "etc/php-fpm.conf", "[global]\ninclude=/etc/php-fpm.d/*.conf\n")
    _write(root / "etc/php-fpm.d/www.conf", "[www]\nuser = apache\nlisten = /run/php-fpm/www.sock\n"
                                            "php_admin_value[expose_php] = On\n")
    host = RootHost(str(root))
    [pool] = collect_php_fpm(host)
    assert (pool.user, pool.listen, pool.config) == ("apache", "/run/php-fpm/www.sock", "/etc/php-fpm.conf")
    all_sapis, www = collect_php_ini(host, (pool,))
    assert (all_sapis.sapi, all_sapis.pool) == ("all", None)
    assert all_sapis.get("allow_url_fopen").where == Where("/etc/php.d/50-x.ini", 1)
    assert (www.pool, www.get("expose_php").enabled, all_sapis.get("expose_php").enabled) == ("www", True, False)


def test_unreadable_fpm_config_leaves_the_sapi_values_with_a_note(tmp_path: Path) -> None:
    root = tmp_path / "host"
    _write(root / "etc/php/8.3/fpm/php.ini", "expose_php = Off\n")
    host = RootHost(str(root))
    [view] = collect_php_ini(host, None)
    assert view.version == "8.3" and "could not be read" in view.notes[-1]


# -- a real php-fpm, asked over FastCGI ----------------------------------------------------------------

def _fcgi_record(kind: int, content: bytes) -> bytes:
    return struct.pack(">BBHHBx", 1, kind, 1, len(content), 0) + content


def _fcgi_pair(name: bytes, value: bytes) -> bytes:
    def size(n: int) -> bytes:
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return size(len(name)) + size(len(value)) + name + value


def fastcgi_get(sock_path: str, script: str) -> bytes:
    """One FastCGI responder request (the protocol nginx speaks to php-fpm); the body of the response."""
    params = {"SCRIPT_FILENAME": script, "SCRIPT_NAME": "/" + os.path.basename(script), "REQUEST_METHOD": "GET",
              "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1"}
    body = b"".join(_fcgi_pair(k.encode(), v.encode()) for k, v in params.items())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(15)
        conn.connect(sock_path)
        conn.sendall(_fcgi_record(1, struct.pack(">HB5x", 1, 0)) + _fcgi_record(4, body) + _fcgi_record(4, b"")
                     + _fcgi_record(5, b""))
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    out = b""
    while len(data) >= 8:
        _, kind, _, length, padding = struct.unpack(">BBHHB", data[:7])
        if kind == 6:
            out += data[8:8 + length]
        data = data[8 + length + padding:]
    return out.split(b"\r\n\r\n", 1)[-1]


@pytest.fixture
def fpm_dir() -> Iterator[Path]:
    """A directory the pool's unprivileged workers can read (pytest's own temp tree is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="hostguard-fpm-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_pool_values_are_what_a_running_worker_sees(fpm_dir: Path) -> None:
    need_tool(FPM)
    ini = _write(fpm_dir / "php.ini", "expose_php = On\nallow_url_include = Off\ndisable_functions = system\n"
                                      "display_errors = Off\n")
    sock = fpm_dir / "shop.sock"
    user = "user = nobody\ngroup = nogroup\n" if os.geteuid() == 0 else ""
    conf = _write(fpm_dir / "php-fpm.conf", f"""\
[global]
error_log = {fpm_dir}/fpm.log
daemonize = no
[shop]
{user}listen = {fpm_dir}/$pool.sock
listen.mode = 0666
pm = static
pm.max_children = 1
php_admin_value[expose_php] = Off
php_value[allow_url_include] = On
php_value[display_errors] = On
php_admin_value[disable_functions] = exec
php_admin_value[open_basedir] = {fpm_dir}
""")
    script = _write(fpm_dir / "show.php", "<?php\n$r = [];\nforeach (['" + "','".join(SETTINGS) + "'] as $k) "
                    "$r[$k] = ini_get($k);\n$r['exec?'] = function_exists('exec');\n"
                    "$r['system?'] = function_exists('system');\necho json_encode($r);\n")
    script.chmod(0o644)
    pools = read_fpm(LiveHost(), FpmConfig(str(conf), "/usr", "8.2", "fpm"))
    base_values, _ = read_php_ini(LiveHost(), [str(ini)])
    base = PhpIni("8.2", "fpm", None, (str(ini),), tuple(base_values.items()))
    from hostguard.host.web.php import _pool_view
    view = _pool_view(base, pools[0])

    exe = shutil.which(FPM, path="/usr/sbin:/usr/bin") or FPM
    proc = subprocess.Popen([exe, "-F", "-y", str(conf), "-c", str(ini)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "PHP_INI_SCAN_DIR": ""})
    try:
        deadline = time.monotonic() + 15
        while not sock.exists():
            assert proc.poll() is None, (fpm_dir / "fpm.log").read_text()
            assert time.monotonic() < deadline, "php-fpm did not open its socket"
            time.sleep(0.05)
        seen = json.loads(fastcgi_get(str(sock), str(script)))
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    others = [name for name in SETTINGS if name != "disable_functions"]
    assert {name: view.get(name).value for name in others} == {name: seen[name] for name in others}
    # ini_get shows the pool's list alone, but php.ini's functions stay disabled: the union is what holds
    assert (seen["disable_functions"], seen["exec?"], seen["system?"]) == ("exec", False, False)
    assert view.get("disable_functions").items == ("system", "exec")
    assert view.get("allow_url_include").enabled and view.get("display_errors").enabled
    assert not view.get("expose_php").enabled
    line = conf.read_text().splitlines().index("php_value[allow_url_include] = On") + 1
    assert view.get("allow_url_include").where == Where(str(conf), line)


# -- the scanner against PHP's own, and on garbage -----------------------------------------------------

PIECES = st.sampled_from(['a', '/srv', ' ', '  ', 'On', 'off', 'None', '"q r"', "'s;t'", ';c', '"x\\"y"',
                          '"a\\nb"', ':', ',', '=', '"', "'", '${', '}', '[x]', '\\', 'yes', '0', '.'])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(PIECES, min_size=1, max_size=6).map("".join))
def test_value_scanner_agrees_with_php(tmp_path: Path, value: str) -> None:
    need_tool(PHP)
    ini = tmp_path / "fuzz.ini"
    ini.write_text(f"hg_probe = {value}\n")
    out = _php(ini, None, 'var_export(get_cfg_var("hg_probe"));')
    try:
        [entry] = [e for e in scan_ini(ini.read_text()) if e.key == "hg_probe"]
    except IniSyntaxError:
        assert "syntax error" in out.stdout + out.stderr, (value, out.stdout)
        return
    assert "syntax error" not in out.stdout + out.stderr, value
    assert entry.value is not None
    assert out.stdout == "'" + entry.value.replace("\\", "\\\\").replace("'", "\\'") + "'", value


GARBAGE = st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
                   | st.sampled_from(list("[]=;\"'$\n{}\\") + ["include=", "php_admin_value[", "${", "[PATH=/x]",
                                                             "[www]\n", "user = ", "include=/etc/*\n"]),
                   max_size=40).map("".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(GARBAGE, GARBAGE)
def test_garbage_gives_a_result_or_a_host_error(tmp_path: Path, fpm_text: str, ini_text: str) -> None:
    root = tmp_path / "g"
    shutil.rmtree(root, ignore_errors=True)
    _write(root / "etc/php/8.2/fpm/php-fpm.conf", fpm_text)
    _write(root / "etc/php/8.2/fpm/php.ini", ini_text)
    host = RootHost(str(root))
    try:
        pools = collect_php_fpm(host)
    except HostError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("/")
        pools = None
    views = collect_php_ini(host, pools)
    assert {v.pool for v in views} >= {None}
    for view in views:
        assert {name for name, _ in view.settings} == set(SETTINGS)


def test_facts_through_the_engine_a_broken_pool_file_leaves_php_ini_readable(tmp_path: Path) -> None:
    from hostguard.engine.facts import Facts
    from hostguard.host.web.php import PHP_FPM, PHP_INI
    from tests.conftest import make_config

    root = tmp_path / "host"
    _write(root / "etc/php/8.2/fpm/php.ini", "expose_php = On\n")
    _write(root / "etc/php/8.2/fpm/php-fpm.conf", "[global]\ninclude=/etc/php/8.2/fpm/pool.d/*.conf\n")
    facts = Facts(RootHost(str(root)), make_config())
    with pytest.raises(Unavailable, match=r"^/etc/php/8.2/fpm/php-fpm.conf:2: include=.* matches no file"):
        facts.get(PHP_FPM)          # the engine turns the HostError into "not checked" with this line
    [fpm] = facts.get(PHP_INI)
    assert (fpm.sapi, fpm.get("expose_php").where) == ("fpm", Where("/etc/php/8.2/fpm/php.ini", 1))
    assert fpm.notes == ("the PHP-FPM pools could not be read: their own values are unknown",)
