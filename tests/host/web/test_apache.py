"""The Apache reader and its access evaluator on host trees written here (RootHost, so every path, absolute
includes too, stays inside the tree). The same evaluator is held against a real httpd in
test_apache_reality.py; these tests cover the reading rules and the cases a private httpd cannot show
(--root confinement, broken files, RHEL's layout, mod_php without PHP installed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.host.base import HostError, RootHost
from hostguard.host.web.apache import APACHE, ApachePolicy, collect_apache, parse_text, read_config, read_envvars, split_args
from hostguard.host.web.model import Reach, Site, WebServer, Where

DEBIAN_ENVVARS = """# written here, shaped like Debian's
unset HOME
if [ "${APACHE_CONFDIR##/etc/apache2-}" != "${APACHE_CONFDIR}" ] ; then
\tSUFFIX="-${APACHE_CONFDIR##/etc/apache2-}"
else
\tSUFFIX=
fi
export APACHE_RUN_USER=web-owner
export APACHE_RUN_GROUP=web-group
export APACHE_LOG_DIR=/var/log/apache2$SUFFIX
export LANG
"""


def tree(tmp_path: Path, files: dict[str, str]) -> RootHost:
    """A host tree holding ``files`` (host path → text)."""
    root = tmp_path / "host"
    for name, text in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    root.mkdir(exist_ok=True)
    return RootHost(str(root))


def debian(tmp_path: Path, main: str, extra: dict[str, str] | None = None) -> WebServer:
    """The WebServer of a Debian-layout tree whose apache2.conf is ``main``."""
    host = tree(tmp_path, {"/etc/apache2/apache2.conf": main, "/etc/apache2/envvars": DEBIAN_ENVVARS,
                           **(extra or {})})
    server = collect_apache(host)
    assert server is not None
    return server


def site_named(server: WebServer, name: str) -> Site:
    [site] = [s for s in server.sites if name in s.names]
    return site


def policy(site: Site) -> ApachePolicy:
    assert isinstance(site.policy, ApachePolicy)
    return site.policy


# -- the file syntax ----------------------------------------------------------------------------------

def test_continuation_comments_quotes_and_line_numbers() -> None:
    text = ('# a comment\n'
            'ServerName  one.test\n'
            '   # indented comment\n'
            'Alias "/with space/" \\\n'
            '      "/srv/with space/"\n'
            "Header set X-Note 'it\\'s quoted'\n"
            '<Directory "/srv/a">\n'
            '\t<FilesMatch "\\.php$">\n'
            '\t\tSetHandler none\n'
            '\t</FilesMatch>\n'
            '</directory>\n')
    raws = parse_text(text, "/etc/x.conf")
    assert [(r.name, r.args, r.line) for r in raws[:3]] == [
        ("ServerName", ("one.test",), 2),
        ("Alias", ("/with space/", "/srv/with space/"), 4),
        ("Header", ("set", "X-Note", "it's quoted"), 6)]
    directory = raws[3]
    assert (directory.name, directory.args, directory.line) == ("Directory", ("/srv/a",), 7)
    assert directory.block is not None
    [files] = directory.block
    assert (files.name, files.args, files.line) == ("FilesMatch", ("\\.php$",), 8)
    assert files.block is not None
    assert [(r.name, r.args, r.line) for r in files.block] == [("SetHandler", ("none",), 9)]


def test_continued_comment_swallows_the_next_line() -> None:
    raws = parse_text("# off \\\nServerTokens Full\nServerTokens Prod\n", "/x")
    assert [(r.name, r.args, r.line) for r in raws] == [("ServerTokens", ("Prod",), 3)]


@pytest.mark.parametrize(("text", "message"), [
    ("<Directory /a>\nRequire all denied\n", "/x:1: <Directory> is never closed"),
    ("</Directory>\n", "/x:1: </Directory> without matching <Directory> section"),
    ("<Directory /a>\n</Location>\n", "/x:2: </Location> closes <Directory> opened on line 1"),
    ("<Directory /a\n</Directory>\n", "/x:1: section line lacks its closing '>'"),
])
def test_unbalanced_sections_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(HostError) as err:
        parse_text(text, "/x")
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_split_args_keeps_quoted_spaces_and_empty_strings() -> None:
    assert split_args('a "b c" \'\' d') == ["a", "b c", "", "d"]


def test_envvars_read_as_assignments_never_run() -> None:
    values = read_envvars(DEBIAN_ENVVARS)
    assert values["APACHE_RUN_USER"] == "web-owner"
    assert values["APACHE_RUN_GROUP"] == "web-group"
    assert values["SUFFIX"] == ""              # both branches assign; the later (empty) one stands
    assert values["APACHE_LOG_DIR"] == "/var/log/apache2"
    assert "HOME" not in values and "LANG" not in values


# -- includes, variables and conditional sections ------------------------------------------------------

def test_includes_are_relative_to_serverroot_sorted_and_in_place(tmp_path: Path) -> None:
    server = debian(tmp_path, "ServerTokens Full\nIncludeOptional conf-enabled/*.conf\nInclude extra\n"
                              "ServerSignature On\n", {
        "/etc/apache2/conf-enabled/b.conf": "ServerTokens Minor\n",
        "/etc/apache2/conf-enabled/a.conf": "ServerTokens Prod\n",
        "/etc/apache2/conf-enabled/.hidden.conf": "ServerTokens OS\n",
        "/etc/apache2/extra/one.conf": "ServerSignature EMail\n",
    })
    settings_ = {name: (value, where) for name, value, where in server.settings}
    # b.conf is read after a.conf and wins; .hidden.conf is not matched by the glob
    assert settings_["ServerTokens"] == ("Minor", Where("/etc/apache2/conf-enabled/b.conf", 1))
    # the directory include is read where it stands: the main file's later line wins
    assert settings_["ServerSignature"] == ("On", Where("/etc/apache2/apache2.conf", 4))


def test_absolute_include_stays_inside_the_root(tmp_path: Path) -> None:
    server = debian(tmp_path, "Include /etc/apache2/tokens.conf\n",
                    {"/etc/apache2/tokens.conf": "ServerTokens Prod\n"})
    assert ("ServerTokens", "Prod", Where("/etc/apache2/tokens.conf", 1)) in server.settings


def test_include_of_a_missing_file_is_an_error_and_includeoptional_a_note(tmp_path: Path) -> None:
    with pytest.raises(HostError, match=r"^/etc/apache2/apache2.conf:2: Include sites/\*.conf: no such file"):
        debian(tmp_path / "a", "ServerTokens Prod\nInclude sites/*.conf\n")
    server = debian(tmp_path / "b", "ServerTokens Prod\nIncludeOptional sites/*.conf\n")
    assert server.notes == ("/etc/apache2/apache2.conf:2: IncludeOptional sites/*.conf matches no file",)


def test_include_cycle_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="include cycle"):
        debian(tmp_path, "Include a.conf\n", {"/etc/apache2/a.conf": "Include b.conf\n",
                                              "/etc/apache2/b.conf": "Include a.conf\n"})


def test_the_same_file_twice_without_a_cycle_is_read_twice(tmp_path: Path) -> None:
    server = debian(tmp_path, "Include a.conf\nInclude a.conf\n", {"/etc/apache2/a.conf": "Listen 8080\n"})
    [main_site] = [s for s in server.sites if s.where.path == "/etc/apache2/apache2.conf"]
    assert main_site.listens == ("8080", "8080")


def test_define_and_envvars_substitute(tmp_path: Path) -> None:
    server = debian(tmp_path, "Define SITE /srv/defined\nUser ${APACHE_RUN_USER}\nGroup ${APACHE_RUN_GROUP}\n"
                              "DocumentRoot ${SITE}/html\nErrorLog ${NOT_SET}/error.log\n")
    [run_as] = server.run_as
    assert (run_as.user, run_as.group, run_as.source, run_as.where) == (
        "web-owner", "web-group", "config", Where("/etc/apache2/apache2.conf", 2))
    [main_site] = server.sites
    assert main_site.roots[0].path == "/srv/defined/html"
    assert server.notes == ("/etc/apache2/apache2.conf:5: ${NOT_SET} is not defined (httpd keeps it as written)",)


MODS = ("LoadModule alias_module /usr/lib/apache2/modules/mod_alias.so\n"
        "LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so\n")


@pytest.mark.parametrize(("section", "counted"), [
    ("<IfModule mod_alias.c>", True),
    ("<IfModule alias_module>", True),
    ("<IfModule !mod_alias.c>", False),
    ("<IfModule mod_ssl.c>", False),
    ("<IfModule !ssl_module>", True),
    ("<IfModule mod_version.c>", True),       # compiled in: no LoadModule line needed
    ("<IfDefine HG_ON>", True),
    ("<IfDefine HG_OFF>", False),
    ("<IfDefine !HG_OFF>", True),
    ("<IfFile /etc/apache2/present.txt>", True),
    ("<IfFile present.txt>", True),           # relative to ServerRoot
    ("<IfFile /etc/apache2/absent.txt>", False),
    ("<IfVersion >= 2.4>", True),
    ("<IfVersion < 2.4>", False),
])
def test_conditional_sections_decided_at_their_line(tmp_path: Path, section: str, counted: bool) -> None:
    name = section[1:].split()[0]
    server = debian(tmp_path, f"{MODS}Define HG_ON\nServerTokens Prod\n{section}\nServerTokens Full\n</{name}>\n",
                    {"/etc/apache2/present.txt": "x\n"})
    tokens = {n: v for n, v, _w in server.settings}["ServerTokens"]
    assert tokens == ("Full" if counted else "Prod")


def test_define_inside_a_conditional_counts_later(tmp_path: Path) -> None:
    """Debian's serve-cgi-bin.conf: a name defined inside <IfModule> is tested by <IfDefine> after it."""
    text = (f"{MODS}<IfModule mod_alias.c>\n  Define WITH_EXTRA\n</IfModule>\n"
            "<IfDefine WITH_EXTRA>\n  Alias /extra/ /srv/extra/\n</IfDefine>\n"
            "<IfDefine WITHOUT>\n  Alias /never/ /srv/never/\n</IfDefine>\n")
    [main_site] = debian(tmp_path, text).sites
    assert [(r.url, r.path) for r in main_site.roots] == [("/", "/var/www/html"), ("/extra/", "/srv/extra")]


def test_ifmodule_without_any_loadmodule_is_read_and_noted(tmp_path: Path) -> None:
    server = debian(tmp_path, "<IfModule mod_alias.c>\nServerTokens Prod\n</IfModule>\n")
    assert {n: v for n, v, _w in server.settings}["ServerTokens"] == "Prod"
    assert server.notes == ("/etc/apache2/apache2.conf:1: <IfModule mod_alias.c>: no LoadModule line seen, "
                            "module set unknown; read as true",)


# -- sites, users and settings -------------------------------------------------------------------------

VHOSTS = MODS + """User ${APACHE_RUN_USER}
Group ${APACHE_RUN_GROUP}
DocumentRoot /srv/main
Alias /icons/ "/usr/share/apache2/icons/"
<VirtualHost *:80 [2001:db8::1]:80>
    ServerName www.shop.test:80
    ServerAlias shop.test *.shop.test
    DocumentRoot /srv/shop/public
    Alias /pma /usr/share/phpmyadmin
    AliasMatch "^/user/(\\w+)/(.*)$" "/home/$1/public_html/$2"
    <FilesMatch "\\.php$">
        SetHandler "proxy:unix:/run/php/php8.2-fpm.sock|fcgi://localhost"
    </FilesMatch>
</VirtualHost>
<VirtualHost 192.0.2.10:8080>
    ServerName plain.test
</VirtualHost>
"""


def test_each_virtualhost_is_a_site(tmp_path: Path) -> None:
    server = debian(tmp_path, VHOSTS)
    shop = site_named(server, "www.shop.test")
    assert shop.names == ("www.shop.test", "shop.test", "*.shop.test")
    assert shop.listens == ("*:80", "[2001:db8::1]:80")
    assert shop.where == Where("/etc/apache2/apache2.conf", 7)
    assert [(r.url, r.path, r.where.line) for r in shop.roots] == [
        ("/", "/srv/shop/public", 10), ("/pma", "/usr/share/phpmyadmin", 11), ("/icons/", "/usr/share/apache2/icons", 6)]
    assert shop.php_backends == ("proxy:unix:/run/php/php8.2-fpm.sock|fcgi://localhost",)
    assert [(r.user, r.group, r.source) for r in shop.run_as] == [("web-owner", "web-group", "config")]
    assert any("AliasMatch ^/user/(\\w+)/(.*)$" in n for n in server.notes)
    plain = site_named(server, "plain.test")
    # no DocumentRoot of its own: the main server's
    assert [(r.url, r.path) for r in plain.roots] == [("/", "/srv/main"), ("/icons/", "/usr/share/apache2/icons")]
    assert plain.php_backends == ()
    main = server.sites[0]
    assert (main.names, main.where) == ((), Where("/etc/apache2/apache2.conf"))


def test_aliasmatch_is_followed_by_access(tmp_path: Path) -> None:
    server = debian(tmp_path, VHOSTS + "<Directory /home/owner/public_html/private>\nRequire all denied\n</Directory>\n"
                                       "<Directory /home>\nRequire all granted\n</Directory>\n")
    shop = policy(site_named(server, "shop.test"))
    assert shop.map_uri("/user/owner/private/a.html")[0] == "/home/owner/public_html/private/a.html"
    assert shop.access("/user/owner/private/a.html").reach is Reach.DENIED
    assert shop.access("/user/owner/public.html").reach is Reach.OPEN


def test_no_user_line_falls_back_to_the_package_user(tmp_path: Path) -> None:
    server = debian(tmp_path, "ServerTokens Prod\n")
    [run_as] = server.run_as
    assert (run_as.user, run_as.source, run_as.where) == ("www-data", "default", Where(""))


def test_settings_defaults_and_directory_listing(tmp_path: Path) -> None:
    server = debian(tmp_path, "<Directory /srv/files>\n  Options +Indexes\n</Directory>\n"
                              "<Directory /srv/other>\n  Options FollowSymLinks -Indexes\n</Directory>\n"
                              "<VirtualHost *:80>\n  ServerName v.test\n  <Location /pub>\n    Options All\n"
                              "  </Location>\n</VirtualHost>\n")
    assert server.settings == (
        ("ServerTokens", "Full", Where("")),
        ("ServerSignature", "Off", Where("")),
        ("Options Indexes", "<Directory /srv/files>", Where("/etc/apache2/apache2.conf", 2)),
        ("Options Indexes", "<VirtualHost *:80> <Location /pub>", Where("/etc/apache2/apache2.conf", 10)),
    )


def test_rhel_layout(tmp_path: Path) -> None:
    host = tree(tmp_path, {
        "/etc/httpd/conf/httpd.conf": ('ServerRoot "/etc/httpd"\nInclude conf.modules.d/*.conf\nUser apache\n'
                                       'Group apache\nDocumentRoot "/var/www/html"\nIncludeOptional conf.d/*.conf\n'),
        "/etc/httpd/conf.modules.d/00-base.conf": "LoadModule alias_module modules/mod_alias.so\n",
        "/etc/httpd/conf.d/site.conf": "<IfModule alias_module>\n<VirtualHost *:443>\nServerName rhel.test\n"
                                       "DocumentRoot /srv/rhel\n</VirtualHost>\n</IfModule>\n",
    })
    server = collect_apache(host)
    assert server is not None
    assert server.config == "/etc/httpd/conf/httpd.conf"
    assert [(r.user, r.source) for r in server.run_as] == [("apache", "config")]
    rhel = site_named(server, "rhel.test")
    assert rhel.roots[0].path == "/srv/rhel"
    assert rhel.where == Where("/etc/httpd/conf.d/site.conf", 2)


def test_no_apache_config_is_none(tmp_path: Path) -> None:
    assert collect_apache(tree(tmp_path, {"/etc/hostname": "h\n"})) is None
    assert APACHE.collect is collect_apache


# -- access ---------------------------------------------------------------------------------------------

ACCESS_MAIN = MODS + """DocumentRoot /srv/www
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory /srv/www>
    AllowOverride AuthConfig
    Require all granted
</Directory>
<Directory /srv/www/envgate>
    Require env LET_IN
</Directory>
<Directory /srv/www/oldstyle>
    Order allow,deny
    Allow from 192.0.2.0/24
</Directory>
<Directory /srv/www/oldopen>
    Order deny,allow
    Deny from 198.51.100.7
</Directory>
<Directory /srv/www/world>
    Require ip 0.0.0.0/0
</Directory>
"""


def access_site(tmp_path: Path, files: dict[str, str]) -> ApachePolicy:
    [main_site] = debian(tmp_path, ACCESS_MAIN, files).sites
    return policy(main_site)


def test_htaccess_password_restricts_and_auth_type_alone_does_not(tmp_path: Path) -> None:
    p = access_site(tmp_path, {
        "/srv/www/admin/.htaccess": 'AuthType Basic\nAuthName "x"\nAuthUserFile /etc/apache2/.htpasswd\n'
                                    "Require valid-user\n",
        "/srv/www/notreally/.htaccess": 'AuthType Basic\nAuthName "x"\nAuthUserFile /etc/apache2/.htpasswd\n',
    })
    hit = p.access("/admin/index.php")
    assert hit.reach is Reach.RESTRICTED
    assert hit.where == (Where("/srv/www/admin/.htaccess", 4),)
    miss = p.access("/notreally/index.php")
    assert miss.reach is Reach.OPEN
    assert miss.where == (Where("/etc/apache2/apache2.conf", 10),)


def test_htaccess_line_outside_allowoverride_is_a_500(tmp_path: Path) -> None:
    p = access_site(tmp_path, {"/srv/www/limit/.htaccess": "Order deny,allow\nDeny from all\n",
                               "/srv/www/fine/.htaccess": "Require all denied\n"})
    answer = p.access("/limit/a.html")
    assert answer.reach is Reach.DENIED
    assert "Order not allowed by AllowOverride authconfig: httpd answers 500" in answer.how
    assert p.access("/fine/a.html").reach is Reach.DENIED
    assert "Require all denied (/srv/www/fine/.htaccess:1)" in p.access("/fine/a.html").how


def test_htaccess_directive_of_unknown_class_is_unknown(tmp_path: Path) -> None:
    p = access_site(tmp_path, {"/srv/www/odd/.htaccess": "SomeModuleDirective on\nRequire all granted\n"})
    answer = p.access("/odd/a.html")
    assert answer.reach is Reach.UNKNOWN
    assert "/srv/www/odd/.htaccess:1: whether AllowOverride authconfig allows SomeModuleDirective" in answer.how


def test_broken_htaccess_denies_below_it(tmp_path: Path) -> None:
    p = access_site(tmp_path, {"/srv/www/broken/.htaccess": "<Files x>\nRequire all denied\n"})
    answer = p.access("/broken/sub/a.html")
    assert answer.reach is Reach.DENIED
    assert "/srv/www/broken/.htaccess:1: <Files> is never closed; httpd answers 500 below it" in answer.how


def test_require_env_is_unknown(tmp_path: Path) -> None:
    answer = access_site(tmp_path, {}).access("/envgate/a.html")
    assert answer.reach is Reach.UNKNOWN
    assert "Require env LET_IN (not evaluated)" in answer.how


def test_old_style_order_allow_deny(tmp_path: Path) -> None:
    p = access_site(tmp_path, {})
    assert p.access("/oldstyle/a.html").reach is Reach.RESTRICTED
    assert p.access("/oldopen/a.html").reach is Reach.OPEN   # only one address is refused


def test_require_ip_for_every_address_is_open(tmp_path: Path) -> None:
    assert access_site(tmp_path, {}).access("/world/a.html").reach is Reach.OPEN


def test_uri_is_decoded_and_dot_segments_resolved(tmp_path: Path) -> None:
    p = access_site(tmp_path, {"/srv/www/admin/.htaccess": "Require all denied\n"})
    assert p.access("/%61dmin/x").reach is Reach.DENIED
    assert p.access("/public/../admin/x").reach is Reach.DENIED
    assert p.access("/public//x").reach is Reach.OPEN


def test_listing_follows_options_merging(tmp_path: Path) -> None:
    [main_site] = debian(tmp_path, "DocumentRoot /srv/www\n<Directory /srv/www>\nOptions Indexes FollowSymLinks\n"
                                   "</Directory>\n<Directory /srv/www/quiet>\nOptions -Indexes\n</Directory>\n").sites
    p = policy(main_site)
    assert p.listing("/files/") is True
    assert p.listing("/quiet/") is False


# -- PHP ------------------------------------------------------------------------------------------------

MOD_PHP = MODS + """LoadModule php_module /usr/lib/apache2/modules/libphp8.2.so
DocumentRoot /srv/www
<FilesMatch ".+\\.ph(?:ar|p|tml)$">
    SetHandler application/x-httpd-php
</FilesMatch>
<FilesMatch ".+\\.phps$">
    SetHandler application/x-httpd-php-source
</FilesMatch>
<Directory /srv/www/uploads>
    php_admin_flag engine off
</Directory>
<Directory /srv/www/static>
    <FilesMatch "\\.php$">
        SetHandler None
    </FilesMatch>
</Directory>
"""


def test_mod_php_runs_php_except_where_turned_off(tmp_path: Path) -> None:
    server = debian(tmp_path, MOD_PHP)
    [main_site] = server.sites
    p = policy(main_site)
    assert p.runs_php("/index.php") is True
    assert p.runs_php("/app/") is True
    assert p.runs_php("/uploads/") is False
    assert p.runs_php("/uploads/shell.php") is False
    assert p.runs_php("/static/x.php") is False
    assert main_site.run_as[0].detail == "no User line: the package's default; mod_php runs PHP inside these workers"


def test_php_handler_without_mod_php_does_not_run(tmp_path: Path) -> None:
    [main_site] = debian(tmp_path, MOD_PHP.replace("LoadModule php_module", "#LoadModule php_module")).sites
    assert policy(main_site).runs_php("/index.php") is False


def test_addhandler_removehandler_and_proxypassmatch(tmp_path: Path) -> None:
    text = MODS + """DocumentRoot /srv/www
AddHandler "proxy:fcgi://127.0.0.1:9000" .php
<Directory /srv/www/files>
    RemoveHandler .php
</Directory>
<VirtualHost *:80>
    ServerName fpm.test
    DocumentRoot /srv/fpm
    ProxyPassMatch "^/(.*\\.php(/.*)?)$" "fcgi://127.0.0.1:9000/srv/fpm/$1"
</VirtualHost>
"""
    server = debian(tmp_path, text)
    main = policy(server.sites[0])
    assert main.runs_php("/a.php") is True
    assert main.runs_php("/files/a.php") is False
    fpm = site_named(server, "fpm.test")
    assert policy(fpm).runs_php("/files/a.php") is True
    assert fpm.php_backends == ("proxy:fcgi://127.0.0.1:9000", "fcgi://127.0.0.1:9000/srv/fpm/$1")


def test_sethandler_inside_if_is_unknown(tmp_path: Path) -> None:
    text = MODS + "DocumentRoot /srv/www\n<Directory /srv/www>\n<If \"-R '192.0.2.0/24'\">\n" \
                  "SetHandler \"proxy:fcgi://127.0.0.1:9000\"\n</If>\n</Directory>\n"
    [main_site] = debian(tmp_path, text).sites
    assert policy(main_site).runs_php("/a.php") is None


# -- garbage in -----------------------------------------------------------------------------------------

LINE = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["<Directory /x>", "</Directory>", "<IfModule mod_x.c>", "</IfModule>", "Require all denied",
                     "Include x.conf", "IncludeOptional *.conf", "Define A ${A}", "\\", '"', "<>", "</>", "<",
                     "<If \"true\">", "</If>", "Alias /a /b", "DocumentRoot ${A}", "ServerRoot /"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(LINE, max_size=25))
def test_fuzz_parse_gives_a_tree_or_a_host_error(lines: list[str]) -> None:
    text = "\n".join(lines)
    try:
        parse_text(text, "/f")
    except HostError as exc:
        assert "\n" not in str(exc)
    read_envvars(text)
    split_args(text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(LINE, max_size=15), st.lists(LINE, max_size=10))
def test_fuzz_whole_server_reads_or_fails_cleanly(tmp_path_factory: pytest.TempPathFactory,
                                                  main: list[str], inc: list[str]) -> None:
    base = tmp_path_factory.mktemp("fuzz")
    host = tree(base, {"/etc/apache2/apache2.conf": "\n".join(main), "/etc/apache2/x.conf": "\n".join(inc),
                       "/srv/www/.htaccess": "\n".join(inc)})
    try:
        config = read_config(host, "/etc/apache2/apache2.conf", "/etc/apache2")
    except HostError as exc:
        assert "\n" not in str(exc)
        return
    server = collect_apache(host)
    assert server is not None and config.main == server.config
    for site in server.sites:
        assert site.policy is not None
        for uri in ("/", "/a.php", "/x/../.htaccess"):
            assert site.policy.access(uri).reach in set(Reach)
            assert site.policy.runs_php(uri) in (True, False, None)


def test_htaccess_refusals_under_allowoverride_all_and_nonfatal(tmp_path: Path) -> None:
    main = ACCESS_MAIN + ("<Directory /srv/www/all>\n    AllowOverride All\n</Directory>\n"
                          "<Directory /srv/www/lenient>\n    AllowOverride AuthConfig Nonfatal=Override\n</Directory>\n")
    [main_site] = debian(tmp_path, main, {
        "/srv/www/all/.htaccess": "RewriteEngine On\nRewriteRule ^secret - [F]\n<Directory /srv>\n</Directory>\n",
        "/srv/www/all/ok/.htaccess": "Require all denied\n",
        "/srv/www/lenient/.htaccess": "Order deny,allow\nDeny from all\n",
    }).sites
    p = policy(main_site)
    refused = p.access("/all/a.html")
    assert refused.reach is Reach.DENIED
    assert "/srv/www/all/.htaccess:3: Directory not allowed by AllowOverride all: httpd answers 500" in refused.how
    assert p.access("/lenient/a.html").reach is Reach.OPEN


def test_rewrite_rules_are_named_not_evaluated(tmp_path: Path) -> None:
    main = ACCESS_MAIN + "<Directory /srv/www/rw>\n    RewriteEngine On\n    RewriteRule ^x$ - [F]\n</Directory>\n"
    [main_site] = debian(tmp_path, main).sites
    answer = policy(main_site).access("/rw/x")
    assert answer.reach is Reach.OPEN
    assert "/etc/apache2/apache2.conf:28: RewriteRule not evaluated" in answer.how


def test_include_depth_is_bounded(tmp_path: Path) -> None:
    chain = {f"/etc/apache2/c{i}.conf": f"Include c{i + 1}.conf\n" for i in range(40)}
    chain["/etc/apache2/c40.conf"] = "ServerTokens Prod\n"
    with pytest.raises(HostError, match=r"includes nested deeper than 32 files"):
        debian(tmp_path / "deep", "Include c0.conf\n", chain)
    shallow = {f"/etc/apache2/c{i}.conf": f"Include c{i + 1}.conf\n" for i in range(10)}
    shallow["/etc/apache2/c10.conf"] = "ServerTokens Prod\n"
    server = debian(tmp_path / "shallow", "Include c0.conf\n", shallow)
    assert ("ServerTokens", "Prod", Where("/etc/apache2/c10.conf", 1)) in server.settings
