"""The WAF's reverse proxy with real requests on loopback: a real upstream (Python's http.server in a thread,
echoing what it received), the proxy in-process on its own event loop thread, requests written byte by byte
on raw sockets (and through aiohttp's client for keep-alive and concurrency), and the command line once as a
subprocess per HTTP parser aiohttp has (its C llhttp one and its pure-Python one).

Every attack case asserts the upstream never saw it; every benign case that the upstream got exactly what
was sent: the raw target, the body, the headers minus hop-by-hop ones.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.client
import io
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

aiohttp = pytest.importorskip("aiohttp", reason="the WAF proxy needs aiohttp (pip install 'hostguard[waf]')")

from hostguard.cli import main  # noqa: E402
from hostguard.waf import engine as engine_mod  # noqa: E402
from hostguard.waf.config import WafConfig, WafSite  # noqa: E402
from hostguard.waf.engine import Engine  # noqa: E402
from hostguard.waf.gate import Gate  # noqa: E402
from hostguard.waf.proxy import (  # noqa: E402
    Proxy,
    ProxyError,
    forward_headers,
    parse_listen,
    parse_upstream,
    response_headers,
)
from hostguard.waf.ruleset import WafSettings, assemble  # noqa: E402
from tests.waf.test_engine import _need_library  # noqa: E402

SRC = str(Path(__file__).resolve().parents[2] / "src")
HOST = "shop.example.test"
BASE = [("Host", HOST), ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
        ("Accept", "text/html,application/json")]
SQLI = "/products?id=1%27%20OR%20%271%27%3D%271&marker=sqli-in-query"
BIG = bytes(range(256)) * 8192   # 2 MiB
HUGE = 64 * len(BIG)   # 128 MiB, streamed
GZIP_JSON = gzip.compress(b'{"order": {"note": "leave at the door", "qty": 2}}')

# ---------------------------------------------------------------------------------------------- the upstream


class _Echo(BaseHTTPRequestHandler):
    """Answers every request with what it received as JSON (target raw, headers in order, body in base64)."""

    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]]

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        record = {"method": self.command, "target": self.path, "headers": list(self.headers.items()),
                  "body": base64.b64encode(body).decode()}
        self.server.seen.append(record)  # type: ignore[attr-defined]
        if self.path.startswith("/slow"):
            time.sleep(1.5)
        if self.path.startswith("/stream"):
            return self._stream()
        if self.path.startswith("/broken"):
            return self._broken()
        if self.path.startswith("/huge"):   # more than every socket buffer between here and a client holds
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(HUGE))
            self.end_headers()
            try:
                for _ in range(HUGE // len(BIG)):
                    self.wfile.write(BIG)
            except OSError:   # the proxy gave up on a client that stopped reading
                pass
            return None
        if self.path.startswith("/big"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(BIG)))
            self.end_headers()
            self.wfile.write(BIG)
            return None
        out = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.send_header("Set-Cookie", "a=1; Path=/")
        self.send_header("Set-Cookie", "b=2; Path=/")
        self.send_header("Connection", "X-Upstream-Hop")   # a hop-by-hop header named in Connection
        self.send_header("X-Upstream-Hop", "internal")
        self.send_header("Keep-Alive", "timeout=5")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    def _stream(self) -> None:
        """A gzip-encoded answer in chunks, one at a time: it must reach the client still compressed."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(GZIP_JSON), 7):
            part = GZIP_JSON[i:i + 7]
            self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _broken(self) -> None:
        """Promises 1000 bytes, sends 10 and hangs up."""
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Silent: the proxy hangs up on a slow answer (the 504 test), and stderr belongs to the CLI tests."""


@dataclass
class Upstream:
    url: str
    seen: list[dict[str, Any]]

    def saw(self, marker: str) -> bool:
        """Whether any request the upstream received carried ``marker`` (target or body)."""
        return any(marker in r["target"] or marker.encode() in base64.b64decode(r["body"]) for r in self.seen)

    def last(self, marker: str) -> dict[str, Any]:
        found = [r for r in self.seen if marker in r["target"]]
        assert found, f"the upstream never received {marker}"
        return found[-1]


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = _Server(("127.0.0.1", 0), _Echo)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Upstream(f"http://127.0.0.1:{server.server_address[1]}", server.seen)  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()

# ------------------------------------------------------------------------------------------- the proxies


class Loop:
    """An event loop in a thread: the proxies run there while the tests block on sockets."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 20) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Like asyncio.run's end: tasks still running (a connection aiohttp lingers on) cancelled first."""
        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass
class Running:
    port: int
    events: Path
    proxy: Proxy

    def events_read(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.events.read_text().splitlines()] if self.events.exists() else []

    def refusal(self, reply: Reply) -> dict[str, Any]:
        """The ``refused`` event the answer names in X-Request-Id: the site, the client, no rules, no body."""
        request_id = reply.header("X-Request-Id")
        assert request_id, (reply.status, reply.headers)
        [event] = [e for e in self.events_read() if e["request_id"] == request_id]
        assert (event["action"], event["site"], event["client"], event["status"], event["rules"]) == (
            "refused", "shop", "127.0.0.1", reply.status, [])
        return event


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, Engine]]:
    _need_library()
    loaded = {"block": Engine(text=assemble(WafSettings())),
              "detect": Engine(text=assemble(WafSettings(mode="detect"))),
              # CRS refuses any Content-Encoding (920450): without that rule, what the engine reads is the
              # decoded body
              "gzip": Engine(text=assemble(WafSettings(remove_ids=(920450,))))}
    yield loaded
    for engine in loaded.values():
        engine.close()


@pytest.fixture(scope="module")
def start(engines: dict[str, Engine], upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Callable[..., Running]]:
    """``start(engine="block", upstream=URL, timeout=..., **[waf] settings)``: a proxy on 127.0.0.1, port 0."""
    loop = Loop()
    proxies: list[Proxy] = []

    def start_one(engine: str | Engine = "block", to: str | None = None, timeout: float = 10.0,
                  **settings: Any) -> Running:
        events = tmp_path_factory.mktemp("events") / "waf-events.jsonl"
        if engine == "detect":
            settings["mode"] = "detect"
        gate = Gate(WafConfig(**settings, sites={"shop": WafSite()}), str(events), site="shop",
                    engine=engines[engine] if isinstance(engine, str) else engine)
        proxy = Proxy(gate, parse_upstream(to or upstream.url), timeout=timeout, connect_timeout=2.0)
        _, port = loop.run(proxy.start("127.0.0.1", 0))
        proxies.append(proxy)
        return Running(port, events, proxy)

    yield start_one
    for proxy in proxies:
        loop.run(proxy.stop())
    loop.close()


@pytest.fixture(scope="module")
def waf(start: Callable[..., Running]) -> Running:
    """The proxy in blocking mode, no trusted proxies, bodies up to 64 KiB."""
    return start(max_body_bytes=65536)

# ------------------------------------------------------------------------------------------------ clients


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def echoed(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


def request_bytes(method: str, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b"",
                  version: str = "HTTP/1.1") -> bytes:
    head = f"{method} {target} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return head.encode("latin-1") + body


def exchange(port: int, raw: bytes, method: str = "GET", timeout: float = 10) -> Reply:
    """One request written as given; the answer read by http.client (not parsed by hand)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return Reply(response.status, response.getheaders(), response.read())


def send(port: int, method: str, target: str, extra: Sequence[tuple[str, str]] = (), body: bytes = b"",
         length: bool = True) -> Reply:
    headers = [*BASE, *extra]
    if length and body:
        headers.append(("Content-Length", str(len(body))))
    return exchange(port, request_bytes(method, target, headers, body), method)


def chunked(*parts: bytes) -> bytes:
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"

# ----------------------------------------------------------------------------------------- attacks refused


def test_sql_injection_in_the_query_is_refused_with_a_request_id_and_never_forwarded(
        waf: Running, upstream: Upstream) -> None:
    reply = send(waf.port, "GET", SQLI)
    assert reply.status == 403
    request_id = reply.header("X-Request-Id")
    assert request_id and re.fullmatch(r"[0-9a-f]{16}", request_id)
    assert request_id in reply.body.decode() and (reply.header("Content-Type") or "").startswith("text/plain")
    assert not upstream.saw("sqli-in-query")
    [event] = [e for e in waf.events_read() if e["request_id"] == request_id]
    assert (event["action"], event["site"], event["client"], event["status"]) == ("blocked", "shop", "127.0.0.1", 403)
    assert 942100 in [r["id"] for r in event["rules"]]


def test_a_script_tag_in_a_json_field_is_refused(waf: Running, upstream: Upstream) -> None:
    body = b'{"note": "<script>alert(document.cookie)</script>", "marker": "xss-in-json"}'
    reply = send(waf.port, "POST", "/api/orders", [("Content-Type", "application/json")], body)
    assert reply.status == 403 and reply.header("X-Request-Id")
    assert not upstream.saw("xss-in-json")


def test_an_injection_split_across_chunks_is_read_whole_and_refused(waf: Running, upstream: Upstream) -> None:
    raw = request_bytes("POST", "/search", [*BASE, ("Content-Type", "application/x-www-form-urlencoded"),
                                            ("Transfer-Encoding", "chunked")],
                        chunked(b"marker=sqli-chunked&id=1' UNI", b"ON SELECT pass", b"word FROM users--"))
    assert exchange(waf.port, raw, "POST").status == 403
    assert not upstream.saw("sqli-chunked")


def test_a_compressed_body_is_inspected_decoded(start: Callable[..., Running], upstream: Upstream) -> None:
    gz = start(engine="gzip")
    attack = gzip.compress(b'{"note": "<script>alert(1)</script>", "marker": "xss-gzip"}')
    assert send(gz.port, "POST", "/api/orders", [("Content-Type", "application/json"),
                                                 ("Content-Encoding", "gzip")], attack).status == 403
    assert not upstream.saw("xss-gzip")
    # an honest compressed body reaches the application decoded: what the engine read is what it gets
    reply = send(gz.port, "POST", "/api/orders?marker=gzip-ok", [("Content-Type", "application/json"),
                                                                  ("Content-Encoding", "gzip")], GZIP_JSON)
    assert reply.status == 200
    seen = reply.echoed()
    assert base64.b64decode(seen["body"]) == gzip.decompress(GZIP_JSON)
    names = [n.lower() for n, _ in seen["headers"]]
    assert "content-encoding" not in names
    assert dict((n.lower(), v) for n, v in seen["headers"])["content-length"] == str(len(gzip.decompress(GZIP_JSON)))


def test_crs_refuses_any_content_encoding_at_paranoia_level_1(waf: Running, upstream: Upstream) -> None:
    reply = send(waf.port, "POST", "/api/orders?marker=gzip-crs", [("Content-Type", "application/json"),
                                                                    ("Content-Encoding", "gzip")], GZIP_JSON)
    assert reply.status == 403 and not upstream.saw("gzip-crs")
    assert 920450 in [r["id"] for e in waf.events_read() if e["request_id"] == reply.header("X-Request-Id")
                      for r in e["rules"]]

# --------------------------------------------------------------------------------- honest requests forwarded


MULTIPART = (b"--b0undary\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nSpring order\r\n"
             b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n"
             b"Content-Type: text/plain\r\n\r\nTwo boxes of green tea, please.\n\r\n--b0undary--\r\n")
BENIGN = {
    "get with an odd raw target": ("GET", "/shop//cart/./view;v=1?q=tea%20cups&sort=price%2Cdesc&empty=&flag"
                                          "&tilde=%7E&plus=a+b&marker=get-raw", [], b""),
    "urlencoded": ("POST", "/account?marker=form", [("Content-Type", "application/x-www-form-urlencoded")],
                   b"name=O%27Brien&comment=Lovely+tea%21&qty=2"),
    "multipart": ("POST", "/upload?marker=multipart", [("Content-Type", "multipart/form-data; boundary=b0undary")],
                  MULTIPART),
    "json": ("POST", "/api/orders/7?marker=json", [("Content-Type", "application/json")],
             b'{"order": {"items": [{"sku": "T-100", "qty": 2}], "note": "leave at the door"}}'),
    "xml": ("POST", "/api/orders.xml?marker=xml", [("Content-Type", "application/xml; charset=utf-8")],
            b'<?xml version="1.0"?><order><sku>T-100</sku><qty>2</qty><note>leave at the door</note></order>'),
    # CRS's default policy allows GET, HEAD, POST and OPTIONS only (911100): PUT, PATCH, DELETE are refused
    "options": ("OPTIONS", "/api/orders/7?marker=options", [], b""),
}


@pytest.mark.parametrize("case", BENIGN, ids=list(BENIGN))
def test_honest_requests_reach_the_upstream_byte_identical(waf: Running, upstream: Upstream, case: str) -> None:
    method, target, extra, body = BENIGN[case]
    extra = [*extra, ("Cookie", "session=abc; theme=dark"), ("X-Custom", "kept as is")]
    reply = send(waf.port, method, target, extra, body)
    assert reply.status == 200, reply.body
    seen = reply.echoed()
    assert (seen["method"], seen["target"]) == (method, target)
    assert base64.b64decode(seen["body"]) == body
    sent = [*BASE, *extra] + ([("Content-Length", str(len(body)))] if body else [])
    assert seen["headers"][:len(sent)] == [list(h) for h in sent]
    added = dict(seen["headers"][len(sent):])
    assert added["X-Forwarded-For"] == "127.0.0.1" and added["X-Forwarded-Proto"] == "http"
    assert added["X-Forwarded-Host"] == HOST and re.fullmatch(r"[0-9a-f]{16}", added["X-Request-Id"])


def test_a_chunked_body_is_forwarded_dechunked_with_its_length(waf: Running, upstream: Upstream) -> None:
    parts = (b"name=O%27Brien&com", b"ment=Lovely+tea%21", b"&qty=2")
    raw = request_bytes("POST", "/account?marker=chunked", [*BASE, ("Content-Type", "application/x-www-form-urlencoded"),
                                                            ("Transfer-Encoding", "chunked")], chunked(*parts))
    reply = exchange(waf.port, raw, "POST")
    assert reply.status == 200
    seen = reply.echoed()
    headers = {n.lower(): v for n, v in seen["headers"]}
    assert base64.b64decode(seen["body"]) == b"".join(parts)
    assert "transfer-encoding" not in headers and headers["content-length"] == str(len(b"".join(parts)))


def test_hop_by_hop_headers_stop_at_the_proxy_both_ways(waf: Running, upstream: Upstream) -> None:
    reply = send(waf.port, "GET", "/hops?marker=hops", [
        ("Connection", "keep-alive, X-Client-Hop, Host"), ("X-Client-Hop", "1"), ("Keep-Alive", "timeout=5"),
        ("Proxy-Authorization", "Basic dXNlcjpwYXNz"), ("TE", "trailers"), ("X-Request-Id", "client-chosen"),
        ("X-Forwarded-Proto", "https")])
    assert reply.status == 200
    names = [n.lower() for n, _ in reply.echoed()["headers"]]
    for gone in ("connection", "x-client-hop", "keep-alive", "proxy-authorization", "te"):
        assert gone not in names
    assert names.count("host") == 1   # a client cannot make the proxy drop Host by naming it in Connection
    forwarded = dict(reply.echoed()["headers"])
    assert forwarded["X-Request-Id"] != "client-chosen" and forwarded["X-Forwarded-Proto"] == "http"
    answer = [n.lower() for n, _ in reply.headers]
    assert "x-upstream-hop" not in answer and "keep-alive" not in answer
    assert [v for n, v in reply.headers if n.lower() == "set-cookie"] == ["a=1; Path=/", "b=2; Path=/"]


def test_the_answer_is_streamed_back_unchanged_and_head_has_no_body(waf: Running) -> None:
    reply = send(waf.port, "GET", "/stream?marker=stream")
    assert reply.status == 200 and reply.header("Content-Encoding") == "gzip"
    assert reply.body == GZIP_JSON   # never decompressed by the proxy
    big = send(waf.port, "GET", "/big?marker=big")
    assert big.status == 200 and big.body == BIG and big.header("Content-Length") == str(len(BIG))
    head = send(waf.port, "HEAD", "/api/orders?marker=head")
    assert head.status == 200 and head.body == b"" and int(head.header("Content-Length") or 0) > 0


def test_an_answer_the_upstream_breaks_off_is_cut_for_the_client_too(waf: Running) -> None:
    """The status line is already sent: the client must see a truncated answer, never a complete-looking one."""
    with socket.create_connection(("127.0.0.1", waf.port), timeout=10) as sock:
        sock.sendall(request_bytes("GET", "/broken?marker=broken", BASE))
        response = http.client.HTTPResponse(sock, method="GET")
        response.begin()
        assert response.status == 200 and response.getheader("Content-Length") == "1000"
        with pytest.raises(http.client.IncompleteRead):
            response.read()


def test_expect_100_continue_is_answered_before_the_body(waf: Running) -> None:
    body = b'{"order": {"sku": "T-100", "qty": 2}}'
    with socket.create_connection(("127.0.0.1", waf.port), timeout=10) as sock:
        sock.sendall(request_bytes("POST", "/api/orders?marker=expect", [
            *BASE, ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Expect", "100-continue")]))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
        data = json.loads(response.read())
    assert response.status == 200 and base64.b64decode(data["body"]) == body
    assert "expect" not in [n.lower() for n, _ in data["headers"]]


def test_keep_alive_and_concurrent_requests_get_their_own_answers(waf: Running, upstream: Upstream) -> None:
    async def run() -> list[tuple[int, str]]:
        async with aiohttp.ClientSession(headers={"User-Agent": BASE[1][1], "Accept": BASE[2][1]}) as session:
            async def one(i: int) -> tuple[int, str]:
                target = SQLI if i % 3 == 0 else f"/products?id={i}&marker=concurrent-{i}"
                url = f"http://127.0.0.1:{waf.port}{target}"
                async with session.get(URL(url, encoded=True), headers={"Host": HOST}) as r:
                    await r.read()
                    return r.status, target
            return await asyncio.gather(*(one(i) for i in range(30)))

    for status, target in asyncio.run(run()):
        assert status == (403 if target == SQLI else 200), target
        if target != SQLI:
            assert upstream.last(target)["target"] == target

# ------------------------------------------------------------------------------------- framing and limits


SMUGGLING = {
    "CL then TE": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "TE then CL": b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "CL and TE identity": b"Content-Length: 3\r\nTransfer-Encoding: identity\r\n\r\nabc",
    "CL and TE with a tab": b"Content-Length: 3\r\nTransfer-Encoding:\tchunked\r\n\r\nabc",
    "TE space before colon": b"Transfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc",
    "TE folded": b"Transfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc",
    "TE not ending in chunked": b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "TE unknown": b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "two TE headers": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    "two CL headers": b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "CL list": b"Content-Length: 3, 3\r\n\r\nabc",
    "CL with a sign": b"Content-Length: +3\r\n\r\nabc",
    "chunk size in hex notation": b"Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
    "chunk lines without CR": b"Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
}


def _smuggle_reply(port: int, case: str) -> Reply:
    raw = b"POST /echo?marker=smuggle HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n" + SMUGGLING[case]
    return exchange(port, raw, "POST")


def _smuggle(port: int, case: str) -> int:
    return _smuggle_reply(port, case).status


@pytest.mark.parametrize("case", SMUGGLING, ids=list(SMUGGLING))
def test_ambiguous_framing_is_refused_before_anything_else(waf: Running, upstream: Upstream, case: str) -> None:
    """aiohttp's parser refuses these before any handler runs; each is an event all the same."""
    reply = _smuggle_reply(waf.port, case)
    assert reply.status == 400
    assert not upstream.saw("smuggle")
    event = waf.refusal(reply)
    assert event["path"] == "" and event["method"] == ""    # the parser keeps nothing of a request it refused
    if case in ("CL then TE", "TE then CL"):
        assert event["reason"] == "length_and_chunked"
    else:
        assert event["reason"] in ("length_and_chunked", "malformed_request")


def test_the_handler_itself_refuses_length_with_transfer_encoding(engines: dict[str, Engine]) -> None:
    """aiohttp's parsers never let such a request through (the tests above); should a future one turn lenient,
    the handler still refuses it before reading a byte or asking the engine."""
    from aiohttp.test_utils import make_mocked_request

    gate = Gate(WafConfig(), None, engine=engines["block"])
    proxy = Proxy(gate, parse_upstream("http://127.0.0.1:9"))
    request = make_mocked_request("POST", "/a", headers={"Host": HOST, "Content-Length": "5",
                                                         "Transfer-Encoding": "chunked"})
    reply = asyncio.run(proxy._handle(request))
    assert reply.status == 400 and not reply.keep_alive and reply.headers["X-Request-Id"]


@pytest.mark.parametrize(("raw", "status", "reason", "path"), [
    (b"POST /a?marker=http10-te HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400,
     "chunked_http10", "/a?marker=…"),
    (b"GET http://other.test/a?marker=absolute HTTP/1.1\r\nHost: h\r\n\r\n", 400, "target_not_origin_form",
     "http://other.test/a?marker=…"),
    (b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 400, "target_not_origin_form", "*"),
    (b"CONNECT shop.example.test:443 HTTP/1.1\r\nHost: shop.example.test:443\r\n\r\n", 405, "method_connect",
     "shop.example.test:443"),
    (b"POST /a?marker=compress HTTP/1.1\r\nHost: h\r\nContent-Encoding: compress\r\nContent-Length: 3\r\n\r\nabc", 415,
     "unsupported_coding", "/a?marker=…"),
    (b"GET /a?marker=latin1 HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9\r\n\r\n", 400, "header_not_utf8", "/a?marker=…"),
    (b"GET /a?marker=expect HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", 417, "bad_expect", "/a?marker=…"),
    (b"POST /a?marker=badgzip HTTP/1.1\r\nHost: h\r\nContent-Encoding: gzip\r\nContent-Length: 10\r\n\r\nnot gzip!!", 400,
     "body_unreadable", "/a?marker=…"),
    (b"GET /a?marker=badline HTTP/1.1\r\nHost: h\r\nX-Bad\x01Name: 1\r\n\r\n", 400, "malformed_request", ""),
], ids=["HTTP/1.0 with TE", "absolute-form", "asterisk-form", "CONNECT", "unknown coding", "header not UTF-8",
        "odd Expect", "not gzip", "bad header name"])
def test_what_cannot_be_forwarded_faithfully_is_refused_and_recorded(waf: Running, upstream: Upstream, raw: bytes,
                                                                     status: int, reason: str, path: str) -> None:
    reply = exchange(waf.port, raw)
    assert reply.status == status
    assert not any(m in r["target"] for r in upstream.seen
                   for m in ("http10-te", "absolute", "compress", "latin1", "badgzip", "badline"))
    event = waf.refusal(reply)
    assert (event["reason"], event["path"]) == (reason, path)
    assert "not gzip" not in json.dumps(event)   # never the body


def test_a_body_that_breaks_off_mid_chunk_is_never_forwarded(start: Callable[..., Running], upstream: Upstream) -> None:
    """The chunk framing goes wrong after the handler started reading. aiohttp's pure-Python parser hands the
    handler the error (400); with llhttp the read just never completes, so the body read timeout ends it (408)."""
    quick = start(timeout=0.5)
    with socket.create_connection(("127.0.0.1", quick.port), timeout=10) as sock:
        sock.sendall(request_bytes("POST", "/a?marker=late-bad-chunk", [*BASE, ("Transfer-Encoding", "chunked")],
                                   b"3\r\nabc\r\n"))
        time.sleep(0.2)
        sock.sendall(b"zz\r\nxx\r\n0\r\n\r\n")
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
        assert response.status in (400, 408)
        reply = Reply(response.status, response.getheaders(), response.read())
    assert not upstream.saw("late-bad-chunk")
    assert quick.refusal(reply)["reason"] == ("body_unreadable" if reply.status == 400 else "body_timeout")


def test_a_declared_body_over_the_limit_is_refused_unread(waf: Running) -> None:
    with socket.create_connection(("127.0.0.1", waf.port), timeout=10) as sock:
        sock.sendall(request_bytes("POST", "/upload?marker=too-big", [*BASE, ("Content-Length", "10000000"),
                                                                      ("Expect", "100-continue")]))
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()   # answered from the headers alone: no 100 Continue, no body sent
        assert response.status == 413 and response.getheader("Connection") == "close"
        reply = Reply(response.status, response.getheaders(), response.read())
    assert (waf.refusal(reply)["reason"], waf.refusal(reply)["path"]) == ("body_too_large", "/upload?marker=…")


def test_a_chunked_body_over_the_limit_is_refused(waf: Running, upstream: Upstream) -> None:
    raw = request_bytes("POST", "/upload?marker=too-big-chunked", [*BASE, ("Transfer-Encoding", "chunked")],
                        chunked(*[b"x" * 16384] * 5))
    reply = exchange(waf.port, raw, "POST")
    assert reply.status == 413
    assert not upstream.saw("too-big-chunked")
    assert waf.refusal(reply)["reason"] == "body_too_large"


def test_an_unreachable_upstream_is_502_and_a_slow_one_504(start: Callable[..., Running]) -> None:
    with socket.socket() as probe:   # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    down = start(to=f"http://127.0.0.1:{closed}")
    reply = send(down.port, "GET", "/products?id=42")
    assert reply.status == 502 and reply.header("X-Request-Id")
    slow = start(timeout=0.5)
    assert send(slow.port, "GET", "/slow?marker=slow").status == 504

# ------------------------------------------------------------------------------------------ resource limits


class _Bytes:
    """A finished answer's bytes where http.client expects a socket."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.data)


def _head(sock: socket.socket) -> bytes:
    """An answer's status line and headers, read byte by byte (an interim 100 Continue is followed by more)."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"the proxy closed the connection after {data!r}"
        data += byte
    return data


def _final(sock: socket.socket, head: bytes, method: str = "POST") -> Reply:
    """The rest of a final answer whose head was read already (the proxy closes after a refusal)."""
    rest = b""
    while chunk := sock.recv(65536):
        rest += chunk
    response = http.client.HTTPResponse(_Bytes(head + rest), method=method)  # type: ignore[arg-type]
    response.begin()
    return Reply(response.status, response.getheaders(), response.read())


def _announce(port: int, length: int, marker: str) -> tuple[socket.socket, bytes]:
    """A POST that declares ``length`` bytes and waits (Expect: 100-continue): the proxy answers 100 once it
    has reserved the body's room, or refuses at once."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(request_bytes("POST", f"/upload?marker={marker}", [
        *BASE, ("Content-Type", "application/octet-stream"), ("Content-Length", str(length)),
        ("Expect", "100-continue"), ("Connection", "close")]))
    return sock, _head(sock)


def _until(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_bodies_in_flight_share_one_buffer_and_the_rest_wait_outside(start: Callable[..., Running],
                                                                     upstream: Upstream) -> None:
    """Eight uploads of 30,000 bytes announce themselves at once against a buffer of 100,000: three are let in
    (their room reserved before a byte is read), five are refused with 503 and Retry-After, each an event.
    The three finish; their room is given back and the next upload gets in."""
    limited = start(max_body_bytes=65536, max_buffered_bytes=100_000)
    announced = [_announce(limited.port, 30_000, f"buffered-{i}") for i in range(8)]
    try:
        admitted = [(sock, i) for i, (sock, head) in enumerate(announced) if head.startswith(b"HTTP/1.1 100 ")]
        refused = [_final(sock, head) for sock, head in announced if not head.startswith(b"HTTP/1.1 100 ")]
        assert [i for _, i in admitted] == [0, 1, 2] and len(refused) == 5
        assert limited.proxy.budget.held == 90_000
        for reply in refused:
            assert (reply.status, reply.header("Retry-After"), reply.header("Connection")) == (503, "5", "close")
            assert limited.refusal(reply)["reason"] == "buffer_full"
        for sock, i in admitted:
            sock.sendall(bytes([i]) * 30_000)
            reply = _final(sock, _head(sock))
            assert reply.status == 200 and base64.b64decode(reply.echoed()["body"]) == bytes([i]) * 30_000
    finally:
        for sock, _ in announced:
            sock.close()
    assert [upstream.saw(f"buffered-{i}") for i in range(8)] == [True] * 3 + [False] * 5
    _until(lambda: limited.proxy.budget.held == 0, "the room of finished bodies was never given back")
    assert send(limited.port, "POST", "/upload?marker=buffered-after", [("Content-Type", "application/octet-stream")],
                b"z" * 30_000).status == 200


def test_a_chunked_body_is_refused_when_its_growth_finds_no_room(start: Callable[..., Running],
                                                                upstream: Upstream) -> None:
    limited = start(max_body_bytes=65536, max_buffered_bytes=100_000)
    holder, head = _announce(limited.port, 60_000, "holder")
    try:
        assert head.startswith(b"HTTP/1.1 100 ")
        raw = request_bytes("POST", "/upload?marker=grows", [*BASE, ("Transfer-Encoding", "chunked")],
                            chunked(*[b"g" * 10_000] * 5))
        reply = exchange(limited.port, raw, "POST", timeout=30)
        assert reply.status == 503 and reply.header("Retry-After") == "5"
        assert limited.refusal(reply)["reason"] == "buffer_full" and not upstream.saw("grows")
        holder.sendall(b"h" * 60_000)
        assert _final(holder, _head(holder)).status == 200
    finally:
        holder.close()


def _slow_upload(port: int, marker: str, results: list[Reply]) -> None:
    """Declares 1,000 bytes and sends one every 50 ms (50 s in all) until the proxy answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request_bytes("POST", f"/upload?marker={marker}", [*BASE, ("Content-Length", "1000")]))
        answered = threading.Event()

        def drip() -> None:
            for _ in range(1000):
                if answered.wait(0.05):
                    return
                try:
                    sock.send(b"s")
                except OSError:
                    return

        dripping = threading.Thread(target=drip, daemon=True)
        dripping.start()
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
        answered.set()
        results.append(Reply(response.status, response.getheaders(), response.read()))
        dripping.join(10)


def test_slow_senders_get_408_at_the_body_deadline_while_others_are_served(start: Callable[..., Running],
                                                                           upstream: Upstream) -> None:
    """Each read of the slow bodies succeeds well within the per-read timeout (30 s): only the deadline for the
    whole body (1 s) ends them."""
    deadline = start(body_timeout=1, timeout=30)
    results: list[Reply] = []
    slow = [threading.Thread(target=_slow_upload, args=(deadline.port, f"slow-{i}", results)) for i in range(3)]
    for thread in slow:
        thread.start()
    honest = [send(deadline.port, "POST", f"/upload?marker=quick-{i}", [("Content-Type", "application/json")],
                   b'{"note": "ring twice"}') for i in range(3)]
    for thread in slow:
        thread.join(60)
    assert [r.status for r in honest] == [200] * 3
    assert [r.status for r in results] == [408] * 3
    assert [deadline.refusal(r)["reason"] for r in results] == ["body_timeout"] * 3
    assert not any(upstream.saw(f"slow-{i}") for i in range(3))
    assert deadline.proxy.budget.held == 0


def test_a_client_slow_with_its_headers_is_cut_off_unanswered(start: Callable[..., Running]) -> None:
    """aiohttp has no header timeout; its keep-alive timer ([waf] header_timeout) closes a connection whose
    request head has not arrived whole, however busy the client is sending it."""
    quick = start(header_timeout=1)
    with socket.create_connection(("127.0.0.1", quick.port), timeout=30) as sock:
        sock.sendall(b"GET /a?marker=slow-headers HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nX-Slow: ")
        received = None
        for _ in range(600):   # up to a minute of one byte every 100 ms
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                try:
                    received = sock.recv(100)
                except ConnectionResetError:
                    received = b""
                break
            try:
                sock.send(b"x")
            except OSError:
                received = b""
                break
        assert received == b"", f"the proxy answered {received!r} instead of closing"
    assert not [e for e in quick.events_read() if "slow-headers" in e["path"]]

# ------------------------------------------------------------------------------ modes and client addresses


def test_a_failing_engine_refuses_in_blocking_mode_and_passes_in_detection_only(
        start: Callable[..., Running], upstream: Upstream, caplog: pytest.LogCaptureFixture) -> None:
    broken = Engine(text=assemble(WafSettings()))
    broken.close()   # every inspection now raises
    blocking, detecting = start(engine=broken), start(engine=broken, mode="detect")
    refused = send(blocking.port, "GET", "/products?id=42&marker=engine-down-block")
    assert refused.status == 500 and blocking.refusal(refused)["reason"] == "inspection_failed"
    assert not upstream.saw("engine-down-block")
    assert send(detecting.port, "GET", "/products?id=42&marker=engine-down-detect").status == 200
    assert upstream.saw("engine-down-detect")
    assert "could not inspect" in caplog.text


def test_detection_only_forwards_the_attack_and_records_it(start: Callable[..., Running], upstream: Upstream) -> None:
    detect = start(engine="detect")
    target = SQLI.replace("sqli-in-query", "sqli-detect")
    reply = send(detect.port, "GET", target)
    assert reply.status == 200 and upstream.last("sqli-detect")["target"] == target
    [event] = detect.events_read()
    assert event["action"] == "detected" and 942100 in [r["id"] for r in event["rules"]]
    assert dict(reply.echoed()["headers"])["X-Request-Id"] == event["request_id"]


def test_forwarded_for_from_an_untrusted_peer_is_not_believed(waf: Running, upstream: Upstream,
                                                              start: Callable[..., Running]) -> None:
    spoofed = [("X-Forwarded-For", "198.51.100.7")]
    reply = send(waf.port, "GET", SQLI, spoofed)
    [event] = [e for e in waf.events_read() if e["request_id"] == reply.header("X-Request-Id")]
    assert event["client"] == "127.0.0.1"
    honest = send(waf.port, "GET", "/products?id=42&marker=xff", spoofed)
    assert dict(honest.echoed()["headers"])["X-Forwarded-For"] == "198.51.100.7, 127.0.0.1"
    # from a configured proxy the same header is believed
    behind = start(trusted_proxies=("127.0.0.1/32",))
    reply = send(behind.port, "GET", SQLI, [*spoofed, ("X-Forwarded-Proto", "https")])
    [event] = behind.events_read()
    assert event["client"] == "198.51.100.7" and reply.status == 403
    honest = send(behind.port, "GET", "/products?id=42&marker=xff-trusted", [*spoofed, ("X-Forwarded-Proto", "https")])
    assert dict(honest.echoed()["headers"])["X-Forwarded-Proto"] == "https"

# ------------------------------------------------------------------------------------------- small parts


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:0", ("::1", 0)), ("localhost:80", ("127.0.0.1", 80)),
    ("192.0.2.10:443", ("192.0.2.10", 443))])
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8080", ":8080", "127.0.0.1", "shop.example.test:80", "::1:80", "127.0.0.1:70000",
                                  "127.0.0.1:http"])
def test_unusable_listen_addresses(text: str) -> None:
    with pytest.raises(ProxyError):
        parse_listen(text)


def test_upstream_urls() -> None:
    assert parse_upstream("http://127.0.0.1:8080/app/").url("/x?a=%2F").raw_path_qs == "/app/x?a=%2F"
    assert parse_upstream("https://[2001:db8::1]").origin == "https://[2001:db8::1]"
    for bad in ("ftp://h", "127.0.0.1:80", "http://u:p@h", "http://h/?q=1", "http://h:99999", "http://"):
        with pytest.raises(ProxyError):
            parse_upstream(bad)


def test_forwarded_headers_keep_order_and_replace_what_the_proxy_sets() -> None:
    out = forward_headers([("Host", "a.test"), ("Connection", "close, X-Drop, Content-Type"), ("X-Drop", "1"),
                           ("Content-Type", "application/json"), ("Content-Length", "99"),
                           ("Content-Encoding", "gzip"), ("X-Forwarded-For", "192.0.2.1"), ("Proxy-Foo", "1")],
                          body_length=12, decoded=True, peer="198.51.100.2", scheme="http", request_id="r1",
                          peer_trusted=False)
    assert out == [("Host", "a.test"), ("Content-Type", "application/json"), ("Content-Length", "12"),
                   ("X-Forwarded-For", "192.0.2.1, 198.51.100.2"), ("X-Forwarded-Proto", "http"),
                   ("X-Forwarded-Host", "a.test"), ("X-Request-Id", "r1")]
    assert response_headers([(b"Connection", b"X-A"), (b"X-A", b"1"), (b"ETag", b'"x"'),
                             (b"Transfer-Encoding", b"chunked")]) == [("ETag", '"x"')]

# ---------------------------------------------------------------------------------------- the command line


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hostguard.cli", *args]


@pytest.mark.parametrize("parser", ["llhttp", "pure-python"])
def test_the_command_serves_until_sigterm(tmp_path: Path, upstream: Upstream, parser: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _need_library()
    config = tmp_path / "hostguard.toml"
    config.write_text("[waf]\nblock_status = 403\n[waf.sites.cli]\nblock_status = 406\n")   # the site's own
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if parser == "pure-python":
        env["AIOHTTP_NO_EXTENSIONS"] = "1"
    process = subprocess.Popen(_cli("--config", str(config), "--state", str(state), "waf", "proxy", "--listen",
                                    "127.0.0.1:0", "--upstream", upstream.url, "--site", "cli"),
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        ready = re.search(r"listening on http://127\.0\.0\.1:(\d+) ", line)
        assert ready, line
        port = int(ready.group(1))
        assert send(port, "GET", f"/products?id=42&marker=cli-{parser}").status == 200
        blocked = send(port, "GET", SQLI.replace("sqli-in-query", f"sqli-cli-{parser}"))
        assert blocked.status == 406 and not upstream.saw(f"sqli-cli-{parser}")
        for case in ("CL then TE", "TE then CL", "CL and TE identity", "two CL headers", "TE not ending in chunked"):
            assert _smuggle(port, case) == 400, case
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        rest = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert rest.splitlines() == ["hostguard: waf proxy stopped"]   # malformed requests are not worth a line
    events = [json.loads(x) for x in (state / "waf-events.jsonl").read_text().splitlines()]
    # the framings aiohttp's parser refused are events too (what either parser says of the others differs)
    assert [(e["site"], e["action"], e["status"], e["client"]) for e in events] == [
        ("cli", "blocked", 406, "127.0.0.1"), *[("cli", "refused", 400, "127.0.0.1")] * 5]
    assert events[0]["request_id"] == blocked.header("X-Request-Id")
    assert [e["reason"] for e in events[1:3]] == ["length_and_chunked"] * 2
    assert {e["reason"] for e in events[3:]} <= {"length_and_chunked", "malformed_request"}
    # and `waf report` counts them, by action and by reason
    assert main(["--config", str(config), "--state", str(state), "waf", "report", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["events"], report["actions"], report["sites"]) == (6, {"blocked": 1, "refused": 5}, {"cli": 6})
    assert sum(report["refused"].values()) == 5 and report["refused"]["length_and_chunked"] >= 2


@pytest.fixture(autouse=True)
def _no_log_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs of the command must not leave a handler on a stderr that pytest closes afterwards."""
    monkeypatch.setattr("hostguard.waf.proxy.log_to", lambda *a, **k: None)


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hostguard: error: "), err
    return err


@pytest.mark.parametrize(("args", "message"), [
    (["--listen", "127.0.0.1", "--upstream", "http://127.0.0.1:9"], "HOST:PORT"),
    (["--listen", "shop.example.test:8080", "--upstream", "http://127.0.0.1:9"], "IP address or localhost"),
    (["--listen", "127.0.0.1:0", "--upstream", "ftp://127.0.0.1/"], "http://HOST"),
    (["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:8080"], "http://HOST"),
    (["--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9", "--site", "a b"], "--site"),
    (["--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9", "--timeout", "0"], "--timeout"),
    (["--upstream", "http://127.0.0.1:9"], "--listen"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               args: list[str], message: str) -> None:
    assert message in _one_error(capsys, ["--state", str(tmp_path), "waf", "proxy", *args])


def test_a_missing_library_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "LIBRARY", "libmodsecurity-not-here.so.9")
    monkeypatch.setattr(engine_mod._Lib, "_instance", None)
    err = _one_error(capsys, ["--state", str(tmp_path), "waf", "proxy", "--listen", "127.0.0.1:0",
                              "--upstream", "http://127.0.0.1:9"])
    assert "libmodsecurity-not-here.so.9 cannot be loaded" in err


def test_an_address_in_use_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _need_library()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = _one_error(capsys, ["--state", str(tmp_path), "waf", "proxy", "--listen", f"127.0.0.1:{port}",
                                  "--upstream", "http://127.0.0.1:9"])
    assert f"127.0.0.1:{port}" in err and "in use" in err


def test_a_client_that_stops_reading_the_answer_is_cut_off_and_its_body_share_given_back(
        start: Callable[..., Running]) -> None:
    """A client that uploads and then never reads the answer must not hold its body's share of
    max_buffered_bytes and an upstream connection as long as it likes: the answer stalls (the proxy's writes,
    then its reads from the upstream), and past ``timeout`` the proxy closes the connection and gives the room
    back. (Either timeout ends it: the write's own, or the upstream read's, which the stall reaches first.)"""
    slow = start(max_body_bytes=65536, max_buffered_bytes=100_000, timeout=1.0)
    sock = socket.create_connection(("127.0.0.1", slow.port), timeout=60)
    try:
        sock.sendall(request_bytes("POST", "/huge?marker=stalled", [("Content-Type", "application/octet-stream")],
                                   b"q" * 30_000))
        _until(lambda: slow.proxy.budget.held == 0, "a client that stopped reading kept its room", seconds=60)
        received = 0
        while True:   # what was sent before the cut, then the end of the connection
            try:
                data = sock.recv(1 << 20)
            except ConnectionResetError:
                break
            if not data:
                break
            received += len(data)
        assert 0 < received < HUGE   # an answer begun, never finished
    finally:
        sock.close()
