"""The admin listener end to end: pause and resume, capacity patches and their validation, and
two replicas following them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.admin_helpers import (
    AUTH,
    JSON,
    client,
    eventually,
    heartbeat_admitted,
    status_of,
)


# ---------------------------------------------------------------------------- pause / resume
async def test_pause_queues_newcomers_then_resume_admits(make_env: Any) -> None:
    async with make_env(capacity=3) as env:
        async with client(env.a.url) as v, client(env.a.admin, headers=AUTH) as adm:
            r = await adm.post(f"/admin/rooms/{env.room}/pause")
            assert r.status_code == 200 and r.json()["paused"] is True
            status = await status_of(v)
            assert status["status"] == "waiting", "queued although capacity is free"
            assert status["cfWaitingRoom"]["queueAll"] is True
            await asyncio.sleep(0.4)  # several controller ticks: still nobody promoted
            assert not await heartbeat_admitted(v)
            assert env.a.publisher.of_type("queue.paused")
            r = await adm.post(f"/admin/rooms/{env.room}/resume")
            assert r.status_code == 200 and r.json()["paused"] is False
            await eventually(lambda: heartbeat_admitted(v), 2.0, "admitted after resume")
            assert env.a.publisher.of_type("queue.resumed")
            async with client(env.a.url) as w:
                assert (await status_of(w))["status"] == "passed"


# ---------------------------------------------------------------------------- overrides
async def test_patch_capacity_admits_more_then_reset(make_env: Any) -> None:
    async with make_env(capacity=1) as env:
        async with (
            client(env.a.url) as v1,
            client(env.a.url) as v2,
            client(env.a.url) as v3,
            client(env.a.admin, headers=AUTH) as adm,
        ):
            assert (await status_of(v1))["status"] == "passed"
            assert (await status_of(v2))["status"] == "waiting"
            assert (await status_of(v3))["status"] == "waiting"
            r = await adm.patch(f"/admin/rooms/{env.room}", json={"capacity": 3})
            assert r.status_code == 200, r.text
            assert r.json()["overrides"] == {"capacity": 3}
            assert r.json()["policy"]["capacity"] == 3
            assert env.a.engine.gate.rooms[env.room].policy.capacity == 3, "applied here at once"

            async def both() -> bool:
                return await heartbeat_admitted(v2) and await heartbeat_admitted(v3)

            await eventually(both, 1.5, "two more admitted by the controller")
            changed = env.a.publisher.of_type("queue.config_changed")
            assert changed and changed[-1].data["overrides"] == {"capacity": 3}

            # Merge: another field keeps capacity; null removes one override.
            r = await adm.patch(
                f"/admin/rooms/{env.room}", json={"mode": "random", "page_status": 503}
            )
            assert r.json()["overrides"] == {"capacity": 3, "mode": "random", "page_status": 503}
            r = await adm.patch(f"/admin/rooms/{env.room}", json={"mode": None})
            assert r.json()["overrides"] == {"capacity": 3, "page_status": 503}
            assert r.json()["policy"]["mode"] == "fifo"
            r = await adm.delete(f"/admin/rooms/{env.room}/overrides")
            assert r.status_code == 200 and r.json()["overrides"] == {}
            assert r.json()["policy"]["capacity"] == 1
            meta = await env.a.engine.gate.store.get_meta(env.room)
            assert "overrides" not in meta


@pytest.mark.parametrize("store_kind", ["memory"], indirect=True)
async def test_patch_validation(make_env: Any) -> None:
    async with make_env(capacity=2) as env, client(env.a.admin, headers=AUTH) as adm:
        url = f"/admin/rooms/{env.room}"

        async def refused(body: Any, status: int = 422, raw: bytes | None = None) -> Any:
            if raw is not None:
                r = await adm.patch(url, content=raw, headers={"content-type": "application/json"})
            else:
                r = await adm.patch(url, json=body)
            assert r.status_code == status, (body, raw, r.status_code, r.text)
            return r.json()["detail"]

        detail = await refused({"capacity": 0, "admit_rate": -1, "mode": "lottery", "color": "red",
                                "session_ttl": 0, "page_status": 404, "fail_mode": "ajar",
                                "session_renewal": "yes", "max_queue_length": 1.5})  # fmt: skip
        assert {"field": "capacity", "error": "must be >= 1, got 0"} in detail
        assert {"field": "admit_rate", "error": "must be >= 0, got -1"} in detail
        fields = {d["field"] for d in detail}
        assert fields == {"capacity", "admit_rate", "mode", "color", "session_ttl", "page_status",
                          "fail_mode", "session_renewal", "max_queue_length"}  # fmt: skip
        assert any(d["field"] == "color" and "unknown" in d["error"] for d in detail)
        mode = next(d for d in detail if d["field"] == "mode")["error"]
        assert "fifo, random, passthrough, reject, queue_all" in mode
        assert (await refused({"capacity": True}))[0]["error"].startswith("must be an integer")
        assert (await refused({"capacity": "3"}))[0]["field"] == "capacity"
        # Cross-field rules, as in the config file, on the policy that would be in force.
        detail = await refused({"session_ttl": 7200})
        assert detail == [
            {"field": "session_ttl", "error": "must be <= session_max (3600), got 7200"}
        ]
        detail = await refused({"heartbeat_interval": 60})
        assert {d["field"] for d in detail} == {"abandon_after", "claim_timeout"}
        # Upper bounds: nothing that overflows the store's millisecond integers (found by fuzzing).
        detail = await refused({"claim_timeout": 4.7e307, "capacity": 10**12})
        assert {d["field"] for d in detail} == {"claim_timeout", "capacity"}
        assert detail[0]["error"].startswith("must be <= ")
        # Not an object / not JSON.
        assert "JSON object" in (await refused([1, 2]))[0]["error"]
        assert "JSON object" in (await refused(None, raw=b"3"))[0]["error"]
        assert "JSON" in await refused(None, 400, raw=b"{nope")
        assert "JSON" in await refused(None, 400, raw=b"\xff\xfe")
        assert "JSON" in await refused(None, 400, raw=b'{"capacity": NaN}')
        assert "JSON" in await refused(None, 400, raw=b"")
        # Nested too deep for the decoder (within the size limit): refused, never a 500.
        assert "JSON" in await refused(None, 400, raw=b"[" * 50_000)
        assert "JSON" in await refused(None, 400, raw=b'{"a":' * 10_000 + b"1" + b"}" * 10_000)
        await refused(None, 413, raw=b'{"a": "' + b"x" * 70_000 + b'"}')
        # Nothing was stored by any of that.
        r = await adm.get(url)
        assert r.json()["overrides"] == {} and r.json()["policy"]["capacity"] == 2
        # Accepted forms: floats for durations, ints given as such, enums case-insensitively.
        r = await adm.patch(url, json={"claim_timeout": 12.5, "mode": "QUEUE_ALL", "admit_rate": 0})
        assert r.status_code == 200
        assert r.json()["overrides"] == {
            "claim_timeout": 12.5,
            "mode": "queue_all",
            "admit_rate": 0,
        }
        r = await adm.patch("/admin/rooms/missing", json={"capacity": 2})
        assert r.status_code == 404


async def test_two_replicas_follow_a_patch_and_a_pause(make_env: Any) -> None:
    async with make_env(n=2, capacity=1) as env:
        room_b = env.b.engine.gate.rooms[env.room]
        async with (
            client(env.a.admin, headers=AUTH) as adm_a,
            client(env.b.admin, headers=AUTH) as adm_b,
        ):
            r = await adm_a.patch(
                f"/admin/rooms/{env.room}", json={"capacity": 4, "page_status": 429}
            )
            assert r.status_code == 200

            async def b_follows() -> bool:
                return room_b.policy.capacity == 4 and room_b.policy.page_status == 429

            await eventually(b_follows, 1.5, "replica B follows the PATCH made on A")
            assert (await adm_b.get(f"/admin/rooms/{env.room}")).json()["overrides"] == {
                "capacity": 4, "page_status": 429}  # fmt: skip

            await adm_a.post(f"/admin/rooms/{env.room}/pause")

            async def b_paused() -> bool:
                return room_b.paused

            await eventually(b_paused, 1.5, "replica B follows the pause made on A")
            async with client(env.b.url) as v:
                r = await v.get("/", headers=JSON)
                assert r.status_code == 429 and r.json()["cfWaitingRoom"]["queueAll"] is True
