"""Redis: ``AUTH password`` (the default user, ``requirepass``) and ``AUTH user password`` (ACL users) in RESP.

Redis has no lockout counter, so only the session's cap and rate limit apply. A server without a password
answers ``AUTH`` with an error that says so: that counts as accepted, and the canary turns it into "no
password checked".
"""

from __future__ import annotations

from dataclasses import dataclass

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

DEFAULT_USER = "default"

# Error replies that mean "no password is set for this user" (wording of Redis 6+ and of older servers).
_NO_PASSWORD = ("without any password configured", "no password is set")


def command(*args: str) -> bytes:
    """One RESP command as an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode("utf-8", "surrogateescape")
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def read_reply(reader: Reader) -> tuple[str, str]:
    """The kind (``+``, ``-``, ``:``, ``$``) and text of one simple reply; arrays are a protocol error here
    (``AUTH`` never answers with one)."""
    line = reader.line()
    kind, body = line[:1], line[1:].decode("utf-8", "replace")
    if kind in (b"+", b"-", b":"):
        return kind.decode(), body
    if kind == b"$":
        try:
            size = int(body)
        except ValueError:
            raise ProtocolError(f"bad bulk length {body[:40]!r}") from None
        if size < 0:
            return "$", ""
        data = reader.exactly(size + 2)
        return "$", data[:-2].decode("utf-8", "replace")
    raise ProtocolError(f"not a RESP reply: {line[:40]!r}")


def classify(kind: str, text: str) -> Answer:
    """What an ``AUTH`` reply says about the password."""
    if kind == "+":
        return Accepted()
    if kind == "-":
        lowered = text.lower()
        if any(marker in lowered for marker in _NO_PASSWORD):
            return Accepted()
        if lowered.startswith("wrongpass") or "invalid password" in lowered or "invalid username-password" in lowered:
            return Refused()
        return Error(f"AUTH answered: {text[:120]}")
    return Error(f"AUTH answered a {kind} reply")


@dataclass
class RedisProber:
    """Password attempts against one Redis endpoint, one connection per attempt."""

    endpoint: Endpoint
    timeout: float = 5.0
    service: str = "redis"
    lockout_limit: int | None = None

    def try_password(self, user: str, password: str) -> Answer:
        """``AUTH password`` for the default user, ``AUTH user password`` for an ACL user."""
        def run() -> Answer:
            args = ("AUTH", password) if user == DEFAULT_USER else ("AUTH", user, password)
            with open_socket(self.endpoint, self.timeout) as sock:
                sock.sendall(command(*args))
                return classify(*read_reply(Reader(sock, timeout=self.timeout)))
        return attempt(run)
