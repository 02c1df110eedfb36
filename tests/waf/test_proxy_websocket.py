"""WebSockets through the WAF proxy, all real parts on loopback: an aiohttp application with WebSocket routes (a
chat echo speaking the subprotocols chat.v2 and chat.v1, which also closes with its own code, pings, and sends
more than the limit on request; a route refusing the upgrade with 403, one redirecting it) behind the real
Proxy, and aiohttp's client, or a raw socket, as the browser.

Each case asserts what crossed the proxy: the frames and close codes each side received, the handshake the
application saw, the status and event of every refusal, never a time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

aiohttp = pytest.importorskip("aiohttp", reason="the WAF proxy needs aiohttp (pip install 'hostguard[waf]')")

from aiohttp import WSMsgType, web  # noqa: E402

from hostguard.waf.config import WafConfig, WafSite  # noqa: E402
from hostguard.waf.engine import Engine  # noqa: E402
from hostguard.waf.gate import Gate  # noqa: E402
from hostguard.waf.proxy import Proxy, parse_upstream  # noqa: E402
from hostguard.waf.ruleset import WafSettings, assemble  # noqa: E402
from hostguard.waf.websocket import closeable, handshake_headers, is_upgrade, offered_protocols  # noqa: E402
from tests.waf.test_engine import _need_library  # noqa: E402
from tests.waf.test_proxy import Loop, _until  # noqa: E402
from tests.waf.test_proxy import Reply as Answer  # noqa: E402

HOST = "chat.example.test"
LIMIT = 65536                  # the chat site's websocket_max_message_bytes
APP_BIG = 2 * 1024 * 1024      # what the application sends on "big please": over the site's limit
SQLI = "/ws/chat?id=1%27%20OR%20%271%27%3D%271&marker=ws-sqli"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
CLIENT_HEADERS = {"Host": HOST, "Cookie": "session=abc; theme=dark", "Authorization": "Bearer t0ken-7",
                  "Origin": "https://chat.example.test", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}

# --------------------------------------------------------------------------------------------- the application


@dataclass
class App:
    """The application behind the proxy, and what it saw: every handshake (target, headers, subprotocol), every
    frame (route marker, type, data) and how each WebSocket ended for it (close code, reason)."""

    url: str = ""
    handshakes: list[dict[str, Any]] = field(default_factory=list)
    frames: list[tuple[str, str, Any]] = field(default_factory=list)
    closes: list[tuple[str, int | None, str]] = field(default_factory=list)

    def handshake(self, marker: str) -> dict[str, Any]:
        found = [h for h in self.handshakes if marker in h["target"]]
        assert found, f"the application never saw a handshake for {marker}"
        return found[-1]

    def saw(self, marker: str) -> bool:
        return any(marker in h["target"] for h in self.handshakes)

    def closed(self, marker: str) -> tuple[int | None, str] | None:
        return next(((code, reason) for m, code, reason in self.closes if m == marker), None)


def application(app: App) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        marker = request.query.get("marker", "")
        ws = web.WebSocketResponse(protocols=("chat.v2", "chat.v1"), autoping=False, max_msg_size=4 * APP_BIG)
        ws.headers["Set-Cookie"] = "room=7; Path=/ws"
        app.handshakes.append({"target": request.path_qs, "headers": list(request.headers.items()),
                               "protocol": ws.can_prepare(request).protocol})
        await ws.prepare(request)
        while True:
            msg = await ws.receive()
            app.frames.append((marker, msg.type.name, msg.data))
            if msg.type is WSMsgType.TEXT:
                if msg.data == "close please":
                    await ws.close(code=4002, message=b"done")
                    app.closes.append((marker, 4002, "done"))
                    break
                if msg.data == "ping please":
                    await ws.ping(b"from-app")
                elif msg.data == "big please":
                    await ws.send_bytes(b"b" * APP_BIG)
                else:
                    await ws.send_str("echo:" + msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
            elif msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.CLOSE:
                app.closes.append((marker, msg.data, msg.extra or ""))
                break
            elif msg.type is not WSMsgType.PONG:
                app.closes.append((marker, ws.close_code, str(msg.data)))
                break
        return ws

    async def refused(request: web.Request) -> web.Response:
        app.handshakes.append({"target": request.path_qs, "headers": list(request.headers.items())})
        return web.Response(status=403, text="no session for this room\n", headers={"X-App-Reason": "login"})

    async def moved(request: web.Request) -> web.Response:
        app.handshakes.append({"target": request.path_qs, "headers": list(request.headers.items())})
        return web.Response(status=302, headers={"Location": "/ws/chat?marker=followed"})

    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="plain http\n")

    web_app = web.Application()
    web_app.router.add_get("/ws/chat", chat)
    web_app.router.add_get("/ws/refused", refused)
    web_app.router.add_get("/ws/moved", moved)
    web_app.router.add_get("/plain", plain)
    return web_app


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


@pytest.fixture(scope="module")
def app(loop: Loop) -> Iterator[App]:
    seen = App()
    runner = web.AppRunner(application(seen), access_log=None)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    seen.url = f"http://127.0.0.1:{loop.run(start())}"
    yield seen
    loop.run(runner.cleanup())

# ------------------------------------------------------------------------------------------------ the proxies


@dataclass
class Running:
    port: int
    events: Path
    proxy: Proxy

    def url(self, target: str) -> URL:
        return URL(f"http://127.0.0.1:{self.port}{target}", encoded=True)

    def event(self, request_id: str | None) -> dict[str, Any]:
        assert request_id
        [event] = [e for e in map(json.loads, self.events.read_text().splitlines()) if e["request_id"] == request_id]
        assert event["site"] == "chat" and event["client"] == "127.0.0.1"
        return dict(event)


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, Engine]]:
    _need_library()
    loaded = {"block": Engine(text=assemble(WafSettings())), "detect": Engine(text=assemble(WafSettings(mode="detect")))}
    yield loaded
    for engine in loaded.values():
        engine.close()


@pytest.fixture(scope="module")
def start(loop: Loop, app: App, engines: dict[str, Engine], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Callable[..., Running]]:
    """``start(engine="block", to=URL, site=WafSite(...), **[waf] settings)``: a proxy for site "chat" (its
    WebSocket messages limited to 64 KiB) on 127.0.0.1, port 0."""
    proxies: list[Proxy] = []

    def start_one(engine: str = "block", to: str | None = None, site: WafSite | None = None,
                  **settings: Any) -> Running:
        events = tmp_path_factory.mktemp("events") / "waf-events.jsonl"
        if engine == "detect":
            settings["mode"] = "detect"
        config = WafConfig(**settings, sites={"chat": site or WafSite(websocket_max_message_bytes=LIMIT)})
        proxy = Proxy(Gate(config, str(events), site="chat", engine=engines[engine]), parse_upstream(to or app.url),
                      timeout=10.0, connect_timeout=2.0)
        _, port = loop.run(proxy.start("127.0.0.1", 0))
        proxies.append(proxy)
        return Running(port, events, proxy)

    yield start_one
    for proxy in proxies:
        loop.run(proxy.stop())


@pytest.fixture(scope="module")
def waf(start: Callable[..., Running]) -> Running:
    return start()

# ---------------------------------------------------------------------------------------------------- clients


def run(client: Callable[[aiohttp.ClientSession], Awaitable[Any]]) -> Any:
    """Run one client coroutine in this thread with its own session (the proxies run on the loop thread)."""
    async def main() -> Any:
        async with aiohttp.ClientSession() as session:
            return await client(session)
    return asyncio.run(main())


def connect(session: aiohttp.ClientSession, proxy: Running, target: str,
            **kwargs: Any) -> Any:
    """A browser's WebSocket to ``target`` through the proxy (subprotocols chat.v3 then chat.v2 offered)."""
    return session.ws_connect(proxy.url(target), protocols=("chat.v3", "chat.v2"), headers=CLIENT_HEADERS,
                              autoping=False, **kwargs)


def raw_handshake(port: int, target: str, extra: tuple[tuple[str, str], ...] = (), key: str | None = KEY,
                  body: bytes = b"") -> Answer:
    """A handshake written by hand on a socket; the answer's head (and, unless it is a 101, its body) read by
    http.client."""
    headers = [("Host", HOST), ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
               *([("Sec-WebSocket-Key", key)] if key else []), *extra]
    head = f"GET {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        response = http.client.HTTPResponse(sock, method="GET")
        response.begin()
        payload = b"" if response.status == 101 else response.read()
        return Answer(response.status, response.getheaders(), payload)

# ----------------------------------------------------------------------------------------------- relayed frames


def test_text_binary_ping_pong_and_the_subprotocol_cross_both_ways(waf: Running, app: App) -> None:
    async def client(session: aiohttp.ClientSession) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with connect(session, waf, "/ws/chat?room=7&marker=frames") as ws:
            seen["protocol"] = ws.protocol
            await ws.send_str("hello, room 7")
            seen["text"] = await ws.receive()
            await ws.send_bytes(bytes(range(256)) * 4)
            seen["binary"] = await ws.receive()
            await ws.ping(b"from-client")
            seen["pong"] = await ws.receive()
            await ws.send_str("ping please")
            seen["ping"] = await ws.receive()
            await ws.pong(seen["ping"].data)
            await ws.send_bytes(b"x" * LIMIT)   # exactly the limit passes, both ways
            seen["at_limit"] = await ws.receive()
        return seen

    seen = run(client)
    assert seen["protocol"] == "chat.v2"   # the application's choice among the client's offers
    assert (seen["text"].type, seen["text"].data) == (WSMsgType.TEXT, "echo:hello, room 7")
    assert (seen["binary"].type, seen["binary"].data) == (WSMsgType.BINARY, bytes(range(256)) * 4)
    assert (seen["pong"].type, seen["pong"].data) == (WSMsgType.PONG, b"from-client")
    assert (seen["ping"].type, seen["ping"].data) == (WSMsgType.PING, b"from-app")
    assert seen["at_limit"].data == b"x" * LIMIT
    _until(lambda: app.closed("frames") is not None, "the application saw the close")
    frames = [(kind, data) for marker, kind, data in app.frames if marker == "frames"]
    assert ("PING", b"from-client") in frames and ("PONG", b"from-app") in frames
    assert app.closed("frames") == (1000, "")


def test_the_application_gets_the_clients_headers_and_the_proxys(waf: Running, app: App) -> None:
    async def client(session: aiohttp.ClientSession) -> None:
        async with connect(session, waf, "/ws/chat?room=7&marker=headers") as ws:
            await ws.send_str("hi")
            await ws.receive()

    run(client)
    handshake = app.handshake("marker=headers")
    assert handshake["target"] == "/ws/chat?room=7&marker=headers" and handshake["protocol"] == "chat.v2"
    headers = {n.lower(): v for n, v in handshake["headers"]}
    for name in ("Host", "Cookie", "Authorization", "Origin", "User-Agent"):
        assert headers[name.lower()] == CLIENT_HEADERS[name], name
    assert headers["sec-websocket-protocol"] == "chat.v3,chat.v2"
    assert (headers["x-forwarded-for"], headers["x-forwarded-proto"], headers["x-forwarded-host"]) == (
        "127.0.0.1", "http", HOST)
    assert len(headers["x-request-id"]) == 16
    assert [n.lower() for n, _ in handshake["headers"]].count("sec-websocket-key") == 1   # the proxy's own


def test_the_clients_101_is_a_real_handshake_with_the_applications_cookie(waf: Running) -> None:
    answer = raw_handshake(waf.port, "/ws/chat?marker=raw-101", (("Sec-WebSocket-Protocol", "chat.v1"),))
    assert answer.status == 101
    accept = base64.b64encode(hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    assert answer.header("Sec-WebSocket-Accept") == accept.decode()
    assert answer.header("Sec-WebSocket-Protocol") == "chat.v1"
    assert answer.header("Set-Cookie") == "room=7; Path=/ws"


def test_a_close_code_and_reason_pass_both_ways(waf: Running, app: App) -> None:
    async def client_closes(session: aiohttp.ClientSession) -> int | None:
        async with connect(session, waf, "/ws/chat?marker=client-closes") as ws:
            await ws.send_str("hi")
            await ws.receive()
            await ws.close(code=4001, message=b"leaving the room")
            return ws.close_code

    async def application_closes(session: aiohttp.ClientSession) -> tuple[Any, Any, Any]:
        async with connect(session, waf, "/ws/chat?marker=app-closes") as ws:
            await ws.send_str("close please")
            msg = await ws.receive()
            return msg.type, msg.data, msg.extra

    # the client's code and reason reach the application; the application's answer (aiohttp answers 1000
    # rather than echoing) comes back to the client
    assert run(client_closes) == 1000
    _until(lambda: app.closed("client-closes") is not None, "the application saw the close")
    assert app.closed("client-closes") == (4001, "leaving the room")
    assert run(application_closes) == (WSMsgType.CLOSE, 4002, "done")

# --------------------------------------------------------------------------------------- the handshake judged


def test_an_attack_in_the_handshake_is_refused_with_an_event_and_never_reaches_the_application(
        waf: Running, app: App) -> None:
    async def client(session: aiohttp.ClientSession) -> aiohttp.WSServerHandshakeError:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await connect(session, waf, SQLI)
        return refused.value

    refused = run(client)
    assert refused.status == 403 and refused.headers is not None
    event = waf.event(refused.headers.get("X-Request-Id"))
    assert (event["action"], event["status"], event["method"]) == ("blocked", 403, "GET")
    assert 942100 in [r["id"] for r in event["rules"]]
    assert not app.saw("ws-sqli")


def test_detection_only_lets_the_attack_handshake_through_and_records_it(start: Callable[..., Running],
                                                                         app: App) -> None:
    detect = start(engine="detect")

    async def client(session: aiohttp.ClientSession) -> str:
        async with connect(session, detect, SQLI.replace("ws-sqli", "ws-sqli-detect")) as ws:
            await ws.send_str("still here")
            return str((await ws.receive()).data)

    assert run(client) == "echo:still here"
    request_id = {n.lower(): v for n, v in app.handshake("ws-sqli-detect")["headers"]}["x-request-id"]
    event = detect.event(request_id)
    assert event["action"] == "detected" and 942100 in [r["id"] for r in event["rules"]]


@pytest.mark.parametrize(("case", "extra", "key", "body"), [
    ("no key", (), None, b""),
    ("a key that is not 16 bytes", (), "c2hvcnQ=", b""),
    ("a body", (("Content-Length", "5"),), KEY, b"hello"),
    ("upgrade without Connection: upgrade", (), KEY, b""),
])
def test_a_handshake_the_proxy_cannot_relay_is_refused_with_an_event(waf: Running, app: App, case: str,
                                                                      extra: tuple[tuple[str, str], ...],
                                                                      key: str | None, body: bytes) -> None:
    marker = "bad-" + case.replace(" ", "-").replace(":", "")
    if case.startswith("upgrade without"):
        head = (f"GET /ws/chat?marker={marker} HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n")
        with socket.create_connection(("127.0.0.1", waf.port), timeout=10) as sock:
            sock.sendall(head.encode())
            response = http.client.HTTPResponse(sock, method="GET")
            response.begin()
            answer = Answer(response.status, response.getheaders(), response.read())
    else:
        answer = raw_handshake(waf.port, f"/ws/chat?marker={marker}", extra, key, body)
    assert answer.status == 400, case
    event = waf.event(answer.header("X-Request-Id"))
    assert (event["action"], event["reason"], event["status"]) == ("refused", "websocket_handshake", 400)
    assert not app.saw(marker)

# ----------------------------------------------------------------------------------------------------- limits


def test_a_message_over_the_sites_limit_closes_the_websocket_with_1009(waf: Running, app: App,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hostguard.waf.proxy")

    async def client(session: aiohttp.ClientSession) -> tuple[Any, Any]:
        async with connect(session, waf, "/ws/chat?marker=too-big") as ws:
            await ws.send_bytes(b"z" * (LIMIT + 1))
            msg = await ws.receive()
            return msg.type, msg.data

    assert run(client) == (WSMsgType.CLOSE, 1009)
    _until(lambda: app.closed("too-big") is not None, "the application saw the close")
    assert app.closed("too-big") == (1001, "client gone")
    assert not [f for f in app.frames if f[0] == "too-big" and f[1] == "BINARY"]   # never relayed
    said = (logging.INFO, f"WebSocket /ws/chat: the client's side failed: a message larger than "
                          f"websocket_max_message_bytes ({LIMIT})")
    _until(lambda: said in [(r.levelno, r.getMessage()) for r in caplog.records], "the proxy's log line")


def test_a_client_breaking_the_protocol_or_leaving_ends_the_applications_side_too(waf: Running, app: App) -> None:
    """Text that is not UTF-8 is closed by aiohttp with 1007 and never relayed; a client that drops its
    connection without a close frame leaves no WebSocket behind: the application gets 1001 either way."""
    async def client(session: aiohttp.ClientSession) -> tuple[Any, Any]:
        async with connect(session, waf, "/ws/chat?marker=not-utf8") as ws:
            await ws.send_frame(b"caf\xe9", WSMsgType.TEXT)
            msg = await ws.receive()
            return msg.type, msg.data

    assert run(client) == (WSMsgType.CLOSE, 1007)
    assert raw_handshake(waf.port, "/ws/chat?marker=dropped").status == 101   # then the socket is closed
    _until(lambda: None not in (app.closed("not-utf8"), app.closed("dropped")), "the application saw both ends")
    assert app.closed("not-utf8") == app.closed("dropped") == (1001, "client gone")
    assert not [f for f in app.frames if f[0] == "not-utf8" and f[1] == "TEXT"]
    _until(lambda: waf.proxy.websockets == 0, "every WebSocket's room given back")


def test_a_message_over_the_limit_from_the_application_closes_the_client_with_1011(
        waf: Running, app: App, caplog: pytest.LogCaptureFixture) -> None:
    async def client(session: aiohttp.ClientSession) -> tuple[Any, Any]:
        async with connect(session, waf, "/ws/chat?marker=app-too-big") as ws:
            await ws.send_str("big please")
            msg = await ws.receive()
            return msg.type, msg.data

    assert run(client) == (WSMsgType.CLOSE, 1011)
    _until(lambda: app.closed("app-too-big") is not None, "the application saw the close")
    assert app.closed("app-too-big")[0] == 1009   # type: ignore[index]
    said = (logging.WARNING, f"WebSocket /ws/chat: the application's side failed: a message larger than "
                             f"websocket_max_message_bytes ({LIMIT})")
    _until(lambda: said in [(r.levelno, r.getMessage()) for r in caplog.records], "the proxy's log line")


def test_the_limit_is_the_sites(start: Callable[..., Running]) -> None:
    """The same message the chat site refuses passes on a site that allows more (here [waf]'s default, 1 MiB)."""
    roomy = start(site=WafSite())

    async def client(session: aiohttp.ClientSession) -> int:
        async with connect(session, roomy, "/ws/chat?marker=roomy") as ws:
            await ws.send_bytes(b"z" * (LIMIT + 1))
            return len((await ws.receive()).data)

    assert roomy.proxy.limits.websocket_max_message_bytes == 1_048_576
    assert run(client) == LIMIT + 1


def test_past_max_websockets_a_handshake_is_refused_with_503_and_http_still_passes(
        start: Callable[..., Running], app: App) -> None:
    capped = start(max_websockets=2)

    async def client(session: aiohttp.ClientSession) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        first = await connect(session, capped, "/ws/chat?marker=cap-1")
        second = await connect(session, capped, "/ws/chat?marker=cap-2")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await connect(session, capped, "/ws/chat?marker=cap-3")
        seen["refused"] = refused.value
        async with session.get(capped.url("/plain")) as plain:   # HTTP is not held up by open WebSockets
            seen["plain"] = (plain.status, await plain.text())
        await first.close()
        await asyncio.to_thread(_until, lambda: capped.proxy.websockets == 1, "the first WebSocket's room given back")
        async with connect(session, capped, "/ws/chat?marker=cap-4") as fourth:
            await fourth.send_str("room again")
            seen["fourth"] = (await fourth.receive()).data
        await second.close()
        return seen

    seen = run(client)
    refused = seen["refused"]
    assert refused.status == 503 and refused.headers["Retry-After"] == "5"
    event = capped.event(refused.headers.get("X-Request-Id"))
    assert (event["action"], event["reason"], event["status"]) == ("refused", "websocket_limit", 503)
    assert not app.saw("cap-3")
    assert seen["plain"] == (200, "plain http\n")
    assert seen["fourth"] == "echo:room again"


def test_a_websocket_silent_both_ways_is_closed_after_the_idle_timeout(start: Callable[..., Running],
                                                                       app: App) -> None:
    quiet = start(site=WafSite(websocket_idle_timeout=1))

    async def client(session: aiohttp.ClientSession) -> tuple[Any, Any, Any]:
        async with connect(session, quiet, "/ws/chat?marker=idle") as ws:
            msg = await ws.receive()
            return msg.type, msg.data, msg.extra

    assert run(client) == (WSMsgType.CLOSE, 1001, "idle timeout")
    _until(lambda: app.closed("idle") is not None, "the application saw the close")
    assert app.closed("idle") == (1001, "idle timeout")


def test_stopping_the_proxy_closes_open_websockets_with_1001(start: Callable[..., Running], loop: Loop,
                                                             app: App) -> None:
    stopping = start()

    async def client(session: aiohttp.ClientSession) -> tuple[Any, Any]:
        async with connect(session, stopping, "/ws/chat?marker=stopping") as ws:
            await ws.send_str("hi")
            await ws.receive()
            stopped = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(stopping.proxy.stop(), loop.loop))
            msg = await ws.receive()
            await stopped
            return msg.type, msg.data

    assert run(client) == (WSMsgType.CLOSE, 1001)
    _until(lambda: app.closed("stopping") is not None, "the application saw the close")
    assert app.closed("stopping") == (1001, "proxy stopping")

# ------------------------------------------------------------------------------------ the application's answers


def test_an_upgrade_the_application_refuses_reaches_the_client_as_it_answered(waf: Running, app: App) -> None:
    answer = raw_handshake(waf.port, "/ws/refused?marker=app-refuses")
    assert (answer.status, answer.body, answer.header("X-App-Reason")) == (403, b"no session for this room\n",
                                                                           "login")
    assert app.saw("app-refuses")
    assert raw_handshake(waf.port, "/ws/nowhere?marker=app-404").status == 404


def test_a_redirect_is_passed_back_never_followed(waf: Running, app: App) -> None:
    answer = raw_handshake(waf.port, "/ws/moved?marker=app-moves")
    assert (answer.status, answer.header("Location")) == (302, "/ws/chat?marker=followed")
    assert app.saw("app-moves") and not app.saw("marker=followed")


def test_an_unreachable_application_is_502(start: Callable[..., Running]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    nowhere = start(to=f"http://127.0.0.1:{closed_port}")
    assert raw_handshake(nowhere.port, "/ws/chat?marker=nowhere").status == 502

# ------------------------------------------------------------------------------------------------- the pieces


def test_what_counts_as_a_websocket_handshake_and_what_it_forwards() -> None:
    assert is_upgrade("GET", [("Connection", "Upgrade"), ("Upgrade", "WebSocket")])
    assert not is_upgrade("GET", [("Connection", "Upgrade"), ("Upgrade", "h2c")])   # stays HTTP, Upgrade dropped
    assert not is_upgrade("POST", [("Connection", "Upgrade"), ("Upgrade", "websocket")])
    assert offered_protocols([("Sec-WebSocket-Protocol", "chat.v3, chat.v2"), ("Sec-WebSocket-Protocol", "chat.v2,x")
                              ]) == ["chat.v3", "chat.v2", "x"]
    assert handshake_headers([("Cookie", "a=1"), ("Sec-WebSocket-Key", KEY), ("sec-websocket-extensions", "x"),
                              ("Origin", "https://chat.example.test")]) == [
        ("Cookie", "a=1"), ("Origin", "https://chat.example.test")]
    assert [c for c in (1000, 1001, 1005, 1006, 1009, 1011, 1015, 2000, 3000, 4999, 5000) if closeable(c)] == [
        1000, 1001, 1009, 1011, 3000, 4999]

