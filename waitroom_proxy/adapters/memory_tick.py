"""One pass of the admission controller on a room of the in-process store
(``waitroom_proxy.ports.Store.tick``, the rules of ``lua/tick.lua``): sweep what expired, then
promote from the head of the queue. Nothing here awaits, so the pass is atomic."""

from __future__ import annotations

import heapq
from collections import OrderedDict

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

    no_shows = _pop_older(state.promoted, now - limits.claim_timeout_ms)
    abandoned = _pop_older(state.heartbeats, now - limits.abandon_after_ms)
    for place_id in abandoned:
        state.remove_waiter(place_id)
    if state.revoked:
        state.revoked = [r for r in state.revoked if r[2] >= now]
    _pop_older(state.spent, now - limits.spent_for_ms)

    promoted = _promote(state, limits, force, now)
    return TickResult(
        promoted=promoted, expired_sessions=expired, no_shows=no_shows, abandoned=abandoned
    )


def _pop_older(entries: OrderedDict[str, int], cutoff: int) -> list[str]:
    """Remove the ids at the front of ``entries`` (oldest first) whose time is before
    ``cutoff``, at most ``TICK_LIMIT``; return them."""
    gone: list[str] = []
    while entries and len(gone) < TICK_LIMIT:
        place_id, at = next(iter(entries.items()))
        if at >= cutoff:
            break
        del entries[place_id]
        gone.append(place_id)
    return gone


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
