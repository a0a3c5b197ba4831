"""Room sync: each replica follows the room state kept in the store.

The store's room meta map holds what every replica must agree on: the operator's pause and
runtime overrides, the *incarnation* marker (a change means the store lost the room's state),
the hold after such a loss, and one mark per live replica (their count is fail-open's share).
"""

from __future__ import annotations

import contextlib
import logging
import secrets

from waitroom_proxy.domain.lifecycle import spent_for
from waitroom_proxy.domain.rules import refresh_seconds
from waitroom_proxy.service.context import Context
from waitroom_proxy.service.room import RoomRuntime, decode_overrides
from waitroom_proxy.service.sessions import Sessions

log = logging.getLogger(__name__)

RESTORE_BATCH = 2_000
"""Most tombstones written back by one ``restore`` call (each is one Lua script run)."""
MARK_FRESH = 15.0
"""A replica mark younger than this counts the replica as alive."""
MARK_STALE = 3600.0
"""Marks older than this are removed."""
MARK_EVERY = 5.0
"""How often this replica rewrites its own mark."""


class RoomSync:
    """Follows the store's room meta map: overrides, pause, incarnation, replica marks."""

    def __init__(
        self, ctx: Context, *, sessions: Sessions, replica_id: str, replicas_hint: int = 1
    ) -> None:
        self.ctx = ctx
        self.sessions = sessions
        self.replica_id = replica_id
        self.replicas_hint = max(1, replicas_hint)
        """Live replicas of the rooms as last counted (fail-open takes 1/this of the rate)."""
        self._mark_written: dict[str, float] = {}
        self._meta: dict[str, dict[str, str]] = {}

    def meta_of(self, room: str) -> dict[str, str]:
        """The room's meta map as the last ``refresh`` read it (``{}`` before the first)."""
        return self._meta.get(room, {})

    async def recover(self, room: RoomRuntime, now: float) -> None:
        """The store lost part of the room's state while its marker stayed (``service.census``
        saw it): recover as from a vanished state, holding admissions for every replica."""
        await self._after_store_loss(room, now, first=True)

    def replicas(self) -> int:
        return self.replicas_hint

    async def refresh(self, room: RoomRuntime) -> None:
        """Follow runtime changes made through the admin API (kept in the store).

        Raises:
            StoreError: the store did not answer; the room keeps what it had.
        """
        meta = await self.ctx.store.get_meta(room.name)
        self._meta[room.name] = meta
        now = self.ctx.clock()
        marker = meta.get("incarnation")
        if marker is None or marker != room.incarnation:
            if room.incarnation is not None:
                await self._after_store_loss(room, now, first=marker is None)
            if marker is None:
                # Write-if-absent: replicas (or worker processes) starting on an empty store
                # all get here at once; a plain write would let the last writer replace the
                # first one's marker, which the first would then take for a store loss.
                marker = await self.ctx.store.init_meta(
                    room.name, "incarnation", secrets.token_hex(8)
                )
            room.mark(marker)
        with contextlib.suppress(ValueError):
            room.held_until = max(room.held_until, float(meta.get("hold_until") or 0))
        held = now < room.held_until
        await self._count_replicas(room, meta, now)
        room.schedule_meta = meta.get("schedule")
        paused = meta.get("paused") == "1"
        room.apply(paused, decode_overrides(meta.get("overrides")), held)
        self.ctx.metrics.paused.labels(room.name).set(1 if paused else 0)

    async def _after_store_loss(self, room: RoomRuntime, now: float, *, first: bool) -> None:
        """The room's state vanished from the store (failover or restart without persistence).

        Admitted visitors keep passing (their tokens verify locally) but the store no longer
        counts them, and waiters re-enter one by one as they poll. So: count again the sessions
        this replica knows of, tombstone again the places it knows to be spent, put the arrival
        sequence back above every score it has seen, and hold admissions for two poll
        intervals so that waiters re-enter with their tickets' scores before anyone is promoted
        (the first replica to notice sets the hold for all).
        """
        policy = room.policy
        window = (
            policy.session_ttl + policy.session_grace
            if policy.session_renewal
            else policy.session_max
        )
        ids = list(self.sessions.known_active(room, now, window))
        # The tombstones went with the state: write back those of places this replica knows
        # (a replayed ticket of one of them must not take its old place again).
        spent_log = self.sessions.spent
        spent_log.prune(room.name, now, spent_for(policy))
        known = set(ids)
        spent = [pid for pid in spent_log.ids(room.name) if pid not in known]
        restored = 0
        for i in range(0, max(1, len(spent)), RESTORE_BATCH):  # bounded script time
            restored += await self.ctx.store.restore(
                room.name,
                ids if i == 0 else [],
                room.limits.session_ttl_ms,
                room.max_score,
                spent[i : i + RESTORE_BATCH],
            )
        if first:
            until = now + 2 * refresh_seconds(policy, 0) + 1.0
            room.held_until = max(room.held_until, until)
            await self.ctx.store.set_meta(room.name, {"hold_until": f"{until:.3f}"})
        log.warning(
            "room %s: the store lost its state; %d session(s) counted again, admissions held "
            "for waiters to re-enter",
            room.name,
            restored,
        )

    async def _count_replicas(self, room: RoomRuntime, meta: dict[str, str], now: float) -> None:
        """Keep this replica's mark in the room's meta map fresh and count the live marks.

        The count is the local estimate that fail-open uses to take only this replica's share
        of the admit rate. A mark is fresh for 15 s; marks older than an hour are removed.
        """
        key = f"replica:{self.replica_id}"
        alive = 0
        stale: dict[str, str] = {}
        for k, v in meta.items():
            if not k.startswith("replica:"):
                continue
            try:
                age = now - float(v)
            except ValueError:
                age = float("inf")
            if age < MARK_FRESH or k == key:
                alive += 1
            elif age > MARK_STALE:
                stale[k] = ""
        if now - self._mark_written.get(room.name, 0.0) >= MARK_EVERY or key not in meta:
            self._mark_written[room.name] = now
            await self.ctx.store.set_meta(room.name, {**stale, key: f"{now:.0f}"})
        self.replicas_hint = max(1, alive if key in meta else alive + 1)
