"""Tomcat as a web server fact: its hosts, the directories it deploys and serves, and the user it runs as.

Tomcat serves what it deploys: every ``<Host appBase=...>`` directory (a war or a directory dropped there is
deployed while ``autoDeploy`` is on, so a writable appBase is code execution), each ``<Context docBase=...>``
of server.xml, each context file in ``conf/<Engine>/<Host>/`` (Debian's tomcat10-admin puts the manager
and host-manager there, with their docBase outside the appBase), and each application directory under the
appBase. So a :class:`Site` per Host has as roots the appBase itself at ``/`` first, then one
:class:`DocRoot` per deployed context at its URL (``ROOT`` at ``/``, ``foo#bar`` at ``/foo/bar/``) — an
application under the appBase appears twice (within the appBase, and as its own context), because the
first says where deployment happens and the second at which URL its files are served.

The user comes from the systemd unit (Debian 11/12 and RHEL run Tomcat from ``tomcat9``/``tomcat10``/
``tomcat.service`` with ``User=tomcat``; ``/etc/default/tomcat*`` no longer names the user), drop-ins
included; a unit without ``User=`` runs Tomcat as root, and says so. ``CATALINA_BASE`` comes from the
unit's ``Environment=`` lines, else the package's default.

XML is read with expat directly (``defusedxml`` is not a dependency): a DOCTYPE or entity declaration is
refused with a :class:`HostError`, since a Tomcat config needs neither and one that has them is hostile
(entity expansion) or too exotic to read with confidence; expat gives the line of every element.
``${property}`` references (catalina.properties, -D options) are not substituted: a value using one is
kept as written, with a note.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from xml.parsers import expat

from hostguard.engine.facts import Fact
from hostguard.host.base import FileMissing, Host, HostError
from hostguard.host.web.model import DocRoot, RunAs, Site, WebServer, Where

# (unit name, the package's CATALINA_BASE, its conf directory when no unit is found) — newest first
INSTALLS = (("tomcat10", "/var/lib/tomcat10"), ("tomcat9", "/var/lib/tomcat9"), ("tomcat", "/usr/share/tomcat"))
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system",
             "/usr/lib/systemd/system")
_TRUE = frozenset({"true", "yes", "on"})


# -- XML -----------------------------------------------------------------------------------------------


@dataclass
class XmlElement:
    """One element: its tag, attributes, the line its start tag is on, its children and its own text."""

    tag: str
    attrs: dict[str, str]
    line: int
    children: list[XmlElement] = field(default_factory=list)
    text: str = ""

    def find_all(self, tag: str) -> list[XmlElement]:
        """The direct children with ``tag``."""
        return [c for c in self.children if c.tag == tag]


class _Refused(Exception):
    def __init__(self, what: str, line: int) -> None:
        super().__init__(what)
        self.what = what
        self.line = line


def parse_xml(data: bytes, path: str) -> XmlElement:
    """The element tree of an XML file; :class:`HostError` (``path:line: what``) when it is not well-formed
    or declares a DOCTYPE or entities."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[XmlElement] = []
    top: list[XmlElement] = []

    def refuse_doctype(*_args: object) -> None:
        raise _Refused("a DOCTYPE declaration", parser.CurrentLineNumber)

    def refuse_entity(*_args: object) -> None:
        raise _Refused("an ENTITY declaration", parser.CurrentLineNumber)

    def start(tag: str, attrs: dict[str, str]) -> None:
        element = XmlElement(tag, attrs, parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(element)
        else:
            top.append(element)
        stack.append(element)

    def end(_tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text += data

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_entity
    parser.UnparsedEntityDeclHandler = refuse_entity
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise HostError(f"{path}:{exc.lineno}: not well-formed XML ({expat.ErrorString(exc.code)})") from None
    except _Refused as exc:
        raise HostError(f"{path}:{exc.line}: {exc.what} is not accepted in a Tomcat configuration "
                        f"(entities are a way to attack an XML reader; Tomcat needs none)") from None
    if not top:
        raise HostError(f"{path}: no root element")
    return top[0]


# -- systemd unit --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    path: str
    user: tuple[str, Where] | None
    group: tuple[str, Where] | None
    env: dict[str, tuple[str, Where]]


def _unit_files(host: Host, name: str) -> list[str]:
    """The unit file systemd would load for ``name.service``, then its drop-ins in the order applied."""
    main = next((f"{d}/{name}.service" for d in UNIT_DIRS if f"{name}.service" in host.listdir(d)), None)
    if main is None:
        return []
    dropins: dict[str, str] = {}
    for directory in UNIT_DIRS:
        for entry in host.listdir(f"{directory}/{name}.service.d"):
            if entry.endswith(".conf"):
                dropins.setdefault(entry, f"{directory}/{name}.service.d/{entry}")
    return [main, *(dropins[n] for n in sorted(dropins))]


def _read_unit(host: Host, name: str) -> _Unit | None:
    """``User=``, ``Group=`` and ``Environment=`` of a service's [Service] section (drop-ins applied);
    None when no unit exists or it is masked (linked to /dev/null, which a tree may not even hold: a link
    leading nowhere cannot be loaded either)."""
    files = _unit_files(host, name)
    if not files or not host.exists(files[0]) or not host.stat(files[0]).is_file:
        return None
    user: tuple[str, Where] | None = None
    group: tuple[str, Where] | None = None
    env: dict[str, tuple[str, Where]] = {}
    for path in files:
        section = ""
        for number, line in enumerate(host.read_text(path).splitlines(), 1):
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            key, eq, value = line.partition("=")
            if not eq or section != "[Service]":
                continue
            key, value = key.strip(), value.strip()
            where = Where(path, number)
            if key == "User":
                user = (value, where) if value else None
            elif key == "Group":
                group = (value, where) if value else None
            elif key == "Environment":
                try:
                    words = shlex.split(value)
                except ValueError:
                    words = value.split()
                for word in words:
                    var, has, val = word.partition("=")
                    if has:
                        env[var] = (val, where)
    return _Unit(files[0], user, group, env)


# -- server.xml ----------------------------------------------------------------------------------------


def _host_path(host: Host, path: str) -> str:
    """The host path a path leads to (symlinks resolved inside the root): Debian's
    /var/lib/tomcat10/conf/server.xml is /etc/tomcat10/server.xml."""
    try:
        real = host.resolve(path)
    except HostError:
        return path
    rel = os.path.relpath(real, host.root)
    return "/" if rel == "." else "/" + rel


def _absolute(path: str, base: str) -> str:
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(base, path))


def context_url(name: str) -> str:
    """The URL a Tomcat context name is served at: ``ROOT`` at ``/``, ``foo#bar##v2`` at ``/foo/bar/``."""
    name = name.split("##", 1)[0]
    if name in ("", "ROOT"):
        return "/"
    return "/" + name.replace("#", "/").strip("/") + "/"


def _listens(service: XmlElement) -> tuple[str, ...]:
    out = []
    for conn in service.find_all("Connector"):
        port = conn.attrs.get("port", "")
        address = conn.attrs.get("address", "")
        listen = (f"[{address}]:{port}" if ":" in address else f"{address}:{port}") if address else port
        protocol = conn.attrs.get("protocol", "")
        if protocol.upper().startswith("AJP") or "ajp" in protocol.lower():
            listen += " ajp"
        if conn.attrs.get("SSLEnabled", "").lower() in _TRUE or conn.find_all("SSLHostConfig"):
            listen += " ssl"
        out.append(listen)
    return tuple(out)


def _flag(attrs: dict[str, str], name: str, default: bool) -> bool:
    value = attrs.get(name)
    return default if value is None else value.strip().lower() in _TRUE


class _Reader:
    """One Tomcat install read from its CATALINA_BASE."""

    def __init__(self, host: Host, base: str) -> None:
        self.host = host
        self.base = base
        self.notes: list[str] = []

    def attr(self, element: XmlElement, name: str, where: Where, default: str = "") -> str:
        value = element.attrs.get(name, default)
        if "${" in value:
            self.notes.append(f"{where}: {name}=\"{value}\" uses a property hostguard does not substitute")
        return value

    def context_roots(self, engine: str, xml_host: XmlElement, app_base: str, config: str) -> list[DocRoot]:
        """Every context the Host deploys: server.xml's, the context files', the appBase's applications."""
        roots: dict[str, DocRoot] = {}
        for ctx in xml_host.find_all("Context"):
            where = Where(config, ctx.line)
            url = context_url(self.attr(ctx, "path", where).strip("/").replace("/", "#"))
            doc = self.attr(ctx, "docBase", where)
            if doc:
                roots[url] = DocRoot(url, _absolute(doc, app_base), where)
        name = xml_host.attrs.get("name", "localhost")
        xml_base = _absolute(xml_host.attrs.get("xmlBase", f"conf/{engine}/{name}"), self.base)
        for entry in self.host.listdir(xml_base):
            if not entry.endswith(".xml"):
                continue
            path = f"{xml_base}/{entry}"
            shown = _host_path(self.host, path)
            try:
                ctx = parse_xml(self.host.read_bytes(path), shown)
            except HostError as exc:    # Tomcat skips a broken context file and deploys the rest
                self.notes.append(f"{exc} (Tomcat skips this context)")
                continue
            if ctx.tag != "Context":
                self.notes.append(f"{shown}:{ctx.line}: <{ctx.tag}> is not a <Context>")
                continue
            url = context_url(entry[:-4])
            where = Where(shown, ctx.line)
            doc = self.attr(ctx, "docBase", where) or entry[:-4]
            roots.setdefault(url, DocRoot(url, _absolute(doc, app_base), where))
        if _flag(xml_host.attrs, "deployOnStartup", True) or _flag(xml_host.attrs, "autoDeploy", True):
            ignore = xml_host.attrs.get("deployIgnore")
            try:
                skip = re.compile(ignore) if ignore else None
            except re.error:
                self.notes.append(f"{config}:{xml_host.line}: deployIgnore=\"{ignore}\" not understood; ignored")
                skip = None
            shown_base = _host_path(self.host, app_base)
            for entry in self.host.listdir(app_base):
                path = f"{app_base}/{entry}"
                if entry in ("META-INF", "WEB-INF") or (skip and skip.fullmatch(entry)):
                    continue
                stem = entry[:-4] if entry.endswith(".war") else entry
                url = context_url(stem)
                if url in roots:
                    continue
                if self.host.exists(f"{app_base}/{stem}") and self.host.stat(f"{app_base}/{stem}").is_dir:
                    roots[url] = DocRoot(url, f"{app_base}/{stem}", Where(f"{shown_base}/{stem}"))
                elif entry.endswith(".war") and self.host.stat(path).is_file:
                    self.notes.append(f"{shown_base}/{entry}: not unpacked, its files are not on disk")
        return sorted(roots.values(), key=lambda r: r.url)

    def read(self, run_as: tuple[RunAs, ...], settings: list[tuple[str, str, Where]]) -> WebServer:
        """The WebServer of ``$CATALINA_BASE/conf/server.xml``."""
        path = f"{self.base}/conf/server.xml"
        config = _host_path(self.host, path)
        try:
            data = self.host.read_bytes(path)
        except FileMissing as exc:
            raise HostError(f"{config}: no such file (CATALINA_BASE {self.base})") from exc
        server = parse_xml(data, config)
        if server.tag != "Server":
            raise HostError(f"{config}:{server.line}: the root element is <{server.tag}>, not <Server>")
        for resources in server.find_all("GlobalNamingResources"):
            for res in resources.find_all("Resource"):
                if "UserDatabase" in res.attrs.get("type", "") or "UserDatabase" in res.attrs.get("factory", ""):
                    where = Where(config, res.line)
                    users = _absolute(self.attr(res, "pathname", where, "conf/tomcat-users.xml"), self.base)
                    settings.append(("tomcat_users", _host_path(self.host, users), where))
        sites: list[Site] = []
        for service in server.find_all("Service"):
            listens = _listens(service)
            for engine in service.find_all("Engine"):
                engine_name = engine.attrs.get("name", "Catalina")
                for xml_host in engine.find_all("Host"):
                    where = Where(config, xml_host.line)
                    app_base = _absolute(self.attr(xml_host, "appBase", where, "webapps"), self.base)
                    names = (xml_host.attrs.get("name", "localhost"),
                             *(a.text.strip() for a in xml_host.find_all("Alias") if a.text.strip()))
                    roots = [DocRoot("/", app_base, where),
                             *self.context_roots(engine_name, xml_host, app_base, config)]
                    sites.append(Site("tomcat", names, listens, tuple(roots), where, run_as))
        return WebServer("tomcat", config, run_as, tuple(sites), tuple(settings), tuple(self.notes))


def collect_tomcat(host: Host) -> WebServer | None:
    """The Tomcat install of the host (the newest packaged one when several are), or None without one."""
    found: list[tuple[str, str, _Unit | None]] = []
    for name, default_base in INSTALLS:
        unit = _read_unit(host, name)
        base = unit.env["CATALINA_BASE"][0] if unit and "CATALINA_BASE" in unit.env else default_base
        if unit is not None or host.exists(f"{base}/conf/server.xml"):
            found.append((name, base, unit))
    if not found:
        return None
    name, base, unit = found[0]
    settings: list[tuple[str, str, Where]] = []
    run_as: tuple[RunAs, ...] = ()
    if unit is not None:
        if "CATALINA_BASE" in unit.env:
            settings.append(("catalina_base", base, unit.env["CATALINA_BASE"][1]))
        group = unit.group[0] if unit.group else None
        if unit.user:
            run_as = (RunAs(unit.user[0], group, "config", unit.user[1]),)
        else:
            run_as = (RunAs("root", group or "root", "config", Where(unit.path),
                            "the unit sets no User=: systemd starts Tomcat as root"),)
    reader = _Reader(host, base)
    if unit is None:
        reader.notes.append(f"no {name}.service unit: the user Tomcat runs as is not known")
    reader.notes += [f"{other} ({other_base}) is installed too; only {name} was read"
                     for other, other_base, _ in found[1:]]
    return reader.read(run_as, settings)


TOMCAT: Fact[WebServer | None] = Fact("tomcat", collect_tomcat)
