"""The admin listener end to end: the rooms and stats views, and 503 (never 500) while the store
is down."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.asgi_server import serve_asgi
from tests.integration.admin_helpers import (
    AUTH,
    SECRET,
    TOKEN,
    BreakableStore,
    client,
    origin_app,
    status_of,
)
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.admin import build_admin
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import Bypass, RoomPolicy
from waitroom_proxy.server import build_app


# ---------------------------------------------------------------------------- reading
@pytest.mark.parametrize("store_kind", ["memory"], indirect=True)
async def test_rooms_and_stats_views(make_env: Any) -> None:
    bypass = Bypass(paths=("/static/",), secret="bypass-secret-" + "s" * 20)
    async with make_env(capacity=1, bypass=bypass, admit_rate=60) as env:
        async with (
            client(env.a.url) as v1,
            client(env.a.url) as v2,
            client(env.a.admin, headers=AUTH) as adm,
        ):
            assert (await status_of(v1))["status"] == "passed"
            assert (await status_of(v2))["status"] == "waiting"
            rooms = (await adm.get("/admin/rooms")).json()["rooms"]
            assert [r["name"] for r in rooms] == [env.room]
            room = (await adm.get(f"/admin/rooms/{env.room}")).json()
            assert room["stats"] == {
                "queue_length": 1,
                "active": 1,
                "promoted": 0,
                "admitted_total": 1,
            }
            assert room["paused"] is False and room["overrides"] == {}
            policy = room["policy"]
            assert (
                policy["capacity"] == 1 and policy["mode"] == "fifo" and policy["admit_rate"] == 60
            )
            assert policy["bypass"]["secret"] == "********" and "bypass-secret" not in json.dumps(
                room
            )
            assert policy["bypass"]["paths"] == ["/static/"]
            assert set(policy) >= {"session_ttl", "fail_mode", "page_status", "match", "template"}
            assert room["admissions_per_minute"] == pytest.approx(60.0)  # the prior: admit_rate
            assert room["eta_last_seconds"]["p50"] >= 1
            stats = (await adm.get("/admin/stats")).json()
            assert stats["store"] == {"up": True, "kind": "MemoryStore"}
            assert stats["events"]["publisher"] == "CountingPublisher"
            assert stats["events"]["counters"]["published"] >= 2
            assert stats["rooms"][0]["stats"]["queue_length"] == 1
            assert stats["replica"] == env.a.engine.gate.replica_id
            r = await adm.get("/admin/rooms/nope")
            assert r.status_code == 404 and r.json() == {"detail": "unknown room: 'nope'"}
            r = await adm.put("/admin/stats")
            assert r.status_code == 405 and "detail" in r.json()


async def test_store_down_answers_503_never_500() -> None:
    store = BreakableStore(MemoryStore())
    policy = RoomPolicy(name="shop", capacity=1)
    async with serve_asgi(origin_app()) as origin_url:
        settings = Settings(rooms=(policy,), upstream=origin_url, secret=SECRET)
        app = build_app(settings, store=store, controller_interval=0.1)
        async with (
            serve_asgi(app),
            serve_asgi(build_admin(app.engine, TOKEN), lifespan="off") as admin,
        ):
            async with client(admin, headers=AUTH) as adm:
                store.broken = True
                for method, path in [("POST", "/admin/rooms/shop/pause"),
                                     ("PATCH", "/admin/rooms/shop"),
                                     ("POST", "/admin/rooms/shop/admit?count=1"),
                                     ("POST", "/admin/rooms/shop/sessions/abc/revoke"),
                                     ("DELETE", "/admin/rooms/shop/overrides")]:  # fmt: skip
                    r = await adm.request(method, path, json={"capacity": 2})
                    assert r.status_code == 503, (path, r.status_code, r.text)
                    assert r.json() == {"detail": "store unavailable"}
                r = await adm.get("/admin/stats")
                assert r.status_code == 200 and r.json()["store"]["up"] is False
                assert (await adm.get("/admin/rooms/shop")).status_code == 200  # last known view
                assert (await adm.get("/metrics")).status_code == 200
                store.broken = False
