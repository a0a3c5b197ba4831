"""The store's half of the ticket lifecycle (``waitroom_proxy.domain.lifecycle``), on every
adapter: a place that was promoted, admitted or given up is tombstoned; a tombstoned or active
place never takes a position again, whatever score a replayed ticket offers; a place is claimed
once; tombstones last ``spent_for_ms`` and ``restore`` writes them back after a loss.

Statuses are compared by value ("spent") so that these tests fail, rather than error, on a store
without tombstones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from tests.contract.conftest import StoreEnv
from waitroom_proxy.ports import PlaceStatus, RoomLimits, Store

R = "life"
BASE = {
    "capacity": 1,
    "abandon_after_ms": 60_000,
    "claim_timeout_ms": 10_000,
    "session_ttl_ms": 10_000,
}
SHORT = {"spent_for_ms": 30_000}
"""Tombstones kept 30 s (tests that watch them go)."""
LIM = RoomLimits(**BASE)  # type: ignore[arg-type]
QUEUED = RoomLimits(**{**BASE, "direct_admit": False})  # type: ignore[arg-type]


async def _queue(s: Store, *ids: str) -> dict[str, int]:
    scores = {}
    for place_id in ids:
        view = await s.arrive(R, place_id, QUEUED)
        assert view.status is PlaceStatus.WAITING, (place_id, view)
        scores[place_id] = view.score
    return scores


async def _replay(s: Store, place_id: str, score: int) -> None:
    """The kept ticket offers its old score, to the heartbeat and to arrive: refused both."""
    before = await s.stats(R)
    beat = await s.heartbeat(R, place_id)
    assert beat.status.value == "spent", beat
    for lim in (QUEUED, LIM):
        view = await s.arrive(R, place_id, lim, score)
        assert view.status is not PlaceStatus.WAITING, "a spent place took a position again"
        assert view.status.value == "spent", view
    after = await s.stats(R)
    assert (after.queue_length, after.active, after.admitted_total) == (
        before.queue_length,
        before.active,
        before.admitted_total,
    ), "a replay changed nothing"


async def _admitted_then_left(env: StoreEnv) -> None:
    await env.store.leave(R, "a", 60_000)


async def _admitted_then_expired(env: StoreEnv) -> None:
    env.advance(11_000)
    await env.store.heartbeat(R, "b")
    result = await env.store.tick(R, replace(LIM, promote=False))
    assert result.expired_sessions == ["a"]


async def _admitted_still_active(env: StoreEnv) -> None:
    return None


@pytest.mark.parametrize(
    "end",
    [_admitted_still_active, _admitted_then_left, _admitted_then_expired],
    ids=["active", "left", "expired"],
)
async def test_claimed_place_never_waits_again(
    store_env: StoreEnv, end: Callable[[StoreEnv], Awaitable[None]]
) -> None:
    s = store_env.store
    scores = await _queue(s, "a", "b")
    assert (await s.tick(R, LIM)).promoted == ["a"]
    # Promoted: the ticket still claims (once).
    assert (await s.arrive(R, "a", LIM, scores["a"])).status is PlaceStatus.PROMOTED
    assert await s.claim(R, "a", 10_000)
    assert not await s.claim(R, "a", 10_000), "a place is claimed once"
    await end(store_env)
    await _replay(s, "a", scores["a"])
    # Nobody behind is overtaken: b keeps the head, a newcomer queues behind b.
    assert (await s.heartbeat(R, "b")).position == 1
    newcomer = await s.arrive(R, "c", QUEUED)
    assert (newcomer.position, newcomer.score) == (2, scores["b"] + 1)


async def test_directly_admitted_place_is_spent(store_env: StoreEnv) -> None:
    s = store_env.store
    view = await s.arrive(R, "d", LIM)
    assert view.status is PlaceStatus.ACTIVE
    await _replay(s, "d", 1)
    await s.leave(R, "d", 60_000)
    await _replay(s, "d", 1)


async def test_waiter_who_left_is_spent(store_env: StoreEnv) -> None:
    s = store_env.store
    scores = await _queue(s, "a", "b")
    assert (await s.leave(R, "a", 60_000)) is PlaceStatus.WAITING
    await _replay(s, "a", scores["a"])
    assert (await s.heartbeat(R, "b")).position == 1


async def test_no_show_is_spent(store_env: StoreEnv) -> None:
    s = store_env.store
    scores = await _queue(s, "a", "b")
    assert (await s.tick(R, LIM)).promoted == ["a"]
    store_env.advance(11_000)
    await s.heartbeat(R, "b")
    result = await s.tick(R, LIM)
    assert (result.no_shows, result.promoted) == (["a"], ["b"])
    await _replay(s, "a", scores["a"])


async def test_abandoned_place_has_no_tombstone(store_env: StoreEnv) -> None:
    """Abandonment leaves no tombstone: a waiter who kept polling through a store outage longer
    than ``abandon_after`` still gets the place back (the gatekeeper decides by the ticket)."""
    s = store_env.store
    scores = await _queue(s, "a")
    store_env.advance(61_000)
    assert (await s.tick(R, QUEUED)).abandoned == ["a"]
    assert (await s.heartbeat(R, "a")).status is PlaceStatus.UNKNOWN
    view = await s.arrive(R, "a", QUEUED, scores["a"])
    assert (view.status, view.score) == (PlaceStatus.WAITING, scores["a"])


async def test_tombstones_last_spent_for_then_go(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = RoomLimits(**{**BASE, **SHORT, "direct_admit": False})  # type: ignore[arg-type]
    await _queue(s, "a")
    await s.leave(R, "a", 0)
    store_env.advance(20_000)
    await s.tick(R, lim)
    assert (await s.heartbeat(R, "a")).status.value == "spent"
    store_env.advance(11_000)  # 31 s > spent_for_ms
    await s.tick(R, lim)
    assert (await s.heartbeat(R, "a")).status is PlaceStatus.UNKNOWN


async def test_restore_writes_tombstones_back(store_env: StoreEnv) -> None:
    """After a loss: the places a replica knows to be spent are tombstoned again, and one found
    waiting (its ticket replayed into the emptied store) leaves the queue."""
    s = store_env.store
    await _queue(s, "slipped-in", "waiter")
    n = await s.restore(R, ["session"], 10_000, 0, ["slipped-in", "left-earlier"])
    assert n == 1
    stats = await s.stats(R)
    assert (stats.active, stats.queue_length) == (1, 1)
    for place_id in ("session", "slipped-in", "left-earlier"):
        assert (await s.heartbeat(R, place_id)).status.value == "spent", place_id
        view = await s.arrive(R, place_id, QUEUED, 1)
        assert view.status is not PlaceStatus.WAITING, place_id
    assert (await s.heartbeat(R, "waiter")).position == 1


async def test_tombstone_cleanup_is_bounded_per_tick(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = RoomLimits(**{**BASE, **SHORT, "capacity": 2_000})  # type: ignore[arg-type]
    for i in range(1_200):
        assert (await s.arrive(R, f"p{i:04d}", lim)).status is PlaceStatus.ACTIVE
    store_env.advance(31_000)
    await s.tick(R, lim)  # the sessions expire (1000 per tick), tombstones go (1000 per tick)
    assert (await s.heartbeat(R, "p1199")).status.value == "spent"
    await s.tick(R, lim)
    for place_id in ("p0000", "p1199"):
        assert (await s.heartbeat(R, place_id)).status is PlaceStatus.UNKNOWN
