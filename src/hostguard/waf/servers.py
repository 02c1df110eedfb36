"""ModSecurity in the web server the host runs: what ``hostguard waf enable`` writes for nginx and Apache.

This module only decides: it reads the server's configuration through the :class:`~hostguard.host.base.Host`
(this machine, or a tree under ``--root``) and returns a :class:`ServerPlan`, the whole new content of every
file it touches. ``waf/enable.py`` writes the plan through hostguard's fix machinery (backups, validation
by the server's own configuration test, reload, rollback) and ``waf disable`` puts the backups back.

nginx (Debian's ``libnginx-mod-http-modsecurity``, libmodsecurity3 3.0.9):

* ``/etc/nginx/hostguard-modsecurity.conf``: the rules file, :func:`hostguard.waf.ruleset.server_rules`
  (hostguard's files inline, CRS by explicit ``Include`` lines: 3.0.9 has no ``IncludeOptional``) and the
  JSON audit log;
* turned on for every site by a drop-in, ``/etc/nginx/conf.d/hostguard-waf.conf`` (``modsecurity on;`` and
  ``modsecurity_rules_file``), when the ``http`` block includes ``conf.d/*.conf`` as Debian's does; else
  the two lines are inserted after ``http {`` in nginx.conf. With ``--site NAME`` they are inserted into
  each ``server`` block whose ``server_name`` holds NAME instead (each line ends in ``# hostguard waf``);
* the module is loaded by Debian's ``modules-enabled`` link; when the package is installed but the link is
  gone, a file there loads it.

Apache (Debian's ``libapache2-mod-security2``, ModSecurity 2.9): Debian's ``security2.conf`` loads
``/etc/modsecurity/*.conf`` and then CRS (``owasp-crs.load``, with Debian's ``crs-setup.conf``), so hostguard
writes ``/etc/modsecurity/modsecurity.conf`` (base, settings, hostguard's rules for mod_security2, the audit
log) and never includes CRS a second time; only where ``security2.conf`` does not load CRS does the file
include CRS's request rules itself. With ``--site NAME`` the engine is off in that file and turned on in each
``<VirtualHost>`` whose ``ServerName``/``ServerAlias`` matches NAME.

A server that already runs ModSecurity set up by its owner (nginx: a ``modsecurity on`` or rules directive
hostguard did not write) is refused: two rule sets with the same ids do not load, and hostguard will not
silently replace the owner's. Nothing is installed: a missing package is one line naming it.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from hostguard.host.base import Host, HostError
from hostguard.host.web.model import Directive
from hostguard.store.waf import Exclusion
from hostguard.waf.config import DEFAULT_SITE, WafConfig, site_settings
from hostguard.waf.learn import server_exclusion_rules
from hostguard.waf.ruleset import MODES, WafSettings, crs_updates, server_rules

__all__ = ["AUDIT_LOGS", "KINDS", "FileChange", "ServerError", "ServerPlan", "plan_enable", "settings_of"]

KINDS = ("nginx", "apache")
MARK = "# hostguard waf"
# nginx's ModSecurity (libmodsecurity3) never reopens its audit log: Debian's /var/log/nginx/*.log rotation
# (rename, then USR1) would leave it writing into the renamed file. Its log is named outside that glob and
# rotated by hostguard's own logrotate file, by copy and truncation (ingest follows a truncated log). Apache
# reopens its logs on the graceful restart its rotation does.
AUDIT_LOGS = {"nginx": "/var/log/nginx/hostguard-waf-audit.jsonl", "apache": "/var/log/apache2/hostguard-waf-audit.log"}
LOGROTATE = "/etc/logrotate.d/hostguard-waf"

NGINX_MAIN = "/etc/nginx/nginx.conf"
NGINX_RULES = "/etc/nginx/hostguard-modsecurity.conf"
NGINX_DROP_IN = "/etc/nginx/conf.d/hostguard-waf.conf"
NGINX_MODULE = "/usr/lib/nginx/modules/ngx_http_modsecurity_module.so"
NGINX_MODULE_LOAD = "/etc/nginx/modules-enabled/50-mod-http-modsecurity.conf"
NGINX_PACKAGE = "libnginx-mod-http-modsecurity"
NGINX_OWN = ("modsecurity", "modsecurity_rules", "modsecurity_rules_file", "modsecurity_rules_remote")

APACHE_MAIN = "/etc/apache2/apache2.conf"
APACHE_ROOT = "/etc/apache2"
APACHE_RULES = "/etc/modsecurity/modsecurity.conf"
# hostguard's removals of CRS rules must follow them; Debian's apache2.conf reads conf-enabled/
# after mods-enabled/security2.conf, which loads CRS
APACHE_AFTER_CRS = "/etc/apache2/conf-enabled/hostguard-waf-crs.conf"
APACHE_MODULE = "/usr/lib/apache2/modules/mod_security2.so"
APACHE_ENABLED = "/etc/apache2/mods-enabled/security2.load"
APACHE_PACKAGE = "libapache2-mod-security2"
CRS_LOAD = "/usr/share/modsecurity-crs/owasp-crs.load"

SITE_NAME = re.compile(r"[A-Za-z0-9*][A-Za-z0-9.*_-]{0,252}")
NGINX_OPEN = re.compile(r"(\s*)(http|server)\s*\{\s*(?:#.*)?")
APACHE_VHOST = re.compile(r"(\s*)<VirtualHost\b[^>]*>\s*", re.I)


class ServerError(Exception):
    """The server cannot be set up as asked (a package missing, a configuration hostguard cannot change
    safely, no such site): one line for the owner, nothing changed."""


@dataclass(frozen=True)
class FileChange:
    """One file as the plan wants it: ``content`` (None: removed), ``mode`` for a file it creates."""

    path: str
    content: bytes | None
    mode: int = 0o644


@dataclass(frozen=True)
class ServerPlan:
    """What enabling ModSecurity in one server means on this host: the files and how they end up, the
    engine that will read the rules, the audit log, and what the owner should know."""

    kind: str
    engine: str
    site: str | None
    changes: tuple[FileChange, ...]
    audit_log: str
    notes: tuple[str, ...] = ()


def settings_of(config: WafConfig) -> WafSettings:
    """The rules settings ``[waf]`` asks for: the default site's, as the proxy and the middleware build them
    (virtual patches and the body limit included). A server's one rules file serves all its sites."""
    return site_settings(config, DEFAULT_SITE)[0]


def plan_enable(host: Host, kind: str, config: WafConfig, site: str | None = None,
                exclusions: Sequence[Exclusion] = ()) -> ServerPlan:
    """The files that turn ModSecurity on in ``kind`` (nginx or apache) with ``[waf]``'s settings, for every
    site or for ``site`` alone, with the owner's accepted learning ``exclusions`` (each for its host)."""
    if site is not None and not SITE_NAME.fullmatch(site):
        raise ServerError(f"--site {site!r}: a server name (letters, digits, '.', '-', '_', '*')")
    try:
        settings = settings_of(config)
    except ValueError as exc:
        raise ServerError(f"[waf]: {exc}") from exc
    rules = server_exclusion_rules(exclusions)
    try:
        if kind == "nginx":
            return _nginx(host, settings, site, rules)
        if kind == "apache":
            return _apache(host, settings, site, rules)
    except HostError as exc:
        raise ServerError(f"{kind}'s configuration: {exc}") from exc
    except FileNotFoundError as exc:   # no CRS where [waf] crs_dir says
        raise ServerError(str(exc)) from exc
    raise ServerError(f"--server {kind!r}: one of {', '.join(KINDS)}")


# -- shared -----------------------------------------------------------------------------------------------

def _real(host: Host, path: str) -> str:
    """The host path a change of ``path`` must name: links resolved inside the host (``sites-enabled/x`` is
    a link to ``sites-available/x``, and hostguard writes through no link)."""
    resolved = host.resolve(path)
    if host.root == "/":
        return posixpath.normpath(resolved)
    return posixpath.normpath("/" + posixpath.relpath(resolved, host.root))


def _audit(kind: str) -> str:
    log = AUDIT_LOGS[kind]
    return (f"# ---- audit log: every request a rule matched, one JSON object per line, for `hostguard waf ingest "
            f"--server {kind}` ----\n"
            "SecAuditEngine RelevantOnly\n"
            "# no status is relevant by itself: rule matches alone decide what is logged\n"
            'SecAuditLogRelevantStatus "^$"\n'
            "# transaction, request headers, response headers, the rule messages: never a body\n"
            "SecAuditLogParts ABFHZ\n"
            "SecAuditLogType Serial\n"
            "SecAuditLogFormat JSON\n"
            "SecAuditLogFileMode 0600\n"
            f"SecAuditLog {log}\n")


def _rules_file(host: Host, kind: str, engine: str, settings: WafSettings, crs_loaded_after: bool,
               site_rules: Sequence[str] = ()) -> bytes:
    head = (f"# Written by `hostguard waf enable --server {kind}`: ModSecurity ({engine}) with the OWASP CRS "
            f"and hostguard's own rules.\n# `hostguard waf disable --server {kind}` puts back what was here "
            "before; edit [waf] in hostguard's config and enable again rather than this file.\n")
    text = server_rules(settings, engine, crs_loaded_after=crs_loaded_after, site_rules=site_rules,
                        glob_files=host.glob, read_text=host.read_optional)
    return (head + text + _audit(kind)).encode()


def _insert_after(text: bytes, inserts: dict[int, list[str]]) -> bytes:
    """``text`` with ``inserts[n]`` (lines) placed after line ``n`` (1-based), keeping the file's line ending."""
    lines = text.split(b"\n")
    ending = b"\r\n" if lines and lines[0].endswith(b"\r") else b"\n"
    for number in sorted(inserts, reverse=True):
        lines[number:number] = [line.encode() + (b"\r" if ending == b"\r\n" else b"") for line in inserts[number]]
    return b"\n".join(lines)


def _line(host: Host, path: str, number: int) -> str:
    lines = host.read_text(path).split("\n")
    return lines[number - 1].rstrip("\r") if 1 <= number <= len(lines) else ""


def _inner_indent(host: Host, path: str, number: int, outer: str) -> str:
    """The indentation of the first line after line ``number`` that holds something (else ``outer`` + 4)."""
    for line in host.read_text(path).split("\n")[number:]:
        if line.strip() and not line.strip().startswith("}") and not line.strip().startswith("</"):
            return line[:len(line) - len(line.lstrip())]
    return outer + "    "


def _changed(host: Host, path: str, content: bytes | None, mode: int = 0o644) -> FileChange | None:
    """A change of ``path`` to ``content``, None when the file already reads so."""
    try:
        now: bytes | None = host.read_bytes(path)
    except HostError:
        now = None
    return None if now == content else FileChange(path, content, mode)


def _walk(block: tuple[Directive, ...] | None) -> Iterator[Directive]:
    for d in block or ():
        yield d
        yield from _walk(d.block)


# -- nginx ------------------------------------------------------------------------------------------------

def _nginx(host: Host, settings: WafSettings, site: str | None, exclusions: Sequence[str]) -> ServerPlan:
    from hostguard.host.web.nginx import parse_config, parse_text

    if not host.exists(NGINX_MAIN):
        raise ServerError(f"nginx is not installed here ({NGINX_MAIN} is missing)")
    config = parse_config(host, NGINX_MAIN)
    if not host.exists(NGINX_MODULE):
        raise ServerError(f"nginx's ModSecurity module is not installed ({NGINX_MODULE} is missing): "
                          f"apt-get install {NGINX_PACKAGE}")
    changes: list[FileChange] = []
    notes: list[str] = []
    loaded = any(d.name == "load_module" and d.args and d.args[0].endswith("ngx_http_modsecurity_module.so")
                 for d in config.tree)
    raw_main = parse_text(host.read_text(NGINX_MAIN), NGINX_MAIN)
    if not loaded:
        includes = [d.args[0] for d in raw_main if d.name == "include" and d.args]
        present = posixpath.basename(NGINX_MODULE_LOAD) in host.listdir(posixpath.dirname(NGINX_MODULE_LOAD)) or \
            host.exists(NGINX_MODULE_LOAD)
        if present or not any(fnmatch.fnmatch(NGINX_MODULE_LOAD, posixpath.join("/etc/nginx", p)) for p in includes):
            raise ServerError(f"nginx does not load its ModSecurity module: add `load_module {NGINX_MODULE};` at the "
                              f"top of {NGINX_MAIN}")
        changes.append(FileChange(NGINX_MODULE_LOAD, f"load_module {NGINX_MODULE};\n".encode()))
        notes.append(f"the module was installed but not loaded: {NGINX_MODULE_LOAD} loads it")
    http = next((d for d in config.tree if d.name == "http" and d.block is not None), None)
    if http is None:
        raise ServerError(f"{NGINX_MAIN} has no http block")
    ours = {NGINX_DROP_IN, NGINX_RULES}
    for d in _walk(config.tree):
        if d.name in NGINX_OWN and d.args != ("off",) and d.where.path not in ours \
                and not _line(host, d.where.path, d.where.line).rstrip().endswith(MARK):
            raise ServerError(f"nginx already runs ModSecurity set up by hand ({d.where}: {d.name}): hostguard "
                              "would load a second rule set; remove that first")
    _nginx_scope(host, http, site)
    rules = _rules_file(host, "nginx", "libmodsecurity3", settings, crs_loaded_after=False, site_rules=exclusions)
    directives = ["modsecurity on;", f"modsecurity_rules_file {NGINX_RULES};"]
    on = _nginx_everywhere(host, http, raw_main, directives) if site is None else \
        _nginx_site(host, http, site, directives)
    changes += [c for c in (_changed(host, NGINX_RULES, rules), *on) if c is not None]
    if host.exists(posixpath.dirname(LOGROTATE)):
        rotate = _changed(host, LOGROTATE, (
            f"# Written by `hostguard waf enable --server nginx`: nginx's ModSecurity never reopens its audit log,\n"
            f"# so it is copied and truncated in place (hostguard waf ingest follows a truncated log).\n"
            f"{AUDIT_LOGS['nginx']} {{\n\tweekly\n\trotate 8\n\tcompress\n\tdelaycompress\n\tmissingok\n"
            f"\tnotifempty\n\tcopytruncate\n\tsu root root\n}}\n").encode())
        changes += [rotate] if rotate is not None else []
    return ServerPlan("nginx", "libmodsecurity3", site, tuple(changes), AUDIT_LOGS["nginx"], tuple(notes))


def _nginx_scope(host: Host, http: Directive, site: str | None) -> None:
    """Refuse to mix scopes: hostguard's rules on for every site (http level) and for single sites (server
    level) would give one server block the rules file twice, which libmodsecurity refuses (duplicate ids)."""
    def ours(d: Directive) -> bool:
        return d.name in NGINX_OWN and (d.where.path == NGINX_DROP_IN or
                                        _line(host, d.where.path, d.where.line).rstrip().endswith(MARK))

    everywhere = any(ours(d) for d in http.block or ())
    sites = [s for s in http.block or () if s.name == "server" and any(ours(d) for d in _walk(s.block))]
    if site is None and sites:
        raise ServerError(f"ModSecurity is on for single sites ({', '.join(str(s.where) for s in sites[:5])}): "
                          "`hostguard waf disable --server nginx` first, then enable it for every site")
    if site is not None and everywhere:
        raise ServerError("ModSecurity is already on for every site of this nginx (hostguard waf enable without "
                          "--site): nothing to add for one site")


def _opening(host: Host, path: str, number: int, pattern: re.Pattern[str], by_hand: str) -> str:
    """The indentation for lines inserted into the block opened on line ``number``, which must hold nothing
    but the opening (anything else on it stays the owner's to edit: ``by_hand`` says what to add)."""
    line = _line(host, path, number)
    m = pattern.fullmatch(line)
    if m is None:
        raise ServerError(f"{path}:{number}: `{line.strip()[:80]}` holds more than a block's opening: add by hand "
                          f"inside it: {by_hand}")
    return _inner_indent(host, path, number, m.group(1))


def _inserted(host: Host, blocks: list[tuple[str, int]], lines: list[str], pattern: re.Pattern[str],
              by_hand: str) -> list[FileChange]:
    """``lines`` (indented as the block's own) inserted after the opening line of each block, per file; a block
    that already holds them right there is left alone."""
    by_file: dict[str, dict[int, list[str]]] = {}
    for path, number in blocks:
        indent = _opening(host, path, number, pattern, by_hand)
        wanted = [indent + line for line in lines]
        following = host.read_text(path).split("\n")[number:number + len(wanted)]
        if [x.rstrip("\r") for x in following] != wanted:
            by_file.setdefault(path, {})[number] = wanted
    return [FileChange(_real(host, path), _insert_after(host.read_bytes(path), inserts))
            for path, inserts in by_file.items()]


def _nginx_everywhere(host: Host, http: Directive, raw_main: tuple[Directive, ...],
                      directives: list[str]) -> list[FileChange | None]:
    """The drop-in in conf.d when the http block includes it, else the lines after ``http {``."""
    raw_http = next((d for d in raw_main if d.name == "http" and d.block is not None), None)
    includes = [d.args[0] for d in (raw_http.block or ()) if d.name == "include" and d.args] if raw_http else []
    if any(fnmatch.fnmatch(NGINX_DROP_IN, posixpath.join("/etc/nginx", p)) for p in includes):
        text = ("# Written by `hostguard waf enable --server nginx`: ModSecurity for every site of this nginx "
                "(`hostguard waf disable --server nginx` removes it).\n" + "\n".join(directives) + "\n")
        return [_changed(host, NGINX_DROP_IN, text.encode())]
    return list(_inserted(host, [(http.where.path, http.where.line)], [f"{d}  {MARK}" for d in directives],
                          NGINX_OPEN, " ".join(directives)))


def _nginx_site(host: Host, http: Directive, site: str, directives: list[str]) -> list[FileChange | None]:
    servers = [d for d in http.block or () if d.name == "server" and d.block is not None]
    names = [(s, [a.lower() for d in s.block or () if d.name == "server_name" for a in d.args]) for s in servers]
    chosen = [s for s, n in names if site.lower() in n]
    if not chosen:
        known = sorted({n for _, ns in names for n in ns if n not in ("_", '""', "")})
        raise ServerError(f"no nginx server block has server_name {site}" +
                          (f" (server names: {', '.join(known[:20])})" if known else ""))
    return list(_inserted(host, [(s.where.path, s.where.line) for s in chosen], [f"{d}  {MARK}" for d in directives],
                          NGINX_OPEN, " ".join(directives)))


# -- Apache -----------------------------------------------------------------------------------------------

def _apache(host: Host, settings: WafSettings, site: str | None, exclusions: Sequence[str]) -> ServerPlan:
    from hostguard.host.web.apache import read_config

    if not host.exists(APACHE_MAIN):
        raise ServerError(f"Apache is not installed here the Debian way ({APACHE_MAIN} is missing)")
    if not host.exists(APACHE_MODULE):
        raise ServerError(f"Apache's ModSecurity module is not installed ({APACHE_MODULE} is missing): "
                          f"apt-get install {APACHE_PACKAGE}")
    if not host.exists(APACHE_ENABLED):
        raise ServerError("mod_security2 is installed but not enabled: run `a2enmod security2`, then enable again")
    config = read_config(host, APACHE_MAIN, APACHE_ROOT, f"{APACHE_ROOT}/envvars")
    if not _apache_includes(host, config.files):
        raise ServerError(f"Apache's security2.conf does not include /etc/modsecurity/*.conf (Debian's does): "
                          f"hostguard's {APACHE_RULES} would not be read")
    notes: list[str] = []
    crs_after = CRS_LOAD in config.files
    if not crs_after:
        notes.append("security2.conf does not load CRS: hostguard's file includes CRS's request rules itself")
    if host.exists(APACHE_RULES):
        notes.append(f"{APACHE_RULES} is replaced (its backup is kept; `hostguard waf disable --server apache` "
                     "puts it back)")
    text = _rules_file(host, "apache", "modsecurity2", settings, crs_loaded_after=crs_after, site_rules=exclusions)
    if site is not None:   # the engine line of the settings: off here, on in the chosen sites
        text = re.sub(rb"(?m)^SecRuleEngine \S+$", b"# on only in the sites hostguard enabled it for\n"
                                                   b"SecRuleEngine Off", text, count=1)
    changes = [_changed(host, APACHE_RULES, text)]
    updates = crs_updates(settings, "modsecurity2", host.read_optional) if crs_after else ""
    if updates:
        changes.append(_changed(host, APACHE_AFTER_CRS, (
            f"{MARK}: hostguard's changes to CRS rules, read after security2.conf has loaded CRS\n"
            f"<IfModule security2_module>\n{updates}</IfModule>\n").encode()))
    if site is not None:
        changes += _apache_site(host, config.tree, site, settings.mode)
    return ServerPlan("apache", "modsecurity2", site, tuple(c for c in changes if c is not None),
                      AUDIT_LOGS["apache"], tuple(notes))


def _apache_includes(host: Host, files: tuple[str, ...]) -> bool:
    """Whether some file httpd read includes /etc/modsecurity/*.conf (or the file hostguard writes there)."""
    from hostguard.host.web.apache import parse_text

    for path in files:
        try:
            raws = parse_text(host.read_text(path), path)
        except HostError:
            continue
        while raws:
            raw = raws.pop()
            raws += raw.block or []
            if raw.name.lower() in ("include", "includeoptional") and raw.args and \
                    fnmatch.fnmatch(APACHE_RULES, raw.args[0]):
                return True
    return False


def _apache_site(host: Host, tree: tuple[Directive, ...], site: str, mode: str) -> list[FileChange]:
    vhosts = [d for d in _walk(tree) if d.name.lower() == "virtualhost" and d.block is not None]
    names = [(v, [a.lower().rsplit(":", 1)[0] if d.name.lower() == "servername" else a.lower()
                  for d in v.block or () if d.name.lower() in ("servername", "serveralias") for a in d.args])
             for v in vhosts]
    chosen = [v for v, ns in names if any(fnmatch.fnmatch(site.lower(), n) for n in ns)]
    if not chosen:
        known = sorted({n for _, ns in names for n in ns})
        raise ServerError(f"no Apache <VirtualHost> has ServerName or ServerAlias {site}" +
                          (f" (names: {', '.join(known[:20])})" if known else ""))
    engine = MODES[mode]
    lines = [f"{MARK} --site {site}: ModSecurity on for this site", "<IfModule security2_module>",
             f"    SecRuleEngine {engine}", "</IfModule>"]
    return _inserted(host, [(v.where.path, v.where.line) for v in chosen], lines, APACHE_VHOST,
                     f"SecRuleEngine {engine}")
