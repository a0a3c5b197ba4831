"""Three replicas tick one room at once on a real Redis: the store alone keeps the rules.

2,000 waiters; three independent clients (replicas) tick concurrently while visitors claim their
slots and leave, and a watcher samples the room. Expected: capacity never exceeded, nobody
promoted twice, every promotion batch a contiguous run from the head (FIFO).
"""

from __future__ import annotations

import asyncio
import random

import pytest

from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.ports import PlaceStatus, RoomLimits

pytestmark = pytest.mark.redis

ROOM = "race"
WAITERS = 2_000
CAPACITY = 50
LIMITS = RoomLimits(
    capacity=CAPACITY,
    abandon_after_ms=600_000,
    claim_timeout_ms=600_000,
    session_ttl_ms=600_000,
    direct_admit=False,
)


async def test_three_replicas_tick_concurrently(redis_server: object) -> None:
    server = redis_server
    server.flush()  # type: ignore[attr-defined]
    url = server.url  # type: ignore[attr-defined]
    replicas = [RedisStore(url, timeout=5.0) for _ in range(3)]
    watcher = RedisStore(url, timeout=5.0)
    ids = [f"w{i:05d}" for i in range(WAITERS)]
    order = {place_id: i for i, place_id in enumerate(ids)}
    try:
        for start in range(0, WAITERS, 200):
            views = await asyncio.gather(
                *(
                    replicas[i % 3].arrive(ROOM, place_id, LIMITS, score=order[place_id])
                    for i, place_id in enumerate(ids[start : start + 200])
                )
            )
            assert all(v.status is PlaceStatus.WAITING for v in views)

        batches: list[list[str]] = []
        violations: list[tuple[int, int]] = []
        done = asyncio.Event()
        to_claim: asyncio.Queue[tuple[RedisStore, str]] = asyncio.Queue()
        rng = random.Random(7)
        per_replica = [0, 0, 0]

        async def replica_loop(store: RedisStore) -> None:
            while not done.is_set():
                result = await store.tick(ROOM, LIMITS)
                if result.promoted:
                    batches.append(result.promoted)
                    per_replica[replicas.index(store)] += 1
                    for place_id in result.promoted:
                        to_claim.put_nowait((store, place_id))
                await asyncio.sleep(0)

        async def visitor_loop() -> None:
            while not done.is_set():
                try:
                    store, place_id = await asyncio.wait_for(to_claim.get(), 0.1)
                except TimeoutError:
                    continue
                assert await store.claim(ROOM, place_id, 600_000)
                if rng.random() < 0.5:
                    await asyncio.sleep(0)
                assert await store.leave(ROOM, place_id, 1_000) is PlaceStatus.ACTIVE

        async def watch() -> None:
            while not done.is_set():
                stats = await watcher.stats(ROOM)
                if stats.active + stats.promoted > CAPACITY:
                    violations.append((stats.active, stats.promoted))
                if stats.admitted_total >= WAITERS and stats.active + stats.promoted == 0:
                    done.set()
                await asyncio.sleep(0)

        tasks = [asyncio.create_task(replica_loop(s)) for s in replicas]
        tasks += [asyncio.create_task(visitor_loop()) for _ in range(8)]
        tasks.append(asyncio.create_task(watch()))
        try:
            await asyncio.wait_for(done.wait(), 60)
        finally:
            done.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors

        assert violations == []
        promoted = [p for batch in batches for p in batch]
        assert len(promoted) == len(set(promoted)) == WAITERS  # nobody twice, nobody lost
        # FIFO: each batch is a contiguous run, and the runs tile the arrival order.
        runs = sorted((order[b[0]], [order[p] for p in b]) for b in batches)
        expected = 0
        for first, positions in runs:
            assert first == expected
            assert positions == list(range(first, first + len(positions)))
            expected += len(positions)
        assert expected == WAITERS
        stats = await watcher.stats(ROOM)
        assert (stats.queue_length, stats.active, stats.promoted) == (0, 0, 0)
        assert stats.admitted_total == WAITERS
        assert len(batches) >= WAITERS // CAPACITY
        assert all(per_replica), per_replica  # every replica really took part
    finally:
        for store in [*replicas, watcher]:
            await store.close()
