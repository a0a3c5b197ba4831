"""Waiting-time estimate from how fast slots free up. Pure; takes ``now``.

**What was wrong.** Version 0.1 took the admission rate over the last five minutes of
wall time and told a waiter with ``ahead`` people in front ``(ahead + 1) / rate``. At low traffic
those five minutes are mostly time when *nobody waited*: the few admissions were limited by
arrivals, not by free slots, so the rate came out several times too low and the wait several
times too long (position 4 was told 600 s: two direct admissions in 300 s; it was admitted after
136 s, when four sessions ended). Counting idle time as if it were service time is the bias;
``bench/eta_sim.py`` reproduces it (about 4x in its ``lulls`` scenario) and measures the fix.

**How it is estimated now.** A waiter is admitted when ``ahead + 1`` slots have freed up (or
tokens, if ``admit_rate`` binds), so the estimate models the supply of slots, which exists
whether or not anyone waits:

- each sample of the store's counters gives, per interval, the admissions ``a``, the change of
  occupied slots (``active + promoted``), hence the *departures* ``d = a - Δoccupied`` (sessions
  ended, left, no-shows), and the *exposure* (occupied slot-seconds);
- the per-slot departure rate is ``h = Σd / Σexposure`` (Little's law), so with the room full
  slots free up at ``capacity * h`` per second. It holds whether the room was full or not, so
  quiet periods inform the estimate instead of biasing it;
- the admission rate *while someone was waiting* (intervals that began with a queue) is the
  second measurement. The supply is the larger of the two: Little's estimate lags while a room
  fills with fresh sessions (young sessions rarely end yet), the busy rate lags after capacity
  is raised and is missing until someone has waited; each errs low, so the larger errs least;
- both use a window that reaches back until it holds ``target_events`` events (at least
  ``min_window`` s, at most ``max_window`` s): a minute at high traffic, up to an hour at low
  traffic, where a handful of departures is noise;
- the admission rate is the supply capped by ``admit_rate / 60``, both *current*: an operator's
  change of capacity or rate applies to the estimate at once;
- p50 and p90 are the quantiles of the time until ``k = ahead + 1`` departures of a Poisson
  process at that rate (Gamma(k), Wilson-Hilferty approximation), the p90 widened for the
  uncertainty of a rate measured from ``n`` events (relative error about ``1/sqrt(n)``). When
  the rate limit binds, admissions are clockwork (a token bucket): p50 is ``k / rate``, and p90
  allows for capacity binding once the room is full (:func:`fill_then_drain`).

Before ``min_events`` events have been seen, the configured ``admit_rate`` is the prior (an
upper bound on the rate: the wait may be longer); without one the estimate is ``None`` and the
page says "calculating". While promotions are stopped (paused, ``queue_all``) it is ``None``
too: no rate observed in the past says when they resume.

**Measured** (``python -m bench.eta_sim``, 3 seeds, real ``MemoryStore`` on a virtual clock;
p50 of |error| of the p50 told at joining, before -> after; ``bench/results/eta.md``): low
traffic 38 % -> 13 % (``shop``), 271 % -> 22 % (``lulls``, the issue's case: 4x), 29 % -> 19 %
(``quiet``); high traffic 0 % -> 0 % (rate-bound), 38 % -> 20 % (the room fills at the rate,
then capacity binds), 9 % -> 3 % (capacity-bound). An *oracle* told the true long-run rate
scores 14 %, 20 % and 15 % at low traffic: what is left is the randomness of a few departures,
which no rate can remove (for the head of a queue the wait is the next departure, p50 |error|
about 50 % whatever the estimate).

What it cannot know: waiters ahead who give up make the wait shorter; sessions that all started
together end together (departures are not Poisson in a burst); the store knows each session's
deadline, which would predict idle-outs better than a rate (a store query for the k-th
deadline is a possible next step).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter

from waitroom_proxy.ports import RoomLimits, RoomStats

_Z50 = 0.0
_Z90 = 1.2815515655446004
_MAX_SECONDS = 10 * 365 * 86_400
"""Estimates are capped (ten years) so a vanishing rate never overflows an integer field."""


@dataclass(frozen=True, slots=True)
class Eta:
    p50: int
    p90: int

    def as_dict(self) -> dict[str, int]:
        return {"p50": self.p50, "p90": self.p90}


def gamma_quantile(k: float, z: float) -> float:
    """Quantile of Gamma(k, 1) at the standard-normal score ``z`` (Wilson-Hilferty).

    Within 1.5 % of the exact value for k >= 1 at the median and p90, which is all the estimate
    needs (k is a whole number of departures, at least 1).
    """
    c = 1.0 / (9.0 * k)
    return k * max(0.0, 1.0 - c + z * math.sqrt(c)) ** 3


@dataclass(slots=True)
class _Bucket:
    """Sums over a few seconds of samples."""

    start: float
    end: float
    departures: int = 0
    exposure: float = 0.0
    """Occupied slot-seconds."""
    busy: float = 0.0
    """Seconds during which someone was waiting."""
    busy_admitted: int = 0
    """Admissions during those seconds."""


@dataclass(frozen=True, slots=True)
class _Sample:
    now: float
    admitted_total: int
    occupied: int
    waiting: int


class EtaEstimator:
    """Slot-supply tracker for one room; fed by the controller, read on every waiting answer.

    ``observe``/``observe_stats`` run once per controller tick and do the work; ``estimate``
    (called for every waiting page and heartbeat) is a few multiplications.
    """

    def __init__(
        self,
        *,
        prior_per_minute: int = 0,
        bucket: float = 10.0,
        min_window: float = 60.0,
        max_window: float = 3600.0,
        target_events: int = 50,
        min_events: int = 3,
        max_gap: float = 30.0,
    ) -> None:
        self.prior_per_second = prior_per_minute / 60.0
        """The configured ``admit_rate`` per second (0: none); the runtime keeps it current."""
        self._bucket = bucket
        self._min_window = min_window
        self._max_window = max_window
        self._target = target_events
        self._min_events = min_events
        self._max_gap = max_gap
        self._buckets: deque[_Bucket] = deque()
        self._last: _Sample | None = None
        self._capacity = 0
        self._admitting = True
        self._hazard: float | None = None
        """Departures per occupied slot-second, or None while too few were seen."""
        self._events = 0
        """Departures behind ``_hazard`` (its precision)."""
        self._busy_rate: float | None = None
        self._busy_events = 0

    def __repr__(self) -> str:
        return (
            f"EtaEstimator(capacity={self._capacity}, hazard={self._hazard!r}, "
            f"events={self._events}, limit_per_second={self.prior_per_second:.3f})"
        )

    def observe_stats(self, stats: RoomStats, limits: RoomLimits) -> None:
        """Record one snapshot of the room (``store.stats``) under its current limits."""
        self.observe(
            stats.now_ms / 1000.0,
            admitted_total=stats.admitted_total,
            occupied=stats.active + stats.promoted,
            waiting=stats.queue_length,
            capacity=limits.capacity,
            admit_rate=limits.admit_rate,
            admitting=limits.promote,
        )

    def observe(
        self,
        now: float,
        *,
        admitted_total: int,
        occupied: int,
        waiting: int,
        capacity: int,
        admit_rate: int = 0,
        admitting: bool = True,
    ) -> None:
        """Record the room's counters at ``now`` (store clock, seconds).

        Args:
            now: when the snapshot was taken.
            admitted_total: the store's cumulative admission counter.
            occupied: slots held right now (active sessions + promoted, unclaimed waiters).
            capacity: the room's current capacity.
            admit_rate: the current rate limit per minute (0: none).
            admitting: False while promotions are stopped (paused, ``queue_all``, held).
        """
        self._capacity = max(0, capacity)
        self.prior_per_second = max(0, admit_rate) / 60.0
        self._admitting = admitting
        last, self._last = self._last, _Sample(now, admitted_total, occupied, waiting)
        if last is None:
            return
        if admitted_total < last.admitted_total:
            self._buckets.clear()  # the store lost its counters: start over
            self._recompute(now)
            return
        dt = now - last.now
        if dt <= 0 or dt > self._max_gap:
            return  # a clock step or a long silence (store down): nothing to learn from it
        admitted = admitted_total - last.admitted_total
        departures = max(0, admitted - (occupied - last.occupied))
        exposure = 0.5 * (occupied + last.occupied) * dt
        current = self._buckets[-1] if self._buckets else None
        if current is None or now - current.start > self._bucket:
            current = _Bucket(start=last.now, end=now)
            self._buckets.append(current)
        current.end = now
        current.departures += departures
        current.exposure += exposure
        if last.waiting > 0:
            current.busy += dt
            current.busy_admitted += admitted
        while self._buckets and self._buckets[0].end < now - self._max_window:
            self._buckets.popleft()
        self._recompute(now)

    def _recompute(self, now: float) -> None:
        """The departure rate per occupied slot-second and the admission rate while someone
        waits, each over the newest buckets that hold enough of its events."""
        self._hazard, self._events = self._rate(now, attrgetter("departures", "exposure"))
        self._busy_rate, self._busy_events = self._rate(now, attrgetter("busy_admitted", "busy"))

    def _rate(
        self, now: float, events_and_span: Callable[[_Bucket], tuple[int, float]]
    ) -> tuple[float | None, int]:
        """(events / span, events) summed over the newest buckets, back until they cover
        ``min_window`` and hold ``target_events``; (None, 0) below ``min_events``."""
        events = 0
        span = 0.0
        for b in reversed(self._buckets):
            n, seconds = events_and_span(b)
            events += n
            span += seconds
            if now - b.start >= self._min_window and events >= self._target:
                break
        if events >= self._min_events and span > 0:
            return events / span, events
        return None, 0

    def _supply(self) -> tuple[float, int] | None:
        """(slots freed per second with the room full, departures it rests on), or None."""
        found: list[tuple[float, int]] = []
        if self._hazard is not None and self._capacity > 0:
            found.append((self._capacity * self._hazard, self._events))
        if self._busy_rate is not None:
            found.append((self._busy_rate, self._busy_events))
        return max(found) if found else None

    def rate(self) -> float | None:
        """Expected admissions per second while someone waits, or None if unknown."""
        if not self._admitting:
            return None
        limit = self.prior_per_second
        supply = self._supply()
        if supply is None:
            return limit if limit > 0 else None
        return min(supply[0], limit) if limit > 0 else supply[0]

    def rates(self) -> tuple[float, float] | None:
        """(expected, pessimistic) admissions per second while someone waits, or None.

        The admin API shows the first as ``admissions_per_minute``; the second is the rate the
        p90 of a long queue rests on (the measurement's uncertainty taken off).
        """
        rate = self.rate()
        if rate is None:
            return None
        supply = self._supply()
        rel = 1.0 / math.sqrt(supply[1]) if supply is not None else math.log(1.5) / _Z90
        return rate, rate / math.exp(_Z90 * rel)

    def estimate(self, ahead: int) -> Eta | None:
        """Seconds until a waiter with ``ahead`` people in front is admitted (p50, p90)."""
        rate = self.rate()
        if rate is None or rate <= 0:
            return None
        k = max(0, ahead) + 1
        limit = self.prior_per_second
        supply = self._supply()
        if supply is None:
            # Only the configured rate is known: clockwork, with an unknown capacity bound.
            return _eta(k / rate, 1.5 * k / rate)
        rel = 1.0 / math.sqrt(supply[1])
        if limit > 0 and rate >= limit:
            p50 = k / rate
            p90 = p50 * math.exp(_Z90 * rel)
            if self._hazard is not None and self._last is not None:
                # The rate binds now; if slots free up slower than tokens arrive, capacity
                # binds once the room is full: the pessimistic end of the range.
                occupied = self._last.occupied
                slow = fill_then_drain(k, occupied, self._capacity, limit, self._hazard)
                p90 = max(p90, slow)
            return _eta(p50, p90)
        p50 = gamma_quantile(k, _Z50) / rate
        p90 = gamma_quantile(k, _Z90) / rate * math.exp(_Z90 * rel)
        return _eta(p50, p90)


def fill_then_drain(k: int, occupied: int, capacity: int, limit: float, hazard: float) -> float:
    """Seconds until ``k`` admissions when tokens arrive at ``limit``/s and each occupied slot
    frees at ``hazard``/s (> 0): admissions run at ``limit`` until the room is full, then at
    ``capacity * hazard``. A fluid model: occupancy follows ``o' = limit - hazard * o``."""
    drain = capacity * hazard
    if drain >= limit:
        return k / limit
    if drain <= 0:
        return float(_MAX_SECONDS)
    steady = limit / hazard  # occupancy would settle there, above capacity: the room fills
    t_full = 0.0
    if occupied < capacity:
        t_full = math.log((steady - occupied) / (steady - capacity)) / hazard
    filled = limit * t_full
    if k <= filled:
        return k / limit
    return t_full + (k - filled) / drain


def _eta(p50: float, p90: float) -> Eta:
    low = min(_MAX_SECONDS, max(1, math.ceil(p50)))
    return Eta(p50=low, p90=min(_MAX_SECONDS, max(low, math.ceil(p90))))
