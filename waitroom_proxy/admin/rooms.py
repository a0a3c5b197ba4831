"""What the admin API reads and changes in the engine: the one module that touches the
gatekeeper, the store and the controller (so a change of the engine's shape changes only this).

**Runtime changes** (PATCH, pause, resume) are written to the room's meta map in the store
(``overrides`` as a JSON object, ``paused`` as ``"1"``/absent). Every replica's controller
reads that map on each tick, so all replicas follow within about a second; the replica that
served the request applies the change at once. Two operators patching the same room at the same
instant on different replicas may race (last write wins per request).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from waitroom_proxy.admin.overrides import Problem, validate_overrides, wire
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import PlaceStatus, RoomStats, TickResult
from waitroom_proxy.service import RoomRuntime

if TYPE_CHECKING:
    from waitroom_proxy.bootstrap import Engine

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


def _decode_overrides(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Rooms:
    """The admin operations on one engine's rooms; every answer is plain JSON."""

    def __init__(self, engine: Engine) -> None:
        self.gate = engine.gate
        self.store = engine.gate.store
        self.registry = engine.gate.metrics.registry
        # The controller's ``tick_room`` may or may not return its TickResult; both are handled.
        self._tick_room: Callable[..., Awaitable[object]] = engine.controller.tick_room

    def __repr__(self) -> str:
        return f"Rooms({sorted(self.gate.rooms)!r})"

    def get(self, name: str) -> RoomRuntime:
        room = self.gate.rooms.get(name)
        if room is None:
            raise UnknownRoom(name)
        return room

    async def _call(self, op: str, fn: Callable[[], Awaitable[Any]], room: str | None) -> Any:
        try:
            return await self.gate._call(op, fn, room)
        except StoreError as exc:
            raise StoreDown(str(exc)) from None

    async def describe(self, room: RoomRuntime) -> dict[str, Any]:
        """Follow what other replicas changed, then describe the room (store down: last seen)."""
        stats = room.last_stats
        try:
            await self.gate.refresh_room_state(room)
            stats = await self.gate._call("stats", lambda: self.store.stats(room.name), room.name)
        except StoreError:
            pass
        return _room_json(room, stats)

    async def describe_all(self) -> list[dict[str, Any]]:
        return [await self.describe(room) for room in list(self.gate.rooms.values())]

    async def _set_meta(self, room: RoomRuntime, values: dict[str, str]) -> None:
        """Write runtime state for every replica, and follow it here at once."""
        await self._call("meta", lambda: self.store.set_meta(room.name, values), room.name)
        try:
            await self.gate.refresh_room_state(room)
        except StoreError as exc:
            raise StoreDown(str(exc)) from None

    async def patch(self, room: RoomRuntime, patch: Any) -> list[Problem]:
        """Merge a PATCH into the stored overrides; the problems if refused (nothing stored)."""
        meta = await self._call("meta", lambda: self.store.get_meta(room.name), room.name)
        merged, problems = validate_overrides(
            patch, room.base, _decode_overrides(meta.get("overrides"))
        )
        if problems:
            return problems
        await self._set_meta(
            room, {"overrides": json.dumps(merged, sort_keys=True) if merged else ""}
        )
        self.gate.emit("queue.config_changed", room.name, {"changes": patch, "overrides": merged})
        log.info("room %s: overrides now %s", room.name, merged)
        return []

    async def reset(self, room: RoomRuntime) -> None:
        await self._set_meta(room, {"overrides": ""})
        self.gate.emit("queue.config_changed", room.name, {"changes": "reset", "overrides": {}})
        log.info("room %s: overrides reset", room.name)

    async def pause(self, room: RoomRuntime, paused: bool) -> None:
        await self._set_meta(room, {"paused": "1" if paused else ""})
        event = "queue.paused" if paused else "queue.resumed"
        self.gate.emit(event, room.name, {"replica": self.gate.replica_id})
        log.info("room %s: admissions %s", room.name, "paused" if paused else "resumed")

    async def admit(self, room: RoomRuntime, count: int) -> int:
        """Promote up to ``count`` waiters now (even while paused); how many were."""
        sample = {"room": room.name}
        before = self.registry.get_sample_value("waitroom_admissions_total", sample) or 0.0
        try:
            result = await self._tick_room(room, force=count)
        except StoreError as exc:
            raise StoreDown(str(exc)) from None
        if isinstance(result, TickResult):
            promoted = len(result.promoted)
        else:  # the controller counts its promotions in the admissions counter
            after = self.registry.get_sample_value("waitroom_admissions_total", sample) or 0.0
            promoted = int(after - before)
        log.info("room %s: operator admitted %d (asked %d)", room.name, promoted, count)
        return promoted

    async def revoke(self, room: RoomRuntime, place_id: str) -> PlaceStatus:
        """End a session (or place) on every replica; what it was."""
        session_max = room.policy.session_max
        # Locally at once; other replicas read the store's revoked set on their next tick.
        self.gate.cache.revoke(place_id, self.gate.clock() + session_max)
        ttl_ms = int(session_max * 1000)
        was: PlaceStatus = await self._call(
            "leave", lambda: self.store.leave(room.name, place_id, ttl_ms), room.name
        )
        if was is PlaceStatus.ACTIVE:
            self.gate.metrics.sessions_ended.labels(room.name, "revoked").inc()
        self.gate.emit("session.revoked", room.name, {"place_id": place_id, "reason": "admin"})
        log.info("room %s: session revoked by operator (was %s)", room.name, was.value)
        return was

    async def stats(self) -> dict[str, Any]:
        try:
            await self.gate._call("ping", self.store.ping)
            store_up = True
        except StoreError:
            store_up = False
        publisher = self.gate.publisher
        events = {"publisher": type(publisher).__name__, "counters": _counters(publisher)}
        rooms = await self.describe_all()
        return {
            "replica": self.gate.replica_id,
            "time": self.gate.clock(),
            "store": {"up": store_up, "kind": type(self.store).__name__},
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
