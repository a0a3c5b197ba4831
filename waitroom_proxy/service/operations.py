"""What an operator may do to the rooms (the admin API's whole reach into the service).

Reads refresh the room from the store first, so any replica answers what every replica sees.
Changes are written to the store's room meta map, followed here at once and by the other
replicas within a controller tick; each is published as an event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from waitroom_proxy.domain.schedule import Schedule
from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import PlaceStatus, RoomStats, TickResult
from waitroom_proxy.service.controller import Controller
from waitroom_proxy.service.gatekeeper import Gatekeeper
from waitroom_proxy.service.lifecycle import CANCELLED, effective_schedule
from waitroom_proxy.service.room import RoomRuntime, decode_overrides


class RoomOperations:
    """The operator's verbs, for every room of one process.

    Every method but :meth:`describe` and :meth:`store_up` raises ``StoreError`` when the store
    does not answer (the admin API answers 503).
    """

    def __init__(self, gate: Gatekeeper, controller: Controller) -> None:
        self._gate = gate
        self._controller = controller

    # ----------------------------------------------------------------- reading
    @property
    def rooms(self) -> Mapping[str, RoomRuntime]:
        return self._gate.rooms

    @property
    def replica_id(self) -> str:
        return self._gate.replica_id

    @property
    def store_kind(self) -> str:
        """The store adapter's name (``RedisStore``, ``MemoryStore``)."""
        return self._gate.store.kind

    @property
    def publisher(self) -> object:
        """The event publisher (its kind and counters are shown to operators)."""
        return self._gate.publisher

    def now(self) -> float:
        return self._gate.clock()

    async def describe(self, room: RoomRuntime) -> RoomStats | None:
        """Follow what other replicas changed, then the room's counts (store down: the last
        counts this replica saw, maybe None)."""
        stats = room.last_stats
        try:
            await self._gate.sync.refresh(room)
            stats = await self._gate.store.stats(room.name)
        except StoreError:
            pass
        return stats

    async def stored_overrides(self, room: RoomRuntime) -> dict[str, Any]:
        """The overrides as the store holds them now (another replica may have changed them)."""
        meta = await self._gate.store.get_meta(room.name)
        return decode_overrides(meta.get("overrides"))

    async def store_up(self) -> bool:
        try:
            await self._gate.store.ping()
        except StoreError:
            return False
        return True

    # ----------------------------------------------------------------- changing
    async def _write(self, room: RoomRuntime, values: dict[str, str]) -> None:
        """Write runtime state for every replica, and follow it here at once."""
        await self._gate.store.set_meta(room.name, values)
        await self._gate.sync.refresh(room)

    async def set_overrides(
        self, room: RoomRuntime, overrides: dict[str, Any], changes: Any
    ) -> None:
        """Replace the room's overrides (validated by the caller); ``changes``: what the
        operator asked for, for the event."""
        value = json.dumps(overrides, sort_keys=True) if overrides else ""
        await self._write(room, {"overrides": value})
        data = {"changes": changes, "overrides": overrides}
        self._gate.emit("queue.config_changed", room.name, data)

    async def reset_overrides(self, room: RoomRuntime) -> None:
        await self._write(room, {"overrides": ""})
        data = {"changes": "reset", "overrides": {}}
        self._gate.emit("queue.config_changed", room.name, data)

    async def pause(self, room: RoomRuntime) -> None:
        await self._write(room, {"paused": "1"})
        self._gate.emit("queue.paused", room.name, {"replica": self._gate.replica_id})

    async def resume(self, room: RoomRuntime) -> None:
        await self._write(room, {"paused": ""})
        self._gate.emit("queue.resumed", room.name, {"replica": self._gate.replica_id})

    async def admit(self, room: RoomRuntime, count: int) -> TickResult:
        """Promote up to ``count`` waiters now, past the rate (still within capacity)."""
        return await self._controller.tick_room(room, force=count)

    async def revoke(self, room: RoomRuntime, place_id: str) -> PlaceStatus:
        """End a session (or give up a place) now: here at once, on other replicas within a
        tick. Returns the status the place had."""
        return await self._gate.sessions.end(room, place_id, "admin")

    # ----------------------------------------------------------------- a scheduled sale
    def schedule(self, room: RoomRuntime) -> Schedule | None:
        """The schedule the room follows now (the operator's, else the configured one)."""
        return effective_schedule(room)

    def store_now(self, room: RoomRuntime) -> float:
        """This replica's estimate of the store's clock (what decides the phases)."""
        return self._gate.lifecycle.store_now(room, self._gate.clock())

    async def set_schedule(self, room: RoomRuntime, schedule: Schedule | None) -> int:
        """Make every replica follow ``schedule`` (None: cancel, the room is open as without
        one). A draw already released (an earlier sale) or a cancelled one is forgotten, and
        its pre-queue joins the queue in arrival order. Returns how many places did."""
        moved = 0
        lifecycle = self._gate.lifecycle
        draws = self._gate.store.draws(room.name)
        state = await draws.entries()
        if schedule is None or "released" in state[1]:
            moved = await draws.reset()
        value = CANCELLED if schedule is None else json.dumps(schedule.as_dict(), sort_keys=True)
        await self._write(room, {"schedule": value})
        lifecycle.forget(room)
        changes = {"schedule": None if schedule is None else schedule.as_dict()}
        self._gate.emit("queue.config_changed", room.name, {"changes": changes, "moved": moved})
        return moved
