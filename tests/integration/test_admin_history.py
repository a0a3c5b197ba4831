"""``GET /admin/rooms/{room}/history`` end to end: real uvicorn servers for the proxy, its admin
listener and an origin; visitors through the proxy fill the console's charts.

The admin listener samples every 50 ms here (``history_interval``), so an "hour" is 18 s.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fixtures.asgi_server import serve_asgi
from tests.integration.admin_helpers import (
    AUTH,
    SECRET,
    TOKEN,
    BreakableStore,
    client,
    eventually,
    heartbeat_admitted,
    origin_app,
    status_of,
)
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.admin import build_admin, openapi_document
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.server import build_app
from waitroom_proxy.service import Engine

INTERVAL = 0.05


@dataclass
class Rig:
    url: str
    admin: str
    engine: Engine
    store: BreakableStore

    def history(self, room: str = "shop") -> str:
        return f"/admin/rooms/{room}/history"


@contextlib.asynccontextmanager
async def rig(*, lifespan: str = "on", inner: Any = None, **room: Any) -> AsyncIterator[Rig]:
    """A proxy, its admin listener and an origin; ``inner``: the store (default in-process)."""
    store = BreakableStore(inner if inner is not None else MemoryStore())
    policy = RoomPolicy(name="shop", **{"capacity": 1, "heartbeat_interval": 1, **room})
    async with serve_asgi(origin_app()) as origin_url:
        settings = Settings(rooms=(policy,), upstream=origin_url, secret=SECRET)
        app = build_app(settings, store=store, controller_interval=0.05)
        admin_app = build_admin(app.engine, TOKEN, history_interval=INTERVAL)
        async with serve_asgi(app) as url, serve_asgi(admin_app, lifespan=lifespan) as admin:
            yield Rig(url, admin, app.engine, store)
            await app.engine.controller.stop()


async def samples(c: Any, path: str, **params: Any) -> list[dict[str, Any]]:
    r = await c.get(path, params=params)
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["samples"]
    return found


@pytest.fixture(params=["memory", "redis"])
def any_store(request: pytest.FixtureRequest) -> Any:
    if request.param == "memory":
        return MemoryStore()
    from waitroom_proxy.adapters.redis_store import RedisStore

    request.getfixturevalue("redis_server").flush()
    return RedisStore.from_url(request.getfixturevalue("redis_url"), timeout=1.0)


async def test_the_history_follows_the_queue_admissions_and_eta_error(any_store: Any) -> None:
    async with (
        rig(admit_rate=600, inner=any_store) as env,
        client(env.admin, headers=AUTH) as adm,
    ):
        async with client(env.url) as first, client(env.url) as second:
            assert (await status_of(first))["status"] == "passed"
            assert (await status_of(second))["status"] == "waiting"

            async def queued() -> Any:
                got = await samples(adm, env.history())
                return got[-1]["queue_length"] == 1 and got[-1]["active"] == 1

            await eventually(queued, 10, "a sample with one waiter and one active")
            assert (await first.post("/_waitroom/leave")).status_code in (200, 204)
            await eventually(lambda: heartbeat_admitted(second), 10, "the waiter admitted")

            async def measured() -> Any:
                got = await samples(adm, env.history())
                return [s for s in got if s["eta_admissions"]] and got

            got = await eventually(measured, 10, "a sample with the ETA error of an admission")
        body = (await adm.get(env.history())).json()
        assert body["room"] == "shop" and body["interval_seconds"] == INTERVAL
        assert body["points"] == 360 and body["replica"] == env.engine.gate.replica_id
        with_eta = [s for s in got if s["eta_admissions"]]
        assert with_eta[0]["eta_admissions"] == 1
        assert math.isfinite(with_eta[0]["eta_error_seconds"])
        rates = [s["admissions_per_minute"] for s in got if s["admissions_per_minute"]]
        assert rates and all(r > 0 for r in rates), "the promotion shows as admissions"
        assert body["samples"][0]["admissions_per_minute"] is None, "no rate before a second"
        assert all(s["capacity"] == 1 and s["paused"] is False for s in got)
        times = [s["t"] for s in body["samples"]]
        assert times == sorted(times) and len(set(times)) == len(times)
        # ?since answers only what came after: a polling console fetches a point or two.
        later = await samples(adm, env.history(), since=times[-1])
        assert all(s["t"] > times[-1] for s in later)
        after_first = [s["t"] for s in await samples(adm, env.history(), since=times[0])]
        assert after_first[: len(times) - 1] == times[1:], "the same samples, the first left out"


async def test_a_capacity_change_and_a_pause_show_in_the_samples() -> None:
    async with rig(capacity=2) as env, client(env.admin, headers=AUTH) as adm:
        await adm.patch("/admin/rooms/shop", json={"capacity": 7})
        await adm.post("/admin/rooms/shop/pause")

        async def changed() -> Any:
            last = (await samples(adm, env.history()))[-1]
            return last["capacity"] == 7 and last["paused"] is True

        await eventually(changed, 10, "capacity 7 and paused in a sample")


async def test_every_replica_samples_the_shared_store() -> None:
    """Two replicas on one store: a waiter who queued through one shows in the other's hour."""
    shared = MemoryStore()
    async with rig(inner=shared) as a, rig(inner=shared) as b:
        async with client(a.url) as first, client(a.url) as second:
            assert (await status_of(first))["status"] == "passed"
            assert (await status_of(second))["status"] == "waiting"
            async with client(b.admin, headers=AUTH) as adm:

                async def seen() -> Any:
                    last = (await samples(adm, b.history()))[-1]
                    return last["queue_length"] == 1 and last["active"] == 1

                await eventually(seen, 10, "replica b's samples show replica a's visitors")
                r = (await adm.get(b.history())).json()
                assert r["replica"] == b.engine.gate.replica_id != a.engine.gate.replica_id


async def test_the_sampler_starts_without_a_lifespan_too() -> None:
    """``serve`` runs the admin listener with the lifespan off: sampling starts anyway."""
    async with rig(lifespan="off") as env, client(env.admin, headers=AUTH) as adm:

        async def sampled() -> Any:
            return len(await samples(adm, env.history())) >= 3

        await eventually(sampled, 10, "samples without a lifespan")


async def test_a_store_down_leaves_a_gap_not_made_up_values() -> None:
    async with rig() as env, client(env.admin, headers=AUTH) as adm:

        async def counted() -> Any:
            return [s for s in await samples(adm, env.history()) if s["active"] is not None]

        await eventually(counted, 10, "a sample with counts")
        env.store.broken = True
        try:

            async def gap() -> Any:
                last = (await samples(adm, env.history()))[-1]
                return last["active"] is None and last["queue_length"] is None

            await eventually(gap, 10, "a sample without counts while the store is down")
        finally:
            env.store.broken = False
        await eventually(counted, 10, "counts again")
        last = (await samples(adm, env.history()))[-1]
        assert last["capacity"] == 1, "the policy is known without the store"


async def test_history_needs_the_token_and_refuses_bad_input() -> None:
    async with rig() as env, client(env.admin) as anonymous:
        r = await anonymous.get(env.history())
        assert r.status_code == 401 and "shop" not in r.text
        async with client(env.admin, headers=AUTH) as adm:
            r = await adm.get(env.history("nope"))
            assert r.status_code == 404 and r.json() == {"detail": "unknown room: 'nope'"}
            for bad in ("soon", "nan", "inf", "-1", "1e12", "", "0x10"):
                r = await adm.get(env.history(), params={"since": bad})
                assert r.status_code == 422, (bad, r.status_code, r.text)
                assert r.json()["detail"][0]["field"] == "since", bad
            assert (await adm.get(env.history(), params={"since": "0"})).status_code == 200
            assert (await adm.post(env.history())).status_code == 405
            head = await adm.head(env.history())
            assert head.status_code == 200 and head.content == b""


def test_the_history_is_in_the_openapi_document() -> None:
    doc = openapi_document()
    op = doc["paths"]["/admin/rooms/{room}/history"]["get"]
    assert op["operationId"] == "roomHistory"
    since = next(p for p in op["parameters"] if p["name"] == "since")
    assert since["in"] == "query" and since["required"] is False
    sample = doc["components"]["schemas"]["SampleView"]["properties"]
    assert {"t", "queue_length", "active", "capacity", "admissions_per_minute",
            "eta_error_seconds"} <= set(sample)  # fmt: skip


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan")])
def test_build_admin_refuses_a_bad_interval(interval: float) -> None:
    settings = Settings(rooms=(RoomPolicy(name="shop", capacity=1),), upstream="http://127.0.0.1:9")
    app = build_app(settings, store=MemoryStore())
    with pytest.raises(ValueError):
        build_admin(app.engine, TOKEN, history_interval=interval)
