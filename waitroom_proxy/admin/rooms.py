"""What the admin API reads and changes in the engine: the one module that touches the
engine, through its operator's verbs (``service.operations``), so a change of the engine's
shape changes only this.

**Runtime changes** (PATCH, pause, resume) are written to the room's meta map in the store
(``overrides`` as a JSON object, ``paused`` as ``"1"``/absent). Every replica's controller
reads that map on each tick, so all replicas follow within about a second; the replica that
served the request applies the change at once. Two operators patching the same room at the same
instant on different replicas may race (last write wins per request).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from waitroom_proxy.admin.overrides import Problem, validate_overrides, wire
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import PlaceStatus, RoomStats, TickResult
from waitroom_proxy.service import RoomRuntime

if TYPE_CHECKING:
    from waitroom_proxy.service import Engine

__all__ = ["Rooms", "StoreDown", "UnknownRoom", "policy_json"]

log = logging.getLogger(__name__)

SECRET_MASK = "********"  # noqa: S105 - what replaces a secret
"""Shown instead of a room's bypass secret."""
_COUNTER_NAMES = ("published", "dropped", "retries", "buffered", "connected")


class StoreDown(Exception):
    """The store did not answer (the API says 503)."""


class UnknownRoom(LookupError):
    """No room of that name (the API says 404)."""


def policy_json(policy: RoomPolicy) -> dict[str, Any]:
    """Every ``RoomPolicy`` field as JSON; the bypass secret is masked."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(policy):
        value = getattr(policy, f.name)
        if f.name == "bypass":
            bypass = {b.name: wire(getattr(value, b.name)) for b in dataclasses.fields(value)}
            bypass["secret"] = SECRET_MASK if value.secret else None
            out["bypass"] = bypass
        else:
            out[f.name] = wire(value)
    return out


def _stats_json(stats: RoomStats | None) -> dict[str, int] | None:
    if stats is None:
        return None
    return {
        "queue_length": stats.queue_length,
        "active": stats.active,
        "promoted": stats.promoted,
        "admitted_total": stats.admitted_total,
    }


def _finite(x: float) -> float | None:
    return round(x, 3) if math.isfinite(x) else None


def _room_json(room: RoomRuntime, stats: RoomStats | None) -> dict[str, Any]:
    eta = None
    if stats is not None and stats.queue_length > 0:
        estimate = room.eta.estimate(stats.queue_length - 1)  # the last waiter's
        eta = estimate.as_dict() if estimate is not None else None
    rates = room.eta.rates()
    return {
        "name": room.name,
        "paused": room.paused,
        "overrides": dict(room.overrides),
        "policy": policy_json(room.policy),
        "stats": _stats_json(stats),
        "eta_last_seconds": eta,
        "admissions_per_minute": _finite(rates[0] * 60) if rates is not None else None,
    }


class Rooms:
    """The admin operations on one engine's rooms; every answer is plain JSON. The engine is
    reached through its operator's verbs (``service.operations``) only."""

    def __init__(self, engine: Engine) -> None:
        self.ops = engine.operations
        self.registry = engine.gate.metrics.registry

    def __repr__(self) -> str:
        return f"Rooms({sorted(self.ops.rooms)!r})"

    def get(self, name: str) -> RoomRuntime:
        room = self.ops.rooms.get(name)
        if room is None:
            raise UnknownRoom(name)
        return room

    @staticmethod
    async def _call(call: Awaitable[Any]) -> Any:
        try:
            return await call
        except StoreError as exc:
            raise StoreDown(str(exc)) from None

    async def describe(self, room: RoomRuntime) -> dict[str, Any]:
        """Follow what other replicas changed, then describe the room (store down: last seen)."""
        return _room_json(room, await self.ops.describe(room))

    async def describe_all(self) -> list[dict[str, Any]]:
        return [await self.describe(room) for room in list(self.ops.rooms.values())]

    async def patch(self, room: RoomRuntime, patch: Any) -> list[Problem]:
        """Merge a PATCH into the stored overrides; the problems if refused (nothing stored)."""
        current = await self._call(self.ops.stored_overrides(room))
        merged, problems = validate_overrides(patch, room.base, current)
        if problems:
            return problems
        await self._call(self.ops.set_overrides(room, merged, patch))
        log.info("room %s: overrides now %s", room.name, merged)
        return []

    async def reset(self, room: RoomRuntime) -> None:
        await self._call(self.ops.reset_overrides(room))
        log.info("room %s: overrides reset", room.name)

    async def pause(self, room: RoomRuntime, paused: bool) -> None:
        await self._call(self.ops.pause(room) if paused else self.ops.resume(room))
        log.info("room %s: admissions %s", room.name, "paused" if paused else "resumed")

    async def admit(self, room: RoomRuntime, count: int) -> int:
        """Promote up to ``count`` waiters now (even while paused); how many were."""
        result: TickResult = await self._call(self.ops.admit(room, count))
        promoted = len(result.promoted)
        log.info("room %s: operator admitted %d (asked %d)", room.name, promoted, count)
        return promoted

    async def revoke(self, room: RoomRuntime, place_id: str) -> PlaceStatus:
        """End a session (or place) on every replica; what it was."""
        was: PlaceStatus = await self._call(self.ops.revoke(room, place_id))
        log.info("room %s: session revoked by operator (was %s)", room.name, was.value)
        return was

    async def stats(self) -> dict[str, Any]:
        publisher = self.ops.publisher
        events = {"publisher": type(publisher).__name__, "counters": _counters(publisher)}
        store_up = await self.ops.store_up()
        rooms = await self.describe_all()
        return {
            "replica": self.ops.replica_id,
            "time": self.ops.now(),
            "store": {"up": store_up, "kind": self.ops.store_kind},
            "events": events,
            "rooms": rooms,
        }


def _counters(publisher: Any) -> dict[str, float] | None:
    """The event publisher's counters (``counters()``, else its plain attributes), or None."""
    try:
        counters = getattr(publisher, "counters", None)
        if callable(counters):
            raw = dict(counters())
        else:
            raw = {k: getattr(publisher, k) for k in _COUNTER_NAMES if hasattr(publisher, k)}
        out = {
            str(k): float(v)
            for k, v in raw.items()
            if isinstance(v, int | float) and math.isfinite(v)
        }
    except Exception:  # a broken publisher must not break the dashboard
        log.exception("event publisher counters failed")
        return None
    return out or None
