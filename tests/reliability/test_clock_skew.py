"""One replica's clock runs 90 s ahead (an injected clock; Debian's faketime is not installed).

Three replicas share one Redis. Admission decisions use the store's clock (``TIME`` inside the
scripts), so capacity and FIFO must hold whatever a replica's clock says; tokens and tickets
carry replica times, so visitors moving between replicas must not be refused or re-queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import httpx

from tests.reliability.rig import JSON, client, proxy_rig, report
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.domain.policy import FailMode, RoomPolicy

SKEW = 90.0
CAPACITY = 3
WAITERS = 18


async def test_one_replica_90s_ahead(redis_server: Any) -> None:
    redis_server.flush()
    policy = RoomPolicy(name="skew", capacity=CAPACITY, heartbeat_interval=1,
                        fail_mode=FailMode.CLOSED)  # fmt: skip
    clocks = [time.time, time.time, lambda: time.time() + SKEW]
    stores = [RedisStore(redis_server.url, timeout=1.0) for _ in clocks]
    async with contextlib.AsyncExitStack() as stack:
        rigs = [
            await stack.enter_async_context(
                proxy_rig(policy, store=s, clock=c, server={"client_rate_limit": 0})
            )
            for s, c in zip(stores, clocks, strict=True)
        ]
        urls = [r.url for r in rigs]
        turn = itertools.count()

        def next_url() -> str:
            return urls[next(turn) % len(urls)]

        jar_clients: list[httpx.AsyncClient] = []
        sessions = []
        for _ in range(CAPACITY):
            c = client(urls[2])  # the sessions start on the skewed replica
            r = await c.get("/s")
            assert r.json() == {"origin": True}
            sessions.append(c)
        arrival: list[str] = []
        for i in range(WAITERS):
            c = client(urls[i % 3])
            r = await c.get("/w", headers=JSON)
            assert r.json()["status"] == "waiting"
            arrival.append(c.cookies["waitroom_ticket"])
            jar_clients.append(c)

        sent_back = 0
        session_requests = 0
        admitted_order: list[int] = []
        peak = 0
        stop = asyncio.Event()

        async def get_on_any(c: httpx.AsyncClient) -> bool:
            nonlocal sent_back, session_requests
            ok = True
            for url in urls:  # the session must be honoured on every replica
                r = await c.get(url + "/s", headers=JSON)
                session_requests += 1
                if r.json() != {"origin": True}:
                    sent_back += 1
                    ok = False
            return ok

        async def waiter(i: int, c: httpx.AsyncClient) -> None:
            while not stop.is_set():
                r = await c.post(next_url() + "/_waitroom/heartbeat")
                if r.status_code == 200 and r.json()["status"] == "admitted":
                    admitted_order.append(i)
                    await get_on_any(c)
                    await c.post(next_url() + "/_waitroom/leave")
                    return
                await asyncio.sleep(0.3)

        async def watch() -> None:
            nonlocal peak
            while not stop.is_set():
                st = await stores[0].stats("skew")
                peak = max(peak, st.active + st.promoted)
                await asyncio.sleep(0.05)

        for c in sessions:
            await get_on_any(c)
        watcher = asyncio.create_task(watch())
        tasks = [asyncio.create_task(waiter(i, c)) for i, c in enumerate(jar_clients)]
        for c in sessions:  # free the slots, one by one, through various replicas
            await c.post(next_url() + "/_waitroom/leave")
            await asyncio.sleep(0.2)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(40):
                await asyncio.gather(*tasks)
        stop.set()
        watcher.cancel()
        for t in tasks:
            t.cancel()
        for c in [*sessions, *jar_clients]:
            await c.aclose()
        for s in stores:
            await s.close()
        # Promotion order, from the controllers' events on all replicas (in emission order).
        index = {rigs[0].gate.admission.tickets.loads(v).place_id: i for i, v in enumerate(arrival)}
        promoted = sorted(
            (t, n, index[e.data["place_id"]])
            for r in rigs
            for n, (t, e) in enumerate(r.events.events)
            if e.type == "position.admitted" and e.data.get("place_id") in index
        )
    promotion_order = [i for _, _, i in promoted]
    inversions = sum(1 for a, b in itertools.pairwise(promotion_order) if b < a)
    report("clock skew +90 s on 1 of 3 replicas", waiters=WAITERS,
           admitted=len(admitted_order), promotions=len(promotion_order),
           fifo_inversions=inversions,
           store_peak_active=peak, capacity=CAPACITY, session_requests=session_requests,
           sessions_sent_back=sent_back)  # fmt: skip
    assert len(admitted_order) == WAITERS
    assert peak <= CAPACITY
    assert sorted(promotion_order) == list(range(WAITERS))
    assert inversions == 0, promotion_order
    assert sent_back == 0
