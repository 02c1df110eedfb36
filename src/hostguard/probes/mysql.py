"""MariaDB/MySQL: the v10 handshake and ``mysql_native_password`` (SHA-1 scramble), stdlib only, over the unix
socket or loopback TCP.

Lockout: MariaDB ≥ 10.4 blocks an account after ``max_password_errors`` failed logins (until FLUSH PRIVILEGES
or a good login); the limit is read from the server's options (:func:`lockout_limit`) and the session stays
below it. MySQL's per-account ``FAILED_LOGIN_ATTEMPTS`` is not readable without logging in: a "blocked"
reply stops the session at once (:class:`Locked`). An auth switch to another plugin (``caching_sha2_password``,
``ed25519``, ``gssapi``) is an Error: we do not guess through a method we do not speak.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
