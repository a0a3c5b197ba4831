"""A visitor journey through the real proxy yields exactly its events on a real NATS JetStream:
enqueued → admitted → session.started → session.ended, in order, as CloudEvents."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
import pytest
from nats.js import api
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.nats_events import NatsPublisher
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.server import build_app


async def _origin(request: Request) -> Response:
    return PlainTextResponse("origin")


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[Any]:
    nc = await nats.connect(nats_url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def read_room(js: Any, room: str, expect: int, timeout: float = 10) -> list[dict[str, Any]]:
    subject = f"waitroom.{room}.>"
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await js.stream_info("WAITROOM", subjects_filter=subject)
            n = sum((info.state.subjects or {}).values())
        except Exception:
            n = 0
        if n >= expect or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    sub = await js.subscribe(subject, stream="WAITROOM", ordered_consumer=True,
                             deliver_policy=api.DeliverPolicy.ALL)  # fmt: skip
    try:
        msgs = [await sub.next_msg(timeout=5) for _ in range(n)]
    finally:
        await sub.unsubscribe()
    out = []
    for m in msgs:
        ev = json.loads(m.data)
        ev["_subject"] = m.subject
        ev["_msg_id"] = (m.headers or {}).get("Nats-Msg-Id")
        out.append(ev)
    return out


async def test_journey_events_in_order(nats_url: str, js: Any) -> None:
    room = f"ev{int(time.time() * 1000) % 10**9}"
    policy = RoomPolicy(name=room, capacity=1, heartbeat_interval=1)
    publisher = NatsPublisher(nats_url, source="waitroom-proxy/test")
    async with serve_asgi(Starlette(routes=[Route("/{p:path}", _origin)])) as origin_url:
        settings = Settings(rooms=(policy,), upstream=origin_url, secret="ev-" + "e" * 32)
        app = build_app(settings, store=MemoryStore(), publisher=publisher,
                        controller_interval=0.1)  # fmt: skip
        async with serve_asgi(app) as url:
            async with httpx.AsyncClient(base_url=url) as a, httpx.AsyncClient(base_url=url) as b:
                assert (await a.get("/")).text == "origin"
                r = await b.get("/", headers={"accept": "application/json"})
                assert r.json()["status"] == "waiting"
                await a.post("/_waitroom/leave")
                for _ in range(50):
                    if (await b.post("/_waitroom/heartbeat")).json()["status"] == "admitted":
                        break
                    await asyncio.sleep(0.1)
                assert (await b.get("/")).text == "origin"
                await b.post("/_waitroom/leave")
            await publisher.flush()

    events = await read_room(js, room, expect=7)
    assert all(e["specversion"] == "1.0" and e["subject"] == room for e in events)
    assert all(e["_msg_id"] == e["id"] for e in events), "Nats-Msg-Id = event id"
    assert all(e["_subject"] == f"waitroom.{room}." + e["type"].removeprefix("io.waitroom.")
               for e in events)  # fmt: skip
    by_place: dict[str, list[str]] = {}
    for e in events:
        by_place.setdefault(e["data"]["place_id"], []).append(
            e["type"].removeprefix("io.waitroom.")
        )
    journeys = sorted(by_place.values(), key=len)
    # A was admitted at once; B waited, was promoted, started a session, and left.
    assert journeys[0] == ["position.admitted", "session.started", "session.ended"]
    assert journeys[1] == [
        "position.enqueued",
        "position.admitted",
        "session.started",
        "session.ended",
    ]
    assert len(events) == 7
