"""Tomcat's sites, roots and user from its configuration: fixture trees written here, this machine's
installed tomcat10 through LiveHost, Tomcat's own ``configtest`` on the fixture, and garbage."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.host.base import HostError, LiveHost, RootHost
from hostguard.host.web.model import DocRoot, Reach, RunAs, Where
from hostguard.host.web.tomcat import (
    ResourceCollection,
    SecurityConstraint,
    TomcatPolicy,
    applicable_constraints,
    collect_tomcat,
    context_url,
    normalize_request,
    parse_xml,
    pattern_matches,
    tomcat_address,
)

SERVER_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- written for hostguard's tests -->
<Server port="-1" shutdown="SHUTDOWN">
  <GlobalNamingResources>
    <Resource name="UserDatabase" auth="Container" type="org.apache.catalina.UserDatabase"
              factory="org.apache.catalina.users.MemoryUserDatabaseFactory"
              pathname="conf/tomcat-users.xml" />
  </GlobalNamingResources>
  <Service name="Catalina">
    <Connector port="8080" protocol="HTTP/1.1" connectionTimeout="20000" />
    <Connector port="8443" protocol="org.apache.coyote.http11.Http11NioProtocol" SSLEnabled="true">
      <SSLHostConfig><Certificate certificateKeystoreFile="conf/none.jks" type="RSA" /></SSLHostConfig>
    </Connector>
    <Connector protocol="AJP/1.3" address="::1" port="8009" secretRequired="false" />
    <Engine name="Catalina" defaultHost="shop.test">
      <Host name="shop.test" appBase="webapps" unpackWARs="true" autoDeploy="true">
        <Alias>www.shop.test</Alias>
        <Context path="/static" docBase="/srv/static" />
      </Host>
      <Host name="intranet.test" appBase="/srv/intranet-apps" deployOnStartup="false" autoDeploy="false">
      </Host>
    </Engine>
  </Service>
</Server>
"""

UNIT = """\
[Unit]
Description=Tomcat written for hostguard's tests

[Service]
Environment="CATALINA_HOME=/usr/share/tomcat10"
Environment="CATALINA_BASE=/var/lib/tomcat10" "CATALINA_TMPDIR=/tmp"
User=tomcat
Group=tomcat
ExecStart=/bin/true
"""


def _line(needle: str) -> int:
    """The line of SERVER_XML that holds ``needle``."""
    return next(n for n, line in enumerate(SERVER_XML.splitlines(), 1) if needle in line)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _tree(tmp_path: Path, unit: str | None = UNIT) -> Path:
    """A Debian-shaped tomcat10 install: conf is a symlink to /etc/tomcat10, absolute like Debian's."""
    root = tmp_path / "host"
    _write(root / "etc/tomcat10/server.xml", SERVER_XML)
    _write(root / "etc/tomcat10/tomcat-users.xml", "<tomcat-users/>\n")
    _write(root / "etc/tomcat10/Catalina/shop.test/manager.xml",
           '<?xml version="1.0"?>\n<Context path="/manager"\n  docBase="/usr/share/tomcat10-admin/manager"'
           ' privileged="true" />\n')
    _write(root / "etc/tomcat10/Catalina/shop.test/notes.txt", "not a context\n")
    base = root / "var/lib/tomcat10"
    base.mkdir(parents=True)
    (base / "conf").symlink_to("/etc/tomcat10")
    for app in ("ROOT", "shop", "foo#bar##2", "META-INF"):
        _write(base / "webapps" / app / "index.jsp", "<%-- test page --%>\n")
    _write(base / "webapps" / "report.war", "PK not a real war\n")
    _write(root / "srv/intranet-apps/wiki/index.jsp", "<%-- test page --%>\n")
    if unit is not None:
        _write(root / "lib/systemd/system/tomcat10.service", unit)
    return root


def test_sites_roots_and_user_from_a_debian_tree(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    _write(root / "etc/systemd/system/tomcat10.service.d/override.conf", "[Service]\nUser=webapps\n")
    server = collect_tomcat(RootHost(str(root)))
    assert server is not None
    assert (server.kind, server.config) == ("tomcat", "/etc/tomcat10/server.xml")
    assert server.run_as == (RunAs("webapps", "tomcat", "config",
                                   Where("/etc/systemd/system/tomcat10.service.d/override.conf", 2)),)
    assert ("tomcat_users", "/etc/tomcat10/tomcat-users.xml",
            Where("/etc/tomcat10/server.xml", _line("<Resource"))) in server.settings
    assert ("catalina_base", "/var/lib/tomcat10", Where("/lib/systemd/system/tomcat10.service", 6)) in server.settings
    shop, intranet = server.sites
    assert shop.names == ("shop.test", "www.shop.test")
    assert shop.listens == ("8080", "8443 ssl", "[::1]:8009 ajp")
    assert shop.where == Where("/etc/tomcat10/server.xml", _line('<Host name="shop.test"'))
    assert shop.run_as == server.run_as
    webapps = "/var/lib/tomcat10/webapps"
    assert shop.roots == (
        DocRoot("/", webapps, shop.where),
        DocRoot("/", f"{webapps}/ROOT", Where(f"{webapps}/ROOT")),
        DocRoot("/foo/bar/", f"{webapps}/foo#bar##2", Where(f"{webapps}/foo#bar##2")),
        DocRoot("/manager/", "/usr/share/tomcat10-admin/manager", Where("/etc/tomcat10/Catalina/shop.test/manager.xml", 2)),
        DocRoot("/shop/", f"{webapps}/shop", Where(f"{webapps}/shop")),
        DocRoot("/static/", "/srv/static", Where("/etc/tomcat10/server.xml", _line('<Context path="/static"'))),
    )
    assert f"{webapps}/report.war: not unpacked, its files are not on disk" in server.notes
    # deployment off: the appBase is still where Tomcat would deploy from, but nothing is served from it
    assert intranet.roots == (DocRoot("/", "/srv/intranet-apps", Where("/etc/tomcat10/server.xml",
                                                                       _line('<Host name="intranet.test"'))),)


def test_a_unit_without_user_runs_tomcat_as_root(tmp_path: Path) -> None:
    root = _tree(tmp_path, UNIT.replace("User=tomcat\nGroup=tomcat\n", ""))
    server = collect_tomcat(RootHost(str(root)))
    assert server is not None
    [run_as] = server.run_as
    assert (run_as.user, run_as.where, run_as.detail) == (
        "root", Where("/lib/systemd/system/tomcat10.service"), "the unit sets no User=: systemd starts Tomcat as root")


def test_without_a_unit_the_user_is_unknown_and_said_so(tmp_path: Path) -> None:
    root = _tree(tmp_path, unit=None)
    server = collect_tomcat(RootHost(str(root)))
    assert server is not None
    assert server.run_as == ()
    assert "no tomcat10.service unit: the user Tomcat runs as is not known" in server.notes
    assert [s.names[0] for s in server.sites] == ["shop.test", "intranet.test"]


def test_masked_unit_is_no_unit(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/tomcat10.service").symlink_to("/dev/null")
    server = collect_tomcat(RootHost(str(root)))
    assert server is not None and server.run_as == ()


def test_no_tomcat_is_none(tmp_path: Path) -> None:
    _write(tmp_path / "etc/hostname", "web.test\n")
    assert collect_tomcat(RootHost(str(tmp_path))) is None


def test_a_broken_context_file_is_a_note_and_the_rest_is_read(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    _write(root / "etc/tomcat10/Catalina/shop.test/broken.xml", "<Context docBase='/srv/x'>\n")
    server = collect_tomcat(RootHost(str(root)))
    assert server is not None
    assert any(n.startswith("/etc/tomcat10/Catalina/shop.test/broken.xml:2: not well-formed XML")
               and n.endswith("(Tomcat skips this context)") for n in server.notes)
    assert "/manager/" in {r.url for r in server.sites[0].roots}
    assert "/broken/" not in {r.url for r in server.sites[0].roots}


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE Server [
  <!ENTITY a "aaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
]>
<Server><Service name="x"><Engine name="x"><Host name="&b;" appBase="webapps"/></Engine></Service></Server>
"""


@pytest.mark.parametrize(("text", "message"), [
    (BILLION_LAUGHS, "/etc/tomcat10/server.xml:2: a DOCTYPE declaration is not accepted"),
    ('<?xml version="1.0"?>\n<!DOCTYPE Server SYSTEM "file:///etc/passwd">\n<Server/>\n',
     "/etc/tomcat10/server.xml:2: a DOCTYPE declaration is not accepted"),
    ("<Server>\n  <Service>\n</Server>\n", "/etc/tomcat10/server.xml:3: not well-formed XML (mismatched tag)"),
    ("<Server>&undefined;</Server>\n", "/etc/tomcat10/server.xml:1: not well-formed XML (undefined entity)"),
    ('<?xml version="1.0"?>\n<Context/>\n', "/etc/tomcat10/server.xml:2: the root element is <Context>, not <Server>"),
])
def test_hostile_or_broken_server_xml_is_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    root = _tree(tmp_path)
    (root / "etc/tomcat10/server.xml").write_text(text)
    with pytest.raises(HostError) as err:
        collect_tomcat(RootHost(str(root)))
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_context_names_map_to_urls() -> None:
    assert [context_url(n) for n in ("ROOT", "ROOT##3", "shop", "a#b#c", "x##1.2")] == [
        "/", "/", "/shop/", "/a/b/c/", "/x/"]


def test_this_machines_tomcat10_through_live_host() -> None:
    if not Path("/etc/tomcat10/server.xml").exists():
        pytest.skip(reason="tomcat10 is not installed (scripts/install-system-deps.sh test installs it)")
    server = collect_tomcat(LiveHost())
    assert server is not None
    assert server.config == "/etc/tomcat10/server.xml"
    assert [(r.user, r.where.path) for r in server.run_as] == [("tomcat", "/lib/systemd/system/tomcat10.service")]
    [site] = server.sites
    assert site.names == ("localhost",)
    assert site.roots[0] == DocRoot("/", "/var/lib/tomcat10/webapps", site.where)
    assert ("/", "/var/lib/tomcat10/webapps/ROOT") in {(r.url, r.path) for r in site.roots}
    if Path("/etc/tomcat10/Catalina/localhost/manager.xml").exists():    # tomcat10-admin
        assert ("/manager/", "/usr/share/tomcat10-admin/manager") in {(r.url, r.path) for r in site.roots}


def test_tomcat_itself_accepts_the_fixture(tmp_path: Path) -> None:
    """``catalina.sh configtest`` on a CATALINA_BASE holding the fixture server.xml: Tomcat parses it and
    builds its hosts; a broken one it refuses, as hostguard does."""
    catalina = Path("/usr/share/tomcat10/bin/catalina.sh")
    if not catalina.exists() or shutil.which("java") is None:
        pytest.skip(reason="tomcat10 is not installed (scripts/install-system-deps.sh test installs it)")
    base = tmp_path / "base"
    for sub in ("logs", "temp", "webapps", "work"):
        (base / sub).mkdir(parents=True)
    _write(base / "conf/server.xml", SERVER_XML.replace('address="::1"', 'address="127.0.0.1"'))
    shutil.copy("/etc/tomcat10/web.xml", base / "conf/web.xml")   # the installed default, read at test time
    _write(base / "conf/tomcat-users.xml", "<tomcat-users/>\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CATALINA_HOME": "/usr/share/tomcat10",
           "CATALINA_BASE": str(base), "CATALINA_TMPDIR": str(base / "temp")}

    def configtest() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", str(catalina), "configtest"], capture_output=True, text=True, env=env,
                              timeout=120, check=False)

    good = configtest()
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Server initialization" in good.stdout + good.stderr or "initialization" in good.stdout + good.stderr
    (base / "conf/server.xml").write_text("<Server>\n  <Service>\n</Server>\n")
    assert configtest().returncode != 0
    with pytest.raises(HostError):
        parse_xml((base / "conf/server.xml").read_bytes(), "server.xml")


XML_PIECES = st.sampled_from(["<Server>", "</Server>", "<Service name='s'>", "</Service>", "<Engine name='E'>",
                              "</Engine>", "<Host name='h.test' appBase='webapps'>", "</Host>", "<Host/>",
                              "<Context path='/x' docBase='../..'/>", "<Alias>a.test</Alias>", "<!DOCTYPE x>",
                              "<!ENTITY e 'x'>", "&e;", "&amp;", "<!-- c -->", "<?xml version='1.0'?>", "\n", "<",
                              ">", "'", '"', "=", "${p}", "<Connector port='80'/>", "\u00e9", "\x00"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(XML_PIECES, max_size=30).map("".join), st.binary(max_size=200))
def test_garbage_xml_gives_a_result_or_a_host_error(tmp_path: Path, text: str, junk: bytes) -> None:
    root = tmp_path / "g"
    shutil.rmtree(root, ignore_errors=True)
    _write(root / "etc/tomcat10/server.xml", text)
    base = root / "var/lib/tomcat10"
    base.mkdir(parents=True)
    (base / "conf").symlink_to("/etc/tomcat10")
    (root / "etc/tomcat10/Catalina/h.test").mkdir(parents=True)
    (root / "etc/tomcat10/Catalina/h.test/x.xml").write_bytes(junk)
    try:
        server = collect_tomcat(RootHost(str(root)))
    except HostError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("/etc/tomcat10/server.xml")
        return
    assert server is not None
    for site in server.sites:
        assert site.roots[0].url == "/" and all(r.path.startswith("/") for r in site.roots)


# -- access policy: valves and security constraints ---------------------------------------------------

MANAGER_DIR = "usr/share/tomcat10-admin/manager"
DEBIAN_VALVE = '<Valve className="org.apache.catalina.valves.RemoteCIDRValve" allow="127.0.0.0/8, ::1/128"/>'
MANAGER_XML = "etc/tomcat10/Catalina/shop.test/manager.xml"


def _web_xml(*constraints: str, login: str = "<login-config><auth-method>BASIC</auth-method></login-config>",
             extra: str = "") -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" '
            'version="6.0">\n' + "\n".join(constraints) + f"\n{extra}{login}\n</web-app>\n")


def _constraint(pattern: str, auth: str | None = "<auth-constraint><role-name>manager-gui</role-name></auth-constraint>",
                methods: str = "") -> str:
    return (f"<security-constraint>\n<web-resource-collection><url-pattern>{pattern}</url-pattern>{methods}"
            f"</web-resource-collection>\n{auth or ''}</security-constraint>")


def _manager(tmp_path: Path, valves: str = "", web_xml: str | None = None, meta_inf: str | None = None) -> Path:
    """The fixture tree with a manager application deployed by a context file (Debian's way)."""
    root = _tree(tmp_path)
    _write(root / MANAGER_XML, f'<?xml version="1.0"?>\n<Context path="/manager"\n  docBase="/{MANAGER_DIR}" '
                               f'privileged="true">\n  {valves}\n</Context>\n')
    _write(root / MANAGER_DIR / "index.jsp", "<%-- test page --%>\n")
    if web_xml is not None:
        _write(root / MANAGER_DIR / "WEB-INF/web.xml", web_xml)
    if meta_inf is not None:
        _write(root / MANAGER_DIR / "META-INF/context.xml", meta_inf)
    return root


def _policy(root: Path, site: int = 0) -> TomcatPolicy:
    server = collect_tomcat(RootHost(str(root)))
    assert server is not None
    policy = server.sites[site].policy
    assert isinstance(policy, TomcatPolicy)
    return policy


def _xml_line(root: Path, rel: str, needle: str) -> int:
    return next(n for n, line in enumerate((root / rel).read_text().splitlines(), 1) if needle in line)


def test_hit_manager_without_valve_or_constraint_is_open_to_anyone(tmp_path: Path) -> None:
    answer = _policy(_manager(tmp_path)).access("/manager/html")
    assert answer.reach is Reach.OPEN
    assert answer.how.startswith("context /manager (/usr/share/tomcat10-admin/manager): no valve")


def test_miss_debian_valve_allows_only_loopback(tmp_path: Path) -> None:
    root = _manager(tmp_path, valves=DEBIAN_VALVE)
    answer = _policy(root).access("/manager/html")
    assert answer.reach is Reach.RESTRICTED
    assert 'RemoteCIDRValve allow="127.0.0.0/8, ::1/128"' in answer.how and "chosen addresses" in answer.how
    assert answer.where == (Where("/etc/tomcat10/Catalina/shop.test/manager.xml", 4),)


def test_the_valve_in_meta_inf_counts_only_without_a_context_file(tmp_path: Path) -> None:
    """Deployed by a context file, the application's own META-INF/context.xml is never read (so Debian's
    manager.xml drops the loopback valve tomcat10-admin ships); deployed from the appBase, it is."""
    meta = f'<?xml version="1.0"?>\n<Context privileged="true">\n  {DEBIAN_VALVE}\n</Context>\n'
    root = _manager(tmp_path, meta_inf=meta)
    assert _policy(root).access("/manager/html").reach is Reach.OPEN
    (root / MANAGER_XML).unlink()
    shutil.copytree(root / MANAGER_DIR, root / "var/lib/tomcat10/webapps/manager")
    answer = _policy(root).access("/manager/html")
    assert answer.reach is Reach.RESTRICTED
    assert answer.where == (Where("/var/lib/tomcat10/webapps/manager/META-INF/context.xml", 3),)


def test_miss_constraint_with_roles_needs_a_password(tmp_path: Path) -> None:
    root = _manager(tmp_path, web_xml=_web_xml(_constraint("/html/*"), _constraint("/status/*")))
    policy = _policy(root)
    answer = policy.access("/manager/html")
    assert answer.reach is Reach.RESTRICTED
    assert answer.how.endswith("a security-constraint needs a login (BASIC) with role manager-gui")
    web = f"/{MANAGER_DIR}/WEB-INF/web.xml"
    assert answer.where == (Where(web, 3), Where(web, 9))   # the constraint, the login-config
    assert policy.access("/manager/html/list").reach is Reach.RESTRICTED
    assert policy.access("/manager/images/x.svg").reach is Reach.OPEN     # no pattern covers it
    assert policy.access("/manager/WEB-INF/web.xml").reach is Reach.DENIED


def test_miss_empty_auth_constraint_refuses_everyone(tmp_path: Path) -> None:
    root = _manager(tmp_path, web_xml=_web_xml(_constraint("/html/*"), _constraint("/*", "<auth-constraint/>")))
    answer = _policy(root).access("/manager/images/x.svg")
    assert answer.reach is Reach.DENIED and "empty auth-constraint" in answer.how
    # the more specific /html/* pattern wins for /html: its roles apply, not /*'s refusal
    assert _policy(root).access("/manager/html").reach is Reach.RESTRICTED


def test_roles_without_login_config_refuse_everyone(tmp_path: Path) -> None:
    root = _manager(tmp_path, web_xml=_web_xml(_constraint("/html/*"), login=""))
    answer = _policy(root).access("/manager/html")
    assert answer.reach is Reach.DENIED and "no login-config" in answer.how


def test_a_constraint_without_auth_constraint_lets_anyone_in(tmp_path: Path) -> None:
    root = _manager(tmp_path, web_xml=_web_xml(_constraint("/html/*"), _constraint("/html/*", None)))
    assert _policy(root).access("/manager/html").reach is Reach.OPEN


def test_miss_method_limited_constraint_is_unknown(tmp_path: Path) -> None:
    get_only = _constraint("/html/*", methods="<http-method>GET</http-method><http-method>POST</http-method>")
    answer = _policy(_manager(tmp_path, web_xml=_web_xml(get_only))).access("/manager/html")
    assert answer.reach is Reach.UNKNOWN
    assert "GET: restricted; POST: restricted; other methods: open" in answer.how


def test_method_lists_that_cover_every_method_are_evaluated(tmp_path: Path) -> None:
    get = _constraint("/html/*", methods="<http-method>GET</http-method>")
    rest = _constraint("/html/*", methods="<http-method-omission>GET</http-method-omission>")
    root = _manager(tmp_path / "a", web_xml=_web_xml(get, rest))
    assert _policy(root).access("/manager/html").reach is Reach.RESTRICTED
    # deny-uncovered-http-methods: the methods a list leaves out are refused (Tomcat adds the constraint)
    root = _manager(tmp_path / "b", web_xml=_web_xml(get, extra="<deny-uncovered-http-methods/>\n"))
    answer = _policy(root).access("/manager/html")
    assert answer.reach is Reach.RESTRICTED and "other methods: denied" in answer.how


def test_engine_host_and_default_context_valves_apply_to_every_context(tmp_path: Path) -> None:
    root = _manager(tmp_path)
    server_xml = root / "etc/tomcat10/server.xml"
    server_xml.write_text(server_xml.read_text().replace(
        '<Engine name="Catalina" defaultHost="shop.test">',
        '<Engine name="Catalina" defaultHost="shop.test">\n'
        '      <Valve className="org.apache.catalina.valves.AccessLogValve" directory="logs" />\n'
        '      <Valve className="org.apache.catalina.valves.RemoteAddrValve" allow="192\\.0\\.2\\.\\d+" />'))
    answer = _policy(root).access("/shop/index.jsp")
    assert answer.reach is Reach.RESTRICTED and 'RemoteAddrValve allow="192\\.0\\.2\\.\\d+"' in answer.how
    assert answer.where == (Where("/etc/tomcat10/server.xml", _xml_line(root, "etc/tomcat10/server.xml",
                                                                         "RemoteAddrValve")),)
    # conf/context.xml: every context, unless the context says override="true"
    server_xml.write_text(SERVER_XML)
    _write(root / "etc/tomcat10/context.xml", '<Context>\n<Valve className="org.apache.catalina.valves.'
                                              'RemoteCIDRValve" allow="198.51.100.0/24"/>\n</Context>\n')
    assert _policy(root).access("/manager/html").reach is Reach.RESTRICTED
    assert _policy(root).access("/").reach is Reach.RESTRICTED
    manager = (root / MANAGER_XML).read_text()
    (root / MANAGER_XML).write_text(manager.replace('privileged="true"', 'privileged="true" override="true"'))
    assert _policy(root).access("/manager/html").reach is Reach.OPEN
    # a valve with neither allow nor deny refuses everyone (Tomcat's RequestFilterValve)
    _write(root / "etc/tomcat10/Catalina/shop.test/context.xml.default",
           '<Context><Valve className="org.apache.catalina.valves.RemoteCIDRValve"/></Context>\n')
    assert _policy(root).access("/shop/index.jsp").reach is Reach.DENIED


def test_deploy_xml_false_refuses_an_application_with_its_own_context_file(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    _write(root / "var/lib/tomcat10/webapps/shop/META-INF/context.xml", "<Context/>\n")
    assert _policy(root).access("/shop/index.jsp").reach is Reach.OPEN
    server_xml = root / "etc/tomcat10/server.xml"
    server_xml.write_text(SERVER_XML.replace('unpackWARs="true"', 'unpackWARs="true" deployXML="false"'))
    answer = _policy(root).access("/shop/index.jsp")
    assert answer.reach is Reach.DENIED and "deployXML" in answer.how
    assert _policy(root).access("/foo/bar/index.jsp").reach is Reach.OPEN


@pytest.mark.parametrize(("valves", "reach", "why"), [
    ('<Valve className="org.apache.catalina.valves.RemoteCIDRValve" allow="127.0.0.1" addConnectorPort="true"/>',
     Reach.UNKNOWN, "addConnectorPort"),
    ('<Valve className="org.apache.catalina.valves.RemoteCIDRValve" allow="300.0.0.1/8"/>', Reach.UNKNOWN,
     "cannot be read"),
    ('<Valve className="org.apache.catalina.valves.RemoteCIDRValve" allow="127.0.0.1;8080"/>', Reach.UNKNOWN,
     "port part"),
    ('<Valve className="org.apache.catalina.valves.RemoteAddrValve" allow="\\p{Digit}+"/>', Reach.UNKNOWN,
     "cannot be read"),
    ('<Valve className="org.apache.catalina.valves.RemoteAddrValve" allow="127.0.0.1" denyStatus="x"/>',
     Reach.UNKNOWN, "denyStatus"),
    ('<Valve className="org.apache.catalina.valves.RemoteHostValve" allow="admin\\.test"/>', Reach.UNKNOWN,
     "host name"),
    ('<Valve className="com.example.SsoValve"/>', Reach.UNKNOWN, "SsoValve is code"),
    ('<Valve className="org.apache.catalina.valves.RemoteIpValve"/>' + DEBIAN_VALVE, Reach.UNKNOWN,
     "X-Forwarded-For"),
    ('<Valve className="org.apache.catalina.valves.RemoteIpValve"/>' + DEBIAN_VALVE.replace(
        "/>", ' usePeerAddress="true"/>'), Reach.RESTRICTED, "chosen addresses"),
    (DEBIAN_VALVE.replace("/>", ' invalidAuthenticationWhenDeny="true"/>'), Reach.RESTRICTED, "chosen addresses"),
    ('<Valve className="org.apache.catalina.valves.RemoteCIDRValve" deny="192.0.2.0/24"/>', Reach.OPEN,
     "lets any client address through"),
    ('<Valve className="org.apache.catalina.valves.RemoteCIDRValve" allow="0.0.0.0/0"/>', Reach.OPEN,
     "lets any client address through"),
    ('<Valve className="org.apache.catalina.valves.RemoteCIDRValve" allow="::/0" deny="::/0, 0.0.0.0/0"/>',
     Reach.DENIED, "no client address"),
    ('<Valve className="com.example.SsoValve"/><Valve className="org.apache.catalina.valves.RemoteCIDRValve"/>',
     Reach.DENIED, "no client address"),
    ('<Valve className="org.apache.catalina.valves.RemoteAddrValve" allow="::1"/>', Reach.RESTRICTED,
     "chosen addresses"),
])
def test_valves_evaluated_or_said_unknown(tmp_path: Path, valves: str, reach: Reach, why: str) -> None:
    answer = _policy(_manager(tmp_path, valves=valves)).access("/manager/html")
    assert answer.reach is reach, answer
    assert why in answer.how


def test_invalid_authentication_when_deny_with_preemptive_authentication_is_unknown(tmp_path: Path) -> None:
    root = _manager(tmp_path, valves=DEBIAN_VALVE.replace("/>", ' invalidAuthenticationWhenDeny="true"/>'))
    manager = (root / MANAGER_XML).read_text()
    (root / MANAGER_XML).write_text(manager.replace('privileged="true"', 'preemptiveAuthentication="true"'))
    answer = _policy(root).access("/manager/html")
    assert answer.reach is Reach.UNKNOWN and "invalidAuthenticationWhenDeny" in answer.how


def test_address_filter_in_web_xml(tmp_path: Path) -> None:
    remote = ("<filter><filter-name>r</filter-name><filter-class>org.apache.catalina.filters.RemoteCIDRFilter"
              "</filter-class><init-param><param-name>allow</param-name><param-value>127.0.0.1</param-value>"
              "</init-param></filter>\n<filter-mapping><filter-name>r</filter-name><url-pattern>/html/*</url-pattern>"
              "</filter-mapping>\n<filter><filter-name>csrf</filter-name><filter-class>org.apache.catalina.filters."
              "CsrfPreventionFilter</filter-class></filter>\n<filter-mapping><filter-name>csrf</filter-name>"
              "<servlet-name>HTMLManager</servlet-name></filter-mapping>\n")
    policy = _policy(_manager(tmp_path, web_xml=_web_xml(extra=remote)))
    answer = policy.access("/manager/html")
    assert answer.reach is Reach.RESTRICTED and 'RemoteCIDRFilter allow="127.0.0.1"' in answer.how
    assert policy.access("/manager/status").reach is Reach.OPEN


def test_uris_map_to_contexts_as_tomcat_maps_them(tmp_path: Path) -> None:
    root = _manager(tmp_path, web_xml=_web_xml(_constraint("/html/*")))
    policy = _policy(root)
    assert policy.access("/manager").reach is Reach.DENIED and "302" in policy.access("/manager").how
    apps = [policy.app(u) for u in ("/", "/x", "/foo/bar/x", "/foo/x", "/manager/", "/managerx/")]
    assert [a.path if a else None for a in apps] == ["", "", "/foo/bar", "", "/manager", ""]
    for uri in ("/manager/./html", "/manager//html", "/manager/%68tml", "/manager;jsessionid=1/html;x",
                "/shop/../manager/html", "/manager/html?x=1"):
        assert policy.access(uri).reach is Reach.RESTRICTED, uri
    for uri in ("/manager/%2e%2e/%2e%2e/x", "/manager%2fhtml", "/manager\\html", "/%zz", "manager/html"):
        assert policy.access(uri).reach is Reach.DENIED and "400" in policy.access(uri).how, uri
    intranet = _policy(root, 1)     # a Host that deploys nothing: 404 everywhere
    assert intranet.access("/wiki/").reach is Reach.DENIED and "404" in intranet.access("/wiki/").how
    assert policy.runs_php("/x.php") is False


def test_tomcat_writes_ipv6_addresses_uncompressed() -> None:
    assert tomcat_address(ipaddress.ip_address("::1")) == "0:0:0:0:0:0:0:1"
    assert tomcat_address(ipaddress.ip_address("2001:db8::a:0")) == "2001:db8:0:0:0:0:a:0"
    assert tomcat_address(ipaddress.ip_address("192.0.2.7")) == "192.0.2.7"


@pytest.mark.parametrize(("where", "text", "message"), [
    ("web", "<web-app>\n<security-constraint>\n</web-app>\n", "WEB-INF/web.xml:3: not well-formed XML"),
    ("web", '<?xml version="1.0"?>\n<!DOCTYPE web-app [<!ENTITY x "y">]>\n<web-app/>\n',
     "WEB-INF/web.xml:2: a DOCTYPE declaration is not accepted"),
    ("web", "<beans/>\n", "the root element is <beans>, not <web-app>"),
    ("web", _web_xml(_constraint("/html*")), 'url-pattern "/html*" is not valid'),
    ("meta", '<?xml version="1.0"?>\n<!DOCTYPE Context [\n<!ENTITY x SYSTEM "file:///etc/passwd">\n]>\n'
             "<Context>&x;</Context>\n", "META-INF/context.xml:2: a DOCTYPE declaration is not accepted"),
    ("conf", "<Context>\n<Valve\n", "/etc/tomcat10/context.xml:2: not well-formed XML"),
])
def test_broken_or_hostile_files_make_the_answer_unknown_with_the_reason(tmp_path: Path, where: str, text: str,
                                                                         message: str) -> None:
    root = _tree(tmp_path)
    app = root / "var/lib/tomcat10/webapps/shop"
    target = {"web": app / "WEB-INF/web.xml", "meta": app / "META-INF/context.xml",
              "conf": root / "etc/tomcat10/context.xml"}[where]
    _write(target, text)
    answer = _policy(root).access("/shop/index.jsp")
    assert answer.reach is Reach.UNKNOWN
    assert message in answer.how and "\n" not in answer.how
    assert _policy(root).access("/foo/bar/").reach is (Reach.UNKNOWN if where == "conf" else Reach.OPEN)


# -- the url-pattern matcher, by property --------------------------------------------------------------

SEGMENTS = st.sampled_from(["a", "b", "html", "x.jsp", "y.secret", "z.", ".jsp", "a.b.c", "WEB-INF", ""])
PATHS = st.lists(SEGMENTS, min_size=0, max_size=4).map(lambda parts: "/" + "/".join(parts))
PATTERNS = st.one_of(
    PATHS,
    PATHS.map(lambda p: p.rstrip("/") + "/*"),
    st.sampled_from(["*.jsp", "*.secret", "*.b.c", "*.c", "/", "", "/*"]),
)


@settings(max_examples=400, deadline=None)
@given(PATTERNS, PATHS)
def test_pattern_matching_follows_the_servlet_rules(pattern: str, path: str) -> None:
    matched = pattern_matches(pattern, path)
    if pattern in ("/", "/*"):
        assert matched
    elif pattern.endswith("/*"):
        base = pattern[:-2]
        assert matched == (path == base or path.startswith(base + "/"))
    elif pattern.startswith("*."):
        # the extension is what follows the last dot of the last segment: "*.b.c" never matches
        extension = pattern[2:]
        assert matched == ("." not in extension and path.rsplit("/", 1)[-1].endswith("." + extension))
    elif pattern == "":
        assert matched == (path == "/")
    else:
        assert matched == (pattern == path)


def _best(constraints: list[SecurityConstraint], path: str) -> set[int]:
    """An independent statement of the best-match rule (for collections without method lists): the kind of
    the best matching pattern ranks exact > longest prefix > extension > default; all constraints holding a
    pattern of that best rank apply."""
    def rank(pattern: str) -> tuple[int, int] | None:
        if not pattern_matches(pattern, path):
            return None
        if pattern == path or (pattern == "" and path == "/"):
            return (4, 0)
        if pattern.endswith("/*"):
            return (3, len(pattern))
        if pattern.startswith("*."):
            return (2, 0)
        if pattern == "/":
            return (1, 0)
        return None
    ranks = {i: max((r for coll in c.collections for p in coll.patterns if (r := rank(p)) is not None),
                    default=None) for i, c in enumerate(constraints)}
    top = max((r for r in ranks.values() if r is not None), default=None)
    return {i for i, r in ranks.items() if r is not None and r == top} if top else set()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(PATTERNS, min_size=1, max_size=3), min_size=1, max_size=4), PATHS)
def test_applicable_constraints_are_those_of_the_best_pattern(patterns: list[list[str]], path: str) -> None:
    constraints = [SecurityConstraint((ResourceCollection(tuple(p)),), ("r",), Where("web.xml", i))
                   for i, p in enumerate(patterns)]
    found = applicable_constraints(constraints, path, "GET")
    assert {c.where.line for c in found} == _best(constraints, path)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="/.;%2fFeE5cC0a?\\x", max_size=30))
def test_request_normalization_gives_a_clean_path_or_a_400(uri: str) -> None:
    try:
        path = normalize_request(uri)
    except ValueError:
        return
    assert path.startswith("/") and "//" not in path
    assert all(part not in (".", "..") for part in path.split("/"))


WEB_PIECES = st.sampled_from([
    "<web-app>", "</web-app>", "<security-constraint>", "</security-constraint>", "<web-resource-collection>",
    "</web-resource-collection>", "<url-pattern>/a/*</url-pattern>", "<url-pattern>*.jsp</url-pattern>",
    "<url-pattern>/</url-pattern>", "<url-pattern>a*b</url-pattern>", "<http-method>GET</http-method>",
    "<http-method-omission>POST</http-method-omission>", "<auth-constraint>", "</auth-constraint>",
    "<auth-constraint/>", "<role-name>r</role-name>", "<login-config><auth-method>FORM</auth-method></login-config>",
    "<login-config><auth-method>MAGIC</auth-method></login-config>", "<deny-uncovered-http-methods/>",
    "<filter><filter-name>f</filter-name><filter-class>org.apache.catalina.filters.RemoteAddrFilter</filter-class>",
    "<init-param><param-name>allow</param-name><param-value>(</param-value></init-param>", "</filter>",
    "<filter-mapping><filter-name>f</filter-name><url-pattern>/a/*</url-pattern></filter-mapping>",
    "<!DOCTYPE x>", "&e;", "<", ">", "\n", "\x00", "\u00e9"])
CONTEXT_PIECES = st.sampled_from([
    "<Context>", "</Context>", '<Context override="true">', '<Context preemptiveAuthentication="true">',
    '<Valve className="org.apache.catalina.valves.RemoteCIDRValve" allow="127.0.0.1, ::1"/>',
    '<Valve className="org.apache.catalina.valves.RemoteCIDRValve" deny="x/99"/>',
    '<Valve className="org.apache.catalina.valves.RemoteAddrValve" allow="[" invalidAuthenticationWhenDeny="true"/>',
    '<Valve className="org.apache.catalina.valves.RemoteIpValve"/>', '<Valve className="x.Y"/>', "<Valve/>",
    "<!ENTITY e 'x'>", "\n", "<"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(WEB_PIECES, max_size=25).map("".join), st.lists(CONTEXT_PIECES, max_size=8).map("".join),
       st.sampled_from(["/shop/", "/shop/a/x.jsp", "/shop/a", "/shop/WEB-INF/x", "/shop/%zz", "/", "/manager/html"]))
def test_garbage_descriptors_give_an_answer_never_a_traceback(tmp_path: Path, web: str, context: str,
                                                              uri: str) -> None:
    root = tmp_path / "g"
    shutil.rmtree(root, ignore_errors=True)
    root = _tree(root)
    app = root / "var/lib/tomcat10/webapps/shop"
    _write(app / "WEB-INF/web.xml", web)
    _write(app / "META-INF/context.xml", context)
    _write(root / "etc/tomcat10/context.xml", context)
    answer = _policy(root).access(uri)
    assert answer.reach in tuple(Reach) and answer.how and "\n" not in answer.how
