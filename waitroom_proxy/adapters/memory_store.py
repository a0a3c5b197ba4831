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
"""

from __future__ import annotations

import heapq
import time
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from waitroom_proxy.adapters.memory_draw import MemoryDrawMixin, _Draw
from waitroom_proxy.adapters.memory_meta import MemoryMetaMixin
from waitroom_proxy.adapters.memory_reassert import MemoryRecoveryMixin
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

TICK_LIMIT = 1000
"""Most ids one tick removes from each set, and most waiters it promotes."""

TOKEN_UNITS = 60_000
"""One rate token in bucket units: the bucket refills ``admit_rate`` units per millisecond."""

MAX_SCORE = 2**53
"""Scores must stay exact in a double (Redis sorted-set scores are doubles)."""


@dataclass(slots=True)
class _Room:
    """The whole state of one room."""

    scores: dict[str, int] = field(default_factory=dict)
    """Queue: place id -> score."""
    order: list[tuple[int, str]] = field(default_factory=list)
    """Queue sorted by (score, id): the head is index 0."""
    heartbeats: OrderedDict[str, int] = field(default_factory=OrderedDict)
    """Place id -> last heartbeat (ms), oldest first."""
    promoted: OrderedDict[str, int] = field(default_factory=OrderedDict)
    """Place id -> promotion time (ms), oldest first."""
    active: dict[str, int] = field(default_factory=dict)
    """Session id -> deadline (ms)."""
    deadlines: list[tuple[int, str]] = field(default_factory=list)
    """Lazy min-heap of (deadline, id); entries not matching ``active`` are stale."""
    revoked: list[tuple[int, str, int]] = field(default_factory=list)
    """(revoked at, id, forget after) sorted by revocation time."""
    meta: dict[str, str] = field(default_factory=dict)
    spent: OrderedDict[str, int] = field(default_factory=OrderedDict)
    """Tombstones: place id -> time it left the queue (ms), oldest first."""
    admitted_total: int = 0
    promoted_total: int = 0
    """Waiters taken from the queue by ``tick``."""
    seq: int = 0
    tokens: int | None = None
    """Bucket units (``TOKEN_UNITS`` per token); None = full (never used)."""
    tokens_ts: int = 0


class MemoryStore(MemoryRecoveryMixin, MemoryMetaMixin, MemoryDrawMixin):
    """The admission state of every room, in this process's memory.

    Args:
        clock: Returns the current time in seconds (``time.time`` by default); tests pass a
            controllable clock.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rooms: dict[str, _Room] = {}
        self._hits = WindowTable()
        self._once = OnceIds()
        self._draws: dict[str, _Draw] = {}

    def __repr__(self) -> str:
        return f"MemoryStore(rooms={len(self._rooms)})"

    # -- helpers -----------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def _room(self, room: str) -> _Room:
        state = self._rooms.get(room)
        if state is None:
            if not ROOM_NAME_RE.fullmatch(room):  # the same refusal as the Redis store's keys
                raise ValueError(f"invalid room name: {room!r}")
            state = self._rooms[room] = _Room()
        return state

    def _status(self, state: _Room, place_id: str) -> PlaceStatus:
        """Where a place stands, as ``arrive`` and ``heartbeat`` answer it."""
        if place_id in state.scores:
            return PlaceStatus.WAITING
        if place_id in state.promoted:
            return PlaceStatus.PROMOTED
        if place_id in state.active or place_id in state.spent:
            return PlaceStatus.SPENT
        return PlaceStatus.UNKNOWN

    @staticmethod
    def _spend(state: _Room, place_id: str, now: int) -> None:
        """Tombstone a place (the first time it left the queue counts)."""
        if place_id not in state.spent:
            state.spent[place_id] = now

    @staticmethod
    def _position(state: _Room, place_id: str) -> int:
        return bisect_left(state.order, (state.scores[place_id], place_id)) + 1

    @staticmethod
    def _remove_waiter(state: _Room, place_id: str) -> bool:
        score = state.scores.pop(place_id, None)
        state.heartbeats.pop(place_id, None)
        if score is None:
            return False
        key = (score, place_id)
        i = bisect_left(state.order, key)
        if i < len(state.order) and state.order[i] == key:
            del state.order[i]
        return True

    @staticmethod
    def _set_deadline(state: _Room, place_id: str, deadline: int) -> None:
        state.active[place_id] = deadline
        heapq.heappush(state.deadlines, (deadline, place_id))
        # Stale heap entries pile up with touches; rebuild once they dominate.
        if len(state.deadlines) > 4 * len(state.active) + 64:
            state.deadlines = [(d, i) for i, d in state.active.items()]
            heapq.heapify(state.deadlines)

    @staticmethod
    def _refill(state: _Room, rate: int, burst: int, now: int) -> int:
        """Refill the bucket to ``now`` and return its units."""
        cap = burst * TOKEN_UNITS
        if state.tokens is None:
            state.tokens, state.tokens_ts = cap, now
        elif now > state.tokens_ts:
            state.tokens = min(cap, state.tokens + (now - state.tokens_ts) * rate)
            state.tokens_ts = now
        return state.tokens

    def _admit(self, state: _Room, place_id: str, session_ttl_ms: int, now: int) -> QueueView:
        self._set_deadline(state, place_id, now + session_ttl_ms)
        self._spend(state, place_id, now)
        state.admitted_total += 1
        return QueueView(PlaceStatus.ACTIVE, queue_length=len(state.scores))

    # -- Store -------------------------------------------------------------------------------

    async def arrive(
        self, room: str, place_id: str, limits: RoomLimits, score: int | None = None
    ) -> QueueView:
        """See ``waitroom_proxy.ports.Store.arrive``."""
        if score is not None and not -MAX_SCORE <= score <= MAX_SCORE:
            raise ValueError(f"score out of range: {score}")
        now = self._now()
        state = self._room(room)
        current = state.scores.get(place_id)
        if current is not None:
            state.heartbeats[place_id] = now
            state.heartbeats.move_to_end(place_id)
            return QueueView(
                PlaceStatus.WAITING,
                position=self._position(state, place_id),
                queue_length=len(state.scores),
                score=current,
                promoted_total=state.promoted_total,
                now_ms=now,
            )
        status = self._status(state, place_id)
        qlen = len(state.scores)
        if status is not PlaceStatus.UNKNOWN:
            return QueueView(status, queue_length=qlen)
        if limits.count_only:
            return self._admit(state, place_id, limits.session_ttl_ms, now)
        if (
            limits.direct_admit
            and qlen == 0
            and len(state.active) + len(state.promoted) < limits.capacity
            and _marked(state.meta, limits.marker)
        ):
            if limits.admit_rate <= 0:
                return self._admit(state, place_id, limits.session_ttl_ms, now)
            if self._refill(state, limits.admit_rate, limits.burst, now) >= TOKEN_UNITS:
                assert state.tokens is not None
                state.tokens -= TOKEN_UNITS
                return self._admit(state, place_id, limits.session_ttl_ms, now)
        if qlen >= limits.max_queue_length:
            return QueueView(PlaceStatus.FULL, queue_length=qlen)
        if score is None:
            state.seq += 1
            score = state.seq
        else:
            state.seq = max(state.seq, score)
        state.scores[place_id] = score
        insort(state.order, (score, place_id))
        state.heartbeats[place_id] = now
        return QueueView(
            PlaceStatus.WAITING,
            position=self._position(state, place_id),
            queue_length=qlen + 1,
            score=score,
            promoted_total=state.promoted_total,
            now_ms=now,
        )

    async def heartbeat(
        self, room: str, place_id: str, abandon_after_ms: int = 120_000
    ) -> QueueView:
        """See ``waitroom_proxy.ports.Store.heartbeat``."""
        state = self._rooms.get(room)
        if state is None:
            return QueueView(PlaceStatus.UNKNOWN)
        score = state.scores.get(place_id)
        if score is None:
            return QueueView(self._status(state, place_id), queue_length=len(state.scores))
        now = self._now()
        if state.heartbeats.get(place_id, now) < now - abandon_after_ms:
            self._remove_waiter(state, place_id)  # abandoned: the next tick would say so
            return QueueView(PlaceStatus.UNKNOWN, queue_length=len(state.scores))
        state.heartbeats[place_id] = now
        state.heartbeats.move_to_end(place_id)
        return QueueView(
            PlaceStatus.WAITING,
            position=self._position(state, place_id),
            queue_length=len(state.scores),
            score=score,
            promoted_total=state.promoted_total,
            now_ms=now,
        )

    async def claim(self, room: str, place_id: str, session_ttl_ms: int) -> bool:
        """See ``waitroom_proxy.ports.Store.claim``."""
        state = self._rooms.get(room)
        if state is None:
            return False
        if state.promoted.pop(place_id, None) is None:
            return False
        self._set_deadline(state, place_id, self._now() + session_ttl_ms)
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
                self._set_deadline(state, place_id, deadline)
        return n

    async def leave(self, room: str, place_id: str, revoke_for_ms: int) -> PlaceStatus:
        """See ``waitroom_proxy.ports.Store.leave``."""
        state = self._room(room)
        now = self._now()
        self._spend(state, place_id, now)
        if self._remove_waiter(state, place_id):
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
        """See ``waitroom_proxy.ports.Store.tick``."""
        state = self._rooms.get(room)
        if state is None:
            return TickResult()
        now = self._now()

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
            self._remove_waiter(state, place_id)
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

        free = limits.capacity - len(state.active) - len(state.promoted)
        n = 0
        units = 0
        if limits.admit_rate > 0:
            units = self._refill(state, limits.admit_rate, limits.burst, now)
        if limits.promote and free > 0:
            n = min(free, TICK_LIMIT)
            if limits.admit_rate > 0:
                n = min(n, units // TOKEN_UNITS)
        n = min(n, len(state.order))
        if limits.admit_rate > 0 and n > 0:
            assert state.tokens is not None
            state.tokens -= n * TOKEN_UNITS
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
            self._spend(state, place_id, now)
            promoted.append(place_id)
        state.admitted_total += len(promoted)
        state.promoted_total += len(promoted)
        return TickResult(
            promoted=promoted, expired_sessions=expired, no_shows=no_shows, abandoned=abandoned
        )

    async def stats(self, room: str) -> RoomStats:
        """See ``waitroom_proxy.ports.Store.stats``."""
        state = self._rooms.get(room) or _Room()
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


def _marked(meta: dict[str, str], want: str) -> bool:
    """Whether the room's marker allows a direct admission (``RoomLimits.marker``)."""
    if not want:
        return True
    return meta.get("incarnation") == want
