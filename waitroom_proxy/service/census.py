"""The session census: a replica tells the store which sessions it knows alive, and which ends.

Why: the store can lose part of a room's state while the room's incarnation marker survives
(a failover to a replica that missed the latest writes, a shard restored from an old snapshot,
keys deleted by hand), or all of it while this process was restarted too (then it has no
marker of its own to compare). Either way sessions still pass on their signed tokens while the
store counts fewer (capacity exceeded: the store admits others into their slots), or ends are
lost and the store counts visitors who left (admissions stall for a session TTL behind
phantoms). The census sends ``Store.reassert`` the sessions whose tokens verified here
(``Sessions.leases``) and, after a suspected loss, the ends this replica made or learned of in
the last ten minutes (``Sessions.ended``).

When, per room (each is one controller pass, never on a request):

- *full* (sessions and ends): the room's incarnation marker changed; the store answered again
  after failing (a failover); another replica announced a loss (``loss_at`` in the room's meta
  map); this replica knows of more live sessions than the store counts (``active + promoted``);
- *light* (sessions only): every ``CENSUS_EVERY`` seconds, for a loss none of the above shows.

A loss is detected when the store counted a session again or dropped an end it had lost (the
activity flush reports the same). It is logged and counted once per episode
(``waitroom_store_losses_total{kind="sessions"}``; a changed marker counts ``kind="marker"``),
announced to the other replicas, and recovered from like a vanished state
(``RoomSync.recover``: tombstones written back, admissions held for two poll intervals so that
waiters re-enter and the other replicas' sessions re-assert before anyone is promoted).
"""

from __future__ import annotations

import contextlib
import logging

from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import Reasserted
from waitroom_proxy.service.context import Context
from waitroom_proxy.service.room import RoomRuntime
from waitroom_proxy.service.sessions import Sessions
from waitroom_proxy.service.sync import RoomSync

log = logging.getLogger(__name__)

CENSUS_EVERY = 10.0
"""Seconds between two light censuses of a room (a heartbeat at the default schedule)."""
EPISODE = 60.0
"""Detections within this many seconds of the last one are the same loss (logged once)."""
BATCH = 1_000
"""Most ids one ``reassert`` call carries (bounded script time)."""


class SessionCensus:
    """Decides when to re-assert a room's sessions and what a detected loss sets off."""

    def __init__(self, ctx: Context, *, sessions: Sessions, sync: RoomSync) -> None:
        self.ctx = ctx
        self.sessions = sessions
        self.sync = sync
        self._light_at: dict[str, float] = {}
        self._full_at: dict[str, float] = {}
        self._episode_at: dict[str, float] = {}
        self._incarnation: dict[str, str] = {}
        self._loss_mark: dict[str, str] = {}
        self._flushed: dict[str, int] = {}
        """Sessions the activity flush counted again since the last pass (a loss)."""
        sessions.on_reasserted = self._from_flush

    def _from_flush(self, room: str, found: Reasserted) -> None:
        self._flushed[room] = self._flushed.get(room, 0) + found.readded
        self.ctx.metrics.sessions_recounted.labels(room, "readded").inc(found.readded)

    def _full_due(self, room: RoomRuntime, now: float) -> tuple[bool, str | None]:
        """Is a full census due, and was the marker changed (``"marker"``)?"""
        name = room.name
        kind: str | None = None
        due = False
        marker = room.incarnation
        before = self._incarnation.get(name)
        if marker is not None:
            self._incarnation[name] = marker
            if before is not None and before != marker:
                due, kind = True, "marker"
        mark = self.sync.meta_of(name).get("loss_at", "")
        if self._loss_mark.setdefault(name, mark) != mark:
            self._loss_mark[name] = mark
            due = True
        if room.outage.last > self._full_at.get(name, float("-inf")):
            due = True  # the store answers again after failing: it may be another server now
        stats = room.last_stats
        if stats is not None and self.sessions.alive_count(name) > stats.active + stats.promoted:
            due = True
        return due, kind

    async def run(self, room: RoomRuntime) -> Reasserted:
        """One controller pass for ``room``: a census when one is due (see the module).

        Raises:
            StoreError: the store did not answer (the next pass tries again).
        """
        name = room.name
        now = self.ctx.clock()
        full, kind = self._full_due(room, now)
        flushed = self._flushed.pop(name, 0)
        found = Reasserted(readded=flushed)
        if full or now - self._light_at.get(name, float("-inf")) >= CENSUS_EVERY:
            try:
                counted = await self._reassert(room, now, full=full)
            except StoreError:
                if flushed:
                    self._flushed[name] = self._flushed.get(name, 0) + flushed
                raise
            self._light_at[name] = now
            if full:
                self._full_at[name] = now
            found = Reasserted(
                kept=counted.kept,
                readded=counted.readded + flushed,
                refused=counted.refused,
                dropped=counted.dropped,
            )
        if kind == "marker":
            self.ctx.metrics.store_losses.labels(name, "marker").inc()
            self._episode_at[name] = now  # RoomSync already recovered and logged it
        elif found.readded or found.dropped:
            await self._lost(room, now, found)
        return found

    async def _reassert(self, room: RoomRuntime, now: float, *, full: bool) -> Reasserted:
        name = room.name
        leases = self.sessions.leases(name, now)
        ended = self.sessions.ended(name, now) if full else []
        revoke_ms = int(room.policy.session_max * 1000)
        kept = readded = refused = dropped = 0
        for i in range(0, len(ended), BATCH):
            r = await self.ctx.store.reassert(name, [], ended[i : i + BATCH], revoke_ms)
            dropped += r.dropped
        for i in range(0, len(leases), BATCH):
            r = await self.ctx.store.reassert(name, leases[i : i + BATCH])
            kept, readded, refused = kept + r.kept, readded + r.readded, refused + r.refused
        m = self.ctx.metrics.sessions_recounted
        if readded:
            m.labels(name, "readded").inc(readded)
        if dropped:
            m.labels(name, "dropped").inc(dropped)
        return Reasserted(kept=kept, readded=readded, refused=refused, dropped=dropped)

    async def _lost(self, room: RoomRuntime, now: float, found: Reasserted) -> None:
        """The store lost sessions or ends of ``room`` (its marker stayed): once per episode,
        log and count it, tell the other replicas, and recover as from a vanished state."""
        name = room.name
        last = self._episode_at.get(name, float("-inf"))
        self._episode_at[name] = now
        if now - last < EPISODE:
            return
        self.ctx.metrics.store_losses.labels(name, "sessions").inc()
        log.warning(
            "room %s: the store lost part of the room's state: %d live session(s) counted "
            "again, %d lost end(s) applied again; admissions held for waiters and sessions to "
            "re-assert",
            name,
            found.readded,
            found.dropped,
        )
        mark = f"{now:.3f}"
        self._loss_mark[name] = mark
        with contextlib.suppress(StoreError):
            await self.ctx.store.set_meta(name, {"loss_at": mark})
        await self.sync.recover(room, now)
