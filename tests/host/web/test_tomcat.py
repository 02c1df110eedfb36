"""Tomcat's sites, roots and user from its configuration: fixture trees written here, this machine's
installed tomcat10 through LiveHost, Tomcat's own ``configtest`` on the fixture, and garbage."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostguard.host.base import HostError, LiveHost, RootHost
from hostguard.host.web.model import DocRoot, RunAs, Where
from hostguard.host.web.tomcat import collect_tomcat, context_url, parse_xml

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
