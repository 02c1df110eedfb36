"""nginx: its configuration read as nginx reads it, its sites, and who may reach which path.

The configuration language is tokenized here, the way ``ngx_conf_read_token`` does it (words end at
space, tab, CR, LF, ``;`` and ``{`` -- not at ``}`` -- quotes only open a word, ``\\`` escapes the next
character, ``${`` does not open a block, ``#`` starts a comment only where a word could start), rather than
with the ``crossplane`` library: that library opens files itself, so an absolute ``include`` would escape a
``--root`` tree. Every file is read through the :class:`Host`. A relative ``include`` is relative to the
directory of the main file (nginx's "conf prefix", checked against the real nginx), a pattern is expanded
with glob(3) order, and a pattern matching nothing is no error for nginx either.

:class:`NginxPolicy` answers for one ``server`` block what nginx does with a request path, phase by phase:
the server-level rewrite directives, location selection (``ngx_http_core_find_location``: exact match,
longest prefix, ``^~``, the regexes nested in the chosen prefix before the outer ones, automatic
``/``-redirects), ``internal``, the location's own rewrite directives, then the access phase (allow/deny,
auth_basic with its user file, ``satisfy``), all with nginx's inheritance. What depends on a request's
variables (``if``, a ``rewrite`` that changes the URI, ``auth_request``) is "unknown", with the reason.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field

from hostguard.engine.facts import Fact
from hostguard.host.base import FileMissing, Host, HostError, glob_magic
from hostguard.host.web.model import (
    Access,
    Directive,
    DocRoot,
    Reach,
    RunAs,
    Site,
    WebServer,
    Where,
    remove_dot_segments,
)

MAIN_CONFIG = "/etc/nginx/nginx.conf"   # Debian, Ubuntu, RHEL, Alpine: --conf-path
PREFIX = "/usr/share/nginx"             # --prefix of the distributions' builds: a relative ``root`` starts here
MAX_INCLUDE_DEPTH = 16                  # nginx has no limit (a cycle exhausts it); real configs nest 2-3 deep
MAX_DIRECTIVES = 200_000                # an include fan-out (a file included twice, twice over) must stay bounded

# Directives that hand the decision to something hostguard cannot evaluate.
_OPAQUE_ACCESS = ("auth_request", "auth_jwt", "access_by_lua", "access_by_lua_block", "access_by_lua_file",
                  "perl_access", "js_access", "auth_digest", "auth_pam", "auth_ldap", "auth_gss")
_PASS = ("proxy_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "memcached_pass", "grpc_pass")
_REDIRECT_CODES = ("301", "302", "303", "307", "308")

_SPACE = " \t\r\n"
_WORD = re.compile(r"(?:\\[\s\S]|\$\{|[^ \t\r\n;{\\])+")
_DQUOTED = re.compile(r'"((?:[^"\\]|\\[\s\S])*)"')
_SQUOTED = re.compile(r"'((?:[^'\\]|\\[\s\S])*)'")
_BLANK = re.compile(r"[ \t\r\n]+")
_ESCAPE = re.compile(r"\\([\"'\\trn])")
_ESCAPED = {'"': '"', "'": "'", "\\": "\\", "t": "\t", "r": "\r", "n": "\n"}


# -- tokenizer and parser ----------------------------------------------------------------------------

def _unescape(word: str) -> str:
    """nginx's copy loop: ``\\"``, ``\\'``, ``\\\\`` lose their backslash, ``\\t``/``\\r``/``\\n`` become
    control characters, any other backslash stays."""
    if "\\" not in word:
        return word
    return _ESCAPE.sub(lambda m: _ESCAPED[m.group(1)], word)


@dataclass
class _Statement:
    words: list[str]
    line: int
    block: bool          # ended with "{"


class _Tokens:
    """One file's statements and block ends, in order (a statement without words stands for a ``}``)."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self._lines = [m.start() for m in re.finditer("\n", text)]

    def line_at(self, offset: int) -> int:
        """1-based line of a character offset."""
        return bisect_right(self._lines, offset - 1) + 1

    def fail(self, offset: int, what: str) -> HostError:
        """The one-line error nginx -t would print, with our file and line."""
        return HostError(f"{self.path}:{self.line_at(offset)}: {what}")

    def __iter__(self) -> Iterator[_Statement]:
        text, pos, end = self.text, 0, len(self.text)
        words: list[str] = []
        first = 0
        while True:
            m = _BLANK.match(text, pos)
            if m:
                pos = m.end()
            if pos >= end:
                if words:
                    raise self.fail(end, 'unexpected end of file, expecting ";" or "}"')
                return
            ch = text[pos]
            if ch == "#":
                nl = text.find("\n", pos)
                pos = end if nl < 0 else nl + 1
                continue
            if ch in ";{":
                if not words:
                    raise self.fail(pos, f'unexpected "{ch}"')
                yield _Statement(words, self.line_at(first), ch == "{")
                words = []
                pos += 1
                continue
            if ch == "}":
                if words:
                    raise self.fail(pos, 'unexpected "}"')
                yield _Statement([], self.line_at(pos), False)
                pos += 1
                continue
            if not words:
                first = pos
            if ch in "\"'":
                q = (_DQUOTED if ch == '"' else _SQUOTED).match(text, pos)
                if q is None:
                    raise self.fail(end, 'unexpected end of file, expecting ";" or "}"')
                words.append(_unescape(q.group(1)))
                pos = q.end()
                if pos < end and text[pos] not in _SPACE + ";{)":
                    raise self.fail(pos, f'unexpected "{text[pos]}"')
                continue
            w = _WORD.match(text, pos)
            if w is None:   # a lone backslash at the end of the file
                raise self.fail(end, 'unexpected end of file, expecting ";" or "}"')
            words.append(_unescape(w.group(0)))
            pos = w.end()
            if pos < end and text[pos] == "\\":
                raise self.fail(end, 'unexpected end of file, expecting ";" or "}"')


def parse_text(text: str, path: str) -> tuple[Directive, ...]:
    """One file's directives, ``include`` left as a plain directive (for tests and for a single file)."""
    return _Parser(None, posixpath.dirname(path) or "/").parse_text(text, path)


@dataclass
class _Parser:
    host: Host | None
    conf_prefix: str
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    count: int = 0

    def parse_file(self, path: str, stack: tuple[str, ...]) -> tuple[Directive, ...]:
        if path in stack:
            chain = " -> ".join((*stack[stack.index(path):], path))
            raise HostError(f"{stack[-1]}: include cycle: {chain}")
        if len(stack) > MAX_INCLUDE_DEPTH:
            raise HostError(f"{stack[-1]}: includes nested deeper than {MAX_INCLUDE_DEPTH}")
        assert self.host is not None
        text = self.host.read_text(path)
        if path not in self.files:
            self.files.append(path)
        return self._parse(text, path, (*stack, path))

    def parse_text(self, text: str, path: str) -> tuple[Directive, ...]:
        return self._parse(text, path, (path,))

    def _parse(self, text: str, path: str, stack: tuple[str, ...]) -> tuple[Directive, ...]:
        tokens = _Tokens(text, path)
        levels: list[list[Directive]] = [[]]
        opened: list[_Statement] = []
        for stmt in tokens:
            if not stmt.words:
                if not opened:
                    raise HostError(f"{path}:{stmt.line}: unexpected \"}}\"")
                head = opened.pop()
                body = tuple(levels.pop())
                levels[-1].append(Directive(head.words[0], tuple(head.words[1:]), Where(path, head.line), body))
                continue
            self.count += 1
            if self.count > MAX_DIRECTIVES:
                raise HostError(f"{path}:{stmt.line}: more than {MAX_DIRECTIVES} directives (includes fan out)")
            if stmt.block:
                opened.append(stmt)
                levels.append([])
                continue
            name, args = stmt.words[0], tuple(stmt.words[1:])
            if name == "include" and self.host is not None:
                levels[-1].extend(self._include(args, Where(path, stmt.line), stack))
                continue
            levels[-1].append(Directive(name, args, Where(path, stmt.line)))
        if opened:
            raise HostError(f"{path}:{tokens.line_at(len(text))}: unexpected end of file, expecting \"}}\"")
        return tuple(levels[0])

    def _include(self, args: tuple[str, ...], where: Where, stack: tuple[str, ...]) -> list[Directive]:
        assert self.host is not None
        if len(args) != 1:
            raise HostError(f'{where}: invalid number of arguments in "include" directive')
        pattern = args[0] if args[0].startswith("/") else posixpath.join(self.conf_prefix, args[0])
        out: list[Directive] = []
        if not any(glob_magic(p) for p in pattern.split("/")):
            try:
                return list(self.parse_file(pattern, stack))
            except FileMissing as exc:
                raise HostError(f"{where}: include {args[0]}: no such file") from exc
        matches = self.host.glob(pattern)
        if not matches:
            self.notes.append(f"{where}: include {args[0]} matches no file")
        for name in matches:
            out.extend(self.parse_file(name, stack))
        return out


@dataclass(frozen=True)
class NginxConfig:
    """The whole configuration as nginx reads it: includes expanded in place."""

    main: str
    tree: tuple[Directive, ...]
    files: tuple[str, ...]
    notes: tuple[str, ...]


def parse_config(host: Host, main: str = MAIN_CONFIG) -> NginxConfig:
    """Read ``main`` and everything it includes; :class:`HostError` (file:line, what) when nginx would
    refuse the configuration for its syntax or a missing file."""
    parser = _Parser(host, posixpath.dirname(main) or "/")
    tree = parser.parse_file(main, ())
    return NginxConfig(main, tree, tuple(parser.files), tuple(parser.notes))


# -- sites ---------------------------------------------------------------------------------------------

def _children(block: tuple[Directive, ...] | None, name: str) -> Iterator[Directive]:
    for d in block or ():
        if d.name == name:
            yield d


def _own(block: tuple[Directive, ...] | None, name: str) -> Directive | None:
    """The directive ``name`` set in this very block (the last one, so a bad duplicate stays total)."""
    found = [d for d in _children(block, name) if d.args]
    return found[-1] if found else None


def _inherited(chain: tuple[Directive, ...], name: str) -> Directive | None:
    """The value of a simple directive as nginx merges it: the innermost block that sets it wins."""
    for ctx in reversed(chain):
        found = _own(ctx.block, name)
        if found is not None:
            return found
    return None


def _walk(block: tuple[Directive, ...] | None) -> Iterator[Directive]:
    for d in block or ():
        yield d
        yield from _walk(d.block)


def _run_as(main: tuple[Directive, ...]) -> RunAs:
    """The ``user`` directive (main context); without it nginx's compiled default, ``nobody``."""
    d = _own(main, "user")
    if d is None:
        return RunAs("nobody", None, "default", Where(""), "nginx's compiled default when `user` is not set")
    return RunAs(d.args[0], d.args[1] if len(d.args) > 1 else d.args[0], "config", d.where)


def read_nginx(host: Host, main: str = MAIN_CONFIG, prefix: str = PREFIX) -> WebServer | None:
    """nginx's configuration on ``host`` as a :class:`WebServer`; None when ``main`` does not exist (no nginx).

    ``prefix`` is nginx's ``--prefix`` (``-p``): a relative ``root``/``alias`` starts there, and with no
    ``root`` at all nginx serves ``<prefix>/html``."""
    if not host.exists(main):
        return None
    return server_from_config(parse_config(host, main), prefix)


def server_from_config(config: NginxConfig, prefix: str = PREFIX) -> WebServer:
    """The :class:`WebServer` a parsed configuration describes (no I/O: sites, users and settings)."""
    run_as = _run_as(config.tree)
    http_blocks = [d for d in config.tree if d.name == "http" and d.block is not None]
    notes = list(config.notes)
    sites: list[Site] = []
    settings: list[tuple[str, str, Where]] = []
    if len(http_blocks) > 1:
        notes.append(f'{http_blocks[1].where}: "http" directive is duplicate (nginx refuses it); only the first is read')
    for http in http_blocks[:1]:
        settings.append(_setting((http,), "server_tokens", "on"))
        for server in _children(http.block, "server"):
            if server.block is not None:
                sites.append(_site(http, server, run_as, prefix, posixpath.dirname(config.main)))
    return WebServer("nginx", config.main, (run_as,), tuple(sites), tuple(settings), tuple(notes))


def _setting(chain: tuple[Directive, ...], name: str, default: str) -> tuple[str, str, Where]:
    d = _inherited(chain, name)
    return (name, d.args[0], d.where) if d is not None else (name, default, Where(""))


def _full(path: str, prefix: str) -> str:
    """A ``root``/``alias`` value as nginx resolves it: relative to the prefix; a value starting with a
    variable is left as written (it is only known per request)."""
    return path if path.startswith(("/", "$")) else posixpath.join(prefix, path)


def _password_files(http: Directive, server: Directive, conf_dir: str) -> tuple[tuple[str, Where], ...]:
    """Every ``auth_basic_user_file`` the server block can use: its own (any depth) and the http block's
    (inherited). nginx resolves a relative name against the directory of its main configuration file."""
    found = list(_children(http.block, "auth_basic_user_file"))
    found += [d for d in _walk(server.block) if d.name == "auth_basic_user_file"]
    out = [(d.args[0] if d.args[0].startswith(("/", "$")) else posixpath.join(conf_dir, d.args[0]), d.where)
           for d in found if d.args]
    return tuple(dict.fromkeys(out))


def _site(http: Directive, server: Directive, run_as: RunAs, prefix: str,
          conf_dir: str = posixpath.dirname(MAIN_CONFIG)) -> Site:
    chain = (http, server)
    names = [a for d in _children(server.block, "server_name") for a in d.args if a]
    listens = [" ".join(d.args) for d in _children(server.block, "listen")] or ["*:80"]
    root = _inherited(chain, "root")
    roots = [DocRoot("/", _full(root.args[0], prefix), root.where) if root is not None
             else DocRoot("/", posixpath.join(prefix, "html"), Where(""))]
    settings = [_setting(chain, "server_tokens", "on")]
    autoindex = _inherited(chain, "autoindex")
    if autoindex is not None and autoindex.args[0] == "on":
        settings.append(("autoindex", "/", autoindex.where))
    backends = [d.args[0] for d in _walk(server.block) if d.name == "fastcgi_pass" and d.args]
    for loc in _all_locations(server.block):
        mod, name = location_spec(loc)
        if mod == "@":
            continue
        plain = mod in ("", "^~", "=")
        alias = _own(loc.block, "alias")
        own_root = _own(loc.block, "root")
        if alias is not None:
            roots.append(DocRoot(name if plain else "/", _full(alias.args[0], prefix), alias.where))
        elif own_root is not None:
            base = _full(own_root.args[0], prefix)
            roots.append(DocRoot(name, posixpath.join(base, name.lstrip("/")), own_root.where) if plain
                         else DocRoot("/", base, own_root.where))
        listing = _own(loc.block, "autoindex")
        if listing is not None and listing.args[0] == "on":
            settings.append(("autoindex", f"{mod} {name}".strip(), listing.where))
    unique = tuple({(r.url, r.path): r for r in roots}.values())
    return Site("nginx", tuple(names), tuple(listens), unique, server.where, run_as=(run_as,),
                php_backends=tuple(dict.fromkeys(backends)), policy=NginxPolicy(http, server),
                settings=tuple(settings), password_files=_password_files(http, server, conf_dir))


def _all_locations(block: tuple[Directive, ...] | None) -> Iterator[Directive]:
    for d in block or ():
        if d.name == "location" and d.block is not None:
            yield d
            yield from _all_locations(d.block)


def location_spec(loc: Directive) -> tuple[str, str]:
    """(modifier, name) as ``ngx_http_core_location`` reads a location: ``= /x`` or ``=/x``, ``^~ /x``,
    ``~ re``, ``~* re``, ``@name``, or a plain prefix (modifier "")."""
    args = loc.args
    if len(args) >= 2:
        return args[0], args[1]
    name = args[0] if args else ""
    for mod in ("=", "^~", "~*", "~"):
        if name.startswith(mod):
            return mod, name[len(mod):]
    return ("@", name) if name.startswith("@") else ("", name)


# -- the access policy -----------------------------------------------------------------------------

class _Unknown(Exception):
    """The answer depends on something hostguard does not evaluate."""

    def __init__(self, reason: str, where: Where) -> None:
        super().__init__(reason)
        self.reason = reason
        self.where = where


@dataclass
class _Loc:
    """A location (or the server itself, ``directive`` being the server block) with its nested ones split
    the way nginx keeps them: exact and prefix locations ("static"), regexes in configuration order."""

    directive: Directive
    mod: str
    name: str
    chain: tuple[Directive, ...]
    static: list[_Loc] = field(default_factory=list)
    regex: list[_Loc] = field(default_factory=list)
    auto_redirect: bool = False
    pattern: re.Pattern[str] | None = None
    error: str = ""

    def label(self) -> str:
        if self.directive.name != "location":
            return f"server block ({self.directive.where})"
        return f"location {self.mod + ' ' if self.mod else ''}{self.name} ({self.directive.where})"


_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


def _compile(loc: _Loc) -> None:
    """PCRE as nginx uses it, in Python's dialect (named groups ``(?<n>`` become ``(?P<n>``); a pattern
    Python cannot compile leaves the location unknown rather than wrongly unmatched."""
    try:
        loc.pattern = re.compile(_NAMED_GROUP.sub("(?P<", loc.name), re.IGNORECASE if loc.mod == "~*" else 0)
    except re.error as exc:
        loc.error = f"regex {loc.name!r} cannot be evaluated here ({exc})"


def _build(ctx: Directive, chain: tuple[Directive, ...], mod: str = "", name: str = "") -> _Loc:
    node = _Loc(ctx, mod, name, chain)
    node.auto_redirect = (ctx.name == "location" and name.endswith("/")
                          and any(d.name in _PASS for d in ctx.block or ()))
    for d in ctx.block or ():
        if d.name != "location" or d.block is None:
            continue
        cmod, cname = location_spec(d)
        child = _build(d, (*chain, d), cmod, cname)
        if cmod in ("~", "~*"):
            _compile(child)
            node.regex.append(child)
        elif cmod in ("", "^~", "="):
            node.static.append(child)
    return node


def _find_static(locs: list[_Loc], uri: str) -> tuple[str, _Loc | None]:
    """``ngx_http_core_find_static_location`` over one level: an exact match ("ok"), a prefix equal to the
    URI ("again"), a location with a ``*_pass`` named URI + "/" (nginx redirects: "done"), the longest
    prefix ("again"), or nothing ("declined")."""
    for loc in locs:
        if loc.mod == "=" and loc.name == uri:
            return "ok", loc
    prefixes = [loc for loc in locs if loc.mod != "=" and uri.startswith(loc.name)]
    best = max(prefixes, key=lambda loc: len(loc.name)) if prefixes else None
    if best is not None and best.name == uri:
        return "again", best
    redirect = sorted((loc for loc in locs if loc.auto_redirect and loc.name == uri + "/"), key=lambda x: x.mod != "=")
    if redirect:
        return "done", redirect[0]
    return ("again", best) if best is not None else ("declined", None)


def _regex_match(loc: _Loc, uri: str) -> bool:
    if loc.pattern is None:
        raise _Unknown(loc.error, loc.directive.where)
    return loc.pattern.search(uri) is not None


def _find_location(parent: _Loc, uri: str, current: list[_Loc]) -> str:
    """``ngx_http_core_find_location``: the static search; from a prefix, its own nested locations first
    (nested regexes included); then, unless the prefix has ``^~``, this level's regexes in order."""
    rc, loc = _find_static(parent.static, uri)
    noregex = False
    if loc is not None:
        current[0] = loc
    if rc == "again" and loc is not None:
        noregex = loc.mod == "^~"
        rc = _find_location(loc, uri, current)
    if rc in ("ok", "done"):
        return rc
    if not noregex:
        for regex in parent.regex:
            if _regex_match(regex, uri):
                current[0] = regex
                _find_location(regex, uri, current)
                return "ok"
    return rc


_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


class _BadRequest(Exception):
    """nginx answers 400 before any location is chosen."""


def normalize_uri(uri: str, merge_slashes: bool = True) -> str:
    """The path nginx matches locations against (``r->uri``): the query cut off, ``%XX`` decoded, ``.`` and
    ``..`` segments resolved, repeated slashes merged (``merge_slashes on``, the default). Raises
    :class:`ValueError` where nginx answers 400 (no leading slash, a bad escape, ``..`` above the root)."""
    path = uri.split("?", 1)[0]
    if not path.startswith("/") or re.search(r"%(?![0-9A-Fa-f]{2})", path):
        raise ValueError(f"{uri!r}: not a request path nginx accepts")
    raw = _PERCENT.sub(lambda m: chr(int(m.group(1), 16)), path)
    if "\0" in raw:
        raise ValueError(f"{uri!r}: a NUL byte in the path")
    if merge_slashes:
        raw = re.sub(r"/{2,}", "/", raw)
    resolved = remove_dot_segments(raw)
    if resolved is None:
        raise ValueError(f"{uri!r}: climbs above the document root")
    return resolved


class NginxPolicy:
    """One ``server`` block's answer to "what does a client without credentials get for this path",
    computed in nginx's phase order (see the module docstring)."""

    def __init__(self, http: Directive, server: Directive) -> None:
        self.http = http
        self.server = server
        self._root = _build(server, (http, server))
        merge = _inherited((http, server), "merge_slashes")
        self._merge_slashes = merge is None or merge.args[0] != "off"

    def access(self, uri: str) -> Access:
        """What a client without credentials gets for ``uri``: OPEN (served), RESTRICTED (an address
        allow-list or a password stands in the way), DENIED (nobody gets the file: deny all, internal,
        ``return`` of any code -- a redirect serves no content either -- or a 400), UNKNOWN with the reason."""
        return self._evaluate(uri)[0]

    def runs_php(self, uri: str) -> bool | None:
        """Whether a request for ``uri`` (a ``.php`` path) reaches a location that hands it to FastCGI
        (``fastcgi_pass``); False when the request is refused before, None when that cannot be told."""
        answer, loc = self._evaluate(uri)
        if answer.reach is Reach.UNKNOWN:
            return None
        if answer.reach is Reach.DENIED or loc is None:
            return False
        if _own(loc.directive.block, "fastcgi_pass") is not None and loc.directive.name == "location":
            return True
        for d in _children(loc.directive.block, "if"):
            if any(x.name == "fastcgi_pass" for x in _walk(d.block)):
                return None
        return False

    def location(self, uri: str) -> Directive | None:
        """The location block nginx picks for ``uri`` (None: the server block itself serves it)."""
        current = [self._root]
        _find_location(self._root, normalize_uri(uri, self._merge_slashes), current)
        return current[0].directive if current[0] is not self._root else None

    def _evaluate(self, uri: str) -> tuple[Access, _Loc | None]:
        try:
            path = normalize_uri(uri, self._merge_slashes)
        except ValueError as exc:
            return Access(Reach.DENIED, f"nginx answers 400 Bad Request: {exc}"), None
        try:
            early = _rewrite_phase(self.server, path, "server")
            if early is not None:
                return early, None
            current = [self._root]
            rc = _find_location(self._root, path, current)
            loc = current[0]
            internal = next((c for c in reversed(loc.chain) if _own_flag(c, "internal")), None)
            if loc is not self._root and internal is not None:
                return Access(Reach.DENIED, f"{loc.label()} is internal: nginx answers 404 to clients",
                              (internal.where,)), loc
            if rc == "done":
                return Access(Reach.DENIED, f"{loc.label()}: nginx redirects {path} to {path}/ (301)",
                              (loc.directive.where,)), loc
            if loc is not self._root:
                early = _rewrite_phase(loc.directive, path, loc.label())
                if early is not None:
                    return early, loc
            return _access_phase(loc), loc
        except _Unknown as exc:
            return Access(Reach.UNKNOWN, exc.reason, (exc.where,)), None


def _own_flag(ctx: Directive, name: str) -> Directive | None:
    """A flag directive (``internal``) written in a location block itself."""
    return next(_children(ctx.block, name), None) if ctx.name == "location" else None


def _rewrite_phase(ctx: Directive, uri: str, label: str) -> Access | None:
    """The rewrite module's directives of one block, in order, as they would run for ``uri``: a ``return``
    decides (no file is served), a matching ``rewrite`` changes the URI (unknown, or a redirect), an ``if``
    that can return or rewrite depends on the request (unknown). Not inherited by nested locations."""
    for d in ctx.block or ():
        if d.name == "break":
            return None
        if d.name == "return":
            code = d.args[0] if d.args else ""
            if not code.isdigit():
                code = "302"
            what = "redirects" if code in _REDIRECT_CODES else "answers"
            return Access(Reach.DENIED, f"{label}: `return {' '.join(d.args)}` {what} ({code}) instead of "
                          "serving the files", (d.where,))
        if d.name == "rewrite":
            if len(d.args) < 2:
                raise _Unknown(f"{d.where}: rewrite with too few arguments", d.where)
            try:
                matched = re.search(_NAMED_GROUP.sub("(?P<", d.args[0]), uri) is not None
            except re.error as exc:
                raise _Unknown(f"rewrite regex {d.args[0]!r} cannot be evaluated here ({exc})", d.where) from exc
            if not matched:
                continue
            flag = d.args[2] if len(d.args) > 2 else ""
            if flag in ("redirect", "permanent") or d.args[1].startswith(("http://", "https://", "$scheme")):
                return Access(Reach.DENIED, f"{label}: `rewrite {' '.join(d.args)}` redirects instead of serving "
                              "the files", (d.where,))
            raise _Unknown(f"`rewrite {' '.join(d.args)}` in {label} changes the URI before the files are "
                           "chosen", d.where)
        if d.name == "if" and any(x.name in ("return", "rewrite", "break") for x in _walk(d.block)):
            raise _Unknown(f"`if {' '.join(d.args)}` in {label} decides by the request's variables", d.where)
    return None


def _access_phase(loc: _Loc) -> Access:
    """allow/deny, auth_basic and satisfy as merged down the chain, for a client without credentials."""
    chain = loc.chain
    for ctx in reversed(chain):
        opaque = [d for d in ctx.block or () if d.name in _OPAQUE_ACCESS]
        if opaque:
            if opaque[-1].args != ("off",):
                raise _Unknown(f"`{opaque[-1].name}` decides access through code hostguard does not evaluate",
                               opaque[-1].where)
            break
    rules: list[Directive] = []
    for ctx in reversed(chain):
        rules = [d for d in ctx.block or () if d.name in ("allow", "deny")]
        if rules:
            break
    realm = _inherited(chain, "auth_basic")
    user_file = _inherited(chain, "auth_basic_user_file")
    satisfy = _inherited(chain, "satisfy")
    if realm is not None and "$" in realm.args[0]:
        raise _Unknown(f"`auth_basic {realm.args[0]}` takes its realm from a variable", realm.where)
    password = realm is not None and realm.args[0] != "off" and user_file is not None
    anyone = satisfy is not None and satisfy.args[0] == "any"
    reach, rule_where = _rules_reach(rules, password and anyone)
    wheres = tuple(d.where for d in rule_where)
    if password and realm is not None and user_file is not None:
        wheres += (realm.where, user_file.where)
    if satisfy is not None:
        wheres += (satisfy.where,)
    place = loc.label()
    if password and not anyone and reach is Reach.OPEN:
        return Access(Reach.RESTRICTED, f"{place}: auth_basic asks for a password", wheres)
    if password and anyone and reach is not Reach.OPEN:
        return Access(Reach.RESTRICTED, f"{place}: satisfy any: a password, or an allowed address", wheres)
    if reach is Reach.RESTRICTED:
        extra = " and a password" if password else ""
        return Access(Reach.RESTRICTED, f"{place}: allowed only from chosen addresses{extra}", wheres)
    if reach is Reach.DENIED:
        return Access(Reach.DENIED, f"{place}: deny all", wheres)
    return Access(Reach.OPEN, f"{place}: no access rule stops a client", wheres or (loc.directive.where,))


def _rules_reach(rules: list[Directive], need_allow: bool) -> tuple[Reach, list[Directive]]:
    """allow/deny rules (the first rule matching the client decides; none matching lets it through) as a
    reach over all clients, the most open of IPv4 and IPv6. ``need_allow``: under ``satisfy any`` with a
    password a client without one passes only on a matching ``allow``."""
    order = (Reach.DENIED, Reach.RESTRICTED, Reach.OPEN)
    reaches: list[Reach] = []
    for family in (4, 6):
        allowed = False
        catch: Directive | None = None
        for d in rules:
            if not d.args or d.args[0].startswith("unix:"):
                continue
            if d.args[0] == "all":
                catch = d
                break
            try:
                net = ipaddress.ip_network(d.args[0], strict=False)
            except ValueError as exc:
                raise _Unknown(f"`{d.name} {d.args[0]}` is not an address nginx accepts", d.where) from exc
            if net.version != family:
                continue
            if net.prefixlen == 0:
                catch = d
                break
            allowed = allowed or d.name == "allow"
        if catch is not None and catch.name == "allow":
            reaches.append(Reach.OPEN)
        elif catch is not None:
            reaches.append(Reach.RESTRICTED if allowed else Reach.DENIED)
        else:
            reaches.append(Reach.RESTRICTED if need_allow else Reach.OPEN)
    return max(reaches, key=order.index), rules


# -- the text behind the directives (for fixes that replace a line as written) --------------------------

@dataclass(frozen=True)
class ConfigText:
    """The lines of every file a web server's configuration was read from, as written, with the path a fix
    must edit (symlinks resolved inside the host: ``sites-enabled/default`` is a link, and a fix writes
    through no link) and, for nginx, where the ``http`` block opens and closes.

    A fix is an :class:`~hostguard.remediation.Edit` of a line that must still read as it did, so a check
    needs the line itself, not the parsed directive; the web model keeps only file:line (``Where``)."""

    files: tuple[tuple[str, tuple[str, ...]], ...] = ()
    real: tuple[tuple[str, str], ...] = ()      # path as read -> path to edit (no symlink on the way)
    http: Where | None = None                   # nginx: the first ``http {`` line
    http_end: int = 0                           # nginx: the line of the ``}`` that closes it (0: unknown)

    def lines(self, path: str) -> tuple[str, ...]:
        """The file's lines (empty when it was not read)."""
        return next((lines for p, lines in self.files if p == path), ())

    def line(self, where: Where) -> str | None:
        """The text of the line at ``where`` (None when unknown)."""
        lines = self.lines(where.path)
        return lines[where.line - 1] if 1 <= where.line <= len(lines) else None

    def edit_path(self, path: str) -> str:
        """The path an edit of ``path`` must name (its real place on the host)."""
        return next((r for p, r in self.real if p == path), path)


def read_text_of(host: Host, paths: tuple[str, ...] | list[str]) -> tuple[tuple[tuple[str, tuple[str, ...]], ...],
                                                                          tuple[tuple[str, str], ...]]:
    """The lines of ``paths`` (split on newlines only, as the parsers number them) and the real host path of
    each; a file that cannot be read now is left out (its fixes stay by hand)."""
    files: list[tuple[str, tuple[str, ...]]] = []
    real: list[tuple[str, str]] = []
    for path in dict.fromkeys(paths):
        try:
            text = host.read_text(path)
            resolved = host.resolve(path)
        except HostError:
            continue
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()   # the newline that ends the last line opens no line of its own
        files.append((path, tuple(line.rstrip("\r") for line in lines)))
        inside = "/" + posixpath.relpath(resolved, host.root) if host.root != "/" else resolved
        real.append((path, posixpath.normpath(inside)))
    return tuple(files), tuple(real)


def block_end(text: str, path: str, line: int) -> int:
    """The line of the ``}`` closing the first block opened on ``line`` of ``text`` (0 when there is none or the
    text does not parse): where a block ends, which the directive tree does not keep."""
    opened: list[int] = []
    try:
        for stmt in _Tokens(text, path):
            if stmt.block:
                opened.append(stmt.line)
            elif not stmt.words:
                if not opened:
                    return 0
                if opened.pop() == line and line not in opened:
                    return stmt.line
    except HostError:
        return 0
    return 0


def collect_nginx_text(host: Host) -> ConfigText:
    """The text of nginx's configuration files and where its ``http`` block stands; empty when there is no
    nginx or its configuration does not parse (the ``web_servers`` fact names that problem)."""
    if not host.exists(MAIN_CONFIG):
        return ConfigText()
    try:
        config = parse_config(host, MAIN_CONFIG)
    except HostError:
        return ConfigText()
    files, real = read_text_of(host, list(config.files))
    http = next((d for d in config.tree if d.name == "http" and d.block is not None), None)
    if http is None:
        return ConfigText(files, real)
    text = "\n".join(ConfigText(files).lines(http.where.path))
    return ConfigText(files, real, http.where, block_end(text, http.where.path, http.where.line))


NGINX_TEXT: Fact[ConfigText] = Fact("nginx_text", collect_nginx_text)


def locations(block: tuple[Directive, ...] | None) -> Iterator[Directive]:
    """Every location of a block, nested ones included, in configuration order."""
    yield from _all_locations(block)


_PLAIN_WORD = re.compile(r"(?:[^\s;{}\"'\\#]|\\[^\s\"'\\trn])(?:[^\s;{}\"'\\]|\\[^\s\"'\\trn])*")


def nginx_word(value: str) -> str:
    """``value`` written so that nginx's tokenizer reads it back unchanged: as it is when that is safe,
    else in double quotes with ``\\`` and ``"`` escaped (a ``{``, a space or a ``;`` would end the word)."""
    if _PLAIN_WORD.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def block_text(text: ConfigText, block: Directive) -> tuple[str, ...] | None:
    """The lines of ``block`` as written (from its opening line to the line of its closing brace), when those
    lines hold that block and nothing else, so they can be copied elsewhere verbatim; None otherwise."""
    lines = text.lines(block.where.path)
    end = block_end("\n".join(lines), block.where.path, block.where.line)
    if not end:
        return None
    own = lines[block.where.line - 1:end]
    try:
        parsed = parse_text("\n".join(own), block.where.path)
    except HostError:
        return None
    if len(parsed) != 1 or parsed[0].name != block.name or parsed[0].args != block.args:
        return None
    return tuple(own)


# -- the fact --------------------------------------------------------------------------------------

def collect_nginx(host: Host) -> WebServer | None:
    """nginx's configuration at its distribution path; None when the host has none (no nginx)."""
    return read_nginx(host)


NGINX: Fact[WebServer | None] = Fact("nginx", collect_nginx)
