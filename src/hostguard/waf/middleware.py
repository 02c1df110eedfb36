"""The WAF in front of a Python web application: :class:`WSGIMiddleware` and :class:`ASGIMiddleware`.

Both do what the reverse proxy does, inside the application's own process: read the whole request body (up
to ``[waf] max_body_bytes``: a larger one is refused with 413, never passed on unread, since a body the
engine did not see is a body the rules did not judge), ask the :class:`~hostguard.waf.gate.Gate` about the
request, and then either answer the block response (``block_status``, the block message, ``X-Request-Id``)
without ever calling the application, or call it with the body replayed from memory: the application reads
exactly the bytes the client sent, as if nothing stood in between.

The target the engine sees is the one the client sent wherever the server keeps it (``RAW_URI`` or
``REQUEST_URI`` in WSGI, ``raw_path`` and ``query_string`` in ASGI): rebuilding it from the decoded path
would hide double encodings and encoded separators the rules look for. Bytes outside printable ASCII are
percent-encoded (the rules' URL decoding turns them back into the same bytes), so the engine and the events
never get undecodable text.

A request the middleware refuses before the engine could judge it (a body too large, a body without a usable
length, Content-Length together with Transfer-Encoding) is an event too: action ``refused`` with its reason
code (:data:`~hostguard.waf.gate.REFUSALS`), and its answer carries the event's ``X-Request-Id``. A client
that leaves before its body ended is not one (nobody was refused, nobody reads an answer).

``site`` names the site: its ``[waf.sites.NAME]`` settings over ``[waf]`` (an unknown name is an error at
construction), its name in events.

The client is the server's peer (``REMOTE_ADDR``, ``scope["client"]``); ``X-Forwarded-For`` is believed
only from ``[waf] trusted_proxies``, by the gate. A server that rewrites the peer from ``X-Forwarded-For``
itself (uvicorn's ``proxy_headers``, on by default for loopback peers) has made that choice before the
middleware sees the request: its answer is taken as the peer.

Everything that can fail for reasons of set-up — the library, the rules, the event log — fails when the
middleware is built, so a misconfigured WAF stops the application's start instead of letting requests
through or failing them one by one.

The ASGI middleware runs the engine in a worker thread (inspection is CPU work in C and would stall the
event loop); WebSocket and lifespan scopes pass straight through.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from hostguard.waf.config import DEFAULT_SITE, WafConfig, site_config
from hostguard.waf.gate import Decision, Gate

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["ASGIApp", "ASGIMiddleware", "REQUEST_ID_KEY", "WSGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_KEY = "hostguard.request_id"
"""The environ/scope key under which the application finds the WAF's request id (the one in the event log),
so its own logs can name the same request."""

log = logging.getLogger("hostguard.waf")

# RFC 3986 pchar less the unreserved characters quote() keeps anyway, plus "/" between segments: what a
# decoded path may hold unescaped; "?", "#" and "%" are escaped so they cannot change the target's meaning
PATH_SAFE = "/:@!$&'()*+,;="
UNPRINTABLE = re.compile(rb"[^\x21-\x7e]")
ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
CHUNK = 65536
TEXT_PLAIN = "text/plain; charset=utf-8"


def _escape(raw: bytes) -> str:
    """A raw target as text for the engine: bytes outside printable ASCII percent-encoded (the rules' URL
    decoding gives back the same bytes, and events never hold undecodable text)."""
    return UNPRINTABLE.sub(lambda m: b"%%%02X" % m.group()[0], raw).decode("ascii")


def _native_bytes(value: str) -> bytes:
    """The bytes behind a WSGI "native string" (PEP 3333: bytes decoded as latin-1); a server that decoded
    them otherwise gets its text encoded as UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def _header_text(raw: bytes) -> str:
    """A header value as text the engine encodes back to the same bytes: UTF-8 when it is UTF-8, latin-1
    otherwise (never surrogates, which the engine cannot encode)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _origin_form(target: str) -> str:
    """``http://host/p?q`` (absolute form, which a client may send) as ``/p?q``; others unchanged."""
    m = ABSOLUTE.match(target)
    if not m:
        return target
    rest = target[m.end():]
    return rest if rest.startswith("/") else "/" + rest


def wsgi_target(environ: WSGIEnvironment) -> str:
    """The request target as the client sent it: ``RAW_URI`` (gunicorn) or ``REQUEST_URI`` (uWSGI, mod_wsgi)
    when the server gives it, else ``SCRIPT_NAME`` + ``PATH_INFO`` (which the server percent-decoded: quoted
    again) and ``QUERY_STRING`` (never decoded by servers)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return _origin_form(_escape(_native_bytes(raw)))
    path = _native_bytes(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
    target = quote(path, safe=PATH_SAFE) or "/"
    query = environ.get("QUERY_STRING", "")
    return f"{target}?{_escape(_native_bytes(query))}" if query else target


def wsgi_headers(environ: WSGIEnvironment) -> list[tuple[str, str]]:
    """The request headers from ``HTTP_*`` plus ``CONTENT_TYPE`` and ``CONTENT_LENGTH`` (which PEP 3333 keeps
    without the prefix), names in their usual spelling.

    wsgiref's server (and Django's ``runserver``, built on it) fills in ``CONTENT_TYPE: text/plain`` when the
    client sent none; CRS refuses that type (920420), so every GET would be blocked. A bare ``text/plain`` on
    a request without a body is therefore left out: with nothing to parse, the type says nothing."""
    bodyless = environ.get("CONTENT_LENGTH", "") in ("", "0") and "HTTP_TRANSFER_ENCODING" not in environ
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_") and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            name = key[5:].replace("_", "-").title()
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            if key == "CONTENT_TYPE" and bodyless and value == "text/plain":
                continue
            name = key.replace("_", "-").title()
        else:
            continue
        headers.append((name, _header_text(_native_bytes(str(value)))))
    return headers


def asgi_target(scope: Scope) -> str:
    """The request target from ``raw_path`` and ``query_string`` (the bytes the client sent); without
    ``raw_path`` (a server may not give it), from ``root_path`` and the decoded ``path``, quoted again."""
    raw_path = scope.get("raw_path")
    if raw_path:
        target = _origin_form(_escape(bytes(raw_path)))
    else:
        root, path = scope.get("root_path", ""), scope.get("path", "")
        full = path if not root or path.startswith(root) else root + path
        target = quote(full.encode("utf-8", "surrogateescape"), safe=PATH_SAFE) or "/"
    query = scope.get("query_string") or b""
    return f"{target}?{_escape(bytes(query))}" if query else target


def asgi_headers(scope: Scope) -> list[tuple[str, str]]:
    """The scope's headers as text pairs, in order, duplicates kept."""
    return [(bytes(name).decode("latin-1"), _header_text(bytes(value))) for name, value in scope.get("headers", ())]


Refusal = tuple[str, int, str]
"""A request refused before the engine: the reason code (the event's), the status, the answer's text."""
TOO_LARGE: Refusal = ("body_too_large", 413, "Request body too large")
BAD_LENGTH: Refusal = ("bad_content_length", 400, "Bad Request: unreadable Content-Length")
LENGTH_AND_CHUNKED: Refusal = ("length_and_chunked", 400, "Bad Request: Content-Length with Transfer-Encoding")


def _framing_refusal(headers: Sequence[tuple[str, str]], limit: int, *, server_framed: bool) -> Refusal | None:
    """What is refused from the headers alone: a length that cannot be read, a declared body over the limit,
    and a length with a chunked framing (a proxy in front and this server could each read a different body:
    request smuggling) unless ``server_framed``: a WSGI server that de-chunked the body itself
    (``wsgi.input_terminated``) may have written CONTENT_LENGTH from what it read, and the body it hands over is
    the one the application reads. An ASGI scope holds the client's own headers: both there were both sent."""
    if not server_framed and any(n.lower() == "transfer-encoding" for n, _ in headers) and \
            any(n.lower() == "content-length" for n, _ in headers):
        return LENGTH_AND_CHUNKED
    length = _content_length(headers)
    if length == -1:
        return BAD_LENGTH
    if length is not None and length > limit:
        return TOO_LARGE
    return None


def _content_length(headers: Sequence[tuple[str, str]]) -> int | None:
    """The declared body length; None when absent; -1 when unreadable (or several that disagree)."""
    values = {v.strip() for n, v in headers if n.lower() == "content-length"}
    if not values:
        return None
    if len(values) > 1:
        return -1
    value = values.pop()
    return int(value) if value.isdigit() else -1


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Refused"


def _own_gate(config: WafConfig | None, gate: Gate | None, event_log: str | None, site: str) -> tuple[Gate, bool]:
    """The gate to use and whether the middleware made it (and so closes it). A gate made here loads the
    engine now: a missing libmodsecurity or a refused rule raises EngineError at start; an event log that
    cannot be written raises OSError at start too, never on the first blocked request."""
    if gate is not None:
        if config is not None or event_log is not None or site not in (DEFAULT_SITE, gate.site):
            raise TypeError("a shared gate brings its own config, site and event log: give gate, or config, site "
                            "and event_log")
        return gate, False
    config = config or WafConfig()
    site_config(config, site)   # an unknown site fails before anything is opened or loaded
    path = event_log if event_log is not None else (config.event_log or None)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(fd)
    else:
        log.warning("hostguard WAF (site %s) has no event log: blocked and detected requests are not recorded",
                    site)
    return Gate(config, path, site=site), True


class _Middleware:
    """What both front ends share: the gate, and the answers the middleware itself gives."""

    def __init__(self, config: WafConfig | None, gate: Gate | None, event_log: str | None, site: str) -> None:
        self.gate, self._owns_gate = _own_gate(config, gate, event_log, site)

    @property
    def limit(self) -> int:
        """The site's ``max_body_bytes``: the largest body passed on."""
        return self.gate.config.max_body_bytes

    def _decide(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
                client: tuple[str, int], server: tuple[str, int]) -> Decision:
        return self.gate.decide(method, target, headers, body, client[0], client[1], server[0], server[1])

    def _block_answer(self, decision: Decision) -> tuple[int, list[tuple[str, str]], bytes]:
        body = self.gate.block_body(decision)
        return decision.status, [("Content-Type", TEXT_PLAIN), ("Content-Length", str(len(body))),
                                 ("Cache-Control", "no-store"), ("X-Request-Id", decision.request_id)], body

    def _refusal(self, refusal: Refusal, method: str, target: str, headers: Sequence[tuple[str, str]],
                 peer: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """The event and the answer for a request the engine never saw because it could not be read within the
        rules (too large, no usable length, ambiguous framing)."""
        reason, status, why = refusal
        request_id = self.gate.refused(reason, status, method, target, headers, peer)
        body = f"{why}\n".encode()
        return status, [("Content-Type", TEXT_PLAIN), ("Content-Length", str(len(body))),
                        ("Cache-Control", "no-store"), ("X-Request-Id", request_id)], body

    def close(self) -> None:
        """Free the engine if the middleware made the gate (a gate passed in is the caller's to close)."""
        if self._owns_gate:
            self.gate.close()


class WSGIMiddleware(_Middleware):
    """The WAF around a WSGI application (PEP 3333).

    ``config`` is the ``[waf]`` section (defaults when None); ``gate`` an existing gate to share (then
    ``config``, ``event_log`` and ``site`` are the gate's own); ``event_log`` the JSON Lines file events are
    appended to (default ``[waf] event_log``; none when both are empty); ``site`` the site whose
    ``[waf.sites.NAME]`` settings apply over ``config`` and whose name events carry (an unknown one raises
    :class:`~hostguard.waf.config.UnknownSite` here).
    """

    def __init__(self, app: WSGIApplication, config: WafConfig | None = None, *, gate: Gate | None = None,
                 event_log: str | None = None, site: str = DEFAULT_SITE) -> None:
        super().__init__(config, gate, event_log, site)
        self.app = app

    def _read_body(self, environ: WSGIEnvironment, headers: list[tuple[str, str]]) -> bytes | Refusal:
        """The whole body, or why the request is refused.

        With ``CONTENT_LENGTH``, exactly that many bytes (PEP 3333: never read past it; a longer declaration
        than the limit is refused before reading anything). Without it, a body exists only when the server
        says its stream ends where the body ends (``wsgi.input_terminated``, set by servers that de-chunk):
        then it is read to the limit plus one byte, enough to know it is too large. A chunked request on a
        server that does not terminate the stream cannot be read safely (reading would wait for the next
        request's bytes): it is refused with 411 rather than passed uninspected."""
        stream = environ.get("wsgi.input")
        refused = _framing_refusal(headers, self.limit, server_framed=bool(environ.get("wsgi.input_terminated")))
        if refused is not None:
            return refused
        length = _content_length(headers)
        if length is not None:
            want = length
        elif environ.get("wsgi.input_terminated"):
            want = self.limit + 1
        elif any(n.lower() == "transfer-encoding" for n, _ in headers):
            return "length_required", 411, "Length Required"
        else:
            return b""
        parts: list[bytes] = []
        size = 0
        while stream is not None and size < want:
            data = stream.read(min(CHUNK, want - size))
            if not data:
                break
            parts.append(data)
            size += len(data)
        if size > self.limit:
            return TOO_LARGE
        if length is not None and size < length:
            return "body_incomplete", 400, "Bad Request: the body ended before its Content-Length"
        return b"".join(parts)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        headers = wsgi_headers(environ)
        body = self._read_body(environ, headers)
        if isinstance(body, tuple):
            status, answer_headers, answer = self._refusal(body, environ.get("REQUEST_METHOD", "GET"),
                                                           wsgi_target(environ), headers,
                                                           environ.get("REMOTE_ADDR", ""))
            start_response(_status_line(status), answer_headers)
            return [answer]
        try:
            port = int(environ.get("REMOTE_PORT") or 0)
        except ValueError:
            port = 0
        try:
            server_port = int(environ.get("SERVER_PORT") or 0)
        except ValueError:
            server_port = 0
        decision = self._decide(environ.get("REQUEST_METHOD", "GET"), wsgi_target(environ), headers, body,
                                (environ.get("REMOTE_ADDR", ""), port), (environ.get("SERVER_NAME", ""), server_port))
        if decision.blocked:
            status, answer_headers, answer = self._block_answer(decision)
            start_response(_status_line(status), answer_headers)
            return [answer]
        passed = dict(environ)
        passed["wsgi.input"] = io.BytesIO(body)
        passed["wsgi.input_terminated"] = True     # it ends where the body ends (read() without a size is safe)
        if body or environ.get("CONTENT_LENGTH"):
            passed["CONTENT_LENGTH"] = str(len(body))
        passed[REQUEST_ID_KEY] = decision.request_id
        return self.app(passed, start_response)


class ASGIMiddleware(_Middleware):
    """The WAF around an ASGI application (HTTP scopes; WebSocket and lifespan pass through untouched).

    Arguments as for :class:`WSGIMiddleware`.
    """

    def __init__(self, app: ASGIApp, config: WafConfig | None = None, *, gate: Gate | None = None,
                 event_log: str | None = None, site: str = DEFAULT_SITE) -> None:
        super().__init__(config, gate, event_log, site)
        self.app = app

    async def _answer(self, send: Send, answer: tuple[int, list[tuple[str, str]], bytes]) -> None:
        status, headers, body = answer
        await send({"type": "http.response.start", "status": status,
                    "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = asgi_headers(scope)
        client = scope.get("client") or ("", 0)
        method = scope.get("method", "GET")
        refused = _framing_refusal(headers, self.limit, server_framed=False)
        if refused is not None:
            await self._answer(send, self._refusal(refused, method, asgi_target(scope), headers, str(client[0])))
            return
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return          # the client left before its body ended: nothing to judge, no one to answer
            if message["type"] != "http.request":
                continue
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > self.limit:
                await self._answer(send, self._refusal(TOO_LARGE, method, asgi_target(scope), headers,
                                                       str(client[0])))
                return
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        server = scope.get("server") or ("", 0)
        decision = await asyncio.to_thread(self._decide, method, asgi_target(scope), headers,
                                           body, (str(client[0]), int(client[1] or 0)),
                                           (str(server[0]), int(server[1] or 0)))
        if decision.blocked:
            await self._answer(send, self._block_answer(decision))
            return
        replayed = False

        async def replay() -> Message:
            """The buffered body once, as one message; then the server's own receive (``http.disconnect``)."""
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app({**scope, REQUEST_ID_KEY: decision.request_id}, replay, send)
