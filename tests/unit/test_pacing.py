"""When a poll may skip the store (``domain.pacing``): the rule against ``abandon_after``, the
guards that force a touch, and the position shown without the store (never below the truth).

The property tests simulate a waiter far back in a FIFO queue: the page polls on schedule with
jitter and sometimes loses a poll, the queue moves (promotions from the head, departures ahead),
the replica's clock is skewed from the store's, and its counts refresh every half second. Every
poll goes through ``pacing.answer``; a poll it does not answer touches the model store.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waitroom_proxy.domain import pacing
from waitroom_proxy.domain.policy import Mode, RoomPolicy
from waitroom_proxy.domain.rules import refresh_seconds
from waitroom_proxy.domain.tokens import Ticket
from waitroom_proxy.ports import PlaceStatus, QueueView, RoomStats

POLICY = RoomPolicy(name="far", capacity=100)
NOW = 1_800_000_000.0
EPOCH = "0123abcd"


def _stats(**kw: object) -> RoomStats:
    base: dict[str, object] = {
        "queue_length": 60_000,
        "active": 100,
        "promoted": 0,
        "admitted_total": 500,
        "now_ms": int(NOW * 1000),
        "promoted_total": 500,
        "head_score": 501,
    }
    base.update(kw)
    return RoomStats(**base)  # type: ignore[arg-type]


def _ticket(**kw: object) -> Ticket:
    base: dict[str, object] = {
        "room": "far",
        "place_id": "p",
        "score": 50_501,
        "last_seen": int(NOW) - 10,
        "position": 50_001,
        "promoted": 500,
        "touched": int(NOW) - 10,
        "epoch": EPOCH,
    }
    base.update(kw)
    return Ticket(**base)  # type: ignore[arg-type]


def _room(stats: RoomStats | None = None, age: float = 0.2) -> pacing.RoomNow:
    return pacing.RoomNow(stats if stats is not None else _stats(), NOW - age, EPOCH)


def test_default_schedule() -> None:
    """Defaults (heartbeat 10 s, abandon_after 120 s): every poll near the front; from 1,000
    back a touch every 80 s (polls every 20 s: every 4th poll)."""
    assert [pacing.polls_per_touch(POLICY, a) for a in (0, 999, 1_000, 9_999, 10_000)] == [
        1, 1, 4, 4, 4,
    ]  # fmt: skip
    assert [pacing.touch_interval(POLICY, a) for a in (0, 5_000, 50_000)] == [10, 80, 80]


def test_a_skipped_poll_shows_a_bound_from_the_ticket_and_the_counts() -> None:
    # 1,000 promoted since the touch: 50,001 - 1,000; the score bound is looser here.
    view = pacing.answer(POLICY, _ticket(), _room(_stats(promoted_total=1_500)), NOW)
    assert view == QueueView(
        PlaceStatus.WAITING, position=49_001, queue_length=60_000, score=50_501, promoted_total=500
    )
    # Many left ahead of it: the head's score bounds the position tighter.
    view = pacing.answer(POLICY, _ticket(), _room(_stats(head_score=30_000)), NOW)
    assert view is not None and view.position == 50_501 - 30_000 + 1


@pytest.mark.parametrize(
    ("why", "policy", "ticket", "room", "now"),
    [
        ("random mode", dataclasses.replace(POLICY, mode=Mode.RANDOM), _ticket(), _room(), NOW),
        ("a 0.1 ticket (no touch)", POLICY, _ticket(position=0), _room(), NOW),
        ("the store lost its state", POLICY, _ticket(epoch="ffffffff"), _room(), NOW),
        ("no marker read yet", POLICY, _ticket(epoch=""), pacing.RoomNow(_stats(), NOW, ""), NOW),
        ("no counts yet", POLICY, _ticket(), pacing.RoomNow(None, 0.0, EPOCH), NOW),
        ("counts too old", POLICY, _ticket(), _room(age=pacing.STATS_MAX_AGE + 0.1), NOW),
        ("counts from the future", POLICY, _ticket(), _room(age=-1.0), NOW),
        ("nobody waits", POLICY, _ticket(), _room(_stats(head_score=None)), NOW),
        ("at the head", POLICY, _ticket(), _room(_stats(head_score=50_501)), NOW),
        ("promoted (head past it)", POLICY, _ticket(), _room(_stats(head_score=50_600)), NOW),
        ("counter went back", POLICY, _ticket(), _room(_stats(promoted_total=499)), NOW),
        ("near the front", POLICY, _ticket(), _room(_stats(promoted_total=49_600)), NOW),
        ("longer than the queue", POLICY, _ticket(), _room(_stats(queue_length=40_000)), NOW),
        ("touch due", POLICY, _ticket(touched=int(NOW) - 70), _room(), NOW),  # 3.5 polls of 20 s
        ("touched in the future", POLICY, _ticket(touched=int(NOW) + 60), _room(), NOW),
    ],
)
def test_each_guard_makes_the_poll_touch(
    why: str, policy: RoomPolicy, ticket: Ticket, room: pacing.RoomNow, now: float
) -> None:
    assert pacing.answer(policy, ticket, room, now) is None, why


def test_the_time_since_the_touch_is_the_stores() -> None:
    """The replica's clock 200 s behind the store's: the touch is still due on time (the
    counts say what time it is in the store)."""
    skewed = NOW - 200
    room = pacing.RoomNow(_stats(), skewed - 0.2, EPOCH)
    assert pacing.answer(POLICY, _ticket(touched=int(NOW) - 10), room, skewed) is not None
    assert pacing.answer(POLICY, _ticket(touched=int(NOW) - 71), room, skewed) is None


@settings(max_examples=300, deadline=None)
@given(
    heartbeat=st.floats(1.0, 60.0),
    abandon_factor=st.floats(3.0, 30.0),
    ahead=st.integers(0, 2_000_000),
)
def test_the_gap_between_touches_leaves_room_for_a_lost_poll(
    heartbeat: float, abandon_factor: float, ahead: int
) -> None:
    """For any schedule: a touch every k polls with (k + ½) r + 1.5 r ≤ abandon_after, or every
    poll (k = 1, as before pacing)."""
    policy = dataclasses.replace(
        POLICY, heartbeat_interval=heartbeat, abandon_after=heartbeat * abandon_factor
    )
    r = refresh_seconds(policy, ahead)
    k = pacing.polls_per_touch(policy, ahead)
    assert k >= 1
    assert k == 1 or (k + 0.5) * r + 1.5 * r <= policy.abandon_after + 1e-9


def simulate(
    seed: int, heartbeat: float, abandon_factor: float, skew: float, start: int
) -> tuple[int, int, int]:
    """One waiter ``start`` places back, polling through ``pacing.answer`` until it nears the
    front (or 400 polls). Asserts on every poll; returns (polls, touches, polls skipped while
    at least ``NEAR_FRONT`` from the front)."""
    rng = random.Random(seed)
    policy = dataclasses.replace(
        POLICY, heartbeat_interval=heartbeat, abandon_after=heartbeat * abandon_factor
    )
    ahead = list(range(1, start + 1))  # the scores ahead (FIFO: arrival sequence)
    score = start + 1
    behind = 5_000
    promoted_total = 0
    store_now = 1_700_000_000.0  # the store's clock; the replica's reads store_now + skew

    def view() -> QueueView:
        return QueueView(
            PlaceStatus.WAITING,
            position=len(ahead) + 1,
            queue_length=len(ahead) + 1 + behind,
            score=score,
            promoted_total=promoted_total,
            now_ms=int(store_now * 1000),
        )

    ticket = pacing.record_touch(
        Ticket("far", "p", score, int(store_now + skew), int(store_now + skew)), view(), EPOCH
    )
    last_touch = store_now
    stats: RoomStats | None = None
    stats_at = 0.0
    touches = polls = skipped_far = 0
    lost_last = False
    left = 0  # departures ahead since the last touch
    shown = ticket.position - 1
    while len(ahead) > 50 and polls < 400:
        # The page waits refresh_seconds for what it was shown (jittered), maybe losing a poll.
        t_end = store_now + refresh_seconds(policy, shown) * rng.uniform(0.95, 1.05)
        while store_now < t_end:  # the queue moves; the replica's counts refresh at 2 Hz
            store_now += min(0.5, t_end - store_now)
            for _ in range(rng.choice([0, 0, 1, 3])):
                ahead.pop(0)
                promoted_total += 1
                if not ahead:
                    break
            if ahead and rng.random() < 0.3:
                ahead.pop(rng.randrange(len(ahead)))  # someone ahead gives up
                left += 1
            stats = RoomStats(
                queue_length=len(ahead) + 1 + behind,
                active=0,
                promoted=0,
                admitted_total=promoted_total,
                now_ms=int(store_now * 1000),
                promoted_total=promoted_total,
                head_score=ahead[0] if ahead else score,
            )
            stats_at = store_now + skew
        if not lost_last and rng.random() < 0.1:
            lost_last = True  # at most one poll lost in a row
            continue
        lost_last = False
        polls += 1
        now = store_now + skew
        answered = pacing.answer(policy, ticket, pacing.RoomNow(stats, stats_at, EPOCH), now)
        assert store_now - last_touch < policy.abandon_after, "the place would be lost"
        if answered is None:
            touches += 1
            last_touch = store_now
            ticket = pacing.record_touch(ticket, view(), EPOCH)
            left = 0
            shown = len(ahead)
        else:
            assert answered.position >= len(ahead) + 1, "shown ahead of its true place"
            assert answered.position <= len(ahead) + 1 + left, "staler than its bound"
            assert answered.queue_length == len(ahead) + 1 + behind
            skipped_far += answered.position - 1 >= pacing.NEAR_FRONT
            shown = answered.position - 1
    return polls, touches, skipped_far


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    heartbeat=st.sampled_from([2.0, 5.0, 10.0]),
    abandon_factor=st.sampled_from([6.0, 12.0, 20.0]),
    skew=st.floats(-300.0, 300.0),
    start=st.integers(1_200, 40_000),
)
def test_a_waiter_far_back_is_never_abandoned_and_never_shown_ahead_of_its_place(
    seed: int, heartbeat: float, abandon_factor: float, skew: float, start: int
) -> None:
    simulate(seed, heartbeat, abandon_factor, skew, start)


def test_far_back_at_the_default_schedule_most_polls_skip_the_store() -> None:
    """Defaults, 30,000 places back (polls every 20 s): about one touch every 4 polls, then
    every poll (the last 1,000)."""
    polls, touches, skipped = simulate(7, 10.0, 12.0, 0.0, 30_000)
    assert polls >= 100 and skipped > 0.6 * polls and touches < 0.4 * polls, (polls, touches)
