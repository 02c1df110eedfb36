"""The password hashes of every MariaDB/MySQL account, read over a local admin login the host already has.

``services.weak_password`` guesses only the superuser online, a few guesses at a time under the server's
lockout counter. The server's other accounts (applications, people, replication) are as likely to have a weak
password, and their hashes are readable by an administrator: this reader fetches them, so the offline cracker
tries the whole dictionary without a single failed login on the server.

**How it logs in** (live only, one attempt per configured login, never a list of guesses), per configured
MariaDB/MySQL service of the ``SERVICES`` fact:

1. ``root`` over the service's unix socket with no password: Debian's ``root@localhost`` is identified by the
   socket peer's uid (``unix_socket``), and hostguard runs as root;
2. the ``[client]``/``[mysql]`` login of ``/etc/mysql/debian.cnf`` (older Debian's maintenance account);
3. the same groups of root's ``~/.my.cnf``.

The first that logs in and can read the tables is used. Only SELECTs are sent.

**What it reads.** MariaDB >= 10.4 keeps accounts in ``mysql.global_priv`` (``Priv`` is JSON: ``plugin``,
``authentication_string``, ``auth_or`` for ``IDENTIFIED VIA a OR b``, ``account_locked``, ``is_role``; its
``mysql.user`` is a view that hides locks and alternatives, so it is never read there). Older MariaDB and
MySQL keep them in ``mysql.user`` (``plugin``, ``authentication_string``, the old ``Password`` column, and
``account_locked``/``is_role`` where the version has them): the columns present are asked for. Binary values
(MySQL 8's ``caching_sha2_password`` salt) are selected as ``HEX()``, so nothing depends on the connection's
character set.

**What it returns.** One :class:`StoredCredential` per password method of each account that can log in:
``mysql_native_password`` ``*HEX`` as stored; ``ed25519`` tagged for the verifier; ``$A$005$`` in the
verifier's hex form; an empty native password (the account logs in with none) as ``hashed=""``. Roles,
locked accounts, and methods that keep no password (``unix_socket``, ``gssapi``, PAM, …:
``data/services/stored_credentials.toml``) are left out. A native string that is no hash (Debian's root
``invalid``) matches no password and is left out too. A method whose hash hostguard cannot check is a line
in ``problems`` (said as not checked), never silently dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hostguard.data import load_toml
from hostguard.engine.facts import Fact
from hostguard.findings import SkipReason
from hostguard.host.base import Host, HostError, Unavailable
from hostguard.host.services.configured import SERVICES, Services
from hostguard.host.services.mysql import MysqlConfig, _Read, _read, canonical
from hostguard.host.services.stored import StoredCredential, StoredCredentials
from hostguard.passwords.services_verifiers import tagged
from hostguard.probes.base import Endpoint, ProbeError
from hostguard.probes.mysql import MysqlSession, QueryError, ResultSet

SERVICE = "MariaDB/MySQL"
NATIVE = "mysql_native_password"
TIMEOUT = 10.0

_NATIVE_HASH = re.compile(r"^\*[0-9A-Fa-f]{40}$")
_ED25519 = re.compile(r"^[A-Za-z0-9+/]{43}$")
# caching_sha2_password as MySQL stores it: $A$ + 3 hex digits (rounds / 1000) + $ + 20 salt bytes + 43 chars
_SHA2_STORED = re.compile(rb"^\$A\$([0-9A-Fa-f]{3})\$(.{20})([./0-9A-Za-z]{43})$", re.DOTALL)


def _settings() -> dict[str, Any]:
    table: dict[str, Any] = load_toml("services/stored_credentials.toml")["mysql"]
    return table


# -- configured logins ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdminLogin:
    """One way in that the administrator configured: a user and password, and where to connect when the
    option file says (a socket, or a loopback host and port); ``source`` names it in problems."""

    user: str
    password: str = field(repr=False)
    source: str
    socket: str | None = None
    host: str | None = None
    port: int | None = None


ROOT_OVER_SOCKET = AdminLogin("root", "", "root over the unix socket")


def _home_of_root(host: Host) -> str:
    """root's home directory as the host's own /etc/passwd says (never ``expanduser``: under a tree, the
    scanning machine's root is not the host's)."""
    for line in (host.read_optional("/etc/passwd") or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[0] == "root" and fields[5].startswith("/"):
            return fields[5].rstrip("/") or "/"
    return "/root"


def option_file_paths(host: Host) -> tuple[str, ...]:
    """The client option files to read, ``~root`` made root's home."""
    home = _home_of_root(host)
    return tuple(home + p[len("~root"):] if p.startswith("~root") else p for p in _settings()["option_files"])


def option_file_login(host: Host, path: str) -> AdminLogin | None:
    """The login a client option file configures (the last ``user``/``password``/``socket``/``host``/``port``
    of the groups the client reads, ``!include`` followed); None when the file is missing or names no user
    (Debian 12's debian.cnf holds only comments). A file the client would refuse is a :class:`HostError`."""
    text = host.read_optional(path)
    if text is None:
        return None
    out = _Read()
    _read(host, path, text, frozenset(_settings()["client_groups"]), frozenset(), out, 0)
    values: dict[str, str] = {}
    for option in out.options:
        key, _ = canonical(option.name)
        if key in ("user", "password", "socket", "host", "port"):
            values[key] = option.value or ""
    if not values.get("user"):
        return None
    port: int | None = None
    if values.get("port"):
        try:
            port = int(values["port"])
        except ValueError:
            raise HostError(f"{path}: port {values['port'][:20]!r} is not a number") from None
    return AdminLogin(values["user"], values.get("password", ""), path, values.get("socket") or None,
                      values.get("host") or None, port)


# -- where to connect -----------------------------------------------------------------------------------


def _service_port(config: MysqlConfig) -> int:
    try:
        return int(config.port.value)
    except ValueError:
        return 3306


def _socket(host: Host, path: str) -> str | None:
    """The real path of the host's socket ``path`` (resolved through the Host like every path hostguard
    opens: on a live host it is the path itself), None when nothing is there."""
    try:
        return host.resolve(path)
    except HostError:
        return None


def endpoint_for(host: Host, config: MysqlConfig, login: AdminLogin) -> Endpoint:
    """Where ``login`` connects to the server ``config`` describes, as the mysql client would: the option
    file's socket; its host when that is a loopback address (``localhost`` means the socket); else the
    server's own socket, or loopback TCP on its port when the socket is missing. A login for another
    machine is a :class:`ProbeError` (hostguard talks to this host only)."""
    if login.host and login.host != "localhost":
        return Endpoint.tcp(login.host.strip("[]"), login.port or _service_port(config))
    wanted = login.socket or config.socket.value
    real = _socket(host, wanted) if wanted else None
    if real is not None:
        return Endpoint.unix(real)
    if login is ROOT_OVER_SOCKET or login.socket:
        raise ProbeError(f"no unix socket at {wanted or '(none configured)'}")
    return Endpoint.tcp("127.0.0.1", _service_port(config))


# -- stored values --------------------------------------------------------------------------------------


def stored_form(plugin: str, auth: bytes) -> str | None:
    """The stored ``authentication_string`` of ``plugin`` in the form the service verifier reads; "" for an
    empty native or caching_sha2 password (the account logs in without one); None when no password can
    match it (a native string that is no hash, an empty ed25519 key). Raises ValueError for a plugin whose
    hashes are not checked here."""
    if plugin in (NATIVE, ""):
        text = auth.decode("ascii", "replace")
        if not text:
            return ""
        return text.upper() if _NATIVE_HASH.match(text) else None
    if plugin == "ed25519":
        text = auth.decode("ascii", "replace")
        return tagged(text, "mariadb-ed25519") if _ED25519.match(text) else None
    if plugin == "caching_sha2_password":
        if not auth:
            return ""
        m = _SHA2_STORED.match(auth)
        if m is None:
            return None
        # the salt is binary: the verifier's hex form ($mysql$A$<rounds>*<salt hex>*<digest hex>) carries it intact
        return f"$mysql$A${m.group(1).decode()}*{m.group(2).hex().upper()}*{m.group(3).hex().upper()}"
    raise ValueError(f"authentication plugin {plugin} is not checked")


def _credentials(account: str, methods: Iterable[tuple[str, bytes]], source: str,
                 problems: list[str]) -> list[StoredCredential]:
    """One credential per password method of ``account`` (``methods``: plugin, stored bytes)."""
    skip = frozenset(_settings()["no_password_plugins"])
    out: list[StoredCredential] = []
    for plugin, auth in methods:
        if plugin in skip:
            continue
        try:
            hashed = stored_form(plugin, auth)
        except ValueError as exc:
            problems.append(f"{SERVICE} account {account} ({source}): {exc}")
            continue
        if hashed is not None:
            out.append(StoredCredential(SERVICE, account, hashed, source))
    return out


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "surrogateescape")


def _unhex(value: bytes | None) -> bytes:
    return bytes.fromhex((value or b"").decode("ascii"))


def _account(user: bytes, host_name: bytes) -> str:
    """``user@host`` as the owner writes it in ``CREATE USER`` (bytes kept exactly, surrogate-escaped)."""
    return f"{user.decode('utf-8', 'surrogateescape')}@{host_name.decode('utf-8', 'surrogateescape')}"


def accounts_from_global_priv(result: ResultSet, source: str, problems: list[str]) -> list[StoredCredential]:
    """MariaDB >= 10.4: ``HEX(User), HEX(Host), HEX(Priv)`` rows."""
    out: list[StoredCredential] = []
    for row in result.rows:
        user, host_name, priv_hex = row
        account = _account(_unhex(user), _unhex(host_name))
        try:
            priv = json.loads(_unhex(priv_hex))
        except (ValueError, UnicodeDecodeError):
            problems.append(f"{SERVICE} account {account} ({source}): Priv is not JSON")
            continue
        if not isinstance(priv, dict):
            problems.append(f"{SERVICE} account {account} ({source}): Priv is not a JSON object")
            continue
        if priv.get("is_role") or priv.get("account_locked"):
            continue
        top = (str(priv.get("plugin", NATIVE)), str(priv.get("authentication_string", "")).encode("utf-8"))
        alternatives = priv.get("auth_or")
        methods: list[tuple[str, bytes]] = []
        if isinstance(alternatives, list) and alternatives:
            for alt in alternatives:
                if not isinstance(alt, dict) or not alt:
                    methods.append(top)       # {} stands for the top-level plugin in the OR chain
                else:
                    methods.append((str(alt.get("plugin", NATIVE)),
                                    str(alt.get("authentication_string", "")).encode("utf-8")))
        else:
            methods.append(top)
        out.extend(_credentials(account, methods, source, problems))
    return out


USER_COLUMNS = ("User", "Host", "plugin", "authentication_string", "Password", "is_role", "account_locked")


def user_table_query(columns: Iterable[str]) -> str:
    """The SELECT of ``mysql.user`` asking for the :data:`USER_COLUMNS` this server has, each as HEX()."""
    present = {c.lower() for c in columns}
    wanted = [c for c in USER_COLUMNS if c.lower() in present]
    return "SELECT " + ", ".join(f"HEX(`{c}`) AS `{c}`" for c in wanted) + " FROM mysql.user"


def accounts_from_user_table(result: ResultSet, source: str, problems: list[str]) -> list[StoredCredential]:
    """Older MariaDB and MySQL: the rows of :func:`user_table_query`."""
    out: list[StoredCredential] = []
    names = [c.lower() for c in result.columns]
    for row in result.rows:
        values = {name: _unhex(value) for name, value in zip(names, row, strict=True)}
        account = _account(values["user"], values["host"])
        if values.get("is_role", b"N").upper() == b"Y" or values.get("account_locked", b"N").upper() == b"Y":
            continue
        plugin = values.get("plugin", b"").decode("ascii", "replace")
        auth = values.get("authentication_string", b"")
        if plugin in ("", NATIVE, "mysql_old_password") and not auth:
            auth = values.get("password", b"")       # MariaDB < 10.4, MySQL < 5.7: the hash is here
            if not plugin:
                plugin = "mysql_old_password" if len(auth) == 16 else NATIVE
        out.extend(_credentials(account, [(plugin, auth)], source, problems))
    return out


def read_accounts(session: MysqlSession, where: str, problems: list[str]) -> list[StoredCredential]:
    """Every stored password of the server ``session`` is logged in to; the table is chosen by what exists."""
    tables = session.query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'mysql' "
                           "AND TABLE_NAME IN ('global_priv', 'user')")
    names = {_text(row[0]).lower() for row in tables.rows}
    if "global_priv" in names:
        source = f"mysql.global_priv over {where}"
        rows = session.query("SELECT HEX(User), HEX(Host), HEX(Priv) FROM mysql.global_priv")
        return accounts_from_global_priv(rows, source, problems)
    if "user" not in names:
        raise QueryError("neither mysql.global_priv nor mysql.user can be read by this login")
    columns = session.query("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'mysql' "
                            "AND TABLE_NAME = 'user'")
    query = user_table_query(_text(row[0]) for row in columns.rows)
    if "`User`" not in query or "`Host`" not in query:
        raise QueryError("mysql.user has no User and Host columns this login can see")
    return accounts_from_user_table(session.query(query), f"mysql.user over {where}", problems)


def _where(endpoint: Endpoint, host: Host) -> str:
    """The endpoint as the host names it (a socket's host path, not the resolved one under a tree)."""
    if endpoint.path is None:
        return endpoint.label()
    root = host.root.rstrip("/")
    return endpoint.path[len(root):] if root and endpoint.path.startswith(root + "/") else endpoint.path


def read_server(host: Host, config: MysqlConfig, logins: Iterable[AdminLogin]) -> StoredCredentials:
    """The accounts of one server through the first of ``logins`` that logs in and reads them; every login
    that failed is named in the problem line when none did."""
    failures: list[str] = []
    for login in logins:
        try:
            endpoint = endpoint_for(host, config, login)
        except ProbeError as exc:
            failures.append(f"{login.source}: {exc}")
            continue
        problems: list[str] = []
        try:
            with MysqlSession.login(endpoint, login.user, login.password, TIMEOUT) as session:
                found = read_accounts(session, _where(endpoint, host), problems)
        except QueryError as exc:
            failures.append(f"{login.source}: {exc}")
            continue
        except (ValueError, UnicodeDecodeError) as exc:   # a value HEX() cannot have returned: not a real server
            failures.append(f"{login.source}: unexpected value in the reply: {str(exc)[:120]}")
            continue
        return StoredCredentials(tuple(found), tuple(problems))
    why = "; ".join(failures) if failures else "no login configured"
    if failures and all("no unix socket" in f or "cannot connect" in f for f in failures):
        return StoredCredentials((), (f"{SERVICE} ({config.config}) is not running (nothing answers: {why}): its "
                                      "account hashes are not read",))
    return StoredCredentials((), (f"{SERVICE} ({config.config}): account hashes not read: {why}",))


def configured_logins(host: Host) -> tuple[list[AdminLogin], list[str]]:
    """root over the socket, then each option file's login; an option file the client would refuse is a
    problem line (its login is not tried)."""
    logins = [ROOT_OVER_SOCKET]
    problems: list[str] = []
    for path in option_file_paths(host):
        try:
            login = option_file_login(host, path)
        except HostError as exc:
            problems.append(f"{SERVICE}: {path} not read: {exc}")
            continue
        if login is not None:
            logins.append(login)
    return logins, problems


def collect_mysql_accounts(host: Host, services: Services) -> StoredCredentials:
    """Every configured MariaDB/MySQL server's account hashes (live only: the server must be running)."""
    if not host.live:
        raise Unavailable(SkipReason.LIVE_ONLY, "account hashes are read from the running MariaDB/MySQL server")
    credentials: list[StoredCredential] = []
    problems: list[str] = []
    servers = [s.record for s in services.services if isinstance(s.record, MysqlConfig)]
    if not servers:
        return StoredCredentials()
    logins, login_problems = configured_logins(host)
    problems.extend(login_problems)
    for config in servers:
        found = read_server(host, config, logins)
        credentials.extend(found.credentials)
        problems.extend(found.problems)
    return StoredCredentials(tuple(credentials), tuple(problems))


MYSQL_ACCOUNTS: Fact[StoredCredentials] = Fact("mysql_accounts", collect_mysql_accounts, inputs=(SERVICES,))
