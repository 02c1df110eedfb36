"""PostgreSQL: the startup message and the password exchanges (cleartext, md5, SCRAM-SHA-256 after RFC 5802
and RFC 7677), spoken with the standard library over the unix socket directory or loopback TCP.

PostgreSQL has no lockout counter. ``trust`` answers AuthenticationOk without asking for a password: that is
"accepted" for any password, which the canary reports as "no password checked". The database named at startup
is only looked up after authentication, so "database does not exist" after a password still means accepted.

:class:`SimpleQueryClient` is apart from the prober: a read-only client for a connection that needs no password
(the cluster owner's peer login, ``probes/peer.py``), which the stored-password reader uses to read pg_authid.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from hostguard.host.base import HostError
from hostguard.probes.base import (
    Accepted,
    Answer,
    Endpoint,
    Error,
    ProtocolError,
    Reader,
    Refused,
    attempt,
    open_socket,
)

PROTOCOL_3 = 196608
MAX_ITERATIONS = 1_000_000   # a server asking for more is garbled or hostile: we will not burn minutes on it

# SQLSTATEs: 28P01 invalid_password; 28000 invalid_authorization_specification (no pg_hba line, peer/ident
# failed); 3D000 invalid_catalog_name (asked after authentication succeeded).
_WRONG_PASSWORD = "28P01"
_NO_DATABASE = "3D000"
_T = TypeVar("_T")


def socket_path(directory: str, port: int = 5432) -> str:
    """The unix socket the server makes in one of its ``unix_socket_directories``."""
    return os.path.join(directory, f".s.PGSQL.{port}")


def startup(user: str, database: str) -> bytes:
    """The StartupMessage for protocol 3.0."""
    body = struct.pack("!i", PROTOCOL_3)
    for key, value in (("user", user), ("database", database), ("application_name", "hostguard-probe")):
        body += key.encode() + b"\0" + value.encode("utf-8", "surrogateescape") + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def message(kind: bytes, body: bytes) -> bytes:
    """One frontend message: type byte, length, body."""
    return kind + struct.pack("!i", len(body) + 4) + body


def read_message(reader: Reader) -> tuple[bytes, bytes]:
    """One backend message: its type byte and body."""
    head = reader.exactly(5)
    kind, length = head[:1], struct.unpack("!i", head[1:])[0]
    if length < 4:
        raise ProtocolError(f"message length {length}")
    return kind, reader.exactly(length - 4)


def error_fields(body: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse (``C`` the SQLSTATE, ``M`` the message)."""
    fields: dict[str, str] = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def md5_response(user: str, password: str, salt: bytes) -> bytes:
    """``md5`` + md5(md5(password + user) + salt), as the server's md5 method expects."""
    inner = hashlib.md5((password + user).encode("utf-8", "surrogateescape")).hexdigest()
    return b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode()


@dataclass
class ScramClient:
    """The client side of SCRAM-SHA-256 without channel binding (``n,,``).

    PostgreSQL takes the user from the startup message and ignores the SCRAM user name, so it is sent empty.
    The password is used as UTF-8 without SASLprep: the server falls back to the raw bytes too when a
    password is not valid SASLprep input, and the guess lists are ASCII.
    """

    password: str
    nonce: str = ""
    user: str = ""       # "" for PostgreSQL; set only to check the client against RFC 7677's example exchange

    def __post_init__(self) -> None:
        if not self.nonce:
            self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n={self.user},r={self.nonce}"
        self.server_signature = b""

    def first(self) -> bytes:
        """client-first-message."""
        return ("n,," + self.first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        """client-final-message with the proof, from the server-first-message."""
        text = server_first.decode("utf-8", "replace")
        attrs = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        nonce, salt_b64, iterations_text = attrs.get("r", ""), attrs.get("s", ""), attrs.get("i", "")
        if not nonce.startswith(self.nonce) or len(nonce) <= len(self.nonce):
            raise ProtocolError("SCRAM server nonce does not extend ours")
        try:
            salt = base64.b64decode(salt_b64, validate=True)
            iterations = int(iterations_text)
        except ValueError:
            raise ProtocolError("SCRAM server-first-message has a bad salt or iteration count") from None
        if not 0 < iterations <= MAX_ITERATIONS:
            raise ProtocolError(f"SCRAM iteration count {iterations}")
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode("utf-8", "surrogateescape"), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self.first_bare},{text},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> bool:
        """Whether the server proved it knows the verifier (``v=``)."""
        text = server_final.decode("utf-8", "replace")
        if not text.startswith("v="):
            return False
        try:
            return hmac.compare_digest(base64.b64decode(text[2:], validate=True), self.server_signature)
        except ValueError:
            return False


def exchange(reader: Reader, send: Callable[[bytes], object], user: str, password: str) -> Answer:
    """Answer the server's authentication requests until it says Ok, refuses, or errs."""
    scram: ScramClient | None = None
    asked = False
    while True:
        kind, body = read_message(reader)
        if kind == b"E":
            fields = error_fields(body)
            code = fields.get("C", "")
            if code == _WRONG_PASSWORD:
                return Refused()
            if code == _NO_DATABASE and asked:
                return Accepted()
            return Error(f"server said {code}: {fields.get('M', '')[:160]}")
        if kind == b"N":            # NoticeResponse: may come at any time
            continue
        if kind != b"R" or len(body) < 4:
            raise ProtocolError(f"expected an authentication request, got {kind!r}")
        code = struct.unpack("!i", body[:4])[0]
        data = body[4:]
        if code == 0:
            return Accepted()
        asked = True
        if code == 3:
            send(message(b"p", password.encode("utf-8", "surrogateescape") + b"\0"))
        elif code == 5:
            if len(data) != 4:
                raise ProtocolError("md5 request without a 4-byte salt")
            send(message(b"p", md5_response(user, password, data) + b"\0"))
        elif code == 10:
            mechanisms = [m.decode("ascii", "replace") for m in data.split(b"\0") if m]
            if "SCRAM-SHA-256" not in mechanisms:
                return Error(f"unsupported SASL mechanisms {', '.join(mechanisms)[:80]}")
            scram = ScramClient(password)
            first = scram.first()
            send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
        elif code == 11:
            if scram is None:
                raise ProtocolError("SASL continue before SASL start")
            send(message(b"p", scram.final(data)))
        elif code == 12:
            if scram is None or not scram.verify(data):
                return Error("the server's SCRAM signature does not match: not trusting its answer")
        else:
            return Error(f"unsupported authentication method (request {code})")


@dataclass
class PostgresProber:
    """Password attempts against one PostgreSQL endpoint (a socket file ``.s.PGSQL.PORT`` or loopback TCP)."""

    endpoint: Endpoint
    database: str = "postgres"
    timeout: float = 5.0
    service: str = "postgresql"
    lockout_limit: int | None = None

    def try_password(self, user: str, password: str) -> Answer:
        """One startup and authentication exchange as ``user``."""
        def run() -> Answer:
            with open_socket(self.endpoint, self.timeout) as sock:
                sock.sendall(startup(user, self.database))
                answer = exchange(Reader(sock, timeout=self.timeout), sock.sendall, user, password)
                with contextlib.suppress(OSError):    # Terminate: leave cleanly, no "unexpected EOF" log line
                    sock.sendall(message(b"X", b""))
                return answer
        return attempt(run)


# -- a read-only simple-query client over an admin connection ---------------------------------------------
#
# The stored-password readers (host/services/postgres_roles.py) read pg_authid over the cluster owner's peer
# connection (probes/peer.py). They need no password and send none: a server that asks for one is answered
# with nothing but the Terminate message. Everything the server sends is bounded (one message, the rows, the
# whole reply's size and time) and anything unexpected is a one-line QueryError, never another exception.

MAX_MESSAGE = 1 << 20          # one backend message: a pg_authid row is well under 1 KiB
MAX_ROWS = 100_000             # far more roles than any cluster has
MAX_RESULT_BYTES = 32 << 20    # the whole result kept in memory
_PASSWORD_REQUESTS = frozenset({3, 5, 10})   # AuthenticationCleartextPassword, MD5Password, SASL


class QueryError(HostError):
    """The admin connection could not be made or the query failed; ``code`` is the server's SQLSTATE when
    the server said why ("" otherwise)."""

    def __init__(self, text: str, code: str = "") -> None:
        super().__init__(text)
        self.code = code


@dataclass(frozen=True)
class QueryResult:
    """The rows of one simple query, every value as text (None for SQL NULL) and the command tag."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str | None, ...], ...]
    command: str


def startup_message(user: str, database: str, application: str = "hostguard") -> bytes:
    """A StartupMessage asking for UTF-8 text, so role names and values decode the same on every server."""
    body = struct.pack("!i", PROTOCOL_3)
    for key, value in (("user", user), ("database", database), ("application_name", application),
                       ("client_encoding", "UTF8")):
        body += key.encode() + b"\0" + value.encode("utf-8", "surrogateescape") + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def _cstring(body: bytes, start: int) -> tuple[str, int]:
    end = body.find(b"\0", start)
    if end < 0:
        raise ProtocolError("a string without its terminating zero byte")
    return body[start:end].decode("utf-8", "surrogateescape"), end + 1


def parse_row_description(body: bytes) -> tuple[str, ...]:
    """The column names of a RowDescription (text format is all this client asks for)."""
    (count,) = struct.unpack_from("!h", body, 0)
    if count < 0:
        raise ProtocolError(f"RowDescription with {count} columns")
    names: list[str] = []
    pos = 2
    for _ in range(count):
        name, pos = _cstring(body, pos)
        if pos + 18 > len(body):
            raise ProtocolError("RowDescription cut short")
        pos += 18                      # table oid, column number, type oid, type size, type modifier, format
        names.append(name)
    if pos != len(body):
        raise ProtocolError("RowDescription has trailing bytes")
    return tuple(names)


def parse_data_row(body: bytes, columns: int) -> tuple[str | None, ...]:
    """One DataRow's values as text, None for NULL; the column count must match the RowDescription's."""
    (count,) = struct.unpack_from("!h", body, 0)
    if count != columns:
        raise ProtocolError(f"DataRow with {count} values for {columns} columns")
    values: list[str | None] = []
    pos = 2
    for _ in range(count):
        (size,) = struct.unpack_from("!i", body, pos)
        pos += 4
        if size == -1:
            values.append(None)
            continue
        if size < 0 or pos + size > len(body):
            raise ProtocolError(f"DataRow value of {size} bytes")
        values.append(body[pos:pos + size].decode("utf-8", "surrogateescape"))
        pos += size
    if pos != len(body):
        raise ProtocolError("DataRow has trailing bytes")
    return tuple(values)


def _server_error(body: bytes, what: str) -> QueryError:
    fields = error_fields(body)
    code = fields.get("C", "")
    text = " ".join(fields.get("M", "no message").split())[:200]
    return QueryError(f"{what}: server said {code or '?'}: {text}", code)


class SimpleQueryClient:
    """Protocol 3.0 over an already connected socket: startup without a password, then simple queries.

    Only what an admin read needs: AuthenticationOk (peer, trust) or a clear "needs a password" refusal,
    ParameterStatus/BackendKeyData/ReadyForQuery, Query with RowDescription, DataRow, CommandComplete,
    EmptyQueryResponse and ErrorResponse; NoticeResponse and NotificationResponse are skipped wherever they
    come. ``timeout`` bounds the whole session, so a server dripping bytes cannot hold the scan.
    """

    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self.sock = sock
        self.reader = Reader(sock, limit=MAX_MESSAGE + 5, timeout=timeout)
        self.parameters: dict[str, str] = {}

    def _next(self) -> tuple[bytes, bytes]:
        while True:
            kind, body = read_message(self.reader)
            if kind in (b"N", b"A"):            # notices and notifications may come at any time
                continue
            if kind == b"S":                    # ParameterStatus: also at any time (a SET, a reload)
                name, pos = _cstring(body, 0)
                value, _ = _cstring(body, pos)
                if len(self.parameters) < 256:
                    self.parameters[name] = value
                continue
            return kind, body

    def start(self, user: str, database: str) -> None:
        """Send the startup message and read up to ReadyForQuery; no password is ever sent."""
        self._guard(lambda: self._start(user, database))

    def _start(self, user: str, database: str) -> None:
        self.sock.sendall(startup_message(user, database))
        while True:
            kind, body = self._next()
            if kind == b"E":
                raise _server_error(body, "admin connection refused")
            if kind == b"R":
                (code,) = struct.unpack_from("!i", body, 0)
                if code == 0:
                    continue
                if code in _PASSWORD_REQUESTS:
                    raise QueryError("admin connection needs a password: not read")
                raise QueryError(f"admin connection asks for an unsupported authentication (request {code}): "
                                 "not read")
            if kind == b"K":
                continue
            if kind == b"Z":
                return
            if kind == b"v":
                raise QueryError("the server does not speak protocol 3.0 as asked")
            raise ProtocolError(f"unexpected message {kind!r} during startup")

    def query(self, sql: str) -> QueryResult:
        """Run one statement with the simple query protocol and read up to ReadyForQuery."""
        return self._guard(lambda: self._query(sql))

    def _query(self, sql: str) -> QueryResult:
        self.sock.sendall(message(b"Q", sql.encode("utf-8") + b"\0"))
        columns: tuple[str, ...] | None = None
        rows: list[tuple[str | None, ...]] = []
        size = 0
        command = ""
        failure: QueryError | None = None
        while True:
            kind, body = self._next()
            if kind == b"T":
                columns = parse_row_description(body)
            elif kind == b"D":
                if columns is None:
                    raise ProtocolError("DataRow before RowDescription")
                size += len(body)
                if len(rows) >= MAX_ROWS or size > MAX_RESULT_BYTES:
                    raise QueryError(f"the result is larger than {MAX_ROWS} rows or {MAX_RESULT_BYTES >> 20} MiB: "
                                     "not read")
                rows.append(parse_data_row(body, len(columns)))
            elif kind == b"C":
                command, _ = _cstring(body, 0)
            elif kind == b"I":
                command = ""
            elif kind == b"E":
                failure = _server_error(body, "query failed")
            elif kind == b"Z":
                if failure is not None:
                    raise failure
                return QueryResult(columns or (), tuple(rows), command)
            else:
                raise ProtocolError(f"unexpected message {kind!r} in a query's reply")

    def terminate(self) -> None:
        """Say goodbye (the server logs no "unexpected EOF"), then close the socket."""
        with contextlib.suppress(OSError):
            self.sock.sendall(message(b"X", b""))
        self.sock.close()

    @staticmethod
    def _guard(run: Callable[[], _T]) -> _T:
        """Run one exchange, turning everything a garbled or silent server can cause into a QueryError."""
        try:
            return run()
        except QueryError:
            raise
        except ProtocolError as exc:
            raise QueryError(f"unexpected reply: {exc}") from None
        except (ValueError, IndexError, UnicodeError, struct.error) as exc:
            raise QueryError(f"unexpected reply: {exc}") from None
        except TimeoutError:
            raise QueryError("the server did not answer in time") from None
        except OSError as exc:
            raise QueryError(f"connection failed: {exc.strerror or exc}") from None
