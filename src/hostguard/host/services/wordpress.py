"""The password hashes of WordPress users, read from each local WordPress's own database with its own login.

A WordPress back end (``wp-login.php``) is one of the checklist's "website back ends", and its admin accounts
are a favourite target: a weak admin password gives an attacker PHP code execution through the theme and
plugin editors. WordPress keeps each user's hash in ``<prefix>users.user_pass``: phpass portable hashes
(``$P$``), the ``$wp$2y$`` bcrypt form of WordPress >= 6.8, and very old plain MD5. This reader fetches them
so the offline cracker can try the dictionary without a single failed login.

**Finding installs.** Under every document root of every site (``WEB_SERVERS``; the walk is
``WEB_CONTENT``'s, shared with the web checks), each directory holding ``wp-settings.php`` is a WordPress;
its ``wp-config.php`` is the one WordPress itself loads (``wp-load.php``): in that directory, else in its
parent when the parent is not itself a WordPress (the "config above the web root" layout).

**Debian's packaged WordPress** ships one shared ``/usr/share/wordpress/wp-config.php`` that, per request,
loads ``/etc/wordpress/config-<host>.php`` (or ``config-<domain>.php``, ``config-default.php``) and fills in
``DB_NAME``/``DB_USER``/``DB_HOST``/``$table_prefix`` defaults the site file did not set. A host may serve
several blogs that way, so every ``/etc/wordpress/config-*.php`` is read as one site, its values first and
the shared file's defaults after (as PHP's first ``define`` wins); a symlinked ``config-default.php`` that
leads to the same database is read once.

**Reading wp-config.php.** A small PHP lexer (PHP and HTML modes, comments, both quote styles with their
escapes) finds ``define('DB_…', 'literal')`` (the first define of a name wins, as in PHP), ``const`` and
``$table_prefix = 'literal';`` (the last assignment wins). A value that is computed (``getenv()``,
concatenated variables, an interpolating string) is never guessed: the site is a problem line "not read".

**Connecting.** Only to this host: ``DB_HOST`` of ``localhost`` (optionally ``:port`` or ``:/socket``; PHP's
mysqli then always uses a unix socket), ``127.0.0.1[:port]``, ``[::1][:port]``. ``localhost`` without a socket
uses the local MariaDB/MySQL server's socket from ``SERVICES``. Any other host is "database on another host:
not read". One login as the configured ``DB_USER``; ``DB_PASSWORD`` is never written into anything returned.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hostguard.data import load_toml
from hostguard.engine.facts import Fact
from hostguard.findings import SkipReason
from hostguard.host.base import Host, HostError, Unavailable
from hostguard.host.services.common import defaults, one_line
from hostguard.host.services.configured import SERVICES, Services
from hostguard.host.services.mysql import MysqlConfig
from hostguard.host.services.stored import StoredCredential, StoredCredentials
from hostguard.host.web.content import WEB_CONTENT, WebContent
from hostguard.host.web.servers import WEB_SERVERS, WebServers
from hostguard.probes.base import Endpoint, ProbeError
from hostguard.probes.mysql import MysqlSession, QueryError

SERVICE = "WordPress"
DB_KEYS = ("DB_NAME", "DB_USER", "DB_PASSWORD", "DB_HOST")
MAX_CONFIG = 1 << 20              # a wp-config.php is a few KiB; a larger one is read this far
_PREFIX = re.compile(r"^[A-Za-z0-9_]*$")   # what WordPress itself accepts (wpdb::set_prefix)
_TIMEOUT = 10.0


def _settings() -> dict[str, Any]:
    table: dict[str, Any] = load_toml("services/stored_credentials.toml")["wordpress"]
    return table


# -- a PHP lexer just large enough for wp-config.php ----------------------------------------------------


@dataclass(frozen=True)
class Token:
    """One PHP token: ``kind`` is "str" (``value`` the decoded literal, None when it interpolates
    variables), "id" (a name), "var" (``$name``), "op" (one punctuation character), or "end" (``?>``)."""

    kind: str
    value: str | None


_DQ_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "e": "\x1b", "f": "\f", "\\": "\\", "$": "$", '"': '"'}
_NAME = re.compile(r"[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*")
_OCTAL = re.compile(r"[0-7]{1,3}")
_HEX_ESC = re.compile(r"x([0-9A-Fa-f]{1,2})")
_UNICODE = re.compile(r"u\{([0-9A-Fa-f]{1,6})\}")
_OPEN_TAG = re.compile(r"<\?(?:php(?=\s|$)|=)?", re.IGNORECASE)


def _single_quoted(text: str, i: int) -> tuple[str, int]:
    """The literal starting after the opening ``'`` at ``i``: only ``\\'`` and ``\\\\`` are escapes."""
    out: list[str] = []
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "'\\":
            out.append(text[i + 1])
            i += 2
        elif c == "'":
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    return "".join(out), i


def _double_quoted(text: str, i: int) -> tuple[str | None, int]:
    """The literal after the opening ``"``: PHP's escapes decoded; None when a ``$name`` or ``{$`` would be
    interpolated (the value is computed at run time)."""
    out: list[str] = []
    interpolates = False
    while i < len(text):
        c = text[i]
        if c == '"':
            return (None if interpolates else "".join(out)), i + 1
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            if n in _DQ_ESCAPES:
                out.append(_DQ_ESCAPES[n])
                i += 2
                continue
            m = _OCTAL.match(text, i + 1)
            if m:
                out.append(chr(int(m.group(0), 8) & 0xFF))
                i = m.end()
                continue
            m = _HEX_ESC.match(text, i + 1)
            if m:
                out.append(chr(int(m.group(1), 16)))
                i = m.end()
                continue
            m = _UNICODE.match(text, i + 1)
            if m and int(m.group(1), 16) <= 0x10FFFF:
                out.append(chr(int(m.group(1), 16)))
                i = m.end()
                continue
            out.append(c)
            i += 1
            continue
        if c == "$" and i + 1 < len(text) and (text[i + 1] == "_" or text[i + 1].isalpha() or text[i + 1] == "{"):
            interpolates = True
        if c == "{" and i + 1 < len(text) and text[i + 1] == "$":
            interpolates = True
        out.append(c)
        i += 1
    return (None if interpolates else "".join(out)), i


def tokens(text: str) -> Iterator[Token]:
    """PHP tokens of ``text`` (HTML outside ``<?php … ?>`` skipped; comments dropped). Total: any input gives
    tokens, an unterminated string or comment just ends them."""
    i = 0
    n = len(text)
    while i < n:
        m = _OPEN_TAG.search(text, i)
        if m is None:
            return
        i = m.end()
        while i < n:
            c = text[i]
            if c.isspace():
                i += 1
            elif text.startswith("?>", i):
                i += 2
                yield Token("end", None)
                break
            elif c == "#" or text.startswith("//", i):
                if text.startswith("#[", i):        # a PHP 8 attribute: not a comment, skip the bracket
                    i += 1
                    continue
                end = text.find("\n", i)
                end = n if end == -1 else end
                close = text.find("?>", i, end)       # a one-line comment ends at ?> too
                i = end if close == -1 else close
            elif text.startswith("/*", i):
                at = text.find("*/", i + 2)
                i = n if at == -1 else at + 2
            elif c == "'":
                value, i = _single_quoted(text, i + 1)
                yield Token("str", value)
            elif c == '"':
                dq, i = _double_quoted(text, i + 1)
                yield Token("str", dq)
            elif c == "$":
                m2 = _NAME.match(text, i + 1)
                if m2:
                    yield Token("var", m2.group(0))
                    i = m2.end()
                else:
                    yield Token("op", "$")
                    i += 1
            else:
                m2 = _NAME.match(text, i)
                if m2:
                    yield Token("id", m2.group(0))
                    i = m2.end()
                else:
                    yield Token("op", c)
                    i += 1


def _literal(expr: list[Token]) -> str | None:
    """The value of an expression made only of string literals joined by ``.`` (None: computed)."""
    if not expr or len(expr) % 2 == 0:
        return None
    parts: list[str] = []
    for k, tok in enumerate(expr):
        if k % 2 == 0:
            if tok.kind != "str" or tok.value is None:
                return None
            parts.append(tok.value)
        elif tok != Token("op", "."):
            return None
    return "".join(parts)


def _expression(toks: list[Token], i: int, stops: str) -> tuple[list[Token], int]:
    """Tokens from ``i`` up to a ``stops`` character at bracket depth 0 (the index of that stop)."""
    depth = 0
    out: list[Token] = []
    while i < len(toks):
        tok = toks[i]
        if tok.kind == "end":
            break
        if tok.kind == "op" and tok.value is not None:
            if depth == 0 and tok.value in stops:
                break
            if tok.value in "([{":
                depth += 1
            elif tok.value in ")]}":
                depth -= 1
        out.append(tok)
        i += 1
    return out, i


@dataclass(frozen=True)
class WpConfig:
    """What a wp-config.php sets: literal constants, constants it computes, and ``$table_prefix``."""

    path: str
    constants: dict[str, str] = field(default_factory=dict, repr=False)   # DB_PASSWORD is in here: never shown
    computed: frozenset[str] = frozenset()
    table_prefix: str | None = None
    prefix_computed: bool = False


def parse_wp_config(text: str, path: str) -> WpConfig:
    """The ``define``/``const`` constants and ``$table_prefix`` of a wp-config.php (see the module's
    docstring); never raises on any text."""
    toks = list(tokens(text[:MAX_CONFIG]))
    constants: dict[str, str] = {}
    computed: set[str] = set()
    prefix: str | None = None
    prefix_computed = False

    def define(name: str, expr: list[Token]) -> None:
        """PHP keeps the first definition of a constant: a later one of the same name changes nothing."""
        if name not in constants and name not in computed:
            value = _literal(expr)
            if value is None:
                computed.add(name)
            else:
                constants[name] = value

    i = 0
    while i < len(toks):
        tok = toks[i]
        if (tok.kind == "id" and (tok.value or "").lower() == "define" and i + 3 < len(toks)
                and toks[i + 1] == Token("op", "(") and toks[i + 2].kind == "str" and toks[i + 3] == Token("op", ",")):
            name = toks[i + 2].value
            expr, end = _expression(toks, i + 4, ",)")
            if name is not None:
                define(name, expr)
            i = end
            continue
        if (tok.kind == "id" and (tok.value or "").lower() == "const" and i + 2 < len(toks)
                and toks[i + 1].kind == "id" and toks[i + 2] == Token("op", "=")):
            expr, end = _expression(toks, i + 3, ";,")
            define(toks[i + 1].value or "", expr)
            i = end
            continue
        if (tok == Token("var", "table_prefix") and i + 1 < len(toks) and toks[i + 1] == Token("op", "=")
                and not (i + 2 < len(toks) and toks[i + 2] == Token("op", "="))):
            expr, end = _expression(toks, i + 2, ";")
            prefix = _literal(expr)
            prefix_computed = prefix is None
            i = end
            continue
        i += 1
    return WpConfig(path, constants, frozenset(computed), prefix, prefix_computed)


# -- finding the installs -------------------------------------------------------------------------------


def _parent(path: str) -> str:
    return path.rstrip("/").rpartition("/")[0] or "/"


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def find_configs(host: Host, servers: WebServers, content: WebContent) -> tuple[list[str], list[str]]:
    """The wp-config.php files of the WordPress installs under the web roots (host paths, each once), and
    the roots that could be looked at only in part."""
    configs: list[str] = []
    problems: list[str] = []
    roots: list[str] = []
    for _, site in servers.sites():
        for doc_root in site.roots:
            if doc_root.path not in roots:
                roots.append(doc_root.path)
    for root in roots:
        index = content.index(root)
        if index.stopped and index.stopped != "the document root does not exist":
            problems.append(f"{SERVICE}: {root}: looked at in part ({index.stopped})")
        installs = [_parent(_join(root, rel)) for rel in index.files if rel.rpartition("/")[2] == "wp-settings.php"]
        for install in installs:
            here = _join(install, "wp-config.php")
            above = _join(_parent(install), "wp-config.php")
            if host.exists(here):
                found = here
            elif install != "/" and host.exists(above) and not host.exists(_join(_parent(install), "wp-settings.php")):
                found = above
            else:
                problems.append(f"{SERVICE}: {install}: no wp-config.php (not installed yet?)")
                continue
            if found not in configs:
                configs.append(found)
    return configs, problems


# -- where the database is ------------------------------------------------------------------------------


class RemoteDatabase(Exception):
    """DB_HOST names another machine: hostguard does not connect there."""


def _default_socket(services: Services | None) -> str:
    for service in services.services if services else ():
        if isinstance(service.record, MysqlConfig) and service.record.socket.value:
            return service.record.socket.value
    return defaults("mysql")["socket"]


def parse_db_host(value: str) -> tuple[str, int | None, str | None]:
    """``DB_HOST`` split as WordPress does (wpdb::parse_db_host): host, port, socket."""
    text = value.strip()
    socket: str | None = None
    at = text.find(":/")
    if at != -1:
        socket, text = text[at + 1:], text[:at]
    if text.count(":") > 1:
        m = re.match(r"^\[?([0-9A-Fa-f:.]+)\]?(?::(\d+))?$", text) if text.startswith("[") else None
        host, port = (m.group(1), m.group(2)) if m else (text, None)
    else:
        m = re.match(r"^([^:/]*)(?::(\d*))?", text)
        host, port = (m.group(1), m.group(2)) if m else (text, None)
    return host, int(port) if port and len(port) <= 5 else None, socket


def db_endpoint(host: Host, value: str, services: Services | None) -> tuple[Endpoint, str]:
    """The endpoint ``DB_HOST`` means on this host and its label; :class:`RemoteDatabase` for another host."""
    name, port, socket = parse_db_host(value)
    if name in ("", "localhost"):
        # mysqli: "localhost" is always the unix socket (a port is ignored)
        path = socket or _default_socket(services)
        try:
            return Endpoint.unix(host.resolve(path)), path
        except HostError:
            raise QueryError(f"no unix socket at {path}") from None
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        raise RemoteDatabase(value) from None
    if not address.is_loopback:
        raise RemoteDatabase(value)
    endpoint = Endpoint.tcp(str(address), port or 3306)
    return endpoint, endpoint.label()


# -- reading the users ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """One WordPress database to read: from which file(s), with which settings (the password stays here)."""

    source: str
    db_name: str
    db_user: str
    db_password: str = field(repr=False)
    db_host: str
    prefix: str


def _site(config: WpConfig, defaults_from: WpConfig | None, source: str) -> Site | str:
    """The database settings of ``config`` (the Debian shared file's defaults after it), or why not."""
    values = dict(defaults_from.constants) if defaults_from else {}
    computed = set(defaults_from.computed) if defaults_from else set()
    for key in DB_KEYS:
        if key in config.constants:
            values[key] = config.constants[key]
            computed.discard(key)
        elif key in config.computed:
            computed.add(key)
            values.pop(key, None)
    bad = [k for k in DB_KEYS if k in computed]
    if bad:
        return f"{SERVICE}: {source}: {', '.join(bad)} computed at run time: not read"
    missing = [k for k in DB_KEYS if k not in values and k != "DB_PASSWORD"]
    if missing:
        return f"{SERVICE}: {source}: {', '.join(missing)} not set: not read"
    prefix = config.table_prefix
    prefix_computed = config.prefix_computed
    if prefix is None and not prefix_computed and defaults_from is not None:
        prefix, prefix_computed = defaults_from.table_prefix, defaults_from.prefix_computed
    if prefix_computed:
        return f"{SERVICE}: {source}: $table_prefix computed at run time: not read"
    if prefix is None:
        return f"{SERVICE}: {source}: no $table_prefix: not read"
    if not _PREFIX.match(prefix):
        return f"{SERVICE}: {source}: $table_prefix {one_line(prefix, 40)!r} is not one WordPress accepts"
    return Site(source, values["DB_NAME"], values["DB_USER"], values.get("DB_PASSWORD", ""), values["DB_HOST"], prefix)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def read_site(host: Host, site: Site, services: Services | None) -> tuple[list[StoredCredential], str | None]:
    """The users of one WordPress database, or the one-line reason they could not be read."""
    table = f"{site.prefix}users"
    try:
        endpoint, where = db_endpoint(host, site.db_host, services)
    except RemoteDatabase:
        return [], f"{SERVICE}: {site.source}: database on another host ({one_line(site.db_host, 60)}): not read"
    except (QueryError, ProbeError) as exc:
        return [], f"{SERVICE}: {site.source}: database not reachable: {exc}"
    if "\0" in site.db_name or not site.db_name:
        return [], f"{SERVICE}: {site.source}: DB_NAME is not a database name"
    source = f"{site.source} ({site.db_name}.{table} over {where})"
    query = f"SELECT HEX(user_login), HEX(user_pass) FROM {_quoted(site.db_name)}.{_quoted(table)}"
    try:
        with MysqlSession.login(endpoint, site.db_user, site.db_password, _TIMEOUT) as session:
            result = session.query(query)
    except QueryError as exc:
        return [], f"{SERVICE}: {site.source}: {site.db_name}.{table} not read: {exc}"
    out: list[StoredCredential] = []
    try:
        for row in result.rows:
            login = bytes.fromhex((row[0] or b"").decode("ascii")).decode("utf-8", "surrogateescape")
            hashed = bytes.fromhex((row[1] or b"").decode("ascii")).decode("utf-8", "surrogateescape")
            if hashed:     # an empty user_pass matches no password in WordPress (it compares md5(password))
                out.append(StoredCredential(SERVICE, login, hashed, source))
    except (ValueError, IndexError):
        return [], f"{SERVICE}: {site.source}: {site.db_name}.{table}: unexpected reply"
    return out, None


def _sites_of(host: Host, path: str, problems: list[str]) -> list[Site]:
    """The database settings one wp-config.php stands for (Debian's shared file: one per site file)."""
    try:
        text = host.read_bytes(path, MAX_CONFIG).decode("utf-8", "surrogateescape")
    except HostError as exc:
        problems.append(f"{SERVICE}: {path}: not read: {exc}")
        return []
    config = parse_wp_config(text, path)
    settings = _settings()
    if settings["debian_master_marker"] not in text:
        made = _site(config, None, path)
        if isinstance(made, str):
            problems.append(made)
            return []
        return [made]
    out: list[Site] = []
    try:
        site_files = host.glob(settings["debian_site_configs"])
    except HostError:
        site_files = []
    if not site_files:
        problems.append(f"{SERVICE}: {path} is Debian's shared configuration and no "
                        f"{settings['debian_site_configs']} exists: nothing to read")
    for site_file in site_files:
        try:
            site_text = host.read_bytes(site_file, MAX_CONFIG).decode("utf-8", "surrogateescape")
        except HostError as exc:
            problems.append(f"{SERVICE}: {site_file}: not read: {exc}")
            continue
        made = _site(parse_wp_config(site_text, site_file), config, f"{site_file} (through {path})")
        if isinstance(made, str):
            problems.append(made)
        else:
            out.append(made)
    return out


def collect_wordpress_users(host: Host, servers: WebServers, content: WebContent,
                            services: Services | None) -> StoredCredentials:
    """The user hashes of every WordPress the web servers serve whose database is on this host (live only)."""
    if not host.live:
        raise Unavailable(SkipReason.LIVE_ONLY, "WordPress users are read from the running database server")
    configs, problems = find_configs(host, servers, content)
    credentials: list[StoredCredential] = []
    seen: set[tuple[str, str, str, str]] = set()
    for path in configs:
        for site in _sites_of(host, path, problems):
            key = (site.db_host, site.db_name, site.prefix, site.db_user)
            if key in seen:          # config-default.php linked to a site's own file: one database, read once
                continue
            seen.add(key)
            found, problem = read_site(host, site, services)
            credentials.extend(found)
            if problem:
                problems.append(problem)
    return StoredCredentials(tuple(credentials), tuple(problems))


WORDPRESS_USERS: Fact[StoredCredentials] = Fact("wordpress_users", collect_wordpress_users,
                                                inputs=(WEB_SERVERS, WEB_CONTENT, SERVICES.best_effort))
