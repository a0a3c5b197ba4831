"""WebSocket proxying through UpstreamProxy to a real origin on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.fixtures.origin import Origin, closed_port_url, run_origin, serve_asgi
from waitroom_proxy.asgi.proxy import UpstreamProxy


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    async with run_origin() as o:
        yield o


@asynccontextmanager
async def proxied(upstream: str, **forward: Any) -> AsyncIterator[str]:
    proxy = UpstreamProxy(upstream)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await proxy.forward(scope, receive, send, **forward)

    try:
        async with serve_asgi(app) as url:
            yield url.replace("http://", "ws://")
    finally:
        await proxy.aclose()


async def test_messages_both_ways_and_subprotocol(origin: Origin) -> None:
    async with (
        proxied(origin.url) as url,
        connect(url + "/ws", subprotocols=["chat.v1", "chat.v2"]) as ws,
    ):
        assert ws.subprotocol == "chat.v2"  # the origin's choice reaches the client
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00\x01binary")
        assert await ws.recv() == b"\x00\x01binary"


async def test_origin_close_code_reaches_client(origin: Origin) -> None:
    async with proxied(origin.url) as url, connect(url + "/ws") as ws:
        await ws.send("close")
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4001
    assert ws.close_reason == "bye"


async def test_client_close_code_reaches_origin(origin: Origin) -> None:
    async with proxied(origin.url) as url:
        async with connect(url + "/ws") as ws:
            await ws.send("ping")
            await ws.recv()
            await ws.close(4002, "leaving")
        for _ in range(100):
            if origin.ws_closes:
                break
            await asyncio.sleep(0.01)
    assert origin.ws_closes == [4002]


async def test_handshake_gets_added_headers_forwarding_and_no_room_cookies(origin: Origin) -> None:
    forward = {
        "add_headers": [(b"waitroom-verified", b"signed.jwt")],
        "strip_cookies": {"waitroom_session"},
    }
    headers = {
        "Cookie": "waitroom_session=s; theme=dark",
        "Waitroom-Verified": "forged",
        "X-Forwarded-For": "6.6.6.6",
    }
    async with (
        proxied(origin.url, **forward) as url,
        connect(url + "/ws?room=a", additional_headers=headers) as ws,
    ):
        await ws.send("headers")
        seen = json.loads(await ws.recv())
    got: dict[str, list[str]] = {}
    for name, value in seen:
        got.setdefault(name, []).append(value)
    assert got["waitroom-verified"] == ["signed.jwt"]
    assert got["cookie"] == ["theme=dark"]
    assert got["x-forwarded-for"] == ["127.0.0.1"]
    assert "via" not in got  # no Via added (as nginx proxy_pass)
    assert got["host"] == [url.removeprefix("ws://")]  # the client's Host, as for HTTP


async def test_unreachable_upstream_refuses_the_handshake() -> None:
    async with proxied(closed_port_url()) as url:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url + "/ws"):
                pass
    assert info.value.response.status_code in (403, 502)
