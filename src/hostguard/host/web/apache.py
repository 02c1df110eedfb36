"""Apache httpd 2.4's configuration, read the way httpd reads it, and its access rules evaluated.

Reading. The main file (Debian ``/etc/apache2/apache2.conf``, RHEL ``/etc/httpd/conf/httpd.conf``) is read
through the :class:`Host`, so under ``--root`` every ``Include`` stays inside the tree. httpd evaluates its
configuration in one pass, in file order: ``LoadModule`` loads a module at the line it stands on, ``Define``
sets a variable for the lines after it, and ``<IfModule>``/``<IfDefine>``/``<IfFile>`` are decided when they
are met (Debian's ``serve-cgi-bin.conf`` defines a name inside an ``<IfModule>`` and tests it three lines
later). The reader does the same, so the :class:`Directive` tree it returns is what httpd would act on:
includes expanded in place, conditional sections replaced by their contents or dropped, ``${VAR}``
substituted from ``Define`` and from Debian's ``envvars`` (read as shell assignments, never run).

Evaluating. :class:`ApachePolicy` answers, for one site, what an anonymous client gets for a URL: the URL is
mapped to a file (``Alias``, ``AliasMatch``, ``DocumentRoot``) and the per-directory configuration is merged
in httpd's order: ``<Directory>`` (shortest first) interleaved with ``.htaccess`` where ``AllowOverride``
lets it count, then ``<DirectoryMatch>``, ``<Files>``/``<FilesMatch>``, ``<Location>``/``<LocationMatch>``.
Authorization (``Require`` and its containers, ``AuthMerging``, mod_access_compat's ``Order``/``Allow``/
``Deny`` and ``Satisfy``) is then decided for a client that has no password and an address nobody chose.
What hostguard cannot decide (``<If>`` expressions, ``Require env``/``expr``) is UNKNOWN, never a guess.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import posixpath
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hostguard.engine.facts import Fact
from hostguard.host.base import FileMissing, Host, HostError, glob_magic
from hostguard.host.web.model import Access, Directive, DocRoot, Reach, RunAs, Site, WebServer, Where
from hostguard.host.web.nginx import ConfigText, read_text_of

MAX_INCLUDE_DEPTH = 32          # httpd allows 128; a real configuration nests three or four deep
MAX_NOTES = 200

# Modules compiled into Debian's and RHEL's httpd binaries (``apache2 -l``): an ``<IfModule>`` naming one is
# true without a LoadModule line. Part of the reader's grammar, like the directive names below.
STATIC_MODULES = frozenset({"core.c", "mod_so.c", "mod_watchdog.c", "http_core.c", "mod_log_config.c",
                            "mod_logio.c", "mod_version.c", "mod_unixd.c", "core_module", "so_module",
                            "watchdog_module", "http_module", "log_config_module", "logio_module",
                            "version_module", "unixd_module"})

# Where each distribution keeps the main file, its ServerRoot, and the user its package creates.
LAYOUTS: tuple[tuple[str, str, str], ...] = (
    ("/etc/apache2/apache2.conf", "/etc/apache2", "www-data"),
    ("/etc/httpd/conf/httpd.conf", "/etc/httpd", "apache"),
)
DEFAULT_DOCUMENT_ROOT = "/var/www/html"  # Debian's and RHEL's compiled-in DocumentRoot

CONDITIONALS = frozenset({"ifmodule", "ifdefine", "iffile", "ifversion", "ifdirective", "ifsection"})

# Which AllowOverride class a directive in .htaccess needs (httpd answers 500 for one not allowed).
_OVERRIDE_CLASSES: dict[str, str] = {
    **dict.fromkeys(("authtype", "authname", "authuserfile", "authgroupfile", "authbasicprovider",
                     "authdigestprovider", "require", "requireall", "requireany", "requirenone",
                     "authmerging", "satisfy", "authbasicauthoritative", "authdbmuserfile",
                     "authdbmgroupfile", "authformprovider"), "authconfig"),
    **dict.fromkeys(("order", "allow", "deny"), "limit"),
    **dict.fromkeys(("options", "xbithack", "php_value", "php_flag"), "options"),
    **dict.fromkeys(("directoryindex", "indexoptions", "indexignore", "adddescription", "addicon",
                     "addiconbytype", "addiconbyencoding", "defaulticon", "headername", "readmename",
                     "indexorderdefault", "indexstylesheet", "expiresactive", "expiresdefault",
                     "expiresbytype"), "indexes"),
    **dict.fromkeys(("sethandler", "addhandler", "removehandler", "addtype", "removetype", "forcetype",
                     "errordocument", "rewriteengine", "rewriterule", "rewritecond", "rewritebase",
                     "rewriteoptions", "redirect", "redirectmatch", "redirectpermanent", "redirecttemp",
                     "header", "requestheader", "setenv", "setenvif", "setenvifnocase", "unsetenv",
                     "addcharset", "adddefaultcharset", "defaulttype", "action", "addoutputfilter",
                     "setoutputfilter", "setinputfilter", "addencoding", "addlanguage", "defaultlanguage",
                     "acceptpathinfo", "contentdigest", "fileetag",
                     "addoutputfilterbytype", "browsermatch", "browsermatchnocase", "cookietracking",
                     "substitute", "removeoutputfilter", "removeencoding", "removelanguage"), "fileinfo"),
}
_ALWAYS_ALLOWED = frozenset({"files", "filesmatch", "limit", "limitexcept", "if", "elseif", "else"})
# Directives httpd refuses in .htaccess whatever AllowOverride says ("not allowed here": a 500).
_NEVER_IN_HTACCESS = frozenset({"allowoverride", "allowoverridelist", "php_admin_value", "php_admin_flag",
                                "include", "includeoptional", "directory", "directorymatch", "location",
                                "locationmatch", "virtualhost", "documentroot", "alias", "aliasmatch",
                                "scriptalias", "scriptaliasmatch", "listen", "user", "group", "loadmodule",
                                "serverroot", "servername", "proxypass", "proxypassmatch"})


@dataclass(frozen=True)
class _Override:
    """What AllowOverride (and AllowOverrideList) let an .htaccess file do at one directory."""

    classes: frozenset[str] = frozenset()       # authconfig, limit, options, fileinfo, indexes, all
    names: frozenset[str] = frozenset()         # AllowOverrideList: single directives
    nonfatal: frozenset[str] = frozenset()      # Nonfatal=Override/Unknown/All: ignored instead of a 500

    @property
    def reads(self) -> bool:
        """Whether httpd reads .htaccess at all here (AllowOverride None and no list: it never opens it)."""
        return bool(self.classes or self.names)

    def label(self) -> str:
        return "AllowOverride " + (" ".join(sorted(self.classes)) or "None")

    @staticmethod
    def parse(args: Sequence[str], names: frozenset[str]) -> _Override:
        classes: set[str] = set()
        nonfatal: set[str] = set()
        for arg in (a.lower() for a in args):
            key, _, value = arg.partition("=")
            if key == "nonfatal":
                nonfatal |= {"override", "unknown"} if value == "all" else {value}
            elif key != "none":
                classes.add(key)
        return _Override(frozenset(classes), names, frozenset(nonfatal))

_USER_PROVIDERS = frozenset({"valid-user", "user", "group", "file-owner", "file-group", "dbd-group",
                             "dbm-group", "ldap-user", "ldap-group", "ldap-dn", "ldap-attribute",
                             "ldap-filter"})
_ADDRESS_PROVIDERS = frozenset({"ip", "host", "local", "forward-dns"})
_PHP_TYPES = frozenset({"application/x-httpd-php", "php-script", "php5-script", "php7-script",
                        "x-httpd-php", "application/x-httpd-php5", "application/x-httpd-php7"})


# -- reading the files -----------------------------------------------------------------------------------

@dataclass
class _Raw:
    """A directive as it stands in one file, before substitution and includes."""

    name: str
    args: tuple[str, ...]
    line: int
    block: list[_Raw] | None = None


def split_args(text: str) -> list[str]:
    """The arguments of a directive line, as httpd's ``ap_getword_conf`` splits them: on white space, with
    ``"..."`` or ``'...'`` holding spaces (a backslash before the quote character keeps it)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "\"'":
            i += 1
            buf: list[str] = []
            while i < n and text[i] != c:
                if text[i] == "\\" and i + 1 < n and text[i + 1] == c:
                    buf.append(c)
                    i += 2
                    continue
                buf.append(text[i])
                i += 1
            i += 1
            out.append("".join(buf))
            continue
        j = i
        while j < n and not text[j].isspace():
            j += 1
        out.append(text[i:j])
        i = j
    return out


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-empty, non-comment lines with their first line number; a line ending in ``\\`` continues on the
    next (before comments are recognised, as httpd does: a continued comment swallows the next line)."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        start = i + 1
        line = lines[i].rstrip("\r")
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i].rstrip("\r").lstrip()
        i += 1
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield start, stripped


def parse_text(text: str, path: str) -> list[_Raw]:
    """One file's directives as a nested list; an unbalanced section is a :class:`HostError` (httpd refuses
    to start on it, naming file and line as this does)."""
    root: list[_Raw] = []
    stack: list[tuple[_Raw, list[_Raw]]] = []
    current = root
    for number, line in _logical_lines(text):
        if line.startswith("</"):
            name = line[2:].rstrip(">").strip()
            if not stack:
                raise HostError(f"{path}:{number}: </{name}> without matching <{name}> section")
            opened, parent = stack.pop()
            if opened.name.lower() != name.lower():
                raise HostError(f"{path}:{number}: </{name}> closes <{opened.name}> opened on line {opened.line}")
            current = parent
            continue
        if line.startswith("<"):
            if not line.endswith(">"):
                raise HostError(f"{path}:{number}: section line lacks its closing '>'")
            inner = line[1:-1].strip()
            if not inner:
                raise HostError(f"{path}:{number}: empty section name")
            words = inner.split(None, 1)
            section = _Raw(words[0], tuple(split_args(words[1] if len(words) > 1 else "")), number, [])
            current.append(section)
            stack.append((section, current))
            assert section.block is not None
            current = section.block
            continue
        words = line.split(None, 1)
        current.append(_Raw(words[0], tuple(split_args(words[1] if len(words) > 1 else "")), number))
    if stack:
        opened = stack[-1][0]
        raise HostError(f"{path}:{opened.line}: <{opened.name}> is never closed")
    return root


def read_envvars(text: str) -> dict[str, str]:
    """Shell assignments of Debian's ``envvars`` (``export APACHE_RUN_USER=www-data``), in order, with
    ``$X``/``${X}`` expanded from the assignments before them. The file is a shell script that apache2ctl
    sources; it is read, never run: an ``if`` is not evaluated (both branches assign, the later wins), and
    an expansion with an operator (``${X##...}``) counts as empty."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("export "):
            line = line[len("export "):].strip()
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if not m:
            continue
        value = m.group(2).strip()
        if value.startswith("'") and value.endswith("'") and len(value) >= 2:
            values[m.group(1)] = value[1:-1]
            continue
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1]
        elif " " in value or "\t" in value:
            value = value.split()[0]

        def expand(mv: re.Match[str]) -> str:
            name = mv.group(1) or mv.group(2) or ""
            return values.get(name, "") if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else ""

        values[m.group(1)] = re.sub(r"\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", expand, value)
    return values


def _version_tuple(text: str) -> tuple[int, ...] | None:
    parts = text.split(".")
    if not all(p.isdigit() for p in parts) or not parts:
        return None
    return tuple(int(p) for p in parts)


class _Reader:
    """One pass over the configuration in httpd's order, carrying what httpd carries: the loaded modules,
    the defined names, ServerRoot."""

    def __init__(self, host: Host, server_root: str, env: dict[str, str], includes: bool = True) -> None:
        self.host = host
        self.includes = includes   # False for .htaccess, where an Include line is an error httpd answers 500 to
        self.server_root = server_root
        self.env = env
        self.defines: dict[str, str] = {}
        self.modules: set[str] = set(STATIC_MODULES)
        self.loaded_any = False
        self.notes: list[str] = []
        self.files: list[str] = []
        self._unset_noted: set[str] = set()

    def note(self, text: str) -> None:
        """Remember a problem met (bounded: a generated configuration must not flood the report)."""
        if len(self.notes) < MAX_NOTES and text not in self.notes:
            self.notes.append(text)

    def read_file(self, path: str, stack: tuple[str, ...] = ()) -> list[Directive]:
        """The expanded directives of one file (and what it includes)."""
        if len(stack) >= MAX_INCLUDE_DEPTH:
            raise HostError(f"{path}: includes nested deeper than {MAX_INCLUDE_DEPTH} files ({stack[-1]} includes it)")
        real = self.host.resolve(path)
        if real in (self.host.resolve(p) for p in stack):
            raise HostError(f"{path}: include cycle ({' -> '.join((*stack, path))})")
        text = self.host.read_text(path)
        self.files.append(path)
        return self.expand(parse_text(text, path), path, (*stack, path))

    def substitute(self, value: str, where: Where) -> str:
        """``${NAME}`` from Define, then the environment; an unknown name stays as written (httpd warns and
        does the same)."""
        if "${" not in value:
            return value

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in self.defines:
                return self.defines[name]
            if name in self.env:
                return self.env[name]
            if name not in self._unset_noted:
                self._unset_noted.add(name)
                self.note(f"{where}: ${{{name}}} is not defined (httpd keeps it as written)")
            return m.group(0)

        return re.sub(r"\$\{([A-Za-z0-9_.:-]+)\}", repl, value)

    def expand(self, raws: Sequence[_Raw], path: str, stack: tuple[str, ...]) -> list[Directive]:
        """Substitute, include, evaluate conditionals, and keep everything else as a Directive."""
        out: list[Directive] = []
        for raw in raws:
            where = Where(path, raw.line)
            args = tuple(self.substitute(a, where) for a in raw.args)
            lname = raw.name.lower()
            if raw.block is not None:
                if lname in CONDITIONALS:
                    if self.condition(lname, args, where):
                        out.extend(self.expand(raw.block, path, stack))
                    continue
                out.append(Directive(raw.name, args, where, tuple(self.expand(raw.block, path, stack))))
                continue
            if lname in ("include", "includeoptional") and self.includes:
                if not args:
                    raise HostError(f"{where}: {raw.name} without a file name")
                out.extend(self.include(args[0], lname == "includeoptional", where, stack))
                continue
            if lname == "define" and args:
                self.defines[args[0]] = args[1] if len(args) > 1 else ""
            elif lname == "undefine" and args:
                self.defines.pop(args[0], None)
            elif lname == "loadmodule" and args:
                self.loaded_any = True
                self.modules.add(args[0])
                if args[0].endswith("_module"):
                    self.modules.add(f"mod_{args[0][:-len('_module')]}.c")
            elif lname == "use":
                self.note(f"{where}: mod_macro's Use {' '.join(args)} is not expanded")
            elif lname == "serverroot" and args:
                self.server_root = args[0].rstrip("/") or "/"
            out.append(Directive(raw.name, args, where))
        return out

    def absolute(self, name: str) -> str:
        """A file name as httpd resolves it: relative ones against ServerRoot."""
        return name if name.startswith("/") else posixpath.join(self.server_root, name)

    def include(self, pattern: str, optional: bool, where: Where, stack: tuple[str, ...]) -> list[Directive]:
        """An Include: a file, a directory (every file under it, sorted), or a glob. A non-optional Include
        that finds nothing stops httpd (``apache2 -t`` fails), so it is an error here too; an
        IncludeOptional that finds nothing is normal and only noted."""
        target = self.absolute(pattern)
        names = self.host.glob(target) if glob_magic(target) else ([target] if self.host.exists(target) else [])
        if not names:
            if optional:
                self.note(f"{where}: IncludeOptional {pattern} matches no file")
                return []
            raise HostError(f"{where}: Include {pattern}: no such file (httpd would not start)")
        out: list[Directive] = []
        for name in names:
            for file in self._files_under(name):
                try:
                    out.extend(self.read_file(file, stack))
                except FileMissing:
                    if not optional:
                        raise
                    self.note(f"{where}: {file} vanished while reading")
        return out

    def _files_under(self, name: str) -> list[str]:
        try:
            is_dir = self.host.stat(name).is_dir
        except HostError:
            return [name]
        if not is_dir:
            return [name]
        out: list[str] = []
        for entry in self.host.listdir(name):
            out.extend(self._files_under(f"{name.rstrip('/')}/{entry}"))
        return out

    def condition(self, kind: str, args: tuple[str, ...], where: Where) -> bool:
        """Whether a conditional section's contents count, decided as httpd decides it at this point."""
        if kind in ("ifdirective", "ifsection") or not args:
            self.note(f"{where}: <{kind}> not evaluated; its contents are read as if true")
            return True
        if kind == "ifversion":
            return self._if_version(args, where)
        arg = args[0]
        negate = arg.startswith("!")
        name = arg[1:] if negate else arg
        if kind == "ifmodule":
            if name in self.modules:
                result = True
            elif not self.loaded_any:
                self.note(f"{where}: <IfModule {arg}>: no LoadModule line seen, module set unknown; read as true")
                return True
            else:
                result = False
        elif kind == "ifdefine":
            result = name in self.defines
        else:   # iffile
            result = self.host.exists(self.absolute(name))
        return result != negate

    def _if_version(self, args: tuple[str, ...], where: Where) -> bool:
        """httpd's own version is not known under --root; the reader models 2.4, so a test decided the same
        way for every 2.4.x counts, any other is read as true and noted."""
        op, ver = (args[0], args[1]) if len(args) > 1 else ("=", args[0])
        wanted = _version_tuple(ver)
        ops: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
            "=": lambda a, b: a[:len(b)] == b, "==": lambda a, b: a[:len(b)] == b,
            ">": lambda a, b: a > b, ">=": lambda a, b: a[:len(b)] >= b,
            "<": lambda a, b: a[:len(b)] < b, "<=": lambda a, b: a[:len(b)] <= b}
        negate = op.startswith("!")
        func = ops.get(op[1:] if negate else op)
        if wanted is None or func is None:
            self.note(f"{where}: <IfVersion {' '.join(args)}> not evaluated; read as true")
            return True
        answers = {bool(func((2, 4, patch), wanted)) for patch in range(0, 100)}
        if len(answers) != 1:
            self.note(f"{where}: <IfVersion {' '.join(args)}> depends on the 2.4 patch level; read as true")
            return True
        return answers.pop() != negate


@dataclass(frozen=True)
class ApacheConfig:
    """The whole configuration as httpd would act on it, with what reading it met."""

    main: str
    server_root: str
    tree: tuple[Directive, ...]
    env: tuple[tuple[str, str], ...]
    defines: tuple[tuple[str, str], ...]
    modules: frozenset[str]
    loaded_any: bool
    files: tuple[str, ...]
    notes: tuple[str, ...]


def read_config(host: Host, main: str, server_root: str, envvars: str | None = None) -> ApacheConfig:
    """Read ``main`` (and its includes) with ``server_root`` as the starting ServerRoot; ``envvars`` names
    Debian's shell file of variables (read when present)."""
    env: dict[str, str] = {}
    if envvars:
        text = host.read_optional(envvars)
        if text is not None:
            env = read_envvars(text)
    reader = _Reader(host, server_root, env)
    tree = reader.read_file(main)
    return ApacheConfig(main, reader.server_root, tuple(tree), tuple(env.items()),
                        tuple(reader.defines.items()), frozenset(reader.modules), reader.loaded_any,
                        tuple(reader.files), tuple(reader.notes))


def _reread(config: ApacheConfig, host: Host, text: str, path: str) -> tuple[list[Directive], list[str]]:
    """An ``.htaccess`` file read with the server's final modules and defines (httpd reads it per request,
    after the whole configuration). Include is not allowed there."""
    reader = _Reader(host, config.server_root, dict(config.env), includes=False)
    reader.defines = dict(config.defines)
    reader.modules = set(config.modules)
    reader.loaded_any = config.loaded_any
    raws = parse_text(text, path)
    return reader.expand(raws, path, (path,)), reader.notes


# -- evaluating ------------------------------------------------------------------------------------------

def _is(d: Directive, *names: str) -> bool:
    return d.name.lower() in names


def _last(directives: Iterable[Directive], name: str) -> Directive | None:
    found = None
    for d in directives:
        if d.block is None and d.name.lower() == name:
            found = d
    return found


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def _compile(pattern: str, where: Where, notes: list[str]) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error as exc:
        notes.append(f"{where}: regular expression {pattern!r} not understood ({exc})")
        return None


def _section_regex(d: Directive) -> tuple[bool, str]:
    """Whether a section is a regex one (``<DirectoryMatch>`` or ``<Directory ~ re>``), and its pattern."""
    if d.name.lower().endswith("match"):
        return True, d.args[0] if d.args else ""
    if len(d.args) >= 2 and d.args[0] == "~":
        return True, d.args[1]
    return False, d.args[0] if d.args else ""


@dataclass(frozen=True)
class _Scope:
    """A set of directives merged at one step of httpd's walk."""

    label: str
    directives: tuple[Directive, ...]
    where: Where


# Tri-state-plus values for Require: an anonymous client from an address nobody chose.
_OPEN, _SOME, _DENIED, _NEUTRAL, _UNKNOWN = "open", "some", "denied", "neutral", "unknown"

# A Require tree: ("prov", the Require arguments, where) or ("all"|"any"|"none", child nodes, where).
_Node = tuple[str, tuple[Any, ...], Where]


@dataclass
class _Authz:
    """The merged authorization of one request as it builds up."""

    require: _Node | None = None
    auth_type: str | None = None
    compat: bool = False            # a section set Order/Allow/Deny/Satisfy (mod_access_compat)
    order: str = "deny,allow"
    allows: tuple[str, ...] = ()
    denies: tuple[str, ...] = ()
    satisfy_any: bool = False
    compat_where: list[Where] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    wheres: list[Where] = field(default_factory=list)


def _limit_applies(d: Directive, method: str = "GET") -> bool:
    methods = {m.upper() for m in d.args}
    if "GET" in methods:
        methods.add("HEAD")
    inside = method in methods
    return inside if _is(d, "limit") else not inside


def _flatten(directives: Iterable[Directive]) -> Iterator[Directive]:
    """A section's own directives, with ``<Limit>``/``<LimitExcept>`` opened when they cover a GET."""
    for d in directives:
        if _is(d, "limit", "limitexcept") and d.block is not None:
            if _limit_applies(d):
                yield from _flatten(d.block)
            continue
        yield d


def _require_node(d: Directive) -> _Node:
    if d.block is not None:
        kind = d.name.lower()[len("require"):]  # all / any / none
        children = tuple(_require_node(c) for c in _flatten(d.block) if _is(c, "require", "requireall",
                                                                              "requireany", "requirenone"))
        return (kind, children, d.where)
    return ("prov", d.args, d.where)


def _eval_provider(args: tuple[str, ...], authz: _Authz) -> str:
    if not args:
        return _UNKNOWN
    negate = args[0].lower() == "not"
    words = args[1:] if negate else args
    if not words:
        return _UNKNOWN
    name = words[0].lower()
    value: str
    if name == "all" and len(words) > 1 and words[1].lower() == "granted":
        value = _OPEN
    elif name == "all" and len(words) > 1 and words[1].lower() == "denied":
        value = _DENIED
    elif name in _ADDRESS_PROVIDERS:
        value = _SOME
        if name == "ip":
            for item in words[1:]:
                try:
                    if ipaddress.ip_network(item, strict=False).prefixlen == 0:
                        value = _OPEN
                except ValueError:
                    pass
    elif name in _USER_PROVIDERS:
        # without AuthType httpd cannot ask for a password and answers 500 for every request
        value = _SOME if authz.auth_type else _DENIED
    else:
        authz.unknown.append(f"Require {' '.join(args)} (not evaluated)")
        return _UNKNOWN
    if negate:
        return {_OPEN: _DENIED, _DENIED: _NEUTRAL, _SOME: _NEUTRAL}.get(value, _UNKNOWN)
    return value


def _eval_node(node: _Node, authz: _Authz) -> str:
    kind, payload, _where = node
    if kind == "prov":
        return _eval_provider(tuple(str(a) for a in payload), authz)
    values = [_eval_node(c, authz) for c in payload]
    if kind == "all":
        if _DENIED in values:
            return _DENIED
        if _UNKNOWN in values:
            return _UNKNOWN
        if _SOME in values:
            return _SOME
        return _OPEN if _OPEN in values else _NEUTRAL
    if kind == "any":
        for v in (_OPEN, _SOME, _UNKNOWN):
            if v in values:
                return v
        return _NEUTRAL if _NEUTRAL in values else _DENIED
    # none: succeeds never; fails when any child grants
    if _OPEN in values:
        return _DENIED
    if _UNKNOWN in values:
        return _UNKNOWN
    return _NEUTRAL


def _compat(authz: _Authz) -> str | None:
    """mod_access_compat's Order/Allow/Deny for a client from an address nobody chose; None when unused."""
    if not authz.compat:
        return None
    allows = [a.lower() for a in authz.allows]
    denies = [a.lower() for a in authz.denies]
    allow_all, deny_all = "all" in allows, "all" in denies
    if authz.order == "deny,allow":
        if not deny_all:
            return _OPEN
        return _OPEN if allow_all else (_SOME if allows else _DENIED)
    # allow,deny and mutual-failure: allowed only when allowed and not denied
    if deny_all or not allows:
        return _DENIED
    return _OPEN if allow_all else _SOME


_RANK = {_DENIED: 0, _UNKNOWN: 1, _SOME: 2, _OPEN: 3}
_REACH = {_OPEN: Reach.OPEN, _SOME: Reach.RESTRICTED, _DENIED: Reach.DENIED, _NEUTRAL: Reach.DENIED,
          _UNKNOWN: Reach.UNKNOWN}


def _normalize_uri(uri: str) -> str:
    """The decoded URL path httpd maps: %-escapes decoded, ``//`` merged, ``.`` and ``..`` resolved."""
    path = urllib.parse.unquote(uri.split("?", 1)[0].split("#", 1)[0], errors="surrogateescape")
    if not path.startswith("/"):
        path = "/" + path
    trailing = path.endswith("/")
    norm = posixpath.normpath(path)
    norm = "/" + norm.lstrip("/")
    return norm + "/" if trailing and norm != "/" else norm


def _fnmatch_path(name: str, pattern: str) -> bool:
    """fnmatch(3) with FNM_PATHNAME, as httpd's wildcard ``<Location>`` uses it: ``*`` and ``?`` stop at
    ``/``."""
    out = []
    for part in re.split(r"(\*|\?|\[[^\]]*\])", pattern):
        if part == "*":
            out.append("[^/]*")
        elif part == "?":
            out.append("[^/]")
        elif part.startswith("[") and part.endswith("]") and len(part) > 2:
            body = part[1:-1]
            out.append("[^" + re.escape(body[1:]) + "]" if body.startswith("!") else "[" + re.escape(body) + "]")
        else:
            out.append(re.escape(part))
    return re.fullmatch("".join(out), name) is not None


def _alias_prefix_match(alias: str, uri: str) -> int:
    """How much of ``uri`` an Alias's URL covers (mod_alias: segment-wise, slashes merged), 0 when none."""
    a, u = re.sub(r"/+", "/", alias), uri
    if a.endswith("/"):
        return len(a) if u.startswith(a) else 0
    if u == a or u.startswith(a + "/"):
        return len(a)
    return 0


class ApachePolicy:
    """One site's access rules as Apache 2.4 evaluates them (see the module docstring for the order)."""

    def __init__(self, host: Host, config: ApacheConfig, main: tuple[Directive, ...],
                 vhost: tuple[Directive, ...] | None) -> None:
        self.host = host
        self.config = config
        self.main = main
        self.vhost = vhost or ()
        self.levels: tuple[tuple[Directive, ...], ...] = (main, self.vhost)
        self._htaccess: dict[str, tuple[list[Directive], list[str]] | None] = {}

    # -- mapping -------------------------------------------------------------------------------------

    def server_directives(self) -> Iterator[Directive]:
        """Server-context directives of the main server, then of the virtual host (later wins)."""
        for level in self.levels:
            yield from (d for d in level if d.block is None)

    def document_root(self) -> tuple[str, Where]:
        """The site's DocumentRoot (its own, else the main server's, else the compiled-in default)."""
        for level in (self.vhost, self.main):
            d = _last(level, "documentroot")
            if d is not None and d.args:
                return d.args[0].rstrip("/") or "/", d.where
        return DEFAULT_DOCUMENT_ROOT, Where("")

    def map_uri(self, uri: str) -> tuple[str, Where, str | None]:
        """The file a URL maps to, the directive that decided it, and a problem (or None)."""
        notes: list[str] = []
        # mod_alias looks at the virtual host's aliases first, then the main server's
        for level in (self.vhost, self.main):
            for d in level:
                if d.block is not None or len(d.args) < 2:
                    continue
                lname = d.name.lower()
                if lname in ("alias", "scriptalias"):
                    n = _alias_prefix_match(d.args[0], uri)
                    if n:
                        # mod_alias joins the two as strings: "Alias /x/ /srv/x" maps /x/a to /srv/xa
                        return d.args[1] + uri[n:], d.where, None
                elif lname in ("aliasmatch", "scriptaliasmatch"):
                    rx = _compile(d.args[0], d.where, notes)
                    if rx is None:
                        return "", d.where, notes[0]
                    m = rx.search(uri)
                    if m:
                        groups = (m.group(0), *m.groups())

                        def backref(g: re.Match[str], groups: tuple[str | None, ...] = groups) -> str:
                            index = int(g.group(1))
                            return (groups[index] or "") if index < len(groups) else ""

                        return re.sub(r"\$(\d)", backref, d.args[1]), d.where, None
        root, where = self.document_root()
        return (root.rstrip("/") + uri) if root != "/" else uri, where, None

    # -- collecting the sections that apply ------------------------------------------------------------

    def _sections(self, kinds: tuple[str, ...]) -> list[Directive]:
        """Top-level sections of these kinds: the main server's, then the virtual host's."""
        return [d for level in self.levels for d in level if d.block is not None and d.name.lower() in kinds]

    def _read_htaccess(self, directory: str) -> tuple[str, list[Directive], list[str]] | None:
        names = ".htaccess"
        for d in self.server_directives():
            if _is(d, "accessfilename") and d.args:
                names = " ".join(d.args)
        for name in names.split():
            path = f"{directory.rstrip('/')}/{name}"
            if path not in self._htaccess:
                try:
                    text = self.host.read_optional(path)
                except HostError as exc:   # unreadable: httpd answers 403 for the whole directory
                    self._htaccess[path] = ([Directive("Require", ("all", "denied"), Where(path))],
                                            [f"{path}: unreadable ({exc}); httpd refuses the directory"])
                    continue
                if text is None:
                    self._htaccess[path] = None
                    continue
                try:
                    self._htaccess[path] = _reread(self.config, self.host, text, path)
                except HostError as exc:   # httpd answers 500 for every request below a broken .htaccess
                    self._htaccess[path] = ([Directive("Require", ("all", "denied"), Where(path))],
                                            [f"{exc}; httpd answers 500 below it"])
            found = self._htaccess[path]
            if found is not None:
                return path, found[0], found[1]
        return None

    def scopes(self, filename: str, is_dir: bool, uri: str) -> tuple[list[_Scope], list[str], list[str]]:
        """Every per-directory scope that applies to ``filename`` (requested as ``uri``), in merge order;
        the problems met; and what makes the answer unknown (an .htaccess line httpd may refuse with 500)."""
        notes: list[str] = []
        unknowns: list[str] = []
        directory = filename.rstrip("/") if is_dir else posixpath.dirname(filename)
        dcomps = _components(directory)
        base = posixpath.basename(filename.rstrip("/"))
        dir_sections = self._sections(("directory", "directorymatch"))
        plain = [(i, d) for i, d in enumerate(dir_sections) if not _section_regex(d)[0]]
        plain.sort(key=lambda item: (len(_components(item[1].args[0] if item[1].args else "/")), item[0]))
        out: list[_Scope] = []
        override = _Override()
        for level in range(len(dcomps) + 1):
            for _i, d in plain:
                pcomps = _components(d.args[0] if d.args else "/")
                if len(pcomps) != level:
                    continue
                if all(fnmatch.fnmatchcase(dc, pc) for dc, pc in zip(dcomps[:level], pcomps, strict=False)):
                    out.append(_Scope(f"<Directory {d.args[0] if d.args else ''}>", d.block or (), d.where))
                    ao = _last(d.block or (), "allowoverride")
                    aol = _last(d.block or (), "allowoverridelist")
                    if ao is not None or aol is not None:
                        names = override.names if aol is None else frozenset(
                            a.lower() for a in aol.args if a.lower() != "none")
                        override = _Override.parse(ao.args, names) if ao is not None else _Override(
                            override.classes, names, override.nonfatal)
            if override.reads:
                here = "/" + "/".join(dcomps[:level])
                found = self._read_htaccess(here)
                if found is not None:
                    path, directives, hnotes = found
                    notes.extend(hnotes)
                    if "override" in override.nonfatal:
                        directives = self._drop_not_allowed(directives, override)
                    bad = self._not_allowed(directives, override)
                    if bad is not None:
                        directives = [Directive("Require", ("all", "denied"), bad.where)]
                        notes.append(f"{bad.where}: {bad.name} not allowed by {override.label()}: "
                                     "httpd answers 500")
                    elif (unknown := self._unclassified(directives, override)) is not None:
                        unknowns.append(f"{unknown.where}: whether {override.label()} allows "
                                        f"{unknown.name} is not known")
                    out.append(_Scope(path, tuple(directives), Where(path)))
        # httpd tests a <DirectoryMatch> against the whole file name it mapped (so "/dm$" misses
        # /srv/dm/a.html, and "/x/a\.html" hits it), a directory with its trailing slash
        subject = directory.rstrip("/") + "/" if is_dir else filename
        for d in dir_sections:
            is_rx, pattern = _section_regex(d)
            if is_rx:
                rx = _compile(pattern, d.where, notes)
                if rx is not None and rx.search(subject):
                    out.append(_Scope(f"<{d.name} {pattern}>", d.block or (), d.where))
        # Files: server-level ones, then those inside the directory scopes (and .htaccess) that applied
        files_sections = self._sections(("files", "filesmatch"))
        for scope in list(out):
            files_sections.extend(d for d in scope.directives if d.block is not None
                                  and d.name.lower() in ("files", "filesmatch"))
        for d in files_sections:
            is_rx, pattern = _section_regex(d)
            if is_rx:
                rx = _compile(pattern, d.where, notes)
                hit = rx is not None and rx.search(base) is not None
            else:
                hit = fnmatch.fnmatchcase(base, pattern)
            if hit:
                out.append(_Scope(f"<{d.name} {pattern}>", d.block or (), d.where))
        for d in self._sections(("location", "locationmatch")):
            is_rx, pattern = _section_regex(d)
            if is_rx:
                rx = _compile(pattern, d.where, notes)
                hit = rx is not None and rx.search(uri) is not None
            elif glob_magic(pattern):
                hit = _fnmatch_path(uri, pattern)
            else:
                hit = uri.startswith(pattern) and (pattern.endswith("/") or len(uri) == len(pattern)
                                                   or uri[len(pattern)] == "/")
            if hit:
                out.append(_Scope(f"<{d.name} {pattern}>", d.block or (), d.where))
        return out, notes, unknowns

    @staticmethod
    def _walk(directives: Iterable[Directive]) -> Iterator[Directive]:
        for d in directives:
            yield d
            if d.block is not None:
                yield from ApachePolicy._walk(d.block)

    @staticmethod
    def _refused(d: Directive, override: _Override) -> bool:
        """Whether httpd refuses this .htaccess directive under ``override`` (known to be refused)."""
        lname = d.name.lower()
        if lname in _NEVER_IN_HTACCESS:
            return True
        if "all" in override.classes or lname in override.names or lname in _ALWAYS_ALLOWED:
            return False
        cls = _OVERRIDE_CLASSES.get(lname)
        return cls is not None and cls not in override.classes

    def _drop_not_allowed(self, directives: Sequence[Directive], override: _Override) -> list[Directive]:
        """AllowOverride Nonfatal=Override: httpd skips what it may not do instead of failing."""
        out = []
        for d in directives:
            if d.name.lower() in _NEVER_IN_HTACCESS or not self._refused(d, override):
                block = None if d.block is None else tuple(self._drop_not_allowed(d.block, override))
                out.append(Directive(d.name, d.args, d.where, block))
        return out

    def _not_allowed(self, directives: list[Directive], override: _Override) -> Directive | None:
        return next((d for d in self._walk(directives) if self._refused(d, override)), None)

    def _unclassified(self, directives: list[Directive], override: _Override) -> Directive | None:
        if "all" in override.classes or "unknown" in override.nonfatal:
            return None
        for d in self._walk(directives):
            lname = d.name.lower()
            if lname not in _OVERRIDE_CLASSES and lname not in _ALWAYS_ALLOWED and lname not in override.names:
                return d
        return None

    # -- answers ---------------------------------------------------------------------------------------

    def _target(self, uri: str) -> tuple[str, bool, str, Where, str | None]:
        norm = _normalize_uri(uri)
        filename, where, problem = self.map_uri(norm)
        try:
            is_dir = self.host.stat(filename).is_dir
        except HostError:
            is_dir = norm.endswith("/")
        return norm, is_dir, filename, where, problem

    def _authorize(self, scopes: Sequence[_Scope]) -> _Authz:
        authz = _Authz()
        for scope in scopes:
            own = list(_flatten(scope.directives))
            for d in own:
                lname = d.name.lower()
                if lname == "authtype" and d.args:
                    authz.auth_type = None if d.args[0].lower() == "none" else d.args[0]
                elif d.block is not None and lname in ("if", "elseif", "else") and any(
                        _is(x, "require", "requireall", "requireany", "requirenone", "allow", "deny", "authtype")
                        for x in self._walk(d.block)):
                        authz.unknown.append(f"{d.where}: <{d.name}> expression not evaluated")
            self._compat_section(own, authz)
            nodes = [_require_node(d) for d in own if _is(d, "require", "requireall", "requireany", "requirenone")]
            if not nodes:
                continue
            node: _Node = nodes[0] if len(nodes) == 1 else ("any", tuple(nodes), nodes[0][2])
            merging = _last(own, "authmerging")
            mode = merging.args[0].lower() if merging is not None and merging.args else "off"
            if authz.require is not None and mode == "and":
                node = ("all", (authz.require, node), node[2])
            elif authz.require is not None and mode == "or":
                node = ("any", (authz.require, node), node[2])
            authz.require = node
            authz.wheres = [n[2] for n in nodes]
        return authz

    @staticmethod
    def _compat_section(own: Sequence[Directive], authz: _Authz) -> None:
        """mod_access_compat has no merge function: a section that uses any of its directives replaces the
        whole Order/Allow/Deny/Satisfy state (Allow lines within one section add up)."""
        used = [d for d in own if d.block is None and _is(d, "order", "allow", "deny", "satisfy")]
        if not used:
            return
        authz.compat, authz.order, authz.allows, authz.denies, authz.satisfy_any = True, "deny,allow", (), (), False
        authz.compat_where = []
        for d in used:
            lname = d.name.lower()
            if lname == "order" and d.args:
                authz.order = "".join(d.args).lower()
            elif lname == "satisfy" and d.args:
                authz.satisfy_any = d.args[0].lower() == "any"
            elif lname in ("allow", "deny"):
                words = tuple(d.args[1:] if d.args and d.args[0].lower() == "from" else d.args)
                if lname == "allow":
                    authz.allows += words
                else:
                    authz.denies += words
            authz.compat_where.append(d.where)

    def access(self, uri: str) -> Access:
        """What a client without credentials, from an address nobody singled out, gets for ``uri``.

        RESTRICTED covers both a password prompt (401) and an address list the client is not on (403 for
        it, 200 for the chosen addresses): either way the path is not open to the world."""
        norm, is_dir, filename, _where, problem = self._target(uri)
        if problem:
            return Access(Reach.UNKNOWN, problem)
        answer = self._access_file(filename, is_dir, norm)
        if is_dir and norm.endswith("/") and answer.reach in (Reach.OPEN, Reach.RESTRICTED):
            index = self._index_file(filename, norm)
            if index is not None:
                sub = self._access_file(f"{filename.rstrip('/')}/{index}", False, norm + index)
                if _RANK[self._value(sub.reach)] < _RANK[self._value(answer.reach)]:
                    return Access(sub.reach, f"{sub.how} (index file {index})", sub.where)
        return answer

    @staticmethod
    def _value(reach: Reach) -> str:
        return {Reach.OPEN: _OPEN, Reach.RESTRICTED: _SOME, Reach.DENIED: _DENIED, Reach.UNKNOWN: _UNKNOWN}[reach]

    def _index_file(self, directory: str, uri: str) -> str | None:
        scopes, _, _ = self.scopes(directory, True, uri)
        names: tuple[str, ...] = ("index.html",)
        for d in [*self.server_directives(), *(x for s in scopes for x in _flatten(s.directives))]:
            if _is(d, "directoryindex") and d.args:
                names = () if d.args[0].lower() == "disabled" else d.args
        for name in names:
            candidate = name if name.startswith("/") else f"{directory.rstrip('/')}/{name}"
            if not name.startswith("/") and self.host.exists(candidate):
                return name
        return None

    def _access_file(self, filename: str, is_dir: bool, uri: str) -> Access:
        scopes, notes, unknowns = self.scopes(filename, is_dir, uri)
        authz = self._authorize(scopes)
        authz.unknown.extend(unknowns)
        if authz.require is None:
            value = _OPEN
            how = "no Require applies (httpd 2.4 grants)"
        else:
            value = _eval_node(authz.require, authz)
            how = self._describe(authz.require)
        if value == _NEUTRAL:
            value = _DENIED
        compat = _compat(authz)
        if compat is not None:
            how += f"; Order {authz.order} (Allow/Deny)"
            if authz.satisfy_any:
                value = max(value, compat, key=lambda v: _RANK[v])
                how += ", Satisfy Any"
            else:
                value = min(value, compat, key=lambda v: _RANK[v])
        if authz.unknown and value != _DENIED:
            value = _UNKNOWN
            how += "; " + "; ".join(authz.unknown)
        rewrite = next((d for d in (*self.server_directives(), *(x for s in scopes for x in s.directives))
                        if _is(d, "rewriterule")), None)
        if rewrite is not None:
            notes.append(f"{rewrite.where}: RewriteRule not evaluated (a [F] rule could refuse more)")
        if notes:
            how += "; " + "; ".join(notes[:3])
        return Access(_REACH[value], how, tuple(authz.wheres) + tuple(authz.compat_where))

    @staticmethod
    def _describe(node: _Node) -> str:
        kind, payload, where = node
        if kind == "prov":
            return f"Require {' '.join(str(a) for a in payload)} ({where})"
        inner = ", ".join(ApachePolicy._describe(c) for c in payload)
        return f"Require{kind.capitalize()}[{inner}]"

    def runs_php(self, uri: str) -> bool | None:
        """Whether a ``.php`` file at ``uri`` (or, for a directory URL, inside it) is executed: handed to
        PHP-FPM through a ``proxy:`` handler or ``ProxyPassMatch``, or to mod_php by its handler name, with
        ``php_admin_flag engine off`` and ``RemoveHandler`` turning that off."""
        norm = _normalize_uri(uri)
        if not norm.lower().endswith(".php"):
            norm = norm.rstrip("/") + "/hostguard-probe.php"
        for level in (self.vhost, self.main):
            for d in level:
                if d.block is None and _is(d, "proxypassmatch", "proxypass") and len(d.args) >= 2:
                    if _is(d, "proxypass"):
                        hit = norm.startswith(d.args[0])
                    else:
                        rx = _compile(d.args[0], d.where, [])
                        hit = rx is not None and rx.search(norm) is not None
                    if hit:
                        return d.args[1] != "!" and d.args[1].lower().startswith("fcgi://")
        _, _, filename, _, problem = self._target(norm)
        if problem:
            return None
        scopes, _, unknowns = self.scopes(filename, False, norm)
        if unknowns:
            return None
        handler: str | None = None
        by_ext: dict[str, str] = {}
        engine: bool | None = None
        admin_engine: bool | None = None
        actions: dict[str, str] = {}
        ext = filename.rsplit(".", 1)[-1].lower()
        everything = [*self.server_directives(), *(d for s in scopes for d in _flatten(s.directives))]
        for s in scopes:
            for d in s.directives:
                if d.block is not None and _is(d, "if", "elseif", "else") and any(
                        _is(x, "sethandler", "addhandler", "removehandler", "php_admin_flag", "php_flag")
                        for x in self._walk(d.block)):
                    return None
        for d in everything:
            lname = d.name.lower()
            if lname == "sethandler" and d.args:
                handler = None if d.args[0].lower() == "none" else d.args[0]
            elif lname in ("addhandler", "addtype") and len(d.args) >= 2:
                for e in d.args[1:]:
                    if e.lower().lstrip(".") == ext:
                        by_ext[ext] = d.args[0]
            elif lname in ("removehandler", "removetype"):
                if any(e.lower().lstrip(".") == ext for e in d.args):
                    by_ext.pop(ext, None)
            elif lname in ("php_admin_flag", "php_flag") and len(d.args) >= 2 and d.args[0].lower() == "engine":
                on = d.args[1].lower() in ("on", "1", "true", "yes")
                if lname == "php_admin_flag":
                    admin_engine = on
                else:
                    engine = on
            elif lname == "action" and len(d.args) >= 2:
                actions[d.args[0].lower()] = d.args[1]
        chosen = handler or by_ext.get(ext)
        if chosen is None:
            return False
        low = chosen.lower()
        if low.startswith("proxy:"):
            return "fcgi://" in low or low.startswith("proxy:unix:")
        if low in actions:
            return "php" in actions[low].lower()
        if low in _PHP_TYPES:
            mod_php = any("php" in m and m.endswith(("_module", ".c")) for m in self.config.modules)
            if not mod_php:
                return False
            engine_on = admin_engine if admin_engine is not None else engine
            return engine_on is not False
        return False

    def listing(self, uri: str) -> bool:
        """Whether ``Options Indexes`` is in effect for the directory ``uri`` maps to (httpd then lists a
        directory that has no index file)."""
        norm, _is_dir, filename, _where, _problem = self._target(uri)
        scopes, _, _ = self.scopes(filename, True, norm)
        options = {"followsymlinks"}
        for d in (x for s in scopes for x in _flatten(s.directives)):
            if _is(d, "options"):
                options = _merge_options(options, d.args)
        return "indexes" in options


def _merge_options(current: set[str], args: Sequence[str]) -> set[str]:
    """httpd's Options merge: a list without +/- replaces, +X/-X adjust; All is everything but MultiViews."""
    words = [a.lower() for a in args]
    relative = words and all(w[:1] in "+-" for w in words)
    out = set(current) if relative else set()
    for w in words:
        name = w.lstrip("+-")
        names = {"indexes", "includes", "followsymlinks", "execcgi"} if name == "all" else (
            set() if name == "none" else {name})
        if w.startswith("-"):
            out -= names
        else:
            out |= names
    return out


# -- the fact --------------------------------------------------------------------------------------------

def _names(directives: Sequence[Directive]) -> tuple[str, ...]:
    names: list[str] = []
    for d in directives:
        if d.block is None and _is(d, "servername") and d.args:
            host = re.sub(r"^[a-z]+://", "", d.args[0])
            host = re.sub(r":\d+$", "", host)
            names = [host, *names[1:]] if names else [host]
    for d in directives:
        if d.block is None and _is(d, "serveralias"):
            names.extend(a for a in d.args if a not in names)
    return tuple(names)


def _roots(policy: ApachePolicy, notes: list[str]) -> tuple[DocRoot, ...]:
    root, where = policy.document_root()
    roots = [DocRoot("/", root, where)]
    for level in (policy.vhost, policy.main):
        for d in level:
            if d.block is not None:
                continue
            if _is(d, "alias", "scriptalias") and len(d.args) >= 2:
                path = d.args[1].rstrip("/") or "/"
                if not any(r.url == d.args[0] for r in roots):
                    roots.append(DocRoot(d.args[0], path, d.where))
            elif _is(d, "aliasmatch", "scriptaliasmatch") and len(d.args) >= 2:
                notes.append(f"{d.where}: {d.name} {d.args[0]} -> {d.args[1]}: a pattern, not listed as a "
                             "document root (access() follows it)")
    return tuple(roots)


def _php_backends(directives: Sequence[Directive]) -> tuple[str, ...]:
    found: list[str] = []
    for d in ApachePolicy._walk(directives):
        value = None
        if _is(d, "sethandler", "addhandler") and d.args and d.args[0].lower().startswith("proxy:"):
            value = d.args[0]
        elif _is(d, "proxypassmatch", "proxypass") and len(d.args) >= 2 and d.args[1].lower().startswith("fcgi://"):
            value = d.args[1]
        if value is not None and value not in found:
            found.append(value)
    return tuple(found)


def _settings(tree: Sequence[Directive]) -> tuple[tuple[str, str, Where], ...]:
    """Server-wide ServerTokens and ServerSignature (the last of each, or httpd's default), and every
    ``Options`` line that turns directory listing on, with the section it stands in."""
    out: list[tuple[str, str, Where]] = []
    for name, default in (("ServerTokens", "Full"), ("ServerSignature", "Off")):
        d = _last(tree, name.lower())
        out.append((name, d.args[0] if d is not None and d.args else default,
                    d.where if d is not None else Where("")))

    def visit(directives: Sequence[Directive], context: str) -> None:
        for d in directives:
            if d.block is not None:
                visit(d.block, f"{context} <{d.name} {' '.join(d.args)}>".strip())
            elif _is(d, "options") and "indexes" in _merge_options(set(), d.args):
                out.append(("Options Indexes", context or "server", d.where))

    visit(tree, "")
    return tuple(out)


def build_server(host: Host, config: ApacheConfig, default_user: str) -> WebServer:
    """The :class:`WebServer` of a read configuration: the main server as the default site, then one site
    per ``<VirtualHost>``, each with its own :class:`ApachePolicy`."""
    notes = list(config.notes)
    main = tuple(d for d in config.tree if not (d.block is not None and _is(d, "virtualhost")))
    user_d, group_d = _last(main, "user"), _last(main, "group")
    group = group_d.args[0] if group_d is not None and group_d.args else None
    if user_d is not None and user_d.args:
        run_as = (RunAs(user_d.args[0], group, "config", user_d.where),)
    else:
        run_as = (RunAs(default_user, group, "default", Where(""), "no User line: the package's default"),)
    for r in run_as:
        if "${" in r.user:
            notes.append(f"{r.where}: User {r.user} is not resolved")
    mod_php = any(m.startswith("php") and m.endswith("_module") for m in config.modules)
    sites: list[Site] = []
    listens = tuple(" ".join(d.args) for d in ApachePolicy._walk(main) if _is(d, "listen") and d.args)
    blocks: list[tuple[Directive | None, tuple[Directive, ...] | None]] = [(None, None)]
    blocks += [(d, d.block) for d in config.tree if d.block is not None and _is(d, "virtualhost")]
    for block, inner in blocks:
        policy = ApachePolicy(host, config, main, inner)
        own = inner if inner is not None else main
        site_notes: list[str] = []
        roots = _roots(policy, site_notes)
        notes.extend(site_notes)
        backends = _php_backends((*main, *(inner or ())))
        where = block.where if block is not None else Where(config.main)
        detail = "mod_php runs PHP inside these workers" if mod_php else ""
        site_run_as = tuple(RunAs(r.user, r.group, r.source, r.where, "; ".join(x for x in (r.detail, detail) if x))
                            for r in run_as)
        auth_files = tuple(dict.fromkeys(
            (d.args[0] if d.args[0].startswith("/") else posixpath.join(config.server_root, d.args[0]), d.where)
            for d in ApachePolicy._walk((*main, *(inner or ()))) if _is(d, "authuserfile") and d.args))
        sites.append(Site("apache", _names(own), block.args if block is not None else listens, roots, where,
                          site_run_as, backends, policy, password_files=auth_files))
    return WebServer("apache", config.main, run_as, tuple(sites), _settings(config.tree), tuple(notes))


def find_config(host: Host) -> tuple[str, str, str] | None:
    """The main file, ServerRoot and packaged user of the first layout present on the host."""
    for main, server_root, user in LAYOUTS:
        if host.exists(main):
            return main, server_root, user
    return None


def collect_apache(host: Host) -> WebServer | None:
    """Apache's configuration on the host (None when neither Debian's nor RHEL's main file exists)."""
    found = find_config(host)
    if found is None:
        return None
    main, server_root, user = found
    config = read_config(host, main, server_root, f"{server_root}/envvars")
    return build_server(host, config, user)


APACHE: Fact[WebServer | None] = Fact("apache", collect_apache)


def collect_apache_text(host: Host) -> ConfigText:
    """The text of every file Apache's configuration was read from (a fix replaces a line as written); empty
    when there is no Apache or its configuration cannot be read (the ``web_servers`` fact names why)."""
    found = find_config(host)
    if found is None:
        return ConfigText()
    main, server_root, _user = found
    try:
        config = read_config(host, main, server_root, f"{server_root}/envvars")
    except HostError:
        return ConfigText()
    files, real = read_text_of(host, [main, *config.files])
    return ConfigText(files, real)


APACHE_TEXT: Fact[ConfigText] = Fact("apache_text", collect_apache_text)
