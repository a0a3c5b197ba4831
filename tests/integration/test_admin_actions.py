"""The admin listener end to end: admitting now while paused, and a revoke that ends the session
on every replica."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.admin_helpers import (
    AUTH,
    client,
    eventually,
    heartbeat_admitted,
    place_of,
    status_of,
)


# ---------------------------------------------------------------------------- admit now
async def test_admit_count_promotes_while_paused(make_env: Any) -> None:
    async with make_env(capacity=10) as env, client(env.a.admin, headers=AUTH) as adm:
        await adm.post(f"/admin/rooms/{env.room}/pause")
        visitors = [client(env.a.url) for _ in range(4)]
        try:
            for v in visitors:
                assert (await status_of(v))["status"] == "waiting"
            r = await adm.post(f"/admin/rooms/{env.room}/admit", params={"count": 2})
            assert r.status_code == 200, r.text
            assert (r.json()["requested"], r.json()["promoted"]) == (2, 2)
            assert r.json()["stats"]["promoted"] == 2 and r.json()["stats"]["queue_length"] == 2
            admitted = [await heartbeat_admitted(v) for v in visitors]
            assert admitted == [True, True, False, False], "the head of the queue, in order"
            await asyncio.sleep(0.3)
            assert not await heartbeat_admitted(visitors[2]), "still paused"
            r = await adm.post(f"/admin/rooms/{env.room}/admit")  # count defaults to 1
            assert r.json()["promoted"] == 1
        finally:
            for v in visitors:
                await v.aclose()
        for bad in ("0", "10001", "-3", "two", "1.5", ""):
            r = await adm.post(f"/admin/rooms/{env.room}/admit", params={"count": bad})
            assert r.status_code == 422 and r.json()["detail"][0]["field"] == "count", bad


# ---------------------------------------------------------------------------- revoke
async def test_revoke_ends_the_session_on_every_replica(make_env: Any) -> None:
    async with make_env(n=2, capacity=2) as env, client(env.a.admin, headers=AUTH) as adm:
        async with client(env.a.url) as v:
            assert (await status_of(v))["status"] == "passed"
            token = v.cookies["waitroom_session"]
        cookie = {"cookie": f"waitroom_session={token}"}
        async with client(env.a.url) as on_a, client(env.b.url) as on_b:
            assert (await status_of(on_a, **cookie))["status"] == "passed"
            assert (await status_of(on_b, **cookie))["status"] == "passed"  # B caches the token
            # Paused, so a revoked visitor cannot walk straight back in with a new session.
            await adm.post(f"/admin/rooms/{env.room}/pause")
            place = place_of(token)
            r = await adm.post(f"/admin/rooms/{env.room}/sessions/{place}/revoke")
            assert r.status_code == 200
            assert r.json() == {"room": env.room, "place_id": place, "previous_status": "active"}
            assert (await status_of(on_a, **cookie))["status"] == "waiting", "same replica: at once"

            async def b_refuses() -> bool:
                return (await status_of(on_b, **cookie))["status"] == "waiting"

            await eventually(b_refuses, 1.5, "replica B drops the revoked session")
        assert env.a.publisher.of_type("session.revoked")[0].data["place_id"] == place
        stats = (await adm.get(f"/admin/rooms/{env.room}")).json()["stats"]
        assert stats["active"] == 0, "the slot is free"
        r = await adm.post(f"/admin/rooms/{env.room}/sessions/{'x' * 200}/revoke")
        assert r.status_code == 422
        r = await adm.post(f"/admin/rooms/{env.room}/sessions/nobody/revoke")
        assert r.status_code == 200 and r.json()["previous_status"] == "unknown"
