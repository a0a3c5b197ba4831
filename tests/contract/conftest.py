"""The store contract suite runs once per store adapter (``store_env`` is parametrised).

- ``memory``: ``MemoryStore`` with a fake clock.
- ``fakeredis``: ``RedisStore`` on an in-process ``FakeAsyncRedis`` (Lua through lupa).
- ``redis``: ``RedisStore`` on the session's real server (marker ``redis``).
- ``cluster``: ``RedisStore`` on the session's real 3-master Redis Cluster
  (``redis+cluster://``; marker ``redis``).

Redis scripts read the server's ``TIME``; tests move time with ``StoreEnv.advance``, which for
the Redis variants adds a test-only offset to every script's clock. Real time still passes
between calls, so time-dependent tests use durations of seconds and steps well clear of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.ports import Store


class FakeClock:
    """A clock that moves only when told to (seconds)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms / 1000


@dataclass
class StoreEnv:
    """A store under test and a way to move its clock."""

    kind: str
    store: Store
    advance: Callable[[int], None]
    """Move the store's clock forward by this many milliseconds."""
    raw: Any = None
    """For Redis variants: an async client on the same data (for TTL checks)."""


@pytest.fixture(
    params=[
        "memory",
        "fakeredis",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
async def store_env(request: pytest.FixtureRequest) -> AsyncIterator[StoreEnv]:
    """Each store adapter in turn, empty."""
    kind = request.param
    if kind == "memory":
        clock = FakeClock()
        yield StoreEnv(kind, MemoryStore(clock=clock), clock.advance)
        return
    if kind == "fakeredis":
        client = fakeredis.FakeAsyncRedis(decode_responses=True)
        store = RedisStore(client=client)
        yield StoreEnv(kind, store, store._advance_clock_for_tests, raw=client)
        await store.close()
        await client.aclose()
        return
    if kind == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        store = RedisStore(cluster.url, timeout=2.0)
        raw_cluster = RedisCluster(
            host="127.0.0.1", port=cluster.nodes[0].port, decode_responses=True
        )
        try:
            yield StoreEnv(kind, store, store._advance_clock_for_tests, raw=raw_cluster)
        finally:
            await raw_cluster.aclose()
            await store.close()
        return
    server = request.getfixturevalue("redis_server")
    server.flush()
    store = RedisStore(server.url, timeout=2.0)
    raw = redis.asyncio.Redis.from_url(server.url, decode_responses=True)
    try:
        yield StoreEnv(kind, store, store._advance_clock_for_tests, raw=raw)
    finally:
        await raw.aclose()
        await store.close()
