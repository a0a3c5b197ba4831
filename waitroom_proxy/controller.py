"""The admission controller loop that runs in every replica (DESIGN §1).

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
import functools
import logging
import random

from waitroom_proxy.domain.lifecycle import spent_for
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
                room.outage.failed(self.gate.clock(), room.policy)
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
        if room.fail_open_ids:
            # Before any promotion: sessions admitted while the store was down count first.
            await gate.fail_open_ended(room)
        result: TickResult = await gate._call(
            "tick", lambda: store.tick(room.name, room.limits, force), room.name
        )
        m = gate.metrics
        name = room.name
        for pid in result.promoted:
            gate.emit("position.admitted", name, {"place_id": pid})
        now = gate.clock()
        for pid in result.no_shows:
            gate.spent.add(name, pid, now)
            gate.emit("position.expired", name, {"place_id": pid, "reason": "no_show"})
        for pid in result.abandoned:
            gate.emit("position.expired", name, {"place_id": pid, "reason": "abandoned"})
        for pid in result.expired_sessions:
            gate.spent.add(name, pid, now)
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
        room.last_stats, room.stats_at = stats, gate.clock()  # (domain.pacing relies on both)
        m.capacity.labels(name).set(room.policy.capacity)
        m.queue_length.labels(name).set(stats.queue_length)
        m.active_sessions.labels(name).set(stats.active)
        m.promoted.labels(name).set(stats.promoted)
        room.eta.observe_stats(stats, room.limits)
        await self.pull_revocations(room)
        if room.fail_open_active:
            room.fail_open_active = False
            m.fail_open.labels(name).set(0)
            log.warning("room %s: store back, fail-open ended", name)
        gate.spent.prune(name, now, spent_for(room.policy))
        return result

    async def pull_revocations(self, room: RoomRuntime) -> None:
        """Copy the room's revocations from the store into the local token cache: all of them
        the first time (``since`` 0: the store forgets each after ``session_max``), then those
        since the last pull, with 2 s of overlap so that none is ever missed."""
        gate = self.gate
        name = room.name
        since = self._revoked_since.get(name, 0)
        ids, now_ms = await gate._call(
            "revoked", functools.partial(gate.store.revoked_since, name, since), name
        )
        self._revoked_since[name] = now_ms - 2_000
        until = gate.clock() + room.policy.session_max
        for pid in ids:
            gate.cache.revoke(pid, until)
