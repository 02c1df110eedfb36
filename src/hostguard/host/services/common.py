"""What every service reader answers: where the service listens at boot and what a network client must present.

Under ``--root`` there are no sockets, yet "databases and FTP only from chosen sources" must be answered, so
each reader (Redis, MariaDB/MySQL, PostgreSQL, MongoDB, Memcached, Elasticsearch, vsftpd, proftpd) reads the
service's own configuration the way the service does and fills two summaries the services checks combine
with the firewall's answer:

* :class:`Listening`: the addresses the service binds when it starts, each classified (every interface,
  chosen non-loopback addresses, loopback only, a unix socket only), with the line that made it so;
* :class:`Auth`: what a client *from the network* must present (nothing, a password sent or stored weakly,
  a password, or nothing at all because the server refuses non-local clients), with the deciding lines.

Every value keeps its :class:`~hostguard.host.web.model.Where` (file:line, or "built-in default"), so a
finding can quote the line and its fix can name it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from hostguard.data import load_toml
from hostguard.host.base import FileMissing, Host, HostError
from hostguard.host.web.model import Where

MAX_INCLUDE_DEPTH = 16   # every server refuses deeper nesting or loops; a cycle must end in a HostError
DEFAULT = Where("")      # a value nobody wrote: the service's built-in default


class Scope(StrEnum):
    """How far a bound address reaches, widest last (the order :meth:`Listening.scope` compares by)."""

    NONE = "none"            # no network listener: unix socket only, or networking switched off
    LOOPBACK = "loopback"    # 127.0.0.0/8, ::1, localhost
    ADDRESS = "address"      # chosen addresses that are not loopback (a LAN or public address, a name)
    WILDCARD = "wildcard"    # every interface: 0.0.0.0, ::, *
    UNKNOWN = "unknown"      # cannot be told from the configuration (an environment variable, inetd mode)


SCOPE_ORDER = (Scope.NONE, Scope.LOOPBACK, Scope.ADDRESS, Scope.WILDCARD)


class AuthKind(StrEnum):
    """What a client connecting over the network must present before it is served."""

    NONE = "none"            # nothing: trust, no password, anonymous login, authorization disabled
    WEAK = "weak"            # a password, but sent in clear (FTP without TLS, pg ``password``) or hashed weakly (md5)
    PASSWORD = "password"    # a password or certificate checked properly
    REFUSED = "refused"      # the server itself refuses non-local clients (Redis protected mode, no pg_hba host line)
    UNKNOWN = "unknown"      # cannot be told from the configuration


@dataclass(frozen=True)
class Setting:
    """One effective value and the line it came from (:data:`DEFAULT` when nobody wrote it)."""

    value: str
    where: Where = DEFAULT


@dataclass(frozen=True)
class Listen:
    """One address the service binds at boot: a network address and port, or a unix socket path."""

    address: str             # "0.0.0.0", "::", "127.0.0.1", "192.0.2.5", "db.test", or the socket path
    port: int | None         # None for a unix socket
    scope: Scope
    where: Where
    proto: str = "tcp"       # "tcp", "udp" or "unix"

    def label(self) -> str:
        """How evidence names the listener: ``tcp 0.0.0.0:6379``, ``unix /run/redis.sock``."""
        if self.proto == "unix":
            return f"unix {self.address}"
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.proto} {host}:{self.port}"


@dataclass(frozen=True)
class Listening:
    """Everything a service binds at boot; ``notes`` says what could not be told (an inetd-mode vsftpd)."""

    listens: tuple[Listen, ...]
    notes: tuple[str, ...] = ()

    @property
    def scope(self) -> Scope:
        """The widest reach of any listener (:attr:`Scope.UNKNOWN` when one cannot be told)."""
        scopes = {item.scope for item in self.listens}
        if Scope.UNKNOWN in scopes:
            return Scope.UNKNOWN
        return max(scopes, key=SCOPE_ORDER.index, default=Scope.NONE)

    @property
    def network(self) -> tuple[Listen, ...]:
        """The listeners a remote client could reach (neither loopback nor unix)."""
        return tuple(i for i in self.listens if i.scope in (Scope.ADDRESS, Scope.WILDCARD, Scope.UNKNOWN))


@dataclass(frozen=True)
class Auth:
    """What a network client must present, why hostguard believes so, and the lines that decide it."""

    kind: AuthKind
    detail: str
    where: tuple[Where, ...] = ()


def classify(address: str) -> Scope:
    """The reach of one bind address as the services write it (``*``, ``0.0.0.0``, ``::``, ``::*``,
    ``localhost``, an IPv4/IPv6 address with or without brackets or a zone, or a host name)."""
    text = address.strip().strip("[]").split("%", 1)[0].lower()
    if text in ("*", "::*", "", "0.0.0.0", "::", "0", "any", "0:0:0:0:0:0:0:0"):
        return Scope.WILDCARD
    if text in ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "_local_"):
        return Scope.LOOPBACK
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return Scope.ADDRESS     # a host name or an interface: chosen, and hostguard does not resolve it
    if ip.is_unspecified:
        return Scope.WILDCARD
    if ip.is_loopback or (isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None
                          and ip.ipv4_mapped.is_loopback):
        return Scope.LOOPBACK
    return Scope.ADDRESS


def defaults(service: str) -> dict[str, str]:
    """A service's built-in defaults (``data/services/defaults.toml``): the values it uses when its
    configuration does not say, for the version Debian 12 ships (the table names it)."""
    table: dict[str, str] = {k: str(v) for k, v in load_toml("services/defaults.toml")[service].items()}
    return table


def as_bool(value: str, accepted: dict[str, bool], where: Where, name: str) -> bool:
    """A yes/no value read the way the service reads it; any other word is the service's own start-up error,
    so it is a :class:`HostError` naming the line."""
    key = value.strip().lower()
    if key not in accepted:
        words = "/".join(sorted(accepted))
        raise HostError(f"{where}: {name} must be one of {words}, not {value.strip()!r}")
    return accepted[key]


def as_port(value: str, where: Where, name: str) -> int:
    """A TCP/UDP port number (0 allowed: "do not listen"), or a :class:`HostError` naming the line."""
    text = value.strip()
    if not text.isdigit() or int(text) > 65535:
        raise HostError(f"{where}: {name} must be a port number 0-65535, not {text!r}")
    return int(text)


def read_config(host: Host, path: str) -> str | None:
    """A service's main configuration file; None when it is absent (the service is not installed)."""
    return host.read_optional(path)


def read_included(host: Host, path: str, where: Where) -> str:
    """An included file; a missing one the server would refuse to start on is a :class:`HostError` naming
    the include line."""
    try:
        return host.read_text(path)
    except FileMissing as exc:
        raise HostError(f"{where}: included file {path} does not exist") from exc


def join(base_dir: str, name: str) -> str:
    """``name`` made absolute against the directory of the including file (how relative includes work)."""
    if name.startswith("/"):
        return name
    return f"{base_dir.rstrip('/')}/{name}"


def dirname(path: str) -> str:
    """The directory part of a host path ("/" for a file at the top)."""
    head = path.rsplit("/", 1)[0]
    return head or "/"


def one_line(text: str, limit: int = 80) -> str:
    """A value quoted in an error message: one line, shortened, so the error stays one clear line."""
    flat = text.replace("\n", "\\n").replace("\r", "\\r")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
