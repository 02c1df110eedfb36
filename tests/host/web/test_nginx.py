"""The nginx reader: tokenizer, includes inside a --root tree, sites, and the access evaluator's rules.

Every configuration written here is also handed to the real ``nginx -t`` (with the temporary tree as its
prefix, relative includes resolving the same way for nginx and for us), so a test cannot pass on a
configuration nginx would refuse; bad ones must be refused by both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostguard.host.base import HostError, RootHost
from hostguard.host.web.model import Directive, Reach, Site
from hostguard.host.web.nginx import (
    NGINX,
    NginxConfig,
    NginxPolicy,
    collect_nginx,
    location_spec,
    normalize_uri,
    parse_config,
    parse_text,
    read_nginx,
    server_from_config,
)
from tests.conftest import need_tool

NGINX_BIN = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
CONF = "/etc/nginx/nginx.conf"


def _tree(tmp_path: Path, files: dict[str, str]) -> RootHost:
    for name, text in files.items():
        path = tmp_path / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return RootHost(str(tmp_path))


def _nginx_t(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The real nginx's verdict on the tree's /etc/nginx/nginx.conf (prefix: the tree's /etc/nginx)."""
    need_tool("nginx", "unshare")
    assert NGINX_BIN is not None
    prefix = tmp_path / "etc/nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    # in a network namespace of its own (`nginx -t` binds the listen addresses: never this machine's ports;
    # an unprivileged run maps itself to root in a user namespace to get one)
    netns = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    return subprocess.run([*netns, NGINX_BIN, "-t", "-q", "-p", f"{prefix}/", "-c", f"{prefix}/nginx.conf",
                           "-e", f"{prefix}/logs/error.log"], capture_output=True, text=True, timeout=30)


def _valid(tmp_path: Path, files: dict[str, str]) -> RootHost:
    """A tree nginx itself accepts."""
    host = _tree(tmp_path, files)
    result = _nginx_t(tmp_path)
    assert result.returncode == 0, result.stderr
    return host


def _http(server_body: str, extra: str = "") -> str:
    return f"events {{}}\nhttp {{\n    access_log off;\n{extra}    server {{\n{server_body}    }}\n}}\n"


def _policy(tmp_path: Path, server_body: str, extra: str = "") -> NginxPolicy:
    host = _valid(tmp_path, {CONF: _http(server_body, extra)})
    server = read_nginx(host)
    assert server is not None
    policy = server.sites[0].policy
    assert isinstance(policy, NginxPolicy)
    return policy


# -- tokenizer ----------------------------------------------------------------------------------------

def test_words_quotes_escapes_and_comments_as_nginx_reads_them() -> None:
    text = ('# a comment\n'
            'a "double \\"q\\" \\t" \'single \\\' x\' plain#notcomment un\\;escaped; # trailing\n'
            'b ${var}x y} { c "";\n'
            '}\n'
            'if ($a = "b") { d; }\n')
    a, b, if_ = parse_text(text, "/t.conf")
    assert (a.name, a.args, a.where.line) == ("a", ('double "q" \t', "single ' x", "plain#notcomment",
                                                    "un\\;escaped"), 2)   # nginx keeps the backslash of \;
    assert (b.name, b.args, b.where.line) == ("b", ("${var}x", "y}"), 3)
    assert b.block is not None and [(d.name, d.args) for d in b.block] == [("c", ("",))]
    assert if_.args == ("($a", "=", "b", ")")
    assert if_.block is not None and if_.block[0].name == "d"


def test_directive_lines_are_where_the_name_stands() -> None:
    text = "events {}\nhttp {\n  server\n  {\n    listen\n      127.0.0.1:8080;\n  }\n}\n"
    [_, http] = parse_text(text, "/etc/nginx/nginx.conf")
    assert http.block is not None
    [server] = http.block
    assert server.where.line == 3 and server.block is not None
    assert str(server.block[0].where) == "/etc/nginx/nginx.conf:5"


BAD = {
    "unclosed block": ("events {}\nhttp {\n  server {\n", ':4: unexpected end of file, expecting "}"'),
    "stray brace": ("events {}\n}\n", ':2: unexpected "}"'),
    "missing semicolon": ("events {}\nworker_processes 1", ':2: unexpected end of file, expecting ";" or "}"'),
    "brace ending a directive": ("events {}\nworker_processes 1 }\n", ':2: unexpected "}"'),
    "lone semicolon": ("events {}\n;\n", ':2: unexpected ";"'),
    "unterminated quote": ('events {}\nerror_log "x;\n', ':3: unexpected end of file'),
    "text right after a quote": ('events {}\nerror_log "x"y;\n', ':2: unexpected "y"'),
}


@pytest.mark.parametrize("case", list(BAD))
def test_syntax_errors_are_one_line_with_file_and_line(tmp_path: Path, case: str) -> None:
    text, message = BAD[case]
    host = _tree(tmp_path, {CONF: text})
    with pytest.raises(HostError) as err:
        parse_config(host)
    assert str(err.value).startswith(CONF) and message in str(err.value)
    assert "\n" not in str(err.value)
    assert _nginx_t(tmp_path).returncode != 0, "nginx itself accepts this configuration"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab $#{};\"'\\\n\t()/~*=^@")) | st.characters(codec="utf-8"),
               max_size=300))
def test_garbage_gives_a_tree_or_a_host_error(text: str) -> None:
    try:
        tree = parse_text(text, "/fuzz.conf")
    except HostError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("/fuzz.conf:")
        return
    assert all(d.where.line >= 1 for d in tree)


def test_a_huge_line_is_read_in_bounded_time() -> None:
    start = time.monotonic()
    words = "w" * 100 + " "
    [d] = parse_text("x " + words * 40_000 + ";", "/big.conf")
    assert len(d.args) == 40_000
    with pytest.raises(HostError, match="unexpected end of file"):
        parse_text('x "' + "\\q" * 1_000_000, "/big.conf")
    assert time.monotonic() - start < 5


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("/.%2eaAfF?#x~\\")), max_size=40))
def test_any_request_path_gets_an_answer(uri: str) -> None:
    policy = NginxPolicy(*_server_directives())
    assert policy.access(uri).reach in set(Reach)
    assert policy.runs_php(uri) in (True, False, None)


FRAGMENTS = st.sampled_from([
    "location / {", "location = /a {", "location ^~ /b/ {", "location ~ \\.php$ {", "location ~* (?<x>[a-z]+) {",
    "location @n {", "location ~ ( {", "location /b/c {", "}", "}", "allow 192.0.2.0/24;", "allow all;",
    "deny all;", "deny ::/0;", "deny bogus;", "auth_basic x;", "auth_basic off;", "auth_basic $v;",
    "auth_basic_user_file /h;", "satisfy any;", "return 404;", "return http://x.test;", "return;", "break;",
    "rewrite ^/a /b last;", "rewrite ((( /b;", "rewrite x;", "if ($a) {", "internal;", "fastcgi_pass 127.0.0.1:9;",
    "proxy_pass http://127.0.0.1;", "root html;", "alias /x/;", "autoindex on;", "server_tokens off;",
    "merge_slashes off;", "auth_request /x;", "listen;", "server_name;", "user;", "location {",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(FRAGMENTS, max_size=30), st.sampled_from(["/", "/a", "/b/c/x.php", "/B/x.PHP", "//b/../a", "/@n"]))
def test_any_parsed_configuration_reads_and_answers(fragments: list[str], uri: str) -> None:
    """Whatever nginx syntax a file holds, reading sites and answering for a path never raises."""
    body = "\n".join(fragments)
    body += "\n}" * (body.count("{") - body.count("}"))
    try:
        tree = parse_text(f"user;\nhttp {{\nserver {{\n{body}\n}}\n}}\n", "/f.conf")
    except HostError:
        return
    server = server_from_config(NginxConfig("/f.conf", tree, ("/f.conf",), ()))
    for site in server.sites:
        assert site.policy is not None
        assert site.policy.access(uri).reach in set(Reach)
        assert site.policy.runs_php(uri) in (True, False, None)


def _server_directives() -> tuple[Directive, Directive]:
    [_, http] = parse_text(_http("location / { }\nlocation ~ \\.php$ { fastcgi_pass 127.0.0.1:9000; }\n"
                                 "location ^~ /a/ { deny all; }\n"), "/p.conf")
    assert http.block is not None
    server = next(d for d in http.block if d.name == "server")
    return http, server


# -- includes -------------------------------------------------------------------------------------------

def test_relative_includes_are_relative_to_the_main_files_directory(tmp_path: Path) -> None:
    host = _valid(tmp_path, {
        CONF: "events {}\nhttp {\n    access_log off;\n    include conf.d/*.conf;\n    include sites-enabled/*;\n"
              "    include nomatch/*.conf;\n}\n",
        "/etc/nginx/conf.d/b.conf": "server_tokens off;\n",
        "/etc/nginx/conf.d/a.conf": "gzip on;\n",
        "/etc/nginx/conf.d/.hidden.conf": "this is never read;\n",
        "/etc/nginx/sites-enabled/shop": "server {\n    server_name shop.test;\n    include snippets/root.conf;\n}\n",
        "/etc/nginx/snippets/root.conf": "root /srv/shop;\n"})
    config = parse_config(host)
    assert config.files == (CONF, "/etc/nginx/conf.d/a.conf", "/etc/nginx/conf.d/b.conf",
                            "/etc/nginx/sites-enabled/shop", "/etc/nginx/snippets/root.conf")
    assert config.notes == (f"{CONF}:6: include nomatch/*.conf matches no file",)
    server = read_nginx(host)
    assert server is not None
    [site] = server.sites
    assert [(r.path, str(r.where)) for r in site.roots] == [("/srv/shop", "/etc/nginx/snippets/root.conf:1")]
    assert server.settings == (("server_tokens", "off", server.settings[0][2]),)
    assert str(server.settings[0][2]) == "/etc/nginx/conf.d/b.conf:1"


def test_an_absolute_include_stays_inside_the_root(tmp_path: Path) -> None:
    # /etc/passwd of the tree, not of this machine, would be read: it is not nginx syntax, so an error
    # naming the tree's own file proves where the include went.
    host = _tree(tmp_path, {CONF: "events {}\nhttp { include /etc/nginx/../../srv/x.conf; }\n",
                            "/srv/x.conf": "server { server_name inside.test; }\n"})
    server = read_nginx(host)
    assert server is not None and server.sites[0].names == ("inside.test",)
    assert parse_config(host).files == (CONF, "/etc/nginx/../../srv/x.conf")   # named as written, like nginx


def test_a_missing_literal_include_is_an_error_nginx_shares(tmp_path: Path) -> None:
    host = _tree(tmp_path, {CONF: "events {}\nhttp {\n    include missing.conf;\n}\n"})
    with pytest.raises(HostError, match=r"^/etc/nginx/nginx.conf:3: include missing.conf: no such file$"):
        read_nginx(host)
    assert _nginx_t(tmp_path).returncode != 0


def test_include_cycles_and_bad_include_lines_are_errors(tmp_path: Path) -> None:
    host = _tree(tmp_path, {CONF: "events {}\nhttp { include a.conf; }\n",
                            "/etc/nginx/a.conf": "include b.conf;\n", "/etc/nginx/b.conf": "include a.conf;\n"})
    with pytest.raises(HostError, match="include cycle: /etc/nginx/a.conf -> /etc/nginx/b.conf -> /etc/nginx/a.conf"):
        read_nginx(host)
    two = _tree(tmp_path / "two", {CONF: "events {}\ninclude a.conf b.conf;\n"})
    with pytest.raises(HostError, match='nginx.conf:2: invalid number of arguments in "include"'):
        read_nginx(two)


def test_include_depth_is_limited(tmp_path: Path) -> None:
    files = {CONF: "events {}\ninclude d1.conf;\n"}
    files |= {f"/etc/nginx/d{i}.conf": f"include d{i + 1}.conf;\n" for i in range(1, 20)}
    files["/etc/nginx/d20.conf"] = "worker_processes 1;\n"
    with pytest.raises(HostError, match=r"^/etc/nginx/d16.conf: includes nested deeper than 16$"):
        read_nginx(_tree(tmp_path, files))
    files["/etc/nginx/d10.conf"] = "worker_processes 1;\n"     # the near miss: 10 deep is read
    config = parse_config(_tree(tmp_path / "near", files))
    assert config.files[-1] == "/etc/nginx/d10.conf" and config.tree[-1].name == "worker_processes"


def test_the_same_file_included_twice_is_no_cycle(tmp_path: Path) -> None:
    host = _valid(tmp_path, {
        CONF: _http("        server_name a.test;\n        location ~ \\.php$ { include php.conf; }\n"
                    "        location /x/ { include php.conf; }\n"),
        "/etc/nginx/php.conf": "fastcgi_pass unix:/run/php/php8.2-fpm.sock;\n"})
    server = read_nginx(host)
    assert server is not None
    site = server.sites[0]
    assert site.php_backends == ("unix:/run/php/php8.2-fpm.sock",)
    assert site.policy is not None and site.policy.runs_php("/x/y") is True


def test_no_main_file_means_no_nginx(tmp_path: Path) -> None:
    host = _tree(tmp_path, {"/etc/hostname": "web.test\n"})
    assert collect_nginx(host) is None
    assert NGINX.name == "nginx" and NGINX.collect is collect_nginx


# -- sites ------------------------------------------------------------------------------------------------

def test_sites_roots_users_and_settings(tmp_path: Path) -> None:
    host = _valid(tmp_path, {CONF: (
        "user www-data;\nevents {}\nhttp {\n    access_log off;\n    root /srv/default;\n"
        "    server {\n        listen 8080;\n        listen [::]:8080 default_server;\n"
        "        server_name blog.test \"\";\n        server_tokens off;\n"
        "        location /pma/ { alias /usr/share/phpmyadmin/; }\n"
        "        location ^~ /media/ { root /srv/media; autoindex on; }\n"
        "        location ~ \\.php$ { fastcgi_pass 127.0.0.1:9000; }\n"
        "        location @fallback { root /srv/named; }\n"
        "    }\n"
        "    server {\n        root html;\n        autoindex on;\n    }\n}\n")})
    server = read_nginx(host, prefix="/usr/share/nginx")
    assert server is not None
    assert [(r.user, r.group, r.source, str(r.where)) for r in server.run_as] == [
        ("www-data", "www-data", "config", f"{CONF}:1")]
    blog, plain = server.sites
    assert blog.names == ("blog.test",) and plain.names == ()
    assert blog.listens == ("8080", "[::]:8080 default_server") and plain.listens == ("*:80",)
    assert [(r.url, r.path) for r in blog.roots] == [("/", "/srv/default"), ("/pma/", "/usr/share/phpmyadmin/"),
                                                    ("/media/", "/srv/media/media/")]
    assert [(r.url, r.path, str(r.where)) for r in plain.roots] == [("/", "/usr/share/nginx/html", f"{CONF}:17")]
    assert blog.php_backends == ("127.0.0.1:9000",) and plain.php_backends == ()
    assert [(n, v, str(w)) for n, v, w in blog.settings] == [("server_tokens", "off", f"{CONF}:10"),
                                                            ("autoindex", "^~ /media/", f"{CONF}:12")]
    assert [(n, v, str(w)) for n, v, w in plain.settings] == [("server_tokens", "on", "built-in default"),
                                                             ("autoindex", "/", f"{CONF}:18")]
    assert blog.label() == f"nginx blog.test ({CONF}:6)"
    assert isinstance(blog, Site)


def test_user_with_group_and_the_compiled_default(tmp_path: Path) -> None:
    host = _valid(tmp_path, {CONF: "user nobody nogroup;\nevents {}\n"})
    server = read_nginx(host)
    assert server is not None and (server.run_as[0].user, server.run_as[0].group) == ("nobody", "nogroup")
    bare = _tree(tmp_path / "bare", {CONF: "events {}\nhttp { }\n"})
    server = read_nginx(bare)
    assert server is not None
    assert [(r.user, r.source, str(r.where)) for r in server.run_as] == [("nobody", "default", "built-in default")]
    assert server.sites == ()


def test_location_modifiers_attached_or_apart() -> None:
    locs = [d for d in parse_text("location =/a {}\nlocation = /a {}\nlocation ^~/b {}\nlocation ~*\\.x$ {}\n"
                                  "location ~ y {}\nlocation @n {}\nlocation /c {}\n", "/l.conf")]
    assert [location_spec(d) for d in locs] == [("=", "/a"), ("=", "/a"), ("^~", "/b"), ("~*", "\\.x$"),
                                                ("~", "y"), ("@", "@n"), ("", "/c")]


# -- access rules (nginx -t accepts each configuration; test_nginx_reality.py runs the served ones) ---------

def test_allow_list_then_deny_all_is_restricted_and_a_near_miss_prefix_is_open(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "        location /admin/ { allow 192.0.2.0/24; allow 2001:db8::/32; deny all; }\n")
    hit = policy.access("/admin/login")
    assert hit.reach is Reach.RESTRICTED and "/admin/" in hit.how
    assert [w.line for w in hit.where] == [5, 5, 5]
    assert policy.access("/admin").reach is Reach.OPEN           # "/admin" is not under the "/admin/" prefix
    assert policy.access("/administrator/").reach is Reach.OPEN


def test_deny_lists_and_one_family_catch_alls(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "        location /a/ { deny 198.51.100.7; allow all; }\n"
                               "        location /b/ { deny 0.0.0.0/0; }\n"
                               "        location /c/ { deny 0.0.0.0/0; deny ::/0; }\n"
                               "        location /d/ { allow 192.0.2.1; }\n")
    assert policy.access("/a/x").reach is Reach.OPEN       # a deny list keeps the path open to the rest
    assert policy.access("/b/x").reach is Reach.OPEN       # IPv6 clients are not denied
    assert policy.access("/c/x").reach is Reach.DENIED
    assert policy.access("/d/x").reach is Reach.OPEN       # no rule matches the others: nginx lets them through


def test_inheritance_of_access_rules_and_auth(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "        deny all;\n        auth_basic \"site\";\n"
                               "        location /open/ { allow all; auth_basic off; }\n"
                               "        location /pw/ { allow all; auth_basic_user_file /etc/nginx/htpasswd; }\n"
                               "        location /x/ { }\n")
    assert policy.access("/x/y").reach is Reach.DENIED     # server rules reach a location that has none
    assert policy.access("/open/y").reach is Reach.OPEN
    pw = policy.access("/pw/y")
    assert pw.reach is Reach.RESTRICTED and [w.line for w in pw.where] == [8, 6, 8]


def test_what_cannot_be_evaluated_says_unknown_and_why(tmp_path: Path) -> None:
    policy = _policy(tmp_path,
                     "        if ($http_user_agent ~ bot) { return 403; }\n"
                     "        location / { }\n",
                     extra="    map $uri $x { default 0; }\n")
    answer = policy.access("/")
    assert answer.reach is Reach.UNKNOWN and "if ($http_user_agent" in answer.how and answer.where[0].line == 6
    assert policy.runs_php("/a.php") is None
    near = _policy(tmp_path / "near", "        if ($http_user_agent ~ bot) { set $bot 1; }\n        location / { }\n")
    assert near.access("/").reach is Reach.OPEN        # an if that can only set a variable decides nothing


def test_auth_request_and_variable_realms_are_unknown(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "        auth_request /auth;\n"
                               "        location = /auth { internal; return 204; }\n"
                               "        location /free/ { auth_request off; }\n"
                               "        location /realm/ { auth_request off; auth_basic $realm; "
                               "auth_basic_user_file /etc/nginx/htpasswd; }\n",
                     extra="    map $uri $realm { default off; }\n")
    assert policy.access("/x").reach is Reach.UNKNOWN and "auth_request" in policy.access("/x").how
    assert policy.access("/free/x").reach is Reach.OPEN
    assert policy.access("/realm/x").reach is Reach.UNKNOWN
    assert policy.access("/auth").reach is Reach.DENIED     # internal


def test_rewrite_that_does_not_match_is_no_obstacle(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "        rewrite ^/old/(.*)$ /new/$1 last;\n"
                               "        rewrite ^/go/ https://shop.test/ permanent;\n"
                               "        location / { }\n")
    assert policy.access("/old/a").reach is Reach.UNKNOWN
    assert policy.access("/go/a").reach is Reach.DENIED
    assert policy.access("/other").reach is Reach.OPEN


def test_break_stops_the_rewrite_directives_before_a_return(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "        location /a/ { break; return 403; }\n        location /b/ { return 403; }\n")
    assert policy.access("/a/x").reach is Reach.OPEN
    assert policy.access("/b/x").reach is Reach.DENIED


def test_named_locations_are_never_chosen_and_pcre_only_regexes_are_unknown(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "        location @admin { deny all; }\n"
                               "        location ~ ^/(?<app>[a-z]+)/secret { deny all; }\n"
                               "        location ~ ^/(?'n'x)y { deny all; }\n")
    assert policy.access("/@admin").reach is Reach.UNKNOWN   # the PCRE-only group is reached, not skipped
    assert policy.access("/shop/secret").reach is Reach.DENIED   # (?<name>) is read as a named group
    assert policy.location("/shop/secret") is not None


def test_fastcgi_inside_if_makes_php_unknown(tmp_path: Path) -> None:
    policy = _policy(tmp_path, "        location ~ \\.php$ { if (-f $request_filename) "
                               "{ fastcgi_pass 127.0.0.1:9000; } }\n")
    assert policy.access("/a.php").reach is Reach.OPEN
    assert policy.runs_php("/a.php") is None
    assert policy.runs_php("/a.txt") is False


def test_request_paths_normalized_like_nginx() -> None:
    assert normalize_uri("/a//b/./c/../d?x=/../..") == "/a/b/d"
    assert normalize_uri("/a/%2e%2E/b%20c") == "/b c"
    assert normalize_uri("/a/.") == "/a/" and normalize_uri("/a/b/..") == "/a/"
    assert normalize_uri("//x", merge_slashes=False) == "//x"
    for bad in ("x", "/../etc/passwd", "/%zz", "/a%00b"):
        with pytest.raises(ValueError):
            normalize_uri(bad)
    policy = NginxPolicy(*_server_directives())
    assert policy.access("/../x").reach is Reach.DENIED and "400" in policy.access("/../x").how
