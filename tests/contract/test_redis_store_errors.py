"""What only the Redis store adapter has: key TTLs, the hash tag, its errors and its scripts."""

from __future__ import annotations

import time

import pytest

from tests.contract.conftest import StoreEnv
from tests.contract.helpers import ACTIVE, LIM, R, fill, limits
from tests.fixtures.redis_server import free_port
from waitroom_proxy.adapters.redis_store import RedisStore, room_keys
from waitroom_proxy.errors import StoreError

# -- Redis specifics -----------------------------------------------------------------------------


@pytest.mark.parametrize("store_env", ["fakeredis", "redis", "cluster"], indirect=True)
async def test_every_key_has_a_ttl(store_env: StoreEnv) -> None:
    """Redis adapters only: the memory store has no keys."""
    s = store_env.store
    lim = limits(capacity=1)
    await s.arrive(R, "a", lim)
    await fill(s, ["b", "c"])
    await s.tick(R, limits(capacity=2))
    await s.claim(R, "b", 10_000)
    await s.leave(R, "a", 60_000)
    await s.set_meta(R, {"paused": "1"})
    await s.heartbeat(R, "c")
    everywhere = {"target_nodes": "primaries"} if store_env.kind == "cluster" else {}
    keys = sorted(await store_env.raw.keys("*", **everywhere))
    # promoted: emptied by the claim; hb: version 0.1's heartbeat set, never created.
    assert keys == sorted(k for k in room_keys(R) if not k.endswith((":promoted", ":hb")))
    # A day past the longest duration the last write knew of (tombstones: spent_for_ms).
    longest = 86_400_000 + max(10_000, LIM.spent_for_ms)
    for key in keys:
        ttl = await store_env.raw.pttl(key)
        assert 86_000_000 <= ttl <= longest + 100_000, (key, ttl)


async def test_room_name_must_not_break_the_hash_tag(store_env: StoreEnv) -> None:
    with pytest.raises(ValueError):
        await store_env.store.arrive("a}b{c", "x", LIM)


async def test_store_error_on_closed_port() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    start = time.monotonic()
    try:
        for call in (
            store.ping(),
            store.arrive(R, "a", LIM),
            store.heartbeat(R, "a"),
            store.tick(R, LIM),
            store.stats(R),
            store.get_meta(R),
            store.set_meta(R, {"a": "b"}),
            store.claim(R, "a", 1),
            store.touch(R, ["a"], 1),
            store.leave(R, "a", 1),
            store.revoked_since(R, 0),
        ):
            with pytest.raises(StoreError):
                await call
    finally:
        await store.close()
    assert time.monotonic() - start < 5


@pytest.mark.redis
async def test_store_error_on_frozen_server(redis_server: object) -> None:
    server = redis_server
    store = RedisStore(server.url, timeout=0.3)  # type: ignore[attr-defined]
    try:
        await store.ping()
        server.pause()  # type: ignore[attr-defined]
        try:
            start = time.monotonic()
            with pytest.raises(StoreError, match="Timeout"):
                await store.arrive(R, "a", LIM)
            assert time.monotonic() - start < 1.5
        finally:
            server.resume()  # type: ignore[attr-defined]
        await store.ping()  # recovers by itself
    finally:
        await store.close()


@pytest.mark.parametrize("store_env", ["fakeredis", "redis", "cluster"], indirect=True)
async def test_script_error_becomes_store_error(store_env: StoreEnv) -> None:
    """Redis adapters only: the memory store has no scripts."""
    await store_env.raw.set(room_keys(R).queue, "not a zset")
    with pytest.raises(StoreError, match="arrive"):
        await store_env.store.arrive(R, "a", LIM)


@pytest.mark.parametrize("store_env", ["fakeredis", "redis", "cluster"], indirect=True)
async def test_scripts_reload_after_script_flush(store_env: StoreEnv) -> None:
    """Redis adapters only: the memory store has no scripts."""
    s = store_env.store
    await s.arrive(R, "a", LIM)
    await store_env.raw.script_flush()
    assert (await s.arrive(R, "b", LIM)).status is ACTIVE
