"""MariaDB/MySQL as its option files make it at boot: where ``mariadbd`` listens and whether it checks passwords.

The option files are read the way ``mariadbd`` reads them (mysys ``my_default.c``), which the tests prove
against ``my_print_defaults --mysqld`` and a real server:

* the default files in order, ``/etc/my.cnf`` then ``/etc/mysql/my.cnf`` (the later value wins);
* ``[group]`` headers (case-insensitive); the server reads ``mysqld``, ``server``, ``mariadb``, ``mariadbd``,
  ``client-server``, ``galera`` and the versioned ``mysqld-10.11``/``mariadb-10.11``/``mariadbd-10.11`` of its
  own version (read from the package database; unknown version: the versioned groups are named in a note);
* ``!include FILE`` and ``!includedir DIR`` (its ``*.cnf`` files in name order) read in place, a relative name
  from the server's working directory (``/``); a missing file is skipped by the server (a note), a missing
  directory stops it (a :class:`HostError`);
* ``#`` and ``;`` comment lines, ``#`` ending a value outside quotes, quotes around a value removed, escapes;
* option names normalised: ``_`` = ``-``, a ``loose-`` prefix dropped, ``skip-``/``disable-``/``enable-`` on a
  boolean (``skip-networking`` is itself an option; ``disable-skip-networking`` turns it off).

``skip-grant-tables`` means no password is checked for anyone who can connect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hostguard.engine.facts import Fact
from hostguard.host.base import Host, HostError
from hostguard.host.services.common import (
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
)
from hostguard.host.web.model import Where

DEFAULT_FILES = ("/etc/my.cnf", "/etc/mysql/my.cnf")
SERVER_GROUPS = ("mysqld", "server", "mariadb", "mariadbd", "client-server", "galera")
VERSIONED = ("mysqld", "mariadb", "mariadbd")
BOOLEAN = {"1": True, "on": True, "true": True, "yes": True, "0": False, "off": False, "false": False, "no": False}
PACKAGES = ("mariadb-server-core", "mariadb-server", "mysql-server-core-8.0", "mysql-server")
_MAX_NESTING = 10    # mysys's include recursion limit: a deeper !include is skipped with a warning


@dataclass(frozen=True)
class Option:
    """One option line of a group the server reads, as written (name unnormalised, value unquoted)."""

    name: str
    value: str | None
    group: str
    where: Where

    def arg(self) -> str:
        """The option as ``my_print_defaults`` prints it (``--name=value``)."""
        return f"--{self.name}" if self.value is None else f"--{self.name}={self.value}"


@dataclass(frozen=True)
class MysqlConfig:
    """The effective server options the services checks read, each with its line."""

    config: str
    files: tuple[str, ...]
    version: str | None                # "10.11" when the package database says, else None
    options: tuple[Option, ...]        # every option of the server's groups, in reading order
    bind_address: Setting
    port: Setting
    socket: Setting
    skip_networking: Setting           # "1"/"0"
    skip_grant_tables: Setting
    listening: Listening
    auth: Auth
    notes: tuple[str, ...] = ()


def canonical(name: str) -> tuple[str, bool | None]:
    """An option name as the server matches it, and the boolean a ``skip-``/``disable-``/``enable-`` prefix
    stands for (None without such a prefix)."""
    key = name.strip().lower().replace("_", "-")
    if key.startswith("loose-"):
        key = key[6:]
    for real in ("skip-networking", "skip-grant-tables"):
        if key == real:
            return key, None
        for prefix, value in (("skip-", False), ("disable-", False), ("enable-", True)):
            if key == prefix + real:
                return real, value
    for prefix, value in (("skip-", False), ("disable-", False), ("enable-", True)):
        if key.startswith(prefix):
            return key[len(prefix):], value
    return key, None


def _unquote(value: str) -> str:
    """A value as ``my_default.c`` stores it: comment cut outside quotes, one pair of quotes removed,
    ``\\n \\t \\r \\b \\s \\\\`` escapes resolved."""
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            out.append(c + value[i + 1])
            i += 2
            continue
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "#":
            break
        out.append(c)
        i += 1
    text = "".join(out).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    escapes = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "s": " ", "\\": "\\", '"': '"', "'": "'"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), "\\" + m.group(1)), text)


@dataclass
class _Read:
    options: list[Option] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped_groups: set[str] = field(default_factory=set)


def _read(host: Host, path: str, text: str, groups: frozenset[str], versioned: frozenset[str], out: _Read,
          depth: int) -> None:
    out.files.append(path)
    group: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        where = Where(path, number)
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("!"):
            directive, _, arg = line.partition(" ")
            arg = arg.strip()
            if directive not in ("!include", "!includedir") or not arg:
                raise HostError(f"{where}: unknown or empty directive {one_line(line)!r}")
            target = join("/", arg)      # mysys opens a relative name from the working directory: / under systemd
            if depth >= _MAX_NESTING:
                # the server warns and goes on (a file including itself is read 11 times, as my_print_defaults shows)
                out.notes.append(f"{where}: {directive} skipped: includes nested deeper than {_MAX_NESTING} levels")
                continue
            if directive == "!include":
                sub = host.read_optional(target)
                if sub is None:
                    out.notes.append(f"{where}: !include {arg}: no such file (the server skips it)")
                else:
                    _read(host, target, sub, groups, versioned, out, depth + 1)
            else:
                if not host.exists(target):
                    raise HostError(f"{where}: !includedir {arg}: no such directory (the server refuses to start)")
                for name in (n for n in host.listdir(target) if n.endswith(".cnf")):
                    sub_path = join(target, name)
                    sub = host.read_optional(sub_path)
                    if sub is not None:
                        _read(host, sub_path, sub, groups, versioned, out, depth + 1)
            continue
        if line.startswith("["):
            end = line.find("]")
            if end < 2:
                raise HostError(f"{where}: a group header must be [name], not {one_line(line)!r}")
            group = line[1:end].strip().lower()
            if group in versioned:
                out.skipped_groups.add(group)
            continue
        if group is None:
            raise HostError(f"{where}: option {one_line(line)!r} before any [group] header")
        if group not in groups:
            continue
        name, eq, value = line.partition("=")
        name = name.strip()
        if not name or any(c in name for c in " \t"):
            # "name value" without '=' is not an option; mysys refuses the file
            raise HostError(f"{where}: option name {one_line(name)!r} is not one word")
        out.options.append(Option(name, _unquote(value) if eq else None, group, where))


def package_version(host: Host) -> str | None:
    """The installed server's major.minor (``10.11``) from the dpkg database; None when it does not say."""
    status = host.read_optional("/var/lib/dpkg/status")
    if status is None:
        return None
    for para in status.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): ?(.*)$", para, re.M))
        if fields.get("Package") in PACKAGES and fields.get("Status", "").endswith(" installed"):
            m = re.match(r"(?:\d+:)?(\d+\.\d+)", fields.get("Version", ""))
            if m:
                return m.group(1)
    return None


def parse(host: Host, files: tuple[str, ...] = DEFAULT_FILES, version: str | None = None) -> MysqlConfig | None:
    """The effective server options from ``files`` (the default files; one file for ``--defaults-file``);
    None when none of them exists (no MariaDB/MySQL)."""
    versioned_names = frozenset(f"{g}-{version}" for g in VERSIONED) if version else frozenset()
    groups = frozenset(SERVER_GROUPS) | versioned_names
    out = _Read()
    main = ""
    for path in files:
        text = host.read_optional(path)
        if text is None:
            continue
        main = path
        unversioned = frozenset() if version else _VERSIONED_GUESS
        _read(host, path, text, groups, unversioned, out, 0)
    if not main:
        return None
    notes = list(out.notes)
    for group in sorted(out.skipped_groups):
        notes.append(f"[{group}] is read only by that server version; the installed version is unknown, so it was left out")
    built = defaults("mysql")
    values: dict[str, Setting] = {k: Setting(v) for k, v in built.items()}
    for opt in out.options:
        key, flag = canonical(opt.name)
        if key not in values:
            continue
        if key in ("skip-networking", "skip-grant-tables"):
            on = as_bool(opt.value, BOOLEAN, opt.where, key) if opt.value is not None else True
            if flag is not None:
                on = flag if opt.value is None else (on if flag else not on)
            values[key] = Setting("1" if on else "0", opt.where)
        elif flag is not None:
            values[key] = Setting(built[key], opt.where)      # --skip-bind-address: back to the default
        else:
            values[key] = Setting(opt.value or "", opt.where)
    bind, port, sock = values["bind-address"], values["port"], values["socket"]
    port_no = as_port(port.value, port.where, "port")
    listens: list[Listen] = []
    if values["skip-networking"].value == "0":
        for address in (a.strip() for a in bind.value.split(",")):
            listens.append(Listen(address or "*", port_no, classify(address or "*"), bind.where))
    if sock.value:
        listens.append(Listen(sock.value, None, Scope.NONE, sock.where, "unix"))
    grants = values["skip-grant-tables"]
    if grants.value == "1":
        auth = Auth(AuthKind.NONE, "skip-grant-tables: every account logs in without a password", (grants.where,))
    else:
        auth = Auth(AuthKind.PASSWORD, "accounts are checked against the grant tables (a password-less or "
                    "weak account is only known from mysql.global_priv)", (grants.where,))
    return MysqlConfig(main, tuple(out.files), version, tuple(out.options), bind, port, sock,
                       values["skip-networking"], grants, Listening(tuple(listens)), auth, tuple(notes))


# Versioned groups noticed (to name them in a note) when the installed version is unknown.
_VERSIONED_GUESS: frozenset[str] = frozenset(f"{g}-{major}.{minor}" for g in VERSIONED
                                             for major in range(5, 12) for minor in range(0, 12))


def collect_mysql(host: Host) -> MysqlConfig | None:
    """The MariaDB/MySQL server options of the host (None when neither is installed)."""
    return parse(host, version=package_version(host))


MYSQL: Fact[MysqlConfig | None] = Fact("mysql_config", collect_mysql)
