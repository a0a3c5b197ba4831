"""The whole state of one room of the in-process store, and the steps every call of
``MemoryStore`` (and its mixins) builds on: where a place stands, queueing, tombstones,
session deadlines and the rate bucket. Nothing here awaits."""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections import OrderedDict
from dataclasses import dataclass, field

from waitroom_proxy.ports import PlaceStatus, QueueView

__all__ = ["MAX_SCORE", "TOKEN_UNITS", "MemoryRoom"]

TOKEN_UNITS = 60_000
"""One rate token in bucket units: the bucket refills ``admit_rate`` units per millisecond."""

MAX_SCORE = 2**53
"""Scores must stay exact in a double (Redis sorted-set scores are doubles)."""


@dataclass(slots=True)
class MemoryRoom:
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

    def status(self, place_id: str) -> PlaceStatus:
        """Where a place stands, as ``arrive`` and ``heartbeat`` answer it."""
        if place_id in self.scores:
            return PlaceStatus.WAITING
        if place_id in self.promoted:
            return PlaceStatus.PROMOTED
        if place_id in self.active or place_id in self.spent:
            return PlaceStatus.SPENT
        return PlaceStatus.UNKNOWN

    def spend(self, place_id: str, now: int) -> None:
        """Tombstone a place (the first time it left the queue counts)."""
        if place_id not in self.spent:
            self.spent[place_id] = now

    def enqueue(self, place_id: str, score: int, now: int) -> None:
        """Put a place in the queue with ``score``, touched now."""
        self.scores[place_id] = score
        insort(self.order, (score, place_id))
        self.heartbeats[place_id] = now
        self.heartbeats.move_to_end(place_id)

    def touched(self, place_id: str, now: int) -> QueueView:
        """A waiter touches its place: its touch is now; the fresh WAITING view."""
        self.heartbeats[place_id] = now
        self.heartbeats.move_to_end(place_id)
        score = self.scores[place_id]
        return QueueView(
            PlaceStatus.WAITING,
            position=bisect_left(self.order, (score, place_id)) + 1,
            queue_length=len(self.scores),
            score=score,
            promoted_total=self.promoted_total,
            now_ms=now,
        )

    def remove_waiter(self, place_id: str) -> bool:
        """Take a place out of the queue; whether it was there."""
        score = self.scores.pop(place_id, None)
        self.heartbeats.pop(place_id, None)
        if score is None:
            return False
        key = (score, place_id)
        i = bisect_left(self.order, key)
        if i < len(self.order) and self.order[i] == key:
            del self.order[i]
        return True

    def set_deadline(self, place_id: str, deadline: int) -> None:
        """The place is an active session until ``deadline``."""
        self.active[place_id] = deadline
        heapq.heappush(self.deadlines, (deadline, place_id))
        # Stale heap entries pile up with touches; rebuild once they dominate.
        if len(self.deadlines) > 4 * len(self.active) + 64:
            self.deadlines = [(d, i) for i, d in self.active.items()]
            heapq.heapify(self.deadlines)

    def refill(self, rate: int, burst: int, now: int) -> int:
        """Refill the bucket to ``now`` and return its units."""
        cap = burst * TOKEN_UNITS
        if self.tokens is None:
            self.tokens, self.tokens_ts = cap, now
        elif now > self.tokens_ts:
            self.tokens = min(cap, self.tokens + (now - self.tokens_ts) * rate)
            self.tokens_ts = now
        return self.tokens

    def take_tokens(self, n: int) -> None:
        """Take ``n`` tokens the last ``refill`` counted."""
        assert self.tokens is not None
        self.tokens -= n * TOKEN_UNITS

    def admit(self, place_id: str, session_ttl_ms: int, now: int) -> QueueView:
        """A direct admission: a session until now + ``session_ttl_ms``, tombstoned."""
        self.set_deadline(place_id, now + session_ttl_ms)
        self.spend(place_id, now)
        self.admitted_total += 1
        return QueueView(PlaceStatus.ACTIVE, queue_length=len(self.scores))

    def marked(self, want: str) -> bool:
        """Whether the room's marker allows a direct admission (``RoomLimits.marker``)."""
        return not want or self.meta.get("incarnation") == want
