"""The store port behind circuit breakers: the only code that calls the store.

Every store call of the service goes through :class:`GuardedStore`, whose methods mirror the
``Store`` port. Each call passes the breaker of its failure domain, is timed and counted
(``waitroom_store_seconds`` / ``waitroom_store_errors_total`` by operation), and a breaker
that opens or closes is reported once: gauges, a log line, ``system.store_down`` / ``_up``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from waitroom_proxy.errors import StoreError
from waitroom_proxy.metrics import Metrics
from waitroom_proxy.ports import (
    DrawState,
    PlaceStatus,
    QueueView,
    Reasserted,
    RoomLimits,
    RoomStats,
    Store,
    TickResult,
)
from waitroom_proxy.service.emit import Emitter

log = logging.getLogger(__name__)

HIT_BREAKER = ":hit"
"""Breaker key of the per-client rate limit (its keys spread over every shard of a cluster)."""
PROCESS_BREAKER = ":process"
"""Breaker key of store calls made for no room (the admin API's ping)."""
STORE_BREAKER = ":store"
"""The one breaker of a store that is a single failure domain (one server, Sentinel, memory)."""


class CircuitBreaker:
    """Stops calling a failing store for a short cool-down, so requests don't queue on timeouts.

    One per failure domain (``GuardedStore.breaker_for``). A store whose ``sharded`` attribute
    is true (``RedisStore`` on a Redis Cluster) holds each room on one shard, so each room has
    its own breaker and the rate limit another: a shard that times out, refuses connections or
    answers READONLY / CLUSTERDOWN / endless MOVED opens the breakers of its own rooms only.
    Any other store is one server (or one Sentinel-managed master): every room fails with it,
    and one breaker stands for all (a request then never waits on two half-open probes).

    Opens after ``threshold`` consecutive failures; after ``cooldown`` seconds one call is let
    through (half-open: a single probe, the others still fail fast while it runs, so a slow
    store never holds more than one request); a success closes it.
    """

    def __init__(self, *, threshold: int = 3, cooldown: float = 1.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.open_until = 0.0
        self.probing = False

    def allow(self, now: float) -> bool:
        if self.failures < self.threshold:
            return True
        if now >= self.open_until and not self.probing:
            self.probing = True
            return True
        return False

    def success(self) -> bool:
        """Record a success; True if the breaker was open (the store came back)."""
        was_open = self.failures >= self.threshold
        self.failures = 0
        self.probing = False
        return was_open

    def failure(self, now: float) -> bool:
        """Record a failure; True if this failure opened the breaker."""
        self.failures += 1
        self.probing = False
        if self.failures >= self.threshold:
            self.open_until = now + self.cooldown
            return self.failures == self.threshold
        return False

    @property
    def is_open(self) -> bool:
        return self.failures >= self.threshold


class GuardedStore:
    """The ``Store`` port, each call through the breaker of its failure domain.

    Args:
        store: the adapter (Redis, memory).
        metrics: store latency, errors and the ``store_up`` gauges.
        rooms: the names of the configured rooms (their ``room_store_up`` gauges).
        emit: publishes ``system.store_down`` / ``system.store_up``.
        replica_id: named in those events.
    """

    def __init__(
        self,
        store: Store,
        *,
        metrics: Metrics,
        rooms: Iterable[str],
        emit: Emitter,
        replica_id: str,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._rooms = tuple(rooms)
        self._emit = emit
        self._replica_id = replica_id
        self.sharded = bool(getattr(store, "sharded", False))
        """Rooms fail one by one (a cluster: a breaker per room) or all together (one server)."""
        self.breakers: dict[str, CircuitBreaker] = {}
        """Per failure domain: room names, ``HIT_BREAKER``, ``PROCESS_BREAKER`` when sharded;
        else ``STORE_BREAKER`` alone."""
        self._down: set[str] = set()
        for name in self._rooms:
            metrics.room_store_up.labels(name).set(1)

    def __repr__(self) -> str:
        return f"GuardedStore({self.kind}, sharded={self.sharded})"

    @property
    def kind(self) -> str:
        """The adapter's class name (logs, the admin API's stats)."""
        return type(self._store).__name__

    # ----------------------------------------------------------------- breakers
    def _domain(self, key: str | None) -> str:
        if not self.sharded:
            return STORE_BREAKER
        return key or PROCESS_BREAKER

    def breaker_for(self, key: str | None) -> CircuitBreaker:
        """The breaker a room's calls go through (``HIT_BREAKER``: the rate limit's; None:
        calls made for no room). On a store that is not sharded, the one breaker of all."""
        name = self._domain(key)
        breaker = self.breakers.get(name)
        if breaker is None:
            breaker = self.breakers[name] = CircuitBreaker()
        return breaker

    @property
    def ok(self) -> bool:
        """False while any breaker is open (some room, or the rate limit, has no store)."""
        return not self._down

    async def _call(
        self, op: str, room: str | None, method: Callable[..., Awaitable[Any]], *args: Any
    ) -> Any:
        """``method(*args)`` through the breaker of ``room`` (``HIT_BREAKER`` for the rate
        limit, None for calls made for no room; see ``breaker_for``)."""
        key = self._domain(room)
        breaker = self.breaker_for(key)
        now = time.monotonic()
        if not breaker.allow(now):
            raise StoreError(f"store circuit open ({key})")
        try:
            result = await method(*args)
        except StoreError:
            self._metrics.store_errors.labels(op).inc()
            if breaker.failure(time.monotonic()):
                self._state(key, False)
            raise
        except BaseException:
            breaker.probing = False  # a cancelled probe must not keep the breaker open
            raise
        self._metrics.store_seconds.labels(op).observe(time.monotonic() - now)
        if breaker.success() or key in self._down:
            self._state(key, True)
        return result

    def _state(self, key: str, up: bool) -> None:
        """A breaker opened or closed: gauges, a log line and ``system.store_down`` / ``_up``
        naming the room (or ``scope``: ``rate_limit`` / ``admin``)."""
        if up == (key not in self._down):
            return
        if up:
            self._down.discard(key)
        else:
            self._down.add(key)
        metrics = self._metrics
        metrics.store_up.set(0 if self._down else 1)
        data: dict[str, Any] = {"replica": self._replica_id}
        if key == STORE_BREAKER:
            for name in self._rooms:
                metrics.room_store_up.labels(name).set(1 if up else 0)
            what, consequence = "every room", ": rooms apply their fail_mode"
        elif key in self._rooms:
            metrics.room_store_up.labels(key).set(1 if up else 0)
            data["room"] = key
            what, consequence = f"room {key}", ": it applies its fail_mode"
        else:
            data["scope"] = "rate_limit" if key == HIT_BREAKER else "admin"
            what, consequence = f"the {data['scope'].replace('_', ' ')}", ""
        if up:
            log.warning("store is reachable again for %s", what)
            self._emit("system.store_up", None, data)
        else:
            log.error("store unreachable for %s%s", what, consequence)
            self._emit("system.store_down", None, data)

    # ----------------------------------------------------------------- the port, guarded
    async def arrive(
        self, room: str, place_id: str, limits: RoomLimits, score: int | None = None
    ) -> QueueView:
        view: QueueView = await self._call(
            "arrive", room, self._store.arrive, room, place_id, limits, score
        )
        return view

    async def heartbeat(
        self, room: str, place_id: str, abandon_after_ms: int = 120_000, linger: float = 0.0
    ) -> QueueView:
        view: QueueView = await self._call(
            "heartbeat", room, self._store.heartbeat, room, place_id, abandon_after_ms, linger
        )
        return view

    async def claim(self, room: str, place_id: str, session_ttl_ms: int) -> bool:
        return bool(await self._call("claim", room, self._store.claim, room, place_id,
                                     session_ttl_ms))  # fmt: skip

    async def touch(self, room: str, place_ids: Sequence[str], session_ttl_ms: int) -> int:
        return int(await self._call("touch", room, self._store.touch, room, place_ids,
                                    session_ttl_ms))  # fmt: skip

    async def restore(
        self,
        room: str,
        place_ids: Sequence[str],
        session_ttl_ms: int,
        min_seq: int = 0,
        spent_ids: Sequence[str] = (),
    ) -> int:
        return int(
            await self._call(
                "restore", room, self._store.restore, room, place_ids, session_ttl_ms, min_seq,
                spent_ids,
            )
        )  # fmt: skip

    async def reassert(
        self,
        room: str,
        leases: Sequence[tuple[str, int]],
        ended: Sequence[str] = (),
        revoke_for_ms: int = 0,
    ) -> Reasserted:
        answer: Reasserted = await self._call(
            "reassert", room, self._store.reassert, room, leases, ended, revoke_for_ms
        )
        return answer

    async def leave(self, room: str, place_id: str, revoke_for_ms: int) -> PlaceStatus:
        was: PlaceStatus = await self._call(
            "leave", room, self._store.leave, room, place_id, revoke_for_ms
        )
        return was

    async def tick(self, room: str, limits: RoomLimits, force: int = 0) -> TickResult:
        result: TickResult = await self._call("tick", room, self._store.tick, room, limits, force)
        return result

    async def stats(self, room: str) -> RoomStats:
        stats: RoomStats = await self._call("stats", room, self._store.stats, room)
        return stats

    async def revoked_since(self, room: str, since_ms: int) -> tuple[list[str], int]:
        ids, now_ms = await self._call("revoked", room, self._store.revoked_since, room, since_ms)
        return ids, now_ms

    async def get_meta(self, room: str) -> dict[str, str]:
        meta: dict[str, str] = await self._call("meta", room, self._store.get_meta, room)
        return meta

    async def set_meta(self, room: str, values: dict[str, str]) -> None:
        await self._call("meta", room, self._store.set_meta, room, values)

    async def init_meta(self, room: str, key: str, value: str) -> str:
        return str(await self._call("meta", room, self._store.init_meta, room, key, value))

    def draws(self, room: str) -> DrawCalls:
        """The scheduled-sale calls of ``room`` (``ports.DrawStore``), through its breaker."""
        return DrawCalls(self, self._store, room)

    async def hit(self, client: str, limit: int, window_ms: int) -> int:
        """The per-client rate limit, through its own breaker (``HIT_BREAKER``)."""
        return int(await self._call("hit", HIT_BREAKER, self._store.hit, client, limit, window_ms))

    async def once(self, room: str, key: str, ttl_ms: int) -> bool:
        return bool(await self._call("once", room, self._store.once, room, key, ttl_ms))

    async def ping(self) -> None:
        """Through the breaker of calls made for no room."""
        await self._call("ping", None, self._store.ping)

    async def ping_unguarded(self) -> None:
        """``/readyz``: ask the store itself, open breaker or not (a probe must see it heal)."""
        await self._store.ping()

    async def close(self) -> None:
        await self._store.close()


class DrawCalls:
    """``ports.DrawStore`` for one room through the room's breaker (``GuardedStore.draws``).

    Raises ``StoreError`` when the adapter has no draw support either: a scheduled room then
    applies its ``fail_mode`` rules as for a store that is down."""

    def __init__(self, guarded: GuardedStore, store: Store, room: str) -> None:
        self._guarded = guarded
        self._store: Any = store
        self._room = room

    async def _call(self, op: str, *args: Any) -> Any:
        method = getattr(self._store, op, None)
        if method is None:
            raise StoreError(f"{type(self._store).__name__} cannot run a scheduled sale")
        return await self._guarded._call(op, self._room, method, self._room, *args)

    async def step(
        self, bounds: tuple[int, int, int], place_id: str = "", max_length: int = 1_000_000
    ) -> DrawState:
        state: DrawState = await self._call("draw_step", bounds, place_id, max_length)
        return state

    async def commit(self, seed: str, commitment: str, committed_at: str) -> bool:
        return bool(await self._call("draw_commit", seed, commitment, committed_at))

    async def entries(self) -> tuple[list[str], dict[str, str]]:
        ids, state = await self._call("draw_entries")
        return ids, state

    async def release(self, start_ms: int, order: Sequence[str], audit_json: str) -> int:
        return int(await self._call("draw_release", start_ms, order, audit_json))

    async def mark(self, key: str, value: str) -> bool:
        return bool(await self._call("draw_mark", key, value))

    async def audit(self) -> str | None:
        value = await self._call("draw_audit")
        return None if value is None else str(value)

    async def reset(self) -> int:
        return int(await self._call("draw_reset"))
