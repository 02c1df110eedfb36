"""The Tomcat reader against the real Tomcat 10: what ``access()`` answers is what Tomcat does.

One Tomcat (``catalina.sh run`` from this machine's tomcat10 package) runs for the whole module with a private
``CATALINA_BASE`` in a temporary directory, listening on 127.0.0.1 and ::1 only (never the system service,
never /etc/tomcat10). It deploys the real manager application of tomcat10-admin the way Debian does (a
context file in ``conf/Catalina/localhost/`` pointing at /usr/share/tomcat10-admin/manager), and small
applications written here that exercise valves (server.xml, context files, an application's own
``META-INF/context.xml``) and ``web.xml`` security constraints. Every URI of the table is asked from
127.0.0.1, 127.0.0.2 and ::1 (the client socket bound to that address); the statuses Tomcat returns must be
the table's, and hostguard's reach the table's.

How statuses and a reach go together (the table states both; this is the reading):

* 200 from every source, or 200 from most and 403 from a source a deny list names -> OPEN (anyone else
  gets in too)
* 401 (a login is asked), or 200 only from the sources an allow list names -> RESTRICTED
* 403/404 from every source, or a redirect (302) -> DENIED
* UNKNOWN is answered where the outcome depends on something hostguard does not evaluate; the table then
  shows Tomcat's different answers (a GET-only constraint: GET asks a login, POST gets in).
"""

from __future__ import annotations

import http.client
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

from hostguard.host.base import LiveHost
from hostguard.host.web.model import Reach
from hostguard.host.web.tomcat import TomcatPolicy, collect_tomcat, read_tomcat

HOME = Path("/usr/share/tomcat10")
MANAGER = Path("/usr/share/tomcat10-admin/manager")
SOURCES = ("127.0.0.1", "127.0.0.2", "::1")

SERVER_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<!-- written for hostguard's tests -->
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{port}" address="127.0.0.1" protocol="HTTP/1.1" />
    <Connector port="{port6}" address="::1" protocol="HTTP/1.1" />
    <Engine name="Catalina" defaultHost="localhost">
      <Realm className="org.apache.catalina.realm.MemoryRealm" pathname="conf/tomcat-users.xml" />
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false">
        <Context path="/static" docBase="{d}/static">
          <Valve className="org.apache.catalina.valves.RemoteCIDRValve" deny="127.0.0.2" />
        </Context>
      </Host>
      <Host name="strict.test" appBase="strictapps" unpackWARs="false" autoDeploy="false" deployXML="false">
        <Valve className="org.apache.catalina.valves.RemoteAddrValve" allow="127\\.0\\.0\\.2|0:0:0:0:0:0:0:1" />
      </Host>
    </Engine>
  </Service>
</Server>
"""

# the Debian way: tomcat10-admin's conf/Catalina/localhost/manager.xml (no valve of its own)
MANAGER_XML = '<?xml version="1.0"?>\n<Context docBase="{manager}" antiResourceLocking="false" privileged="true" />\n'


def _cidr(allow: str = "", deny: str = "") -> str:
    attrs = (f' allow="{allow}"' if allow else "") + (f' deny="{deny}"' if deny else "")
    return f'<Context>\n  <Valve className="org.apache.catalina.valves.RemoteCIDRValve"{attrs} />\n</Context>\n'


def _regex(allow: str) -> str:
    return f'<Context>\n  <Valve className="org.apache.catalina.valves.RemoteAddrValve" allow="{allow}" />\n</Context>\n'


def _collection(pattern: str, *methods: str, omit: bool = False) -> str:
    tag = "http-method-omission" if omit else "http-method"
    listed = "".join(f"<{tag}>{m}</{tag}>" for m in methods)
    return f"<web-resource-collection><web-resource-name>c</web-resource-name><url-pattern>{pattern}</url-pattern>" \
           f"{listed}</web-resource-collection>"


def _constraint(*collections: str, roles: tuple[str, ...] | None = ("boss",)) -> str:
    auth = "" if roles is None else "<auth-constraint>" + "".join(f"<role-name>{r}</role-name>" for r in roles) + \
        "</auth-constraint>"
    return f"  <security-constraint>{''.join(collections)}{auth}</security-constraint>\n"


def _web_xml(*constraints: str, login: bool = True) -> str:
    body = "".join(constraints)
    if login:
        body += "  <login-config><auth-method>BASIC</auth-method><realm-name>shop</realm-name></login-config>\n"
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" '
            'version="6.0">\n' + body + "  <security-role><role-name>boss</role-name></security-role>\n</web-app>\n")


SHOP_WEB_XML = _web_xml(
    _constraint(_collection("/admin/*")),
    _constraint(_collection("/admin/open.html"), roles=None),          # exact beats the /admin/* prefix
    _constraint(_collection("/closed/*"), roles=()),                    # empty auth-constraint: nobody
    _constraint(_collection("/getonly/*", "GET")),                      # POST, HEAD... are not covered
    _constraint(_collection("/both/*", "GET"), _collection("/both/*", "GET", omit=True)),   # every method
    _constraint(_collection("*.secret")),
    _constraint(_collection("/public/*")),
    _constraint(_collection("/public/*"), roles=None),                  # no auth-constraint lets anyone in
)
# A collection holding a long and a short /x/* pattern competes with its longest one: for /q/x both constraints
# hold /q/*, and the refusal wins over the login
QUIRK_WEB_XML = _web_xml(
    _constraint("<web-resource-collection><web-resource-name>q</web-resource-name><url-pattern>/q/*"
                "</url-pattern><url-pattern>/*</url-pattern></web-resource-collection>", roles=()),
    _constraint(_collection("/q/*")),
)

# Tomcat's address filter in an application's web.xml, mapped to /f/*
FILTER_WEB_XML = _web_xml(
    "  <filter><filter-name>only2</filter-name><filter-class>org.apache.catalina.filters.RemoteCIDRFilter"
    "</filter-class><init-param><param-name>allow</param-name><param-value>127.0.0.2</param-value></init-param>"
    "</filter>\n  <filter-mapping><filter-name>only2</filter-name><url-pattern>/f/*</url-pattern></filter-mapping>\n")

# app name -> (META-INF/context.xml or None, WEB-INF/web.xml or None, files)
APPS: dict[str, tuple[str | None, str | None, tuple[str, ...]]] = {
    "ROOT": (None, None, ("index.html",)),
    "shop": (None, SHOP_WEB_XML, ("index.html", "admin/index.html", "admin/open.html", "closed/x.html",
                                  "getonly/x.html", "both/x.html", "a.secret", "public/x.html", "x.php")),
    "quirk": (None, QUIRK_WEB_XML, ("index.html", "q/x.html")),
    "filtered": (None, FILTER_WEB_XML, ("index.html", "f/x.html")),
    "nologin": (None, _web_xml(_constraint(_collection("/*")), login=False), ("index.html",)),
    "guarded": (_cidr(allow="127.0.0.2/32, ::1/128"), None, ("index.html",)),
    "v4only": (_cidr(allow="127.0.0.0/8"), None, ("index.html",)),
    "regex": (_regex(r"127\.0\.0\.2|::1"), None, ("index.html",)),
    "regex6": (_regex(r"127\.0\.0\.2|0:0:0:0:0:0:0:1"), None, ("index.html",)),
    "nobody": (_cidr(), None, ("index.html",)),
    "shop#deep": (None, None, ("index.html",)),
}

# URI -> (what hostguard must answer, Tomcat's status from 127.0.0.1, 127.0.0.2, ::1)
TABLE: dict[str, tuple[Reach, tuple[int, int, int]]] = {
    "/index.html": (Reach.OPEN, (200, 200, 200)),
    "/shop/index.html": (Reach.OPEN, (200, 200, 200)),
    "/shop/admin/index.html": (Reach.RESTRICTED, (401, 401, 401)),
    "/shop/admin/open.html": (Reach.OPEN, (200, 200, 200)),
    "/shop/admin/": (Reach.RESTRICTED, (401, 401, 401)),
    "/shop/closed/x.html": (Reach.DENIED, (403, 403, 403)),
    "/shop/getonly/x.html": (Reach.UNKNOWN, (401, 401, 401)),   # GET asks a login; see the POST test
    "/shop/both/x.html": (Reach.RESTRICTED, (401, 401, 401)),
    "/shop/a.secret": (Reach.RESTRICTED, (401, 401, 401)),
    "/shop/public/x.html": (Reach.OPEN, (200, 200, 200)),
    "/quirk/q/x.html": (Reach.DENIED, (403, 403, 403)),
    "/quirk/index.html": (Reach.DENIED, (403, 403, 403)),
    "/filtered/f/x.html": (Reach.RESTRICTED, (403, 200, 403)),
    "/filtered/index.html": (Reach.OPEN, (200, 200, 200)),
    "/shop/x.php": (Reach.OPEN, (200, 200, 200)),                # sent as text: Tomcat runs no PHP
    "/shop/WEB-INF/web.xml": (Reach.DENIED, (404, 404, 404)),
    "/shop/web-inf/web.xml": (Reach.DENIED, (404, 404, 404)),
    "/shop/./admin//index.html": (Reach.RESTRICTED, (401, 401, 401)),
    "/shop/%61dmin/index.html": (Reach.RESTRICTED, (401, 401, 401)),
    "/shop;x=1/admin;y=2/index.html": (Reach.RESTRICTED, (401, 401, 401)),
    "/shop/deep/index.html": (Reach.OPEN, (200, 200, 200)),      # shop#deep: the longest context path wins
    "/shop": (Reach.DENIED, (302, 302, 302)),
    "/nologin/index.html": (Reach.DENIED, (403, 403, 403)),      # a role but no login-config
    "/guarded/index.html": (Reach.RESTRICTED, (403, 200, 200)),  # META-INF/context.xml of an appBase app
    "/v4only/index.html": (Reach.RESTRICTED, (200, 200, 403)),   # IPv4 networks do not match ::1
    "/regex/index.html": (Reach.RESTRICTED, (403, 200, 403)),    # Tomcat writes ::1 as 0:0:0:0:0:0:0:1
    "/regex6/index.html": (Reach.RESTRICTED, (403, 200, 200)),
    "/nobody/index.html": (Reach.DENIED, (403, 403, 403)),       # a valve with neither allow nor deny
    "/static/x.html": (Reach.OPEN, (200, 403, 200)),             # deny-only: everyone else gets in
    "/described/index.html": (Reach.OPEN, (200, 200, 200)),      # a context file: META-INF/context.xml unread
    "/manager/html": (Reach.RESTRICTED, (401, 401, 401)),
    "/manager/status": (Reach.RESTRICTED, (401, 401, 401)),
    "/manager/text/list": (Reach.RESTRICTED, (401, 401, 401)),
    "/manager/images/tomcat.svg": (Reach.OPEN, (200, 200, 200)),
    "/manager/WEB-INF/web.xml": (Reach.DENIED, (404, 404, 404)),
    "/%2e%2e/etc/passwd": (Reach.DENIED, (400, 400, 400)),
    "/shop/a%2fb": (Reach.DENIED, (400, 400, 400)),
}

# On strict.test (deployXML="false") an application with its own META-INF/context.xml is not deployed.
# Its Host valve lets only 127.0.0.2 and ::1 through.
STRICT = {"/held/index.html": (Reach.DENIED, (403, 404, 404)),    # the Host valve answers first
          "/plain/index.html": (Reach.RESTRICTED, (403, 200, 200))}


def _free_port(family: socket.AddressFamily, address: str) -> int:
    with socket.socket(family) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _write_base(d: Path, port: int, port6: int) -> None:
    base = d / "base"
    for sub in ("logs", "temp", "work", "strictapps"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    _write(base / "conf/server.xml", SERVER_XML.format(port=port, port6=port6, d=d))
    shutil.copy("/etc/tomcat10/web.xml", base / "conf/web.xml")   # the installed default (servlets, MIME types)
    _write(base / "conf/tomcat-users.xml", "<tomcat-users/>\n")
    _write(base / "conf/Catalina/localhost/manager.xml", MANAGER_XML.format(manager=MANAGER))
    _write(base / "conf/Catalina/localhost/described.xml", f'<Context docBase="{d}/described" />\n')
    for name, (context, web_xml, files) in APPS.items():
        app = base / "webapps" / name
        for rel in files:
            _write(app / rel, f"file {name}/{rel}\n")
        if context is not None:
            _write(app / "META-INF/context.xml", context)
        if web_xml is not None:
            _write(app / "WEB-INF/web.xml", web_xml)
    _write(d / "static/x.html", "static\n")
    # outside the appBase, deployed by a context file: its own META-INF/context.xml is not read
    _write(d / "described/index.html", "described\n")
    _write(d / "described/META-INF/context.xml", _cidr(allow="192.0.2.1"))
    _write(base / "strictapps/held/index.html", "held\n")
    _write(base / "strictapps/held/META-INF/context.xml", "<Context />\n")
    _write(base / "strictapps/plain/index.html", "plain\n")


@dataclass
class Running:
    """A started Tomcat: its ports and our reading of its configuration."""

    base: Path
    port: int
    port6: int
    policies: dict[str, TomcatPolicy]

    def get(self, uri: str, source: str, host: str = "localhost", method: str = "GET") -> int:
        """The status Tomcat answers ``source`` for ``method uri``."""
        target, port = ("::1", self.port6) if ":" in source else ("127.0.0.1", self.port)
        conn = http.client.HTTPConnection(target, port, timeout=10, source_address=(source, 0))
        try:
            conn.putrequest(method, uri, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host)
            conn.putheader("Content-Length", "0")
            conn.endheaders()
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    catalina = HOME / "bin/catalina.sh"
    if not catalina.exists() or shutil.which("java") is None or not MANAGER.is_dir():
        pytest.skip(reason="tomcat10 and tomcat10-admin are not installed (Debian packages tomcat10, tomcat10-admin)")
    d = Path(tempfile.mkdtemp(prefix="hg-tomcat-", dir="/tmp"))
    os.chmod(d, 0o755)
    port, port6 = _free_port(socket.AF_INET, "127.0.0.1"), _free_port(socket.AF_INET6, "::1")
    proc: subprocess.Popen[bytes] | None = None
    try:
        _write_base(d, port, port6)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CATALINA_HOME": str(HOME),
               "CATALINA_BASE": str(d / "base"), "CATALINA_TMPDIR": str(d / "base/temp"),
               "CATALINA_PID": str(d / "tomcat.pid")}
        with open(d / "stdout.log", "wb") as out:
            proc = subprocess.Popen(["/bin/sh", str(catalina), "run"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while True:
            log = (d / "stdout.log").read_text(errors="replace")
            if "Server startup in" in log:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Tomcat did not start: {log[-3000:]}")
            time.sleep(0.2)
        server = collect_tomcat_at(d / "base")
        yield Running(d / "base", port, port6, server)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(d, ignore_errors=True)


def collect_tomcat_at(base: Path) -> dict[str, TomcatPolicy]:
    """Our reading of the private CATALINA_BASE through LiveHost, one policy per Host name."""
    policies = {}
    for site in read_tomcat(LiveHost(), str(base)).sites:
        assert isinstance(site.policy, TomcatPolicy)
        policies[site.names[0]] = site.policy
    return policies


def _check(running: Running, uri: str, expected: tuple[Reach, tuple[int, int, int]], host: str) -> None:
    reach, statuses = expected
    seen = tuple(running.get(uri, source, host) for source in SOURCES)
    answer = running.policies[host].access(uri)
    assert seen == statuses, f"the table is wrong about Tomcat for {uri}: {dict(zip(SOURCES, seen, strict=True))}"
    assert answer.reach is reach, f"{uri}: Tomcat {seen}, hostguard {answer}"


@pytest.mark.parametrize("uri", list(TABLE))
def test_access_agrees_with_tomcat(running: Running, uri: str) -> None:
    _check(running, uri, TABLE[uri], "localhost")


@pytest.mark.parametrize("uri", list(STRICT))
def test_deploy_xml_false_refuses_an_application_with_its_own_context_file(running: Running, uri: str) -> None:
    _check(running, uri, STRICT[uri], "strict.test")


def test_a_get_only_constraint_leaves_other_methods_open(running: Running) -> None:
    """Why the GET-only constraint is "unknown": Tomcat asks a login for GET, lets POST and HEAD through to the
    application; where every method is covered (/both/), nothing gets through without a login."""
    assert running.get("/shop/getonly/x.html", "127.0.0.1", method="GET") == 401
    assert running.get("/shop/getonly/x.html", "127.0.0.1", method="HEAD") == 200
    assert running.get("/shop/getonly/x.html", "127.0.0.1", method="POST") != 401
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE"):
        assert running.get("/shop/both/x.html", "127.0.0.1", method=method) == 401, method
    answer = running.policies["localhost"].access("/shop/getonly/x.html")
    assert "depend on the HTTP method" in answer.how and "GET: restricted" in answer.how


def test_answers_name_the_deciding_lines(running: Running) -> None:
    policy = running.policies["localhost"]
    manager = policy.access("/manager/html")
    assert "manager-gui" in manager.how and "BASIC" in manager.how
    assert [str(w).rsplit(":", 1)[0] for w in manager.where] == [str(MANAGER / "WEB-INF/web.xml")] * 2
    guarded = policy.access("/guarded/index.html")
    assert 'RemoteCIDRValve allow="127.0.0.2/32, ::1/128"' in guarded.how
    assert [str(w) for w in guarded.where] == [f"{running.base}/webapps/guarded/META-INF/context.xml:2"]
    static = policy.access("/static/x.html")
    assert static.where[0].path == f"{running.base}/conf/server.xml"
    assert all(policy.runs_php(u) is False for u in ("/shop/x.php", "/x.php"))


def test_debian_manager_is_open_to_any_address_with_a_password(running: Running) -> None:
    """Debian's manager.xml defines the manager's context, so the loopback-only valve in the application's own
    META-INF/context.xml is never read (the /described/ case shows the rule on a fixture): from any address
    a password is all that stands in the way, which hostguard reports as "restricted" by a login."""
    answer = running.policies["localhost"].access("/manager/html")
    assert answer.reach is Reach.RESTRICTED and "RemoteCIDRValve" not in answer.how
    live = collect_tomcat(LiveHost())
    if live is not None and (Path("/etc/tomcat10/Catalina/localhost/manager.xml")).exists():
        site = live.sites[0]
        assert site.policy is not None
        assert site.policy.access("/manager/html").reach is Reach.RESTRICTED
