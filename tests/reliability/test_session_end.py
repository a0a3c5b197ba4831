"""A session that ended stays ended (issue 11, item 8): on a replica started long after, and for
a WebSocket opened while it was valid.

- Revocations: a replica started by a rolling deploy reads every revocation the store still
  keeps (``session_max``), not only the last minute's, before it serves a request.
- WebSockets: a connection opened on a session is closed (1008) when that session is left,
  revoked (here or on another replica), completed, or runs out; otherwise its slot would go to
  the next visitor while it stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.fixtures.asgi_server import serve_asgi
from tests.fixtures.origin import Origin, run_origin
from tests.reliability.rig import JSON, SECRET, admitted_client, client, proxy_rig, report
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.server import build_app

ROOM = "ends"


@pytest.mark.redis
@pytest.mark.parametrize("end", ["left", "completed", "revoked"])
async def test_replica_started_later_refuses_sessions_that_ended_long_ago(
    redis_server: Any, end: str
) -> None:
    redis_server.flush()
    policy = RoomPolicy(name=ROOM, capacity=1)
    first = RedisStore(redis_server.url, timeout=2.0)
    later = RedisStore(redis_server.url, timeout=2.0)
    try:
        async with proxy_rig(policy, store=first) as a:
            visitor = await admitted_client(a.url)
            token = visitor.cookies["waitroom_session"]
            if end == "left":
                assert (await visitor.post("/_waitroom/leave")).json()["status"] == "left"
            else:
                session = a.gate.sessions.session_for(token, a.gate.rooms[ROOM], time.time())
                await a.gate.sessions.end(a.gate.rooms[ROOM], session.place_id, end)
            holder = await admitted_client(a.url)  # the freed slot is taken again
            await visitor.aclose()
        # Two minutes later by the store's clock, a new replica starts (a rolling deploy). The
        # token itself is still within its own expiry.
        later._advance_clock_for_tests(120_000)
        async with proxy_rig(policy, store=later) as b:
            async with client(b.url) as c:
                r = await c.get("/account", headers={**JSON, "cookie": f"waitroom_session={token}"})
            report(f"session {end} 2 min before a replica started", answer=r.json().get("status"),
                   origin_hits=b.origin.hits["/account"])  # fmt: skip
            assert b.origin.hits["/account"] == 0, "an ended session passed the new replica"
            assert r.json()["status"] == "waiting"
        await holder.aclose()
    finally:
        await first.close()
        await later.close()


class Clock:
    """The gate's clock: real time plus what the test adds (sessions end by this clock)."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


@contextlib.asynccontextmanager
async def ws_gate(
    policy: RoomPolicy, store: Any, clock: Any = time.time
) -> AsyncIterator[tuple[str, Any, Origin]]:
    """The proxy in front of the test origin (WebSocket echo): (url, app, origin)."""
    async with run_origin() as origin:
        settings = Settings(rooms=(policy,), upstream=origin.url, secret=SECRET)
        app = build_app(
            settings, store=store, controller_interval=0.2, access_log=False, clock=clock
        )
        async with serve_asgi(app) as url:
            yield url, app, origin


async def closed_code(ws: ClientConnection, timeout: float) -> int | None:
    """Wait for the server to close ``ws``; its close code (None: still open)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else 1006
    except TimeoutError:
        return None


async def admitted(url: str) -> httpx.AsyncClient:
    """A client holding a session on the WebSocket gate (capacity must be free)."""
    c = client(url)
    r = await c.get("/echo")
    assert r.status_code == 200 and c.cookies.get("waitroom_session"), r.text[:200]
    return c


async def open_ws(url: str, token: str) -> ClientConnection:
    ws = await connect(url.replace("http://", "ws://") + "/ws",
                       additional_headers={"cookie": f"waitroom_session={token}"})  # fmt: skip
    await ws.send("ping")
    assert await ws.recv() == "ping"
    return ws


async def test_websocket_closed_when_its_session_is_left() -> None:
    policy = RoomPolicy(name=ROOM, capacity=1)
    async with ws_gate(policy, MemoryStore()) as (url, app, origin):
        visitor = await admitted(url)
        token = visitor.cookies["waitroom_session"]
        ws = await open_ws(url, token)
        assert (await visitor.post("/_waitroom/leave")).json()["status"] == "left"
        code = await closed_code(ws, 10)
        # The slot went to the next visitor, who is in while the old connection is gone.
        nxt = await admitted(url)
        report("websocket after leave", close_code=code, origin_saw=origin.ws_closes)
        assert code == 1008
        await _until(lambda: origin.ws_closes, 10)
        assert origin.ws_closes == [1008]
        await visitor.aclose()
        await nxt.aclose()


@pytest.mark.redis
async def test_websocket_closed_when_another_replica_revokes(redis_server: Any) -> None:
    redis_server.flush()
    policy = RoomPolicy(name=ROOM, capacity=2)
    one, two = RedisStore(redis_server.url, timeout=2.0), RedisStore(redis_server.url, timeout=2.0)
    try:
        async with ws_gate(policy, one) as (url_a, _, _), ws_gate(policy, two) as (_, app_b, _):
            visitor = await admitted(url_a)
            token = visitor.cookies["waitroom_session"]
            ws = await open_ws(url_a, token)
            gate_b = app_b.engine.gate
            room_b = gate_b.rooms[ROOM]
            session = gate_b.sessions.session_for(token, room_b, time.time())
            await gate_b.sessions.end(
                room_b, session.place_id, "revoked"
            )  # e.g. the origin said so
            code = await closed_code(ws, 10)
            report("websocket after a revocation on another replica", close_code=code)
            assert code == 1008
            await visitor.aclose()
    finally:
        await one.close()
        await two.close()


async def echo(ws: ClientConnection, text: str) -> None:
    await ws.send(text)
    assert await ws.recv() == text


async def test_websocket_closed_when_its_session_runs_out() -> None:
    """Fixed sessions (no renewal): the connection ends with the session, at ``session_max``
    and not before. Time moves by the gate's clock, so load does not change the outcome."""
    clock = Clock()
    policy = RoomPolicy(name=ROOM, capacity=1, session_renewal=False, session_max=600,
                        activity_interval=1)  # fmt: skip
    async with ws_gate(policy, MemoryStore(), clock) as (url, _, _):
        visitor = await admitted(url)
        ws = await open_ws(url, visitor.cookies["waitroom_session"])
        clock.shift = 590
        await asyncio.sleep(1.5)  # the watcher looks at least once a second here
        await echo(ws, "ten seconds left")
        clock.shift = 601
        code = await closed_code(ws, 15)
        report("websocket at session_max", close_code=code)
        assert code == 1008
        await visitor.aclose()


async def test_websocket_messages_keep_a_sliding_session_then_idle_ends_it() -> None:
    clock = Clock()
    policy = RoomPolicy(name=ROOM, capacity=1, session_ttl=60, session_max=3600,
                        activity_interval=1)  # fmt: skip
    async with ws_gate(policy, MemoryStore(), clock) as (url, _, _):
        visitor = await admitted(url)
        ws = await open_ws(url, visitor.cookies["waitroom_session"])
        for _ in range(6):  # 6 x 50 s: far past session_ttl, in use all along
            clock.shift += 50
            await echo(ws, "still here")
            await asyncio.sleep(1.2)  # the watcher has looked since
            await echo(ws, "still open")
        clock.shift += 61  # now idle for longer than session_ttl
        code = await closed_code(ws, 15)
        report("websocket in use, then idle", close_code=code)
        assert code == 1008
        await visitor.aclose()


async def _until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
