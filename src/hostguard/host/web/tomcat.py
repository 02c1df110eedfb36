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

Each Host's :class:`TomcatPolicy` answers "what does a client without credentials get for this URI" the way
Tomcat decides it (see :class:`TomcatPolicy` for the order). The rules it reads: the address-filtering
valves (``RemoteAddrValve``: Java regexes on the client address as Tomcat writes it; ``RemoteCIDRValve``:
address lists) of the Engine, the Host and the context -- the context's being those of ``conf/context.xml``,
``conf/<Engine>/<Host>/context.xml.default`` (unless ``override="true"``) and of the one file that defines
the context: its ``<Context>`` in server.xml, else its file in ``conf/<Engine>/<Host>/`` (then the
application's own ``META-INF/context.xml`` is *not* read: Debian's manager.xml therefore drops the loopback
valve the manager ships), else the application's ``META-INF/context.xml`` when the Host's ``deployXML``
allows it (when it does not, Tomcat refuses to deploy an application that has one); and the application's
``WEB-INF/web.xml`` ``security-constraint`` s (with ``conf/web.xml``'s, which Tomcat merges into every
application), matched as Tomcat's realm does. Valves and filters hostguard cannot evaluate (a custom class,
``RemoteHostValve``, a rewrite, an address filter behind ``RemoteIpValve``) make the answer "unknown".
Servlet annotations (``@ServletSecurity``) and web-fragment.xml in jars are compiled code hostguard does not
read: they can only restrict further.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import posixpath
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes
from xml.parsers import expat

from hostguard.engine.facts import Fact
from hostguard.host.base import FileMissing, Host, HostError
from hostguard.host.web.model import Access, DocRoot, Reach, RunAs, Site, WebServer, Where, remove_dot_segments

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


# -- access rules: address filters ---------------------------------------------------------------------

_VALVES = "org.apache.catalina.valves."
_FILTERS = "org.apache.catalina.filters."
# Valves and filters that decide by the client address, evaluated here: class -> "addr" (Java regexes) or
# "cidr" (address lists).
_ADDRESS_FILTERS = {_VALVES + "RemoteAddrValve": "addr", _VALVES + "RemoteCIDRValve": "cidr",
                    _FILTERS + "RemoteAddrFilter": "addr", _FILTERS + "RemoteCIDRFilter": "cidr"}
# Classes that take the client address from X-Forwarded-For: an address filter after them sees whatever a
# host among their internalProxies claims.
_REMOTE_IP = frozenset({_VALVES + "RemoteIpValve", _FILTERS + "RemoteIpFilter"})
# Tomcat's valves that never refuse or redirect a request by who sends it (logging, error pages, session
# and cluster plumbing, thread and load limits, TLS headers): they do not change the answer.
_NEUTRAL_VALVES = frozenset(_VALVES + name for name in (
    "AccessLogValve", "ExtendedAccessLogValve", "JsonAccessLogValve", "JDBCAccessLogValve", "ErrorReportValve",
    "JsonErrorReportValve", "ProxyErrorReportValve", "StuckThreadDetectionValve", "CrawlerSessionManagerValve",
    "SemaphoreValve", "SSLValve", "LoadBalancerDrainingValve", "PersistentValve", "ParameterLimitValve",
    "HealthCheckValve")) | frozenset({
        "org.apache.catalina.authenticator.SingleSignOn", "org.apache.catalina.ha.tcp.ReplicationValve",
        "org.apache.catalina.ha.session.JvmRouteBinderValve", "org.apache.catalina.ha.authenticator.ClusterSingleSignOn"})
# Authenticator valves written by hand do what login-config would: the security constraints decide.
_AUTHENTICATORS = "org.apache.catalina.authenticator."
_AUTH_METHODS = frozenset({"BASIC", "DIGEST", "FORM", "CLIENT-CERT", "SPNEGO"})

# Client addresses the filters are tried on, per family: "anyone" stands for the Internet (documentation
# networks and a spread of public unicast addresses), "near" for loopback and private networks. Each filter's
# own networks are added, so an allow-list matching only them is seen as "chosen addresses".
_ANYONE = {4: ("192.0.2.10", "198.51.100.20", "203.0.113.30", "1.2.3.4", "45.33.32.156", "81.2.69.160",
               "151.101.1.69", "223.5.5.5"),
           6: ("2001:db8::10", "2001:db8:1::20", "2a00:1450:4001:82b::200e", "2606:4700::6810:84e5")}
_NEAR = {4: ("127.0.0.1", "127.0.0.2", "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1"),
         6: ("::1", "fd00::1", "fc00::1")}

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def tomcat_address(ip: IpAddress) -> str:
    """The client address as Tomcat hands it to a valve (``InetAddress.getHostAddress()``): IPv4 dotted,
    IPv6 as eight groups without leading zeros and never compressed (``0:0:0:0:0:0:0:1``), so a regex
    written for ``::1`` does not match the IPv6 loopback."""
    if ip.version == 4:
        return str(ip)
    return ":".join(f"{int(group, 16):x}" for group in ip.exploded.split(":"))


@dataclass(frozen=True)
class AddressRule:
    """One valve or filter in a request's way, as written: its class, its ``allow``/``deny`` and where it
    is; ``problem`` says why it cannot be evaluated (the answer is then "unknown")."""

    kind: str                    # "addr", "cidr", "remote_ip", "neutral", "opaque"
    name: str                    # the class name as written
    where: Where
    allow: str | None = None
    deny: str | None = None
    problem: str = ""
    peer: bool = False           # usePeerAddress: the connection's own address, whatever RemoteIpValve says
    invalid_auth: bool = False   # invalidAuthenticationWhenDeny
    patterns: tuple[str, ...] = ()   # a filter's url-patterns (valves: none, they see every request)

    def label(self) -> str:
        """How an answer names the rule: short class name and its lists."""
        short = self.name.rsplit(".", 1)[-1]
        parts = [f'{a}="{v}"' for a, v in (("allow", self.allow), ("deny", self.deny)) if v is not None]
        return " ".join([short, *parts])

    def networks(self, which: str | None) -> list[IpNetwork]:
        """A cidr rule's list (``which`` is its allow or deny text) as networks."""
        out: list[IpNetwork] = []
        for entry in (which or "").split(","):
            entry = entry.strip()
            if entry:
                out.append(ipaddress.ip_network(entry, strict=False))
        return out

    def allows(self) -> Callable[[IpAddress], bool]:
        """The rule's decision for one client address, as Tomcat's RequestFilterValve takes it: a matching
        deny refuses, else a matching allow lets through, else only a rule with deny and no allow lets
        through (a rule with neither refuses everyone)."""
        if self.kind == "cidr":
            allow, deny = self.networks(self.allow), self.networks(self.deny)
            allow_set, deny_set = self.allow is not None and bool(allow), bool(deny)

            def by_cidr(ip: IpAddress) -> bool:
                if any(ip in n for n in deny):
                    return False
                if any(ip in n for n in allow):
                    return True
                return deny_set and not allow_set
            return by_cidr
        allow_re = re.compile(self.allow) if self.allow else None
        deny_re = re.compile(self.deny) if self.deny else None

        def by_regex(ip: IpAddress) -> bool:
            text = tomcat_address(ip)
            if deny_re is not None and deny_re.fullmatch(text):
                return False
            if allow_re is not None and allow_re.fullmatch(text):
                return True
            return deny_re is not None and allow_re is None
        return by_regex

    def refuses_family(self, family: int) -> bool:
        """Whether the rule provably refuses every address of a family (a regex rule only when it has
        neither allow nor deny)."""
        if self.kind == "addr":
            return not self.allow and not self.deny
        allow, deny = self.networks(self.allow), self.networks(self.deny)
        if any(n.version == family and n.prefixlen == 0 for n in deny):
            return True
        if any(n.version == family for n in allow):
            return False
        return bool(allow) or not deny


def address_rule(name: str, attrs: dict[str, str], where: Where, patterns: tuple[str, ...] = ()) -> AddressRule:
    """An :class:`AddressRule` of a ``<Valve>`` (its attributes) or a ``<filter>`` (its init-params)."""
    kind = _ADDRESS_FILTERS.get(name)
    if kind is None:
        if name in _REMOTE_IP:
            return AddressRule("remote_ip", name, where, patterns=patterns)
        if name in _NEUTRAL_VALVES or name.startswith(_AUTHENTICATORS):
            return AddressRule("neutral", name, where, patterns=patterns)
        if name.endswith(("RemoteHostValve", "RemoteHostFilter")):
            why = "decides by the client's host name (reverse DNS)"
        elif name.endswith("RewriteValve"):
            why = "rewrites the request before the application and its rules are chosen"
        else:
            why = "is code hostguard does not evaluate (it may refuse, redirect or answer requests itself)"
        return AddressRule("opaque", name, where, problem=f"{name.rsplit('.', 1)[-1]} {why}", patterns=patterns)
    allow, deny = attrs.get("allow"), attrs.get("deny")
    rule = AddressRule(kind, name, where, allow, deny, peer=_flag(attrs, "usePeerAddress", False),
                       invalid_auth=_flag(attrs, "invalidAuthenticationWhenDeny", False), patterns=patterns)
    problem = ""
    if _flag(attrs, "addConnectorPort", False):
        problem = "addConnectorPort=\"true\" matches the connector port with the address"
    elif "${" in (allow or "") + (deny or "") + attrs.get("denyStatus", ""):
        problem = "a ${property} hostguard does not substitute"
    elif not attrs.get("denyStatus", "403").strip().isdigit():
        problem = f"denyStatus=\"{attrs['denyStatus']}\" is not a status"
    else:
        try:
            if kind == "cidr":
                for value in (allow, deny):
                    if value and ";" in value:
                        raise ValueError("an entry with a port part")
                    rule.networks(value)
            else:
                rule.allows()
        except (ValueError, re.error) as exc:
            problem = f"cannot be read by hostguard ({exc}); Tomcat refuses a list it cannot parse"
    if problem:
        return AddressRule("opaque", name, where, allow, deny, problem=f"{rule.label()}: {problem}",
                           patterns=patterns)
    return rule


def _chain_reach(rules: Iterable[AddressRule], preemptive: bool) -> Access:
    """See :func:`_chain_answer` (cached: the web checks ask one context about thousands of paths)."""
    return _chain_answer(tuple(rules), preemptive)


@functools.lru_cache(maxsize=1024)
def _chain_answer(rules: tuple[AddressRule, ...], preemptive: bool) -> Access:
    """The address filters a request passes (Engine, Host, context valves, then the application's filters)
    as one answer over all clients: OPEN when every "anyone" address of a family gets through, RESTRICTED
    when only some do (or none of our samples, without proof that none can), DENIED when a rule provably
    refuses every address; the most open of IPv4 and IPv6."""
    chain = list(rules)
    filters = [r for r in chain if r.kind in ("addr", "cidr")]
    problems = [r for r in chain if r.kind == "opaque"]
    forwarded = False
    for rule in chain:
        if rule.kind == "remote_ip":
            forwarded = True
        elif rule.kind in ("addr", "cidr") and forwarded and not rule.peer:
            problems.append(AddressRule("opaque", rule.name, rule.where, problem=(
                f"{rule.label()} comes after RemoteIpValve: any host among its internalProxies can claim an "
                "allowed address in X-Forwarded-For")))
        if rule.kind in ("addr", "cidr") and rule.invalid_auth and preemptive:
            problems.append(AddressRule("opaque", rule.name, rule.where, problem=(
                f"{rule.label()} has invalidAuthenticationWhenDeny with preemptive authentication: the refused "
                "client is only made to fail authentication")))
    wheres = tuple(r.where for r in filters)
    if not filters and not problems:
        return Access(Reach.OPEN, "no valve or filter limits the client address")
    deciders = [r.allows() for r in filters]
    order = (Reach.DENIED, Reach.RESTRICTED, Reach.OPEN)
    reaches = []
    for family in (4, 6):
        own = [n for r in filters if r.kind == "cidr" for n in r.networks(r.allow) if n.version == family]
        near = [ipaddress.ip_address(a) for a in _NEAR[family]]
        near += [a for n in own for a in (n.network_address, n.network_address + (1 if n.num_addresses > 1 else 0))]
        anyone = [ipaddress.ip_address(a) for a in _ANYONE[family]]
        if all(all(d(ip) for d in deciders) for ip in anyone):
            reaches.append(Reach.OPEN)
        elif any(all(d(ip) for d in deciders) for ip in anyone + near):
            reaches.append(Reach.RESTRICTED)
        elif any(r.refuses_family(family) for r in filters):
            reaches.append(Reach.DENIED)
        else:
            reaches.append(Reach.RESTRICTED)
    reach = max(reaches, key=order.index)
    named = "; ".join(f"{r.label()} ({r.where})" for r in filters)
    if reach is Reach.DENIED:
        return Access(Reach.DENIED, f"{named}: no client address is let through", wheres)
    if problems:
        return Access(Reach.UNKNOWN, "; ".join(f"{p.problem} ({p.where})" for p in problems),
                      tuple(p.where for p in problems) + wheres)
    if reach is Reach.RESTRICTED:
        return Access(Reach.RESTRICTED, f"{named}: allowed only from chosen addresses", wheres)
    return Access(Reach.OPEN, f"{named}: lets any client address through", wheres)


# -- access rules: web.xml -----------------------------------------------------------------------------

_OTHER_METHOD = "HOSTGUARD-ANY-OTHER-METHOD"   # a method no web.xml names: "every other method"


@dataclass(frozen=True)
class ResourceCollection:
    """One ``web-resource-collection``: its url-patterns and the methods it covers (``http-method``: only
    those; ``http-method-omission``: all but those; neither: every method)."""

    patterns: tuple[str, ...]
    methods: frozenset[str] = frozenset()
    omissions: frozenset[str] = frozenset()

    def covers(self, method: str) -> bool:
        """Whether the collection applies to a request with ``method``."""
        if self.methods:
            return method in self.methods
        return method not in self.omissions


@dataclass(frozen=True)
class SecurityConstraint:
    """One ``security-constraint``: ``roles`` None when it has no ``auth-constraint`` (anyone), ``()`` for
    an empty one (nobody), else the roles that may enter (after a login)."""

    collections: tuple[ResourceCollection, ...]
    roles: tuple[str, ...] | None
    where: Where


@dataclass(frozen=True)
class WebXml:
    """What the access answer needs from a deployment descriptor."""

    path: str
    constraints: tuple[SecurityConstraint, ...] = ()
    login: tuple[str, Where] | None = None       # auth-method and where
    deny_uncovered: bool = False
    filters: tuple[AddressRule, ...] = ()        # address filters in filter-mapping order, with their patterns
    problems: tuple[tuple[str, Where], ...] = ()


def valid_pattern(pattern: str) -> bool:
    """A url-pattern Tomcat accepts in a security constraint or filter mapping: ``""``, ``/``, ``/x``,
    ``/x/*`` or ``*.ext`` (a ``*`` elsewhere makes the application fail to start)."""
    if pattern.startswith("*."):
        return "/" not in pattern and "*" not in pattern[1:]
    if pattern.startswith("/"):
        return "*" not in pattern[:-1] and (not pattern.endswith("*") or pattern.endswith("/*"))
    return pattern == ""


def pattern_matches(pattern: str, path: str) -> bool:
    """Whether ``pattern`` covers the request path ``path`` (within the application, starting with ``/``),
    by the Servlet specification: ``/x/*`` the path ``/x`` and all below it, ``*.ext`` a last segment ending
    in ``.ext``, ``/`` everything, ``""`` the application root only, anything else that exact path."""
    if pattern in ("/", "/*"):
        return True
    if pattern == "":
        return path == "/"
    if pattern.endswith("/*"):
        return path == pattern[:-2] or path.startswith(pattern[:-1])
    if pattern.startswith("*."):
        last = path.rsplit("/", 1)[-1]
        dot = last.rfind(".")
        return dot >= 0 and dot != len(last) - 1 and last[dot:] == pattern[1:]
    return path == pattern


def applicable_constraints(constraints: Iterable[SecurityConstraint], path: str,
                           method: str) -> tuple[SecurityConstraint, ...]:
    """The constraints Tomcat's realm applies to ``method path``: those of the exact patterns naming the path
    if any does, else of the longest ``/x/*`` prefix, else of ``*.ext``, else of ``/``. A stage whose best
    pattern matches but whose collection leaves out the method applies nothing (exact, extension) or hands
    over to the next stage (prefix), as Tomcat does: that is how a method list leaves other methods open."""
    every = tuple(constraints)
    path = path or "/"
    found, out = False, []
    for c in every:
        for coll in c.collections:
            for pattern in coll.patterns:
                if path == pattern or (pattern == "" and path == "/"):
                    found = True
                    if coll.covers(method):
                        out.append(c)
    if found:
        return tuple(out)
    longest = -1
    for c in every:
        for coll in c.collections:
            length = -1
            for pattern in coll.patterns:
                if pattern.startswith("/") and pattern.endswith("/*") and len(pattern) >= longest and (
                        len(pattern) == 2 or path.startswith(pattern[:-1]) or path == pattern[:-2]):
                    length = max(length, len(pattern))   # the collection's longest (the real Tomcat 10 shows)
            if length < 0:
                continue
            if length > longest:
                found, out, longest = False, [], length
            if coll.covers(method):
                found = True
                out.append(c)
    if found:
        return tuple(out)
    out = []
    for c in every:
        hit = next((coll for coll in c.collections for pattern in coll.patterns
                    if pattern.startswith("*.") and pattern_matches(pattern, path)), None)
        if hit is not None:
            found = True
            if hit.covers(method):
                out.append(c)
    if found:
        return tuple(out)
    return tuple(c for c in every for coll in c.collections if "/" in coll.patterns)


def _uncovered(constraints: tuple[SecurityConstraint, ...], where: Where) -> tuple[SecurityConstraint, ...]:
    """``deny-uncovered-http-methods``: for each pattern whose collections leave methods out, a constraint
    with an empty auth-constraint for exactly those methods (what Tomcat adds)."""
    by_pattern: dict[str, list[ResourceCollection]] = {}
    for c in constraints:
        for coll in c.collections:
            for pattern in coll.patterns:
                by_pattern.setdefault(pattern, []).append(coll)
    added = []
    for pattern, colls in by_pattern.items():
        if any(not c.methods and not c.omissions for c in colls):
            continue
        named = frozenset().union(*(c.methods for c in colls))
        omitted = [c.omissions for c in colls if c.omissions]
        if omitted:
            left = frozenset.intersection(*omitted) - named
            if left:
                added.append(SecurityConstraint((ResourceCollection((pattern,), methods=left),), (), where))
        else:
            added.append(SecurityConstraint((ResourceCollection((pattern,), omissions=named),), (), where))
    return tuple(added)


def _texts(element: XmlElement, tag: str) -> list[str]:
    return [c.text.strip() for c in element.find_all(tag)]


def _decoded(pattern: str) -> str:
    """A url-pattern as Tomcat keeps it: %XX decoded."""
    return unquote_to_bytes(pattern).decode("utf-8", "replace") if "%" in pattern else pattern


def read_web_xml(data: bytes, path: str, default_deny: bool = False) -> WebXml:
    """The constraints, login-config and address filters of a ``web.xml``; :class:`HostError` for XML that
    is not well-formed (Tomcat does not start such an application)."""
    top = parse_xml(data, path)
    if top.tag.rsplit(":", 1)[-1] != "web-app":
        raise HostError(f"{path}:{top.line}: the root element is <{top.tag}>, not <web-app>")
    problems: list[tuple[str, Where]] = []
    constraints: list[SecurityConstraint] = []
    for sc in top.find_all("security-constraint"):
        where = Where(path, sc.line)
        collections = []
        for wrc in sc.find_all("web-resource-collection"):
            patterns = tuple(_decoded(p) for p in _texts(wrc, "url-pattern"))
            bad = [p for p in patterns if not valid_pattern(p)]
            if bad:
                problems.append((f"url-pattern \"{bad[0]}\" is not valid: Tomcat does not start the application",
                                 Where(path, wrc.line)))
            methods, omissions = frozenset(_texts(wrc, "http-method")), frozenset(_texts(wrc, "http-method-omission"))
            if methods and omissions:
                problems.append(("http-method and http-method-omission in one collection: Tomcat does not start "
                                 "the application", Where(path, wrc.line)))
            collections.append(ResourceCollection(patterns, methods, omissions))
        auth = sc.find_all("auth-constraint")
        roles: tuple[str, ...] | None = None
        if auth:
            roles = tuple(r for a in auth for r in _texts(a, "role-name") if r)
        constraints.append(SecurityConstraint(tuple(collections), roles, where))
    login = None
    for lc in top.find_all("login-config"):
        method = next(iter(_texts(lc, "auth-method")), "") or "BASIC"
        login = (method.upper(), Where(path, lc.line))
    deny = default_deny or bool(top.find_all("deny-uncovered-http-methods"))
    classes = {next(iter(_texts(f, "filter-name")), ""): f for f in top.find_all("filter")}
    filters = []
    for mapping in top.find_all("filter-mapping"):
        name = next(iter(_texts(mapping, "filter-name")), "")
        declared = classes.get(name)
        if declared is None:
            continue
        cls = next(iter(_texts(declared, "filter-class")), "")
        params = {next(iter(_texts(p, "param-name")), ""): next(iter(_texts(p, "param-value")), "")
                  for p in declared.find_all("init-param")}
        rule = address_rule(cls, params, Where(path, declared.line),
                            tuple(_decoded(p) for p in _texts(mapping, "url-pattern")))
        if rule.kind not in ("addr", "cidr", "remote_ip") and not cls.endswith("RemoteHostFilter") and \
                not (rule.kind == "opaque" and cls in _ADDRESS_FILTERS):
            # Tomcat's other filters (CSRF, headers, encoding) do not choose who may enter, and an application's
            # own filters are its code, like a PHP login page: not the server's rules
            continue
        if _texts(mapping, "servlet-name"):
            rule = AddressRule("opaque", cls, Where(path, mapping.line), rule.allow, rule.deny, problem=(
                f"{rule.label()} is mapped to a servlet by name, which hostguard does not resolve"), patterns=("/*",))
        filters.append(rule)
    return WebXml(path, tuple(constraints), login, deny, tuple(filters), tuple(problems))


def _constraint_answer(found: tuple[SecurityConstraint, ...], login: tuple[str, Where] | None) -> Access:
    """What a client without credentials gets past these constraints (Tomcat's authenticator and realm): an
    empty auth-constraint refuses everyone, one without auth-constraint lets anyone in, roles need a login."""
    wheres = tuple(c.where for c in found)
    if not found:
        return Access(Reach.OPEN, "no security-constraint covers it")
    if any(c.roles == () for c in found):
        return Access(Reach.DENIED, "a security-constraint with an empty auth-constraint refuses everyone (403)",
                      wheres)
    if any(c.roles is None for c in found):
        return Access(Reach.OPEN, "a security-constraint without auth-constraint lets anyone in", wheres)
    roles = sorted({r for c in found for r in c.roles or ()})
    if login is None:
        return Access(Reach.DENIED, f"a security-constraint needs role {', '.join(roles)} but the application has "
                      "no login-config: nobody can log in (403)", wheres)
    if login[0] not in _AUTH_METHODS:
        return Access(Reach.UNKNOWN, f"login-config auth-method {login[0]} is not one Tomcat has", (login[1],))
    return Access(Reach.RESTRICTED, f"a security-constraint needs a login ({login[0]}) with role "
                  f"{', '.join(roles)}", (*wheres, login[1]))


def _constraints_reach(xml: WebXml, path: str) -> Access:
    """The constraints' answer over every HTTP method a client may send: one answer when all methods get
    the same; when they differ and some method is let through, "unknown" (what the application does with
    that method is its code); otherwise the most open of them."""
    constraints = xml.constraints + (_uncovered(xml.constraints, Where(xml.path)) if xml.deny_uncovered else ())
    named = sorted({m for c in constraints for coll in c.collections for m in coll.methods | coll.omissions})
    answers = {m: _constraint_answer(applicable_constraints(constraints, path, m), xml.login)
               for m in ["GET", *named, _OTHER_METHOD]}
    first = answers["GET"]
    if all(a.reach is first.reach for a in answers.values()):
        return first
    shown = "; ".join(f"{'other methods' if m == _OTHER_METHOD else m}: {a.reach}" for m, a in answers.items())
    wheres = tuple(dict.fromkeys(w for a in answers.values() for w in a.where))
    if any(a.reach in (Reach.OPEN, Reach.UNKNOWN) for a in answers.values()):
        return Access(Reach.UNKNOWN, f"the security-constraints depend on the HTTP method ({shown})", wheres)
    reach = Reach.RESTRICTED if any(a.reach is Reach.RESTRICTED for a in answers.values()) else Reach.DENIED
    return Access(reach, f"every HTTP method is restricted or refused ({shown})", wheres)


# -- access rules: the policy ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TomcatApp:
    """One deployed context: its path (``""`` for ROOT), files, the valves in a request's way (Engine, Host,
    then the context's own, in pipeline order) and its deployment descriptors (``conf/web.xml`` first)."""

    path: str
    docbase: str
    where: Where
    rules: tuple[AddressRule, ...] = ()
    web_xml: tuple[WebXml, ...] = ()
    problems: tuple[tuple[str, Where], ...] = ()
    refused: str = ""             # why Tomcat does not deploy it at all
    preemptive: bool = False      # preemptiveAuthentication


def normalize_request(uri: str) -> str:
    """The path Tomcat maps: the query and ``;parameters`` removed, %XX decoded, ``.``/``..`` and repeated
    slashes resolved. :class:`ValueError` where Tomcat answers 400 (an encoded ``/``, a backslash, a NUL, a
    climb above the root, a path not starting with ``/``)."""
    path = uri.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        raise ValueError(f"{uri!r} does not start with /")
    path = "/".join(segment.split(";", 1)[0] for segment in path.split("/"))
    if re.search(r"%(?![0-9A-Fa-f]{2})", path):
        raise ValueError(f"{uri!r}: a % not followed by two hex digits")
    if re.search(r"%2[fF]", path):
        raise ValueError(f"{uri!r}: an encoded / (Tomcat rejects %2F)")
    decoded = unquote_to_bytes(path).decode("utf-8", "replace")
    if "\\" in decoded or "\x00" in decoded:
        raise ValueError(f"{uri!r}: a backslash or NUL")
    resolved = remove_dot_segments(decoded, skip_empty=True)
    if resolved is None:
        raise ValueError(f"{uri!r}: climbs above the root")
    return resolved


class TomcatPolicy:
    """One Tomcat Host's answer to "what does a client without credentials get for this URI", in Tomcat's
    order: the URI normalized (400s refused), the context chosen (the longest context path, ``/x`` itself
    redirected to ``/x/``), the Engine, Host and context valves, ``WEB-INF``/``META-INF`` never served (404),
    the application's address filters, then its security constraints (authenticator and realm)."""

    def __init__(self, apps: Iterable[TomcatApp]) -> None:
        self.apps = tuple(sorted(apps, key=lambda a: -len(a.path)))
        # conf/web.xml's constraints and login-config merged into each application's, as Tomcat merges them
        self._merged = {id(a): WebXml(a.web_xml[-1].path if a.web_xml else "",
                                      tuple(c for x in a.web_xml for c in x.constraints),
                                      next((x.login for x in reversed(a.web_xml) if x.login), None),
                                      any(x.deny_uncovered for x in a.web_xml)) for a in self.apps}

    def app(self, uri: str) -> TomcatApp | None:
        """The context a (normalized) request path is mapped to."""
        return next((a for a in self.apps if uri == a.path or uri.startswith(a.path + "/")), None)

    def access(self, uri: str) -> Access:
        """OPEN, RESTRICTED (chosen addresses or a login), DENIED (400/404, a redirect, refused to all) or
        UNKNOWN with the rule that could not be evaluated."""
        try:
            path = normalize_request(uri)
        except ValueError as exc:
            return Access(Reach.DENIED, f"Tomcat answers 400 Bad Request: {exc}")
        app = self.app(path)
        if app is None:
            return Access(Reach.DENIED, "no application is deployed at this path (404)")
        if path == app.path:
            return Access(Reach.DENIED, f"Tomcat redirects {path} to {path}/ (302)", (app.where,))
        if app.refused:
            return Access(Reach.DENIED, app.refused, (app.where,))
        inner = path[len(app.path):] or "/"
        label = f"context {app.path or '/'} ({app.docbase})"
        valves = _chain_reach(app.rules, app.preemptive)
        if valves.reach is Reach.DENIED:
            return Access(Reach.DENIED, f"{label}: {valves.how}", valves.where)
        if re.match(r"/(web-inf|meta-inf)(/|$)", inner, re.IGNORECASE):
            return Access(Reach.DENIED, f"{label}: Tomcat never serves WEB-INF or META-INF (404)", (app.where,))
        if app.problems:
            how, where = app.problems[0]
            return Access(Reach.UNKNOWN, f"{label}: {how}", (where,))
        filters = [f for xml in app.web_xml for f in xml.filters
                   if any(pattern_matches(p, inner) for p in f.patterns)]
        if filters:
            valves = _chain_reach([*app.rules, *filters], app.preemptive)
            if valves.reach is Reach.DENIED:
                return Access(Reach.DENIED, f"{label}: {valves.how}", valves.where)
        constraints = _constraints_reach(self._merged[id(app)], inner)
        return _combined(label, valves, constraints)

    def runs_php(self, uri: str) -> bool | None:
        """Always False: Tomcat hands nothing to PHP (its code is servlets and JSPs); a ``.php`` file under a
        context is sent as text."""
        return False


def _combined(label: str, valves: Access, constraints: Access) -> Access:
    """Address filters and constraints together: refused by either is refused; unknown if either is;
    restricted if either restricts (a login, chosen addresses, or both)."""
    where = valves.where + constraints.where
    for reach in (Reach.DENIED, Reach.UNKNOWN):
        for part in (constraints, valves):
            if part.reach is reach:
                return Access(reach, f"{label}: {part.how}", part.where)
    if Reach.RESTRICTED in (valves.reach, constraints.reach):
        hows = [p.how for p in (valves, constraints) if p.reach is Reach.RESTRICTED]
        return Access(Reach.RESTRICTED, f"{label}: " + "; and ".join(hows), where)
    return Access(Reach.OPEN, f"{label}: {valves.how}; {constraints.how}", where)


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


@dataclass(frozen=True)
class _Definition:
    """The element that defines a context (None: the application has no context file), where it is, and
    why Tomcat would not deploy it or hostguard cannot read it."""

    element: XmlElement | None
    where: Where
    refused: str = ""
    problem: str = ""


@dataclass
class _Defaults:
    """What every context of a Host inherits (see :meth:`_Reader.defaults`)."""

    attrs: dict[str, str] = field(default_factory=dict)
    valves: list[AddressRule] = field(default_factory=list)
    web_xml: list[WebXml] = field(default_factory=list)
    problems: list[tuple[str, Where]] = field(default_factory=list)


def _valves(element: XmlElement, path: str) -> list[AddressRule]:
    """The ``<Valve>`` children of an Engine, Host or Context, in pipeline order."""
    return [address_rule(v.attrs.get("className", ""), v.attrs, Where(path, v.line)) for v in element.find_all("Valve")]


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
        return [root for root, _ in self.contexts(engine, xml_host, app_base, config)]

    def contexts(self, engine: str, xml_host: XmlElement, app_base: str,
                 config: str) -> list[tuple[DocRoot, _Definition]]:
        """Every context the Host deploys with the file that defines it, by URL: server.xml's ``<Context>``
        first, then the context files of ``conf/<Engine>/<Host>/``, then the appBase's applications (Tomcat
        deploys a name once: the first definition wins)."""
        found: dict[str, tuple[DocRoot, _Definition]] = {}
        for ctx in xml_host.find_all("Context"):
            where = Where(config, ctx.line)
            url = context_url(self.attr(ctx, "path", where).strip("/").replace("/", "#"))
            doc = self.attr(ctx, "docBase", where)
            if doc:
                found[url] = (DocRoot(url, _absolute(doc, app_base), where), _Definition(ctx, where))
        for path, entry in self.context_files(engine, xml_host):
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
            found.setdefault(url, (DocRoot(url, _absolute(doc, app_base), where), _Definition(ctx, where)))
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
                if url in found:
                    continue
                if self.host.exists(f"{app_base}/{stem}") and self.host.stat(f"{app_base}/{stem}").is_dir:
                    where = Where(f"{shown_base}/{stem}")
                    found[url] = (DocRoot(url, f"{app_base}/{stem}", where),
                                  self.embedded(xml_host, f"{app_base}/{stem}", where))
                elif entry.endswith(".war") and self.host.stat(path).is_file:
                    self.notes.append(f"{shown_base}/{entry}: not unpacked, its files are not on disk")
        return sorted(found.values(), key=lambda r: r[0].url)

    def context_files(self, engine: str, xml_host: XmlElement) -> list[tuple[str, str]]:
        """(path, file name) of the Host's context files in ``conf/<Engine>/<Host>/``."""
        xml_base = self.xml_base(engine, xml_host)
        return [(f"{xml_base}/{entry}", entry) for entry in self.host.listdir(xml_base) if entry.endswith(".xml")]

    def xml_base(self, engine: str, xml_host: XmlElement) -> str:
        """The Host's configuration directory (``xmlBase``, by default ``conf/<Engine>/<Host>``)."""
        name = xml_host.attrs.get("name", "localhost")
        return _absolute(xml_host.attrs.get("xmlBase", f"conf/{engine}/{name}"), self.base)

    def embedded(self, xml_host: XmlElement, docbase: str, where: Where) -> _Definition:
        """An appBase application's own ``META-INF/context.xml``: its definition when the Host's ``deployXML``
        allows it; when it does not, Tomcat refuses to deploy the application (the file may hold security
        settings it would otherwise drop)."""
        path = f"{docbase}/META-INF/context.xml"
        if not self.host.exists(path):
            return _Definition(None, where)
        shown = _host_path(self.host, path)
        if not _flag(xml_host.attrs, "deployXML", True):
            return _Definition(None, where, refused=(
                f"{shown} exists and the Host sets deployXML=\"false\": Tomcat refuses to deploy the application "
                "(404)"))
        try:
            ctx = parse_xml(self.host.read_bytes(path), shown)
        except HostError as exc:
            return _Definition(None, where, problem=f"{exc} (Tomcat does not deploy it)")
        if ctx.tag != "Context":
            return _Definition(None, where, problem=f"{shown}:{ctx.line}: <{ctx.tag}> is not a <Context>")
        return _Definition(ctx, Where(shown, ctx.line))

    def defaults(self, engine: str, xml_host: XmlElement) -> _Defaults:
        """What every context of the Host inherits: ``conf/context.xml`` and the Host's
        ``context.xml.default`` (valves, attributes), ``conf/web.xml`` and ``web.xml.default``."""
        xml_base = self.xml_base(engine, xml_host)
        out = _Defaults()
        for path in (f"{self.base}/conf/context.xml", f"{xml_base}/context.xml.default"):
            shown = _host_path(self.host, path)
            try:
                ctx = parse_xml(self.host.read_bytes(path), shown)
            except FileMissing:
                continue
            except HostError as exc:
                out.problems.append((f"{exc} (Tomcat cannot configure its contexts)", Where(shown)))
                continue
            out.attrs.update(ctx.attrs)
            out.valves += _valves(ctx, shown)
        for path in (f"{self.base}/conf/web.xml", f"{xml_base}/web.xml.default"):
            shown = _host_path(self.host, path)
            try:
                out.web_xml.append(read_web_xml(self.host.read_bytes(path), shown))
            except FileMissing:
                continue
            except HostError as exc:
                out.problems.append((str(exc), Where(shown)))
        return out

    def app(self, root: DocRoot, definition: _Definition, app_base: str, chain: list[AddressRule],
            defaults: _Defaults) -> TomcatApp:
        """One context's rules: the valves in its way, its descriptors, what keeps them from being read."""
        path = root.url.rstrip("/")
        if definition.refused:
            return TomcatApp(path, root.path, root.where, refused=definition.refused)
        problems = list(defaults.problems)
        if definition.problem:
            problems.append((definition.problem, definition.where))
        own = definition.element
        attrs = dict(defaults.attrs)
        rules = list(chain)
        override = own is not None and _flag(own.attrs, "override", False)
        if override:
            attrs = {}
        else:
            rules += defaults.valves
        if own is not None:
            attrs.update(own.attrs)
            rules += _valves(own, definition.where.path)
        web_xml = [] if override else list(defaults.web_xml)
        alt = attrs.get("altDDName")
        descriptor = _absolute(alt, root.path) if alt else f"{root.path}/WEB-INF/web.xml"
        shown = _host_path(self.host, descriptor)
        deny = _flag(attrs, "denyUncoveredHttpMethods", False)
        if root.path.endswith(".war"):
            problems.append(("a WAR file: its WEB-INF/web.xml is not on disk", root.where))
        else:
            try:
                web_xml.append(read_web_xml(self.host.read_bytes(descriptor), shown, deny))
            except FileMissing:
                pass
            except HostError as exc:
                problems.append((f"{exc} (Tomcat does not start the application)", Where(shown)))
                self.notes.append(str(exc))
        problems += [p for x in web_xml for p in x.problems]
        return TomcatApp(path, root.path, root.where, tuple(rules), tuple(web_xml), tuple(problems),
                         preemptive=_flag(attrs, "preemptiveAuthentication", False))

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
                    contexts = self.contexts(engine_name, xml_host, app_base, config)
                    roots = [DocRoot("/", app_base, where), *(root for root, _ in contexts)]
                    chain = _valves(engine, config) + _valves(xml_host, config)
                    defaults = self.defaults(engine_name, xml_host)
                    policy = TomcatPolicy(self.app(root, definition, app_base, chain, defaults)
                                          for root, definition in contexts)
                    sites.append(Site("tomcat", names, listens, tuple(roots), where, run_as, policy=policy))
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
    notes = [f"no {name}.service unit: the user Tomcat runs as is not known"] if unit is None else []
    notes += [f"{other} ({other_base}) is installed too; only {name} was read" for other, other_base, _ in found[1:]]
    return read_tomcat(host, base, run_as, settings, notes)


def read_tomcat(host: Host, base: str, run_as: tuple[RunAs, ...] = (), settings: list[tuple[str, str, Where]] | None = None,
                notes: list[str] | None = None) -> WebServer:
    """The Tomcat whose ``CATALINA_BASE`` is ``base`` (a host path), its sites with their access policies;
    :class:`HostError` when its server.xml cannot be read."""
    reader = _Reader(host, base)
    reader.notes += notes or []
    return reader.read(run_as, list(settings or []))


TOMCAT: Fact[WebServer | None] = Fact("tomcat", collect_tomcat)
