"""PostgreSQL clusters as their configuration makes them at boot: where each listens, and which pg_hba.conf
lines let a client from the network in without a proper password.

Every cluster under ``/etc/postgresql/<version>/<name>/`` (Debian's layout) is read the way the server reads
it (``guc-file.l``), which the tests prove against ``postgres -C`` and the ``pg_hba_file_rules`` view of a real
server:

* ``name = value`` or ``name value``, names case-insensitive, ``#`` comments, single-quoted values with ``''``
  and backslash escapes; anything else on a line is the server's own syntax error (a :class:`HostError`);
* ``include`` (missing: error), ``include_if_exists`` (missing: a note) and ``include_dir`` (its ``*.conf`` in
  name order), relative to the including file's directory, read in place; the last value wins;
* ``postgresql.auto.conf`` in ``data_directory`` (``ALTER SYSTEM``) read last, so it overrides;
* ``hba_file`` names pg_hba.conf: records ``local``/``host``/``hostssl``/``hostnossl``/``hostgssenc``/
  ``hostnogssenc``, comma lists, double quotes, ``\\`` line continuations and (PostgreSQL 16) ``include``,
  ``include_if_exists``, ``include_dir`` lines.

A ``host*`` line whose address is not loopback (or ``samehost``) is *non-local*; among those, ``trust`` lets
anyone in, ``password`` sends the password in clear, ``md5`` stores a weak hash and ``ident`` believes the
client's own ident server: these are singled out. ``scram-sha-256``, ``cert`` and the rest are fine. pg_hba
is first-match: a ``reject`` line before a weak one is not evaluated against it (the line is still named).
"""

from __future__ import annotations

import ipaddress
import re
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
    dirname,
    join,
    one_line,
)
from hostguard.host.web.model import Where

ETC = "/etc/postgresql"
HBA_TYPES = ("local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc")
METHODS = ("trust", "reject", "scram-sha-256", "md5", "password", "gss", "sspi", "ident", "peer", "ldap",
           "radius", "cert", "pam", "bsd")
PG_BOOL = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
WEAK_METHODS = {"trust": AuthKind.NONE, "password": AuthKind.WEAK, "md5": AuthKind.WEAK, "ident": AuthKind.WEAK}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$.\-]*")
_UNQUOTED = re.compile(r"[^\s#'=]+")


@dataclass(frozen=True)
class HbaLine:
    """One pg_hba.conf record, as ``pg_hba_file_rules`` shows it."""

    type: str
    databases: tuple[str, ...]
    users: tuple[str, ...]
    address: str | None          # "192.0.2.0", "all", "samenet", a host name; None for local
    netmask: str | None          # "255.255.255.0" for a CIDR or a mask column
    method: str
    options: tuple[str, ...]
    where: Where
    # where the method stands in its line (None: a record over continued lines); how it was written, not what
    # the record is, so not compared
    method_span: tuple[int, int] | None = field(default=None, compare=False)

    @property
    def local(self) -> bool:
        """Whether only clients on this machine can match the line (unix socket, loopback, samehost)."""
        if self.type == "local" or self.address == "samehost":
            return True
        if self.address is None or self.netmask is None:
            return False
        try:
            # IPv6 masks are written out in full (ffff:...): count their bits, which ip_network will not do
            bits = bin(int(ipaddress.ip_address(self.netmask))).count("1")
            net = ipaddress.ip_network(f"{self.address}/{bits}", strict=False)
        except ValueError:
            return False
        return net.network_address.is_loopback and net.broadcast_address.is_loopback

    @property
    def weak(self) -> AuthKind | None:
        """NONE or WEAK for a non-local line with ``trust``/``password``/``md5``/``ident``; None otherwise."""
        return None if self.local else WEAK_METHODS.get(self.method)

    def label(self) -> str:
        """The record as evidence quotes it."""
        addr = "" if self.address is None else f" {self.address}" + (f"/{self.netmask}" if self.netmask else "")
        return f"{self.type} {','.join(self.databases)} {','.join(self.users)}{addr} {self.method}"


@dataclass(frozen=True)
class PostgresConfig:
    """One cluster's effective settings and pg_hba records."""

    config: str
    files: tuple[str, ...]
    settings: tuple[tuple[str, Setting], ...]    # every setting read (lower-case name), last value wins
    listen_addresses: Setting
    port: Setting
    unix_socket_directories: Setting
    hba_file: Setting
    hba: tuple[HbaLine, ...]
    listening: Listening
    auth: Auth
    notes: tuple[str, ...] = ()

    def get(self, name: str) -> Setting | None:
        """A setting by name (case-insensitive), None when unset."""
        for key, value in self.settings:
            if key == name.lower():
                return value
        return None

    @property
    def weak_lines(self) -> tuple[HbaLine, ...]:
        """The non-local ``trust``/``password``/``md5``/``ident`` records."""
        return tuple(line for line in self.hba if line.weak is not None)


# -- postgresql.conf --------------------------------------------------------------------------------------

def _quoted(text: str, start: int, where: Where) -> tuple[str, int]:
    """A single-quoted value from ``text[start]`` (the quote) and the index after it."""
    out: list[str] = []
    i = start + 1
    escapes = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
    while i < len(text):
        c = text[i]
        if c == "'" and i + 1 < len(text) and text[i + 1] == "'":
            out.append("'")
            i += 2
        elif c == "'":
            return "".join(out), i + 1
        elif c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in "01234567":
                m = re.match(r"[0-7]{1,3}", text[i + 1:])
                assert m is not None
                out.append(chr(int(m.group(0), 8)))
                i += 1 + len(m.group(0))
                continue
            out.append(escapes.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    raise HostError(f"{where}: unterminated quoted string")


def parse_line(line: str, where: Where) -> tuple[str, str] | None:
    """One postgresql.conf line as (lower-case name, value); None for a blank or comment line."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    m = _NAME.match(text)
    if not m:
        raise HostError(f"{where}: syntax error near {one_line(text[:20])!r}")
    name = m.group(0).lower()
    i = m.end()
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "=":
        i += 1
        while i < len(text) and text[i] in " \t":
            i += 1
    if i < len(text) and text[i] == "'":
        value, i = _quoted(text, i, where)
    else:
        vm = _UNQUOTED.match(text, i)
        if not vm:
            raise HostError(f"{where}: {name} has no value")
        value, i = vm.group(0), vm.end()
    rest = text[i:].strip()
    if rest and not rest.startswith("#"):
        raise HostError(f"{where}: syntax error near {one_line(rest[:20])!r}")
    return name, value


@dataclass
class _Read:
    values: dict[str, Setting] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _read_conf(host: Host, path: str, text: str, out: _Read, depth: int) -> None:
    if depth > MAX_INCLUDE_DEPTH:
        raise HostError(f"{path}: configuration files nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)")
    out.files.append(path)
    for number, raw in enumerate(text.splitlines(), 1):
        where = Where(path, number)
        parsed = parse_line(raw, where)
        if parsed is None:
            continue
        name, value = parsed
        if name in ("include", "include_if_exists"):
            target = join(dirname(path), value)
            sub = host.read_optional(target)
            if sub is None:
                if name == "include":
                    raise HostError(f"{where}: included file {target} does not exist")
                out.notes.append(f"{where}: include_if_exists {value}: no such file, skipped")
                continue
            _read_conf(host, target, sub, out, depth + 1)
        elif name == "include_dir":
            target = join(dirname(path), value)
            if not host.exists(target):
                raise HostError(f"{where}: include_dir {target} does not exist")
            for entry in host.listdir(target):
                if entry.endswith(".conf") and not entry.startswith("."):
                    sub_path = join(target, entry)
                    sub = host.read_optional(sub_path)
                    if sub is not None:
                        _read_conf(host, sub_path, sub, out, depth + 1)
        else:
            out.values[name] = Setting(value, where)


# -- pg_hba.conf -----------------------------------------------------------------------------------------

def _hba_tokens(text: str, where: Where, spans: list[tuple[int, int]]) -> list[list[tuple[str, bool]]]:
    """The fields of one logical pg_hba line, each a list of (token, quoted) split at commas; each field's
    (start, end) in ``text`` is appended to ``spans`` (a fix edits one field of the line as written)."""
    fields: list[list[tuple[str, bool]]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\r":
            i += 1
        if i >= n or text[i] == "#":
            break
        start = i
        items: list[tuple[str, bool]] = []
        while True:
            cur: list[str] = []
            quoted = False
            in_quote = False
            while i < n:
                c = text[i]
                if c == '"':
                    if in_quote and i + 1 < n and text[i + 1] == '"':
                        cur.append('"')
                        i += 2
                        continue
                    in_quote = not in_quote
                    quoted = True
                    i += 1
                    continue
                if not in_quote and (c in " \t\r,#"):
                    break
                cur.append(c)
                i += 1
            if in_quote:
                raise HostError(f"{where}: unterminated quoted string")
            items.append(("".join(cur), quoted))
            if i < n and text[i] == ",":
                i += 1
                continue
            break
        fields.append(items)
        spans.append((start, i))
    return fields


def _field(items: list[tuple[str, bool]]) -> tuple[str, ...]:
    return tuple(f'"{t}"' if q and t in ("all", "sameuser", "samerole", "replication") else t for t, q in items)


def parse_hba(host: Host, path: str, text: str, out_notes: list[str], depth: int = 0,
              ssl: bool = True) -> list[HbaLine]:
    """The records of a pg_hba file (PostgreSQL 16 ``include`` lines expanded in place); with ``ssl`` off a
    ``hostssl`` record is the server's own load error."""
    if depth > MAX_INCLUDE_DEPTH:
        raise HostError(f"{path}: pg_hba files nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)")
    lines: list[HbaLine] = []
    raw_lines = text.splitlines()
    number = 0
    while number < len(raw_lines):
        first = number + 1
        logical = raw_lines[number]
        while logical.rstrip().endswith("\\") and number + 1 < len(raw_lines):
            number += 1
            logical = logical.rstrip()[:-1] + " " + raw_lines[number]
        number += 1
        where = Where(path, first)
        spans: list[tuple[int, int]] = []
        fields = _hba_tokens(logical, where, spans)
        if not fields:
            continue
        if any(len(f) != 1 for f in (fields[0],)):
            raise HostError(f"{where}: the connection type cannot be a list")
        kind = fields[0][0][0]
        if kind in ("include", "include_if_exists", "include_dir"):
            if len(fields) != 2:
                raise HostError(f"{where}: {kind} takes one file name")
            target = join(dirname(path), fields[1][0][0])
            names = [join(target, e) for e in host.listdir(target) if e.endswith(".conf")] if kind == "include_dir" \
                else [target]
            for name in names:
                sub = host.read_optional(name)
                if sub is None:
                    if kind == "include":
                        raise HostError(f"{where}: included file {name} does not exist")
                    out_notes.append(f"{where}: {kind} {name}: no such file, skipped")
                    continue
                lines += parse_hba(host, name, sub, out_notes, depth + 1, ssl)
            continue
        if kind not in HBA_TYPES:
            raise HostError(f"{where}: invalid connection type {one_line(kind)!r}")
        if kind == "hostssl" and not ssl:
            raise HostError(f"{where}: hostssl record cannot match because SSL is disabled (ssl = off)")
        need = 4 if kind == "local" else 5
        if len(fields) < need:
            missing = "authentication method" if len(fields) >= need - 1 else "a required field"
            raise HostError(f"{where}: end-of-line before {missing}")
        databases, users = _field(fields[1]), _field(fields[2])
        rest = [f[0][0] for f in fields[3:]]
        address: str | None = None
        netmask: str | None = None
        if kind != "local":
            address = rest.pop(0)
            if "/" in address:
                addr, _, bits = address.partition("/")
                try:
                    net = ipaddress.ip_network(f"{addr}/{bits}", strict=False)
                except ValueError as exc:
                    raise HostError(f"{where}: invalid IP address/mask {one_line(address)!r}") from exc
                address, netmask = addr, str(net.netmask)
            elif _is_ip(address):
                if not rest or not _is_ip(rest[0]):
                    raise HostError(f"{where}: an IP address needs a /mask or a mask column")
                netmask = rest.pop(0)
            if not rest:
                raise HostError(f"{where}: end-of-line before authentication method")
        method = rest[0]
        if method not in METHODS:
            raise HostError(f"{where}: invalid authentication method {one_line(method)!r}")
        if method == "peer" and kind != "local":
            raise HostError(f"{where}: peer authentication is only supported on local sockets")
        if method == "cert" and kind != "hostssl":
            raise HostError(f"{where}: cert authentication is only supported on hostssl connections")
        one_line_record = number == first and not logical.rstrip().endswith("\\")
        method_span = spans[len(fields) - len(rest)] if one_line_record else None
        lines.append(HbaLine(kind, databases, users, address, netmask, method, tuple(rest[1:]), where, method_span))
    return lines


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# -- one cluster -----------------------------------------------------------------------------------------

def parse_cluster(host: Host, config: str, data_directory: str | None = None) -> PostgresConfig:
    """One cluster from its postgresql.conf (``data_directory`` overrides the one the file names, as
    ``postgres -D`` does)."""
    out = _Read()
    _read_conf(host, config, host.read_text(config), out, 0)
    data_dir = data_directory or (out.values["data_directory"].value if "data_directory" in out.values else None)
    if data_dir:
        auto = join(data_dir, "postgresql.auto.conf")
        text = host.read_optional(auto)
        if text is not None:
            _read_conf(host, auto, text, out, 0)
    built = defaults("postgres")

    def get(name: str, fallback: str) -> Setting:
        return out.values.get(name, Setting(fallback))

    listen = get("listen_addresses", built["listen_addresses"])
    port = get("port", built["port"])
    port_no = as_port(port.value, port.where, "port")
    sockets = get("unix_socket_directories", built["unix_socket_directories"])
    # The server resolves hba_file (default pg_hba.conf) against the directory it was started with (-D), the
    # data directory; without one known, the configuration's own directory.
    base = data_dir or dirname(config)
    hba_file = get("hba_file", join(base, "pg_hba.conf"))
    hba_path = join(base, hba_file.value)
    hba_text = host.read_optional(hba_path)
    if hba_text is None:
        raise HostError(f"{hba_file.where if hba_file.where != DEFAULT else config}: hba_file {hba_path} does not exist")
    ssl = get("ssl", "off")
    hba = parse_hba(host, hba_path, hba_text, out.notes, ssl=as_bool(ssl.value, PG_BOOL, ssl.where, "ssl"))

    listens: list[Listen] = []
    for address in (a.strip() for a in listen.value.split(",")):
        if address:
            listens.append(Listen(address, port_no, classify(address), listen.where))
    for directory in (d.strip() for d in sockets.value.split(",")):
        if directory:
            listens.append(Listen(f"{directory.rstrip('/')}/.s.PGSQL.{port_no}", None, Scope.NONE, sockets.where,
                                  "unix"))
    weak = [line for line in hba if line.weak is not None]
    remote = [line for line in hba if not line.local and line.method != "reject"]
    if any(line.weak == AuthKind.NONE for line in weak):
        first = next(line for line in weak if line.weak == AuthKind.NONE)
        auth = Auth(AuthKind.NONE, f"non-local {first.method} line: {first.label()}",
                    tuple(line.where for line in weak))
    elif weak:
        auth = Auth(AuthKind.WEAK, f"non-local {weak[0].method} line: {weak[0].label()}",
                    tuple(line.where for line in weak))
    elif remote:
        auth = Auth(AuthKind.PASSWORD, "every non-local line asks for a password or certificate",
                    tuple(line.where for line in remote))
    else:
        auth = Auth(AuthKind.REFUSED, "no pg_hba line admits a non-local client", (Where(hba_path),))
    settings = tuple(sorted(out.values.items()))
    return PostgresConfig(config, tuple(out.files), settings, listen, port, sockets, Setting(hba_path, hba_file.where),
                          tuple(hba), Listening(tuple(listens)), auth, tuple(out.notes))


def parse(host: Host) -> tuple[PostgresConfig, ...]:
    """Every cluster under /etc/postgresql (empty when PostgreSQL is not installed)."""
    out = []
    for version in host.listdir(ETC):
        for cluster in host.listdir(f"{ETC}/{version}"):
            config = f"{ETC}/{version}/{cluster}/postgresql.conf"
            if host.exists(config):
                out.append(parse_cluster(host, config))
    return tuple(out)


def collect_postgres(host: Host) -> tuple[PostgresConfig, ...]:
    """The PostgreSQL clusters of the host."""
    return parse(host)


POSTGRES: Fact[tuple[PostgresConfig, ...]] = Fact("postgres_config", collect_postgres)
