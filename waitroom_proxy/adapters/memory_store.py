"""In-process store: the embedded default when no store URL is configured.

Same semantics as the Redis store (``waitroom_proxy.ports.Store``), checked by the same contract
tests. Every operation runs without awaiting in the middle, so on one event loop each call is
atomic, exactly as a Lua script is on Redis. It is not shared between processes: with several
workers or replicas use the Redis store.

Complexity per room with *n* waiters and *s* sessions:

- ``arrive``: O(log n) search plus an O(n) ``memmove`` to insert into the sorted queue list
  (a few microseconds at 100k waiters; arrivals in FIFO mode append at the end).
- ``heartbeat``: O(log n) (binary search for the position; touches kept in time order in an
  ``OrderedDict``, moved to the end in O(1)). ``tick`` removes every abandoned waiter at once
  (oldest touches first), stricter than the Redis store's sweep, within the same contract.
- ``tick``: O(k log s + k + p) where k is the number of removals and p of promotions, each
  capped at ``TICK_LIMIT``; promotions pop from the head of the list.
- ``touch``: O(log s) per id (a lazy heap of deadlines, compacted when it grows).
- ``leave``: O(log n) search plus an O(n) ``memmove``.
- tombstones (``spent``): a dict in the order they were written (the store's clock only moves
  forward, so that is time order); ``tick`` drops expired ones from the front.
- ``hit``: O(1) amortised (``domain.ratelimit.WindowTable``).

The room state and its steps are in ``memory_room``, the tick in ``memory_tick``; ``restore``
and ``reassert`` in ``memory_reassert``, the meta map, rate limit and one-use ids in
``memory_meta``, the scheduled sale in ``memory_draw``.
"""

from __future__ import annotations

import time
from bisect import bisect_left, insort
from collections.abc import Callable, Sequence

from waitroom_proxy.adapters.memory_draw import MemoryDrawMixin, _Draw
from waitroom_proxy.adapters.memory_meta import MemoryMetaMixin
from waitroom_proxy.adapters.memory_reassert import MemoryRecoveryMixin
from waitroom_proxy.adapters.memory_room import MAX_SCORE, TOKEN_UNITS, MemoryRoom
from waitroom_proxy.adapters.memory_tick import TICK_LIMIT, tick_room
from waitroom_proxy.adapters.once_ids import OnceIds
from waitroom_proxy.domain.policy import ROOM_NAME_RE
from waitroom_proxy.domain.ratelimit import WindowTable
from waitroom_proxy.ports import (
    PlaceStatus,
    QueueView,
    RoomLimits,
    RoomStats,
    TickResult,
)

__all__ = ["TICK_LIMIT", "MemoryStore"]


class MemoryStore(MemoryRecoveryMixin, MemoryMetaMixin, MemoryDrawMixin):
    """The admission state of every room, in this process's memory.

    Args:
        clock: Returns the current time in seconds (``time.time`` by default); tests pass a
            controllable clock.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rooms: dict[str, MemoryRoom] = {}
        self._hits = WindowTable()
        self._once = OnceIds()
        self._draws: dict[str, _Draw] = {}

    def __repr__(self) -> str:
        return f"MemoryStore(rooms={len(self._rooms)})"

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _room(self, room: str) -> MemoryRoom:
        state = self._rooms.get(room)
        if state is None:
            if not ROOM_NAME_RE.fullmatch(room):  # the same refusal as the Redis store's keys
                raise ValueError(f"invalid room name: {room!r}")
            state = self._rooms[room] = MemoryRoom()
        return state

    # -- Store -------------------------------------------------------------------------------

    async def arrive(
        self, room: str, place_id: str, limits: RoomLimits, score: int | None = None
    ) -> QueueView:
        """See ``waitroom_proxy.ports.Store.arrive``."""
        if score is not None and not -MAX_SCORE <= score <= MAX_SCORE:
            raise ValueError(f"score out of range: {score}")
        now = self._now()
        state = self._room(room)
        if place_id in state.scores:
            return state.touched(place_id, now)
        status = state.status(place_id)
        qlen = len(state.scores)
        if status is not PlaceStatus.UNKNOWN:
            return QueueView(status, queue_length=qlen)
        if limits.count_only:
            return state.admit(place_id, limits.session_ttl_ms, now)
        if (
            limits.direct_admit
            and qlen == 0
            and len(state.active) + len(state.promoted) < limits.capacity
            and state.marked(limits.marker)
        ):
            if limits.admit_rate <= 0:
                return state.admit(place_id, limits.session_ttl_ms, now)
            if state.refill(limits.admit_rate, limits.burst, now) >= TOKEN_UNITS:
                state.take_tokens(1)
                return state.admit(place_id, limits.session_ttl_ms, now)
        if qlen >= limits.max_queue_length:
            return QueueView(PlaceStatus.FULL, queue_length=qlen)
        if score is None:
            state.seq += 1
            score = state.seq
        else:
            state.seq = max(state.seq, score)
        state.enqueue(place_id, score, now)
        return state.touched(place_id, now)

    async def heartbeat(
        self, room: str, place_id: str, abandon_after_ms: int = 120_000, linger: float = 0.0
    ) -> QueueView:
        """See ``waitroom_proxy.ports.Store.heartbeat`` (answered at once: ``linger`` unused)."""
        state = self._rooms.get(room)
        if state is None:
            return QueueView(PlaceStatus.UNKNOWN)
        if place_id not in state.scores:
            return QueueView(state.status(place_id), queue_length=len(state.scores))
        now = self._now()
        if state.heartbeats.get(place_id, now) < now - abandon_after_ms:
            state.remove_waiter(place_id)  # abandoned: the next tick would say so
            return QueueView(PlaceStatus.UNKNOWN, queue_length=len(state.scores))
        return state.touched(place_id, now)

    async def claim(self, room: str, place_id: str, session_ttl_ms: int) -> bool:
        """See ``waitroom_proxy.ports.Store.claim``."""
        state = self._rooms.get(room)
        if state is None:
            return False
        if state.promoted.pop(place_id, None) is None:
            return False
        state.set_deadline(place_id, self._now() + session_ttl_ms)
        return True

    async def touch(self, room: str, place_ids: Sequence[str], session_ttl_ms: int) -> int:
        """See ``waitroom_proxy.ports.Store.touch``."""
        state = self._rooms.get(room)
        if state is None:
            return 0
        deadline = self._now() + session_ttl_ms
        n = 0
        for place_id in place_ids:
            current = state.active.get(place_id)
            if current is None:
                continue
            n += 1
            if current < deadline:
                state.set_deadline(place_id, deadline)
        return n

    async def leave(self, room: str, place_id: str, revoke_for_ms: int) -> PlaceStatus:
        """See ``waitroom_proxy.ports.Store.leave``."""
        state = self._room(room)
        now = self._now()
        state.spend(place_id, now)
        if state.remove_waiter(place_id):
            return PlaceStatus.WAITING
        if state.promoted.pop(place_id, None) is not None:
            return PlaceStatus.PROMOTED
        was = PlaceStatus.UNKNOWN
        if state.active.pop(place_id, None) is not None:
            was = PlaceStatus.ACTIVE
        # An unknown place may be a session this store lost: revoked too, never re-asserted
        # (a second leave moves its revocation time, as ZADD does on Redis).
        if revoke_for_ms > 0:
            if was is PlaceStatus.UNKNOWN:
                state.revoked = [r for r in state.revoked if r[1] != place_id]
            insort(state.revoked, (now, place_id, now + revoke_for_ms))
        return was

    async def tick(self, room: str, limits: RoomLimits, force: int = 0) -> TickResult:
        """See ``waitroom_proxy.ports.Store.tick`` (``memory_tick``)."""
        state = self._rooms.get(room)
        if state is None:
            return TickResult()
        return tick_room(state, limits, force, self._now())

    async def stats(self, room: str) -> RoomStats:
        """See ``waitroom_proxy.ports.Store.stats``."""
        state = self._rooms.get(room) or MemoryRoom()
        return RoomStats(
            queue_length=len(state.scores),
            active=len(state.active),
            promoted=len(state.promoted),
            admitted_total=state.admitted_total,
            now_ms=self._now(),
            promoted_total=state.promoted_total,
            head_score=state.order[0][0] if state.order else None,
        )

    async def revoked_since(self, room: str, since_ms: int) -> tuple[list[str], int]:
        """See ``waitroom_proxy.ports.Store.revoked_since``."""
        now = self._now()
        state = self._rooms.get(room)
        if state is None:
            return [], now
        i = bisect_left(state.revoked, (since_ms,))
        return [place_id for _, place_id, _ in state.revoked[i:]], now

    async def ping(self) -> None:
        """Always answers: the store is this process."""

    async def close(self) -> None:
        """Nothing to release."""
