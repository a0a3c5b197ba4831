"""When a waiter's poll must reach the store, and what it is told when it need not. Pure.

A room lives on one store shard, so one store core bounds how many waiters it holds (README,
"One room's ceiling"): ``waiters ≈ core budget / (store CPU per touch × touches per waiter per
second)``. A *touch* is the store call of a poll (``Store.heartbeat``); it keeps the place
(``abandon_after`` is judged from the last touch) and reads the exact position. Far from the
front little can change between two polls, so there most polls are answered without the store,
from what the ticket carries of its last touch (the place's score, its position, the room's
``promoted_total`` and the store's clock then, all signed) and from the room's latest counts
(``RoomStats``, which every replica reads each controller tick).

**The rules** (``answer``; every condition must hold for a poll to skip the store):

- the mode keeps arrival order (FIFO, ``queue_all``): in ``random`` mode newcomers draw
  places ahead of a waiter, and every poll touches;
- the ticket carries its last touch, of the store's current state (``epoch``: the room's
  incarnation marker, which changes when the store loses its data: then every waiter
  re-enters at its next poll, as before pacing);
- the room's counts are at most ``STATS_MAX_AGE`` old and someone else holds the head of the
  queue (``ticket.score > head_score``): while that holds the waiter has not been promoted. A
  promoted waiter's next poll touches (and claims) as soon as its replica's counts show the
  head past it, at most one controller tick after the promotion;
- the waiter is not within ``NEAR_FRONT`` places of the front (there every poll touches: few
  waiters, and exact positions matter most);
- the touch is not due (``touch_due``).

**The touch interval and ``abandon_after``.** A waiter polling every ``r`` seconds
(``rules.refresh_seconds``) touches every ``k = max(1, ⌊abandon_after / r⌋ - 2)`` polls
(``polls_per_touch``): a poll touches once ``(k - ½) r`` has passed since the last touch, by
the store's clock. So the gap between two touches stays below ``(k + ½) r ≤ abandon_after -
1.5 r``: a waiter may lose a poll (a network blip, a throttled timer) and still never be
abandoned. ``refresh_seconds`` never exceeds ``abandon_after / 3``, so ``k ≥ 1`` always, and
``k = 1`` (every poll, as before pacing) whenever ``abandon_after < 4 r``. With the defaults
(``heartbeat_interval`` 10 s, ``abandon_after`` 120 s): every poll within 1,000 places of the
front (10 s), every 4th from 1,000 on (polls every 20 s: a touch every 80 s).

**Why far back polls every 20 s, not 30 s.** The touch interval is ``k r ≈ abandon_after -
2 r``: the shorter the poll, the rarer the touch. Polls every 30 s far back (as until this
version, from 10,000 ahead) gave ``k = 2``, a touch every 60 s (1/60 touch per waiter per
second); every 20 s gives ``k = 4``, a touch every 80 s (1/80): 25 % fewer store calls far
back, so a room's one store core holds a third more waiters. The price: 1.5× the polls far
back (1/20 against 1/30 per waiter per second), answered by the replicas without the store
(from the signed ticket and the room's counts). Replicas scale out; a room's store core does
not (README, "One room's ceiling"). Shorter still (15 s: ``k = 6``, a touch every 90 s) would
double the polls for 11 % fewer touches.

**The exact rank at every touch.** ``ZRANK`` on a 2M-place queue is ≈ 4-8 µs of a touch's
≈ 19-32 µs of store CPU (``python -m bench.ceiling_parts``: the script beside a copy without
it), and far back a touch could report the bound below instead. It does not: the bound's
error would then grow with every touch that skipped the rank instead of starting again from
the exact one, and the honest-position rule below (above the true position by at most the
waiters who left since the last touch) would no longer hold.

**Honest positions.** A poll answered without the store shows ``min(position at the last
touch - promotions since, score - head score + 1)``: everyone promoted since was ahead (FIFO),
and every place between the head's score and the waiter's counts at most once. It is never
below the true position (one exception: places restored after a store loss with a lower score,
which re-enter ahead), and above it by at most the waiters ahead who left since the last touch,
at most ``(k + ½) r`` ago (80-90 s far back by default). ``queue_length`` is the room's latest
count (at most ``STATS_MAX_AGE`` old).

**Gathered touches.** A touch's store CPU falls with the touches one store call carries (the
call's own cost is shared: ``adapters/redis_heartbeats.py``), so a far-back waiter's touch may
wait ``FAR_LINGER`` for the room's others (``touch_linger``): 25 ms on a poll every 20 s. A
replica then sends ``≈ 1 + FAR_LINGER × its far-back touches per second`` ids per call (README,
"One room's ceiling"). Near the front nothing waits: a touch there goes with those of the same
event-loop turn only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from waitroom_proxy.domain.policy import Mode, RoomPolicy
from waitroom_proxy.domain.rules import refresh_seconds
from waitroom_proxy.domain.tokens import Ticket
from waitroom_proxy.ports import PlaceStatus, QueueView, RoomStats

__all__ = [
    "FAR_LINGER",
    "NEAR_FRONT",
    "STATS_MAX_AGE",
    "RoomNow",
    "answer",
    "epoch_of",
    "polls_per_touch",
    "record_touch",
    "touch_due",
    "touch_interval",
    "touch_linger",
]

NEAR_FRONT = 1_000
"""Waiters with fewer people ahead touch the store on every poll."""
STATS_MAX_AGE = 5.0
"""Seconds: older room counts (a controller that stopped ticking, a store that fails for this
room) and every poll touches the store."""
PACED_MODES = frozenset({Mode.FIFO, Mode.QUEUE_ALL})
"""Modes that keep arrival order, so a waiter's position only moves forward between touches."""
EPOCH_CHARS = 8
FAR_LINGER = 0.025
"""Seconds a far-back waiter's touch may wait to share one store call with the room's others."""


def polls_per_touch(policy: RoomPolicy, ahead: int) -> int:
    """How many polls of a waiter ``ahead`` places from the front make one store touch."""
    if policy.mode not in PACED_MODES or ahead < NEAR_FRONT:
        return 1
    r = refresh_seconds(policy, ahead)
    return max(1, math.floor(policy.abandon_after / r) - 2)


def touch_interval(policy: RoomPolicy, ahead: int) -> float:
    """Seconds between the store touches of a waiter ``ahead`` places from the front who polls
    on schedule (the ceiling's denominator: ``bench/ceiling.py``)."""
    return polls_per_touch(policy, ahead) * refresh_seconds(policy, ahead)


def touch_linger(ticket: Ticket) -> float:
    """How long this poll's touch may wait for the room's other touches: ``FAR_LINGER`` when
    the ticket's last position had ``NEAR_FRONT`` or more waiters ahead, else 0."""
    return FAR_LINGER if ticket.position - 1 >= NEAR_FRONT else 0.0


def touch_due(policy: RoomPolicy, ahead: int, since_touch: float) -> bool:
    """Must this poll touch, ``since_touch`` seconds (store clock) after the last touch?"""
    r = refresh_seconds(policy, ahead)
    return since_touch >= (polls_per_touch(policy, ahead) - 0.5) * r


def epoch_of(incarnation: str | None) -> str:
    """What a ticket keeps of the room's incarnation marker ("" while it is not known)."""
    return (incarnation or "")[:EPOCH_CHARS]


@dataclass(frozen=True, slots=True)
class RoomNow:
    """What this replica knows of a room at the time of a poll."""

    stats: RoomStats | None
    """The room's latest counts (``Store.stats``, read by the controller)."""
    stats_at: float
    """When they arrived (this replica's clock, seconds)."""
    epoch: str
    """``epoch_of`` the room's incarnation marker as this replica last read it."""


def answer(policy: RoomPolicy, ticket: Ticket, room: RoomNow, now: float) -> QueueView | None:
    """The answer to a waiter's poll without a store call, or None when it must touch.

    ``now`` is this replica's clock; the time since the last touch is measured on the store's
    clock (the counts' ``now_ms`` plus the time since they arrived), so replicas with skewed
    clocks agree on it, as the store judges abandonment by its own clock.
    """
    stats = room.stats
    if (
        policy.mode not in PACED_MODES
        or ticket.position <= 0
        or not ticket.epoch
        or ticket.epoch != room.epoch
        or stats is None
        or stats.head_score is None
        or ticket.score <= stats.head_score
        or stats.promoted_total < ticket.promoted
    ):
        return None
    age = now - room.stats_at
    if not 0 <= age <= STATS_MAX_AGE:
        return None
    position = min(
        ticket.position - (stats.promoted_total - ticket.promoted),
        ticket.score - stats.head_score + 1,
    )
    if position - 1 < NEAR_FRONT or position > stats.queue_length:
        return None  # near the front, or the counts disagree with the ticket: ask the store
    since_touch = stats.now_ms / 1000 + age - ticket.touched
    if since_touch < 0 or touch_due(policy, position - 1, since_touch):
        return None
    return QueueView(
        PlaceStatus.WAITING,
        position=position,
        queue_length=stats.queue_length,
        score=ticket.score,
        promoted_total=ticket.promoted,
    )


def record_touch(ticket: Ticket, view: QueueView, epoch: str) -> Ticket:
    """``ticket`` carrying what the store just said of its place (a WAITING ``view``)."""
    return dataclasses.replace(
        ticket,
        position=view.position,
        promoted=view.promoted_total,
        touched=view.now_ms // 1000,
        epoch=epoch,
    )
