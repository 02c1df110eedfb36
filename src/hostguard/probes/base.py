"""What every prober shares: where it may connect (loopback or a unix socket, nothing else), the answers
one attempt can give, and a socket reader that turns a short or garbled reply into a one-line error."""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hostguard.host.base import HostError


class ProbeError(HostError):
    """A probe cannot be made as asked (a non-local address, an account that must not be guessed online)."""


@dataclass(frozen=True)
class Endpoint:
    """Where a service answers: a unix socket path, or a loopback IP literal and port.

    Host names are refused too: a name can resolve anywhere, a literal 127.0.0.0/8 or ::1 cannot. The check is
    made when the endpoint is built and again before every connection (:func:`open_socket`).
    """

    host: str | None = None
    port: int | None = None
    path: str | None = None

    @classmethod
    def tcp(cls, host: str, port: int) -> Endpoint:
        """A loopback TCP endpoint; any other address is a :class:`ProbeError`."""
        endpoint = cls(host=host, port=port)
        endpoint.check()
        return endpoint

    @classmethod
    def unix(cls, path: str) -> Endpoint:
        """A unix socket endpoint."""
        endpoint = cls(path=path)
        endpoint.check()
        return endpoint

    def check(self) -> None:
        """Refuse anything but a unix socket or a loopback address (DESIGN, "Safety": only this host)."""
        if self.path is not None:
            if self.host is not None or self.port is not None or not self.path:
                raise ProbeError("a probe endpoint is either a unix socket path or a loopback address and port")
            return
        if self.host is None or self.port is None:
            raise ProbeError("a probe endpoint needs a unix socket path or a loopback address and port")
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            raise ProbeError(f"probe refused: {self.host!r} is not an IP address (only 127.0.0.0/8 and ::1 "
                             "are probed)") from None
        if not address.is_loopback:
            raise ProbeError(f"probe refused: {self.host} is not a loopback address (only 127.0.0.0/8 and ::1 "
                             "are probed)")
        if not 0 < self.port < 65536:
            raise ProbeError(f"probe refused: port {self.port} is not 1-65535")

    def label(self) -> str:
        """``unix /run/x.sock`` or ``tcp 127.0.0.1:6379`` (``[::1]:6379``): what the store records."""
        if self.path is not None:
            return f"unix {self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"tcp {host}:{self.port}"


@dataclass(frozen=True)
class Accepted:
    """The service let the account in with this password."""


@dataclass(frozen=True)
class Refused:
    """The service said the password is wrong."""


@dataclass(frozen=True)
class Locked:
    """The service says the account is blocked: stop at once, guessing more would only make it worse."""

    detail: str


@dataclass(frozen=True)
class Error:
    """The attempt said nothing about the password (no such account or route, unsupported method, garbled
    reply, timeout): stop this account, report why."""

    detail: str


Answer = Accepted | Refused | Locked | Error


class Prober(Protocol):
    """One service on one endpoint. ``try_password`` makes one whole login attempt on a fresh connection
    (so one attempt is one failure in the service's counters) and never raises for what the server says."""

    service: str
    endpoint: Endpoint
    lockout_limit: int | None   # failures that block an account, where the service has and tells such a counter

    def try_password(self, user: str, password: str) -> Answer:
        """One login attempt as ``user`` with ``password``."""
        ...


def open_socket(endpoint: Endpoint, timeout: float) -> socket.socket:
    """A connected socket to ``endpoint`` (checked again here: nothing reaches a non-local address), with
    ``timeout`` on every operation."""
    endpoint.check()
    if endpoint.path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: str | tuple[str, int] = endpoint.path
    else:
        family = socket.AF_INET6 if ":" in (endpoint.host or "") else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        target = (endpoint.host or "", endpoint.port or 0)
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    return sock


class Reader:
    """Buffered reads from a socket; a closed connection mid-reply is a :class:`ProtocolError`."""

    def __init__(self, sock: socket.socket, limit: int = 1 << 20, timeout: float | None = None) -> None:
        self.sock = sock
        self.buffer = b""
        self.limit = limit    # a reply larger than this is garbage, not something to buffer
        # the whole attempt's deadline: a server dripping one byte at a time cannot stretch it
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def _fill(self) -> None:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the attempt's deadline passed")
            self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ProtocolError("the server closed the connection mid-reply")
        self.buffer += chunk
        if len(self.buffer) > self.limit:
            raise ProtocolError("the server sent an oversized reply")

    def exactly(self, size: int) -> bytes:
        """``size`` bytes."""
        if size < 0 or size > self.limit:
            raise ProtocolError(f"the server announced a reply of {size} bytes")
        while len(self.buffer) < size:
            self._fill()
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def line(self) -> bytes:
        """One CRLF-terminated line, without the CRLF."""
        while b"\r\n" not in self.buffer:
            self._fill()
        out, _, self.buffer = self.buffer.partition(b"\r\n")
        return out


class ProtocolError(Exception):
    """The server's reply does not follow its protocol (it becomes an :class:`Error` answer)."""


def attempt(run: Callable[[], Answer]) -> Answer:
    """Run one attempt function, turning a timeout, a refused connection or a garbled reply into an Error."""
    try:
        answer = run()
    except ProtocolError as exc:
        return Error(f"unexpected reply: {exc}")
    except (ValueError, IndexError, UnicodeDecodeError, struct.error) as exc:
        return Error(f"unexpected reply: {exc}")
    except TimeoutError:
        return Error("timed out")
    except OSError as exc:
        return Error(f"connection failed: {exc.strerror or exc}")
    return answer
