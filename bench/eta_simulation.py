"""One run of the ETA simulation (``bench.eta_sim``): a discrete-event simulation on a
virtual clock driving the real ``MemoryStore`` for one scenario, one estimator and one seed."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.eta_estimators import ESTIMATORS
from bench.eta_scenarios import Scenario
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.domain.eta import Eta
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.rules import limits_for, refresh_seconds
from waitroom_proxy.ports import PlaceStatus

__all__ = ["ROOM", "TICK", "Result", "Simulation", "Waiter", "run"]

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
