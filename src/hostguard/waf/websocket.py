"""WebSockets through `hostguard waf proxy`: the handshake's headers, the upstream's answer to it, and the relay.

Chat, dashboards and notebooks (Nextcloud Talk, Grafana Live, Mattermost, Jupyter) keep a WebSocket open
beside their HTTP requests; a reverse proxy that drops ``Upgrade`` breaks them. The proxy judges the upgrade
handshake like any request (the rules see its path, query, headers and cookies), then opens its own WebSocket
to the upstream and relays frames between the two. This module holds what is particular to that:

- which headers the upstream's handshake gets: the client's, as for HTTP, minus the ``Sec-WebSocket-*``
  ones, which belong to one connection's handshake (the proxy makes its own key, and offers the client's
  subprotocols itself so the upstream's choice comes back);
- :class:`UpstreamAnswers`: aiohttp's ``ws_connect`` follows redirects and throws away the body of an
  answer other than 101; its request hooks (``TraceConfig``, public API) see the answer before either, so a
  refusal (403, 404, a redirect to a login page) reaches the client as the application wrote it, and the
  extra headers of a 101 (a cookie) too;
- :func:`relay`: text, binary, ping and pong frames both ways, unchanged; a close frame passed on with its
  code and reason (when the client closes, the application's reply goes back to it); a side that fails (a message
  over ``websocket_max_message_bytes``, a protocol error, a lost connection) ends both, and so do
  ``websocket_idle_timeout`` without a frame either way and the proxy stopping.

Messages are never run through the engine: ModSecurity has no frame inspection, only the handshake is
judged. Running JSON text messages through it as request bodies was considered and left out: a transaction
per message (chat sends many small ones) on the thread pool, CRS's prose false alarms would cut users' live
sessions (a refusal can only close the whole WebSocket), and no rule or exclusion is written for messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal, TypeGuard

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

__all__ = ["ANSWER_LIMIT", "CLOSE_TIMEOUT", "Ending", "UpstreamAnswered", "UpstreamAnswers", "closeable",
           "handshake_headers", "is_upgrade", "offered_protocols", "relay"]

log = logging.getLogger("hostguard.waf.proxy")

ANSWER_LIMIT = 256 * 1024   # the largest refusal body relayed: an application's error page, never a download
CLOSE_TIMEOUT = 10.0         # seconds one side has to answer a close frame before its connection is dropped

Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


def _tokens(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    """The comma-separated tokens of every ``name`` header, stripped, in order."""
    return [token.strip() for n, value in headers if n.lower() == name for token in value.split(",")
            if token.strip()]


def is_upgrade(method: str, headers: Sequence[tuple[str, str]]) -> bool:
    """Whether the request asks for a WebSocket (a GET naming ``websocket`` in Upgrade). Whether it is a valid
    handshake is aiohttp's to say; any other upgrade (h2c) stays an HTTP request whose Upgrade is dropped."""
    return method == "GET" and "websocket" in (t.lower() for t in _tokens(headers, "upgrade"))


def offered_protocols(headers: Sequence[tuple[str, str]]) -> list[str]:
    """The subprotocols the client offers (Sec-WebSocket-Protocol), in its order of preference, once each."""
    return list(dict.fromkeys(_tokens(headers, "sec-websocket-protocol")))


def handshake_headers(forwarded: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The upstream handshake's headers: what the proxy forwards for HTTP (``forward_headers``: the client's
    minus hop-by-hop ones, plus X-Forwarded-* and X-Request-Id) minus ``Sec-WebSocket-*``, which aiohttp writes
    for the proxy's own handshake."""
    return [(n, v) for n, v in forwarded if not n.lower().startswith("sec-websocket-")]


class UpstreamAnswered(Exception):
    """The upstream answered the handshake with something other than 101: its status, reason, headers (hop-by-hop
    and framing ones out) and body (``None``: longer than :data:`ANSWER_LIMIT`)."""

    def __init__(self, status: int, reason: str | None, headers: list[tuple[str, str]], body: bytes | None) -> None:
        super().__init__(f"the upstream answered the WebSocket handshake with {status}")
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body


class UpstreamAnswers:
    """Request hooks for the proxy's WebSocket client session: an upstream answer other than 101 (a redirect
    included) raises :class:`UpstreamAnswered` before aiohttp follows it or drops its body; the extra headers
    of a 101 are kept under the request's X-Request-Id for :meth:`upgraded`.

    ``response_headers`` is the proxy's filter for the upstream's response headers (hop-by-hop ones out)."""

    def __init__(self, response_headers: Callable[[Iterable[tuple[bytes, bytes]]], list[tuple[str, str]]]) -> None:
        self._filter = response_headers
        self._upgraded: dict[str, list[tuple[str, str]]] = {}
        self.config = aiohttp.TraceConfig()
        self.config.on_request_redirect.append(self._answered)
        self.config.on_request_end.append(self._answered)

    def upgraded(self, request_id: str) -> list[tuple[str, str]]:
        """The headers of the upstream's 101 for the handshake with this id that the client's 101 should carry
        too (a cookie, a server header): not hop-by-hop, not ``Sec-WebSocket-*`` (the proxy's handshake with the
        client writes its own); forgotten once asked."""
        return self._upgraded.pop(request_id, [])

    async def _answered(self, session: aiohttp.ClientSession, context: SimpleNamespace,
                        params: aiohttp.TraceRequestEndParams | aiohttp.TraceRequestRedirectParams) -> None:
        response = params.response
        headers = [(n, v) for n, v in self._filter(response.raw_headers) if n.lower() != "content-length"]
        if response.status == 101:
            request_id = params.headers.get("X-Request-Id")
            if request_id:
                self._upgraded[request_id] = [(n, v) for n, v in headers
                                              if not n.lower().startswith("sec-websocket-")]
            return
        parts: list[bytes] = []
        size = 0
        while chunk := await response.content.readany():
            size += len(chunk)
            if size > ANSWER_LIMIT:
                raise UpstreamAnswered(response.status, response.reason, headers, None)
            parts.append(chunk)
        raise UpstreamAnswered(response.status, response.reason, headers, b"".join(parts))


def closeable(code: int | None) -> TypeGuard[int]:
    """Whether ``code`` may be sent in a close frame (RFC 6455 §7.4: not 1004-1006 or 1015, which only say what
    happened locally, nor the unassigned ranges)."""
    return code is not None and ((1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999)


Side = Literal["client", "upstream"]


@dataclass(frozen=True)
class _End:
    """How one direction ended: ``close`` (a close frame with ``code`` and ``reason``), ``closing`` (the proxy
    is closing that side), ``broken`` (the side failed: ``code`` is what aiohttp closed it with, 1009 for a
    message too large) or ``lost`` (the other side could not be written to)."""

    side: Side
    kind: Literal["close", "closing", "broken", "lost"]
    code: int | None = None
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Ending:
    """How a relayed WebSocket ended, for the proxy's log: which side ended it (``client``, ``upstream``, or
    ``proxy`` for the idle timeout and stopping), how (``close``, ``broken``, ``lost``, ``idle``, ``stopping``),
    the code the failed side was closed with (1009: a message too large) and aiohttp's word on it."""

    by: str
    how: str
    code: int | None = None
    detail: str = ""


class _Relay:
    """One client WebSocket and its upstream one, relayed until either ends (see :func:`relay`)."""

    def __init__(self, client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse,
                 idle_timeout: float) -> None:
        self.client = client
        self.upstream = upstream
        self.idle_timeout = idle_timeout
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        # set before the proxy closes a side: a direction that just relayed a frame stops instead of reading
        # again (a read would race the close for the same socket)
        self.ending = False

    async def pump(self, side: Side, source: Socket, sink: Socket) -> _End:
        """Relay ``source``'s frames to ``sink`` until a close frame, a failure, or the proxy closing."""
        while not self.ending:
            msg = await source.receive()
            self.last = self.loop.time()
            try:
                if msg.type is WSMsgType.TEXT:
                    await sink.send_str(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await sink.send_bytes(msg.data)
                elif msg.type is WSMsgType.PING:
                    await sink.ping(msg.data)
                elif msg.type is WSMsgType.PONG:
                    await sink.pong(msg.data)
                elif msg.type is WSMsgType.CLOSE:
                    return _End(side, "close", msg.data, msg.extra or "")
                elif self.ending:   # CLOSING: the proxy is closing this side
                    return _End(side, "closing")
                else:   # ERROR (too large, not UTF-8, a protocol error: aiohttp closed it with the code) or CLOSED
                    code = msg.data.code if isinstance(msg.data, aiohttp.WebSocketError) else source.close_code
                    return _End(side, "broken", code, detail=str(msg.data or "connection lost"))
            except ConnectionError as exc:
                return _End(side, "lost", detail=str(exc) or type(exc).__name__)
        return _End(side, "closing")

    async def idle(self) -> None:
        """Return once no frame came either way for ``idle_timeout`` seconds."""
        while (left := self.last + self.idle_timeout - self.loop.time()) > 0:
            await asyncio.sleep(left)

    async def close(self, socket: Socket, code: int, reason: str) -> None:
        """Send ``socket`` a close frame and wait for its answer, at most :data:`CLOSE_TIMEOUT` (then aiohttp,
        cancelled inside its close, drops the connection)."""
        self.ending = True
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await socket.close(code=code, message=reason.encode())   # a peer's reason fits a close frame
        except (TimeoutError, ConnectionError):
            pass

    async def run(self, stop: asyncio.Event) -> Ending:
        pumps = [asyncio.create_task(self.pump("client", self.client, self.upstream)),
                 asyncio.create_task(self.pump("upstream", self.upstream, self.client))]
        idle = asyncio.create_task(self.idle())
        watchers: list[asyncio.Task[Any]] = [idle, asyncio.create_task(stop.wait())]
        try:
            done, _ = await asyncio.wait([*pumps, *watchers], return_when=asyncio.FIRST_COMPLETED)
            ended = sorted((t.result() for t in pumps if t in done), key=lambda e: e.kind != "close")
            if ended:
                return await self._finish(ended[0])
            how = "idle" if idle in done else "stopping"
            reason = "idle timeout" if how == "idle" else "proxy stopping"
            await self.close(self.client, WSCloseCode.GOING_AWAY, reason)
            await self.close(self.upstream, WSCloseCode.GOING_AWAY, reason)
            return Ending("proxy", how)
        finally:
            self.ending = True
            for task in [*pumps, *watchers]:
                task.cancel()
            await asyncio.gather(*pumps, *watchers, return_exceptions=True)

    async def _finish(self, end: _End) -> Ending:
        """Close both sides after ``end``: a close frame goes on to the other side with its code and reason, and
        the other side's answer back (the application's to a client; aiohttp does not wait for a client's answer
        to a close while its frames are being read, so an application's close is answered 1000); a side that
        failed ends the other too (1001 to the upstream when the client failed, 1011 to the client when the
        application's side did)."""
        first, other = (self.client, self.upstream) if end.side == "client" else (self.upstream, self.client)
        if end.kind == "close":
            code = end.code if closeable(end.code) else WSCloseCode.OK   # an empty close frame: no code to pass on
            await self.close(other, code, end.reason)
            await self.close(first, other.close_code if closeable(other.close_code) else code, end.reason)
            return Ending(end.side, "close")
        # the side whose frames were read failed ("broken": aiohttp closed it already, with 1009 for a message
        # too large), or the side written to did ("lost")
        failed = end.side if end.kind == "broken" else ("upstream" if end.side == "client" else "client")
        if failed == "client":
            await self.close(self.upstream, WSCloseCode.GOING_AWAY, "client gone")
            await self.close(self.client, WSCloseCode.GOING_AWAY, "")
        else:
            await self.close(self.client, WSCloseCode.INTERNAL_ERROR, "upstream failed")
            await self.close(self.upstream, WSCloseCode.GOING_AWAY, "")
        return Ending(failed, end.kind, end.code, end.detail)


async def relay(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, *, idle_timeout: float,
                stop: asyncio.Event) -> Ending:
    """Relay frames between the client's WebSocket and the upstream's until one side closes or fails, no frame
    comes either way for ``idle_timeout`` seconds, or ``stop`` is set (the proxy stopping: 1001 to both); both
    are closed on return. Both sockets must have been opened with ``autoclose=False`` and ``autoping=False``, so
    close, ping and pong frames reach the relay instead of being answered by aiohttp."""
    return await _Relay(client, upstream, idle_timeout).run(stop)
