"""The ``Store`` contract, run against every adapter: tick (promotion, abandonment, no-shows,
session expiry), touch and claim."""

from __future__ import annotations

from tests.contract.conftest import StoreEnv
from tests.contract.helpers import ACTIVE, LIM, SPENT, UNKNOWN, R, fill, limits
from waitroom_proxy.ports import TickResult

# -- tick ----------------------------------------------------------------------------------------


async def test_tick_empty_room(store_env: StoreEnv) -> None:
    assert await store_env.store.tick("empty", LIM) == TickResult()


async def test_tick_promotes_free_slots_from_head(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=3)
    assert (await s.arrive(R, "x", lim)).status is ACTIVE
    await fill(s, ["a", "b", "c", "d", "e"])
    result = await s.tick(R, lim)
    assert result.promoted == ["a", "b"]
    assert (await s.tick(R, lim)).promoted == []
    stats = await s.stats(R)
    assert (stats.active, stats.promoted, stats.queue_length, stats.admitted_total) == (1, 2, 3, 3)
    assert (await s.heartbeat(R, "c")).position == 1
    # Claiming keeps the slot taken; leaving frees it.
    assert await s.claim(R, "a", 10_000)
    assert (await s.tick(R, lim)).promoted == []
    await s.leave(R, "x", 0)
    assert (await s.tick(R, lim)).promoted == ["c"]


async def test_tick_respects_rate_bucket(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=100, admit_rate=120, abandon_after_ms=600_000)  # burst 2, 2/s
    await fill(s, [f"w{i:02d}" for i in range(20)])
    assert (await s.tick(R, lim)).promoted == ["w00", "w01"]
    assert (await s.tick(R, lim)).promoted == []
    store_env.advance(500)  # one token
    assert (await s.tick(R, lim)).promoted == ["w02"]
    store_env.advance(60_000)  # the bucket holds at most the burst
    assert (await s.tick(R, lim)).promoted == ["w03", "w04"]
    assert (await s.stats(R)).admitted_total == 5


async def test_tick_promote_false_and_force(store_env: StoreEnv) -> None:
    s = store_env.store
    paused = limits(capacity=3, admit_rate=60, promote=False)
    await fill(s, ["a", "b", "c", "d", "e"])
    assert (await s.tick(R, paused)).promoted == []
    # Force ignores ``promote`` and the bucket, but not capacity.
    assert (await s.tick(R, paused, force=2)).promoted == ["a", "b"]
    assert (await s.tick(R, paused, force=5)).promoted == ["c"]
    assert (await s.tick(R, paused, force=5)).promoted == []
    stats = await s.stats(R)
    assert (stats.promoted, stats.queue_length, stats.admitted_total) == (3, 2, 3)


async def test_tick_force_adds_to_normal_promotion(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=10, admit_rate=60)  # one token
    await fill(s, [f"w{i}" for i in range(6)])
    result = await s.tick(R, lim, force=2)
    assert result.promoted == ["w0", "w1", "w2"]


async def test_abandoned_waiters_removed_and_skipped(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=1, session_ttl_ms=600_000)
    assert (await s.arrive(R, "x", lim)).status is ACTIVE
    await fill(s, ["a", "b", "c"])
    store_env.advance(6_000)
    await s.heartbeat(R, "b")
    await s.arrive(R, "c", lim)  # re-arrival also counts as a heartbeat
    store_env.advance(6_000)  # a silent 12 s > 10 s; b and c 6 s
    result = await s.tick(R, lim)
    assert result.abandoned == ["a"] and result.promoted == []
    assert (await s.heartbeat(R, "a")).status is UNKNOWN
    assert (await s.heartbeat(R, "b")).position == 1
    await s.leave(R, "x", 0)
    assert (await s.tick(R, lim)).promoted == ["b"]


async def test_abandoned_waiter_not_promoted_in_same_tick(store_env: StoreEnv) -> None:
    s = store_env.store
    await fill(s, ["a", "b"])
    store_env.advance(6_000)
    await s.heartbeat(R, "b")
    store_env.advance(6_000)
    result = await s.tick(R, limits(capacity=5))
    assert (result.abandoned, result.promoted) == (["a"], ["b"])


async def test_no_show_reclaim(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=1)
    await fill(s, ["a", "b"])
    assert (await s.tick(R, lim)).promoted == ["a"]
    store_env.advance(5_000)
    assert (await s.tick(R, lim)) == TickResult()
    store_env.advance(6_000)
    await s.heartbeat(R, "b")
    result = await s.tick(R, lim)
    assert (result.no_shows, result.promoted) == (["a"], ["b"])
    assert not await s.claim(R, "a", 10_000)
    assert (await s.heartbeat(R, "a")).status is SPENT  # promoted once: its ticket is used
    assert await s.claim(R, "b", 10_000)


async def test_session_expiry_and_touch(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=2)
    assert (await s.arrive(R, "a", lim)).status is ACTIVE
    assert (await s.arrive(R, "b", lim)).status is ACTIVE
    store_env.advance(6_000)
    assert await s.touch(R, ["a", "nobody"], 10_000) == 1
    store_env.advance(6_000)  # b: 12 s since admission > 10 s; a: touched 6 s ago
    result = await s.tick(R, lim)
    assert result.expired_sessions == ["b"]
    assert await s.touch(R, ["a", "b"], 10_000) == 1, "a is active still, b is not"
    assert (await s.heartbeat(R, "b")).status is SPENT  # the session ended: tombstone stays
    # Touch never shortens a deadline.
    assert await s.touch(R, ["a"], 1) == 1
    store_env.advance(2_000)
    assert (await s.tick(R, lim)).expired_sessions == []


async def test_touch_never_resurrects(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=1, abandon_after_ms=600_000)
    assert (await s.arrive(R, "a", lim)).status is ACTIVE
    await fill(s, ["w"])
    store_env.advance(11_000)
    result = await s.tick(R, lim)
    assert (result.expired_sessions, result.promoted) == (["a"], ["w"])
    # Expired, promoted-not-claimed and unknown ids are all ignored.
    assert await s.touch(R, ["a", "w", "nobody"], 10_000) == 0
    assert await s.touch(R, [], 10_000) == 0
    stats = await s.stats(R)
    assert (stats.active, stats.promoted, stats.queue_length) == (0, 1, 0)


async def test_claim(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=1)
    await fill(s, ["a", "b"])
    assert not await s.claim(R, "a", 10_000)  # waiting, not promoted
    assert not await s.claim(R, "nobody", 10_000)
    await s.tick(R, lim)
    assert await s.claim(R, "a", 10_000)
    assert not await s.claim(R, "a", 10_000)  # a place is claimed once
    stats = await s.stats(R)
    assert (stats.active, stats.promoted, stats.admitted_total) == (1, 0, 1)
    store_env.advance(11_000)
    assert (await s.tick(R, lim)).expired_sessions == ["a"]


async def test_tick_lists_are_capped(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=5_000, count_only=True)
    for i in range(1_200):
        await s.arrive(R, f"s{i:04d}", lim)
    store_env.advance(11_000)
    first = await s.tick(R, lim)
    second = await s.tick(R, lim)
    assert len(first.expired_sessions) == 1_000
    assert len(second.expired_sessions) == 200
    assert (await s.stats(R)).active == 0
