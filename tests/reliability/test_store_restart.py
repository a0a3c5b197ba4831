"""The store restarts empty (failover without persistence) while people wait.

Waiters keep polling; their signed tickets carry their score, so each re-enters the new,
empty store with the place it had. Each replica notices the loss (the room's incarnation marker
is gone), counts its known sessions again, and admissions are held for two poll intervals so
waiters re-enter before anyone is promoted. Measured: the share of waiters admitted in their
original order (longest in-order run / all), and the store's peak count against capacity.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from typing import Any

import httpx

from tests.reliability.rig import JSON, admitted_client, client, proxy_rig, report
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.domain.policy import FailMode, RoomPolicy

CAPACITY = 3
WAITERS = 30


def longest_increasing(seq: list[int]) -> int:
    tails: list[int] = []
    for x in seq:
        i = bisect.bisect_left(tails, x)
        if i == len(tails):
            tails.append(x)
        else:
            tails[i] = x
    return len(tails)


async def test_store_restarted_empty_waiters_keep_order(redis_server: Any) -> None:
    redis_server.flush()
    store = RedisStore(redis_server.url, timeout=0.3)
    policy = RoomPolicy(name="failover", capacity=CAPACITY, heartbeat_interval=1,
                        abandon_after=60, fail_mode=FailMode.CLOSED)  # fmt: skip
    try:
        async with proxy_rig(
            policy, store=store, server={"client_rate_limit": 0}, controller_interval=0.2
        ) as rig:
            sessions = [await admitted_client(rig.url) for _ in range(CAPACITY)]
            waiters: list[httpx.AsyncClient] = []
            position: dict[str, int] = {}
            for i in range(WAITERS):
                c = client(rig.url)
                r = await c.get("/w", headers=JSON)
                assert r.json()["position"] == i + 1
                ticket = rig.gate.admission.tickets.loads(c.cookies["waitroom_ticket"])
                position[ticket.place_id] = i + 1
                waiters.append(c)

            admitted_at: dict[int, float] = {}
            stop = asyncio.Event()

            async def poll(i: int, c: httpx.AsyncClient) -> None:
                await asyncio.sleep(i * 0.03)  # spread the polls over the interval
                while not stop.is_set():
                    r = await c.post("/_waitroom/heartbeat")
                    if r.status_code == 200 and r.json()["status"] == "admitted":
                        admitted_at[i + 1] = time.monotonic()
                        await asyncio.sleep(0.3)  # uses the site a moment, then leaves
                        await c.post("/_waitroom/leave")
                        return
                    await asyncio.sleep(1.0)

            tasks = [asyncio.create_task(poll(i, c)) for i, c in enumerate(waiters)]
            await asyncio.sleep(1.2)
            t_kill = time.monotonic()
            redis_server.kill()
            await asyncio.sleep(0.5)
            redis_server.start()  # same port, empty
            # The old sessions keep passing (tokens verify locally), then leave: their slots
            # go to the waiters, who must be admitted in their original order.
            for c in sessions:
                assert (await c.get("/s")).status_code == 200
            await asyncio.sleep(1.0)  # the replica notices the loss and counts them again
            for c in sessions:
                await c.post("/_waitroom/leave")
            deadline = time.monotonic() + 40
            peak_active = 0
            while len(admitted_at) < WAITERS and time.monotonic() < deadline:
                stats = await store.stats(rig.room)
                peak_active = max(peak_active, stats.active + stats.promoted)
                await asyncio.sleep(0.1)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for c in [*sessions, *waiters]:
                await c.aclose()

            promoted_order = [
                position[e.data["place_id"]]
                for t, e in rig.events.events
                if t >= t_kill
                and e.type in ("position.admitted", "session.started")
                and e.data.get("place_id") in position
            ]
            seen: set[int] = set()
            order = [p for p in promoted_order if not (p in seen or seen.add(p))]
            in_order = longest_increasing(order) / WAITERS
            report(
                "store restarted empty",
                waiters=WAITERS,
                admitted=len(admitted_at),
                in_order_share=in_order,
                first_admitted=order[:6],
                store_peak_active_after_restart=peak_active,
            )
            assert len(admitted_at) == WAITERS, "a waiter lost the place"
            assert in_order >= 0.99, order
            assert peak_active <= CAPACITY
    finally:
        await store.close()
        redis_server.flush()


async def test_capacity_holds_across_store_restart(redis_server: Any) -> None:
    redis_server.flush()
    store = RedisStore(redis_server.url, timeout=0.3)
    policy = RoomPolicy(name="failcap", capacity=CAPACITY, activity_interval=1)
    try:
        async with proxy_rig(policy, store=store, server={"client_rate_limit": 0}) as rig:
            sessions = [await admitted_client(rig.url) for _ in range(CAPACITY)]
            redis_server.kill()
            redis_server.start()
            await asyncio.sleep(1.5)
            for c in sessions:  # activity is reported: the store could learn of them again
                assert (await c.get("/s")).status_code == 200
            await asyncio.sleep(2.5)
            async with client(rig.url) as newcomer:
                r = await newcomer.get("/n", headers=JSON)
            for c in sessions:
                await c.aclose()
            assert r.json().get("status") == "waiting", "a newcomer got in beyond capacity"
    finally:
        await store.close()
        redis_server.flush()
