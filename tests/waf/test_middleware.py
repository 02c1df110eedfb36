"""The WSGI and ASGI middleware with real requests on loopback: a small application of our own (it echoes the
method, the target and the body it was given, and has a JSON API route) behind the middleware, under
wsgiref's server and under uvicorn. Each case runs against both front ends.

What matters and is asserted: a refused request never reaches the application (calls are counted) and its
answer names the request id the event log holds; an honest body reaches the application byte for byte;
bodies over the limit are refused, never passed unread; detection-only lets the attack through and records
it; scopes other than HTTP pass through untouched. Construction fails at start (missing library, unwritable
event log), never at request time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import setup_testing_defaults

import pytest

from hostguard.waf import engine as engine_mod
from hostguard.waf.config import UnknownSite, WafConfig, WafSite
from hostguard.waf.engine import EngineError
from hostguard.waf.gate import Gate
from hostguard.waf.middleware import (
    REQUEST_ID_KEY,
    ASGIMiddleware,
    Message,
    Scope,
    WSGIMiddleware,
    asgi_target,
    wsgi_target,
)
from tests.waf.test_engine import _need_library

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

LIMIT = 8192
UA = {"Host": "shop.example.test", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "Accept": "*/*"}
SQLI = "/products?id=" + quote("1' OR '1'='1")


# --- the application behind the middleware ---------------------------------------------------------------

@dataclass
class Backend:
    """One running server: its port, the requests its application was called with, lifespan events seen."""

    port: int
    calls: list[str] = field(default_factory=list)
    lifespan: list[str] = field(default_factory=list)


def _echo(method: str, target: str, body: bytes, request_id: str | None) -> tuple[str, bytes]:
    """The application's answer: the JSON API route parses its body; every other route echoes."""
    if target.startswith("/api/"):
        return "application/json", json.dumps({"ok": True, "received": json.loads(body)}).encode()
    return "application/json", json.dumps({"method": method, "target": target, "request_id": request_id,
                                           "body": base64.b64encode(body).decode()}).encode()


def wsgi_app(backend: Backend) -> Any:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        target = environ["PATH_INFO"] + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
        backend.calls.append(target)
        stream = environ["wsgi.input"]
        body = stream.read(int(environ.get("CONTENT_LENGTH") or 0))
        assert stream.read() == b""     # the replayed stream ends where the body ends
        kind, answer = _echo(environ["REQUEST_METHOD"], target, body, environ.get(REQUEST_ID_KEY))
        start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(answer)))])
        return [answer]
    return app


def asgi_app(backend: Backend) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                backend.lifespan.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        query = scope["query_string"].decode("latin-1")
        target = scope["raw_path"].decode("latin-1") + ("?" + query if query else "")
        backend.calls.append(target)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        kind, answer = _echo(scope["method"], target, body, scope.get(REQUEST_ID_KEY))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", kind.encode()), (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})
    return app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_wsgi(gate: Gate) -> Iterator[Backend]:
    """The echo application behind WSGIMiddleware under wsgiref's server (threaded), on a free port."""
    backend = Backend(0)
    server = make_server("127.0.0.1", 0, WSGIMiddleware(wsgi_app(backend), gate=gate),
                         server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    backend.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield backend
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def serve_asgi(gate: Gate) -> Iterator[Backend]:
    """The echo application behind ASGIMiddleware under uvicorn (lifespan on), on a free port."""
    import uvicorn

    backend = Backend(0)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    backend.port = sock.getsockname()[1]
    # proxy_headers off: uvicorn would otherwise take X-Forwarded-For from a loopback peer itself and put it
    # in scope["client"] (its forwarded_allow_ips), before the gate's own trusted-proxy logic sees the request
    server = uvicorn.Server(uvicorn.Config(ASGIMiddleware(asgi_app(backend), gate=gate), lifespan="on",
                                           ws="none", proxy_headers=False, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield backend
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Front:
    """One front end (wsgi or asgi) with a blocking and a detection-only server, and their event log."""

    kind: str
    block: Backend
    detect: Backend
    log: Path


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gate, Gate, Path]]:
    _need_library()
    log = tmp_path_factory.mktemp("waf") / "events.jsonl"
    # two sites of one config: the shop blocks, the other one learns
    config = WafConfig(max_body_bytes=LIMIT, sites={"shop": WafSite(), "learning": WafSite(mode="detect")})
    block = Gate(config, str(log), site="shop")
    detect = Gate(config, str(log), site="learning")
    yield block, detect, log
    block.close()
    detect.close()


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def front(request: pytest.FixtureRequest, gates: tuple[Gate, Gate, Path]) -> Iterator[Front]:
    block, detect, log = gates
    serve = serve_wsgi if request.param == "wsgi" else serve_asgi
    with serve(block) as blocking, serve(detect) as detecting:
        yield Front(request.param, blocking, detecting, log)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(port: int, method: str, target: str, body: bytes | list[bytes] | None = None,
         headers: dict[str, str] | None = None) -> Answer:
    """One real request on loopback, written in one piece (a chunked body when ``body`` is a list of
    chunks): a request refused before its body is read is then wholly in the server's buffer, so the
    client reads the answer instead of failing on a half-sent body."""
    all_headers = {**UA, **(headers or {})}
    if isinstance(body, list):
        all_headers["Transfer-Encoding"] = "chunked"
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in body) + b"0\r\n\r\n"
    else:
        payload = body or b""
        if body is not None:
            all_headers["Content-Length"] = str(len(payload))
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1") + b"Connection: close\r\n\r\n" + payload)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())


def events(log: Path, request_id: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, log.read_text().splitlines()) if e["request_id"] == request_id]


def refusal(log: Path, answer: Answer, reason: str, path: str = "/comments") -> dict[str, Any]:
    """The ``refused`` event the answer names: the blocking site's, the client, the reason, no rules."""
    [event] = events(log, answer.headers["x-request-id"])
    assert (event["action"], event["reason"], event["site"], event["client"], event["status"], event["path"],
            event["rules"]) == ("refused", reason, "shop", "127.0.0.1", answer.status, path, [])
    return event


def multipart(boundary: str, fields: dict[str, str], filename: str, content: bytes) -> bytes:
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="{filename}"\r\n'
                 f"Content-Type: image/png\r\n\r\n".encode() + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


# --- real requests -------------------------------------------------------------------------------------

def test_sql_injection_in_the_query_is_refused_before_the_app(front: Front) -> None:
    before = list(front.block.calls)
    answer = send(front.block.port, "GET", SQLI)
    assert answer.status == 403
    request_id = answer.headers["x-request-id"]
    assert len(request_id) == 16 and request_id in answer.body.decode()
    assert answer.headers["cache-control"] == "no-store"
    assert front.block.calls == before, "the application was called for a refused request"
    [event] = events(front.log, request_id)
    assert (event["action"], event["site"], event["path"]) == ("blocked", "shop", "/products?id=…")
    assert 942100 in [r["id"] for r in event["rules"]]


BOUNDARY = "----hostguard7MA4YWxkTrZu0gW"
BENIGN = [
    ("form", "application/x-www-form-urlencoded",
     b"name=Zo%C3%AB+O%27Brien&address=12+Rue+de+la+Paix%2C+Paris&note=Cr%C3%A8me+br%C3%BBl%C3%A9e+%26+tea"),
    ("json", "application/json",
     json.dumps({"customer": "Zoë", "items": [{"sku": "A-12", "qty": 2}], "note": "ring twice"}).encode()),
    ("multipart", f"multipart/form-data; boundary={BOUNDARY}",
     multipart(BOUNDARY, {"title": "Holiday", "caption": "Sunset at the lake"}, "lake.png",
               b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)),
]


@pytest.mark.parametrize(("name", "content_type", "body"), BENIGN, ids=[b[0] for b in BENIGN])
def test_honest_bodies_reach_the_app_byte_for_byte(front: Front, name: str, content_type: str, body: bytes) -> None:
    calls = len(front.block.calls)
    answer = send(front.block.port, "POST", "/orders?step=2", body, {"Content-Type": content_type})
    assert answer.status == 200, answer.body
    seen = answer.json()
    assert base64.b64decode(seen["body"]) == body
    assert (seen["method"], seen["target"]) == ("POST", "/orders?step=2")
    assert len(seen["request_id"]) == 16     # the WAF's id, for the application's own logs
    assert len(front.block.calls) == calls + 1


def test_a_chunked_honest_body_reaches_the_app_whole_where_the_server_dechunks(front: Front) -> None:
    chunks = [b"name=Zo%C3%AB", b"&note=", b"ring+twice"]
    answer = send(front.block.port, "POST", "/orders", chunks,
                  {"Content-Type": "application/x-www-form-urlencoded"})
    if front.kind == "wsgi":
        # wsgiref hands the raw, still chunked stream and no end: unreadable safely, so refused
        assert answer.status == 411
    else:
        assert answer.status == 200 and base64.b64decode(answer.json()["body"]) == b"".join(chunks)


def test_the_app_sees_the_target_as_sent(front: Front) -> None:
    target = "/search/caf%C3%A9?q=O%27Brien+shoes&tag=a%2Fb&empty="
    seen = send(front.block.port, "GET", target).json()
    if front.kind == "asgi":
        assert seen["target"] == target
    else:                                  # wsgiref decodes PATH_INFO (latin-1 text of the UTF-8 bytes)
        assert seen["target"] == "/search/caf\u00c3\u00a9?q=O%27Brien+shoes&tag=a%2Fb&empty="


def test_json_api_route_parses_honest_json_and_a_script_tag_is_refused(front: Front) -> None:
    ok = send(front.block.port, "POST", "/api/orders", b'{"note": "leave at the door", "qty": 2}',
              {"Content-Type": "application/json"})
    assert ok.status == 200 and ok.json() == {"ok": True, "received": {"note": "leave at the door", "qty": 2}}
    calls = len(front.block.calls)
    attack = send(front.block.port, "POST", "/api/orders",
                  b'{"note": "<script>alert(document.cookie)</script>", "qty": 1}',
                  {"Content-Type": "application/json"})
    assert attack.status == 403 and "x-request-id" in attack.headers
    assert len(front.block.calls) == calls
    rules = [r["id"] for r in events(front.log, attack.headers["x-request-id"])[0]["rules"]]
    assert 941100 in rules


def test_a_body_over_the_limit_is_refused_with_413(front: Front) -> None:
    calls = len(front.block.calls)
    large = b"comment=" + b"a" * LIMIT
    answer = send(front.block.port, "POST", "/comments", large, {"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status == 413
    assert "aaaa" not in json.dumps(refusal(front.log, answer, "body_too_large"))   # never the body
    at_limit = b"comment=" + b"a" * (LIMIT - 8)
    assert send(front.block.port, "POST", "/comments", at_limit,
                {"Content-Type": "application/x-www-form-urlencoded"}).status == 200
    assert len(front.block.calls) == calls + 1


def test_a_chunked_body_over_the_limit_is_refused(front: Front) -> None:
    calls = len(front.block.calls)
    answer = send(front.block.port, "POST", "/comments", [b"a" * 4096] * 3,
                  {"Content-Type": "application/octet-stream"})
    # uvicorn de-chunks: read to the limit, then 413; wsgiref cannot: 411 (the WSGI read to the limit is
    # test_wsgi_body_without_a_length_is_read_to_the_limit)
    assert answer.status == (411 if front.kind == "wsgi" else 413)
    assert len(front.block.calls) == calls
    refusal(front.log, answer, "length_required" if front.kind == "wsgi" else "body_too_large")


def test_a_length_with_a_chunked_framing_is_refused_and_recorded(front: Front) -> None:
    """wsgiref and uvicorn (h11) both hand such a request to the application: the middleware refuses it before
    reading, since the server and a proxy in front of it could each read a different body."""
    calls = len(front.block.calls)
    answer = send(front.block.port, "POST", "/comments", [b"note=", b"hello"], {"Content-Length": "5"})
    assert answer.status == 400 and len(front.block.calls) == calls
    refusal(front.log, answer, "length_and_chunked")


def test_wsgi_refusals_a_real_server_passes_on_are_recorded(gates: tuple[Gate, Gate, Path]) -> None:
    """wsgiref gives the middleware an unreadable Content-Length, and a body that ends before its length
    (the client stopped sending); uvicorn refuses the first itself and reports the second as a disconnect."""
    with serve_wsgi(gates[0]) as backend:
        bad = send(backend.port, "POST", "/comments", headers={"Content-Length": "12abc"})
        assert bad.status == 400
        refusal(gates[2], bad, "bad_content_length")
        head = "POST /comments HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in UA.items())
        with socket.create_connection(("127.0.0.1", backend.port), timeout=30) as sock:
            sock.sendall(head.encode() + b"Content-Length: 100\r\n\r\nnote=short")
            sock.shutdown(socket.SHUT_WR)   # the rest never comes
            response = http.client.HTTPResponse(sock)
            response.begin()
            short = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        assert short.status == 400
        refusal(gates[2], short, "body_incomplete")
        assert backend.calls == []


def test_detection_only_lets_the_attack_through_and_records_it(front: Front) -> None:
    calls = len(front.detect.calls)
    answer = send(front.detect.port, "GET", SQLI)
    assert answer.status == 200 and len(front.detect.calls) == calls + 1
    request_id = answer.json()["request_id"]
    [event] = events(front.log, request_id)
    assert (event["action"], event["site"]) == ("detected", "learning")
    assert {942100, 949110} <= {r["id"] for r in event["rules"]}


def test_forwarded_for_from_an_untrusted_peer_is_not_believed(front: Front) -> None:
    answer = send(front.block.port, "GET", SQLI, headers={"X-Forwarded-For": "198.51.100.7"})
    assert answer.status == 403
    [event] = events(front.log, answer.headers["x-request-id"])
    assert event["client"] == "127.0.0.1"


def test_lifespan_reaches_the_asgi_app_through_uvicorn(gates: tuple[Gate, Gate, Path]) -> None:
    with serve_asgi(gates[0]) as backend:
        assert backend.lifespan == ["lifespan.startup"]
    assert backend.lifespan == ["lifespan.startup", "lifespan.shutdown"]


# --- unit level: what a real server cannot easily be made to send --------------------------------------

def _environ(**extra: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {"REMOTE_ADDR": "198.51.100.20", "REMOTE_PORT": "50000", "HTTP_HOST": "shop.example.test",
                               "HTTP_USER_AGENT": UA["User-Agent"], "HTTP_ACCEPT": "*/*",
                               "CONTENT_TYPE": "application/x-www-form-urlencoded"}
    setup_testing_defaults(environ)
    environ.update(extra)
    return environ


def _call_wsgi(middleware: WSGIMiddleware, environ: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    got: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        got.extend([status, dict(headers)])
        return lambda data: None

    body = b"".join(middleware(environ, start_response))
    return got[0], got[1], body


def test_wsgi_body_without_a_length_is_read_to_the_limit(gates: tuple[Gate, Gate, Path]) -> None:
    """A server that de-chunks says so with ``wsgi.input_terminated`` and gives no CONTENT_LENGTH."""
    seen: list[tuple[bytes, str]] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        seen.append((environ["wsgi.input"].read(), environ["CONTENT_LENGTH"]))
        start_response("204 No Content", [])
        return []

    middleware = WSGIMiddleware(app, gate=gates[0])
    body = b"note=" + b"x" * 5000
    chunked = {"REQUEST_METHOD": "POST", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True,
               "CONTENT_TYPE": "application/x-www-form-urlencoded"}
    status, _, _ = _call_wsgi(middleware, _environ(**chunked, **{"wsgi.input": io.BytesIO(body)}))
    assert status.startswith("204") and seen == [(body, str(len(body)))]
    reads: list[int] = []

    class Endless(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            reads.append(size)
            return b"y" * size

    status, _, answer = _call_wsgi(middleware, _environ(**chunked, **{"wsgi.input": Endless()}))
    assert status.startswith("413") and b"too large" in answer and len(seen) == 1
    assert sum(reads) == LIMIT + 1, "read past the limit plus one byte"
    status, _, _ = _call_wsgi(middleware, _environ(**{**chunked, "wsgi.input_terminated": False,
                                                      "wsgi.input": Endless()}))
    assert status.startswith("411") and sum(reads) == LIMIT + 1     # nothing read from a stream with no end


def test_wsgi_declared_lengths_are_honoured(gates: tuple[Gate, Gate, Path]) -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [environ["wsgi.input"].read()]

    middleware = WSGIMiddleware(app, gate=gates[0])
    stream = io.BytesIO(b"a=1&b=2NEXT-REQUEST")
    status, _, body = _call_wsgi(middleware, _environ(REQUEST_METHOD="POST", CONTENT_LENGTH="7",
                                                     **{"wsgi.input": stream}))
    assert (status, body, stream.read()) == ("200 OK", b"a=1&b=2", b"NEXT-REQUEST")   # never past the length
    short = _call_wsgi(middleware, _environ(REQUEST_METHOD="POST", CONTENT_LENGTH="70",
                                            **{"wsgi.input": io.BytesIO(b"a=1")}))
    assert short[0].startswith("400")
    assert _call_wsgi(middleware, _environ(REQUEST_METHOD="POST", CONTENT_LENGTH="-5"))[0].startswith("400")
    assert _call_wsgi(middleware, _environ(REQUEST_METHOD="POST", CONTENT_LENGTH=str(LIMIT + 1)))[0] \
        .startswith("413")


def test_wsgi_a_length_from_a_server_that_dechunked_is_trusted(gates: tuple[Gate, Gate, Path]) -> None:
    """A server that de-chunks (``wsgi.input_terminated``) may write CONTENT_LENGTH from what it read and keep
    the client's Transfer-Encoding: the body it hands over is the one the application reads, not ambiguous."""
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [environ["wsgi.input"].read()]

    middleware = WSGIMiddleware(app, gate=gates[0])
    framed = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "7", "HTTP_TRANSFER_ENCODING": "chunked"}
    status, _, body = _call_wsgi(middleware, _environ(**framed, **{"wsgi.input_terminated": True,
                                                                    "wsgi.input": io.BytesIO(b"a=1&b=2")}))
    assert (status, body) == ("200 OK", b"a=1&b=2")
    status, headers, _ = _call_wsgi(middleware, _environ(**framed, **{"wsgi.input": io.BytesIO(b"a=1&b=2")}))
    assert status.startswith("400")
    assert events(gates[2], headers["X-Request-Id"])[0]["reason"] == "length_and_chunked"


@pytest.mark.parametrize(("environ", "target"), [
    ({"RAW_URI": "/a%2Fb/../c?q=%2527x"}, "/a%2Fb/../c?q=%2527x"),          # gunicorn: as sent
    ({"REQUEST_URI": "/p?x=1"}, "/p?x=1"),                                   # uWSGI, mod_wsgi
    ({"RAW_URI": "http://shop.example.test:8080/p?x=1"}, "/p?x=1"),         # absolute form
    ({"RAW_URI": "/caf\u00c3\u00a9?q=\u00ff"}, "/caf%C3%A9?q=%FF"),          # raw bytes, percent-encoded
    ({"SCRIPT_NAME": "/app", "PATH_INFO": "/a b/100%?#", "QUERY_STRING": "q=1%27"},
     "/app/a%20b/100%25%3F%23?q=1%27"),                                     # decoded path quoted again
    ({"PATH_INFO": "/caf\u00c3\u00a9", "QUERY_STRING": ""}, "/caf%C3%A9"),
    ({"PATH_INFO": "", "SCRIPT_NAME": ""}, "/"),
])
def test_wsgi_target_is_what_the_client_sent(environ: dict[str, str], target: str) -> None:
    assert wsgi_target(environ) == target


@pytest.mark.parametrize(("scope", "target"), [
    ({"raw_path": b"/a%2Fb/c", "query_string": b"q=%2527x", "path": "/a/b/c"}, "/a%2Fb/c?q=%2527x"),
    ({"raw_path": b"/caf\xc3\xa9", "query_string": b"q=\xff"}, "/caf%C3%A9?q=%FF"),
    ({"path": "/api/caf\u00e9 1", "root_path": "/api", "query_string": b""}, "/api/caf%C3%A9%201"),
    ({"path": "/x", "root_path": "/api", "raw_path": None, "query_string": b"a=1"}, "/api/x?a=1"),
])
def test_asgi_target_is_what_the_client_sent(scope: dict[str, Any], target: str) -> None:
    assert asgi_target(scope) == target


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.mark.parametrize("kind", ["websocket", "lifespan"])
def test_other_scopes_pass_through_untouched(gates: tuple[Gate, Gate, Path], kind: str) -> None:
    got: list[tuple[Any, Any, Any]] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        got.append((scope, receive, send))

    async def receive() -> Message:
        raise AssertionError("the middleware must not read a non-HTTP scope")

    async def send_(message: Message) -> None:
        raise AssertionError("the middleware must not answer a non-HTTP scope")

    scope: Scope = {"type": kind, "path": "/ws", "raw_path": b"/ws", "query_string": b"q=%27%20OR%201=1--",
                    "headers": []}
    _run(ASGIMiddleware(app, gate=gates[0])(scope, receive, send_))
    assert len(got) == 1 and got[0][0] is scope and got[0][1] is receive and got[0][2] is send_


def _http_scope(body_length: int | None = None) -> Scope:
    headers = [(b"host", b"shop.example.test"), (b"content-type", b"application/x-www-form-urlencoded")]
    if body_length is not None:
        headers.append((b"content-length", str(body_length).encode()))
    return {"type": "http", "method": "POST", "path": "/orders", "raw_path": b"/orders", "query_string": b"",
            "headers": headers, "client": ("198.51.100.30", 40000), "server": ("127.0.0.1", 8000)}


def test_asgi_replays_the_body_once_then_defers_to_the_server(gates: tuple[Gate, Gate, Path]) -> None:
    incoming: list[Message] = [{"type": "http.request", "body": b"qty=2", "more_body": True},
                               {"type": "http.request", "body": b"", "more_body": True},
                               {"type": "http.request", "body": b"&sku=A-12", "more_body": False},
                               {"type": "http.disconnect"}]
    seen: list[Message] = []
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send_(message: Message) -> None:
        sent.append(message)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.extend([await receive(), await receive()])
        assert len(scope[REQUEST_ID_KEY]) == 16

    _run(ASGIMiddleware(app, gate=gates[0])(_http_scope(14), receive, send_))
    assert seen == [{"type": "http.request", "body": b"qty=2&sku=A-12", "more_body": False},
                    {"type": "http.disconnect"}]
    assert sent == [] and incoming == []


def test_asgi_client_gone_before_its_body_ended_never_reaches_the_app(gates: tuple[Gate, Gate, Path]) -> None:
    incoming: list[Message] = [{"type": "http.request", "body": b"qty=", "more_body": True},
                               {"type": "http.disconnect"}]
    called: list[Scope] = []
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send_(message: Message) -> None:
        sent.append(message)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        called.append(scope)

    _run(ASGIMiddleware(app, gate=gates[0])(_http_scope(), receive, send_))
    assert called == [] and sent == []


def test_asgi_declared_length_over_the_limit_is_refused_unread(gates: tuple[Gate, Gate, Path]) -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        raise AssertionError("a body declared too large must not be read")

    async def send_(message: Message) -> None:
        sent.append(message)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        raise AssertionError("the application must not be called")

    _run(ASGIMiddleware(app, gate=gates[0])(_http_scope(LIMIT + 1), receive, send_))
    assert sent[0]["status"] == 413 and sent[1]["more_body"] is False
    request_id = dict(sent[0]["headers"])[b"x-request-id"].decode()
    assert [(e["action"], e["reason"], e["client"]) for e in events(gates[2], request_id)] == [
        ("refused", "body_too_large", "198.51.100.30")]


def test_asgi_unreadable_length_is_refused_and_recorded(gates: tuple[Gate, Gate, Path]) -> None:
    """uvicorn refuses such a request itself; another server may pass it on."""
    sent: list[Message] = []
    scope = _http_scope()
    scope["headers"].append((b"content-length", b"-5"))

    async def receive() -> Message:
        raise AssertionError("a body of unknown length must not be read")

    async def send_(message: Message) -> None:
        sent.append(message)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        raise AssertionError("the application must not be called")

    _run(ASGIMiddleware(app, gate=gates[0])(scope, receive, send_))
    request_id = dict(sent[0]["headers"])[b"x-request-id"].decode()
    assert sent[0]["status"] == 400
    assert [(e["reason"], e["path"]) for e in events(gates[2], request_id)] == [("bad_content_length", "/orders")]


# --- construction -------------------------------------------------------------------------------------

@pytest.mark.parametrize("middleware", [WSGIMiddleware, ASGIMiddleware])
def test_a_missing_library_fails_at_construction(monkeypatch: pytest.MonkeyPatch, middleware: Any) -> None:
    monkeypatch.setattr(engine_mod, "LIBRARY", "libmodsecurity-not-here.so.9")
    monkeypatch.setattr(engine_mod._Lib, "_instance", None)
    with pytest.raises(EngineError, match="cannot be loaded"):
        middleware(lambda *a: None)


@pytest.mark.parametrize("middleware", [WSGIMiddleware, ASGIMiddleware])
def test_an_event_log_that_cannot_be_written_fails_at_construction(tmp_path: Path, middleware: Any) -> None:
    with pytest.raises(FileNotFoundError):
        middleware(lambda *a: None, event_log=str(tmp_path / "no-such-dir" / "events.jsonl"))


@pytest.mark.parametrize("middleware", [WSGIMiddleware, ASGIMiddleware])
def test_a_shared_gate_is_not_given_a_second_config(gates: tuple[Gate, Gate, Path], middleware: Any) -> None:
    with pytest.raises(TypeError, match="shared gate"):
        middleware(lambda *a: None, WafConfig(), gate=gates[0])
    with pytest.raises(TypeError, match="shared gate"):
        middleware(lambda *a: None, gate=gates[0], site="learning")   # the gate serves "shop"


@pytest.mark.parametrize("middleware", [WSGIMiddleware, ASGIMiddleware])
def test_an_unknown_site_fails_at_construction(tmp_path: Path, middleware: Any) -> None:
    log = tmp_path / "events.jsonl"
    with pytest.raises(UnknownSite, match=r"known: default, shop"):
        middleware(lambda *a: None, WafConfig(sites={"shop": WafSite()}), event_log=str(log), site="shpo")
    assert not log.exists()   # before anything was opened


def test_a_middleware_made_gate_uses_the_config_and_writes_its_log(tmp_path: Path) -> None:
    _need_library()
    log = tmp_path / "events.jsonl"
    calls: list[str] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        calls.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b"ok"]

    middleware = WSGIMiddleware(app, WafConfig(event_log=str(log), sites={"blog": WafSite(block_status=406)}),
                                site="blog")
    try:
        status, headers, body = _call_wsgi(middleware, _environ(PATH_INFO="/p", QUERY_STRING=SQLI.partition("?")[2]))
    finally:
        middleware.close()
    assert status == "406 Not Acceptable" and calls == []
    [event] = [json.loads(line) for line in log.read_text().splitlines()]
    assert (event["request_id"], event["site"], event["client"]) == (headers["X-Request-Id"], "blog", "198.51.100.20")
    assert headers["X-Request-Id"] in body.decode()


def test_importing_the_package_stays_light() -> None:
    code = ("import sys, hostguard.waf as w; "
            "assert 'cffi' not in sys.modules and 'hostguard.waf.middleware' not in sys.modules, sorted(sys.modules); "
            "assert w.WSGIMiddleware.__name__ == 'WSGIMiddleware' and w.ASGIMiddleware.__name__ == 'ASGIMiddleware'; "
            "assert 'cffi' not in sys.modules\n"
            "try:\n    w.Nope\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit('no AttributeError')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
