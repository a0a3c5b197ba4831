"""The pure rules of the ticket lifecycle (``waitroom_proxy.domain.lifecycle``)."""

from __future__ import annotations

from waitroom_proxy.domain.cache import BoundedCache
from waitroom_proxy.domain.lifecycle import Outage, SpentLog, may_keep, reentry_limit, spent_for
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.tokens import CLOCK_SKEW, Ticket

P = RoomPolicy(name="r", capacity=1, abandon_after=120, session_max=3600)
T0 = 1_800_000_000


def ticket(last_seen: int) -> Ticket:
    return Ticket("r", "p", 7, last_seen, last_seen)


def test_a_ticket_keeps_its_place_while_its_holder_was_seen_within_abandon_after() -> None:
    assert may_keep(ticket(T0), T0 + 120, P, None)
    assert not may_keep(ticket(T0), T0 + 121, P, None)
    assert not may_keep(ticket(T0), T0 + 121, P, Outage())  # no outage seen


def test_an_outage_extends_only_tickets_alive_when_it_began() -> None:
    outage = Outage()
    for t in range(T0 + 100, T0 + 400, 30):  # failures every 30 s for 300 s: one outage
        outage.failed(t, P)
    assert (outage.since, outage.last) == (T0 + 100, T0 + 370)
    alive = ticket(T0 + 90)  # seen 10 s before the outage began
    abandoned = ticket(T0 - 200)  # gone 300 s before it began
    after = T0 + 370 + 60
    assert may_keep(alive, after, P, outage)
    assert not may_keep(abandoned, after, P, outage)
    assert not may_keep(alive, T0 + 370 + 121, P, outage), "only until A after the outage"


def test_the_outage_grace_never_passes_the_reentry_limit() -> None:
    outage = Outage()
    start = T0 + 10
    for t in range(start, start + 5000, 60):
        outage.failed(t, P)
    assert not may_keep(ticket(T0), outage.last + 1, P, outage)
    assert reentry_limit(P) == 3600
    assert spent_for(P) == 3600 + CLOCK_SKEW > reentry_limit(P)


def test_failures_far_apart_are_separate_outages() -> None:
    outage = Outage()
    outage.failed(T0, P)
    outage.failed(T0 + 121, P)
    assert outage.since == T0 + 121


def test_spent_log_prunes_in_time_order_and_is_bounded() -> None:
    log = SpentLog(max_ids=3)
    for i in range(5):
        log.add("r", f"p{i}", T0 + i)
    assert log.ids("r") == ["p2", "p3", "p4"]
    assert ("r", "p4") in log and ("r", "p0") not in log and ("other", "p4") not in log
    log.prune("r", T0 + 10, keep_for=6.5)
    assert log.ids("r") == ["p4"]


def test_bounded_cache_evicts_oldest_first_by_entries_and_bytes() -> None:
    cache: BoundedCache[str, int] = BoundedCache(max_entries=3, max_bytes=10_000)
    for k in "abc":
        cache.put(k, 1, 1)
    assert cache.get("a") == 1
    cache.put("d", 1, 1)
    assert list(cache) == ["b", "c", "d"]
    cache.put("b", 2, 1)  # put again: now the newest
    assert list(cache) == ["c", "d", "b"] and cache.get("b") == 2
    big: BoundedCache[str, int] = BoundedCache(max_entries=100, max_bytes=2_000)
    for i in range(20):
        big.put(str(i), i, 500)
    assert big.bytes <= 2_000 and len(big) == 2
    big.put("huge", 0, 5_000)
    assert "huge" not in big
