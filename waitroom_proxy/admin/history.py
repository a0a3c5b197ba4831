"""The console's charts of the last hour: a fixed-size ring of samples per room (pure, no I/O).

The sampler (:mod:`waitroom_proxy.admin.sampler`) takes one :class:`Reading` per room every
``interval`` seconds (10 s by default) from what ``/admin/stats`` reads, and :class:`History`
turns consecutive readings into :class:`Sample` points, keeping the last :data:`POINTS` (360:
one hour at 10 s). Memory is bounded: ``POINTS`` samples per room, whatever the traffic.

What a sample shows, and where it comes from:

- ``queue_length``, ``active``, ``promoted``: the store's counts for the room, so every replica
  charts the same values (each admin listener samples the shared store itself).
- ``capacity``: the capacity in force (configured, or overridden at runtime).
- ``admissions_per_minute``: the store's ``admitted_total`` counter, differenced between two
  readings and scaled to a minute: admissions by every replica. Unknown (None) on the first
  reading, across a store outage, and when the counter went back (the store lost its state).
- ``eta_error_seconds``: the median of *predicted minus actual* waiting time over the
  admissions claimed in the interval, from the ``waitroom_eta_error_seconds`` histogram (p50
  predicted at enqueue, carried in the ticket): its buckets differenced between readings and
  the median interpolated within them, as Prometheus' ``histogram_quantile`` does (the
  histogram has negative buckets, so it exports no ``_sum`` and a mean cannot be had). Its
  precision is the buckets' (10 s near zero, minutes further out). The histogram is this
  process's, so this is the ETA error of the admissions *this replica* (worker) served; None
  when it served none in the interval. Positive: people got in sooner than they were told.

A store that does not answer gives a reading without counts: the sample's store values are
None (a gap in the charts), never made up.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_INTERVAL", "POINTS", "History", "Reading", "Sample", "derive", "quantile"]

POINTS = 360
"""Samples kept per room: one hour at the default interval."""
DEFAULT_INTERVAL = 10.0
"""Seconds between two samples."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What the sampler read for one room at ``t`` (None: the store did not answer)."""

    t: float
    capacity: int
    paused: bool
    queue_length: int | None = None
    active: int | None = None
    promoted: int | None = None
    admitted_total: int | None = None
    eta_buckets: tuple[tuple[float, float], ...] = ()
    """The ETA-error histogram of the room (this process): ``(upper bound, cumulative
    count)`` per bucket, ascending, the last bound ``inf``."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of the console's charts."""

    t: float
    capacity: int
    paused: bool
    queue_length: int | None
    active: int | None
    promoted: int | None
    admissions_per_minute: float | None
    eta_error_seconds: float | None
    eta_admissions: int
    """How many admissions ``eta_error_seconds`` is the median of."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "capacity": self.capacity,
            "paused": self.paused,
            "queue_length": self.queue_length,
            "active": self.active,
            "promoted": self.promoted,
            "admissions_per_minute": self.admissions_per_minute,
            "eta_error_seconds": self.eta_error_seconds,
            "eta_admissions": self.eta_admissions,
        }


def _rate(before: Reading | None, now: Reading) -> float | None:
    if before is None or before.admitted_total is None or now.admitted_total is None:
        return None
    elapsed = now.t - before.t
    delta = now.admitted_total - before.admitted_total
    if elapsed <= 0 or delta < 0:  # a clock step, or the store lost its counter
        return None
    return round(delta * 60.0 / elapsed, 3)


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a histogram given as ``(upper bound, cumulative count)``, linearly
    interpolated within its bucket (Prometheus' ``histogram_quantile``); None when empty. In
    the ``+Inf`` bucket it is the highest finite bound; in the lowest, that bucket's bound."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    below_bound, below_count = -math.inf, 0.0
    for bound, count in buckets:
        if count >= rank and count > below_count:
            if math.isinf(bound):
                return below_bound if math.isfinite(below_bound) else None
            if math.isinf(below_bound):
                return bound
            share = (rank - below_count) / (count - below_count)
            return below_bound + (bound - below_bound) * share
        below_bound, below_count = bound, count
    return None


def _eta_error(before: Reading | None, now: Reading) -> tuple[float | None, int]:
    if before is None or not now.eta_buckets:
        return None, 0
    earlier = dict(before.eta_buckets)
    delta = [(bound, count - earlier.get(bound, 0.0)) for bound, count in now.eta_buckets]
    admissions = delta[-1][1]
    if admissions < 1 or any(count < 0 for _, count in delta):  # none, or a reset registry
        return None, 0
    median = quantile(0.5, delta)
    return (round(median, 3) if median is not None else None), int(admissions)


def derive(before: Reading | None, now: Reading) -> Sample:
    """The sample of ``now``, its rates taken against the reading ``before`` it."""
    eta, n = _eta_error(before, now)
    return Sample(
        t=round(now.t, 3),  # as clients see it, so their ``since`` matches exactly
        capacity=now.capacity,
        paused=now.paused,
        queue_length=now.queue_length,
        active=now.active,
        promoted=now.promoted,
        admissions_per_minute=_rate(before, now),
        eta_error_seconds=eta,
        eta_admissions=n,
    )


class History:
    """The last ``points`` samples of every room, in time order.

    Args:
        points: samples kept per room (older ones fall off).
        interval: the sampling period the samples were taken at (shown to clients).
    """

    def __init__(self, *, points: int = POINTS, interval: float = DEFAULT_INTERVAL) -> None:
        if points < 2:
            raise ValueError("a history needs at least 2 points")
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError("the sample interval must be a positive number of seconds")
        self.points = points
        self.interval = interval
        self._samples: dict[str, deque[Sample]] = {}
        self._last: dict[str, Reading] = {}

    def __repr__(self) -> str:
        return f"History(rooms={sorted(self._samples)!r}, points={self.points})"

    def record(self, room: str, reading: Reading) -> Sample:
        """Add the sample of ``reading``; a reading not after the last one is ignored
        (the last sample is returned) so time only moves forward in a chart."""
        last = self._last.get(room)
        ring = self._samples.setdefault(room, deque(maxlen=self.points))
        if last is not None and reading.t <= last.t and ring:
            return ring[-1]
        sample = derive(last, reading)
        ring.append(sample)
        self._last[room] = reading
        return sample

    def extend(self, room: str, readings: Iterable[Reading]) -> None:
        for reading in readings:
            self.record(room, reading)

    def samples(self, room: str, since: float | None = None) -> list[Sample]:
        """The room's samples, oldest first; only those taken after ``since`` if given."""
        ring = self._samples.get(room, ())
        if since is None:
            return list(ring)
        return [s for s in ring if s.t > since]
