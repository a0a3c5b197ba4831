"""The store loses live sessions; they re-assert themselves from their signed tokens.

Each case: a room of capacity 3 full of sessions that keep using the site (a request every
0.1 s, counted at the origin per visitor), then a loss: FLUSHALL, a restart of redis-server
without persistence, a DEL of the room's ``active`` key only (the incarnation marker survives:
a partial loss), a DEL of every key of the room, each with the proxy kept or restarted; and the
in-process store with the proxy restarted. Then newcomers arrive. Promised: the sessions are
counted again, the newcomers wait (the visitors passing at the origin never outnumber the
capacity), the loss is counted once, and once the old sessions leave the newcomers get in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.reliability.rig import JSON, Rig, admitted_client, client, proxy_rig, report
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.redis_store import RedisStore, room_keys
from waitroom_proxy.domain.policy import FailMode, RoomPolicy

CAPACITY = 3
POLICY = RoomPolicy(
    name="partial", capacity=CAPACITY, heartbeat_interval=1, abandon_after=60,
    fail_mode=FailMode.CLOSED,
)  # fmt: skip
"""``activity_interval`` stays at its default (30 s): re-assertion must not wait for it."""


class Visitors:
    """Sessions that keep using the site; every request that reaches the origin is counted."""

    def __init__(self) -> None:
        self.passes: list[tuple[float, str]] = []
        self.stop = asyncio.Event()

    async def use(self, name: str, c: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            try:
                r = await c.get(f"/s/{name}")
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
                continue
            if r.status_code == 200 and r.content == b'{"origin":true}':
                self.passes.append((time.monotonic(), name))
            await asyncio.sleep(0.1)

    def peak(self, since: float) -> int:
        """Most distinct visitors that passed within any 1 s window after ``since``."""
        times = [(t, n) for t, n in self.passes if t >= since]
        best = 0
        for t0, _ in times:
            best = max(best, len({n for t, n in times if t0 <= t < t0 + 1.0}))
        return best


def moved(c: httpx.AsyncClient, url: str) -> httpx.AsyncClient:
    """The same visitor (its cookies) in front of another proxy process."""
    return client(url, cookies=c.cookies)


async def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


def losses(rig: Rig) -> float:
    reg = rig.gate.metrics.registry
    return sum(
        reg.get_sample_value("waitroom_store_losses_total", {"room": POLICY.name, "kind": k}) or 0
        for k in ("marker", "sessions")
    )


async def leave_then_admitted(
    sessions: list[httpx.AsyncClient], newcomers: list[httpx.AsyncClient]
) -> None:
    """The old sessions leave; then every newcomer's poll admits it."""
    for c in sessions:
        await c.post("/_waitroom/leave")
    admitted: set[int] = set()

    async def all_in() -> bool:
        for i, c in enumerate(newcomers):
            if i not in admitted:
                r = await c.post("/_waitroom/heartbeat")
                if r.status_code == 200 and r.json().get("status") == "admitted":
                    admitted.add(i)
        return len(admitted) == len(newcomers)

    await wait_for(all_in, 30, "the newcomers admitted after the old sessions left")


@contextlib.asynccontextmanager
async def rig_on(store: Any) -> AsyncIterator[Rig]:
    async with proxy_rig(
        POLICY, store=store, server={"client_rate_limit": 0}, controller_interval=0.2
    ) as rig:
        yield rig


async def scenario(store: Any, lose: Any, *, restart_proxy: bool, store_after: Any = None) -> None:
    """Run one loss; ``lose`` empties (part of) the store; ``store_after`` is the store of the
    restarted proxy (default: the same)."""
    visitors = Visitors()
    async with contextlib.AsyncExitStack() as stack:
        rig = await stack.enter_async_context(rig_on(store))
        sessions = [await admitted_client(rig.url) for _ in range(CAPACITY)]
        tasks = [asyncio.create_task(visitors.use(f"old{i}", c)) for i, c in enumerate(sessions)]
        await asyncio.sleep(0.5)
        t_loss = time.monotonic()
        if restart_proxy:
            visitors.stop.set()
            await asyncio.gather(*tasks)
            await stack.aclose()
            await lose()
            rig = await stack.enter_async_context(rig_on(store_after or store))
            old, sessions = sessions, [moved(c, rig.url) for c in sessions]
            for c in old:
                await c.aclose()
            visitors.stop.clear()
            tasks = [
                asyncio.create_task(visitors.use(f"old{i}", c)) for i, c in enumerate(sessions)
            ]
        else:
            await lose()
        live = rig.gate.store

        async def recounted() -> bool:
            return (await live.stats(POLICY.name)).active >= CAPACITY

        await wait_for(recounted, 15, "the live sessions counted again")
        t_recounted = time.monotonic()
        newcomers = [client(rig.url) for _ in range(CAPACITY)]
        for c in newcomers:
            r = await c.get("/n", headers=JSON)
            assert r.json().get("status") == "waiting", "a newcomer got in beyond capacity"
        await asyncio.sleep(1.5)  # more controller passes: still nobody promoted
        stats = await live.stats(POLICY.name)
        assert (stats.active, stats.promoted, stats.queue_length) == (CAPACITY, 0, CAPACITY)
        visitors.stop.set()
        await asyncio.gather(*tasks)
        peak = visitors.peak(t_loss)
        assert peak <= CAPACITY, f"{peak} visitors passed at once"
        assert {n for t, n in visitors.passes if t >= t_recounted} == {
            f"old{i}" for i in range(CAPACITY)
        }, "a live session was refused"
        assert losses(rig) == 1, "the loss is counted once"

        t_left = time.monotonic()
        await leave_then_admitted(sessions, newcomers)
        report(
            "partial loss",
            restart_proxy=restart_proxy,
            recounted_after_s=t_recounted - t_loss,
            newcomers_in_after_leave_s=time.monotonic() - t_left,
            peak_passing=peak,
            losses=losses(rig),
        )
        for c in [*sessions, *newcomers]:
            await c.aclose()


@pytest.mark.parametrize("restart_proxy", [False, True], ids=["proxy-kept", "proxy-restarted"])
@pytest.mark.parametrize("loss", ["flushall", "redis-restart", "del-active", "del-room"])
async def test_lost_sessions_reassert_on_redis(
    redis_server: Any, loss: str, restart_proxy: bool
) -> None:
    redis_server.flush()
    store = RedisStore(redis_server.url, timeout=0.5)
    raw = redis_server.client()

    async def lose() -> None:
        if loss == "flushall":
            raw.flushall()
        elif loss == "redis-restart":
            redis_server.kill()
            redis_server.start()  # same port, empty (no persistence)
        elif loss == "del-active":
            assert raw.exists(room_keys(POLICY.name).meta), "the marker must survive"
            raw.delete(room_keys(POLICY.name).active)
        else:
            raw.delete(*room_keys(POLICY.name))

    try:
        await scenario(store, lose, restart_proxy=restart_proxy)
    finally:
        raw.close()
        await store.close()
        redis_server.flush()


async def test_memory_store_proxy_restarted() -> None:
    """The in-process store goes with the process: a restarted proxy starts empty, and the
    sessions it let in re-assert themselves from their tokens."""

    async def lose() -> None:
        return None

    await scenario(MemoryStore(), lose, restart_proxy=True, store_after=MemoryStore())


async def test_memory_store_partial_loss() -> None:
    store = MemoryStore()

    async def lose() -> None:
        state = store._rooms[POLICY.name]
        state.active.clear()
        state.deadlines.clear()
        assert "incarnation" in state.meta

    await scenario(store, lose, restart_proxy=False)


@pytest.mark.parametrize("loss", ["flushall", "del-active"])
async def test_ended_and_forged_sessions_never_come_back(redis_server: Any, loss: str) -> None:
    """A session that left before the loss replays its cookie; a forged token, and a genuine
    one of another room, are sent: none passes (each is a newcomer, queued: the room is full),
    none is counted, the store's count is only the live sessions'."""
    redis_server.flush()
    store = RedisStore(redis_server.url, timeout=0.5)
    raw = redis_server.client()
    other = RoomPolicy(name="other", capacity=5, match=("*/other/",))
    try:
        async with proxy_rig(
            (POLICY, other), store=store, server={"client_rate_limit": 0}, controller_interval=0.2
        ) as rig:
            gone = await admitted_client(rig.url)
            kept_cookie = gone.cookies["waitroom_session"]
            await gone.post("/_waitroom/leave")
            await gone.aclose()
            live = [await admitted_client(rig.url) for _ in range(CAPACITY)]  # the room is full
            foreign = await admitted_client(rig.url, "/other/x")
            foreign_cookie = foreign.cookies["waitroom_session"]
            await foreign.aclose()
            body, _, sig = kept_cookie.rpartition(".")
            forged = f"{body}.{'A' * len(sig)}"
            replays = [client(rig.url, cookies={"waitroom_session": v})
                       for v in (kept_cookie, forged, foreign_cookie)]  # fmt: skip
            if loss == "flushall":
                raw.flushall()
            else:
                raw.delete(room_keys(POLICY.name).active)

            async def recounted() -> bool:
                for c in live:
                    assert (await c.get("/s")).json() == {"origin": True}
                return (await rig.gate.store.stats(POLICY.name)).active >= CAPACITY

            # Until the loss is seen (one controller pass) a newcomer could take a lost slot:
            # the replays start once the live sessions are counted again.
            await wait_for(recounted, 15, "the live sessions counted again")
            for _ in range(15):  # 1.5 s of controller passes, every token used again
                for c in [*live, *replays]:
                    r = await c.get("/s", headers=JSON)
                    if c in replays:
                        assert r.content != b'{"origin":true}', "an ended or forged token passed"
                        assert r.status_code < 500, r.text[:200]
                await asyncio.sleep(0.1)
            stats = await rig.gate.store.stats(POLICY.name)
            assert stats.active == CAPACITY, "only the live sessions are counted"
            assert stats.queue_length == len(replays), "each replay waits as a newcomer"
            for c in [*live, *replays]:
                await c.aclose()
    finally:
        raw.close()
        await store.close()
        redis_server.flush()


@pytest.mark.parametrize("loss", ["flushall", "redis-restart", "del-room"])
async def test_newcomers_right_after_a_loss_wait(redis_server: Any, loss: str) -> None:
    """The store lost the room with its marker and nobody has seen it yet (no controller pass
    since): the room looks empty, but a newcomer must not be admitted into a lost session's
    slot (``RoomLimits.marker``). Each waits; once the sessions are counted again and leave,
    the newcomers get in."""
    redis_server.flush()
    store = RedisStore(redis_server.url, timeout=0.5)
    raw = redis_server.client()
    visitors = Visitors()
    try:
        # Passes 3 s apart: the newcomers arrive before the next one sees the loss.
        async with proxy_rig(
            POLICY, store=store, server={"client_rate_limit": 0}, controller_interval=3.0
        ) as rig:
            sessions = [await admitted_client(rig.url) for _ in range(CAPACITY)]
            tasks = [asyncio.create_task(visitors.use(f"old{i}", c))
                     for i, c in enumerate(sessions)]  # fmt: skip
            t_loss = time.monotonic()
            if loss == "flushall":
                raw.flushall()
            elif loss == "redis-restart":
                redis_server.kill()
                redis_server.start()
            else:
                raw.delete(*room_keys(POLICY.name))
            newcomers = [client(rig.url) for _ in range(CAPACITY)]
            for c in newcomers:
                r = await c.get("/n", headers=JSON)
                assert r.status_code == 200, r.text[:200]
                assert r.json().get("status") == "waiting", "a newcomer took a lost slot"

            async def recounted() -> bool:
                return (await store.stats(POLICY.name)).active >= CAPACITY

            await wait_for(recounted, 15, "the live sessions counted again")
            await asyncio.sleep(1.0)
            stats = await store.stats(POLICY.name)
            assert (stats.active, stats.promoted) == (CAPACITY, 0), stats
            visitors.stop.set()
            await asyncio.gather(*tasks)
            assert visitors.peak(t_loss) <= CAPACITY
            await leave_then_admitted(sessions, newcomers)
            for c in [*sessions, *newcomers]:
                await c.aclose()
    finally:
        raw.close()
        await store.close()
        redis_server.flush()
