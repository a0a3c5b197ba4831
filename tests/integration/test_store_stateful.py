"""Stateful test of the Redis store on a real server, driven by Hypothesis.

Rules: visitors arrive, heart-beat, claim and leave; three independent clients (replicas) run
the admission tick; time moves forward. Time moves through the test-only clock offset that
every ``RedisStore`` script adds to the server's ``TIME`` (production never sets it), so an
example does not sleep; all replicas are moved alike. Real time still passes (milliseconds),
so the model never predicts *when* something expires: it takes what ``tick`` reports and checks
that it is consistent.

Replays: any ticket ever handed out may come back with the score it was given, to ``arrive``
(as a returning waiter) or to ``heartbeat``. A place that was promoted, admitted or given up is
*spent* (tombstoned): it must never take a position again; only an abandoned one may (the
gatekeeper decides by the ticket's age), at its own score.

Heartbeats come in two kinds: lenient (``abandon_after_ms`` far beyond the room's, as a
caller that does not judge silence) and strict (the room's own, as the gatekeeper calls it): a
strict heartbeat of a waiter silent for longer than the room's ``abandon_after`` abandons it.
The model keeps the store time of every waiter's last touch (within a margin for the real
milliseconds that pass).

Checked after every step:
- active + promoted <= capacity, and the store's counts equal the model's;
- every ticket is in exactly one of queue / promoted / active, the one the model says;
- FIFO: each tick promotes exactly the head of the model's queue (after its abandonments);
- abandonment: only waiters silent for ``abandon_after`` are abandoned (by a tick or a strict
  heartbeat), and none silent that long is ever promoted or answered as waiting;
- nobody is admitted twice; a replay never admits, never queues a spent place;
- admissions in any window <= burst + rate x window (forced admissions excepted).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from waitroom_proxy.adapters.redis_store import RedisStore, room_keys
from waitroom_proxy.ports import PlaceStatus, RoomLimits

pytestmark = pytest.mark.redis

ABANDON_MS = 10_000
MARGIN_MS = 500
"""Real time that may pass between a call and the model's reading of the store clock."""
CLAIM_MS = 5_000
SESSION_MS = 8_000


class StoreMachine(RuleBasedStateMachine):
    url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.replicas = [RedisStore(self.url, timeout=5.0) for _ in range(3)]
        self.raw = redis.asyncio.Redis.from_url(self.url, decode_responses=True)
        self.room = "sm-" + uuid.uuid4().hex[:12]
        self.keys = room_keys(self.room)
        self.limits = RoomLimits(capacity=2)
        self.next_id = 0
        self.state: dict[str, str] = {}
        """Ticket -> waiting / promoted / active / gone."""
        self.spent: set[str] = set()
        """Tickets whose place left the queue by promotion, admission or leave (tombstoned)."""
        self.scores: dict[str, int] = {}
        self.touched: dict[str, int] = {}
        """Waiting place -> store time (ms) just after its last touch."""
        self.ever_admitted: set[str] = set()
        self.admission_times: list[tuple[int, int]] = []
        """Store times (ms, offset included) just before and just after the call that made
        each rate-limited admission: the admission happened in between."""

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        async def close() -> None:
            for store in self.replicas:
                await store.close()
            await self.raw.aclose()

        self.run(close())
        self.loop.close()

    # -- helpers ----------------------------------------------------------------------------

    def answer(self, place_id: str) -> str:
        """What ``heartbeat`` (and ``arrive``, for a place not waiting) must say."""
        state = self.state[place_id]
        if state in ("waiting", "promoted"):
            return state
        return "spent" if place_id in self.spent else "unknown"

    def ids(self, status: str) -> list[str]:
        return sorted(i for i, s in self.state.items() if s == status)

    def queue_order(self) -> list[str]:
        return sorted(self.ids("waiting"), key=lambda i: (self.scores[i], i))

    def now(self) -> int:
        return int(self.run(self.replicas[0].stats(self.room)).now_ms)

    def before(self) -> int:
        return self.now() if self.limits.admit_rate else 0

    def admitted(self, place_id: str, rated: bool, before: int) -> None:
        assert place_id not in self.ever_admitted, f"{place_id} admitted twice"
        self.ever_admitted.add(place_id)
        if rated and self.limits.admit_rate:
            self.admission_times.append((before, self.now()))

    # -- rules -------------------------------------------------------------------------------

    @initialize(
        capacity=st.integers(1, 4),
        admit_rate=st.sampled_from([0, 0, 60, 120, 600]),
        direct_admit=st.booleans(),
    )
    def configure(self, capacity: int, admit_rate: int, direct_admit: bool) -> None:
        self.limits = RoomLimits(
            capacity=capacity,
            admit_rate=admit_rate,
            abandon_after_ms=ABANDON_MS,
            claim_timeout_ms=CLAIM_MS,
            session_ttl_ms=SESSION_MS,
            direct_admit=direct_admit,
        )

    @rule(replica=st.integers(0, 2))
    def arrive(self, replica: int) -> None:
        place_id = f"t{self.next_id:04d}"
        self.next_id += 1
        queue_before = len(self.ids("waiting"))
        before = self.before()
        view = self.run(self.replicas[replica].arrive(self.room, place_id, self.limits))
        if view.status is PlaceStatus.ACTIVE:
            assert self.limits.direct_admit and queue_before == 0
            self.state[place_id] = "active"
            self.spent.add(place_id)
            self.admitted(place_id, rated=True, before=before)
        else:
            assert view.status is PlaceStatus.WAITING, view
            assert view.score > max(self.scores.values(), default=0)
            assert (view.position, view.queue_length) == (queue_before + 1, queue_before + 1)
            self.state[place_id] = "waiting"
            self.scores[place_id] = view.score
            self.touched[place_id] = self.now()

    def silent_ms(self, place_id: str) -> int:
        return self.now() - self.touched[place_id]

    @precondition(lambda self: self.state)
    @rule(data=st.data(), replica=st.integers(0, 2))
    def heartbeat(self, data: st.DataObject, replica: int) -> None:
        place_id = data.draw(st.sampled_from(sorted(self.state)))
        view = self.run(self.replicas[replica].heartbeat(self.room, place_id, 10**9))
        assert view.status.value == self.answer(place_id)
        if self.state[place_id] == "waiting":
            self.touched[place_id] = self.now()
            order = self.queue_order()
            assert view.position == order.index(place_id) + 1
            assert view.queue_length == len(order)
            assert view.score == self.scores[place_id]

    @precondition(lambda self: self.ids("waiting"))
    @rule(data=st.data(), replica=st.integers(0, 2))
    def heartbeat_strict(self, data: st.DataObject, replica: int) -> None:
        place_id = data.draw(st.sampled_from(self.ids("waiting")))
        silent_before = self.silent_ms(place_id)
        view = self.run(self.replicas[replica].heartbeat(self.room, place_id, ABANDON_MS))
        silent_after = self.silent_ms(place_id)
        if view.status is PlaceStatus.UNKNOWN:
            assert silent_after >= ABANDON_MS, (place_id, silent_after)
            self.state[place_id] = "gone"
            return
        assert view.status is PlaceStatus.WAITING, view
        assert silent_before <= ABANDON_MS + MARGIN_MS, (place_id, silent_before)
        self.touched[place_id] = self.now()
        assert view.position == self.queue_order().index(place_id) + 1

    @precondition(lambda self: self.ids("waiting"))
    @rule(data=st.data(), replica=st.integers(0, 2))
    def rearrive(self, data: st.DataObject, replica: int) -> None:
        place_id = data.draw(st.sampled_from(self.ids("waiting")))
        view = self.run(self.replicas[replica].arrive(self.room, place_id, self.limits))
        assert view.status is PlaceStatus.WAITING
        assert view.position == self.queue_order().index(place_id) + 1
        self.touched[place_id] = self.now()

    @precondition(lambda self: self.ids("promoted"))
    @rule(data=st.data(), replica=st.integers(0, 2))
    def claim(self, data: st.DataObject, replica: int) -> None:
        place_id = data.draw(st.sampled_from(self.ids("promoted")))
        assert self.run(self.replicas[replica].claim(self.room, place_id, SESSION_MS))
        self.state[place_id] = "active"
        other = self.replicas[(replica + 1) % 3]
        assert not self.run(other.claim(self.room, place_id, SESSION_MS)), "claimed twice"

    @precondition(lambda self: self.ids("active"))
    @rule(data=st.data(), replica=st.integers(0, 2))
    def touch(self, data: st.DataObject, replica: int) -> None:
        place_ids = data.draw(st.lists(st.sampled_from(sorted(self.state)), max_size=4))
        n = self.run(self.replicas[replica].touch(self.room, place_ids, SESSION_MS))
        assert n == sum(self.state[p] == "active" for p in place_ids)

    @precondition(lambda self: self.state)
    @rule(data=st.data(), replica=st.integers(0, 2))
    def leave(self, data: st.DataObject, replica: int) -> None:
        place_id = data.draw(st.sampled_from(sorted(self.state)))
        status = self.run(self.replicas[replica].leave(self.room, place_id, 60_000))
        expected = self.state[place_id]
        assert status.value == ("unknown" if expected == "gone" else expected)
        self.state[place_id] = "gone"
        self.spent.add(place_id)

    @precondition(lambda self: self.state)
    @rule(data=st.data(), replica=st.integers(0, 2))
    def replay(self, data: st.DataObject, replica: int) -> None:
        """A kept ticket comes back with its score, as a returning waiter (never admitted
        directly: the gatekeeper re-enters waiters with ``direct_admit`` off)."""
        place_id = data.draw(st.sampled_from(sorted(self.state)))
        expected = self.answer(place_id)
        queued = replace(self.limits, direct_admit=False)
        score = self.scores.get(place_id, 1)
        view = self.run(self.replicas[replica].arrive(self.room, place_id, queued, score))
        if expected == "unknown":
            # Abandoned (no tombstone): back at its own score, behind nobody who came later.
            assert view.status is PlaceStatus.WAITING, view
            assert view.score == self.scores[place_id]
            self.state[place_id] = "waiting"
            self.touched[place_id] = self.now()
            order = self.queue_order()
            assert view.position == order.index(place_id) + 1
        else:
            assert view.status.value == expected, (place_id, view)
            if expected == "waiting":
                self.touched[place_id] = self.now()
                assert view.position == self.queue_order().index(place_id) + 1

    @rule(replica=st.integers(0, 2), force=st.sampled_from([0, 0, 0, 1, 3]))
    def tick(self, replica: int, force: int) -> None:
        # An operator's "admit N now" is modelled on a paused tick (promote=False), so every
        # promotion of a forced tick is a forced one (exempt from the rate), none rated.
        limits = self.limits if force == 0 else replace(self.limits, promote=False)
        before = self.before()
        before_ms = self.now()
        result = self.run(self.replicas[replica].tick(self.room, limits, force=force))
        for place_id in result.expired_sessions:
            assert self.state.get(place_id) == "active", place_id
            self.state[place_id] = "gone"
        for place_id in result.no_shows:
            assert self.state.get(place_id) == "promoted", place_id
            self.state[place_id] = "gone"
        after = self.now()
        for place_id in result.abandoned:
            assert self.state.get(place_id) == "waiting", place_id
            assert after - self.touched[place_id] >= ABANDON_MS, place_id
            self.state[place_id] = "gone"
        head = self.queue_order()[: len(result.promoted)]
        assert result.promoted == head, "promotion is not FIFO"
        free = self.limits.capacity - len(self.ids("active")) - len(self.ids("promoted"))
        assert len(result.promoted) <= max(0, free)
        if force == 0 and free > 0 and self.limits.admit_rate == 0:
            # No rate limit: fill every free slot there are waiters for.
            assert len(result.promoted) == min(free, len(self.ids("waiting")))
        if force:
            assert len(result.promoted) == min(force, max(0, free), len(self.ids("waiting")))
        for place_id in result.promoted:
            silent = before_ms - self.touched[place_id]
            assert silent <= ABANDON_MS + MARGIN_MS, f"{place_id} promoted, silent {silent} ms"
            self.state[place_id] = "promoted"
            self.spent.add(place_id)
            self.admitted(place_id, rated=force == 0, before=before)

    @rule(ms=st.sampled_from([100, 1_000, 3_000, 6_000]))
    def advance(self, ms: int) -> None:
        for store in self.replicas:
            store._advance_clock_for_tests(ms)

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def counts_match_and_capacity_holds(self) -> None:
        stats = self.run(self.replicas[0].stats(self.room))
        assert stats.active + stats.promoted <= self.limits.capacity
        assert stats.queue_length == len(self.ids("waiting"))
        assert stats.promoted == len(self.ids("promoted"))
        assert stats.active == len(self.ids("active"))

    @invariant()
    def every_ticket_in_exactly_one_state(self) -> None:
        if not self.state:
            return
        tickets = sorted(self.state)

        async def members() -> list[Any]:
            pipe = self.raw.pipeline(transaction=True)
            for key in (self.keys.queue, self.keys.promoted, self.keys.active):
                pipe.zmscore(key, tickets)
            return list(await pipe.execute())

        queue, promoted, active = self.run(members())
        for i, ticket in enumerate(tickets):
            where = [
                name
                for name, scores in (("waiting", queue), ("promoted", promoted), ("active", active))
                if scores[i] is not None
            ]
            assert len(where) <= 1, (ticket, where)
            assert (where[0] if where else "gone") == self.state[ticket], ticket

    @invariant()
    def rate_never_exceeded(self) -> None:
        rate = self.limits.admit_rate
        times = self.admission_times
        if not rate or len(times) < 2:
            return
        burst = self.limits.burst
        for i in range(len(times)):
            for j in range(i + 1, len(times)):
                # The longest the window can have been: from before the first call to after
                # the last (plus 1 ms of clock rounding).
                window = times[j][1] - times[i][0] + 1
                assert j - i + 1 <= burst + rate * window / 60_000, (i, j, times)


@pytest.mark.slow
def test_store_state_machine(redis_server: object) -> None:
    server = redis_server
    server.flush()  # type: ignore[attr-defined]
    StoreMachine.url = server.url  # type: ignore[attr-defined]
    run_state_machine_as_test(
        StoreMachine,
        settings=settings(
            max_examples=200,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
