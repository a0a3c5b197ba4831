"""The ``Store`` contract (``waitroom_proxy.ports``), run against every adapter: arrive, scores
and heartbeat."""

from __future__ import annotations

import asyncio
import dataclasses

from tests.contract.conftest import StoreEnv
from tests.contract.helpers import (
    ACTIVE,
    FULL,
    LIM,
    PROMOTED,
    QUEUE_ONLY,
    SPENT,
    UNKNOWN,
    WAITING,
    R,
    fill,
    limits,
)
from waitroom_proxy.ports import QueueView, Store


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
    # The same place; only the store's clock (``now_ms``, the time of the touch) moves on.
    assert first.status is WAITING and _place(again) == _place(first)
    assert again.now_ms >= first.now_ms > 0
    assert first.score == 1 and first.position == 1
    stats = await s.stats(R)
    assert (stats.active, stats.queue_length, stats.admitted_total) == (2, 1, 2)
    # A different score on re-arrival does not move the waiter.
    assert _place(await s.arrive(R, "c", LIM, score=99)) == _place(first)


def _place(view: QueueView) -> QueueView:
    """``view`` without the time of the answer (which a real store's clock moves on)."""
    return dataclasses.replace(view, now_ms=0)


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


async def test_concurrent_arrivals_never_exceed_capacity(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=5)
    views = await asyncio.gather(*(s.arrive(R, f"c{i:02d}", lim) for i in range(40)))
    assert sum(v.status is ACTIVE for v in views) == 5
    assert sum(v.status is WAITING for v in views) == 35
    assert sorted(v.score for v in views if v.status is WAITING) == list(range(1, 36))
    results = await asyncio.gather(*(s.tick(R, lim) for _ in range(5)))
    assert sum(len(r.promoted) for r in results) == 0
