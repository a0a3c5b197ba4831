"""A room's hot calls of one event-loop turn go to the store in one pipeline
(``adapters/redis_batch.py``), on a real redis-server, Redis Cluster and Sentinel: each
caller gets its own reply or its own error, ``NOSCRIPT`` is recovered in the calls' order, and
the server runs every call exactly once."""

from __future__ import annotations

import asyncio

import pytest
import redis

from tests.fixtures.redis_cluster import RedisClusterServers
from tests.fixtures.redis_sentinel import SentinelSet
from tests.fixtures.redis_server import ExternalRedis, RedisServer
from waitroom_proxy.adapters.lua_source import load_script_source
from waitroom_proxy.adapters.redis_batch import MAX_BATCH, Batcher
from waitroom_proxy.adapters.redis_clients import Script
from waitroom_proxy.adapters.redis_heartbeats import MAX_IDS
from waitroom_proxy.adapters.redis_keys import room_keys
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import PlaceStatus, RoomLimits

pytestmark = pytest.mark.redis

QUEUE = RoomLimits(capacity=1, direct_admit=False)
"""Every arrival waits (nobody is admitted directly)."""
ROOM = "batched"


def evalsha_calls(raw: redis.Redis) -> int:
    """Script calls the server ran (those refused with NOSCRIPT not counted)."""
    stats = raw.info("commandstats")
    return sum(
        int(stats.get(k, {}).get("calls", 0)) - int(stats.get(k, {}).get("failed_calls", 0))
        for k in ("cmdstat_evalsha", "cmdstat_eval")
    )


def connections(raw: redis.Redis) -> int:
    return int(raw.info("stats")["total_connections_received"])


async def test_concurrent_calls_share_pipelines_and_run_once(
    redis_store: RedisStore, redis_server: RedisServer | ExternalRedis
) -> None:
    """200 arrivals made at once: ⌈200 / MAX_BATCH⌉ pipelines on a handful of connections
    (one call in flight per connection would open 200), each arrival run once by the server,
    in the order of the calls; then 200 heartbeats at once, each its own place's reply, sent
    as ⌈200 / MAX_IDS⌉ calls (``redis_heartbeats``)."""
    n = 200
    with redis_server.client() as raw:
        await redis_store.arrive(ROOM, "first", QUEUE)  # connects; the script is cached
        calls0, conns0 = evalsha_calls(raw), connections(raw)
        stats = redis_store._batch.stats
        sends0 = stats.sends
        ids = [f"p{i:03d}" for i in range(n)]
        views = await asyncio.gather(*(redis_store.arrive(ROOM, p, QUEUE) for p in ids))
        assert evalsha_calls(raw) - calls0 == n
        assert stats.sends - sends0 == -(-n // MAX_BATCH)
        assert connections(raw) - conns0 <= 4
        # each caller its own reply: its place's rank; within a pipeline, the calls' order
        # (pipelines run side by side and may interleave, as lone calls did)
        assert [v.status for v in views] == [PlaceStatus.WAITING] * n
        queued = raw.zrange(room_keys(ROOM).queue, 0, -1)
        assert [v.position for v in views] == [queued.index(p) + 1 for p in ids]
        for lo in range(0, n, MAX_BATCH):
            one = [v.position for v in views[lo : lo + MAX_BATCH]]
            assert one == sorted(one)

        calls0 = evalsha_calls(raw)
        order = ids[::-1]
        beats = await asyncio.gather(*(redis_store.heartbeat(ROOM, p) for p in order))
        assert evalsha_calls(raw) - calls0 == -(-n // MAX_IDS)
        assert [b.position for b in beats] == [queued.index(p) + 1 for p in order]
        assert {b.score for b in beats} == {v.score for v in views}
        assert stats.pipelines >= n // MAX_BATCH + 1  # the heartbeat calls of one turn too


async def test_a_lone_call_is_sent_alone(redis_store: RedisStore) -> None:
    stats = redis_store._batch.stats
    await redis_store.arrive(ROOM, "one", QUEUE)
    pipelines = stats.pipelines
    for i in range(5):
        await redis_store.heartbeat(ROOM, "one")
        await redis_store.arrive(ROOM, f"solo-{i}", QUEUE)
    assert stats.pipelines == pipelines
    assert stats.depths.get(1, 0) >= 10


async def test_noscript_mid_batch_reruns_the_lost_calls_in_their_order(
    redis_store: RedisStore, redis_server: RedisServer | ExternalRedis
) -> None:
    """After SCRIPT FLUSH only the heartbeat script is loaded again: in one batch the
    heartbeats get their replies, the arrivals between them get NOSCRIPT and run again, as
    EVAL, in the order they were called (their positions say so)."""
    await redis_store.arrive(ROOM, "head", QUEUE)
    with redis_server.client() as raw:
        raw.script_flush()
        raw.script_load(load_script_source("heartbeat"))
    stats = redis_store._batch.stats
    reruns = stats.noscript_reruns
    calls = []
    for i in range(20):
        calls.append(redis_store.arrive(ROOM, f"new-{i:02d}", QUEUE))
        calls.append(redis_store.heartbeat(ROOM, "head"))
    views = await asyncio.gather(*calls)
    arrivals, beats = views[0::2], views[1::2]
    assert stats.noscript_reruns - reruns == 20
    assert [v.position for v in arrivals] == list(range(2, 22))
    assert all(b.status is PlaceStatus.WAITING and b.position == 1 for b in beats)
    # the scripts are cached again: the next batch needs no rerun
    await asyncio.gather(*(redis_store.heartbeat(ROOM, f"new-{i:02d}") for i in range(20)))
    assert stats.noscript_reruns - reruns == 20


async def test_flushes_racing_the_batches_fail_no_call(
    redis_store: RedisStore, redis_server: RedisServer | ExternalRedis
) -> None:
    """SCRIPT FLUSH from another connection while batches run: every call still succeeds."""

    async def flusher(stop: asyncio.Event) -> None:
        raw = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            while not stop.is_set():
                await raw.script_flush()
                await asyncio.sleep(0.002)
        finally:
            await raw.aclose()

    stop = asyncio.Event()
    task = asyncio.create_task(flusher(stop))
    try:
        for r in range(15):
            views = await asyncio.gather(
                *(redis_store.arrive(ROOM, f"r{r}-{i}", QUEUE) for i in range(40))
            )
            assert all(v.status is PlaceStatus.WAITING for v in views)
            assert [v.position for v in views] == list(range(40 * r + 1, 40 * r + 41))
    finally:
        stop.set()
        await task


async def test_an_error_reply_reaches_only_its_caller(
    redis_store: RedisStore, redis_server: RedisServer | ExternalRedis
) -> None:
    """Two heartbeat calls in one pipeline: one of waiting places (the script then writes
    0.1's ``hb`` key, here made a string: WRONGTYPE), one of places the room does not know (the
    script writes nothing for them); they differ in ``abandon_after_ms``, so they are two
    calls. Exactly the first call's heartbeats fail, each with its own StoreError; the others
    get their replies."""
    waiting = [f"w{i}" for i in range(10)]
    for p in waiting:
        await redis_store.arrive(ROOM, p, QUEUE)
    with redis_server.client() as raw:
        raw.set(room_keys(ROOM).hb, "not a zset")
    stats = redis_store._batch.stats
    pipelines = stats.pipelines
    gone = [f"gone{i}" for i in range(10)]
    mixed = [p for pair in zip(waiting, gone, strict=True) for p in pair]
    results = await asyncio.gather(
        *(redis_store.heartbeat(ROOM, p, 60_000 if p in gone else 120_000) for p in mixed),
        return_exceptions=True,
    )
    assert stats.pipelines == pipelines + 1
    failed = [p for p, r in zip(mixed, results, strict=True) if isinstance(r, StoreError)]
    assert failed == waiting
    assert len({id(r) for r in results if isinstance(r, StoreError)}) == len(waiting)
    assert all("WRONGTYPE" in str(r) for r in results if isinstance(r, StoreError))
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert [v.status for v in answered] == [PlaceStatus.UNKNOWN] * 10


async def test_the_batcher_alone_gives_each_caller_its_own_reply_or_error(
    redis_server: RedisServer | ExternalRedis,
) -> None:
    """A script that fails for one argument: that caller gets ResponseError, the calls after
    it in the same pipeline get their replies; the batch is split at ``max_batch``."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    script = Script(client, "return redis.call('INCRBY', KEYS[1], ARGV[1])")
    batcher = Batcher(client, max_batch=4)
    try:
        await client.delete("wr:{b}:n")
        args = ["1", "2", "x", "4", "5", "6"]
        results = await asyncio.gather(
            *(batcher.call("b", script, ["wr:{b}:n"], [a]) for a in args), return_exceptions=True
        )
        assert isinstance(results[2], redis.ResponseError)
        assert results[:2] == [1, 3] and results[3:] == [7, 12, 18]
        assert batcher.stats.depths == {4: 1, 2: 1}
    finally:
        await client.aclose()


async def test_a_cancelled_caller_leaves_the_others_their_replies(
    redis_store: RedisStore,
) -> None:
    await redis_store.arrive(ROOM, "stay", QUEUE)
    calls = [asyncio.ensure_future(redis_store.heartbeat(ROOM, "stay")) for _ in range(8)]
    await asyncio.sleep(0)
    calls[3].cancel()
    done = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(done[3], asyncio.CancelledError)
    assert all(d.position == 1 for i, d in enumerate(done) if i != 3)  # type: ignore[union-attr]


async def test_cluster_batches_per_room_on_every_shard(
    redis_cluster: RedisClusterServers,
) -> None:
    """Rooms on each of the three masters, their calls made at once: each call's reply its
    own. On a cluster every call is sent alone (a pipeline to a frozen node would wait one
    timeout per call: ``Batcher.cluster``)."""
    rooms = redis_cluster.rooms_per_master("batch")
    store = RedisStore(redis_cluster.url, timeout=2.0)
    try:
        await store.arrive(rooms[0], "warm", QUEUE)
        stats = store._batch.stats
        calls = [store.arrive(r, f"{r}-{i:02d}", QUEUE) for i in range(30) for r in rooms]
        views = await asyncio.gather(*calls)
        assert stats.pipelines == 0
        for j, r in enumerate(rooms):
            mine = views[j :: len(rooms)]
            first = 2 if j == 0 else 1
            assert sorted(v.position for v in mine) == list(range(first, first + 30))
        beats = await asyncio.gather(*(store.heartbeat(r, f"{r}-07") for r in rooms * 5))
        at_arrival = [views[7 * len(rooms) + j].position for j in range(len(rooms))]
        assert [b.position for b in beats] == at_arrival * 5
    finally:
        await store.close()


async def test_sentinel_client_batches(redis_sentinel: SentinelSet) -> None:
    store = RedisStore(redis_sentinel.url, timeout=2.0)
    try:
        await store.arrive(ROOM, "warm", QUEUE)
        pipelines = store._batch.stats.pipelines
        views = await asyncio.gather(*(store.arrive(ROOM, f"s{i}", QUEUE) for i in range(50)))
        assert [v.position for v in views] == list(range(2, 52))
        calls = store._beats.stats.calls
        beats = await asyncio.gather(*(store.heartbeat(ROOM, f"s{i}") for i in range(50)))
        assert [b.position for b in beats] == list(range(2, 52))
        assert store._batch.stats.pipelines >= pipelines + 1
        assert store._beats.stats.calls == calls + 1  # 50 heartbeats: one call
    finally:
        await store.close()
