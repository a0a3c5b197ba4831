"""The ``Store`` contract (``waitroom_proxy.ports``), run against every adapter."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.contract.conftest import StoreEnv
from tests.fixtures.redis_server import free_port
from waitroom_proxy.adapters.redis_store import RedisStore, room_keys
from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import PlaceStatus, RoomLimits, RoomStats, Store, TickResult

R = "room-1"
WAITING, PROMOTED, ACTIVE, UNKNOWN, FULL, SPENT = (
    PlaceStatus.WAITING,
    PlaceStatus.PROMOTED,
    PlaceStatus.ACTIVE,
    PlaceStatus.UNKNOWN,
    PlaceStatus.FULL,
    PlaceStatus.SPENT,
)
# Durations of seconds: the Redis variants also see real time pass between calls.
LIM = RoomLimits(
    capacity=2, abandon_after_ms=10_000, claim_timeout_ms=10_000, session_ttl_ms=10_000
)
QUEUE_ONLY = RoomLimits(
    capacity=2,
    abandon_after_ms=10_000,
    claim_timeout_ms=10_000,
    session_ttl_ms=10_000,
    direct_admit=False,
)


def limits(**kw: object) -> RoomLimits:
    base = {
        "capacity": 2,
        "abandon_after_ms": 10_000,
        "claim_timeout_ms": 10_000,
        "session_ttl_ms": 10_000,
    }
    base.update(kw)
    return RoomLimits(**base)  # type: ignore[arg-type]


async def fill(store: Store, ids: list[str], lim: RoomLimits = QUEUE_ONLY) -> None:
    for place_id in ids:
        view = await store.arrive(R, place_id, lim)
        assert view.status is WAITING, (place_id, view)


def test_adapters_satisfy_protocol(store_env: StoreEnv) -> None:
    assert isinstance(store_env.store, Store)


# -- arrive ------------------------------------------------------------------------------------


async def test_arrive_direct_admit_when_free(store_env: StoreEnv) -> None:
    s = store_env.store
    view = await s.arrive(R, "a", LIM)
    assert view.status is ACTIVE
    assert (view.position, view.queue_length, view.ahead) == (0, 0, 0)
    stats = await s.stats(R)
    assert (stats.active, stats.promoted, stats.queue_length, stats.admitted_total) == (1, 0, 0, 1)


async def test_arrive_is_idempotent(store_env: StoreEnv) -> None:
    s = store_env.store
    assert (await s.arrive(R, "a", LIM)).status is ACTIVE
    # ACTIVE answers only the call that admitted: again, the place is spent (changes nothing).
    assert (await s.arrive(R, "a", LIM)).status is SPENT
    assert (await s.arrive(R, "b", LIM)).status is ACTIVE
    first = await s.arrive(R, "c", LIM)
    again = await s.arrive(R, "c", LIM)
    assert first.status is WAITING and again == first
    assert first.score == 1 and first.position == 1
    stats = await s.stats(R)
    assert (stats.active, stats.queue_length, stats.admitted_total) == (2, 1, 2)
    # A different score on re-arrival does not move the waiter.
    assert await s.arrive(R, "c", LIM, score=99) == first


async def test_arrive_queues_when_no_slot(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=1)
    assert (await s.arrive(R, "a", lim)).status is ACTIVE
    b = await s.arrive(R, "b", lim)
    assert (b.status, b.position, b.queue_length) == (WAITING, 1, 1)


async def test_arrive_no_direct_admit_while_anyone_waits(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=1)
    await s.arrive(R, "a", lim)
    await s.arrive(R, "b", lim)
    assert await s.leave(R, "a", 0) is ACTIVE
    # A slot is free, but b waits: the newcomer must queue behind b.
    c = await s.arrive(R, "c", lim)
    assert (c.status, c.position) == (WAITING, 2)


async def test_arrive_no_direct_admit_without_token(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=10, admit_rate=60)  # burst 1, one token a second
    assert (await s.arrive(R, "a", lim)).status is ACTIVE
    assert (await s.arrive(R, "b", lim)).status is WAITING
    await s.leave(R, "b", 0)
    store_env.advance(1_500)
    assert (await s.arrive(R, "c", lim)).status is ACTIVE


async def test_arrive_direct_admit_disabled(store_env: StoreEnv) -> None:
    s = store_env.store
    view = await s.arrive(R, "a", QUEUE_ONLY)
    assert (view.status, view.position) == (WAITING, 1)


async def test_arrive_full_at_max_queue_length(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=1, max_queue_length=2)
    assert (await s.arrive(R, "a", lim)).status is ACTIVE
    await fill(s, ["b", "c"], lim)
    full = await s.arrive(R, "d", lim)
    assert (full.status, full.queue_length, full.position) == (FULL, 2, 0)
    assert (await s.heartbeat(R, "d")).status is UNKNOWN
    assert (await s.stats(R)).queue_length == 2
    # Waiters already in the queue are not refused.
    assert (await s.arrive(R, "b", lim)).status is WAITING


async def test_arrive_count_only_passthrough(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=1, admit_rate=60, count_only=True)
    for i in range(5):
        assert (await s.arrive(R, f"p{i}", lim)).status is ACTIVE
    stats = await s.stats(R)
    assert (stats.active, stats.queue_length, stats.admitted_total) == (5, 0, 5)
    # The sessions are real: leave frees them, tick expires them.
    assert await s.leave(R, "p0", 0) is ACTIVE
    store_env.advance(11_000)
    result = await s.tick(R, lim)
    assert sorted(result.expired_sessions) == ["p1", "p2", "p3", "p4"]


# -- scores and sequence -----------------------------------------------------------------------


async def test_sequence_numbers_and_returning_score(store_env: StoreEnv) -> None:
    s = store_env.store
    a = await s.arrive(R, "a", QUEUE_ONLY)
    b = await s.arrive(R, "b", QUEUE_ONLY)
    assert (a.score, b.score) == (1, 2)
    # A returning ticket keeps its score; the sequence is raised to at least it.
    r = await s.arrive(R, "r", QUEUE_ONLY, score=50)
    assert (r.score, r.position) == (50, 3)
    c = await s.arrive(R, "c", QUEUE_ONLY)
    assert (c.score, c.position) == (51, 4)
    # A lower score goes in front, and does not lower the sequence.
    early = await s.arrive(R, "early", QUEUE_ONLY, score=0)
    assert (early.score, early.position) == (0, 1)
    d = await s.arrive(R, "d", QUEUE_ONLY)
    assert (d.score, d.position) == (52, 6)


async def test_large_scores_are_exact(store_env: StoreEnv) -> None:
    s = store_env.store
    big = 2**52 + 1
    view = await s.arrive(R, "x", QUEUE_ONLY, score=big)
    assert view.score == big
    assert (await s.heartbeat(R, "x")).score == big
    assert (await s.arrive(R, "y", QUEUE_ONLY)).score == big + 1


async def test_ties_ordered_by_id_and_lottery_order(store_env: StoreEnv) -> None:
    s = store_env.store
    for place_id, score in [("m", 7), ("b", 7), ("z", 3), ("a", 9)]:
        await s.arrive(R, place_id, QUEUE_ONLY, score=score)
    positions = {p: (await s.heartbeat(R, p)).position for p in "mbza"}
    assert positions == {"z": 1, "b": 2, "m": 3, "a": 4}
    result = await s.tick(R, limits(capacity=10))
    assert result.promoted == ["z", "b", "m", "a"]


# -- heartbeat -----------------------------------------------------------------------------------


async def test_heartbeat_positions(store_env: StoreEnv) -> None:
    s = store_env.store
    await fill(s, ["a", "b", "c"])
    views = [await s.heartbeat(R, p) for p in "abc"]
    assert [(v.status, v.position, v.ahead, v.queue_length) for v in views] == [
        (WAITING, 1, 0, 3),
        (WAITING, 2, 1, 3),
        (WAITING, 3, 2, 3),
    ]
    assert [v.score for v in views] == [1, 2, 3]
    await s.leave(R, "a", 0)
    c = await s.heartbeat(R, "c")
    assert (c.position, c.ahead, c.queue_length) == (2, 1, 2)


async def test_heartbeat_statuses_and_never_adds(store_env: StoreEnv) -> None:
    s = store_env.store
    await fill(s, ["a", "b"])
    await s.tick(R, limits(capacity=1))
    assert (await s.heartbeat(R, "a")).status is PROMOTED
    assert await s.claim(R, "a", 10_000)
    active = await s.heartbeat(R, "a")
    assert (active.status, active.position, active.queue_length) == (SPENT, 0, 1)
    unknown = await s.heartbeat(R, "nobody")
    assert (unknown.status, unknown.queue_length) == (UNKNOWN, 1)
    assert (await s.heartbeat("other-room", "a")).status is UNKNOWN
    stats = await s.stats(R)
    assert (stats.queue_length, stats.active, stats.promoted) == (1, 1, 0)


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


# -- leave and revocation ------------------------------------------------------------------------


async def test_leave_frees_slot_and_revokes(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=1)
    assert (await s.arrive(R, "a", lim)).status is ACTIVE
    await fill(s, ["b", "c", "d"])
    before = (await s.stats(R)).now_ms
    assert await s.leave(R, "a", 60_000) is ACTIVE
    assert (await s.stats(R)).active == 0
    revoked, now = await s.revoked_since(R, before)
    assert revoked == ["a"] and now >= before
    assert (await s.tick(R, lim)).promoted == ["b"]
    assert await s.leave(R, "b", 60_000) is PROMOTED
    assert await s.leave(R, "d", 60_000) is WAITING
    assert await s.leave(R, "d", 0) is UNKNOWN  # a waiter's second leave: nothing revoked
    assert await s.leave(R, "nobody", 60_000) is UNKNOWN
    # An ACTIVE session is revoked, and so is a place the store does not know (it may be a
    # session the store lost: it must not be re-asserted); waiters and promotions are not.
    assert sorted((await s.revoked_since(R, before))[0]) == ["a", "nobody"]
    assert (await s.tick(R, lim)).promoted == ["c"]
    stats = await s.stats(R)
    assert (stats.active, stats.promoted, stats.queue_length) == (0, 1, 0)


async def test_revoked_since_window_and_forgetting(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=5)
    for p in "abc":
        assert (await s.arrive(R, p, lim)).status is ACTIVE
    await s.leave(R, "a", 20_000)
    store_env.advance(5_000)
    mid = (await s.stats(R)).now_ms
    await s.leave(R, "b", 20_000)
    await s.leave(R, "c", 0)  # revoke_for 0: not recorded
    assert sorted((await s.revoked_since(R, 0))[0]) == ["a", "b"]
    assert (await s.revoked_since(R, mid))[0] == ["b"]
    ids, now = await s.revoked_since(R, mid + 60_000)
    assert ids == [] and now >= mid
    store_env.advance(17_000)  # a: 22 s > 20 s; b: 17 s
    await s.tick(R, lim)
    assert (await s.revoked_since(R, 0))[0] == ["b"]
    assert (await s.revoked_since("other-room", 0))[0] == []


# -- meta and stats ------------------------------------------------------------------------------


async def test_meta(store_env: StoreEnv) -> None:
    s = store_env.store
    assert await s.get_meta(R) == {}
    await s.set_meta(R, {"paused": "1", "overrides": '{"capacity": 5}'})
    assert await s.get_meta(R) == {"paused": "1", "overrides": '{"capacity": 5}'}
    await s.set_meta(R, {"paused": "", "other": "x"})
    assert await s.get_meta(R) == {"overrides": '{"capacity": 5}', "other": "x"}
    await s.set_meta(R, {})
    await s.set_meta(R, {"overrides": "", "other": ""})
    assert await s.get_meta(R) == {}
    assert await s.get_meta("other-room") == {}


async def test_init_meta_writes_only_if_absent(store_env: StoreEnv) -> None:
    s = store_env.store
    assert await s.init_meta(R, "incarnation", "first") == "first"
    assert await s.init_meta(R, "incarnation", "second") == "first"
    assert await s.get_meta(R) == {"incarnation": "first"}
    await s.set_meta(R, {"paused": "1"})
    assert await s.init_meta(R, "incarnation", "third") == "first"
    assert await s.get_meta(R) == {"incarnation": "first", "paused": "1"}
    await s.set_meta(R, {"incarnation": ""})  # gone (a store that lost its state)
    assert await s.init_meta(R, "incarnation", "fourth") == "fourth"
    with pytest.raises(ValueError):
        await s.init_meta(R, "incarnation", "")


async def test_init_meta_racers_agree_on_one_value(store_env: StoreEnv) -> None:
    s = store_env.store
    answers = await asyncio.gather(*(s.init_meta(R, "incarnation", f"v{i}") for i in range(20)))
    assert len(set(answers)) == 1, answers
    assert (await s.get_meta(R))["incarnation"] == answers[0]


async def test_stats(store_env: StoreEnv) -> None:
    s = store_env.store
    empty = await s.stats(R)
    assert isinstance(empty, RoomStats)
    assert (empty.queue_length, empty.active, empty.promoted, empty.admitted_total) == (0, 0, 0, 0)
    lim = limits(capacity=2)
    await s.arrive(R, "a", lim)
    await fill(s, ["b", "c", "d"])
    await s.tick(R, lim)
    stats = await s.stats(R)
    assert (stats.queue_length, stats.active, stats.promoted, stats.admitted_total) == (2, 1, 1, 2)
    if store_env.kind != "memory":
        assert abs(stats.now_ms - time.time() * 1000) < 5_000
    store_env.advance(7_000)
    assert (await s.stats(R)).now_ms - stats.now_ms >= 7_000


async def test_rooms_are_independent(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=1)
    assert (await s.arrive("r-a", "x", lim)).status is ACTIVE
    assert (await s.arrive("r-b", "x", lim)).status is ACTIVE
    assert (await s.arrive("r-b", "y", lim)).status is WAITING
    assert (await s.stats("r-a")).queue_length == 0


async def test_concurrent_arrivals_never_exceed_capacity(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=5)
    views = await asyncio.gather(*(s.arrive(R, f"c{i:02d}", lim) for i in range(40)))
    assert sum(v.status is ACTIVE for v in views) == 5
    assert sum(v.status is WAITING for v in views) == 35
    assert sorted(v.score for v in views if v.status is WAITING) == list(range(1, 36))
    results = await asyncio.gather(*(s.tick(R, lim) for _ in range(5)))
    assert sum(len(r.promoted) for r in results) == 0


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
    assert keys == sorted(k for k in room_keys(R) if not k.endswith(":promoted"))
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


async def test_client_rate_limit_hits(store_env: StoreEnv) -> None:
    """``hit``: the same sliding-window answers from every store."""
    store = store_env.store
    client = "198.51.100.7"
    for _ in range(3):
        assert await store.hit(client, 3, 60_000) == 0
    wait = await store.hit(client, 3, 60_000)
    assert 0 < wait <= 60_000
    assert await store.hit(client + "x", 3, 60_000) == 0, "clients are counted apart"


async def test_restore_counts_sessions_again_and_raises_the_sequence(store_env: StoreEnv) -> None:
    """``restore``: after a loss, known sessions count again; one of them found waiting is a
    replayed ticket that slipped in (a session's place id never waits) and leaves the queue."""
    store = store_env.store
    lim = limits(capacity=2, direct_admit=False)
    assert (await store.arrive(R, "waiter", lim)).status is WAITING
    assert (await store.arrive(R, "replay", lim)).status is WAITING
    n = await store.restore(R, ["s1", "s2", "replay", "s1"], 10_000, min_seq=500)
    assert n == 3, "duplicates counted once"
    stats = await store.stats(R)
    assert (stats.active, stats.queue_length) == (3, 1)
    assert (await store.heartbeat(R, "replay")).status is SPENT
    assert (await store.heartbeat(R, "waiter")).status is WAITING
    newcomer = await store.arrive(R, "new", lim)
    assert newcomer.score == 501, "newcomers queue behind every score of the lost state"
    assert await store.touch(R, ["s1"], 10_000) == 1, "restored sessions are ordinary sessions"
    assert await store.leave(R, "s2", 1_000) is ACTIVE
