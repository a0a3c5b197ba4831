"""The draw port: the store's side of a scheduled sale, and the values its calls answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class DrawPhase(StrEnum):
    """Where a scheduled room is in its lifecycle, as ``domain.schedule.Schedule.phase`` and the
    store's clock (``draw_step``) place it; also the JSON ``status`` while not open. The domain
    calls it ``Phase``."""

    IDLE = "idle"
    PREQUEUE = "prequeue"
    OPEN = "open"
    ENDED = "ended"


class PrequeueEntry(StrEnum):
    """What ``draw_step`` did with the place id it was given."""

    NONE = "none"
    """No place id given, or the room is not in its pre-queue."""
    IN = "in"
    """The place is in the pre-queue (it was already, or it was added now)."""
    FULL = "full"
    """The pre-queue holds ``max_queue_length`` places; nothing stored."""
    UNCOMMITTED = "uncommitted"
    """No commitment was published yet: nobody may enter before it is (``draw_commit``)."""


@dataclass(frozen=True, slots=True)
class DrawState:
    """The answer of ``draw_step``: the phase by the store's clock and the draw's progress."""

    phase: DrawPhase
    now_ms: int
    """The store's clock."""
    commitment: str = ""
    """The published commitment (hex SHA-256 of the seed), "" before the pre-queue opens."""
    released: bool = False
    """The pre-queue was moved into the queue (``draw_release``)."""
    ended: bool = False
    """The ``ended`` mark was written (``draw_mark``)."""
    prequeue_length: int = 0
    entry: PrequeueEntry = PrequeueEntry.NONE


@runtime_checkable
class DrawStore(Protocol):
    """The store's side of a scheduled sale (``domain.schedule``, ``domain.draw``).

    The store's own clock decides every phase, so replicas with skewed clocks agree, and each
    step that must happen once (commit, release, the end) is decided by the store: the call
    that made it says so, and its replica publishes the event. Each call is atomic. ``bounds``
    are ``Schedule.store_args()``: (prequeue_at, start_at, end_at) in Unix ms, 0 = absent.
    """

    async def draw_step(
        self,
        room: str,
        bounds: tuple[int, int, int],
        place_id: str = "",
        max_length: int = 1_000_000,
    ) -> DrawState:
        """The phase at the store's clock; in the pre-queue, with a committed draw, also
        enter ``place_id`` (once: a place already in is left as it is)."""
        ...

    async def draw_commit(self, room: str, seed: str, commitment: str, committed_at: str) -> bool:
        """Keep the seed and publish its commitment unless one is there; True if this call
        committed."""
        ...

    async def draw_entries(self, room: str) -> tuple[list[str], dict[str, str]]:
        """The pre-queue's place ids in arrival order, and the draw's state map (with the
        secret seed: for the replica that releases, never for a visitor)."""
        ...

    async def draw_release(
        self, room: str, start_ms: int, order: Sequence[str], audit_json: str
    ) -> int:
        """Move the pre-queue into the queue in ``order`` (first admitted first), behind
        nobody and ahead of every later arrival, and keep ``audit_json``; atomic and once.
        Returns how many were released; -1 released already; -2 the store's clock is before
        ``start_ms``; -3 the pre-queue is not exactly ``order`` (read it again)."""
        ...

    async def draw_mark(self, room: str, key: str, value: str) -> bool:
        """Set a field of the draw's state map unless present; True if this call set it."""
        ...

    async def draw_audit(self, room: str) -> str | None:
        """The audit document kept at the release (JSON), None before."""
        ...

    async def draw_reset(self, room: str) -> int:
        """Forget the draw; places still in the pre-queue join the queue in arrival order.
        Returns how many did."""
        ...
