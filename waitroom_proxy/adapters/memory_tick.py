"""One pass of the admission controller on a room of the in-process store
(``waitroom_proxy.ports.Store.tick``, the rules of ``lua/tick.lua``): sweep what expired, then
promote from the head of the queue. Nothing here awaits, so the pass is atomic."""

from __future__ import annotations

import heapq

from waitroom_proxy.adapters.memory_room import TOKEN_UNITS, MemoryRoom
from waitroom_proxy.ports import RoomLimits, TickResult

__all__ = ["TICK_LIMIT", "tick_room"]

TICK_LIMIT = 1000
"""Most ids one tick removes from each set, and most waiters it promotes."""


def tick_room(state: MemoryRoom, limits: RoomLimits, force: int, now: int) -> TickResult:
    """Apply one ``tick`` to a room at the store's time ``now``."""
    expired: list[str] = []
    heap = state.deadlines
    while heap and heap[0][0] < now and len(expired) < TICK_LIMIT:
        deadline, place_id = heapq.heappop(heap)
        if state.active.get(place_id) == deadline:
            del state.active[place_id]
            expired.append(place_id)

    no_shows: list[str] = []
    cutoff = now - limits.claim_timeout_ms
    while state.promoted and len(no_shows) < TICK_LIMIT:
        place_id, promoted_at = next(iter(state.promoted.items()))
        if promoted_at >= cutoff:
            break
        del state.promoted[place_id]
        no_shows.append(place_id)

    abandoned: list[str] = []
    cutoff = now - limits.abandon_after_ms
    while state.heartbeats and len(abandoned) < TICK_LIMIT:
        place_id, seen = next(iter(state.heartbeats.items()))
        if seen >= cutoff:
            break
        state.remove_waiter(place_id)
        abandoned.append(place_id)

    if state.revoked:
        state.revoked = [r for r in state.revoked if r[2] >= now]
    cutoff = now - limits.spent_for_ms
    buried = 0
    while state.spent and buried < TICK_LIMIT:
        place_id, spent_at = next(iter(state.spent.items()))
        if spent_at >= cutoff:
            break
        del state.spent[place_id]
        buried += 1

    promoted = _promote(state, limits, force, now)
    return TickResult(
        promoted=promoted, expired_sessions=expired, no_shows=no_shows, abandoned=abandoned
    )


def _promote(state: MemoryRoom, limits: RoomLimits, force: int, now: int) -> list[str]:
    """Take waiters from the head: within capacity and the bucket, plus ``force`` beyond it."""
    free = limits.capacity - len(state.active) - len(state.promoted)
    n = 0
    units = 0
    if limits.admit_rate > 0:
        units = state.refill(limits.admit_rate, limits.burst, now)
    if limits.promote and free > 0:
        n = min(free, TICK_LIMIT)
        if limits.admit_rate > 0:
            n = min(n, units // TOKEN_UNITS)
    n = min(n, len(state.order))
    if limits.admit_rate > 0 and n > 0:
        state.take_tokens(n)
    if force > 0:
        n += max(0, min(force, free - n, TICK_LIMIT - n))
        n = min(n, len(state.order))

    head = state.order[:n]
    del state.order[:n]
    promoted: list[str] = []
    for _, place_id in head:
        del state.scores[place_id]
        state.heartbeats.pop(place_id, None)
        state.promoted[place_id] = now
        state.spend(place_id, now)
        promoted.append(place_id)
    state.admitted_total += len(promoted)
    state.promoted_total += len(promoted)
    return promoted
