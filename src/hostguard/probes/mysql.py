"""MariaDB/MySQL: the v10 handshake and ``mysql_native_password`` (SHA-1 scramble), stdlib only, over the unix
socket or loopback TCP.

Lockout: MariaDB ≥ 10.4 blocks an account after ``max_password_errors`` failed logins (until FLUSH PRIVILEGES
or a good login); the limit is read from the server's options (:func:`lockout_limit`) and the session stays
below it. MySQL's per-account ``FAILED_LOGIN_ATTEMPTS`` is not readable without logging in: a "blocked"
reply stops the session at once (:class:`Locked`). An auth switch to another plugin (``caching_sha2_password``,
``ed25519``, ``gssapi``) is an Error: we do not guess through a method we do not speak.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hostguard.host.base import HostError
from hostguard.probes.base import (
    Accepted,
    Answer,
    Endpoint,
    Error,
    Locked,
    ProtocolError,
    Reader,
    Refused,
    attempt,
    open_socket,
)

if TYPE_CHECKING:
    from hostguard.host.services.mysql import MysqlConfig

NATIVE = "mysql_native_password"
# Capability flags: LONG_PASSWORD, PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH.
CLIENT_FLAGS = 0x1 | 0x200 | 0x8000 | 0x80000
_ACCESS_DENIED = 1045
# ER_USER_IS_BLOCKED (MariaDB, max_password_errors), ER_USER_ACCESS_DENIED_FOR_USER_ACCOUNT_BLOCKED_BY_PASSWORD_LOCK
# (MySQL 8, FAILED_LOGIN_ATTEMPTS), ER_ACCOUNT_HAS_BEEN_LOCKED (ACCOUNT LOCK).
_BLOCKED = {4150: "blocked after too many password errors (max_password_errors)",
            3955: "temporarily locked after failed logins (FAILED_LOGIN_ATTEMPTS)",
            3118: "the account is locked (ACCOUNT LOCK)", 4151: "the account is locked (ACCOUNT LOCK)"}
UNLIMITED = 4294967295


def lockout_limit(config: MysqlConfig | None) -> int | None:
    """``max_password_errors`` as the server's own options set it (the last one read wins); None when unset or
    unlimited (the server's default)."""
    from hostguard.host.services.mysql import canonical

    value: int | None = None
    for option in config.options if config else ():
        if canonical(option.name)[0] == "max-password-errors" and option.value is not None:
            try:
                value = int(option.value)
            except ValueError:
                continue
    return None if value is None or value >= UNLIMITED else value


def scramble(password: str, seed: bytes) -> bytes:
    """SHA1(password) XOR SHA1(seed + SHA1(SHA1(password))); empty for an empty password."""
    if not password:
        return b""
    stage1 = hashlib.sha1(password.encode("utf-8", "surrogateescape")).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mix = hashlib.sha1(seed + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mix, strict=True))


def read_packet(reader: Reader) -> tuple[int, bytes]:
    """One packet: its sequence number and payload."""
    head = reader.exactly(4)
    size = head[0] | head[1] << 8 | head[2] << 16
    return head[3], reader.exactly(size)


def packet(sequence: int, payload: bytes) -> bytes:
    """One packet with its 3-byte length and sequence number."""
    return struct.pack("<I", len(payload))[:3] + bytes([sequence & 0xFF]) + payload


@dataclass(frozen=True)
class Handshake:
    """What the server's greeting says: its version, the scramble seed and the plugin it proposes."""

    version: str
    seed: bytes
    plugin: str


def parse_handshake(payload: bytes) -> Handshake:
    """The initial handshake packet (protocol 10); an error packet there is a ProtocolError with its text."""
    if payload[:1] == b"\xff":
        raise ProtocolError(f"greeting is an error: {error_text(payload)}")
    if payload[:1] != b"\x0a":
        raise ProtocolError(f"handshake protocol {payload[:1]!r}, not 10")
    end = payload.index(b"\0", 1)
    version = payload[1:end].decode("utf-8", "replace")
    pos = end + 1 + 4
    seed = payload[pos:pos + 8]
    pos += 8 + 1
    caps = struct.unpack("<H", payload[pos:pos + 2])[0]
    pos += 2 + 1 + 2
    caps |= struct.unpack("<H", payload[pos:pos + 2])[0] << 16
    pos += 2
    data_len = payload[pos]
    pos += 1 + 10
    if caps & 0x8000:
        part2 = max(13, data_len - 8)
        seed += payload[pos:pos + part2].rstrip(b"\0")
        pos += part2
    plugin = NATIVE
    if caps & 0x80000 and pos < len(payload):
        plugin = payload[pos:].split(b"\0", 1)[0].decode("ascii", "replace") or NATIVE
    if len(seed) < 8:
        raise ProtocolError("handshake without a scramble seed")
    return Handshake(version, seed[:20], plugin)


def error_text(payload: bytes) -> str:
    """The message of an ERR packet."""
    body = payload[3:]
    if body[:1] == b"#":
        body = body[6:]
    return body.decode("utf-8", "replace")[:160]


def error_code(payload: bytes) -> int:
    """The code of an ERR packet."""
    if len(payload) < 3:
        raise ProtocolError("short error packet")
    code: int = struct.unpack("<H", payload[1:3])[0]
    return code


def response(user: str, auth: bytes, plugin: str) -> bytes:
    """HandshakeResponse41 without a database, TLS or attributes."""
    return (struct.pack("<IIB", CLIENT_FLAGS, 1 << 24, 33) + b"\0" * 23
            + user.encode("utf-8", "surrogateescape") + b"\0" + bytes([len(auth)]) + auth
            + plugin.encode() + b"\0")


def verdict(reader: Reader, send: Callable[[bytes], object], sequence: int, password: str) -> Answer:
    """Read the server's answer to our response, following one auth switch to mysql_native_password."""
    switched = False
    while True:
        sequence, payload = read_packet(reader)
        first = payload[:1]
        if first == b"\x00":
            return Accepted()
        if first == b"\xff":
            code = error_code(payload)
            if code == _ACCESS_DENIED:
                return Refused()
            if code in _BLOCKED:
                return Locked(_BLOCKED[code])
            return Error(f"server error {code}: {error_text(payload)}")
        if first == b"\xfe" and not switched:
            switched = True
            name, _, data = payload[1:].partition(b"\0")
            plugin = name.decode("ascii", "replace")
            if plugin != NATIVE:
                return Error(f"unsupported plugin {plugin[:60]}")
            seed = data.rstrip(b"\0")[:20]
            send(packet(sequence + 1, scramble(password, seed)))
            continue
        raise ProtocolError(f"unexpected packet {payload[:1]!r} after the login response")


@dataclass
class MysqlProber:
    """Password attempts against one MariaDB/MySQL endpoint, one connection per attempt."""

    endpoint: Endpoint
    lockout_limit: int | None = None
    timeout: float = 5.0
    service: str = "mysql"

    def try_password(self, user: str, password: str) -> Answer:
        """One handshake and mysql_native_password login as ``user``."""
        def run() -> Answer:
            with open_socket(self.endpoint, self.timeout) as sock:
                reader = Reader(sock, timeout=self.timeout)
                sequence, payload = read_packet(reader)
                greeting = parse_handshake(payload)
                # native is asked for whatever the greeting proposes: the server switches to what the account
                # needs, and verdict() answers a switch to native and refuses any other
                auth = scramble(password, greeting.seed)
                sock.sendall(packet(sequence + 1, response(user, auth, NATIVE)))
                return verdict(reader, sock.sendall, sequence + 1, password)
        return attempt(run)


# -- read-only queries over a configured admin login ----------------------------------------------------
#
# The readers of stored hashes (``host/services/mysql_accounts``, ``host/services/wordpress``) log in with
# credentials the administrator configured (Debian's debian.cnf, root's ~/.my.cnf, a site's wp-config.php, or
# root over the socket) and run a few SELECTs. COM_QUERY and the text result set are small enough to write
# here on top of the probe's handshake, so hostguard needs no MySQL client library: every size is bounded,
# every read has the session's deadline, and a reply that does not follow the protocol is a QueryError.

MAX_COLUMNS = 64                 # our SELECTs name at most a handful of columns
MAX_ROWS = 200_000               # accounts or WordPress users: far more is not a server we should buffer
MAX_RESULT_BYTES = 32 << 20      # the whole result set of one query
_EOF_MAX = 9                     # an EOF packet is shorter than this; a row starting 0xfe is at least this long
_READ_ONLY = re.compile(r"\A\s*SELECT\s", re.IGNORECASE)


class QueryError(HostError):
    """A local admin session could not be opened, or the server's answer to a query was an error or no valid
    reply (one line, never a traceback)."""


@dataclass(frozen=True)
class ResultSet:
    """A text result set: the column names and each row's values (None for SQL NULL), as the server sent
    them (bytes: what a column holds need not be text)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[bytes | None, ...], ...]


def _lenenc_int(data: bytes, pos: int) -> tuple[int | None, int]:
    """A length-encoded integer at ``pos`` and the position after it; None for 0xfb (NULL in a row)."""
    if pos >= len(data):
        raise ProtocolError("a packet ends inside a length")
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFB:
        return None, pos + 1
    width = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first)
    if width is None or pos + 1 + width > len(data):
        raise ProtocolError(f"bad length prefix 0x{first:02x}")
    return int.from_bytes(data[pos + 1:pos + 1 + width], "little"), pos + 1 + width


def _lenenc_bytes(data: bytes, pos: int) -> tuple[bytes | None, int]:
    """A length-encoded string at ``pos`` (None for NULL) and the position after it."""
    size, pos = _lenenc_int(data, pos)
    if size is None:
        return None, pos
    if pos + size > len(data):
        raise ProtocolError("a value runs past the end of its packet")
    return data[pos:pos + size], pos + size


def _column_name(payload: bytes) -> str:
    """The ``name`` of a ColumnDefinition41 (catalog, schema, table, org_table come first)."""
    pos = 0
    for _ in range(4):
        _, pos = _lenenc_bytes(payload, pos)
    name, _ = _lenenc_bytes(payload, pos)
    if name is None:
        raise ProtocolError("a column definition without a name")
    return name.decode("utf-8", "replace")


def _row(payload: bytes, width: int) -> tuple[bytes | None, ...]:
    values: list[bytes | None] = []
    pos = 0
    for _ in range(width):
        value, pos = _lenenc_bytes(payload, pos)
        values.append(value)
    if pos != len(payload):
        raise ProtocolError("a row holds more values than the result set has columns")
    return tuple(values)


def _is_eof(payload: bytes) -> bool:
    return payload[:1] == b"\xfe" and len(payload) < _EOF_MAX


def read_result(next_packet: Callable[[], bytes]) -> ResultSet:
    """Read one COM_QUERY answer: an ERR packet, an OK packet (no rows), or column count, column
    definitions, EOF, rows, EOF. ``next_packet`` gives each packet's payload. A LOCAL INFILE request is
    refused (a server asking the client for a file of this host gets nothing)."""
    total = 0

    def take() -> bytes:
        nonlocal total
        payload = next_packet()
        total += len(payload) + 4
        if total > MAX_RESULT_BYTES:
            raise ProtocolError(f"the result set is larger than {MAX_RESULT_BYTES} bytes")
        if len(payload) >= 0xFFFFFF:
            raise ProtocolError("a packet of 16 MiB or more (split rows are not read)")
        return payload

    first = take()
    if first[:1] == b"\xff":
        raise QueryError(f"server error {error_code(first)}: {error_text(first)}")
    if first[:1] == b"\x00":
        return ResultSet((), ())
    if first[:1] == b"\xfb":
        raise ProtocolError("the server asked for a local file (LOCAL INFILE): refused")
    count, pos = _lenenc_int(first, 0)
    if count is None or pos != len(first) or not 0 < count <= MAX_COLUMNS:
        raise ProtocolError(f"bad column count in {first[:12]!r}")
    columns = tuple(_column_name(take()) for _ in range(count))
    if not _is_eof(take()):
        raise ProtocolError("no EOF packet after the column definitions")
    rows: list[tuple[bytes | None, ...]] = []
    while True:
        payload = take()
        if _is_eof(payload):
            return ResultSet(columns, tuple(rows))
        if payload[:1] == b"\xff":
            raise QueryError(f"server error {error_code(payload)}: {error_text(payload)}")
        if len(rows) >= MAX_ROWS:
            raise ProtocolError(f"more than {MAX_ROWS} rows")
        rows.append(_row(payload, count))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


class MysqlSession:
    """One logged-in connection (mysql_native_password, or a method that needs no client secret such as
    unix_socket) that runs read-only SELECTs. Open it with :meth:`login`; use it as a context manager."""

    def __init__(self, endpoint: Endpoint, sock: socket.socket, reader: Reader, version: str, timeout: float) -> None:
        self.endpoint = endpoint
        self.version = version          # the greeting's server version ("5.5.5-10.11.6-MariaDB-..." or "8.0.36")
        self._sock = sock
        self._reader = reader
        self._timeout = timeout

    @classmethod
    def login(cls, endpoint: Endpoint, user: str, password: str, timeout: float = 10.0) -> MysqlSession:
        """Connect and log in once as ``user`` (one attempt: these are configured credentials, not guesses);
        a refusal, an unsupported method or a garbled reply is a :class:`QueryError` naming the endpoint."""
        try:
            sock = open_socket(endpoint, timeout)
        except (OSError, HostError) as exc:
            raise QueryError(f"{endpoint.label()}: cannot connect: {_one_line(exc)}") from None
        try:
            reader = Reader(sock, timeout=timeout)
            sequence, payload = read_packet(reader)
            greeting = parse_handshake(payload)
            sock.sendall(packet(sequence + 1, response(user, scramble(password, greeting.seed), NATIVE)))
            answer = verdict(reader, sock.sendall, sequence + 1, password)
        except QueryError:
            sock.close()
            raise
        except (ProtocolError, ValueError, IndexError, UnicodeError, struct.error, OSError) as exc:
            sock.close()
            raise QueryError(f"{endpoint.label()}: login as {user!r}: unexpected reply: {_one_line(exc)}") from None
        if not isinstance(answer, Accepted):
            sock.close()
            why = "access denied" if isinstance(answer, Refused) else answer.detail
            raise QueryError(f"{endpoint.label()}: login as {user!r}: {why}")
        return cls(endpoint, sock, reader, greeting.version, timeout)

    def query(self, sql: str) -> ResultSet:
        """Run one SELECT (anything else is refused before it is sent) and read its whole result set."""
        if not _READ_ONLY.match(sql) or ";" in sql:
            raise QueryError("only single SELECT statements are sent")
        self._reader.deadline = time.monotonic() + self._timeout
        try:
            self._sock.sendall(packet(0, b"\x03" + sql.encode("utf-8")))
            return read_result(lambda: read_packet(self._reader)[1])
        except QueryError:
            raise
        except (ProtocolError, ValueError, IndexError, UnicodeError, struct.error, OSError) as exc:
            self.close()
            raise QueryError(f"{self.endpoint.label()}: unexpected reply to a query: {_one_line(exc)}") from None

    def close(self) -> None:
        """Say COM_QUIT (best effort) and close the socket."""
        with contextlib.suppress(OSError):
            self._sock.sendall(packet(0, b"\x01"))
        self._sock.close()

    def __enter__(self) -> MysqlSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
