"""What is the room's never reaches the other side, on any path (DESIGN §4; issue 11 follow-up).

- The bypass secret header (and its ``_`` spelling, which CGI and WSGI read as the same
  variable) never reaches the origin or a host app: it lets a request past the room and the
  origin has no use for it. Whatever path the request takes — no room, a bypass path, the
  secret itself, a valid session, a free room, fail-open, a WebSocket — it is removed.
- In a host app, a ``Waitroom-Command`` answer never reaches the visitor, whichever path the
  request took (the commands steer the room; a visitor who sees them learns how it is driven),
  WebSocket handshakes included.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.fixtures.asgi_server import serve_asgi
from tests.fixtures.origin import closed_port_url, run_origin
from tests.reliability.gate_rig import ROOMS, SECRET, SIGNING, Gate, exchange, run_gate, status_of
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.asgi.middleware import WaitroomMiddleware
from waitroom_proxy.bootstrap import build_engine
from waitroom_proxy.config import Settings
from waitroom_proxy.server import build_app

SECRET_B = SECRET.encode()
# Both spellings, so that the proper one (sent once) still bypasses.
WITH_SECRET = b"Waitroom-Bypass: " + SECRET_B + b"\r\nWaitroom_Bypass: " + SECRET_B + b"\r\n"
PRIVATE = {b"waitroom-bypass", b"waitroom_bypass"}


def request(host: bytes, path: bytes, extra: bytes = b"") -> bytes:
    return (
        b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + WITH_SECRET + extra
        + b"Accept: application/json\r\nConnection: close\r\n\r\n"
    )  # fmt: skip


def session_cookie(token: str) -> bytes:
    return b"Cookie: waitroom_session=" + token.encode() + b"\r\n"


@pytest.fixture(params=["httptools", "h11"])
async def gate(request: pytest.FixtureRequest) -> AsyncIterator[Gate]:
    async with run_gate(request.param) as g:
        yield g


async def test_secret_header_never_reaches_the_origin(gate: Gate) -> None:
    cases = [
        ("no room", request(b"other.test", b"/x")),
        ("bypass path", request(b"shop.test", b"/static/app.js")),
        ("the secret itself", request(b"shop.test", b"/buy")),
        ("valid session", request(b"shop.test", b"/cart", session_cookie(gate.holder))),
        ("free room", request(b"free.test", b"/")),
    ]
    for name, data in cases:
        raw = await exchange(gate.port, data)
        assert status_of(raw) == 200, (name, raw[:300])
        seen = gate.origin.requests[-1]
        assert not PRIVATE & seen.names(), (name, seen.headers)
        assert SECRET_B not in b"".join(v for _, v in seen.headers), name
    # "the secret itself" passed the full room because of the header: it still counts.
    assert gate.origin.targets() == [b"/x", b"/static/app.js", b"/buy", b"/cart", b"/"]


async def test_secret_header_never_reaches_the_origin_on_fail_open() -> None:
    dead = "redis://" + closed_port_url().removeprefix("http://") + "/0"
    async with run_gate(store=RedisStore.from_url(dead, timeout=0.2), hold=False) as g:
        raw = await exchange(g.port, request(b"shop.test", b"/static/../buy"))
        assert status_of(raw) == 200, raw[:300]
        (seen,) = g.origin.requests
        assert not PRIVATE & seen.names(), seen.headers


async def test_secret_header_never_reaches_a_websocket_origin() -> None:
    async with run_origin() as origin:
        settings = Settings(rooms=ROOMS[:1], upstream=origin.url, secret=SIGNING)
        app = build_app(settings, store=MemoryStore())
        async with serve_asgi(app) as url:
            headers = {"waitroom-bypass": SECRET, "waitroom_bypass": SECRET}
            port = int(url.rsplit(":", 1)[1])
            # The URI names the room's host; the socket goes to the proxy.
            async with connect(
                "ws://shop.test/ws", host="127.0.0.1", port=port, additional_headers=headers
            ) as ws:
                await ws.send("headers")
                seen = {n.lower() for n, _ in json.loads(await ws.recv())}
    assert "host" in seen
    assert not {"waitroom-bypass", "waitroom_bypass"} & seen, seen


class CommandingApp:
    """A host app that records each request's headers and answers every one of them (HTTP
    and WebSocket handshakes alike) with a ``Waitroom-Command`` in two spellings."""

    COMMANDS = [(b"waitroom-command", b"bogus"), (b"Waitroom-Command", b"extend=60")]

    def __init__(self) -> None:
        self.seen: list[tuple[str, set[bytes]]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        self.seen.append((scope["path"], {n for n, _ in scope["headers"]}))
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept", "headers": self.COMMANDS})
            await send({"type": "websocket.close", "code": 1000})
            return
        headers = [(b"content-length", b"2"), *self.COMMANDS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_host_app_gets_no_secret_and_sends_no_command() -> None:
    app = CommandingApp()
    settings = Settings(rooms=ROOMS, secret=SIGNING, client_rate_limit=0)
    engine = build_engine(settings, store=MemoryStore(), controller_interval=0.2)
    async with serve_asgi(WaitroomMiddleware(app, engine=engine)) as url:
        port = int(url.rsplit(":", 1)[1])
        # Take the sale room's one place (the host app answers it: a session path).
        raw = await exchange(port, request(b"shop.test", b"/hold").replace(WITH_SECRET, b""))
        token = raw.split(b"waitroom_session=", 1)[1].split(b";", 1)[0].decode()
        cases = [
            ("no room", request(b"other.test", b"/x")),
            ("bypass path", request(b"shop.test", b"/static/app.js")),
            ("the secret itself", request(b"shop.test", b"/buy")),
            ("valid session", request(b"shop.test", b"/cart", session_cookie(token))),
        ]
        for name, data in cases:
            raw = await exchange(port, data)
            head = raw.split(b"\r\n\r\n", 1)[0].lower()
            assert status_of(raw) == 200, (name, raw[:300])
            assert b"waitroom-command" not in head, (name, head)
            path, names = app.seen[-1]
            assert not PRIVATE & names, (name, names)
        assert [p for p, _ in app.seen] == ["/hold", "/x", "/static/app.js", "/buy", "/cart"]
        # A WebSocket handshake on a path without a room: the accept carries no command.
        async with connect("ws://other.test/live", host="127.0.0.1", port=port) as ws:
            assert ws.response is not None
            assert "waitroom-command" not in {k.lower() for k in ws.response.headers}
        assert app.seen[-1][0] == "/live"
