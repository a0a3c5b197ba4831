"""``Store.reassert``: live sessions re-assert themselves after the store lost them; ends the
store lost are applied again. Every store adapter, the same way (``store_env``)."""

from __future__ import annotations

from tests.contract.conftest import StoreEnv
from tests.contract.helpers import ACTIVE, LIM, QUEUE_ONLY, SPENT, WAITING, R, fill
from waitroom_proxy.ports import Reasserted


async def test_known_sessions_are_kept_not_shortened(store_env: StoreEnv) -> None:
    s = store_env.store
    assert (await s.arrive(R, "a", LIM)).status is ACTIVE  # deadline now + 10 s
    assert await s.reassert(R, [("a", 1_000)]) == Reasserted(kept=1)
    store_env.advance(6_000)
    assert (await s.tick(R, LIM)).expired_sessions == [], "a lease never shortens a session"
    assert await s.reassert(R, [("a", 20_000)]) == Reasserted(kept=1)
    store_env.advance(15_000)
    assert (await s.tick(R, LIM)).expired_sessions == [], "a longer lease extends it"
    store_env.advance(7_000)
    assert (await s.tick(R, LIM)).expired_sessions == ["a"]


async def test_a_lost_session_is_counted_again_and_holds_its_slot(store_env: StoreEnv) -> None:
    """The store restarted empty: the session's token still verifies, so it re-asserts. It
    counts (capacity 2: one more newcomer only), keeps its place spent, expires at its lease."""
    s = store_env.store
    assert await s.reassert(R, [("lost", 5_000)]) == Reasserted(readded=1)
    stats = await s.stats(R)
    assert (stats.active, stats.admitted_total) == (1, 0), "re-counted, not a new admission"
    assert (await s.arrive(R, "lost", LIM)).status is SPENT, "its ticket takes no place"
    assert (await s.arrive(R, "n1", LIM)).status is ACTIVE
    assert (await s.arrive(R, "n2", LIM)).status is WAITING, "capacity 2 is held"
    assert await s.reassert(R, [("lost", 5_000)]) == Reasserted(kept=1)
    store_env.advance(6_000)
    assert (await s.tick(R, LIM)).expired_sessions == ["lost"]


async def test_over_capacity_the_session_keeps_its_right_admissions_pause(
    store_env: StoreEnv,
) -> None:
    """The rule: a re-asserted session counts even above capacity; nobody is admitted until the
    room is back under it."""
    s = store_env.store
    for p in ("n1", "n2"):
        assert (await s.arrive(R, p, LIM)).status is ACTIVE
    await fill(s, ["w1"])
    assert await s.reassert(R, [("old1", 30_000), ("old2", 30_000)]) == Reasserted(readded=2)
    assert (await s.stats(R)).active == 4
    assert (await s.tick(R, LIM)).promoted == []
    for p in ("n1", "n2", "old1"):
        await s.leave(R, p, 60_000)
    assert (await s.tick(R, LIM)).promoted == ["w1"], "back under capacity: admissions resume"


async def test_revoked_sessions_are_never_counted_again(store_env: StoreEnv) -> None:
    s = store_env.store
    assert (await s.arrive(R, "a", LIM)).status is ACTIVE
    assert await s.leave(R, "a", 60_000) is ACTIVE
    # A session the store had already lost, ended afterwards: revoked all the same.
    assert (await s.leave(R, "lost-then-ended", 60_000)).value == "unknown"
    found = await s.reassert(R, [("a", 10_000), ("lost-then-ended", 10_000)])
    assert found == Reasserted(refused=2)
    assert (await s.stats(R)).active == 0


async def test_a_replayed_ticket_of_a_lost_session_leaves_the_queue(store_env: StoreEnv) -> None:
    s = store_env.store
    await fill(s, ["x", "a"])
    assert await s.reassert(R, [("a", 10_000)]) == Reasserted(readded=1)
    stats = await s.stats(R)
    assert (stats.queue_length, stats.active) == (1, 1)
    assert (await s.heartbeat(R, "a")).status is SPENT


async def test_lost_ends_are_applied_again(store_env: StoreEnv) -> None:
    """A failover to a replica that missed the ends: the visitors who left count again
    (phantoms). Applying the ends frees their slots and revokes them."""
    s = store_env.store
    assert (await s.arrive(R, "gone", LIM)).status is ACTIVE
    await fill(s, ["w1", "w2"], QUEUE_ONLY)
    found = await s.reassert(R, [], ["gone", "w2", "never"], 60_000)
    assert found == Reasserted(dropped=1)
    stats = await s.stats(R)
    assert (stats.active, stats.queue_length) == (0, 1)
    assert (await s.arrive(R, "w2", LIM)).status is SPENT
    revoked = sorted((await s.revoked_since(R, 0))[0])
    assert revoked == ["gone", "never", "w2"]
    # An id both ended and re-asserted is refused: the end wins.
    assert await s.reassert(R, [("gone", 10_000)], ["gone"], 60_000) == Reasserted(refused=1)
    assert (await s.tick(R, LIM)).promoted == ["w1"]


async def test_nothing_to_say_is_a_no_op(store_env: StoreEnv) -> None:
    assert await store_env.store.reassert(R, []) == Reasserted()
    assert (await store_env.store.stats(R)).active == 0
