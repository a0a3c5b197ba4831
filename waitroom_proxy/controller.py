"""The admission controller loop that runs in every replica (DESIGN §1).

Every ``interval`` seconds (jittered, so replicas don't tick in lock-step) and for each room:
follow runtime state (pause, overrides), run one atomic ``tick`` in the store (expiry of
sessions, no-shows and abandoned waiters, then promotions), publish the events it reports,
refresh gauges and the ETA estimator, pull revocations into the local token cache, and flush
coalesced session activity. Any number of replicas may run it at once: the store's scripts are
atomic, so a promotion happens exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import TickResult
from waitroom_proxy.service import Gatekeeper, RoomRuntime

log = logging.getLogger(__name__)


class Controller:
    """Runs ``tick_room`` for every room until stopped."""

    def __init__(self, gate: Gatekeeper, *, interval: float = 0.5) -> None:
        self.gate = gate
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._revoked_since: dict[str, int] = {}
        self._stopping = False

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="waitroom-controller")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            # A cancellation can be absorbed by a library call in flight (seen with redis-py):
            # cancel until the task is really done; the flag ends the loop in any case.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        with contextlib.suppress(StoreError):
            await self.gate.flush_activity()

    async def _run(self) -> None:
        self._stopping = False
        while not self._stopping:
            await self.run_once()
            await asyncio.sleep(self.interval * random.uniform(0.8, 1.2))

    async def run_once(self) -> None:
        """One pass over every room; errors are logged, never raised."""
        for room in list(self.gate.rooms.values()):
            try:
                await self.tick_room(room)
            except StoreError as exc:
                log.debug("controller: room %s: %s", room.name, exc)
            except Exception:
                log.exception("controller: room %s failed", room.name)
        try:
            await self.gate.flush_activity()
        except Exception:
            log.exception("controller: activity flush failed")
        self.gate.cache.prune(self.gate.clock())

    async def tick_room(self, room: RoomRuntime, force: int = 0) -> TickResult:
        gate = self.gate
        store = gate.store
        await gate.refresh_room_state(room)
        result: TickResult = await gate._call(
            "tick", lambda: store.tick(room.name, room.limits, force), room.name
        )
        m = gate.metrics
        name = room.name
        for pid in result.promoted:
            gate.emit("position.admitted", name, {"place_id": pid})
        for pid in result.no_shows:
            gate.emit("position.expired", name, {"place_id": pid, "reason": "no_show"})
        for pid in result.abandoned:
            gate.emit("position.expired", name, {"place_id": pid, "reason": "abandoned"})
        for pid in result.expired_sessions:
            gate.emit("session.ended", name, {"place_id": pid, "reason": "idle"})
        if result.promoted:
            m.admissions.labels(name).inc(len(result.promoted))
        if result.no_shows:
            m.no_shows.labels(name).inc(len(result.no_shows))
        if result.abandoned:
            m.abandoned.labels(name).inc(len(result.abandoned))
        if result.expired_sessions:
            m.sessions_ended.labels(name, "idle").inc(len(result.expired_sessions))
        stats = await gate._call("stats", lambda: store.stats(name), name)
        m.capacity.labels(name).set(room.policy.capacity)
        m.queue_length.labels(name).set(stats.queue_length)
        m.active_sessions.labels(name).set(stats.active)
        m.promoted.labels(name).set(stats.promoted)
        room.eta.observe(stats.now_ms / 1000.0, stats.admitted_total)
        room.last_stats = stats
        since = self._revoked_since.get(name, stats.now_ms - 60_000)
        ids, now_ms = await gate._call("revoked", lambda: store.revoked_since(name, since), name)
        self._revoked_since[name] = now_ms - 2_000  # overlap: a revocation is never missed
        until = gate.clock() + room.policy.session_max
        for pid in ids:
            gate.cache.revoke(pid, until)
        if room.fail_open_active:
            room.fail_open_active = False
            m.fail_open.labels(name).set(0)
            log.warning("room %s: store back, fail-open ended", name)
        return result
