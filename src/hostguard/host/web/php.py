"""PHP as host facts: the PHP-FPM pools (who PHP code runs as, where it listens) and the php.ini settings that
matter against trojans (``expose_php``, ``allow_url_include``, ``disable_functions``, ...), per SAPI and per pool.

Both files are PHP's own INI dialect, read here the way PHP's scanner reads them, because a guess at the
syntax would put a value on the wrong pool or miss the line that wins:

* ``;`` starts a comment; ``[name]`` a section; ``key = value`` and ``key[offset] = value`` (php-fpm's
  ``php_admin_value[x]``, ``env[X]``); values may be double-quoted (``\\"``, ``\\\\`` and ``\\$`` escapes, may
  span lines), single-quoted (raw) or bare (ending at ``;``, trailing blanks dropped), pieces written side by
  side are joined (``"/a" /b`` is ``/a/b``), a bare ``On``/``Yes``/``True`` is ``1`` and ``Off``/``No``/
  ``False``/``None``/``Null`` is the empty string, ``${NAME}`` is an earlier setting or an environment
  variable. The environment of the PHP processes is not known here (and never this scanner's own): an unknown
  ``${NAME}`` reads as unset, which is what PHP does with a variable it lacks, and a note says so.
* php.ini keys are case-sensitive; php-fpm's are not. A ``[PATH=...]``/``[HOST=...]`` section holds every
  line after it up to the end of that file (a later ordinary section does not end it: PHP behaves so), and
  those values apply only to scripts under that path or host, so they never count as the SAPI's value.
* php-fpm: ``[global]`` and one section per pool (a repeated section continues the same pool), ``include=``
  globs expanded in order at the place they stand (relative ones against the install prefix), the section
  carried across includes, ``$pool`` replaced by the pool name, relative ``chdir``/``listen`` paths joined
  to the pool's ``prefix``. php-fpm refuses to start on a syntax error, a key without a value or an
  ``include`` that matches nothing, so those are a :class:`HostError` naming file and line. PHP itself
  carries on past a php.ini syntax error with the values read before it: that is a note, and those values
  stand.

The values are the ones ``ini_get()`` returns (``1``/empty for the boolean literals). Per pool,
``php_value``/``php_flag`` and then ``php_admin_value``/``php_admin_flag`` override them: php-fpm applies
both kinds to any setting, even those PHP reserves to php.ini (a running worker's ``ini_get`` shows it; the
admin kind only also forbids the script to change it back), and the admin line wins. A pool's
``disable_functions`` adds to php.ini's list (the functions disabled at startup stay disabled), so the
pool's value is the union of the two lists, not the pool's line alone as ``ini_get`` would show it.

Operator expressions (``E_ALL & ~E_NOTICE``) and PHP constants are not evaluated: such a value is kept as
written with a note. None of the settings read here is written that way in practice. The value scanner is
checked against PHP's own (``get_cfg_var`` of generated lines, tests/host/web/test_php.py), down to the odd
corners a hand-written line can hit (blanks around quotes, a stray ``'``, ``x = a=b`` setting ``a``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from hostguard.engine.facts import Fact
from hostguard.host.base import FileMissing, Host, HostError
from hostguard.host.web.model import PhpPool, Where

MAX_INCLUDE_DEPTH = 16

# The settings the web family reads, with PHP's built-in default (``php -n`` prints these: what a SAPI
# without any php.ini line for it runs with).
SETTINGS: dict[str, str] = {
    "expose_php": "1",
    "allow_url_include": "0",
    "allow_url_fopen": "1",
    "disable_functions": "",
    "display_errors": "1",
    "open_basedir": "",
}

_TRUE = frozenset({"on", "yes", "true"})
_FALSE = frozenset({"off", "no", "false", "none", "null"})
_OPERATORS = frozenset("|&~!^()")
_VERSION = re.compile(r"^\d+(\.\d+)*$")


# -- the INI scanner -----------------------------------------------------------------------------------


class IniSyntaxError(Exception):
    """A line PHP's INI scanner rejects: its 1-based number and what is wrong."""

    def __init__(self, line: int, message: str, partial: IniLine | None = None) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message
        self.partial = partial     # the entry PHP still keeps from the failing line (``a`` of ``x = a=b``)


class _ValueError(Exception):
    """A value PHP's scanner stops in; ``partial`` is the text PHP still assigns (None: nothing)."""

    def __init__(self, message: str, partial: str | None = None, raw: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.partial = partial
        self.raw = raw


@dataclass(frozen=True)
class IniLine:
    """One section header (``value`` None, ``key`` the section name, ``section`` True) or one entry
    (``value`` None for a bare key written without ``=``)."""

    key: str
    value: str | None
    line: int
    section: bool = False
    raw: str = ""                   # the value as written, comment and surrounding blanks removed
    unresolved: tuple[str, ...] = ()   # ${NAME}s that were neither an earlier setting nor known
    expression: bool = False        # an operator expression PHP would evaluate, kept as written


def scan_ini(text: str, lookup: Callable[[str], str | None] = lambda _name: None) -> Iterator[IniLine]:
    """The sections and entries of an INI text in order; :class:`IniSyntaxError` where PHP's scanner stops.

    ``lookup`` answers ``${NAME}`` (an earlier setting, or the environment when known); None reads as unset.
    A generator, so a caller that must keep what came before an error (php.ini) can.
    """
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        number = i + 1
        stripped = lines[i].rstrip("\r").lstrip(" \t")
        i += 1
        if not stripped or stripped.startswith(";"):
            continue
        if stripped.startswith("["):
            end = stripped.find("]")
            if end < 0:
                raise IniSyntaxError(number, "a section header without its closing `]`")
            rest = stripped[end + 1:].strip()
            if rest and not rest.startswith(";"):
                raise IniSyntaxError(number, f"text after the section header: {rest[:40]!r}")
            yield IniLine(stripped[1:end].strip(), None, number, section=True)
            continue
        key, eq, rest = stripped.partition("=")
        if not eq or ";" in key:      # a name alone (PHP keeps no value for it), its comment after it
            yield IniLine(key.split(";", 1)[0].strip(), None, number)
            continue
        key = key.strip()
        if not key:
            raise IniSyntaxError(number, "`=` without a name before it")
        try:
            value, raw, used, unresolved, expression = _scan_value(rest, lines, i, lookup)
        except _ValueError as bad:
            partial = None if bad.partial is None else IniLine(key, bad.partial, number, raw=bad.raw)
            raise IniSyntaxError(number, bad.message, partial) from None
        i += used
        yield IniLine(key, value, number, raw=raw, unresolved=unresolved, expression=expression)


def _scan_value(rest: str, lines: list[str], nxt: int, lookup: Callable[[str], str | None]
                ) -> tuple[str, str, int, tuple[str, ...], bool]:
    """One value: (text as PHP keeps it, as written, extra lines consumed, unresolved names, expression).

    Tokens as PHP's lexer cuts them: blanks after a bare run or a single-quoted piece are kept when another
    piece follows (the value's end is trimmed), blanks around a double-quoted piece are dropped, and a
    boolean word (``on``, ``off``, ``none``, ...) starting a token is a token of its own that must be the
    whole value. An empty ``''``, or an unclosed ``'`` after some text, ends the value there (PHP drops the
    rest of the line silently).
    :class:`_ValueError` carries what PHP still assigns when it stops (``x = a=b`` sets ``a``).
    """
    buf = rest.rstrip("\r")
    used = 0
    pos = 0
    text = ""                 # the value so far
    pending = ""              # blanks after a bare or single-quoted piece, kept if another piece follows
    started = False           # some piece was read
    token_start = True        # the next character starts a token (a boolean word may stand here)
    boolean: str | None = None
    unresolved: list[str] = []
    expression = False
    raw_parts = [buf]

    def variable(at: int) -> tuple[str, int]:
        end = buf.find("}", at + 2)
        if end < 0:
            raise _ValueError("`${` without its closing `}`")
        name = buf[at + 2:end]
        if not name or any(ch in name for ch in '"{$;=[]()!&|^~\n'):
            raise _ValueError(f"`${{{name}}}` is not a variable name")
        value = lookup(name)
        if value is None:
            unresolved.append(name)
            value = ""
        return value, end + 1

    keep_blanks = False       # whether blanks now go to ``pending``
    while pos < len(buf):
        c = buf[pos]
        if c == ";":
            break
        if c in " \t":
            if keep_blanks and boolean is None:
                pending += c
            token_start = True
            pos += 1
            continue
        if c == "'" and (buf.startswith("''", pos) or buf.find("'", pos + 1) < 0):
            # an empty '' or an unclosed ' ends the value where it stands: PHP ignores the rest of the line
            if boolean is None and not started and not buf.startswith("''", pos):
                raise _ValueError("a single-quoted value that is never closed")
            kept = boolean if boolean is not None else text + pending
            if buf.startswith("''", pos):
                _after_empty_quotes(buf[pos + 2:], kept, buf[:pos].strip(), lookup)
            return kept, buf[:pos].strip(), used, tuple(unresolved), expression and boolean is None
        if boolean is not None:
            raise _ValueError(f"unexpected {buf[pos:pos + 20]!r} after a boolean word", boolean, buf[:pos].strip())
        word = _BOOL_WORD.match(buf, pos) if token_start else None
        if word and not _value_char(buf, word.end(1)):
            if started:
                raise _ValueError(f"unexpected boolean word {word.group(1)!r} inside a value", text + pending,
                                  buf[:pos].strip())
            boolean = "1" if word.group(1).lower() in _TRUE else ""
            pos = word.end()
            continue
        if c == "=":
            raise _ValueError("`=` inside a value (quote the value)", text + pending, buf[:pos].strip())
        text += "" if c == '"' else pending     # blanks before a double-quoted piece are dropped too
        pending = ""
        started = True
        if c == '"':
            pos += 1
            while True:
                if pos >= len(buf):       # a double-quoted string may run over several lines
                    if nxt + used >= len(lines):
                        raise _ValueError("a double-quoted value that is never closed")
                    text += "\n"
                    buf = lines[nxt + used].rstrip("\r")
                    raw_parts.append(buf)
                    used += 1
                    pos = 0
                    continue
                ch = buf[pos]
                if ch == "\\" and pos + 1 < len(buf) and not (buf[pos + 1] == '"' and pos + 2 == len(buf)):
                    esc = buf[pos + 1]      # (a \" ending the line closes the string: PHP's lexer does so)
                    text += esc if esc in '"\\$' else ch + esc
                    pos += 2
                elif ch == '"':
                    pos += 1
                    break
                elif ch == "$" and buf.startswith("${", pos):
                    value, pos = variable(pos)
                    text += value
                else:
                    text += ch
                    pos += 1
            keep_blanks, token_start = False, True
        elif c == "'":
            end = buf.find("'", pos + 1)
            text += buf[pos + 1:end]
            pos = end + 1
            keep_blanks, token_start = True, True
        elif c == "$" and buf.startswith("${", pos):
            value, pos = variable(pos)
            text += value
            keep_blanks, token_start = True, True
        else:
            if c in _OPERATORS:
                expression = True
            text += c
            pos += 1
            keep_blanks, token_start = True, False
    raw = "\n".join(raw_parts)
    raw = raw.split(";", 1)[0].strip() if used == 0 else raw.strip()
    if expression and not text.strip(" \t"):
        raise _ValueError("an operator without a value")
    if boolean is not None:
        return boolean, raw, used, tuple(unresolved), False
    return text, raw, used, tuple(unresolved), expression


def _after_empty_quotes(rest: str, partial: str, raw: str, lookup: Callable[[str], str | None]) -> None:
    """After an empty ``''`` PHP reads the rest of the line as if a new line began (a name, ``=``, a value)
    and assigns none of it; only a syntax error there matters: :class:`_ValueError` with the value kept."""
    head, eq, tail = rest.partition("=")
    name = head.split(";", 1)[0]
    bad = next((ch for ch in name if ch in '"{}$()!&|^~'), None)
    if bad is None and "[" in name:
        bad = "["
    if bad is not None:
        raise _ValueError(f"unexpected {bad!r} after ''", partial, raw)
    if eq and ";" not in head:
        try:
            _scan_value(tail, [], 0, lookup)
        except _ValueError as exc:
            raise _ValueError(exc.message, partial, raw) from None


_BOOL_WORD = re.compile(r"(?i)(true|on|yes|false|off|none|no|null)[ \t]*")
_NOT_VALUE = frozenset("= \t\n\r;&|^~()!\"'\0")


def _value_char(buf: str, at: int) -> bool:
    """Whether ``buf[at]`` would continue a bare run (so a boolean word before it is just text)."""
    if at >= len(buf):
        return False
    if buf[at] == "$":
        return not buf.startswith("${", at)
    return buf[at] not in _NOT_VALUE


def _notes_for(entry: IniLine, path: str) -> list[str]:
    notes = [f"{path}:{entry.line}: ${{{name}}} is not known here; read as unset" for name in entry.unresolved]
    if entry.expression:
        notes.append(f"{path}:{entry.line}: `{entry.key}` is an expression hostguard does not evaluate "
                     f"({entry.raw!r}); kept as written")
    return notes


def php_bool(value: str) -> bool:
    """PHP's reading of a boolean setting: ``on``/``yes``/``true`` (any case) or a non-zero leading number."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    number = re.match(r"^[+-]?\d+", text)
    return bool(number and int(number.group()) != 0)


# -- php.ini -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IniValue:
    """One effective setting: the value ``ini_get()`` returns, where it was set (``Where("")``: PHP's
    built-in default) and the text as written there."""

    value: str
    where: Where
    raw: str = ""

    @property
    def enabled(self) -> bool:
        """The value read as PHP reads a boolean setting."""
        return php_bool(self.value)

    @property
    def items(self) -> tuple[str, ...]:
        """A comma-separated list setting (``disable_functions``) as its non-empty items."""
        return tuple(p.strip() for p in self.value.split(",") if p.strip())


@dataclass(frozen=True)
class PhpIni:
    """The effective values of :data:`SETTINGS` for one SAPI of one PHP install (``pool`` None), or for one
    PHP-FPM pool (its php_admin_value overrides applied over its SAPI's values)."""

    version: str                     # "8.2"; "" where the layout does not say (RHEL's /etc/php.ini)
    sapi: str                        # "fpm", "apache2", "cli", ...; "all" for one php.ini every SAPI reads
    pool: str | None
    files: tuple[str, ...]           # php.ini, then the scanned conf.d files, in the order PHP reads them
    settings: tuple[tuple[str, IniValue], ...]
    notes: tuple[str, ...] = ()
    pool_where: Where | None = None  # the pool's section line, for a pool's values
    scan_dir: str = ""               # the directory of .ini files PHP reads after php.ini (a drop-in goes there)

    def get(self, name: str) -> IniValue:
        """The effective value of one of :data:`SETTINGS`."""
        for key, value in self.settings:
            if key == name:
                return value
        raise KeyError(name)

    def label(self) -> str:
        """How a finding names this view: ``PHP 8.2 fpm pool www``."""
        head = f"PHP {self.version} {self.sapi}" if self.version else f"PHP ({self.sapi})"
        return f"{head} pool {self.pool}" if self.pool is not None else head


@dataclass(frozen=True)
class _Install:
    """Where one PHP install keeps a SAPI's php.ini and scan directory."""

    version: str
    sapi: str
    ini: str
    scan_dir: str


def _installs(host: Host) -> list[_Install]:
    """The PHP SAPIs configured on the host: Debian's /etc/php/<ver>/<sapi>/, RHEL's /etc/php.ini with
    /etc/php.d, and a source or container build's /usr/local/etc/php."""
    out: list[_Install] = []
    for version in host.listdir("/etc/php"):
        if not _VERSION.match(version):
            continue
        for sapi in host.listdir(f"/etc/php/{version}"):
            base = f"/etc/php/{version}/{sapi}"
            if sapi != "mods-available" and (host.exists(f"{base}/php.ini") or host.exists(f"{base}/conf.d")):
                out.append(_Install(version, sapi, f"{base}/php.ini", f"{base}/conf.d"))
    for ini, scan in (("/etc/php.ini", "/etc/php.d"), ("/usr/local/etc/php/php.ini", "/usr/local/etc/php/conf.d")):
        if host.exists(ini) or host.exists(scan):
            out.append(_Install("", "all", ini, scan))
    return out


def _ini_files(host: Host, install: _Install) -> list[str]:
    """php.ini (when present) then the scan directory's ``*.ini`` regular files, sorted as PHP sorts them."""
    files = [install.ini] if _is_file(host, install.ini) else []
    for name in sorted(host.listdir(install.scan_dir), key=lambda n: n.encode("utf-8", "surrogateescape")):
        path = f"{install.scan_dir}/{name}"
        if name.endswith(".ini") and _is_file(host, path):
            files.append(path)
    return files


def _is_file(host: Host, path: str) -> bool:
    try:
        return host.stat(path).is_file
    except FileMissing:
        return False


def read_php_ini(host: Host, files: list[str]) -> tuple[dict[str, IniValue], list[str]]:
    """The effective :data:`SETTINGS` after reading ``files`` in order (each one's last line winning), with
    notes: a syntax error keeps the values read before it (PHP carries on with them), values under a
    ``[PATH=]``/``[HOST=]`` section are only named."""
    values = {name: IniValue(default, Where("")) for name, default in SETTINGS.items()}
    seen: dict[str, str] = {}
    notes: list[str] = []
    for path in files:
        text = host.read_text(path)
        special: str | None = None
        try:
            for entry in scan_ini(text, seen.get):
                if entry.section:
                    if entry.key[:5].upper() in ("PATH=", "HOST="):
                        special = entry.key
                    continue
                if entry.value is None:
                    continue
                if special is not None:
                    if entry.key in SETTINGS:
                        notes.append(f"{path}:{entry.line}: {entry.key} under [{special}] applies only there")
                    continue
                seen[entry.key] = entry.value
                if entry.key in SETTINGS:
                    values[entry.key] = IniValue(entry.value, Where(path, entry.line), entry.raw)
                    notes += _notes_for(entry, path)
        except IniSyntaxError as exc:
            kept = exc.partial
            if kept is not None and kept.value is not None and special is None and kept.key in SETTINGS:
                values[kept.key] = IniValue(kept.value, Where(path, kept.line), kept.raw)
            notes.append(f"{path}:{exc.line}: {exc.message}; PHP ignores the rest of this file")
    return values, notes


# -- PHP-FPM -------------------------------------------------------------------------------------------


@dataclass
class _PoolDraft:
    name: str
    where: Where
    entries: dict[str, tuple[str, Where]] = field(default_factory=dict)


@dataclass(frozen=True)
class FpmConfig:
    """Where a PHP-FPM install keeps its main file, the prefix relative paths are read against, and the
    SAPI whose php.ini its workers start from."""

    path: str
    prefix: str
    version: str
    sapi: str


def _fpm_configs(host: Host) -> list[FpmConfig]:
    out = [FpmConfig(p, "/usr", p.split("/")[3], "fpm") for p in host.glob("/etc/php/*/fpm/php-fpm.conf")
           if _VERSION.match(p.split("/")[3])]
    for path, prefix in (("/etc/php-fpm.conf", "/usr"), ("/usr/local/etc/php-fpm.conf", "/usr/local")):
        if host.exists(path):
            out.append(FpmConfig(path, prefix, "", "all"))
    return out


_ARRAY = re.compile(r"^(php_value|php_admin_value|php_flag|php_admin_flag|env)\[(.*)\]$", re.IGNORECASE)
_FPM_FALSE = frozenset({"", "0", "no", "off", "false"})
_FPM_TRUE = frozenset({"1", "yes", "on", "true"})


def read_fpm(host: Host, config: FpmConfig) -> tuple[PhpPool, ...]:
    """The pools of one php-fpm configuration, in the order php-fpm first meets them."""
    pools: dict[str, _PoolDraft] = {}
    current: list[_PoolDraft | None] = [None]    # the section, carried across includes as php-fpm does

    def load(path: str, depth: int) -> None:
        if depth > MAX_INCLUDE_DEPTH:
            raise HostError(f"{path}: includes nested deeper than {MAX_INCLUDE_DEPTH} (an include loop?)")
        try:
            text = host.read_text(path)
        except FileMissing as exc:
            raise HostError(f"{path}: no such file (php-fpm refuses to start)") from exc
        try:
            for entry in scan_ini(text):
                where = Where(path, entry.line)
                if entry.section:
                    if entry.key.lower() == "global":
                        current[0] = None
                    else:
                        current[0] = pools.setdefault(entry.key, _PoolDraft(entry.key, where))
                    continue
                if entry.value is None:
                    raise HostError(f"{path}:{entry.line}: `{entry.key}` has no value (php-fpm refuses to start)")
                if entry.key.lower() == "include":
                    pattern = entry.value if entry.value.startswith("/") else f"{config.prefix}/{entry.value}"
                    matches = host.glob(pattern)
                    if not matches:
                        raise HostError(f"{path}:{entry.line}: include={entry.value} matches no file "
                                        f"(php-fpm refuses to start)")
                    for match in matches:
                        load(match, depth + 1)
                    continue
                pool = current[0]
                if pool is not None:
                    pool.entries[_fpm_key(entry.key, path, entry.line)] = (entry.value, where)
        except IniSyntaxError as exc:
            raise HostError(f"{path}:{exc.line}: {exc.message} (php-fpm refuses to start)") from exc

    load(config.path, 0)
    return tuple(_finish(draft, config) for draft in pools.values())


def _fpm_key(key: str, path: str, line: int) -> str:
    """php-fpm's name for a key: case-folded, ``php_flag`` stored as ``php_value`` (its value made 1 or 0
    later), the offset of an array key kept as written (PHP setting names are case-sensitive)."""
    array = _ARRAY.match(key.strip())
    if not array:
        return key.strip().lower()
    kind, name = array.group(1).lower(), array.group(2).strip().strip("'\"")
    if not name:
        raise HostError(f"{path}:{line}: `{key}` names no setting (php-fpm refuses to start)")
    return f"{kind}[{name}]"


def _finish(draft: _PoolDraft, config: FpmConfig) -> PhpPool:
    directives: list[tuple[str, str, Where]] = []
    for key, (value, where) in draft.entries.items():
        value = value.replace("$pool", draft.name)
        if key.startswith(("php_flag[", "php_admin_flag[")):
            low = value.strip().lower()
            if low not in _FPM_TRUE | _FPM_FALSE:
                raise HostError(f"{where}: `{key}` needs a boolean, not {value!r} (php-fpm refuses to start)")
            key = key.replace("_flag[", "_value[", 1)
            value = "1" if low in _FPM_TRUE else "0"
        directives.append((key, value, where))
    got = {key: value for key, value, _ in directives}
    prefix = got.get("prefix") or config.prefix
    settings = tuple(d for d in directives if d[0].startswith(("php_value[", "php_admin_value[")))
    return PhpPool(name=draft.name, user=got.get("user"), group=got.get("group"),
                   listen=_full_listen(got.get("listen"), prefix), chdir=_full_path(got.get("chdir"), prefix),
                   where=draft.where, settings=settings, config=config.path, directives=tuple(directives))


def _full_path(path: str | None, prefix: str) -> str | None:
    """A relative path as php-fpm completes it: against the pool's prefix (the install prefix by default)."""
    if not path or path.startswith("/"):
        return path
    return posixpath.join(prefix, path)


def _full_listen(listen: str | None, prefix: str) -> str | None:
    """``listen``: a unix socket path is completed like a path; ``port`` and ``address:port`` stay."""
    if not listen or ":" in listen or listen.isdigit():
        return listen
    return _full_path(listen, prefix)


# -- facts ---------------------------------------------------------------------------------------------


def collect_php_fpm(host: Host) -> tuple[PhpPool, ...]:
    """Every PHP-FPM pool configured on the host (Debian's per-version installs, RHEL's /etc/php-fpm.conf,
    a source build's /usr/local/etc/php-fpm.conf); empty when PHP-FPM is not installed."""
    return tuple(pool for config in _fpm_configs(host) for pool in read_fpm(host, config))


def _pool_view(base: PhpIni, pool: PhpPool) -> PhpIni:
    """The values a pool's workers run with: its php_value lines, then its php_admin_value lines (php-fpm's
    order: the admin line wins) over the SAPI's, disable_functions as the union of every list."""
    values = dict(base.settings)
    ordered = sorted(pool.settings, key=lambda s: s[0].startswith("php_admin_value["))  # admin lines last
    for key, value, where in ordered:
        name = key[key.index("[") + 1:-1]
        if name not in SETTINGS:
            continue
        if name == "disable_functions":
            union = dict.fromkeys((*values[name].items, *(p.strip() for p in value.split(",") if p.strip())))
            value = ",".join(union)
        values[name] = IniValue(value, where, value)
    return replace(base, pool=pool.name, settings=tuple(values.items()), pool_where=pool.where)


def _fpm_ini(config: str) -> tuple[str, str, str]:
    """(version, SAPI, php.ini path) whose values the workers of a pool read through ``config`` start with."""
    if config.startswith("/etc/php/"):
        return config.split("/")[3], "fpm", posixpath.join(posixpath.dirname(config), "php.ini")
    if config == "/usr/local/etc/php-fpm.conf":
        return "", "all", "/usr/local/etc/php/php.ini"
    return "", "all", "/etc/php.ini"


def collect_php_ini(host: Host, pools: tuple[PhpPool, ...] | None) -> tuple[PhpIni, ...]:
    """The effective :data:`SETTINGS` of every configured SAPI, then of every PHP-FPM pool (its SAPI's values
    with the pool's overrides). ``pools`` None: the pools could not be read (the php_fpm fact says why), so
    no pool view is given and the fpm views say so."""
    views: dict[str, PhpIni] = {}
    for install in _installs(host):
        files = _ini_files(host, install)
        values, notes = read_php_ini(host, files)
        if not _is_file(host, install.ini):
            notes.insert(0, f"{install.ini}: missing; PHP's built-in defaults apply where conf.d sets nothing")
        if pools is None and install.sapi in ("fpm", "all"):
            notes.append("the PHP-FPM pools could not be read: their own values are unknown")
        views[install.ini] = PhpIni(install.version, install.sapi, None, tuple(files), tuple(values.items()),
                                    tuple(notes), scan_dir=install.scan_dir)
    out = list(views.values())
    for pool in pools or ():
        version, sapi, ini = _fpm_ini(pool.config)
        base = views.get(ini) or PhpIni(version, sapi, None, (),
                                        tuple((n, IniValue(d, Where(""))) for n, d in SETTINGS.items()),
                                        (f"{ini}: missing; PHP's built-in defaults apply",))
        out.append(_pool_view(base, pool))
    return tuple(out)


PHP_FPM: Fact[tuple[PhpPool, ...]] = Fact("php_fpm", collect_php_fpm)
PHP_INI: Fact[tuple[PhpIni, ...]] = Fact("php_ini", collect_php_ini, inputs=(PHP_FPM.best_effort,))
