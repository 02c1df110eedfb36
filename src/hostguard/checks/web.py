"""Web servers: back ends and leftovers anyone can open, and what the server tells about itself.

Every site comes from the web servers' own configuration (nginx, Apache: ``host/web``), every document root
is walked once (no symlinks followed, within the family's time budget), and every path found is asked of
the server's own access rules, evaluated as the server would (nginx's location precedence, Apache's merged
sections and .htaccess): a phpMyAdmin that only 192.0.2.7 may open is fine, one anyone may open is the
finding. Where the rules cannot be evaluated (an ``if`` that returns, a module's access phase) the finding
says "unknown", never "fine".
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from typing import Any

from hostguard.config import Config, setting
from hostguard.data import load_toml
from hostguard.engine.context import Context
from hostguard.engine.registry import Family, check
from hostguard.findings import Finding, SkipReason
from hostguard.host.accounts import ACCOUNTS
from hostguard.host.base import HostError
from hostguard.host.web.apache import APACHE_TEXT
from hostguard.host.web.content import WEB_CONTENT, RootIndex, WebContent, calls_phpinfo
from hostguard.host.web.model import Access, AccessPolicy, Directive, DocRoot, Reach, Site, WebServer, Where
from hostguard.host.web.nginx import (
    NGINX_TEXT,
    ConfigText,
    NginxPolicy,
    block_text,
    location_spec,
    locations,
    nginx_word,
)
from hostguard.host.web.panels import PANELS
from hostguard.host.web.php import PHP_INI, PhpIni
from hostguard.host.web.servers import WEB_SERVERS, WebServers
from hostguard.host.web.writable import (
    Identity,
    Reason,
    WritableReport,
    allow_from_globs,
    default_allow,
    identity_for,
)
from hostguard.remediation import Command, Edit, Param, Remediation, Step, Write

SAMPLES = 10  # paths shown in one grouped finding


@dataclass(frozen=True)
class WebConfig:
    """[web]: how long the document roots may be walked, and paths you accept open."""

    walk_seconds: float = setting(60.0, "Seconds the web checks may spend walking the document roots (all roots "
                                        "of all sites together); what is not reached is reported as not checked.",
                                  min=0)
    open_allowed: tuple[str, ...] = setting((), "URL paths (shell globs, e.g. \"/status/*\") you want open to "
                                                "anyone: never reported as exposed.")
    writable_allow: tuple[str, ...] = setting((), "Directories the web user may write (globs, relative to the document "
                                                  "root or absolute), on top of the shipped upload and cache "
                                                  "directories of common applications (data/web/writable_allow.toml).")
    writable_samples: int = setting(10, "Example paths kept per reason (owner, group, other, ACL) for each document "
                                        "root.", min=1)


FAMILY = Family("web", __doc__ or "", WebConfig)


@dataclass(frozen=True)
class AdminApp:
    """An admin application of data/web/admin_paths.toml."""

    name: str
    where: str
    depth: int
    markers: tuple[str, ...]
    files: tuple[str, ...]
    urls: tuple[str, ...]
    severity: str
    why: str


@dataclass(frozen=True)
class Leftover:
    """A kind of file that must never be served (data/web/leftovers.toml)."""

    kind: str
    globs: tuple[str, ...]
    severity: str
    why: str


@dataclass(frozen=True)
class Catalogue:
    """The family's data, read once."""

    apps: tuple[AdminApp, ...]
    leftovers: tuple[Leftover, ...]
    phpinfo_globs: tuple[str, ...]
    phpinfo_pattern: re.Pattern[bytes]
    phpinfo_bytes: int
    phpinfo_why: str


@cache
def catalogue() -> Catalogue:
    """data/web/admin_paths.toml and leftovers.toml."""
    admin = load_toml("web/admin_paths.toml")
    left = load_toml("web/leftovers.toml")
    apps = tuple(AdminApp(a["name"], a["where"], int(a.get("depth", 0)), tuple(a.get("markers", ())),
                          tuple(a.get("files", ())), tuple(a["urls"]), a["severity"], a["why"]) for a in admin["app"])
    leftovers = tuple(Leftover(x["kind"], tuple(x["globs"]), x["severity"], x["why"]) for x in left["leftover"])
    info = left["phpinfo"]
    return Catalogue(apps, leftovers, tuple(info["globs"]), re.compile(info["pattern"].encode()),
                     int(info["max_bytes"]), info["why"])


def url_of(root: DocRoot, rel: str) -> str:
    """The request path of ``rel`` (a path under ``root``), ``/``-joined onto the root's URL."""
    base = root.url if root.url.endswith("/") else root.url + "/"
    return base + rel.lstrip("/")


def _budget(config: Config) -> float:
    return config[WebConfig].walk_seconds


def _walked(ctx: Context, content: WebContent, root: DocRoot, site: Site) -> RootIndex | None:
    """The root's index; an incomplete walk is said in ``skipped`` (the findings so far are kept)."""
    index = content.index(root.path, ctx.deadline, ctx.cancel)
    if index.stopped:
        reason = SkipReason.BUDGET if "budget" in index.stopped else SkipReason.UNSUPPORTED
        ctx.skip(reason, f"{root.path}: {index.stopped}", site.label())
    return index if index.files or index.dirs else None


def _sites(ctx: Context, with_policy: bool = True, php: bool = False) -> Iterator[tuple[WebServer, Site]]:
    """Every site (whose access rules can be asked, unless ``with_policy`` is False; of a server that can run
    PHP when ``php``); unreadable configurations said in ``skipped``."""
    servers: WebServers = ctx.fact(WEB_SERVERS)
    for kind, why in servers.problems:
        ctx.skip(SkipReason.ERROR, why, kind)
    for server, site in servers.sites():
        if php and server.kind == "tomcat":
            continue
        if site.policy is not None or not with_policy:
            yield server, site
        else:   # a server without an evaluator of its access rules
            ctx.skip(SkipReason.UNSUPPORTED, f"{server.kind}'s access rules are not evaluated: what anyone can "
                                             "open under its roots is not known", site.label())


def _indexed(ctx: Context, php: bool = False) -> Iterator[tuple[WebServer, Site, AccessPolicy, DocRoot, RootIndex]]:
    """Every root of every site whose rules can be asked, with what lies under it (walked once per root)."""
    content = ctx.fact(WEB_CONTENT)
    for server, site in _sites(ctx, php=php):
        assert site.policy is not None
        for root in site.roots:
            index = _walked(ctx, content, root, site)
            if index is not None:
                yield server, site, site.policy, root, index


def _allowed(ctx: Context, url: str) -> bool:
    return any(fnmatchcase(url, p) for p in ctx.config[WebConfig].open_allowed)


def _site_target(site: Site, path: str, url: str, **extra: str) -> dict[str, Any]:
    return {"kind": "path", "path": path, "url": url, "server": site.server,
            "site": site.names[0] if site.names else "(default)", **extra}


def _access_evidence(site: Site, url: str, access: Access) -> dict[str, Any]:
    return {"site": site.label(), "url": url, "reach": str(access.reach), "decided_by": access.how,
            "where": [str(w) for w in access.where]}


# By-hand fixes that print server configuration give it as the first `...` part of the manual text, complete
# and ready to paste where the text says (the owner's values named by the Params); commands come after it.
# tests/checks/test_web_fixes.py inserts exactly that text and runs `nginx -t` / httpd -t and real requests.

ADMIN_PARAM = Param("ADMIN_ADDRESS", "the address (or network) you manage the site from", "192.0.2.7")


def _prefixes(urls: list[str]) -> list[str]:
    """The URLs to restrict: each open one, leaving out those inside a directory URL already in the list."""
    out: list[str] = []
    for url in urls:
        if not any(other.endswith("/") and url.startswith(other) and url != other for other in urls) and url not in out:
            out.append(url)
    return out


def _php_location(site: Site, url: str) -> Directive | None:
    """The nginx location that runs PHP for ``.php`` requests at ``url`` (a directory, or a .php file)."""
    policy = site.policy
    if not isinstance(policy, NginxPolicy):
        return None
    probe = url + "hostguard-probe.php" if url.endswith("/") else url
    if not probe.endswith(".php") or policy.runs_php(probe) is not True:
        return None
    return policy.location(probe)


def _nginx_restrict(site: Site, urls: list[str], text: ConfigText) -> tuple[str, str, str]:
    """(snippet, where it goes, why-not) for nginx: a ``^~`` prefix location per URL with allow/deny, and the
    site's own PHP location copied inside it verbatim where PHP runs there (``^~`` stops nginx from trying the
    outer regex locations, so without the copy .php files would be sent as text). Where a location of that
    name exists (nginx refuses a second one), allow/deny go inside it, when every request under it, .php
    included, is decided there. ``("", "", why)`` when no snippet can be given."""
    policy = site.policy
    if not isinstance(policy, NginxPolicy):
        return "", "", "the server block was not read"
    prefixes = _prefixes(urls)
    existing = [loc for loc in locations(policy.server.block) if location_spec(loc)[1] in prefixes
                and location_spec(loc)[0] in ("", "^~", "=")]
    if existing:
        loc = existing[0]
        php = _php_location(site, location_spec(loc)[1])
        if len(prefixes) > 1 or (php is not None and not any(x is php for x in locations(loc.block))):
            return "", "", (f"a location for {location_spec(loc)[1]} exists at {loc.where}, and .php requests under "
                            "it are decided by another location: make it a ^~ location with a copy of the PHP "
                            "location nested inside and allow/deny lines for ADMIN_ADDRESS")
        return "allow ADMIN_ADDRESS;\ndeny all;", f"inside the location at {loc.where}, right after its opening " \
                                                   "line", ""
    parts: list[str] = []
    for url in prefixes:
        body = ["    allow ADMIN_ADDRESS;", "    deny all;"]
        php = _php_location(site, url)
        if php is not None:
            own = block_text(text, php)
            if own is None or any("`" in x for x in own):
                return "", "", (f"the PHP location at {php.where} cannot be copied as written: nest a copy of it "
                                f"inside a ^~ location for {url} with allow/deny lines for ADMIN_ADDRESS")
            strip = min(len(x) - len(x.lstrip(" \t")) for x in own if x.strip())
            body += ["    " + x[strip:] if x.strip() else "" for x in own]
        parts.append("\n".join([f"location ^~ {nginx_word(url)} {{", *body, "}"]))
    return "\n".join(parts), f"in the server block at {site.where}, right after its opening line", ""


def _apache_word(value: str) -> str | None:
    """A value in double quotes for an Apache section line; None when it holds a quote or a backslash."""
    return None if any(c in value for c in "\"\\\n") else f'"{value}"'


def _restrict_fix(server: WebServer, site: Site, urls: list[str], what: str, text: ConfigText) -> Remediation:
    """How to restrict ``urls`` (the app's open URLs): an address allow-list, in the server's own words, with
    the exact lines to add (checked by the server in tests), or a password instead."""
    summary = f"Let only your own addresses (or a password) reach {what}, or move it under a long random path"
    better = " Removing it, if nobody uses it, is better still."
    if server.kind == "nginx":
        snippet, place, why = _nginx_restrict(site, urls, text)
        if not snippet:
            return Remediation.by_hand(summary, f"In the server block at {site.where}, {why}; then nginx -t and "
                                                f"systemctl reload nginx.{better}", ADMIN_PARAM)
        how = (f"Add, {place}: `{snippet}` (only "
               "ADMIN_ADDRESS gets it, PHP still runs through the copy of the site's PHP location, everyone else "
               "gets 403; `auth_basic` with a password file works in place of allow/deny). Then `nginx -t` and "
               "`systemctl reload nginx`.")
    elif server.kind == "apache":
        quoted = [_apache_word(u) for u in _prefixes(urls)]
        if None in quoted:
            return Remediation.by_hand(summary, f"In the site at {site.where}, add a <Location> section with "
                                                "Require ip ADMIN_ADDRESS for each of " + ", ".join(urls)
                                                + f" (a quote in the URL: write it with care).{better}", ADMIN_PARAM)
        snippet = "\n".join(f"<Location {q}>\n    Require ip ADMIN_ADDRESS\n</Location>" for q in quoted)
        place = (f"just before the </VirtualHost> line that closes the site at {site.where}" if site.where.line
                 else f"at the end of {server.config}")
        how = (f"Add, {place} (the last <Location> wins): `{snippet}` (or AuthType Basic with `Require "
               "valid-user`); then `apache2ctl configtest` and `systemctl reload apache2`.")
    elif server.kind == "tomcat":
        how = (f"In the file that defines the context of {', '.join(urls)} (its <Context> in conf/Catalina/ under "
               f"the Host's name, or in server.xml; site at {site.where}), add `<Valve className=\"org.apache."
               "catalina.valves.RemoteCIDRValve\" allow=\"127.0.0.0/8, ::1/128, ADMIN_ADDRESS\"/>` inside "
               "<Context> (a Valve in the application's own META-INF/context.xml is ignored when such a file "
               "exists), then `systemctl restart tomcat10`.")
    else:
        how = (f"Allow only your own addresses to {', '.join(urls)} in {server.kind}'s own configuration of that "
               "application, or put it behind a password.")
    return Remediation.by_hand(summary, how + better, ADMIN_PARAM)


@check(id="web.admin_exposed", severity="high", summary="Admin back end anyone can reach",
       needs=(WEB_SERVERS, WEB_CONTENT, NGINX_TEXT), budget=_budget, tags=("T1190", "T1133"),
       references=("https://nginx.org/en/docs/http/ngx_http_access_module.html",
                   "https://httpd.apache.org/docs/2.4/howto/access.html"))
def admin_exposed(ctx: Context) -> Iterator[Finding]:
    """phpMyAdmin, Adminer, phpPgAdmin, a Tomcat manager, a WordPress or Joomla login, an admin directory:
    found under a document root (marker files, data/web/admin_paths.toml) and open to anyone by the server's
    own rules. Restricted (an address list, a password) or refused is quiet; rules hostguard cannot evaluate
    give an info finding saying so. One finding per installed app (its first open URL); the fix restricts
    every URL of the app that is not restricted yet."""
    apps = catalogue().apps
    text = ctx.fact(NGINX_TEXT)
    for server, site, policy, root, index in _indexed(ctx):
        for app, rel_dir, rel_file in _installed(apps, index):
            unrestricted: list[tuple[str, Access]] = []
            for pattern in app.urls:
                path = pattern.replace("{file}", rel_file) if rel_file else pattern
                url = url_of(root, posixpath.join(rel_dir, path) if rel_dir else path)
                access = policy.access(url)
                if access.reach not in (Reach.RESTRICTED, Reach.DENIED) and not _allowed(ctx, url):
                    unrestricted.append((url, access))
            if not unrestricted:
                continue
            url, access = unrestricted[0]
            where = posixpath.join(root.path, rel_dir, rel_file) if rel_file else \
                posixpath.join(root.path, rel_dir) if rel_dir else root.path
            unknown = access.reach == Reach.UNKNOWN
            yield ctx.finding(
                f"{app.name} at {url} ({site.label()}) "
                + ("may be open: the server's rules cannot be evaluated here" if unknown
                   else "is open to anyone"),
                _site_target(site, where, url, app=app.name),
                severity="info" if unknown else app.severity,
                evidence={**_access_evidence(site, url, access), "app": app.name, "path": where,
                          "why_it_matters": app.why},
                remediation=_restrict_fix(server, site, [u for u, _ in unrestricted], app.name, text))


def _installed(apps: tuple[AdminApp, ...], index: RootIndex) -> Iterator[tuple[AdminApp, str, str]]:
    """(app, its directory relative to the root, its file for one-file apps) for every app present."""
    dirs = [""] + list(index.dirs)
    for app in apps:
        limit = 0 if app.where == "root" else app.depth
        if app.markers:
            for d in dirs:
                if (d.count("/") + 1 if d else 0) > limit:
                    continue
                if any(index.exists(posixpath.join(d, m) if d else m) for m in app.markers):
                    yield app, d, ""
        if app.files:
            for rel in index.matching(app.files):
                parent = rel.rpartition("/")[0]
                if (parent.count("/") + 1 if parent else 0) <= limit:
                    yield app, parent, rel.rpartition("/")[2]


@check(id="web.leftover_exposed", severity="high", summary="Secrets, dumps or source copies served from a web root",
       needs=(WEB_SERVERS, WEB_CONTENT), budget=_budget, tags=("T1552.001", "T1213"))
def leftover_exposed(ctx: Context) -> Iterator[Finding]:
    """Files that must never be served, found under a document root and open to anyone: ``.env`` and keys,
    ``.git/``, database dumps, PHP copies the server sends as text (``wp-config.php.save``), archives, editor
    backups (data/web/leftovers.toml). One finding per root and kind, with counts and samples."""
    for _server, site, policy, root, index in _indexed(ctx):
        for kind in catalogue().leftovers:
            shown: list[dict[str, str]] = []
            count = 0
            for rel in index.matching(kind.globs):
                url = url_of(root, rel)
                if policy.access(url).reach != Reach.OPEN or _allowed(ctx, url):
                    continue
                count += 1
                if len(shown) < SAMPLES:
                    shown.append({"url": url, "path": posixpath.join(root.path, rel)})
            if not count:
                continue
            yield ctx.finding(
                f"{count} {kind.kind} file{'s' if count != 1 else ''} served from {root.path} ({site.label()})",
                _site_target(site, root.path, root.url, leftovers=kind.kind), severity=kind.severity,
                evidence={"site": site.label(), "root": root.path, "count": count, "samples": shown,
                          "why_it_matters": kind.why},
                remediation=Remediation.by_hand(
                    f"Move the {kind.kind} files out of {root.path} (to a directory the web server does not "
                    "serve), or deny them in the server's configuration",
                    "Only you know which of them the site still needs; " + ", ".join(s["path"] for s in shown)
                    + (" and more (see the evidence)" if count > len(shown) else "")
                    + ". Rotate any password or key such a file held: it may have been read already."))


@check(id="web.phpinfo_exposed", severity="medium", summary="phpinfo() page anyone can open",
       needs=(WEB_SERVERS, WEB_CONTENT), budget=_budget, tags=("T1592",))
def phpinfo_exposed(ctx: Context) -> Iterator[Finding]:
    """A small PHP file under a document root that calls ``phpinfo()``, executed as PHP for anyone: it
    prints the exact PHP version, modules, paths and environment (sometimes secrets)."""
    data = catalogue()
    content = ctx.fact(WEB_CONTENT)
    for _server, site, policy, root, index in _indexed(ctx, php=True):
        for rel in index.matching(data.phpinfo_globs):
            url = url_of(root, rel)
            path = posixpath.join(root.path, rel)
            head = content.head(path, data.phpinfo_bytes + 1)
            if head is None or len(head) > data.phpinfo_bytes or not calls_phpinfo(head, data.phpinfo_pattern):
                continue
            if policy.access(url).reach != Reach.OPEN or policy.runs_php(url) is False or \
                    _allowed(ctx, url):
                continue
            yield ctx.finding(f"{url} prints phpinfo() to anyone ({site.label()})",
                              _site_target(site, path, url),
                              evidence={"site": site.label(), "url": url, "path": path,
                                        "why_it_matters": data.phpinfo_why},
                              remediation=Remediation.by_hand(
                                  f"Remove {path} (or move it out of the document root)",
                                  "A phpinfo() page is a debugging leftover; hostguard does not delete files "
                                  "(`hostguard malware scan` and quarantine come with issue 12)."))


# -- exact fixes of the server's own lines (server_tokens, directory listing) -------------------------------

NGINX_MAIN = "/etc/nginx/nginx.conf"
_NGINX_ONE = r"(?P<indent>[ \t]*){name}[ \t]+[^\s;#'\"{{}}\\]+[ \t]*;[ \t]*(?P<comment>#.*)?"
_NGINX_COMMENTED = re.compile(r"(?P<indent>[ \t]*)#[ \t]*server_tokens[ \t]+\w+[ \t]*;[ \t]*")
_NGINX_HTTP = re.compile(r"(?P<indent>[ \t]*)http[ \t]*\{[ \t]*(#.*)?")
_APACHE_ONE = r"(?P<indent>[ \t]*)(?P<name>{name})[ \t]+\S+[ \t]*"
# What ``Options All`` stands for in httpd 2.4 (everything but MultiViews), so a plain list can drop Indexes.
_APACHE_ALL = ("FollowSymLinks", "Includes", "ExecCGI")


def _reload(server: WebServer) -> tuple[Command, Command]:
    """The server's own configuration test, then a reload (live only: both act on the running system; a
    reload keeps open connections, and a configuration the test refuses never reaches it)."""
    if server.kind == "nginx":
        test = ("nginx", "-t") if server.config == NGINX_MAIN else ("nginx", "-t", "-c", server.config)
        return Command(test), Command(("systemctl", "try-reload-or-restart", "nginx"))
    if server.config.startswith("/etc/httpd/"):
        return Command(("apachectl", "configtest")), Command(("systemctl", "try-reload-or-restart", "httpd"))
    return Command(("apache2ctl", "configtest")), Command(("systemctl", "try-reload-or-restart", "apache2"))


def _check_words(server: WebServer) -> str:
    return "`nginx -t` and `systemctl reload nginx`" if server.kind == "nginx" else \
        "`apache2ctl configtest` and `systemctl reload apache2`"


def _nginx_set(text: ConfigText, where: Where, name: str, value: str) -> Edit | None:
    """``name value;`` in place of the line at ``where``, when that line holds that one directive alone (a
    comment after it is kept); None otherwise (several directives on a line, a value in quotes)."""
    line = text.line(where)
    m = re.fullmatch(_NGINX_ONE.format(name=name), line) if line is not None else None
    if line is None or m is None:
        return None
    comment = f" {m.group('comment')}" if m.group("comment") else ""
    return Edit(text.edit_path(where.path), where.line, line, f"{m.group('indent')}{name} {value};{comment}")


def _nginx_tokens_off(text: ConfigText) -> tuple[Edit | None, str]:
    """Where nginx sets no ``server_tokens`` in its http block: uncomment Debian's ``# server_tokens off;`` in
    that block, else insert the line right after ``http {``. (None, why) when neither can be done safely."""
    if text.http is None:
        return None, "the http block's file could not be read again"
    lines = text.lines(text.http.path)
    path = text.edit_path(text.http.path)
    if text.http_end:
        for number in range(text.http.line + 1, text.http_end):
            m = _NGINX_COMMENTED.fullmatch(lines[number - 1])
            if m:
                return Edit(path, number, lines[number - 1], f"{m.group('indent')}server_tokens off;"), ""
    opening = text.line(text.http)
    m = _NGINX_HTTP.fullmatch(opening) if opening is not None else None
    if opening is None or m is None:
        return None, f"the line {text.http} holds more than `http {{`"
    inside = lines[text.http.line:text.http_end - 1 if text.http_end else len(lines)]
    following = next((x for x in inside if x.strip()), "")   # the block's own indentation (Debian's: a tab)
    inner = following[:len(following) - len(following.lstrip(" \t"))]
    indent = inner if len(inner) > len(m.group("indent")) else m.group("indent") + "    "
    return Edit(path, text.http.line, opening, f"{opening}\n{indent}server_tokens off;"), ""


def _apache_set(text: ConfigText, where: Where, name: str, value: str) -> Edit | None:
    """``Name value`` in place of the line at ``where`` when it is that one directive (no continuation)."""
    line = text.line(where)
    m = re.fullmatch(_APACHE_ONE.format(name=name), line, re.IGNORECASE) if line is not None else None
    if line is None or m is None or line.endswith("\\"):
        return None
    return Edit(text.edit_path(where.path), where.line, line, f"{m.group('indent')}{m.group('name')} {value}")


def _apache_append(text: ConfigText, main: str, line: str) -> Edit | None:
    """``line`` added after the last line of the main file: the last word for a server-wide directive
    (httpd reads the main file's end after every include it names)."""
    lines = text.lines(main)
    if not lines or lines[-1].rstrip().endswith("\\"):
        return None
    return Edit(text.edit_path(main), len(lines), lines[-1], f"{lines[-1]}\n{line}")


def _tokens_fix(server: WebServer, settings: dict[str, tuple[str, Where]], text: ConfigText) -> Remediation:
    """Exact steps that hide the version, or by hand with the reason when the line cannot be rewritten."""
    steps: list[Step] = []
    if server.kind == "nginx":
        value, where = settings["server_tokens"]
        if where.line:
            edit, why = _nginx_set(text, where, "server_tokens", "off"), f"the line at {where} holds more than " \
                                                                         f"`server_tokens {value};`"
        else:
            edit, why = _nginx_tokens_off(text)
        if edit is None:
            return Remediation.by_hand(f"Hide {server.kind}'s version",
                                       f"Set `server_tokens off;` in the http block of {server.config} ({why}), "
                                       f"then {_check_words(server)}.")
        steps.append(edit)
    else:
        value, where = settings["ServerTokens"]
        edit = _apache_set(text, where, "ServerTokens", "Prod") if where.line else \
            _apache_append(text, server.config, "ServerTokens Prod")
        if edit is None:
            return Remediation.by_hand(f"Hide {server.kind}'s version",
                                       f"Set `ServerTokens Prod` (and `ServerSignature Off`) at "
                                       f"{where if where.line else server.config}: that line cannot be rewritten "
                                       f"safely (a continued line, or unreadable), then {_check_words(server)}.")
        steps.append(edit)
        signature, sig_where = settings.get("ServerSignature", ("Off", Where("")))
        if signature.lower() in ("on", "email") and sig_where.line:
            sig = _apache_set(text, sig_where, "ServerSignature", "Off")
            if sig is not None and (sig.path, sig.line) != (edit.path, edit.line):
                steps.append(sig)
    return Remediation(f"Hide {server.kind}'s version (the configuration test runs before the reload, which keeps "
                       "connections open)", (*steps, *_reload(server)))


@check(id="web.server_tokens", severity="low", summary="Web server announces its exact version",
       needs=(WEB_SERVERS, NGINX_TEXT, APACHE_TEXT), tags=("T1592.002",))
def server_tokens(ctx: Context) -> Iterator[Finding]:
    """nginx ``server_tokens on`` (its default) and Apache ``ServerTokens`` other than ``Prod`` put the
    version in every response header and error page: scanners pick exploits by it. The fix rewrites the line
    in force (Debian's commented ``# server_tokens off;`` is uncommented; with no line at all one is added to
    the http block, or to the end of Apache's main file), then runs the server's own configuration test."""
    servers: WebServers = ctx.fact(WEB_SERVERS)
    texts = {"nginx": ctx.fact(NGINX_TEXT), "apache": ctx.fact(APACHE_TEXT)}
    for server in servers.servers:
        settings = {name: (value, where) for name, value, where in server.settings}
        for name, value, where in server.settings:
            shows = (name == "server_tokens" and value != "off") if server.kind == "nginx" else \
                (name == "ServerTokens" and value.lower() not in ("prod", "productonly"))
            if server.kind not in texts or not shows:
                continue
            yield ctx.finding(f"{server.kind} sends its version ({name} {value})",
                              {"kind": "config", "path": where.path or server.config, "setting": name},
                              evidence={"server": server.kind, "setting": name, "value": value, "where": str(where)},
                              remediation=_tokens_fix(server, settings, texts.get(server.kind, ConfigText())))


def _without_indexes(line: str) -> tuple[str | None, str]:
    """An Apache ``Options`` line with directory listing taken out, in a form httpd accepts (it refuses a line
    that mixes ``+``/``-`` options with plain ones): a plain list loses ``Indexes`` (``All`` is spelled out
    without it; nothing left is ``None``), a relative one turns ``+Indexes`` into ``-Indexes``. (None, why)
    when the line cannot be rewritten safely, or httpd would refuse it as it stands (``+All``, a mixed list)."""
    m = re.fullmatch(r"(?P<indent>[ \t]*)(?P<name>Options)[ \t]+(?P<args>[^\"'\\]*?)[ \t]*", line, re.IGNORECASE)
    if m is None:
        return None, "the line is continued, quoted or not one Options directive"
    words = m.group("args").split()
    signed = [w[:1] in "+-" for w in words]
    if all(signed):
        if any(w[1:].lower() == "all" for w in words):
            return None, "httpd refuses `+All`/`-All` anyway"
        out = ["-" + w[1:] if w.lower() == "+indexes" else w for w in words]
    elif not any(signed):
        out = []
        for w in words:
            for word in (_APACHE_ALL if w.lower() == "all" else (w,)):
                if word.lower() != "indexes" and word.lower() not in (o.lower() for o in out):
                    out.append(word)
        out = out or ["None"]
    else:
        return None, "it mixes +/- options with plain ones, which httpd refuses anyway"
    return f"{m.group('indent')}{m.group('name')} {' '.join(out)}", ""


def _listing_fix(server: WebServer, where: Where, text: ConfigText) -> Remediation:
    summary = f"Turn directory listing off at {where}"
    if server.kind == "nginx":
        edit, why = _nginx_set(text, where, "autoindex", "off"), "the line holds more than `autoindex on;`"
    else:
        line = text.line(where)
        new, why = _without_indexes(line) if line is not None else (None, "the file could not be read again")
        edit = Edit(text.edit_path(where.path), where.line, line, new) if line is not None and new else None
    if edit is None:
        off = "autoindex off;" if server.kind == "nginx" else "Options -Indexes"
        return Remediation.by_hand(summary, f"Replace it with `{off}` ({why}; keep it only where listing files is "
                                            "the point, and then restrict who may see them), then "
                                            f"{_check_words(server)}.")
    return Remediation(summary + " (keep it only where listing files is the point, and then restrict who may "
                                 "see them)", (edit, *_reload(server)))


@check(id="web.directory_listing", severity="medium", summary="Directory listing turned on",
       needs=(WEB_SERVERS, NGINX_TEXT, APACHE_TEXT), tags=("T1083",))
def directory_listing(ctx: Context) -> Iterator[Finding]:
    """nginx ``autoindex on`` or Apache ``Options Indexes``: any directory without an index file lists its
    files (backups, uploads, dumps) to anyone. The fix rewrites that line (``autoindex off;``; the Options
    line without Indexes, in a form httpd accepts) and runs the server's configuration test."""
    servers: WebServers = ctx.fact(WEB_SERVERS)
    texts = {"nginx": ctx.fact(NGINX_TEXT), "apache": ctx.fact(APACHE_TEXT)}
    seen: set[tuple[str, str]] = set()
    for server in servers.servers:
        places: list[tuple[Site | None, tuple[str, str, Where]]] = [
            (site, s) for site in server.sites for s in site.settings]
        places += [(None, s) for s in server.settings]
        for site, (name, context, where) in places:
            if name not in ("autoindex", "Options Indexes") or (where.path, str(where.line)) in seen:
                continue
            seen.add((where.path, str(where.line)))
            label = site.label() if site is not None else server.kind
            yield ctx.finding(f"{server.kind} lists directories in {context} ({label})",
                              {"kind": "config", "path": where.path or server.config, "setting": name,
                               "line": str(where.line)},
                              evidence={"server": server.kind, "context": context, "where": str(where)},
                              remediation=_listing_fix(server, where, texts.get(server.kind, ConfigText())))


def _reports(ctx: Context) -> Iterator[tuple[Site, DocRoot, Identity, WritableReport]]:
    """What each serving account of each site can write under each of its roots (each root and account
    walked once, within the family's budget)."""
    cfg = ctx.config[WebConfig]
    accounts = ctx.fact(ACCOUNTS)
    content = ctx.fact(WEB_CONTENT)
    allow = (*default_allow(), *allow_from_globs(cfg.writable_allow))
    done: set[tuple[str, int]] = set()
    for _server, site in _sites(ctx, with_policy=False):
        for run_as in dict.fromkeys(site.run_as):
            try:
                identity = identity_for(accounts, run_as.user, run_as.group)
            except HostError as exc:
                ctx.skip(SkipReason.ERROR, str(exc), site.label())
                continue
            paths = [r.path for r in site.roots]
            for root in site.roots:
                inside = any(root.path.startswith(other.rstrip("/") + "/") for other in paths if other != root.path)
                if (root.path, identity.uid) in done or root.path.startswith("$") or inside:
                    continue   # a root inside another of the site's roots is walked with it
                done.add((root.path, identity.uid))
                try:
                    report = content.writable(root.path, identity, allow, ctx.deadline, cfg.writable_samples)
                except HostError as exc:
                    ctx.skip(SkipReason.ERROR, str(exc), site.label())
                    continue
                if not report.complete:
                    why = f"stopped in {report.stopped_in}" if report.stopped_in else \
                        f"{len(report.unreadable)} unreadable directories, {len(report.errors)} entries not judged"
                    ctx.skip(SkipReason.BUDGET if report.stopped_in else SkipReason.ERROR,
                             f"{root.path} as {identity.label()}: {why}", site.label())
                yield site, root, identity, report


def _prune(root: str, allowed: list[str]) -> list[str]:
    """find(1) arguments that skip the allowed directories under ``root``."""
    if not allowed:
        return []
    out = ["("]
    for i, path in enumerate(allowed):
        out += (["-o"] if i else []) + ["-path", path]
    return [*out, ")", "-prune", "-o"]


def _writable_fix(root: str, identity: Identity, report: WritableReport) -> Remediation:
    """The commands that make ``root`` read-only for ``identity`` (allowed directories left alone): give
    what it owns to root, take group write where the group is one of its groups, take other write. Exact
    owners before the change cannot be restored by hostguard, so these are for the owner to run."""
    allowed = sorted({d.path for d in report.drop_dirs if d.allowed})
    prune = _prune(root, allowed)
    lines = []
    if report.by_reason.get(Reason.OWNER) or (report.root_dir and report.root_dir.reason == Reason.OWNER):
        lines.append(" ".join(["find", root, "-xdev", *prune, "-user", str(identity.uid), "-exec", "chown",
                               "root:", "{}", "+"]))
    if report.by_reason.get(Reason.GROUP):
        for gid in sorted(identity.gids):
            lines.append(" ".join(["find", root, "-xdev", *prune, "-group", str(gid), "-perm", "/g+w", "-exec",
                                   "chmod", "g-w", "{}", "+"]))
    if report.by_reason.get(Reason.OTHER):
        lines.append(" ".join(["find", root, "-xdev", *prune, "-perm", "/o+w", "-exec", "chmod", "o-w", "{}", "+"]))
    if report.by_reason.get(Reason.ACL):
        lines.append(f"setfacl -R -x u:{identity.uid} {root}   (and -x g:GROUP for a named group entry; "
                     "`getfacl -R` shows them)")
    return Remediation.by_hand(
        f"Make {root} read-only for {identity.label()}; its upload and cache directories stay writable",
        "Run, after checking the samples (a deploy script that runs as that account would need another way in): "
        + "; ".join(f"`{line}`" for line in lines)
        + ". hostguard does not run them itself: the owners and modes they replace cannot be restored exactly. "
        "Then scan again.")


@check(id="web.writable_by_web_user", severity="high", summary="Web server or PHP account can write the site",
       needs=(WEB_SERVERS, WEB_CONTENT, ACCOUNTS), budget=_budget, tags=("T1505.003",),
       references=("https://man7.org/linux/man-pages/man5/acl.5.html",))
def writable_by_web_user(ctx: Context) -> Iterator[Finding]:
    """The account that serves a site (the live worker processes, else the configuration: nginx ``user``,
    Apache's ``User`` from envvars, the PHP-FPM pool's ``user``) can write files under its document root:
    as owner (a chmod does not help then), through a group it is in, the other bits or an ACL entry (with its
    mask), or by replacing the root through a writable parent. A webshell dropped by any bug in the site
    then stays. Upload and cache directories of common applications (and ``[web] writable_allow``) are
    expected to be writable and counted apart; counts and samples per root, not one finding per file."""
    for site, root, identity, report in _reports(ctx):
        count = report.files + report.dirs + (1 if report.root_dir else 0) + len(report.parents)
        if not count:
            continue
        as_root = identity.uid == 0
        parts = [f"{n} {word}{'s' if n != 1 else ''}" for n, word in ((report.files, "file"), (report.dirs, "directory"))
                 if n]
        parts = [p.replace("directorys", "directories") for p in parts]
        if report.root_dir:
            parts.append("the root directory itself")
        if report.parents:
            parts.append(f"{len(report.parents)} parent director{'ies' if len(report.parents) != 1 else 'y'} "
                         "(it can replace the whole tree)")
        title = (f"{site.label()} is served as root: every file under {root.path} is writable by the server"
                 if as_root else f"{identity.label()} can write {', '.join(parts)} under {root.path}")
        yield ctx.finding(
            title, {"kind": "path", "path": root.path, "user": identity.name or str(identity.uid)},
            severity="critical" if as_root else None,
            evidence={"site": site.label(), "root": root.path, "url": root.url, "account": identity.label(),
                      "files": report.files, "dirs": report.dirs,
                      "by_reason": {str(k): v for k, v in report.by_reason.items()},
                      "samples": [{"path": s.path, "reason": str(s.reason), "why": s.why} for s in report.samples],
                      "root_writable": report.root_dir.why if report.root_dir else None,
                      "parents": [{"path": s.path, "why": s.why} for s in report.parents],
                      "allowed": {"files": report.allowed_files, "dirs": report.allowed_dirs,
                                  "by": dict(report.allowed_by)},
                      "entries": report.entries, "complete": report.complete},
            remediation=_writable_fix(root.path, identity, report))


_PCRE_SPECIAL = frozenset(".^$|?*+()[]{}\\")


def _pcre_escape(text: str) -> str:
    """``text`` matched literally in a PCRE pattern (nginx's regex locations)."""
    return "".join("\\" + c if c in _PCRE_SPECIAL else c for c in text)


def _no_php_fix(site: Site, root: DocRoot, dirs: list[dict[str, Any]], server: WebServer | None) -> Remediation:
    """The lines that stop PHP in the writable directories, checked by the server in tests: nginx, a regex
    location per directory that denies .php, placed just before the PHP location (nginx tries regexes in
    order, nested ones of the chosen prefix first, so it goes into the same block); Apache, a <Directory>
    that refuses PHP files, at the end of the site (authorization runs before any handler)."""
    summary = "Stop PHP from running in the writable directories"
    rest = " Directories that need not be writable: see web.writable_by_web_user."
    urls = [d["url"] for d in dirs if d["url"] != "/"]
    whole = " The document root itself is writable: make it read-only instead (web.writable_by_web_user)." \
        if len(urls) != len(dirs) else ""
    if not urls:
        return Remediation.by_hand(summary, whole.strip() + rest)
    if site.server == "nginx":
        php = _php_location(site, urls[0])
        same = [u for u in urls if php is not None and _php_location(site, u) == php]
        if php is None:
            return Remediation.by_hand(summary, "nginx: for each directory, add a regex location that denies "
                                                f".php before the location that runs PHP for it ({', '.join(urls)})"
                                                + "; then nginx -t and systemctl reload nginx." + whole + rest)
        lines = [f"location ~* {nginx_word('^' + _pcre_escape(u) + '.*[.]php$')} {{ deny all; }}" for u in same]
        later = " Then scan again: the other directories run PHP through other locations." if len(same) < len(urls) \
            else ""
        how = (f"In {php.where.path}, add just before line {php.where.line} (the PHP location, in the same "
               "block): `" + "\n".join(lines)
               + "`; then `nginx -t` and `systemctl reload nginx`." + later)
        return Remediation.by_hand(summary, how + whole + rest)
    paths = [_apache_word(d["path"].rstrip("/") or "/") for d in dirs if d["url"] != "/"]
    if None in paths:
        return Remediation.by_hand(summary, "Apache: a <Directory> per directory with a <FilesMatch> of PHP files "
                                            "and Require all denied (a quote in the path: write it with care)."
                                            + whole + rest)
    snippet = "\n".join(f"<Directory {p}>\n    <FilesMatch \"\\.(php[0-9]?|phtml|phar|pht)$\">\n"
                        "        Require all denied\n    </FilesMatch>\n</Directory>" for p in paths)
    place = (f"just before the </VirtualHost> line that closes the site at {site.where}" if site.where.line
             else f"at the end of {server.config if server else 'the main configuration file'}")
    return Remediation.by_hand(summary, f"Apache: add, {place}: `{snippet}`; then `apache2ctl configtest` and "
                                        "`systemctl reload apache2`." + whole + rest)


@check(id="web.php_in_writable_dir", severity="high", summary="PHP would run from a directory the web user can write",
       needs=(WEB_SERVERS, WEB_CONTENT, ACCOUNTS), budget=_budget, tags=("T1505.003",))
def php_in_writable_dir(ctx: Context) -> Iterator[Finding]:
    """A directory the serving account can create files in, where the server would run a ``.php`` file
    requested from it (handed to PHP, and not refused by the access rules first): any upload bug becomes a
    webshell. Upload directories must be writable, so this is the check that matters for them: they must not
    run PHP. One finding per root, naming the directories."""
    servers = {id(site): server for server, site in ctx.fact(WEB_SERVERS).sites()}
    for site, root, identity, report in _reports(ctx):
        if site.policy is None:
            continue
        running = []
        for drop in report.drop_dirs:
            url = url_of(root, f"{drop.rel}/hostguard-probe.php" if drop.rel else "hostguard-probe.php")
            if site.policy.runs_php(url) and site.policy.access(url).reach is not Reach.DENIED:
                running.append({"path": drop.path, "url": url.rsplit("/", 1)[0] + "/", "why": drop.why,
                                "allowed_for": drop.allowed})
        if not running:
            continue
        shown = running[:SAMPLES]
        yield ctx.finding(
            f"PHP runs from {len(running)} director{'ies' if len(running) != 1 else 'y'} {identity.label()} can "
            f"write under {root.path} ({site.label()})",
            {"kind": "path", "path": root.path, "user": identity.name or str(identity.uid), "php": "writable"},
            evidence={"site": site.label(), "root": root.path, "account": identity.label(), "count": len(running),
                      "dirs": shown, "php_backends": list(site.php_backends)},
            remediation=_no_php_fix(site, root, shown, servers.get(id(site))))


# -- PHP settings that help a webshell ----------------------------------------------------------------------

WEB_SAPIS = ("fpm", "apache2", "cgi", "all")   # the php.ini views a web request runs with (not the CLI's)


def _php_views(ctx: Context) -> Iterator[PhpIni]:
    """The effective PHP settings of every web-facing SAPI and every PHP-FPM pool (an FPM SAPI's own view only
    when no pool runs with it: the pools are what serves, each with its overrides)."""
    views = [v for v in ctx.fact(PHP_INI) if v.sapi in WEB_SAPIS]
    pooled = {(v.version, v.sapi) for v in views if v.pool is not None}
    for view in views:
        if view.pool is not None or (view.version, view.sapi) not in pooled:
            yield view


def _php_label(view: PhpIni) -> str:
    where = f"PHP {view.version} " if view.version else "PHP "
    return where + (f"FPM pool {view.pool}" if view.pool else f"{view.sapi} SAPI")


def _php_fix(view: PhpIni, name: str, value: str, summary: str) -> Remediation:
    """Set ``name`` in a drop-in PHP reads after php.ini (when the pool does not set it itself), then reload."""
    current = view.get(name)
    if view.pool is not None and current.where.path and current.where.path not in view.files:
        return Remediation.by_hand(summary, f"The pool sets it at {current.where}: change that line to "
                                            f"`php_admin_value[{name}] = {value}`, then reload PHP-FPM.")
    if not view.scan_dir:
        return Remediation.by_hand(summary, f"Set `{name} = {value}` in {view.files[0] if view.files else 'php.ini'}"
                                            " and reload the web server or PHP-FPM.")
    reload = ("systemctl", "try-reload-or-restart", f"php{view.version}-fpm") if view.sapi == "fpm" and view.version else \
        ("systemctl", "try-reload-or-restart", "apache2") if view.sapi == "apache2" else None
    steps: list[Write | Command] = [Write(f"{view.scan_dir}/99-hostguard-{name}.ini",
                                          f"; written by hostguard: {summary.lower()}\n{name} = {value}\n")]
    if reload:
        steps.append(Command(reload, live_only=True))
    return Remediation(f"{summary} (a drop-in read after php.ini" + (f" and {current.where}" if current.where.path
                                                                       else "") + ")", tuple(steps))


@check(id="web.php_url_include", severity="high", summary="PHP may include code from URLs (allow_url_include)",
       needs=(PHP_INI,), tags=("T1190", "T1105"),
       references=("https://www.php.net/manual/en/filesystem.configuration.php#ini.allow-url-include",))
def php_url_include(ctx: Context) -> Iterator[Finding]:
    """``allow_url_include`` on turns every ``include $x`` bug into running an attacker's code fetched from
    the internet (and ``data://`` payloads); PHP itself deprecated it. Off is the default."""
    for view in _php_views(ctx):
        value = view.get("allow_url_include")
        if value.enabled:
            yield ctx.finding(f"{_php_label(view)} allows include() of URLs", _php_target(view, "allow_url_include"),
                              evidence=_php_evidence(view, "allow_url_include"),
                              remediation=_php_fix(view, "allow_url_include", "Off", "Turn allow_url_include off"))


@check(id="web.php_expose", severity="low", summary="PHP announces its version (expose_php)", needs=(PHP_INI,),
       tags=("T1592.002",))
def php_expose(ctx: Context) -> Iterator[Finding]:
    """``expose_php`` on (PHP's built-in default) adds ``X-Powered-By: PHP/8.2.x`` to every response."""
    for view in _php_views(ctx):
        if view.get("expose_php").enabled:
            yield ctx.finding(f"{_php_label(view)} sends X-Powered-By with its version", _php_target(view, "expose_php"),
                              evidence=_php_evidence(view, "expose_php"),
                              remediation=_php_fix(view, "expose_php", "Off", "Turn expose_php off"))


SHELL_FUNCTIONS = "exec,passthru,shell_exec,system,proc_open,popen,pcntl_exec"


@check(id="web.php_disable_functions", severity="low",
       summary="PHP lets scripts run shell commands (disable_functions empty)", needs=(PHP_INI,), tags=("T1505.003",))
def php_disable_functions(ctx: Context) -> Iterator[Finding]:
    """With no ``disable_functions``, a webshell (or an injected line) runs any shell command through
    ``system()``, ``exec()`` and friends. Sites rarely need them; a site that does keeps the ones it needs."""
    for view in _php_views(ctx):
        listed = {f.strip() for f in view.get("disable_functions").value.split(",") if f.strip()}
        missing = [f for f in SHELL_FUNCTIONS.split(",") if f not in listed]
        if listed or not missing:
            continue
        yield ctx.finding(f"{_php_label(view)} disables no function: scripts may run shell commands",
                          _php_target(view, "disable_functions"), evidence=_php_evidence(view, "disable_functions"),
                          remediation=_php_fix(view, "disable_functions", SHELL_FUNCTIONS,
                                               "Disable the shell functions (check first that the sites need none)"))


def _php_target(view: PhpIni, name: str) -> dict[str, Any]:
    return {"kind": "config", "path": view.files[0] if view.files else view.scan_dir, "setting": name,
            "sapi": view.sapi, **({"pool": view.pool} if view.pool else {})}


def _php_evidence(view: PhpIni, name: str) -> dict[str, Any]:
    value = view.get(name)
    return {"php": _php_label(view), "value": value.value, "set_at": str(value.where), "files": list(view.files),
            "notes": list(view.notes)}


# -- control panels on ports of their own (web.control_panel) ------------------------------------------------


PANEL_SEVERITY = {"anyone": "high", "unknown": "medium", "sources": "medium", "nobody": "info"}


@check(id="web.control_panel", severity="high", summary="Control panel (Webmin, Cockpit, aaPanel, Jenkins) on the network",
       needs=(PANELS,), tags=("T1133", "T1190"))
def control_panel(ctx: Context) -> Iterator[Finding]:
    """Server control panels on ports of their own (data/web/admin_paths.toml ``[[panel]]``): whoever logs in
    runs anything as root, so every scanner tries them. Live: a socket on the panel's port held by its
    program; under ``--root``: the panel installed, listening where its configuration says. High when the
    firewall lets anyone reach it, medium when only chosen networks (or the panel's own allow-list) or when
    that cannot be told, info when the firewall lets nobody in; a panel on loopback only is quiet."""
    found = ctx.fact(PANELS)
    for socket in found.sockets:
        panel, exposure = socket.panel, socket.exposure
        severity = PANEL_SEVERITY[exposure.state]
        if socket.allow and severity == "high":
            severity = "medium"
        sep = ", " if exposure.state in ("anyone", "sources") else "; "
        title = f"{panel.name} {'listens' if socket.seen == 'listening' else 'is installed and listens'} on " \
                f"{socket.label()}{sep}{exposure.phrase()}"
        evidence: dict[str, Any] = {"panel": panel.name, "seen": socket.seen, "where": socket.where,
                                    "files": list(socket.files), "why": panel.why, "firewall": exposure.evidence()}
        if socket.allow:
            evidence["panel_allow"] = socket.allow
        if found.notes:
            evidence["notes"] = list(found.notes)
        yield ctx.finding(title, {"kind": "port", "port": socket.port, "proto": socket.proto,
                                  "address": socket.address, "panel": panel.name},
                          evidence=evidence, severity=severity,
                          remediation=Remediation.by_hand(
                              f"Keep {panel.name} off the network", panel.fix,
                              Param("addresses", "the networks that must reach the panel, if any", "192.0.2.0/24")))
