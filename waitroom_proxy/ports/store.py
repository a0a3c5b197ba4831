"""The Store port: the admission state of every room, and the values its calls answer.

Store model (one room; the Redis adapter keeps each piece under ``wr:{room}:<piece>``):

- **queue**: waiters ordered by an integer *score* (arrival sequence in FIFO mode, a lottery
  draw in random mode). Position = 1 + number of waiters with a lower score (ties by id).
- **seen**: the time of every waiter's last *touch* (``arrive`` or ``heartbeat``). A waiter
  untouched for longer than ``abandon_after_ms`` is abandoned: never promoted, answered
  UNKNOWN by ``heartbeat`` (which then removes it), and removed by ``tick`` within about
  twice ``abandon_after_ms`` (the Redis store sweeps the queue a slice per tick; see
  ``lua/tick.lua``). The gatekeeper touches the store only every few polls of a waiter far
  from the front (``waitroom_proxy.domain.pacing``), always well within ``abandon_after``.
- **promoted**: waiters taken from the head by ``tick`` who have not yet claimed; each holds a
  capacity slot. Unclaimed after ``claim_timeout_ms`` → removed by ``tick`` (no-show).
- **active**: sessions, each with a *deadline*; ``tick`` removes sessions past their deadline.
- **bucket**: token bucket for ``admit_rate`` (per minute): refills continuously at
  ``admit_rate / 60`` per second, holds at most ``burst`` tokens (see ``RoomLimits.burst``).
  Every admission (direct in ``arrive`` or by ``tick``) takes one token; ``admit_rate == 0``
  means no rate limit.
- **revoked**: session ids that must no longer pass, each kept until a given time, so every
  replica can drop them from its local cache of verified tokens.
- **spent**: tombstones: every place id that left the queue by promotion, direct admission or
  leave, with the time it did, kept ``spent_for_ms`` (``tick`` removes older ones). A spent or
  ACTIVE place never takes a position again: ``arrive`` and ``heartbeat`` answer SPENT, so a
  kept ticket admits at most once (``waitroom_proxy.domain.lifecycle``).
- **meta**: small string map for runtime room state (``paused``, admin overrides as JSON).
- **counters**: ``admitted_total`` (every admission ever), ``promoted_total`` (waiters taken
  from the queue by ``tick``: in FIFO order everyone taken was ahead of every waiter still
  there, so a waiter's position at its last touch minus the promotions since bounds its
  position now), ``seq`` (last arrival sequence).

Invariants every adapter keeps, atomically, with any number of concurrent callers:
``len(active) + len(promoted) <= capacity`` after any call that adds to either; a place id is
in at most one of queue / promoted / active; admissions never exceed the bucket; every place in
promoted or active has a tombstone, and no tombstoned place is in the queue.

Time: the store's own clock (Redis ``TIME``) for everything it records, so replicas with
skewed clocks agree. ``MemoryStore`` takes a clock callable so tests can move time.

Every method raises ``waitroom_proxy.errors.StoreError`` (and nothing else) when the store
cannot answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


class PlaceStatus(StrEnum):
    """Where a place id stands in the store."""

    WAITING = "waiting"
    """In the queue."""
    PROMOTED = "promoted"
    """Taken from the head; holds a slot until claimed (or the claim times out)."""
    ACTIVE = "active"
    """Has a session."""
    UNKNOWN = "unknown"
    """Not in the store (never was, abandoned, or the store was emptied); no tombstone."""
    SPENT = "spent"
    """``arrive`` / ``heartbeat``: the place is ACTIVE or has a tombstone (it was promoted,
    admitted or given up): its ticket carries no position any more."""
    FULL = "full"
    """``arrive`` only: the queue is at ``max_queue_length``; the newcomer was not added."""


@dataclass(frozen=True, slots=True)
class RoomLimits:
    """What the store needs to know of a room's policy for one call (durations in ms)."""

    capacity: int
    admit_rate: int = 0
    """Admissions per minute; 0 = no rate limit (capacity only)."""
    abandon_after_ms: int = 120_000
    claim_timeout_ms: int = 30_000
    session_ttl_ms: int = 335_000
    """Deadline given to a new session: now + this."""
    max_queue_length: int = 1_000_000
    direct_admit: bool = True
    """``arrive`` may admit at once when nobody waits and a slot and a token are free.
    False in ``queue_all`` mode and while paused."""
    promote: bool = True
    """``tick`` may promote waiters. False in ``queue_all`` mode and while paused."""
    count_only: bool = False
    """``passthrough`` mode: ``arrive`` always admits (no capacity or rate check), but still
    records the session so the active count is right."""
    spent_for_ms: int = 3_900_000
    """How long a tombstone is kept (``domain.lifecycle.spent_for``)."""
    marker: str = ""
    """``arrive`` admits directly only while the room's incarnation marker in the store (the
    meta map's ``incarnation``) is this one: a store that lost the room's state (marker gone
    or replaced) looks empty, and admitting into its free-looking slots would exceed capacity
    once the lost sessions re-assert. ``""``: no check (a replica that has not read the
    marker yet: it starts with what the store holds; tools and store tests)."""

    @property
    def burst(self) -> int:
        """Bucket size: one second's worth of tokens, at least 1."""
        return max(1, -(-self.admit_rate // 60))


@dataclass(frozen=True, slots=True)
class QueueView:
    """The answer of ``arrive`` and ``heartbeat``."""

    status: PlaceStatus
    position: int = 0
    """1-based place in the queue when ``WAITING``; 0 otherwise."""
    queue_length: int = 0
    """Waiters in the queue (all statuses report it)."""
    score: int = 0
    """The waiter's score (arrival sequence or lottery draw) when ``WAITING``; the ticket keeps
    it so the place survives a store that lost its data."""
    promoted_total: int = 0
    """The room's ``promoted_total`` counter at this answer, when ``WAITING`` (0 otherwise)."""
    now_ms: int = 0
    """The store's clock at this answer, when ``WAITING`` (0 otherwise): the ticket keeps it as
    the time of the place's last touch (``domain.pacing``)."""

    @property
    def ahead(self) -> int:
        """People in front of this waiter."""
        return max(0, self.position - 1)


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one admission-controller tick changed. Lists may be capped per tick."""

    promoted: list[str] = field(default_factory=list)
    expired_sessions: list[str] = field(default_factory=list)
    no_shows: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RoomStats:
    """A consistent snapshot of one room."""

    queue_length: int
    active: int
    promoted: int
    admitted_total: int
    now_ms: int
    """The store's clock when the snapshot was taken."""
    promoted_total: int = 0
    """Waiters taken from the queue by ``tick`` so far."""
    head_score: int | None = None
    """The lowest score still in the queue (the head's), None when nobody waits."""


@dataclass(frozen=True, slots=True)
class Reasserted:
    """The answer of ``Store.reassert``: what the store made of the sessions a replica holds."""

    kept: int = 0
    """Sessions the store knew (each now kept at least its lease)."""
    readded: int = 0
    """Sessions the store did not know, counted again: the store had lost them."""
    refused: int = 0
    """Sessions the store has revoked (ended): never counted again."""
    dropped: int = 0
    """Ended sessions the store still counted (a lost end): their slots freed."""


@runtime_checkable
class Store(Protocol):
    """The admission state of every room, shared by all replicas."""

    async def arrive(
        self, room: str, place_id: str, limits: RoomLimits, score: int | None = None
    ) -> QueueView:
        """A visitor without a session asks to get in.

        Already waiting → records a touch (even when silent for long: the caller passes a
        known place id only for a ticket it lets keep its place) and returns the current view;
        promoted → PROMOTED;
        active or tombstoned → SPENT; in these cases nothing else changes. Otherwise:
        ``count_only`` → becomes ACTIVE (no checks). Else, if ``direct_admit`` and the queue is
        empty and a slot and a rate token are free → becomes ACTIVE (deadline now +
        ``session_ttl_ms``, ``admitted_total`` + 1). ACTIVE is answered only by the call that
        admitted the place, which also leaves its tombstone. Else, if the queue holds
        ``max_queue_length`` waiters → FULL, nothing stored. Else joins the queue with
        ``score`` (a lottery draw, or the score a returning ticket carries; the sequence counter
        is raised to at least ``score`` so later arrivals stay behind it) or, when ``score`` is
        None, the next arrival sequence number; heartbeat = now → WAITING.
        """
        ...

    async def heartbeat(
        self, room: str, place_id: str, abandon_after_ms: int = 120_000, linger: float = 0.0
    ) -> QueueView:
        """A waiter's page touches its place. WAITING → its touch = now and the fresh view
        (``promoted_total`` included); WAITING but untouched for longer than
        ``abandon_after_ms`` → abandoned now: removed, UNKNOWN; PROMOTED → PROMOTED; ACTIVE or
        tombstoned → SPENT; otherwise UNKNOWN. Never adds anything. ``linger``: seconds the
        store may hold the call to send it with the room's other heartbeats as one (a far-back
        waiter's: ``domain.pacing.touch_linger``); a store without that cost answers at once."""
        ...

    async def claim(self, room: str, place_id: str, session_ttl_ms: int) -> bool:
        """A promoted waiter takes the slot: PROMOTED → ACTIVE with deadline now +
        ``session_ttl_ms``. True only for the call that made this change: a place is claimed
        once (a second claim, of an ACTIVE place, is False)."""
        ...

    async def touch(self, room: str, place_ids: Sequence[str], session_ttl_ms: int) -> int:
        """Coalesced activity of sessions: each ACTIVE id gets deadline
        max(current, now + ``session_ttl_ms``). Ids not active are ignored (never resurrected).
        Returns how many were extended."""
        ...

    async def restore(
        self,
        room: str,
        place_ids: Sequence[str],
        session_ttl_ms: int,
        min_seq: int = 0,
        spent_ids: Sequence[str] = (),
    ) -> int:
        """Count sessions the store does not know as ACTIVE (deadline now + ``session_ttl_ms``),
        skipping ids that are active or promoted, and tombstone them; tombstone ``spent_ids``
        too (places known to have left the queue). Any of these ids found waiting is a replayed
        ticket that slipped in: it leaves the queue. Raise the arrival sequence to at least
        ``min_seq`` (newcomers then queue behind the waiters of a lost state, who re-enter with
        their tickets' scores). No capacity check: these visitors are already in (their tokens
        verify locally). Returns how many sessions were added. For a replica that saw the
        room's state vanish, and for sessions admitted while the store was down (fail-open)."""
        ...

    async def reassert(
        self,
        room: str,
        leases: Sequence[tuple[str, int]],
        ended: Sequence[str] = (),
        revoke_for_ms: int = 0,
    ) -> Reasserted:
        """Live sessions re-assert themselves; recent ends are applied again.

        ``leases``: (place id, ms) of sessions whose tokens still verify (the caller checked the
        signature). Each ACTIVE id gets deadline max(current, now + ms). An id the store has
        revoked is refused. A promoted id is left as it is. Any other id — the store lost it —
        is ACTIVE again with deadline now + ms, leaves the queue if a replayed ticket put it
        there, and is tombstoned. No capacity check: these visitors were admitted and pass on
        their tokens anyway; counting them again pauses admissions until the room is back under
        capacity. ``ended``: place ids this replica ended (left, completed, revoked): each is
        removed from queue / promoted / active (an end the store lost) and tombstoned, and
        revoked until now + ``revoke_for_ms`` (> 0) unless already revoked. Ended ids are
        applied first, so an id in both lists is refused."""
        ...

    async def leave(self, room: str, place_id: str, revoke_for_ms: int) -> PlaceStatus:
        """Give up the place or end the session, freeing the slot at once, and tombstone the
        place (whatever it was). An ACTIVE session, or a place the store does not know (it may be
        a session the store lost, that must not be re-asserted), is also added to *revoked*
        until now + ``revoke_for_ms``. Returns the status it had (UNKNOWN if none)."""
        ...

    async def tick(self, room: str, limits: RoomLimits, force: int = 0) -> TickResult:
        """One pass of the admission controller, atomic:

        1. remove sessions past their deadline, promotions older than ``claim_timeout_ms``,
           revocations past their time, tombstones older than ``spent_for_ms``, and abandoned
           waiters (untouched for longer than ``abandon_after_ms``: all of them, or, on Redis,
           those of the slice of the queue this call sweeps);
        2. if ``limits.promote``: promote ``min(capacity - active - promoted, tokens)`` waiters
           from the head of the queue (lowest score first), skipping and removing abandoned
           ones, taking a token each, and tombstone them;
        3. if ``force`` > 0 (operator "admit N now"): additionally promote up to ``force``
           waiters ignoring the rate bucket and ``promote``, still within capacity.

        Safe to call from any number of replicas at once.
        """
        ...

    async def stats(self, room: str) -> RoomStats:
        """A consistent snapshot of the room's counts."""
        ...

    async def revoked_since(self, room: str, since_ms: int) -> tuple[list[str], int]:
        """Session ids revoked at or after ``since_ms`` (store clock) and the store's now."""
        ...

    async def get_meta(self, room: str) -> dict[str, str]:
        """The room's runtime state map (``paused``, ``overrides``...)."""
        ...

    async def set_meta(self, room: str, values: dict[str, str]) -> None:
        """Set keys of the room's runtime state map (an empty string deletes a key)."""
        ...

    async def init_meta(self, room: str, key: str, value: str) -> str:
        """Set one key of the room's runtime state map only if it is absent (``value`` is not
        empty), atomically; return the value the key holds afterwards: ``value`` if this call
        wrote it, else the one already there. Replicas starting together agree on one."""
        ...

    async def hit(self, client: str, limit: int, window_ms: int) -> int:
        """Per-client rate limit (sliding window, ``domain.ratelimit``): record one hit of
        ``client`` (e.g. an IP address) and return 0, or, when ``limit`` hits already fall in
        the last ``window_ms``, record nothing and return the ms to wait."""
        ...

    async def once(self, room: str, key: str, ttl_ms: int) -> bool:
        """Record the one-time id ``key`` of ``room`` for ``ttl_ms``; True only for the call
        that recorded it (a solved proof-of-work challenge buys one ticket). Atomic."""
        ...

    async def ping(self) -> None:
        """Raise StoreError unless the store answers."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
