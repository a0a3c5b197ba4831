"""ETA simulation: the p50 a waiter is told at joining vs the wait it really has.

    python -m bench.eta_sim            # every scenario, 3 seeds, before and after
    python -m bench.eta_sim --quick    # one seed (report in bench/results/quick/)

A discrete-event simulation on a virtual clock that drives the real ``MemoryStore`` (the same
semantics as the Redis store, by the contract suite): visitors arrive (Poisson, piecewise
rates), join the queue or get in directly, poll every ``refresh_seconds``, claim on the poll
after their promotion, browse for a while reporting activity every ``activity_interval``, and
then either leave (``POST /leave``) or walk away (the session idles out after
``session_ttl`` + grace). The admission controller ticks every 0.5 s and feeds the estimator
from ``store.stats`` exactly as ``controller.py`` does. The two estimators compared:

- **before**: version 0.1's, kept in ``bench/eta_legacy.py``;
- **after**: ``waitroom_proxy.domain.eta.EtaEstimator``.

Each waiter's error is ``(p50 told at joining - actual wait) / actual wait``, where the actual
wait runs from joining to the promotion (as ``bench/scale.py`` measures it). The report gives
the p50 and p90 of the absolute relative error, the median signed error (the bias), how often
the actual wait was within the p90 told, and how many waiters were told "calculating". Nothing
is timed on the real clock: figures are the same on any machine for a given seed. Writes
``bench/results/eta.md``.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import statistics
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bench.eta_legacy import LegacyEtaEstimator
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.domain.eta import Eta, EtaEstimator, gamma_quantile
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.rules import limits_for, refresh_seconds
from waitroom_proxy.ports import PlaceStatus, RoomLimits, RoomStats

HERE = Path(__file__).resolve().parent
ROOM = "sim"
TICK = 0.5
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Drive a store call to its end: ``MemoryStore`` never suspends in the middle of one."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a MemoryStore call suspended")


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


@dataclass(frozen=True)
class Scenario:
    name: str
    traffic: str
    """``low`` or ``high``."""
    description: str
    capacity: int
    arrivals: tuple[tuple[float, float], ...]
    """(duration in s, arrivals per s) segments, repeated until ``duration``."""
    hold: tuple[float, float]
    """Browsing time after admission, uniform in this range (s)."""
    leave_prob: float
    """Share of visitors who press "leave" when done; the others walk away (idle-out)."""
    duration: float
    admit_rate: int = 0
    session_ttl: float = 300.0
    patience: float | None = None
    """Mean time (s, exponential) after which a waiter gives up; None: nobody does."""


SCENARIOS = (
    Scenario(
        "shop",
        "low",
        "capacity 3, a visitor every ~80 s, browse 20-120 s, half leave, half idle out",
        capacity=3,
        arrivals=((1.0, 1 / 80),),
        hold=(20, 120),
        leave_prob=0.5,
        duration=4 * 3600,
    ),
    Scenario(
        "lulls",
        "low",
        "capacity 2, quiet 10 min, then 6 visitors in a minute; browse 30-90 s and leave",
        capacity=2,
        arrivals=((600.0, 1 / 300), (60.0, 0.1)),
        hold=(30, 90),
        leave_prob=1.0,
        session_ttl=120.0,
        duration=4 * 3600,
    ),
    Scenario(
        "quiet",
        "low",
        "capacity 20, a visitor every ~28 s, browse 1-10 min, 30 % leave, some give up (3 h)",
        capacity=20,
        arrivals=((1.0, 1 / 28),),
        hold=(60, 600),
        leave_prob=0.3,
        patience=3 * 3600.0,
        duration=4 * 3600,
    ),
    Scenario(
        "rate-bound",
        "high",
        "capacity 5,000, admit_rate 600/min, 20 arrivals/s for 5 min, browse 1-5 min",
        capacity=5000,
        admit_rate=600,
        arrivals=((300.0, 20.0), (1200.0, 0.0)),
        hold=(60, 300),
        leave_prob=0.5,
        duration=1500,
    ),
    Scenario(
        "rate-then-capacity",
        "high",
        "capacity 2,000, admit_rate 600/min, 20 arrivals/s for 5 min, browse 1-5 min: the "
        "room fills at the rate, then capacity binds",
        capacity=2000,
        admit_rate=600,
        arrivals=((300.0, 20.0), (1200.0, 0.0)),
        hold=(60, 300),
        leave_prob=0.5,
        duration=1500,
    ),
    Scenario(
        "capacity-bound",
        "high",
        "capacity 300, 12 arrivals/s for 5 min, browse 20-60 s and leave",
        capacity=300,
        arrivals=((300.0, 12.0), (1200.0, 0.0)),
        hold=(20, 60),
        leave_prob=1.0,
        duration=1500,
    ),
)


@dataclass
class Waiter:
    joined: float
    ahead: int
    eta: Eta | None
    promoted: float | None = None
    gave_up: bool = False


@dataclass
class Result:
    scenario: Scenario
    estimator: str
    seed: int
    waiters: list[Waiter] = field(default_factory=list)
    direct: int = 0


class Simulation:
    """One scenario, one estimator, one seed."""

    def __init__(self, scenario: Scenario, estimator: str, seed: int) -> None:
        self.s = scenario
        self.now = 0.0
        self.rng = random.Random(f"{scenario.name}/{seed}")
        self.store = MemoryStore(lambda: self.now)
        self.policy = RoomPolicy(
            name=ROOM,
            capacity=scenario.capacity,
            admit_rate=scenario.admit_rate,
            session_ttl=scenario.session_ttl,
        )
        self.limits = limits_for(self.policy)
        self.estimator = ESTIMATORS[estimator](self.policy, scenario)
        self.result = Result(scenario, estimator, seed)
        self.waiters: dict[str, Waiter] = {}
        self.events: list[tuple[float, int, str, str]] = []
        self.seq = itertools.count()
        self.ids = itertools.count()

    def at(self, when: float, kind: str, pid: str) -> None:
        heapq.heappush(self.events, (when, next(self.seq), kind, pid))

    def schedule_arrivals(self) -> None:
        t = 0.0
        segments = itertools.cycle(self.s.arrivals)
        while t < self.s.duration:
            length, rate = next(segments)
            end = min(t + length, self.s.duration)
            if rate > 0:
                a = t + self.rng.expovariate(rate)
                while a < end:
                    self.at(a, "arrive", f"v{next(self.ids)}")
                    a += self.rng.expovariate(rate)
            t = end

    def run(self) -> Result:
        self.schedule_arrivals()
        next_tick = 0.0
        horizon = self.s.duration + 4 * 3600
        while next_tick < horizon:
            if self.events and self.events[0][0] < next_tick:
                when, _, kind, pid = heapq.heappop(self.events)
                self.now = when
                getattr(self, "on_" + kind)(pid)
                continue
            self.now = next_tick
            self.tick()
            next_tick += TICK
            if self.now > self.s.duration and not self.pending():
                break
        self.result.waiters = list(self.waiters.values())
        return self.result

    def pending(self) -> bool:
        return any(w.promoted is None and not w.gave_up for w in self.waiters.values())

    def tick(self) -> None:
        result = run(self.store.tick(ROOM, self.limits))
        for pid in result.promoted:
            self.waiters[pid].promoted = self.now
        stats = run(self.store.stats(ROOM))
        self.estimator.feed(self.now, stats, self.limits)

    def on_arrive(self, pid: str) -> None:
        view = run(self.store.arrive(ROOM, pid, self.limits))
        if view.status is PlaceStatus.ACTIVE:
            self.result.direct += 1
            self.start_session(pid)
            return
        if view.status is not PlaceStatus.WAITING:
            return
        self.waiters[pid] = Waiter(self.now, view.ahead, self.estimator.estimate(view.ahead))
        self.at(self.now + refresh_seconds(self.policy, view.ahead), "poll", pid)
        if self.s.patience is not None:
            self.at(self.now + self.rng.expovariate(1 / self.s.patience), "give_up", pid)

    def on_poll(self, pid: str) -> None:
        view = run(self.store.heartbeat(ROOM, pid))
        if view.status is PlaceStatus.PROMOTED:
            if run(self.store.claim(ROOM, pid, self.limits.session_ttl_ms)):
                self.start_session(pid)
        elif view.status is PlaceStatus.WAITING:
            self.at(self.now + refresh_seconds(self.policy, view.ahead), "poll", pid)

    def on_give_up(self, pid: str) -> None:
        w = self.waiters[pid]
        if w.promoted is None:
            w.gave_up = True
            run(self.store.leave(ROOM, pid, 0))

    def start_session(self, pid: str) -> None:
        browse = self.rng.uniform(*self.s.hold)
        end = self.now + browse
        touch = self.now + self.policy.activity_interval
        while touch < end:
            self.at(touch, "touch", pid)
            touch += self.policy.activity_interval
        if self.rng.random() < self.s.leave_prob:
            self.at(end, "leave", pid)
        else:
            self.at(end, "touch", pid)  # the last request; then the visitor walks away

    def on_touch(self, pid: str) -> None:
        run(self.store.touch(ROOM, [pid], self.limits.session_ttl_ms))

    def on_leave(self, pid: str) -> None:
        run(self.store.leave(ROOM, pid, int(self.policy.session_max * 1000)))


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass(frozen=True)
class Summary:
    waiters: int
    unknown: int
    abs_p50: float
    abs_p90: float
    bias: float
    covered: float
    mean_ahead: float
    mean_wait: float


def summarise(results: list[Result]) -> Summary:
    rel: list[float] = []
    signed: list[float] = []
    covered = 0
    unknown = 0
    ahead: list[int] = []
    waits: list[float] = []
    for r in results:
        for w in r.waiters:
            if w.promoted is None:
                continue
            actual = max(1.0, w.promoted - w.joined)
            waits.append(actual)
            ahead.append(w.ahead)
            if w.eta is None:
                unknown += 1
                continue
            err = (w.eta.p50 - actual) / actual
            rel.append(abs(err))
            signed.append(err)
            covered += actual <= w.eta.p90
    n = len(rel)
    return Summary(
        waiters=n + unknown,
        unknown=unknown,
        abs_p50=statistics.median(rel) if rel else math.nan,
        abs_p90=pct(rel, 90),
        bias=statistics.median(signed) if signed else math.nan,
        covered=covered / n if n else math.nan,
        mean_ahead=statistics.fmean(ahead) if ahead else math.nan,
        mean_wait=statistics.fmean(waits) if waits else math.nan,
    )


def simulate(scenario: Scenario, estimator: str, seeds: int) -> Summary:
    return summarise([Simulation(scenario, estimator, s).run() for s in range(seeds)])


def table(rows: list[tuple[Scenario, str, Summary]]) -> str:
    lines = [
        '| scenario | traffic | estimator | waiters (told "calculating") | mean ahead | '
        "mean wait | p50 abs. error | p90 abs. error | median signed error | within p90 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, name, m in rows:
        lines.append(
            f"| {s.name} | {s.traffic} | {name} | {m.waiters:,} ({m.unknown:,}) | "
            f"{m.mean_ahead:.1f} | {m.mean_wait:.0f} s | {m.abs_p50:.0%} | {m.abs_p90:.0%} | "
            f"{m.bias:+.0%} | {m.covered:.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.eta_sim", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="runs per scenario (default 3)")
    ap.add_argument("--quick", action="store_true", help="one seed per scenario")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: bench/results/eta.md, or bench/results/quick/eta.md with --quick",
    )
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = HERE / "results" / ("quick" if args.quick else "") / "eta.md"
    seeds = 1 if args.quick else args.seeds
    wanted = {n for n in args.only.split(",") if n}
    rows: list[tuple[Scenario, str, Summary]] = []
    for scenario in SCENARIOS:
        if wanted and scenario.name not in wanted:
            continue
        for name in ESTIMATORS:
            rows.append((scenario, name, simulate(scenario, name, seeds)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = "\n".join(
        [
            "# ETA: the p50 told at joining vs the actual wait (`python -m bench.eta_sim`)",
            "",
            f"{seeds} seed(s) per scenario; error = (p50 told - actual) / actual; actual wait "
            "= joining to promotion. Scenarios:",
            "",
            *[f"- **{s.name}** ({s.traffic}): {s.description}" for s in SCENARIOS],
            "",
            table(rows),
            "",
        ]
    )
    if not wanted:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
