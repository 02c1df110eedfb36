"""`hostguard waf proxy`: an asynchronous reverse proxy that asks the WAF about every request.

HTTP is parsed by aiohttp (its llhttp-based parser, or the pure-Python one when extensions are off), never
here. Both parsers already refuse, with 400 and before any handler runs, the framings request smuggling
relies on: Content-Length together with Transfer-Encoding (any coding), a Transfer-Encoding whose last
coding is not ``chunked``, duplicate Content-Length or Host headers, obs-folded or space-before-colon header
lines, malformed chunk sizes. The handler checks the first of these again (a parser made lenient by a future
release must not open the hole silently) and also refuses what aiohttp accepts but a proxy cannot pass on
safely: Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1: the framing is faulty), targets that are
not origin-form (absolute-form, ``*``), CONNECT, header values that are not UTF-8 (aiohttp's writer cannot
send their bytes back unchanged) and content codings aiohttp does not decode (the engine could not read
the body).

Every such refusal — the parser's and the handler's — is an event (action ``refused``, a reason code from
:data:`~hostguard.waf.gate.REFUSALS`, the client, the site, the path when it is known) and its answer carries
the event's ``X-Request-Id``. A client that hangs up mid-body is not one: nobody was refused.

For each request the handler

1. reads the body up to the site's ``max_body_bytes`` (a declared length over it is refused with 413 before a
   byte is read; a chunked or compressed body is refused as soon as it passes the limit), within the site's
   ``body_timeout`` for the whole body and ``timeout`` for each read (408 past either), and within the
   process's ``[waf] max_buffered_bytes`` for all bodies held at once (503 with Retry-After: a declared length
   is reserved whole before the body is read, a chunked or decoded one as it grows). aiohttp removes the
   chunked framing and decodes gzip/deflate (br and zstd when their modules are installed), so the engine
   inspects the bytes the application will read;
2. asks :meth:`Gate.decide` in a bounded thread pool (libmodsecurity is synchronous), with the header list
   exactly as received;
3. answers ``[waf] block_status`` with the configured message and ``X-Request-Id``, or forwards the request:
   the same method, the target byte for byte (``yarl.URL(..., encoded=True)``: never re-quoted or
   normalised), the headers as received minus hop-by-hop ones, with ``X-Forwarded-For`` (the peer appended),
   ``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``X-Request-Id``; the body as inspected, with an exact
   Content-Length (a decoded body loses its Content-Encoding: the application gets what the engine saw);
4. streams the upstream's answer back (status, headers minus hop-by-hop, the body as it arrives, compressed
   or not: the client session never decompresses).

A WebSocket upgrade (a GET with ``Upgrade: websocket``) is refused when aiohttp could not answer it (no valid key
or version, no ``Connection: upgrade``) or when it has a body (400), or when the process has ``[waf]
max_websockets`` open (503 with Retry-After); otherwise it is judged like any request (it has no body) and, if
allowed, relayed by :mod:`hostguard.waf.websocket`: the proxy opens its own WebSocket to the upstream with the
same target and the client's headers and subprotocols, answers the client with the upstream's choice, and
relays frames (never inspected) within the site's ``websocket_max_message_bytes`` and
``websocket_idle_timeout``. The upstream's answer other than 101 is passed back as it is.

An unreachable upstream is 502, one that does not answer in time 504. A failure of the WAF itself refuses
the request (500, an event) in blocking mode and lets it through in detection-only mode, which promises never
to block.

Headers: aiohttp has no timeout for reading a request's headers, only ``keepalive_timeout``, which closes a
connection that has not delivered a whole request head that long after it opened or after the previous
answer; it is set from ``[waf] header_timeout``. Such a connection is closed unanswered and leaves no event
(there is no request yet). aiohttp bounds the request line and each header (8190 bytes) and their number
(128), and holds at most about 128 KiB of a body the handler has not read yet per connection; it has no
limit on the number of connections.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from yarl import URL

from hostguard.waf.gate import Decision, Gate
from hostguard.waf.websocket import (
    CLOSE_TIMEOUT,
    UpstreamAnswered,
    UpstreamAnswers,
    handshake_headers,
    is_upgrade,
    offered_protocols,
    relay,
)

__all__ = ["HOP_BY_HOP", "BodyBudget", "Proxy", "ProxyError", "Upstream", "forward_headers", "hop_by_hop_names",
           "log_to", "parse_listen", "parse_upstream", "response_headers", "serve"]

log = logging.getLogger("hostguard.waf.proxy")

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded (plus every Proxy-* header)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
                        "proxy-connection"})
# what the proxy sets itself on the way to the upstream (the client's own values are replaced or appended to)
SET_HERE = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id", "expect"})
# a client naming these in Connection must not make the upstream read a request other than the one inspected
NEVER_DROPPED = frozenset({"host", "content-length", "content-type", "content-encoding"})
# the codings aiohttp's server decodes itself (it answers 400 for br/zstd when their module is missing)
DECODED = frozenset({"gzip", "deflate", "br", "zstd"})
# what aiohttp's client would add on its own: the upstream gets only the client's headers
NO_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
READ_SIZE = 1 << 16
RETRY_AFTER = "5"   # seconds a client refused for lack of buffer space is asked to wait: bodies in flight finish


class ProxyError(Exception):
    """A listen address or upstream URL that cannot be used (one line for the command line)."""


@dataclass(frozen=True)
class Upstream:
    """Where requests go: ``origin`` (scheme, host, port) and a path ``prefix`` put before every target."""

    origin: str
    prefix: str

    def url(self, target: str) -> URL:
        """The upstream URL of a raw origin-form target, kept exactly as received."""
        return URL(self.origin + self.prefix + target, encoded=True)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6): an IP address or ``localhost`` and a port (0: any free one).

    A host is required: the proxy never picks the interfaces it listens on for the owner. Host names other
    than localhost are refused, since a name can resolve to several addresses, or to another one tomorrow."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", text.strip())
    if not match:
        raise ProxyError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ProxyError(f"--listen {text!r}: port {port} is out of range")
    if host == "localhost":
        return "127.0.0.1", port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ProxyError(f"--listen {text!r}: the host must be an IP address or localhost") from None
    if match.group(3) is not None and address.version == 6:
        raise ProxyError(f"--listen {text!r}: write an IPv6 address in brackets, e.g. [::1]:8080")
    return str(address), port


def parse_upstream(text: str) -> Upstream:
    """``http(s)://HOST[:PORT][/PREFIX]``: the application behind the proxy. No credentials, query or
    fragment: they would be sent with every request without the owner seeing it."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProxyError(f"--upstream {text!r}: expected http://HOST[:PORT] or https://HOST[:PORT]")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ProxyError(f"--upstream {text!r}: give only the scheme, host, port and an optional path prefix")
    try:
        port = parts.port
    except ValueError:
        raise ProxyError(f"--upstream {text!r}: the port is not a number from 1 to 65535") from None
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return Upstream(f"{parts.scheme}://{netloc}", parts.path.rstrip("/"))


def hop_by_hop_names(headers: Iterable[tuple[str, str]], keep: frozenset[str] = frozenset()) -> set[str]:
    """The lower-cased names not to forward: the standard hop-by-hop ones and those the Connection header
    lists (RFC 9110 §7.6.1), except ``keep``."""
    names = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == "connection":
            names.update(token.strip().lower() for token in value.split(",") if token.strip())
    return names - keep


def _is_hop(name: str, hop: set[str]) -> bool:
    lower = name.lower()
    return lower in hop or lower.startswith("proxy-")


def forward_headers(headers: Sequence[tuple[str, str]], *, body_length: int | None, decoded: bool, peer: str,
                    scheme: str, request_id: str, peer_trusted: bool) -> list[tuple[str, str]]:
    """The headers the upstream gets, in the order received: hop-by-hop ones out, Content-Length the body's
    real length (``None``: no body and none declared), Content-Encoding dropped when aiohttp decoded the body,
    then X-Forwarded-For (earlier hops, the peer last), X-Forwarded-Proto and X-Forwarded-Host (a trusted
    proxy's own values are kept, anyone else's replaced) and this request's X-Request-Id."""
    hop = hop_by_hop_names(headers, keep=NEVER_DROPPED)
    out: list[tuple[str, str]] = []
    chain: list[str] = []
    proto = host = forwarded_host = None
    for name, value in headers:
        lower = name.lower()
        if lower == "x-forwarded-for":
            chain.append(value)
        elif lower == "x-forwarded-proto" and peer_trusted and proto is None:
            proto = value
        elif lower == "x-forwarded-host" and peer_trusted and forwarded_host is None:
            forwarded_host = value
        elif lower == "host" and host is None:
            host = value
        if _is_hop(name, hop) or lower in SET_HERE or (decoded and lower == "content-encoding"):
            continue
        if lower == "content-length":
            if body_length is None:
                continue
            value = str(body_length)
            body_length = None   # written once, where the client put it
        out.append((name, value))
    if body_length is not None:
        out.append(("Content-Length", str(body_length)))
    out.append(("X-Forwarded-For", ", ".join([*chain, peer])))
    out.append(("X-Forwarded-Proto", proto or scheme))
    if forwarded_host or host:
        out.append(("X-Forwarded-Host", forwarded_host or host or ""))
    out.append(("X-Request-Id", request_id))
    return out


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """The upstream's response headers minus hop-by-hop ones (a value that is not UTF-8 is written with
    replacement characters: aiohttp's writer sends text as UTF-8)."""
    decoded = [(name.decode("latin-1"), value.decode("utf-8", "replace")) for name, value in raw]
    hop = hop_by_hop_names(decoded)
    return [(name, value) for name, value in decoded if not _is_hop(name, hop)]


def _plain(status: int, text: str, request_id: str | None = None, close: bool = False,
           extra: dict[str, str] | None = None) -> web.Response:
    """An answer the proxy writes itself (refusals and upstream failures)."""
    headers = {"Cache-Control": "no-store", **(extra or {})}
    if request_id:
        headers["X-Request-Id"] = request_id
    response = web.Response(status=status, text=text if text.endswith("\n") else text + "\n",
                            content_type="text/plain", headers=headers)
    if close:
        response.force_close()
    return response


class _TooLarge(Exception):
    """The body passed ``max_body_bytes``."""


class _NoRoom(Exception):
    """The body would pass ``max_buffered_bytes`` with the bodies already held."""


@dataclass(frozen=True)
class _Refusal:
    """A request refused before the engine's verdict: the reason code (an event's), the status, the answer."""

    reason: str
    status: int
    text: str


class BodyBudget:
    """``[waf] max_buffered_bytes``: the request-body bytes one proxy process holds at once, over all requests.

    Without it, N concurrent uploads of ``max_body_bytes`` each hold N times that in memory: a few hundred
    clients could exhaust the host. Every request reserves what its body will hold (its declared length before
    a byte is read, a chunked or decoded body as it grows) and gives it back when it is done; a request that
    finds no room is refused (503) instead of waiting, so no client can hold others' memory by being slow.
    The event loop is the only user: no lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes; False (nothing reserved) when that would pass the limit."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        """Release ``size`` bytes reserved earlier."""
        self.held -= size


class _Reservation:
    """One request's share of the :class:`BodyBudget`, grown to the body's size, released once."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def grow_to(self, size: int) -> bool:
        """Hold at least ``size`` bytes; False when the budget has no room for the rest."""
        if size <= self.size:
            return True
        if not self.budget.take(size - self.size):
            return False
        self.size = size
        return True

    def release(self) -> None:
        self.budget.give_back(self.size)
        self.size = 0


_NO_ROOM = _Refusal("buffer_full", 503, "Service Unavailable: too many request bodies in flight; try again")
_NO_SOCKET = _Refusal("websocket_limit", 503, "Service Unavailable: too many WebSockets open; try again")
_BAD_HANDSHAKE = _Refusal("websocket_handshake", 400, "Bad Request: not a WebSocket handshake the proxy can relay")


def _peer(request: web.BaseRequest) -> tuple[str, int]:
    """The connection's peer address and port (aiohttp's ``remote`` when the transport is gone)."""
    transport = request.transport
    name = transport.get_extra_info("peername") if transport else None
    return (str(name[0]), int(name[1])) if name else (request.remote or "", 0)


class _Connection(web.RequestHandler):
    """aiohttp's connection handler, telling the proxy about each request its HTTP parser refused (400 before
    any handler runs: the smuggling framings, malformed lines), so those become events too."""

    __slots__ = ("_parse_refused",)

    def __init__(self, manager: web.Server, *, parse_refused: Callable[[web.BaseRequest, HttpProcessingError],
                                                                       str | None],
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._parse_refused = parse_refused

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        response = super().handle_error(request, status, exc, message)
        # the handler reads bodies itself and keeps their errors: an HttpProcessingError here is the parser's
        if isinstance(exc, HttpProcessingError):
            request_id = self._parse_refused(request, exc)
            if request_id:
                response.headers["X-Request-Id"] = request_id
        return response


class _Server(web.Server):
    """``web.Server`` making :class:`_Connection` handlers (aiohttp offers no other hook on parser errors)."""

    def __init__(self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]], *,
                 parse_refused: Callable[[web.BaseRequest, HttpProcessingError], str | None], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._parse_refused = parse_refused

    def __call__(self) -> web.RequestHandler:
        return _Connection(self, loop=self._loop, parse_refused=self._parse_refused, **self._kwargs)


class Proxy:
    """The proxy server: listens, inspects every request through ``gate``, forwards to ``upstream``.

    The gate (and its engine) belongs to the caller, who closes it after :meth:`stop`: several proxies in one
    process (the tests) can share an engine. The limits are the gate's site's (``max_body_bytes``,
    ``body_timeout``, ``websocket_max_message_bytes``, ``websocket_idle_timeout``) and the process's
    (``max_buffered_bytes``, ``header_timeout``, ``max_websockets``). ``timeout`` bounds the wait for the
    upstream's answer and each read of it (a WebSocket handshake's too), and each read of a request body;
    ``connect_timeout`` opening a connection to the upstream (or waiting for a free one in the pool)."""

    def __init__(self, gate: Gate, upstream: Upstream, *, timeout: float = 60.0, connect_timeout: float = 10.0,
                 workers: int | None = None, upstream_connections: int = 100) -> None:
        self.gate = gate
        self.upstream = upstream
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.workers = workers or min(32, (os.cpu_count() or 1) + 4)
        self.upstream_connections = upstream_connections
        self.limits = gate.limits
        self.max_body = gate.limits.max_body_bytes
        self.body_timeout = gate.limits.body_timeout
        self.budget = BodyBudget(gate.config.max_buffered_bytes)
        self.max_websockets = gate.config.max_websockets
        self.websockets = 0   # open, or being opened: counted from the handshake's arrival to the relay's end
        self._executor: ThreadPoolExecutor | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws_session: aiohttp.ClientSession | None = None
        self._ws_answers = UpstreamAnswers(response_headers)
        self._ws_stop = asyncio.Event()
        self._runner: web.ServerRunner | None = None

    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> tuple[str, int]:
        """Listen on ``host:port`` (or accept on ``sock``, a listening socket shared by worker processes);
        the address actually bound (``port`` 0 picks a free one). An address that cannot be bound raises
        ``OSError`` after everything started here is stopped again."""
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="hostguard-waf")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.upstream_connections),
            # a shared jar would hand one visitor's cookies to the next: the Cookie header passes as sent
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,   # the response body goes back exactly as the upstream sent it
            timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout, sock_read=self.timeout),
            trust_env=False,         # never through an HTTP_PROXY from the environment
        )
        # WebSockets get their own session: each holds its upstream connection for as long as it is open, which
        # would starve the HTTP pool (their number is bounded by max_websockets, counted in _websocket); one
        # connection per handshake, never reused after a refusal
        self._ws_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout, sock_read=self.timeout),
            trust_env=False,
            skip_auto_headers=NO_AUTO_HEADERS,
            trace_configs=[self._ws_answers.config],
        )
        self._ws_stop.clear()
        # lingering_time: after a refusal with the body unread (413), aiohttp discards what the client still
        # sends for this long so the client reads the answer instead of a reset; then it closes.
        # keepalive_timeout: the only bound aiohttp puts on reading a request's headers (see the module's doc)
        server = _Server(self._handle, parse_refused=self._parse_refused, access_log=None, lingering_time=2.0,
                         keepalive_timeout=self.gate.config.header_timeout)
        self._runner = web.ServerRunner(server, shutdown_timeout=min(self.timeout, 10.0))
        await self._runner.setup()
        try:
            site: web.BaseSite = (web.SockSite(self._runner, sock) if sock is not None
                                  else web.TCPSite(self._runner, host, port, reuse_address=True))
            await site.start()
        except OSError:
            await self.stop()
            raise
        bound = self._runner.addresses[0]
        return str(bound[0]), int(bound[1])

    async def stop(self) -> None:
        """Stop listening, close open WebSockets (1001 to both sides), let requests in flight finish (for at most
        the shutdown timeout), close the upstream connections and wait for inspections still running in the
        pool."""
        self._ws_stop.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for session in (self._session, self._ws_session):
            if session is not None:
                await session.close()
        self._session = self._ws_session = None
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(None, partial(executor.shutdown, wait=True))

    async def _read_body(self, request: web.BaseRequest, held: _Reservation) -> bytes:
        """The body as aiohttp hands it over (de-chunked, decoded), refused past ``max_body`` (_TooLarge), past
        the buffer budget (_NoRoom), or past ``body_timeout`` for the whole or ``timeout`` for one read
        (TimeoutError: a sender slow on purpose must not hold a connection and its buffer for ever)."""
        parts: list[bytes] = []
        size = 0
        async with asyncio.timeout(self.body_timeout):
            while True:
                async with asyncio.timeout(self.timeout):
                    chunk = await request.content.read(READ_SIZE)
                if not chunk:
                    return b"".join(parts)
                size += len(chunk)
                if size > self.max_body:
                    raise _TooLarge
                if not held.grow_to(size):
                    raise _NoRoom
                parts.append(chunk)

    def _refusal(self, request: web.BaseRequest, headers: Sequence[tuple[str, str]]) -> _Refusal | None:
        """What is refused before the body is read or the engine asked (see the module's docstring)."""
        names = [name.lower() for name, _ in headers]
        if "content-length" in names and "transfer-encoding" in names:
            return _Refusal("length_and_chunked", 400, "Bad Request: Content-Length with Transfer-Encoding")
        if "transfer-encoding" in names and request.version < aiohttp.HttpVersion11:
            return _Refusal("chunked_http10", 400, "Bad Request: Transfer-Encoding in an HTTP/1.0 request")
        if request.method == "CONNECT":
            return _Refusal("method_connect", 405, "Method Not Allowed: this is a reverse proxy")
        if not request.raw_path.startswith("/"):
            return _Refusal("target_not_origin_form", 400, "Bad Request: the request target must be a path "
                                                           "(origin-form)")
        codings = [value for name, value in headers if name.lower() == "content-encoding"]
        if len(codings) > 1 or (codings and codings[0].strip().lower() not in DECODED | {"", "identity"}):
            return _Refusal("unsupported_coding", 415, "Unsupported Media Type: content coding " + ", ".join(codings))
        expect = [value for name, value in headers if name.lower() == "expect"]
        if expect and (len(expect) > 1 or expect[0].strip().lower() != "100-continue"):
            return _Refusal("bad_expect", 417, "Expectation Failed")
        if request.content_length is not None and request.content_length > self.max_body:
            return _Refusal("body_too_large", 413, "Content Too Large")
        return None

    def _refuse(self, refusal: _Refusal, request: web.BaseRequest, headers: Sequence[tuple[str, str]],
                peer: str, extra: dict[str, str] | None = None) -> web.Response:
        """The answer to a refused request, after its event (an event log that cannot be written is said in
        the proxy's log; the request is refused all the same)."""
        request_id = self._record(refusal.reason, refusal.status, request.method, request.raw_path, headers, peer)
        return _plain(refusal.status, refusal.text, request_id, close=True, extra=extra)

    def _record(self, reason: str, status: int, method: str, target: str, headers: Sequence[tuple[str, str]],
                peer: str) -> str | None:
        try:
            return self.gate.refused(reason, status, method, target, headers, peer)
        except OSError as exc:
            log.warning("event log %s: %s", self.gate.event_log, exc.strerror or exc)
            return None

    def _parse_refused(self, request: web.BaseRequest, exc: HttpProcessingError) -> str | None:
        """The event of a request aiohttp's parser refused (nothing of it is known but the peer and why)."""
        text = str(getattr(exc, "message", "") or exc)
        reason = ("length_and_chunked" if "content-length" in text.lower() and "transfer-encoding" in text.lower()
                  else "malformed_request")
        return self._record(reason, 400, "", "", [], _peer(request)[0])

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """One request: refused on its framing, read, inspected in the pool, then refused or forwarded."""
        peer, peer_port = _peer(request)
        try:
            headers = [(name.decode("latin-1"), value.decode("utf-8")) for name, value in request.raw_headers]
        except UnicodeDecodeError:
            readable = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.raw_headers]
            return self._refuse(_Refusal("header_not_utf8", 400, "Bad Request: a header value is not UTF-8"),
                                request, readable, peer)
        refused = self._refusal(request, headers)
        if refused is not None:
            return self._refuse(refused, request, headers, peer)
        if is_upgrade(request.method, headers):
            return await self._websocket(request, headers, peer, peer_port)
        held = _Reservation(self.budget)
        try:
            if request.content_length and not held.grow_to(request.content_length):
                return self._refuse(_NO_ROOM, request, headers, peer, {"Retry-After": RETRY_AFTER})
            if request.headers.get("Expect", "").strip().lower() == "100-continue" and \
                    request.version >= aiohttp.HttpVersion11:
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                body = await self._read_body(request, held)
            except _TooLarge:
                return self._refuse(_Refusal("body_too_large", 413, "Content Too Large"), request, headers, peer)
            except _NoRoom:
                return self._refuse(_NO_ROOM, request, headers, peer, {"Retry-After": RETRY_AFTER})
            except TimeoutError:
                return self._refuse(_Refusal("body_timeout", 408, "Request Timeout"), request, headers, peer)
            except (RequestPayloadError, HttpProcessingError) as exc:   # a body that is not what it claims to be
                cause = exc.__cause__ if isinstance(exc.__cause__, HttpProcessingError) else exc
                reason = str(getattr(cause, "message", "") or cause).strip().splitlines()[0]
                return self._refuse(_Refusal("body_unreadable", 400, f"Bad Request: {reason}"), request, headers,
                                    peer)
            except ConnectionError:   # the client left: the answer is never read, and nobody was refused
                return _plain(400, "Bad Request: the connection was lost", close=True)
            return await self._inspect_and_forward(request, headers, body, peer, peer_port)
        finally:
            held.release()

    async def _inspect_and_forward(self, request: web.BaseRequest, headers: list[tuple[str, str]], body: bytes,
                                   peer: str, peer_port: int) -> web.StreamResponse:
        """Ask the engine in the pool; answer the refusal, or forward."""
        verdict = await self._inspect(request, headers, body, peer, peer_port)
        if isinstance(verdict, web.StreamResponse):
            return verdict
        return await self._forward(request, headers, body, peer, verdict)

    async def _inspect(self, request: web.BaseRequest, headers: list[tuple[str, str]], body: bytes, peer: str,
                       peer_port: int) -> web.StreamResponse | str:
        """Ask the engine in the pool: the refusal's answer, or the request id to forward the request with."""
        transport = request.transport
        sock_name = transport.get_extra_info("sockname") if transport else None
        server, server_port = (str(sock_name[0]), int(sock_name[1])) if sock_name else ("127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        assert self._executor is not None
        try:
            decision: Decision | None = await loop.run_in_executor(self._executor, partial(
                self.gate.decide, request.method, request.raw_path, headers, body, peer, peer_port, server,
                server_port))
        except Exception:
            log.exception("the WAF could not inspect %s %s", request.method, request.raw_path[:200])
            if self.gate.config.mode != "detect":
                return self._refuse(_Refusal("inspection_failed", 500, "Internal Server Error: the request could "
                                                                       "not be inspected"), request, headers, peer)
            decision = None
        if decision is not None and decision.blocked:
            return web.Response(status=decision.status, body=self.gate.block_body(decision),
                                content_type="text/plain", charset="utf-8",
                                headers={"X-Request-Id": decision.request_id, "Cache-Control": "no-store"})
        return decision.request_id if decision is not None else secrets.token_hex(8)

    async def _websocket(self, request: web.BaseRequest, headers: list[tuple[str, str]], peer: str,
                         peer_port: int) -> web.StreamResponse:
        """A WebSocket upgrade: a handshake aiohttp can answer, room under ``max_websockets``, the engine's
        verdict on the handshake (it has no body), then the relay. Every answer but a 101 closes the connection:
        the client may already have sent frames, which must never be read as the next HTTP request."""
        offered = offered_protocols(headers)
        if request.content_length or any(n.lower() == "transfer-encoding" for n, _ in headers) or \
                not web.WebSocketResponse(protocols=offered).can_prepare(request):
            return self._refuse(_BAD_HANDSHAKE, request, headers, peer)
        if self.websockets >= self.max_websockets:
            return self._refuse(_NO_SOCKET, request, headers, peer, {"Retry-After": RETRY_AFTER})
        self.websockets += 1
        try:
            verdict = await self._inspect(request, headers, b"", peer, peer_port)
            if isinstance(verdict, web.StreamResponse):
                verdict.force_close()
                return verdict
            return await self._relay(request, headers, offered, peer, verdict)
        finally:
            self.websockets -= 1

    async def _relay(self, request: web.BaseRequest, headers: Sequence[tuple[str, str]], offered: list[str],
                     peer: str, request_id: str) -> web.StreamResponse:
        """Open the upstream's WebSocket (the same target, the client's headers and subprotocols), answer the
        client's handshake with the upstream's choice, and relay until either side ends; an upstream that
        answers otherwise than 101 has its answer passed back as it is."""
        assert self._ws_session is not None
        out = handshake_headers(forward_headers(headers, body_length=None, decoded=False, peer=peer,
                                                scheme=request.scheme, request_id=request_id,
                                                peer_trusted=self.gate.trusted.trusts(peer)))
        limit = self.limits.websocket_max_message_bytes + 1   # aiohttp refuses a message of max_msg_size itself
        try:
            upstream = await self._ws_session.ws_connect(
                self.upstream.url(request.raw_path), headers=out, protocols=offered, autoclose=False,
                autoping=False, max_msg_size=limit)
        except UpstreamAnswered as answer:
            if answer.body is None:
                return _plain(502, "Bad Gateway: the application's answer to the WebSocket handshake is too large",
                              request_id, close=True)
            response = web.Response(status=answer.status, reason=answer.reason, body=answer.body)
            for name, value in answer.headers:
                response.headers.add(name, value)
            response.force_close()
            return response
        except TimeoutError:
            return _plain(504, "Gateway Timeout: the application did not answer in time", request_id, close=True)
        except aiohttp.WSServerHandshakeError as exc:   # a 101 without a valid Sec-WebSocket-Accept
            log.warning("upstream %s: WebSocket handshake: %s", self.upstream.origin, exc.message)
            return _plain(502, "Bad Gateway: the application's WebSocket handshake is invalid", request_id,
                          close=True)
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("upstream %s: %s", self.upstream.origin, exc or type(exc).__name__)
            return _plain(502, "Bad Gateway: the application could not be reached", request_id, close=True)
        finally:
            upgraded = self._ws_answers.upgraded(request_id)
        try:
            client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else [],
                                           autoclose=False, autoping=False, max_msg_size=limit,
                                           timeout=CLOSE_TIMEOUT)
            for name, value in upgraded:
                client.headers.add(name, value)
            try:
                await client.prepare(request)
            except ConnectionError:   # the client left while the upstream answered
                return _plain(400, "Bad Request: the connection was lost", close=True)
            ending = await relay(client, upstream, idle_timeout=self.limits.websocket_idle_timeout,
                                 stop=self._ws_stop)
        finally:
            if not upstream.closed:
                await upstream.close(code=aiohttp.WSCloseCode.GOING_AWAY)
        if ending.how in ("broken", "lost"):
            # a client can break its own WebSocket at will (INFO); the application's failures are the owner's
            level = logging.INFO if ending.by == "client" else logging.WARNING
            why = (f"a message larger than websocket_max_message_bytes ({self.limits.websocket_max_message_bytes})"
                   if ending.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG else ending.detail[:200] or ending.how)
            log.log(level, "WebSocket %s: the %s's side failed: %s", request.path[:200],
                    "client" if ending.by == "client" else "application", why)
        return client

    async def _forward(self, request: web.BaseRequest, headers: Sequence[tuple[str, str]], body: bytes, peer: str,
                       request_id: str) -> web.StreamResponse:
        """Send the inspected request upstream and stream the answer back."""
        assert self._session is not None
        declared = any(name.lower() == "content-length" for name, _ in headers)
        coding = next((v.strip().lower() for n, v in headers if n.lower() == "content-encoding"), "")
        out = forward_headers(headers, body_length=len(body) if body or declared else None,
                              decoded=coding in DECODED, peer=peer, scheme=request.scheme, request_id=request_id,
                              peer_trusted=self.gate.trusted.trusts(peer))
        try:
            upstream = await self._session.request(
                request.method, self.upstream.url(request.raw_path), headers=out, data=body or None,
                skip_auto_headers=NO_AUTO_HEADERS, allow_redirects=False)
        except TimeoutError:
            return _plain(504, "Gateway Timeout: the application did not answer in time", request_id)
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("upstream %s: %s", self.upstream.origin, exc or type(exc).__name__)
            return _plain(502, "Bad Gateway: the application could not be reached", request_id)
        complete = False
        try:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in response_headers(upstream.raw_headers):
                response.headers.add(name, value)
            await response.prepare(request)
            while True:
                try:
                    chunk = await upstream.content.readany()
                except (TimeoutError, aiohttp.ClientError) as exc:
                    # the status line is gone: only a cut connection tells the client the answer is incomplete
                    log.warning("upstream %s broke off an answer: %s", self.upstream.origin,
                                exc or type(exc).__name__)
                    if request.transport is not None:
                        request.transport.close()
                    return response
                if not chunk:
                    break
                try:
                    # a client reading slower than `timeout` per chunk is cut off: it would otherwise hold this
                    # request's body share of max_buffered_bytes and an upstream connection as long as it liked
                    async with asyncio.timeout(self.timeout):
                        await response.write(chunk)
                except (ConnectionError, TimeoutError):   # the client left or stalled: nobody to tell
                    if request.transport is not None:
                        request.transport.close()
                    return response
            await response.write_eof()
            complete = True
            return response
        finally:
            # a connection with an answer left unread is closed, never handed to the next request
            if complete:
                upstream.release()
            else:
                upstream.close()


_handler: logging.Handler | None = None


class _OneLineBadRequests(logging.Filter):
    """aiohttp logs every malformed request, and every client that hangs up mid-body, with a traceback: anyone
    can cause them, so they become one line at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RequestPayloadError) and isinstance(exc.__cause__, HttpProcessingError):
            exc = exc.__cause__
        if isinstance(exc, HttpProcessingError | ConnectionResetError):
            text = str(getattr(exc, "message", "") or exc).strip()
            record.msg, record.args, record.exc_info, record.exc_text = (
                "%s: %s", (record.getMessage(), text.splitlines()[0] if text else type(exc).__name__), None, None)
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def log_to(stream: TextIO, level: int = logging.WARNING) -> None:
    """The proxy's and aiohttp's messages as ``hostguard: waf proxy: ...`` lines on ``stream``, malformed
    requests (attacker noise) only at INFO and without a traceback."""
    global _handler
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("hostguard: waf proxy: %(message)s"))
    handler.setLevel(level)
    for name in ("hostguard.waf.proxy", "aiohttp.server", "aiohttp.web", "aiohttp.websocket"):
        logger = logging.getLogger(name)
        if _handler is not None:   # called again (tests, or a second proxy): replaced, not doubled
            logger.removeHandler(_handler)
        if not any(isinstance(f, _OneLineBadRequests) for f in logger.filters):
            logger.addFilter(_OneLineBadRequests())   # on the logger: it runs before the handler's level check
        logger.addHandler(handler)
        logger.setLevel(min(level, logging.INFO))
        logger.propagate = False
    _handler = handler


async def serve(gate: Gate, upstream: Upstream, host: str, port: int, *, timeout: float = 60.0,
                ready: Callable[[str, int], None] | None = None, sock: socket.socket | None = None) -> None:
    """Run the proxy until SIGINT or SIGTERM, then stop it cleanly (requests in flight finish; the caller
    closes the gate). ``ready`` is told the bound address once the proxy accepts connections; ``sock`` is a
    listening socket shared with other worker processes."""
    proxy = Proxy(gate, upstream, timeout=timeout)
    bound = await proxy.start(host, port, sock)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        if ready is not None:
            ready(*bound)
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await proxy.stop()
