"""The store's side of a scheduled sale (``ports.DrawStore``) on every store adapter.

The store's clock decides the phase; the commitment is kept once; the pre-queue holds each
place once; the release happens once, only after ``start_at`` by the store's clock, only over
exactly the frozen entries, and puts them ahead of every later arrival in the given order.
"""

from __future__ import annotations

import json

from tests.contract.conftest import StoreEnv
from waitroom_proxy.ports import DrawPhase, PlaceStatus, PrequeueEntry, RoomLimits

R = "sale"
LIMITS = RoomLimits(
    capacity=100,
    abandon_after_ms=600_000,
    claim_timeout_ms=600_000,
    session_ttl_ms=600_000,
    direct_admit=False,
)


async def _bounds(env: StoreEnv) -> tuple[int, int, int]:
    now = (await env.store.draw_step(R, (0, 0, 0))).now_ms  # type: ignore[attr-defined]
    return now + 10_000, now + 20_000, now + 30_000


async def test_phases_follow_the_stores_clock_and_each_step_happens_once(
    store_env: StoreEnv,
) -> None:
    s = store_env.store
    bounds = await _bounds(store_env)
    idle = await s.draw_step(R, bounds, "early")  # type: ignore[attr-defined]
    assert idle.phase is DrawPhase.IDLE and idle.entry is PrequeueEntry.NONE
    assert idle.prequeue_length == 0

    store_env.advance(10_500)
    pre = await s.draw_step(R, bounds, "a")  # type: ignore[attr-defined]
    assert pre.phase is DrawPhase.PREQUEUE and pre.entry is PrequeueEntry.UNCOMMITTED
    assert pre.prequeue_length == 0, "nobody enters before the commitment is published"
    assert await s.draw_commit(R, "11" * 32, "c1", "t1") is True  # type: ignore[attr-defined]
    assert await s.draw_commit(R, "22" * 32, "c2", "t2") is False  # type: ignore[attr-defined]
    for pid in ("a", "b", "c", "a", "b"):
        step = await s.draw_step(R, bounds, pid)  # type: ignore[attr-defined]
        assert step.entry is PrequeueEntry.IN and step.commitment == "c1"
    assert step.prequeue_length == 3
    full = await s.draw_step(R, bounds, "d", 3)  # type: ignore[attr-defined]
    assert full.entry is PrequeueEntry.FULL and full.prequeue_length == 3
    ids, state = await s.draw_entries(R)  # type: ignore[attr-defined]
    assert ids == ["a", "b", "c"] and state["seed"] == "11" * 32
    assert (await s.stats(R)).queue_length == 0, "pre-queue places hold no position"

    order = ["c", "a", "b"]
    assert await s.draw_release(R, bounds[1], order, "{}") == -2  # type: ignore[attr-defined]
    store_env.advance(10_000)
    opened = await s.draw_step(R, bounds, "late")  # type: ignore[attr-defined]
    assert opened.phase is DrawPhase.OPEN and opened.entry is PrequeueEntry.NONE
    assert await s.draw_release(R, bounds[1], ["c", "a"], "{}") == -3  # type: ignore[attr-defined]
    assert await s.draw_release(R, bounds[1], ["c", "a", "x"], "{}") == -3  # type: ignore[attr-defined]
    audit = json.dumps({"order": order})
    assert await s.draw_release(R, bounds[1], order, audit) == 3  # type: ignore[attr-defined]
    assert await s.draw_release(R, bounds[1], order, "{}") == -1  # type: ignore[attr-defined]
    assert await s.draw_audit(R) == audit  # type: ignore[attr-defined]
    after = await s.draw_step(R, bounds)  # type: ignore[attr-defined]
    assert after.released and after.prequeue_length == 0

    late = await s.arrive(R, "late", LIMITS)
    assert late.status is PlaceStatus.WAITING and late.position == 4
    promoted: list[str] = []
    while len(promoted) < 4:
        result = await s.tick(R, LIMITS)
        assert result.promoted
        promoted += result.promoted
    assert promoted == ["c", "a", "b", "late"]

    store_env.advance(10_000)
    ended = await s.draw_step(R, bounds, "z")  # type: ignore[attr-defined]
    assert ended.phase is DrawPhase.ENDED and not ended.ended
    assert await s.draw_mark(R, "ended", "1") is True  # type: ignore[attr-defined]
    assert await s.draw_mark(R, "ended", "1") is False  # type: ignore[attr-defined]
    assert (await s.draw_step(R, bounds)).ended  # type: ignore[attr-defined]


async def test_a_reset_moves_the_prequeue_to_the_queue_in_arrival_order(
    store_env: StoreEnv,
) -> None:
    s = store_env.store
    bounds = await _bounds(store_env)
    store_env.advance(10_500)
    await s.draw_commit(R, "11" * 32, "c1", "t1")  # type: ignore[attr-defined]
    for pid in ("p1", "p2", "p3"):
        await s.draw_step(R, bounds, pid)  # type: ignore[attr-defined]
    assert await s.draw_reset(R) == 3  # type: ignore[attr-defined]
    views = [await s.heartbeat(R, pid) for pid in ("p1", "p2", "p3")]
    assert [v.position for v in views] == [1, 2, 3]
    step = await s.draw_step(R, bounds)  # type: ignore[attr-defined]
    assert step.commitment == "" and step.prequeue_length == 0 and not step.released
    assert await s.draw_audit(R) is None  # type: ignore[attr-defined]


async def test_a_place_that_left_during_the_prequeue_is_never_queued(
    store_env: StoreEnv,
) -> None:
    """Leaving tombstones the place; neither the release nor a reset may queue it again (a
    tombstoned place in the queue would take a slot nobody claims, or hand a session to a
    visitor who left)."""
    s = store_env.store
    bounds = await _bounds(store_env)
    store_env.advance(10_500)
    await s.draw_commit(R, "11" * 32, "c1", "t1")  # type: ignore[attr-defined]
    for pid in ("a", "b", "c", "d"):
        await s.draw_step(R, bounds, pid)  # type: ignore[attr-defined]
    await s.leave(R, "b", 0)
    store_env.advance(10_000)
    order = ["c", "b", "a", "d"]
    assert await s.draw_release(R, bounds[1], order, "{}") == 4  # type: ignore[attr-defined]
    assert (await s.stats(R)).queue_length == 3
    assert (await s.heartbeat(R, "b")).status is PlaceStatus.SPENT
    promoted: list[str] = []
    while len(promoted) < 3:
        result = await s.tick(R, LIMITS)
        assert result.promoted
        promoted += result.promoted
    assert promoted == ["c", "a", "d"]


async def test_a_reset_does_not_queue_a_place_that_left(store_env: StoreEnv) -> None:
    s = store_env.store
    bounds = await _bounds(store_env)
    store_env.advance(10_500)
    await s.draw_commit(R, "11" * 32, "c1", "t1")  # type: ignore[attr-defined]
    for pid in ("p1", "p2", "p3"):
        await s.draw_step(R, bounds, pid)  # type: ignore[attr-defined]
    await s.leave(R, "p2", 0)
    await s.draw_reset(R)  # type: ignore[attr-defined]
    assert (await s.stats(R)).queue_length == 2
    assert [(await s.heartbeat(R, p)).position for p in ("p1", "p3")] == [1, 2]
