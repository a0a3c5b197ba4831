"""A room's heartbeats go to the store as one call with many ids (``adapters/redis_heartbeats``),
on a real redis-server: each caller gets what a lone heartbeat would have told it, in the order
the heartbeats were made; a far-back heartbeat waits at most its ``linger`` for the others, a
heartbeat that may not wait takes the waiting ones along, and a call never exceeds
``MAX_IDS``."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from tests.fixtures.redis_server import ExternalRedis, RedisServer, free_port
from waitroom_proxy.adapters.redis_heartbeats import MAX_IDS
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import PlaceStatus, QueueView, RoomLimits

pytestmark = pytest.mark.redis

QUEUE = RoomLimits(capacity=1, direct_admit=False)
ROOM = "beats"


def shape(v: QueueView) -> tuple[PlaceStatus, int, int, int, int]:
    """A view without its clock (a touch made later reads a later ``now_ms``)."""
    return (v.status, v.position, v.queue_length, v.score, v.promoted_total)


async def test_one_call_answers_as_lone_calls_would(redis_store: RedisStore) -> None:
    """Waiting, promoted, active, tombstoned and unknown ids, some twice, in one call: each
    caller's view equals a lone heartbeat's on the same state."""
    ids = [f"p{i:02d}" for i in range(30)]
    for p in ids:
        await redis_store.arrive(ROOM, p, QUEUE)
    await redis_store.tick(ROOM, RoomLimits(capacity=3))  # p00-p02 promoted
    assert await redis_store.claim(ROOM, "p00", 60_000)  # active
    await redis_store.leave(ROOM, "p03", 60_000)  # tombstoned
    asked = [*ids, "p05", "p29", "nobody", "p00"]
    random.Random(7).shuffle(asked)
    calls = redis_store._beats.stats.calls
    together = await asyncio.gather(*(redis_store.heartbeat(ROOM, p) for p in asked))
    assert redis_store._beats.stats.calls == calls + 1
    alone = [await redis_store.heartbeat(ROOM, p) for p in asked]
    assert [shape(v) for v in together] == [shape(v) for v in alone]
    by_id = dict(zip(asked, together, strict=True))
    assert by_id["p00"].status is PlaceStatus.SPENT
    assert by_id["p01"].status is PlaceStatus.PROMOTED
    assert by_id["p03"].status is PlaceStatus.SPENT
    assert by_id["nobody"].status is PlaceStatus.UNKNOWN
    assert by_id["p04"].position == 1 and by_id["p29"].position == 26


async def test_ids_are_touched_in_the_order_of_their_heartbeats(redis_store: RedisStore) -> None:
    """``old`` has not been touched for longer than abandon_after: its heartbeat in the call
    abandons it, so ``new``, later in the same call, is told position 1 of 1; the second
    heartbeat of ``old`` finds it gone."""
    await redis_store.arrive(ROOM, "old", QUEUE)
    redis_store._advance_clock_for_tests(200_000)
    await redis_store.arrive(ROOM, "new", QUEUE)
    calls = redis_store._beats.stats.calls
    old, new, again = await asyncio.gather(
        *(redis_store.heartbeat(ROOM, p, 120_000) for p in ("old", "new", "old"))
    )
    assert (old.status, old.queue_length) == (PlaceStatus.UNKNOWN, 1)
    assert (new.status, new.position, new.queue_length) == (PlaceStatus.WAITING, 1, 1)
    assert again.status is PlaceStatus.UNKNOWN
    assert redis_store._beats.stats.calls == calls + 1


async def test_lingering_heartbeats_share_one_call(redis_store: RedisStore) -> None:
    """Ten far-back heartbeats made 5 ms apart with a linger of 0.3 s: one call of ten, sent
    0.3 s after the first. Then five lingering ones and one that may not wait: one call of
    six, sent at once (long before the linger ends)."""
    ids = [f"f{i}" for i in range(10)]
    for p in ids:
        await redis_store.arrive(ROOM, p, QUEUE)
    stats = redis_store._beats.stats
    calls, sizes = stats.calls, dict(stats.sizes)

    async def later(i: int, linger: float) -> tuple[QueueView, float]:
        await asyncio.sleep(0.005 * i)
        view = await redis_store.heartbeat(ROOM, ids[i], 120_000, linger)
        return view, time.monotonic()

    t0 = time.monotonic()
    done = await asyncio.gather(*(later(i, 0.3) for i in range(10)))
    assert [v.position for v, _ in done] == list(range(1, 11))
    assert stats.calls == calls + 1 and stats.sizes.get(10, 0) == sizes.get(10, 0) + 1
    assert all(0.25 <= t - t0 < 2.0 for _, t in done)

    t0 = time.monotonic()
    done = await asyncio.gather(*(later(i, 5.0) for i in range(5)), later(6, 0.0))
    assert [v.position for v, _ in done] == [1, 2, 3, 4, 5, 7]
    assert stats.calls == calls + 2 and stats.sizes.get(6, 0) == sizes.get(6, 0) + 1
    assert all(t - t0 < 1.0 for _, t in done)


async def test_a_call_carries_at_most_max_ids(redis_store: RedisStore) -> None:
    n = 2 * MAX_IDS + 22
    ids = [f"m{i:03d}" for i in range(n)]
    for p in ids:
        await redis_store.arrive(ROOM, p, QUEUE)
    stats = redis_store._beats.stats
    calls = stats.calls
    views = await asyncio.gather(*(redis_store.heartbeat(ROOM, p) for p in ids))
    assert [v.position for v in views] == list(range(1, n + 1))
    assert stats.calls == calls + 3
    assert stats.sizes[MAX_IDS] >= 2 and stats.sizes[22] >= 1


async def test_a_failed_call_fails_each_heartbeat_with_its_own_error() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.3)
    try:
        results = await asyncio.gather(
            *(store.heartbeat(ROOM, f"x{i}", 120_000, 0.01) for i in range(5)),
            return_exceptions=True,
        )
    finally:
        await store.close()
    assert all(isinstance(r, StoreError) for r in results)
    assert len({id(r) for r in results}) == 5


async def test_rooms_and_abandon_times_are_never_mixed(
    redis_store: RedisStore, redis_server: RedisServer | ExternalRedis
) -> None:
    """Heartbeats of two rooms (and of one room with two abandon_after values) made at once:
    one call for each (room, abandon_after), each view from its own room."""
    for room in ("ra", "rb"):
        for i in range(3):
            await redis_store.arrive(room, f"{room}{i}", QUEUE)
    stats = redis_store._beats.stats
    calls = stats.calls
    asked = [("ra", "ra2", 120_000), ("rb", "rb0", 120_000), ("ra", "ra0", 60_000)]
    asked += [("rb", "rb1", 120_000), ("ra", "ra1", 120_000)]
    views = await asyncio.gather(*(redis_store.heartbeat(r, p, a) for r, p, a in asked))
    assert [v.position for v in views] == [3, 1, 1, 2, 2]
    assert stats.calls == calls + 3
    with redis_server.client() as raw:
        assert raw.zcard("wr:{ra}:queue") == 3 and raw.zcard("wr:{rb}:queue") == 3
