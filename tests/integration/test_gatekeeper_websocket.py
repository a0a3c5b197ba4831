"""WebSockets through the gatekeeper: a session passes (with the verified token, without the
room's cookies); a visitor without a session is refused at the handshake."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.fixtures.asgi_server import serve_asgi
from tests.fixtures.origin import run_origin
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.server import build_app


async def test_websocket_through_the_gatekeeper() -> None:
    async with run_origin() as origin:
        settings = Settings(
            rooms=(RoomPolicy(name="ws", capacity=1),),
            upstream=origin.url,
            secret="ws-" + "w" * 32,
        )
        async with serve_asgi(build_app(settings, store=MemoryStore())) as url:
            async with httpx.AsyncClient(base_url=url) as c:
                r = await c.get("/")
                session = r.cookies["waitroom_session"]
            ws_url = url.replace("http://", "ws://") + "/ws"
            headers = {"cookie": f"waitroom_session={session}; theme=dark"}
            async with connect(ws_url, subprotocols=["chat.v2"], additional_headers=headers) as ws:
                assert ws.subprotocol == "chat.v2"
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await ws.send("headers")
                seen = dict(json.loads(await ws.recv()))
                assert seen.get("waitroom-verified") == session
                assert seen.get("cookie") == "theme=dark"
                await ws.send("close")
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
            # No session (the only slot is taken): refused at the handshake, origin untouched.
            before = len(origin.requests)
            with pytest.raises(InvalidStatus):
                async with connect(ws_url):
                    pass
            assert len(origin.requests) == before
