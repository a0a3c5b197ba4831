"""The admission controller loop that runs in every replica.

Every ``interval`` seconds (jittered, so replicas don't tick in lock-step) and for each room:
follow runtime state (pause, overrides), run one atomic ``tick`` in the store (expiry of
sessions, no-shows and abandoned waiters, then promotions), publish the events it reports,
refresh gauges and the ETA estimator, pull revocations into the local token cache, and flush
coalesced session activity. Any number of replicas may run it at once: the store's scripts are
atomic, so a promotion happens exactly once.

Revocations: a replica reads the room's whole revoked set the first time (the store keeps each
entry for ``session_max``, so a replica started by a rolling deploy knows every session that
was left, completed or revoked while it was away), then only what is new, with an overlap.
The first read happens before ``start`` returns, so a new replica serves no request unaware.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from waitroom_proxy.domain.lifecycle import spent_for
from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import TickResult
from waitroom_proxy.service.gatekeeper import Gatekeeper
from waitroom_proxy.service.room import RoomRuntime

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
            for room in list(self.gate.rooms.values()):
                try:
                    await asyncio.wait_for(self.pull_revocations(room), timeout=5.0)
                except (StoreError, TimeoutError) as exc:  # the loop retries from the start
                    log.warning("room %s: revocations not read at start: %s", room.name, exc)
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
            await self.flush()

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
                room.outage.failed(self.gate.clock(), room.policy)
                log.debug("controller: room %s: %s", room.name, exc)
            except Exception:
                log.exception("controller: room %s failed", room.name)
        try:
            await self.flush()
        except Exception:
            log.exception("controller: activity flush failed")
        self.gate.sessions.cache.prune(self.gate.clock())

    async def flush(self) -> None:
        """Coalesced session activity to the store, and the rate limit's background probe."""
        await self.gate.sessions.flush()
        await self.gate.limit.probe()

    async def tick_room(self, room: RoomRuntime, force: int = 0) -> TickResult:
        """One controller pass for ``room``; ``force`` > 0: the operator's "admit N now".

        Raises:
            StoreError: the store did not answer (the next pass tries again).
        """
        gate = self.gate
        store = gate.store
        await gate.sync.refresh(room)
        if room.fail_open_ids:
            # Before any promotion: sessions admitted while the store was down count first.
            await gate.fail_open.count_admitted(room)
        await gate.census.run(room)  # sessions the store lost are counted before promotions
        name = room.name
        limits = await gate.lifecycle.tick(room)  # a scheduled sale's once-only steps
        result = await store.tick(name, limits, force)
        self._report(room, result)
        stats = await store.stats(name)
        m = gate.metrics
        m.capacity.labels(name).set(room.policy.capacity)
        m.queue_length.labels(name).set(stats.queue_length)
        m.active_sessions.labels(name).set(stats.active)
        m.promoted.labels(name).set(stats.promoted)
        room.eta.observe_stats(stats, room.limits)
        room.last_stats = stats
        await self.pull_revocations(room)
        gate.fail_open.store_back(room)
        gate.sessions.spent.prune(name, gate.clock(), spent_for(room.policy))
        return result

    def _report(self, room: RoomRuntime, result: TickResult) -> None:
        """Events and counters of what one tick changed."""
        gate = self.gate
        emit, spent, m, name = gate.emit, gate.sessions.spent, gate.metrics, room.name
        now = gate.clock()
        for pid in result.promoted:
            emit("position.admitted", name, {"place_id": pid})
        for pid in result.no_shows:
            spent.add(name, pid, now)
            emit("position.expired", name, {"place_id": pid, "reason": "no_show"})
        for pid in result.abandoned:
            emit("position.expired", name, {"place_id": pid, "reason": "abandoned"})
        for pid in result.expired_sessions:
            spent.add(name, pid, now)
            emit("session.ended", name, {"place_id": pid, "reason": "idle"})
        if result.promoted:
            m.admissions.labels(name).inc(len(result.promoted))
        if result.no_shows:
            m.no_shows.labels(name).inc(len(result.no_shows))
        if result.abandoned:
            m.abandoned.labels(name).inc(len(result.abandoned))
        if result.expired_sessions:
            m.sessions_ended.labels(name, "idle").inc(len(result.expired_sessions))

    async def pull_revocations(self, room: RoomRuntime) -> None:
        """Copy the room's revocations from the store into the local token cache: all of them
        the first time (``since`` 0: the store forgets each after ``session_max``), then those
        since the last pull, with 2 s of overlap so that none is ever missed."""
        gate = self.gate
        name = room.name
        since = self._revoked_since.get(name, 0)
        ids, now_ms = await gate.store.revoked_since(name, since)
        self._revoked_since[name] = now_ms - 2_000
        gate.sessions.revoke_known(ids, gate.clock() + room.policy.session_max)
        gate.sessions.note_ended(name, ids)
