"""The ETA estimator of version 0.1, kept verbatim so ``bench.eta_sim`` can show "before".

Its p50 is ``(ahead + 1)`` over the admission rate of the last five minutes of wall time. At low
traffic that window is mostly time when nobody waited (admissions were limited by arrivals, not
by free slots), so the rate is far too low and the wait far too long (issue 15: position 4 was
told 600 s and was admitted after 136 s). ``waitroom_proxy.domain.eta`` is the fixed estimator.
"""

from __future__ import annotations

import math
from collections import deque

from waitroom_proxy.domain.eta import Eta


class LegacyEtaEstimator:
    """Admission-rate tracker for one room (0.1)."""

    def __init__(self, *, window: float = 300.0, bucket: float = 10.0, prior_per_minute: int = 0):
        self._samples: deque[tuple[float, int]] = deque()
        self._window = window
        self._bucket = bucket
        self.prior_per_second = prior_per_minute / 60.0

    def observe(self, now: float, admitted_total: int) -> None:
        """Record the room's cumulative admission counter at ``now``."""
        if self._samples and admitted_total < self._samples[-1][1]:
            self._samples.clear()  # the store was reset: start over
        self._samples.append((now, admitted_total))
        while self._samples and self._samples[0][0] < now - self._window:
            self._samples.popleft()

    def rates(self) -> tuple[float, float] | None:
        """(mean rate, pessimistic rate) in admissions per second, or None if unknown."""
        if len(self._samples) >= 2:
            (t0, a0), (t1, a1) = self._samples[0], self._samples[-1]
            span = t1 - t0
            if span >= self._bucket and a1 > a0:
                mean = (a1 - a0) / span
                per_bucket: list[float] = []
                start_t, start_a = t0, a0
                for t, a in self._samples:
                    if t - start_t >= self._bucket:
                        per_bucket.append((a - start_a) / (t - start_t))
                        start_t, start_a = t, a
                if len(per_bucket) >= 3:
                    per_bucket.sort()
                    low = per_bucket[max(0, math.ceil(len(per_bucket) * 0.1) - 1)]
                    low = max(low, mean / 3)
                else:
                    low = mean / 1.5
                return mean, min(mean, low)
        if self.prior_per_second > 0:
            return self.prior_per_second, self.prior_per_second / 1.5
        return None

    def estimate(self, ahead: int) -> Eta | None:
        """Seconds until a waiter with ``ahead`` people in front is admitted (p50, p90)."""
        r = self.rates()
        if r is None:
            return None
        mean, low = r
        need = ahead + 1
        return Eta(p50=math.ceil(need / mean), p90=math.ceil(need / max(low, 1e-9)))
