"""A scheduled sale over HTTP, through the real middleware, on a real loopback server: the
idle countdown page, the pre-queue page with the draw's commitment, the queue after the one
release, the audit document, the ended page; and the admin API that reads, previews, sets and
cancels a schedule. The store's clock is a fake one the test moves (the replica follows it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.log_events import MemoryPublisher
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.admin.api import build_admin
from waitroom_proxy.asgi.middleware import WaitroomMiddleware
from waitroom_proxy.bootstrap import build_engine
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.draw import verify
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.schedule import Schedule

SECRET = "schedule-http-" + "h" * 32
TOKEN = "admin-token-" + "t" * 24
AUTH = {"authorization": f"Bearer {TOKEN}"}
JSON = {"accept": "application/json"}
T0 = 1_900_000_000.0


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def test_the_phases_pages_audit_and_admin_of_a_sale() -> None:
    now = [T0]
    schedule = Schedule(prequeue_at=_at(T0 + 100), start_at=_at(T0 + 200),
                        end_at=_at(T0 + 300), shuffle_at_start=True)  # fmt: skip
    settings = Settings(
        rooms=(RoomPolicy(name="sale", capacity=1, heartbeat_interval=5, schedule=schedule),),
        secret=SECRET,
        client_rate_limit=0,
    )
    publisher = MemoryPublisher()
    engine = build_engine(settings, store=MemoryStore(clock=lambda: now[0]), publisher=publisher,
                          clock=lambda: now[0], controller_interval=3600)  # fmt: skip
    origin = Starlette(routes=[Route("/", lambda r: PlainTextResponse("origin"))])
    app: Any = WaitroomMiddleware(origin, engine=engine)
    admin = build_admin(engine, TOKEN)
    tick = engine.controller.run_once
    async with (
        serve_asgi(app) as url,
        httpx.AsyncClient(base_url=url) as a,
        httpx.AsyncClient(base_url=url) as b,
        httpx.AsyncClient(transport=httpx.ASGITransport(admin), base_url="http://admin") as adm,
    ):
        # Idle: the countdown page; no ticket; nobody reaches the origin.
        r = await a.get("/")
        assert r.status_code == 200 and "The sale has not started" in r.text
        assert "Starts in 1 min 40 s" in r.text and 'http-equiv="refresh"' in r.text
        assert "waitroom_ticket" not in r.headers.get("set-cookie", "")
        r = await a.get("/", headers=JSON)
        body = r.json()
        assert body["status"] == "idle" and body["opens_at"] == "2030-03-17T17:48:20Z"
        assert (await a.get("/_waitroom/audit?room=sale")).status_code == 404
        assert (await a.get("/_waitroom/audit?room=nope")).status_code == 404

        # Pre-queue: tickets without a position; the commitment is published.
        now[0] += 100
        await tick()
        opened = [e for e in publisher.events if e.type == "queue.prequeue_opened"]
        assert len(opened) == 1
        commitment = opened[0].data["commitment"]
        r = await a.get("/")
        assert r.status_code == 200 and "You are in the pre-queue" in r.text
        assert commitment in r.text and "waitroom_ticket=" in r.headers["set-cookie"]
        body = (await b.get("/", headers=JSON)).json()
        assert body["status"] == "prequeue" and body["position"] == 0
        assert body["starts_at"] == "2030-03-17T17:50:00Z" and body["queue_length"] == 2
        r = await b.post("/_waitroom/heartbeat")
        assert r.json()["status"] == "prequeue", "a poll in the pre-queue keeps the ticket"
        audit = (await a.get("/_waitroom/audit?room=sale")).json()
        assert audit["commitment"] == commitment and audit["seed"] is None

        # The start: one release; one visitor is admitted (capacity 1), the other waits.
        now[0] += 100
        await tick()
        statuses = sorted([(await c.post("/_waitroom/heartbeat")).json()["status"] for c in (a, b)])
        assert statuses == ["admitted", "waiting"]
        audit = (await a.get("/_waitroom/audit")).json()  # one room: ?room may be left out
        assert verify(audit).ok and len(audit["order"]) == 2

        # The admin API: read, refuse, preview, set, cancel.
        r = await adm.get("/admin/rooms/sale/schedule", headers=AUTH)
        assert r.json()["phase"] == "open" and r.json()["next"]["phase"] == "ended"
        bad = {"start_at": "2030-03-17T18:00:00", "end_at": "later", "shuffle_at_start": 1}
        r = await adm.post("/admin/rooms/sale/schedule/preview", headers=AUTH, json=bad)
        assert r.status_code == 422
        fields = [p["field"] for p in r.json()["detail"]]
        assert fields == ["schedule.start_at", "schedule.end_at", "schedule.shuffle_at_start"]
        r = await adm.put("/admin/rooms/sale/schedule", headers=AUTH, content=b"{")
        assert r.status_code == 400
        later = {"start_at": "2030-03-17T19:00:00Z"}
        r = await adm.post("/admin/rooms/sale/schedule/preview", headers=AUTH, json=later)
        assert r.json()["phase"] == "idle" and r.json()["stored"] is False
        assert (await adm.get("/admin/rooms/sale/schedule", headers=AUTH)).json()["phase"] == "open"
        r = await adm.put("/admin/rooms/sale/schedule", headers=AUTH, json=later)
        assert r.status_code == 200 and r.json()["phase"] == "idle"
        async with httpx.AsyncClient(base_url=url) as c:
            assert (await c.get("/", headers=JSON)).json()["status"] == "idle"
        r = await adm.delete("/admin/rooms/sale/schedule", headers=AUTH)
        assert r.json()["phase"] == "open" and r.json()["schedule"] is None
        r = await adm.put("/admin/rooms/sale/schedule", headers=AUTH, json=schedule.as_dict())
        assert r.json()["phase"] == "open"

        # The end: the sold-out page for a newcomer, once the store's clock passes end_at.
        now[0] += 100
        await tick()
        assert len([e for e in publisher.events if e.type == "queue.ended"]) == 1
        async with httpx.AsyncClient(base_url=url) as c:
            r = await c.get("/")
            assert r.status_code == 403 and "The sale has ended" in r.text
            assert (await c.get("/", headers=JSON)).json()["status"] == "ended"
