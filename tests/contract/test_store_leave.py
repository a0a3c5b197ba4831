"""The ``Store`` contract, run against every adapter: leave, revocation and restore after a loss."""

from __future__ import annotations

from tests.contract.conftest import StoreEnv
from tests.contract.helpers import ACTIVE, PROMOTED, SPENT, UNKNOWN, WAITING, R, fill, limits

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
