"""The estimators the ETA simulation compares (``bench.eta_sim``): version 0.1's, the current
one, and an oracle as a yardstick; each fed as its controller feeds it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

from bench.eta_legacy import LegacyEtaEstimator
from bench.eta_scenarios import Scenario
from waitroom_proxy.domain.eta import Eta, EtaEstimator, gamma_quantile
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.ports import RoomLimits, RoomStats

__all__ = ["ESTIMATORS", "Estimator"]


class Estimator(Protocol):
    def feed(self, now: float, stats: RoomStats, limits: RoomLimits) -> None: ...

    def estimate(self, ahead: int) -> Eta | None: ...


class Before:
    """Version 0.1: fed as its controller fed it (``observe(now, admitted_total)``)."""

    def __init__(self, policy: RoomPolicy, scenario: Scenario) -> None:
        self.inner = LegacyEtaEstimator(prior_per_minute=policy.admit_rate)

    def feed(self, now: float, stats: RoomStats, limits: RoomLimits) -> None:
        self.inner.observe(now, stats.admitted_total)

    def estimate(self, ahead: int) -> Eta | None:
        return self.inner.estimate(ahead)


class After:
    """The fixed estimator, fed as the fixed controller feeds it."""

    def __init__(self, policy: RoomPolicy, scenario: Scenario) -> None:
        self.inner = EtaEstimator(prior_per_minute=policy.admit_rate)

    def feed(self, now: float, stats: RoomStats, limits: RoomLimits) -> None:
        self.inner.observe_stats(stats, limits)

    def estimate(self, ahead: int) -> Eta | None:
        return self.inner.estimate(ahead)


class Oracle:
    """A yardstick, not an estimator: told the scenario's long-run slot supply (capacity over
    the mean session length, capped by the rate limit), it answers with the same Gamma
    quantiles. What is left of its error is the randomness of departures, which no rate-based
    estimate can remove; in a transient (a room filling up) it is wrong, as it knows no past."""

    def __init__(self, policy: RoomPolicy, scenario: Scenario) -> None:
        hold = sum(scenario.hold) / 2
        idle = policy.session_ttl + policy.session_grace
        rate = scenario.capacity / (hold + (1 - scenario.leave_prob) * idle)
        limit = scenario.admit_rate / 60
        self.clockwork = 0 < limit <= rate
        self.rate = limit if self.clockwork else rate

    def feed(self, now: float, stats: RoomStats, limits: RoomLimits) -> None:
        pass

    def estimate(self, ahead: int) -> Eta | None:
        k = ahead + 1
        if self.clockwork:
            return Eta(max(1, math.ceil(k / self.rate)), math.ceil(k / self.rate) + 1)
        p50 = gamma_quantile(k, 0.0) / self.rate
        return Eta(max(1, math.ceil(p50)), math.ceil(gamma_quantile(k, 1.2816) / self.rate))


ESTIMATORS: dict[str, Callable[[RoomPolicy, Scenario], Estimator]] = {
    "before": Before,
    "after": After,
    "oracle": Oracle,
}
