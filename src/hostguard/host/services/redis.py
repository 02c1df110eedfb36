"""Redis as its own configuration makes it at boot: where it listens and whether a client needs a password.

``/etc/redis/redis.conf`` is read the way redis-server 7 reads it: one directive a line, arguments split
like ``sdssplitargs`` (double quotes with escapes, single quotes), ``include`` files read in place (globs
allowed), the last value of a directive winning. The users are then settled the way the server settles
them after loading its configuration, which the tests prove against a real redis-server:

1. ``requirepass`` sets the ``default`` user's password (``requirepass ""`` removes it);
2. inline ``user`` lines follow; a ``user default ...`` line *resets* the default user first, so it
   overrides ``requirepass`` whatever their order;
3. with ``aclfile`` the file replaces every user, and when it does not name ``default``, the default user
   is back to ``on nopass ~* +@all``: ``requirepass`` is then ignored — a trap worth a finding.

With protected mode on and a password-less default user, Redis answers only loopback and unix-socket
clients, so the network answer is :attr:`AuthKind.REFUSED` rather than :attr:`AuthKind.NONE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostguard.engine.facts import Fact
from hostguard.host.base import Host, HostError
from hostguard.host.services.common import (
    DEFAULT,
    MAX_INCLUDE_DEPTH,
    Auth,
    AuthKind,
    Listen,
    Listening,
    Scope,
    Setting,
    as_bool,
    as_port,
    classify,
    defaults,
    join,
    one_line,
    read_config,
)
from hostguard.host.web.model import Where

CONFIG = "/etc/redis/redis.conf"
YES_NO = {"yes": True, "no": False}


@dataclass(frozen=True)
class RedisUser:
    """One ACL user as the server ends up with it: enabled or not, whether it needs a password."""

    name: str
    enabled: bool
    nopass: bool
    passwords: int       # how many passwords or hashes it accepts (never the passwords themselves)
    where: Where         # the ``user`` line (config or ACL file); DEFAULT for the built-in default user

    @property
    def open(self) -> bool:
        """Whether anyone can log in as this user without knowing a password."""
        return self.enabled and self.nopass


@dataclass(frozen=True)
class RedisConfig:
    """The effective Redis configuration: the values the services checks read, each with its line."""

    config: str
    files: tuple[str, ...]
    bind: tuple[Setting, ...]            # one per address as written ("-::1" keeps its dash)
    port: Setting
    tls_port: Setting | None
    unixsocket: Setting | None
    protected_mode: Setting
    requirepass: Where | None            # where a password was set (the value is never kept)
    aclfile: Setting | None
    users: tuple[RedisUser, ...]         # default first
    renamed: tuple[tuple[str, str, Where], ...]   # (command, new name, line); "" = disabled
    listening: Listening
    auth: Auth
    notes: tuple[str, ...] = ()

    @property
    def default_user(self) -> RedisUser:
        """The user an unauthenticated connection is logged in as."""
        return self.users[0]

    def renamed_to(self, command: str) -> tuple[str, Where] | None:
        """What ``command`` (``CONFIG``) was renamed to (``""``: disabled) and where; None when untouched."""
        found = None
        for name, new, where in self.renamed:
            if name == command.lower():
                found = (new, where)
        return found


# -- tokenizing ------------------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "a": "\a"}


def split_args(line: str) -> list[str] | None:
    """A line split the way redis-server splits it (``sdssplitargs``); None for unbalanced quotes, which the
    server refuses to start on."""
    out: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in " \t\r\n\v\f":
            i += 1
        if i >= n:
            return out
        cur: list[str] = []
        quote = ""
        while True:
            if quote == '"':
                if i >= n:
                    return None
                c = line[i]
                if c == "\\" and i + 3 < n and line[i + 1] == "x" and _hex(line[i + 2:i + 4]):
                    cur.append(chr(int(line[i + 2:i + 4], 16)))
                    i += 4
                    continue
                if c == "\\" and i + 1 < n:
                    cur.append(_ESCAPES.get(line[i + 1], line[i + 1]))
                    i += 2
                    continue
                if c == '"':
                    if i + 1 < n and line[i + 1] not in " \t\r\n\v\f":
                        return None
                    i += 1
                    break
                cur.append(c)
                i += 1
            elif quote == "'":
                if i >= n:
                    return None
                c = line[i]
                if c == "\\" and i + 1 < n and line[i + 1] == "'":
                    cur.append("'")
                    i += 2
                    continue
                if c == "'":
                    if i + 1 < n and line[i + 1] not in " \t\r\n\v\f":
                        return None
                    i += 1
                    break
                cur.append(c)
                i += 1
            else:
                if i >= n or line[i] in " \t\r\n\v\f":
                    break
                if line[i] in "\"'":
                    quote = line[i]
                else:
                    cur.append(line[i])
                i += 1
        out.append("".join(cur))


def _hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


# -- reading ---------------------------------------------------------------------------------------------

@dataclass
class _Read:
    values: dict[str, tuple[list[str], Where]] = field(default_factory=dict)
    users: list[tuple[list[str], Where]] = field(default_factory=list)
    renamed: list[tuple[str, str, Where]] = field(default_factory=list)
    requirepass: tuple[str, Where] | None = None
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_SINGLE = ("bind", "port", "tls-port", "unixsocket", "protected-mode", "aclfile")


def _read(host: Host, path: str, text: str, out: _Read, depth: int) -> None:
    if depth > MAX_INCLUDE_DEPTH:
        raise HostError(f"{path}: includes nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)")
    out.files.append(path)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = Where(path, number)
        args = split_args(line)
        if args is None:
            raise HostError(f"{where}: unbalanced quotes in {one_line(line)!r}")
        if not args:
            continue
        name, rest = args[0].lower(), args[1:]
        if name == "include":
            if len(rest) != 1:
                raise HostError(f"{where}: include takes one file name")
            pattern = join("/", rest[0])   # redis-server opens a relative name from its working directory, /
            matches = host.glob(pattern) if any(c in pattern for c in "*?[") else [pattern]
            if not matches:
                out.notes.append(f"{where}: include {rest[0]} matches no file")
            for included in matches:
                sub = host.read_optional(included)
                if sub is None:
                    raise HostError(f"{where}: included file {included} does not exist")
                _read(host, included, sub, out, depth + 1)
        elif name in _SINGLE:
            if not rest or (name != "bind" and len(rest) != 1):
                raise HostError(f"{where}: wrong number of arguments for {name}")
            out.values[name] = (rest, where)
        elif name == "requirepass":
            if len(rest) != 1:
                raise HostError(f"{where}: wrong number of arguments for requirepass")
            out.requirepass = (rest[0], where)
        elif name == "user":
            if not rest:
                raise HostError(f"{where}: user needs a user name")
            out.users.append((rest, where))
        elif name == "rename-command":
            if len(rest) != 2:
                raise HostError(f"{where}: rename-command takes a command and a new name")
            out.renamed.append((rest[0].lower(), rest[1], where))


class _User:
    """An ACL user being built, rule by rule, the way ``ACLSetUser`` applies them."""

    def __init__(self, name: str, where: Where) -> None:
        self.name = name
        self.where = where
        self.enabled = False
        self.nopass = False
        self.passwords: set[str] = set()

    @classmethod
    def default(cls) -> _User:
        user = cls("default", DEFAULT)
        user.enabled = True
        user.nopass = True
        return user

    def apply(self, rules: list[str], where: Where) -> None:
        self.where = where
        for rule in rules:
            low = rule.lower()
            if low == "on":
                self.enabled = True
            elif low == "off":
                self.enabled = False
            elif low == "nopass":
                self.nopass = True
                self.passwords.clear()
            elif low == "resetpass":
                self.nopass = False
                self.passwords.clear()
            elif low == "reset":
                self.enabled = False
                self.nopass = False
                self.passwords.clear()
            elif rule[:1] in (">", "#"):
                if rule[:1] == "#" and (len(rule) != 65 or not all(c in "0123456789abcdef" for c in low[1:])):
                    raise HostError(f"{where}: {rule[:12]}…: a #hash must be 64 hex digits")
                self.passwords.add(rule)
                self.nopass = False
            elif rule[:1] in ("<", "!"):
                self.passwords.discard((">" if rule[0] == "<" else "#") + rule[1:])
            # key, channel and command rules do not decide who may log in

    def frozen(self) -> RedisUser:
        return RedisUser(self.name, self.enabled, self.nopass, len(self.passwords), self.where)


def _users(host: Host, read: _Read, aclfile: Setting | None) -> tuple[list[_User], list[Where]]:
    """The users after start-up, and the lines that decided the default user's password."""
    default = _User.default()
    deciding: list[Where] = []
    if read.requirepass is not None:
        secret, where = read.requirepass
        default.apply(["resetpass", f">{secret}"] if secret else ["nopass"], where)
        deciding.append(where)
    users: dict[str, _User] = {"default": default}
    if aclfile is None:
        lines = read.users
    else:
        text = host.read_optional(aclfile.value)
        if text is None:
            raise HostError(f"{aclfile.where}: ACL file {aclfile.value} does not exist")
        lines = []
        for number, raw in enumerate(text.splitlines(), 1):
            where = Where(aclfile.value, number)
            if not raw.strip():
                continue
            args = split_args(raw.strip())
            if args is None or len(args) < 2 or args[0] != "user":
                raise HostError(f"{where}: an ACL file line must be 'user <name> <rules>'")
            lines.append((args[1:], where))
        users = {"default": _User.default()}     # the file replaces every user, requirepass included
        deciding = [aclfile.where]
    for args, where in lines:
        name, rules = args[0], args[1:]
        user = users.get(name)
        if user is None:
            user = users[name] = _User(name, where)
        elif name == "default":
            user.apply(["reset"], where)
        user.apply(rules, where)
        if name == "default":
            deciding = [where]
    return list(users.values()), deciding


def parse(host: Host, path: str = CONFIG) -> RedisConfig | None:
    """The effective configuration under ``path``; None when Redis is not installed (no file)."""
    text = read_config(host, path)
    if text is None:
        return None
    read = _Read()
    _read(host, path, text, read, 0)
    built = defaults("redis")

    def one(name: str) -> Setting:
        if name in read.values:
            args, where = read.values[name]
            return Setting(" ".join(args), where)
        return Setting(built[name])

    bind_args, bind_where = read.values.get("bind", (built["bind"].split(), DEFAULT))
    bind = tuple(Setting(a, bind_where) for a in bind_args)
    port = one("port")
    port_no = as_port(port.value, port.where, "port")
    tls = Setting(" ".join(read.values["tls-port"][0]), read.values["tls-port"][1]) if "tls-port" in read.values else None
    tls_no = as_port(tls.value, tls.where, "tls-port") if tls else 0
    unix = one("unixsocket") if "unixsocket" in read.values else None
    protected = one("protected-mode")
    protected_on = as_bool(protected.value, YES_NO, protected.where, "protected-mode")
    aclfile = one("aclfile") if "aclfile" in read.values else None
    if aclfile is not None and read.users:
        raise HostError(f"{aclfile.where}: user lines in the configuration and an aclfile cannot be used together")
    users, deciding = _users(host, read, aclfile)
    if aclfile is not None and read.requirepass is not None:
        read.notes.append(f"{read.requirepass[1]}: requirepass is ignored: the aclfile {aclfile.value} "
                          "decides the default user's password")

    listens: list[Listen] = []
    for number in (n for n in (port_no, tls_no) if n):
        for b in bind:
            address = b.value[1:] if b.value.startswith("-") else b.value
            listens.append(Listen(address, number, classify(address), b.where))
    if unix is not None and unix.value:
        listens.append(Listen(unix.value, None, Scope.NONE, unix.where, "unix"))

    frozen = tuple(u.frozen() for u in users)
    default_user = frozen[0]
    others = [u for u in frozen[1:] if u.open]
    if default_user.open and protected_on:
        auth = Auth(AuthKind.REFUSED, "the default user needs no password, but protected-mode yes refuses "
                    "clients that are not on loopback or the unix socket", (*deciding, protected.where))
    elif default_user.open:
        auth = Auth(AuthKind.NONE, "the default user needs no password and protected-mode is off",
                    (*deciding, protected.where))
    elif others:
        auth = Auth(AuthKind.NONE, f"user {others[0].name} is on with nopass", (others[0].where,))
    elif not any(u.enabled for u in frozen):
        auth = Auth(AuthKind.REFUSED, "no user is enabled", tuple(deciding))
    else:
        auth = Auth(AuthKind.PASSWORD, "every enabled user needs a password", tuple(deciding))
    return RedisConfig(path, tuple(read.files), bind, port, tls, unix, protected,
                       read.requirepass[1] if read.requirepass and read.requirepass[0] else None,
                       aclfile, frozen, tuple(read.renamed), Listening(tuple(listens)), auth, tuple(read.notes))


def collect_redis(host: Host) -> RedisConfig | None:
    """The Redis configuration of the host (None when Redis is not installed)."""
    return parse(host)


REDIS: Fact[RedisConfig | None] = Fact("redis_config", collect_redis)
