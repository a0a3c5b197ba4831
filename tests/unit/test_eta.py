"""The ETA estimator: the low-traffic overestimate of issue 15, and what it must always keep.

The regression scenario runs through the real gatekeeper, controller and in-process store on a
fake clock: a quiet room (a visitor every 150 s, who browses 40 s and leaves), then six
visitors at once into a room of capacity 2. Version 0.1 told the fourth waiter 600 s, the
issue's figure (its five-minute window held two admissions, both limited by arrivals); the wait
is 90 s.
"""

from __future__ import annotations

import heapq
import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_service import Clock, gate
from waitroom_proxy.domain.eta import Eta, EtaEstimator, fill_then_drain, gamma_quantile
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.tokens import Session, Ticket
from waitroom_proxy.service.controller import Controller

STEP = 0.5  # the controller's interval


class Quiet:
    """Drives one room: sessions leave ``browse`` s after they start, waiters poll every 5 s."""

    def __init__(self, capacity: int, browse: float) -> None:
        self.clock = Clock()
        self.start = self.clock.now
        self.gate, _, _ = gate(RoomPolicy(name="r", capacity=capacity), clock=self.clock)
        self.room = self.gate.rooms["r"]
        self.controller = Controller(self.gate)
        self.browse = browse
        self.events: list[tuple[float, int, str, Session | Ticket]] = []
        self.seq = itertools.count()
        self.admitted_at: dict[str, float] = {}

    def t(self) -> float:
        return self.clock.now - self.start

    def at(self, when: float, kind: str, obj: Session | Ticket) -> None:
        heapq.heappush(self.events, (when, next(self.seq), kind, obj))

    async def run_until(self, end: float) -> None:
        while self.t() < end:
            while self.events and self.events[0][0] <= self.t():
                _, _, kind, obj = heapq.heappop(self.events)
                if kind == "leave":
                    assert isinstance(obj, Session)
                    assert await self.gate.admission.leave(None, obj)
                else:
                    assert isinstance(obj, Ticket)
                    await self.poll(obj)
            await self.controller.run_once()
            self.clock.now += STEP

    def started(self, token: str | None) -> None:
        s = self.gate.sessions.session_for(token or "", self.room, self.clock())
        assert s is not None
        self.at(self.t() + self.browse, "leave", s)

    async def arrive(self) -> tuple[Ticket | None, Eta | None]:
        out = await self.gate.admission.arrive(self.room, None, "/", self.clock())
        if out.kind == "pass":
            self.started(out.session_token)
            return None, None
        assert out.kind == "wait"
        ticket = self.gate.admission.read_ticket(out.cookies[0][1])
        assert ticket is not None
        self.at(self.t() + 5, "poll", ticket)
        eta = out.status["eta_seconds"]
        return ticket, Eta(eta["p50"], eta["p90"]) if eta else None

    async def poll(self, ticket: Ticket) -> None:
        out = await self.gate.admission.heartbeat(ticket, "/", self.clock())
        assert out is not None
        if out.kind == "pass":
            self.admitted_at[ticket.place_id] = self.t()
            self.started(out.session_token)
        else:
            assert out.kind == "wait"
            self.at(self.t() + 5, "poll", ticket)


async def test_quiet_time_before_a_queue_does_not_stretch_the_estimate() -> None:
    sim = Quiet(capacity=2, browse=40)
    for visit in range(4):  # one visitor every 150 s: let in at once, gone 40 s later
        await sim.run_until(150 * visit + 1)
        assert await sim.arrive() == (None, None)
    await sim.run_until(600)
    assert await sim.arrive() == (None, None)
    assert await sim.arrive() == (None, None)  # the room is full
    waiters = [await sim.arrive() for _ in range(4)]
    fourth, told = waiters[3]
    assert fourth is not None and told is not None
    joined = sim.t()
    await sim.run_until(joined + 300)
    actual = sim.admitted_at[fourth.place_id] - joined
    assert 60 <= actual <= 120, actual  # four sessions of 40 s on two slots, plus polling
    # The issue: position 4 told 600 s, admitted after 136 s. Within a factor of 1.5 now.
    assert actual / 1.5 <= told.p50 <= actual * 1.5, (told, actual)
    assert told.p90 >= actual


def feed(
    est: EtaEstimator,
    steps: int,
    *,
    t0: float = 0.0,
    admitted: int = 0,
    per_step: int,
    occupied: int,
    waiting: int,
    capacity: int,
    admit_rate: int = 0,
    dt: float = 1.0,
) -> tuple[float, int]:
    """A steady room: ``per_step`` admissions (and as many departures) every ``dt`` s."""
    t = t0
    for _ in range(steps):
        est.observe(
            t,
            admitted_total=admitted,
            occupied=occupied,
            waiting=waiting,
            capacity=capacity,
            admit_rate=admit_rate,
        )
        t += dt
        admitted += per_step
    return t, admitted


def test_full_room_rate_is_the_departure_rate() -> None:
    est = EtaEstimator()
    feed(est, 120, per_step=2, occupied=100, waiting=50, capacity=100)
    assert est.rate() is not None and math.isclose(est.rate() or 0, 2.0, rel_tol=0.02)
    eta = est.estimate(199)  # 200 departures at 2/s: 100 s
    assert eta is not None and 95 <= eta.p50 <= 101 and eta.p90 > eta.p50


def test_an_emptier_room_tells_the_same_rate_by_littles_law() -> None:
    # Half the slots busy, nobody waiting: one departure per 50 slot-seconds, as when full.
    est = EtaEstimator()
    feed(est, 600, per_step=1, occupied=50, waiting=0, capacity=100)
    assert math.isclose(est.rate() or 0, 2.0, rel_tol=0.02)


def test_the_rate_limit_binds_like_clockwork() -> None:
    est = EtaEstimator(prior_per_minute=60)
    feed(est, 120, per_step=1, occupied=10, waiting=500, capacity=1000, admit_rate=60)
    eta = est.estimate(99)
    assert eta is not None and eta.p50 == 100


def test_an_operator_change_applies_at_once() -> None:
    est = EtaEstimator()
    t, a = feed(est, 120, per_step=1, occupied=100, waiting=50, capacity=100)
    before = est.estimate(99)
    feed(est, 1, t0=t, admitted=a, per_step=1, occupied=100, waiting=50, capacity=200)
    after = est.estimate(99)
    assert before is not None and after is not None
    assert after.p50 <= before.p50 * 0.55  # twice the slots free up twice as fast
    feed(est, 1, t0=t + 1, admitted=a + 1, per_step=1, occupied=100, waiting=50, capacity=200,
         admit_rate=6)  # fmt: skip
    limited = est.estimate(99)
    assert limited is not None and limited.p50 == 1000  # 100 waiters at 6 per minute


def test_paused_is_calculating_not_a_stale_number() -> None:
    est = EtaEstimator()
    t, a = feed(est, 120, per_step=1, occupied=100, waiting=50, capacity=100)
    est.observe(t, admitted_total=a, occupied=100, waiting=50, capacity=100, admitting=False)
    assert est.estimate(5) is None


def test_unknown_until_departures_are_seen_unless_a_rate_is_configured() -> None:
    est = EtaEstimator()
    feed(est, 30, per_step=0, occupied=10, waiting=5, capacity=10)
    assert est.estimate(0) is None
    est = EtaEstimator(prior_per_minute=30)
    assert est.estimate(9) == Eta(20, 30)


def test_a_store_that_lost_its_counters_starts_over() -> None:
    est = EtaEstimator()
    t, _ = feed(est, 120, admitted=1000, per_step=1, occupied=100, waiting=50, capacity=100)
    est.observe(t, admitted_total=3, occupied=0, waiting=0, capacity=100)
    assert est.rate() is None


def test_gamma_quantiles_are_close_to_exact() -> None:
    exact = {(1, 0.0): math.log(2), (1, 1.2816): math.log(10), (4, 0.0): 3.672, (4, 1.2816): 6.681}
    for (k, z), want in exact.items():
        assert math.isclose(gamma_quantile(k, z), want, rel_tol=0.015), (k, z)


def test_fill_then_drain() -> None:
    # Empty room of 100, tokens 10/s, each session frees at 1/100 s: the room fills, then
    # slots free at 1/s.
    fill = fill_then_drain(50, 0, 100, 10.0, 0.01)
    assert math.isclose(fill, 5.0)  # the first 50 arrive on tokens alone
    slow = fill_then_drain(1000, 0, 100, 10.0, 0.01)
    t_full = math.log(1000 / 900) / 0.01
    assert math.isclose(slow, t_full + (1000 - 10 * t_full) / 1.0)
    assert fill_then_drain(10, 0, 0, 10.0, 0.01) >= 10 * 365 * 86_400


samples = st.lists(
    st.tuples(
        st.floats(0.01, 40),  # dt
        st.integers(0, 50),  # admissions
        st.integers(0, 300),  # occupied
        st.integers(0, 10_000),  # waiting
        st.integers(0, 300),  # capacity
        st.sampled_from([0, 0, 1, 60, 6000]),  # admit_rate
        st.booleans(),  # admitting
    ),
    max_size=200,
)


@settings(max_examples=150, deadline=None)
@given(samples, st.integers(0, 10**9), st.integers(0, 6000))
def test_never_raises_and_the_range_is_ordered(
    steps: list[tuple[float, int, int, int, int, int, bool]], ahead: int, prior: int
) -> None:
    est = EtaEstimator(prior_per_minute=prior)
    t, admitted = 1_800_000_000.0, 0
    for dt, a, occupied, waiting, capacity, rate, admitting in steps:
        t += dt
        admitted += a
        est.observe(
            t,
            admitted_total=admitted,
            occupied=occupied,
            waiting=waiting,
            capacity=capacity,
            admit_rate=rate,
            admitting=admitting,
        )
        near, far = est.estimate(0), est.estimate(ahead)
        assert (near is None) == (far is None)
        if near is not None and far is not None:
            assert 1 <= near.p50 <= near.p90 and 1 <= far.p50 <= far.p90
            assert near.p50 <= far.p50, "further back never waits less"
            assert far.p90 <= 10 * 365 * 86_400


def test_bursty_departures_average_out() -> None:
    est = EtaEstimator()
    total = 0
    for t in range(300):
        burst = (t // 10) % 2 == 0
        total += 2 if burst else 0  # 2/s for 10 s, then nothing for 10 s
        est.observe(float(t), admitted_total=total, occupied=50, waiting=20, capacity=50)
    eta = est.estimate(99)
    # 1/s on average; the window ends on bucket edges, so up to one quiet bucket more or less.
    assert eta is not None and 85 <= eta.p50 <= 120 and eta.p90 > eta.p50


def test_rates_for_the_admin_api() -> None:
    est = EtaEstimator()
    assert est.rates() is None
    feed(est, 120, per_step=2, occupied=100, waiting=50, capacity=100)
    rates = est.rates()
    assert rates is not None and math.isclose(rates[0], 2.0, rel_tol=0.02) and rates[1] < rates[0]
