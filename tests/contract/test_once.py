"""``Store.once`` (one solved proof-of-work challenge buys one ticket), on every adapter."""

from __future__ import annotations

import asyncio

import pytest

from tests.contract.conftest import StoreEnv
from waitroom_proxy.adapters.redis_store import room_keys

R = "room-1"


async def test_an_id_is_accepted_once(store_env: StoreEnv) -> None:
    store = store_env.store
    assert await store.once(R, "challenge-a", 60_000) is True
    assert await store.once(R, "challenge-a", 60_000) is False
    assert await store.once(R, "challenge-b", 60_000) is True
    assert await store.once("room-2", "challenge-a", 60_000) is True, "ids are per room"


async def test_concurrent_redemptions_of_one_id_have_one_winner(store_env: StoreEnv) -> None:
    results = await asyncio.gather(*(store_env.store.once(R, "raced", 60_000) for _ in range(32)))
    assert results.count(True) == 1


async def test_the_record_expires_with_its_ttl(store_env: StoreEnv) -> None:
    store = store_env.store
    assert await store.once(R, "short", 5_000)
    if store_env.raw is not None:
        # Redis: the marker is a key of the room's hash tag with a PX expiry (bounded memory).
        key = room_keys(R).queue.removesuffix("queue") + "once:short"
        ttl = await store_env.raw.pttl(key)
        assert 0 < ttl <= 5_000
        return
    store_env.advance(4_000)
    assert not await store.once(R, "short", 5_000)
    store_env.advance(1_500)
    assert await store.once(R, "short", 5_000), "an expired record no longer blocks"


@pytest.mark.parametrize("key", ["", "a" * 65, "a:b", "x y", "{tag}"])
async def test_keys_that_could_leave_the_room_are_refused(store_env: StoreEnv, key: str) -> None:
    with pytest.raises(ValueError, match="once"):
        await store_env.store.once(R, key, 1000)
