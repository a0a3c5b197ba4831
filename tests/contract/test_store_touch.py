"""Touches, abandonment and the counts that pacing relies on (``ports.Store``), on every
adapter: memory, fakeredis, a real Redis and a real Redis Cluster.

The Redis store keeps touches in a hash and finds abandoned waiters by sweeping the queue a
slice per tick (``lua/tick.lua``), the memory store removes them all at once: both must never
promote an abandoned waiter, never let one poll its way back, and remove every one of them
within about twice ``abandon_after``.
"""

from __future__ import annotations

from tests.contract.conftest import StoreEnv
from tests.contract.helpers import QUEUE_ONLY, UNKNOWN, WAITING, R, fill, limits

A_MS = 10_000  # abandon_after of these rooms (QUEUE_ONLY, limits())


async def test_a_heartbeat_after_abandon_after_abandons_the_place(store_env: StoreEnv) -> None:
    s = store_env.store
    await fill(s, ["a", "b"])
    store_env.advance(6_000)
    assert (await s.heartbeat(R, "b", A_MS)).status is WAITING
    store_env.advance(5_000)  # a: silent 11 s, b: 5 s; no tick has run
    assert (await s.heartbeat(R, "a", A_MS)).status is UNKNOWN
    assert (await s.heartbeat(R, "a", A_MS)).status is UNKNOWN  # gone, not revived
    view = await s.heartbeat(R, "b", A_MS)
    assert (view.status, view.position, view.queue_length) == (WAITING, 1, 1)
    assert (await s.stats(R)).queue_length == 1


async def test_counts_for_pacing(store_env: StoreEnv) -> None:
    """``promoted_total`` counts waiters taken from the queue (not direct admissions), the head
    score is the lowest one waiting, and a touch reports both the count and the store's time."""
    s = store_env.store
    lim = limits(capacity=2)
    assert (await s.arrive(R, "direct", lim)).status.value == "active"
    await fill(s, ["a", "b", "c"])
    scores = {p: (await s.heartbeat(R, p)).score for p in "abc"}
    stats = await s.stats(R)
    assert (stats.promoted_total, stats.head_score) == (0, scores["a"])
    assert (await s.tick(R, lim)).promoted == ["a"]
    stats = await s.stats(R)
    assert (stats.promoted_total, stats.head_score, stats.admitted_total) == (1, scores["b"], 2)
    view = await s.heartbeat(R, "c")
    assert (view.position, view.promoted_total) == (2, 1)
    assert abs(view.now_ms - stats.now_ms) < 5_000
    again = await s.arrive(R, "c", lim)
    assert (again.position, again.promoted_total) == (2, 1) and again.now_ms >= view.now_ms
    await s.leave(R, "b", 0)
    await s.leave(R, "c", 0)
    assert (await s.stats(R)).head_score is None


async def test_an_abandoned_head_is_never_promoted_even_where_the_sweep_did_not_look(
    store_env: StoreEnv,
) -> None:
    """The Redis sweep reads a slice of the queue per tick: here the slices of the last ticks
    missed the head, which went silent; the promotion reads it again and skips it."""
    s = store_env.store
    ids = [f"w{i:02d}" for i in range(40)]
    await fill(s, ids)
    store_env.advance(5_000)
    await s.tick(R, limits(capacity=0))  # a full sweep: nobody silent yet
    for _ in range(2):
        store_env.advance(100)
        await s.tick(R, limits(capacity=0))  # small slices from the head on
    store_env.advance(800)
    for p in ids[1:]:
        await s.heartbeat(R, p, A_MS)
    store_env.advance(4_500)  # w00: silent 10.5 s; the others 4.5 s
    result = await s.tick(R, limits(capacity=1))
    assert (result.abandoned, result.promoted) == (["w00"], ["w01"])
    assert (await s.heartbeat(R, "w00", A_MS)).status is UNKNOWN


async def test_every_abandoned_waiter_goes_within_twice_abandon_after(store_env: StoreEnv) -> None:
    s = store_env.store
    alive = [f"a{i:02d}" for i in range(30)]
    silent = [f"s{i:02d}" for i in range(30)]
    await fill(s, [p for pair in zip(alive, silent, strict=True) for p in pair])
    reported: list[str] = []
    # 2.5 abandon_after of ticks every 500 ms (a silent waiter is out at 10 s, and the sweep
    # passes everyone once per 10 s); the alive poll every 5 s.
    for step in range(50):
        store_env.advance(500)
        if step % 10 == 9:
            for p in alive:
                assert (await s.heartbeat(R, p, A_MS)).status is WAITING, p
        result = await s.tick(R, limits(capacity=0))
        reported += result.abandoned
    assert sorted(reported) == silent  # each once, nobody alive
    assert (await s.stats(R)).queue_length == len(alive)
    for i, p in enumerate(alive):
        assert (await s.heartbeat(R, p, A_MS)).position == i + 1


async def test_arrive_keeps_a_place_the_gatekeeper_lets_its_ticket_keep(
    store_env: StoreEnv,
) -> None:
    """``arrive`` of a waiting place id is a touch even after a long silence, as long as no
    sweep has removed it: the gatekeeper passes a place id only for a ticket it lets keep its
    place (``lifecycle.may_keep``), which would re-enter at the same score anyway."""
    s = store_env.store
    await fill(s, ["a", "b"])
    first = await s.heartbeat(R, "b")
    store_env.advance(11_000)
    view = await s.arrive(R, "b", QUEUE_ONLY, first.score)
    assert (view.status, view.position, view.score) == (WAITING, 2, first.score)
