"""Store on a Redis-protocol server: Redis >= 6.2, Valkey, DragonflyDB, alone, as a
Redis/Valkey Cluster or as a Sentinel-managed master (the client of each topology, its timeout
and retry policy, failures and readiness: ``waitroom_proxy.adapters.redis_clients``).

Every change is one Lua script (``waitroom_proxy/adapters/lua/*.lua``), called by EVALSHA; a
room's heartbeats and arrivals are gathered (``redis_heartbeats``, ``redis_batch``). Each script
passes every key it touches in ``KEYS``; a room's keys share one hash tag, ``wr:{room}:<piece>``,
so a room lives on one shard (Dragonfly locks just those keys). Times: the server's ``TIME``.

Keys of a room (all with a TTL refreshed by writes, so an abandoned room cleans itself):

==============  =====  =====================================================================
piece           type   content
==============  =====  =====================================================================
``queue``       zset   place id -> score (arrival sequence or lottery draw)
``seen``        hash   place id -> last touch (ms)
``promoted``    zset   place id -> promotion time (ms)
``active``      zset   session id -> deadline (ms)
``counters``    hash   ``admitted_total``, ``promoted_total``, ``seq``, ``tokens`` (1/60000
                       token), ``tokens_ts``, the sweep's ``sweep_rank`` and ``sweep_ms``
``revoked``     zset   session id -> revocation time (ms)
``revoked_exp`` zset   session id -> time the revocation may be forgotten (ms)
``meta``        hash   runtime room state
``spent``       zset   place id -> time it left the queue (ms): tombstones, kept
                       ``spent_for_ms``
``hb``          zset   version 0.1's heartbeat set: never created; while 0.1 replicas run
                       beside this version (an upgrade) it is kept fresh for them, and a touch
                       recorded only there still counts
==============  =====  =====================================================================

A waiter costs one member in ``queue`` (a sorted set: its position is a rank) and one field in
``seen`` (a hash: a touch is O(1), where version 0.1's sorted set of heartbeat times moved a
skip-list node on every poll); an admission leaves one member in ``spent`` for
``spent_for_ms`` (README, "Store memory" and "One room's ceiling"). Outside the rooms: the
per-client rate limit, ``wr:{rl:<client>}`` (its own hash tag: clients spread over a cluster's
slots), and the readiness check's ``wr:{ready}`` (one per primary on a cluster), each with a
TTL.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from waitroom_proxy.adapters.lua_source import load_script_source
from waitroom_proxy.adapters.once_ids import check_once
from waitroom_proxy.adapters.redis_batch import Batcher
from waitroom_proxy.adapters.redis_clients import (
    Script,
    StoreClient,
    StoreConnection,
    build_client,
)
from waitroom_proxy.adapters.redis_draw import DRAW_SCRIPTS, DrawKeys, RedisDrawMixin, draw_keys
from waitroom_proxy.adapters.redis_heartbeats import Gather
from waitroom_proxy.adapters.redis_keys import (
    KEY_PREFIX,
    MAX_SCORE,
    SPENT_TTL_MS,
    SWEEP_LIMIT,
    TICK_LIMIT,
    RoomKeys,
    key_ttl,
    rate_limit_key,
    room_keys,
    text,
)
from waitroom_proxy.adapters.redis_recovery import RedisRecoveryMixin
from waitroom_proxy.domain.store_url import parse_store_url
from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import PlaceStatus, QueueView, RoomLimits, RoomStats, TickResult

__all__ = [
    "KEY_PREFIX",
    "SCRIPT_NAMES",
    "SWEEP_LIMIT",
    "TICK_LIMIT",
    "RedisStore",
    "RoomKeys",
    "rate_limit_key",
    "room_keys",
]

log = logging.getLogger(__name__)

SCRIPT_NAMES = (
    "arrive",
    "heartbeat",
    "claim",
    "touch",
    "leave",
    "tick",
    "stats",
    "revoked_since",
    "set_meta",
    "init_meta",
    "hit",
    "restore",
    "once",
    "reassert",
    *DRAW_SCRIPTS,
)

_STATUS = {
    0: PlaceStatus.UNKNOWN,
    1: PlaceStatus.WAITING,
    2: PlaceStatus.PROMOTED,
    3: PlaceStatus.ACTIVE,
    4: PlaceStatus.FULL,
    5: PlaceStatus.SPENT,
}


class RedisStore(RedisRecoveryMixin, RedisDrawMixin):
    """The admission state of every room, on a Redis-protocol server, cluster or Sentinel.

    Args:
        url: A store URL of any topology (``waitroom_proxy.domain.store_url``): one server,
            a Redis Cluster or Sentinel. Ignored when ``client`` is given.
        timeout: Seconds to wait to connect and for each answer (redis-py would otherwise wait
            forever); past it the call raises ``StoreError``. The same for every topology.
        client: An existing async client: ``redis.asyncio.Redis`` (tests inject fakeredis),
            a Sentinel-managed one or a ``RedisCluster``. The store does not close a client it
            did not create.
    """

    def __init__(
        self, url: str | None = None, *, timeout: float = 0.5, client: StoreClient | None = None
    ) -> None:
        owns = client is None
        if client is None:
            if url is None:
                raise ValueError("RedisStore needs a url or a client")
            client = build_client(parse_store_url(url), timeout)
        self._conn = StoreConnection(client, owns=owns)
        self._client = client
        self._timeout = timeout
        self._scripts = {name: Script(client, load_script_source(name)) for name in SCRIPT_NAMES}
        self._batch = Batcher(client)  # a room's arrive/heartbeat calls of one turn: 1 pipeline
        self._beats = Gather(self._heartbeats, self._view)  # a room's heartbeats: 1 call
        self._clock_offset_ms = 0
        """TESTS ONLY: added to the server's TIME in every script so tests can move time.
        Production never changes it (always 0); see ``_advance_clock_for_tests``."""

    @property
    def sharded(self) -> bool:
        """True on a Redis Cluster: each room lives on one shard and fails alone, so the
        gatekeeper keeps a circuit breaker per room (``service.CircuitBreaker``)."""
        return self._conn.sharded

    @classmethod
    def from_url(cls, url: str, timeout: float = 0.5) -> RedisStore:
        """A store connected to ``url`` with ``timeout`` seconds per operation."""
        return cls(url, timeout=timeout)

    def __repr__(self) -> str:
        return f"RedisStore({self._conn.describe()}, timeout={self._timeout})"

    def _advance_clock_for_tests(self, ms: int) -> None:
        """TESTS ONLY: make this client's scripts see the server clock ``ms`` later.

        All clients standing for replicas in a test must be advanced alike. Production code
        must never call this: replicas would disagree on time.
        """
        self._clock_offset_ms += ms

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            await self._conn.connect()
            return await self._scripts[name](keys, args)
        except Exception as exc:
            raise await self._conn.failure(name, exc) from exc

    async def _batched(self, room: str, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``_run`` in one pipeline with ``room``'s other calls of this turn (``redis_batch``)."""
        try:
            await self._conn.connect()
            return await self._batch.call(room, self._scripts[name], keys, args)
        except Exception as exc:
            raise await self._conn.failure(name, exc) from exc

    async def _plain(self, op: str, *args: Any, what: str = "") -> Any:
        """One plain command (a read), with the store's failure handling (as ``what``)."""
        try:
            await self._conn.connect()
            return await getattr(self._client, op)(*args)
        except Exception as exc:
            raise await self._conn.failure(what or op, exc) from exc

    def _keys_of(self, room: str) -> tuple[DrawKeys, str, str, str, str]:
        k = room_keys(room)
        return draw_keys(k.queue[: -len("queue")]), k.queue, k.seen, k.counters, k.spent

    @staticmethod
    def _view(reply: Sequence[Any]) -> QueueView:
        try:
            status, position, qlen, score, taken, now = (int(x) for x in reply)
            return QueueView(
                _STATUS[status],
                position=position,
                queue_length=qlen,
                score=score,
                promoted_total=taken,
                now_ms=now,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"store returned an unexpected reply: {reply!r}") from exc

    # -- Store -------------------------------------------------------------------------------

    async def arrive(
        self, room: str, place_id: str, limits: RoomLimits, score: int | None = None
    ) -> QueueView:
        """See ``waitroom_proxy.ports.Store.arrive``."""
        if score is not None and not -MAX_SCORE <= score <= MAX_SCORE:
            raise ValueError(f"score out of range: {score}")
        k = room_keys(room)
        reply = await self._batched(
            room,
            "arrive",
            (k.queue, k.seen, k.promoted, k.active, k.counters, k.spent, k.hb, k.meta),
            (
                self._clock_offset_ms,
                place_id,
                limits.capacity,
                limits.admit_rate,
                limits.session_ttl_ms,
                limits.max_queue_length,
                int(limits.direct_admit),
                int(limits.count_only),
                "" if score is None else score,
                key_ttl(
                    limits.abandon_after_ms,
                    limits.session_ttl_ms,
                    limits.claim_timeout_ms,
                    limits.spent_for_ms,
                ),
                limits.marker,
            ),
        )
        return self._view(reply)

    async def heartbeat(
        self, room: str, place_id: str, abandon_after_ms: int = 120_000, linger: float = 0.0
    ) -> QueueView:
        """See ``waitroom_proxy.ports.Store.heartbeat`` (one call per gather: module docstring)."""
        return await self._beats.call(room, abandon_after_ms, place_id, linger)  # type: ignore[no-any-return]

    async def _heartbeats(self, room: str, abandon_after_ms: int, ids: Sequence[str]) -> Any:
        k = room_keys(room)
        return await self._batched(
            room,
            "heartbeat",
            (k.queue, k.seen, k.promoted, k.active, k.spent, k.counters, k.hb),
            (self._clock_offset_ms, abandon_after_ms, *ids),
        )

    async def claim(self, room: str, place_id: str, session_ttl_ms: int) -> bool:
        """See ``waitroom_proxy.ports.Store.claim``."""
        k = room_keys(room)
        reply = await self._run(
            "claim",
            (k.promoted, k.active),
            (self._clock_offset_ms, place_id, session_ttl_ms, key_ttl(session_ttl_ms)),
        )
        return int(reply) == 1

    async def touch(self, room: str, place_ids: Sequence[str], session_ttl_ms: int) -> int:
        """See ``waitroom_proxy.ports.Store.touch``."""
        if not place_ids:
            return 0
        k = room_keys(room)
        reply = await self._run(
            "touch",
            (k.active,),
            (self._clock_offset_ms, session_ttl_ms, key_ttl(session_ttl_ms), *place_ids),
        )
        return int(reply)

    async def leave(self, room: str, place_id: str, revoke_for_ms: int) -> PlaceStatus:
        """See ``waitroom_proxy.ports.Store.leave``."""
        k = room_keys(room)
        reply = await self._run(
            "leave",
            (k.queue, k.seen, k.promoted, k.active, k.revoked, k.revoked_exp, k.spent, k.hb),
            (self._clock_offset_ms, place_id, revoke_for_ms, key_ttl(revoke_for_ms, SPENT_TTL_MS)),
        )
        return _STATUS.get(int(reply), PlaceStatus.UNKNOWN)

    async def tick(self, room: str, limits: RoomLimits, force: int = 0) -> TickResult:
        """See ``waitroom_proxy.ports.Store.tick``."""
        k = room_keys(room)
        reply = await self._run(
            "tick",
            (
                k.queue,
                k.seen,
                k.promoted,
                k.active,
                k.counters,
                k.revoked,
                k.revoked_exp,
                k.meta,
                k.spent,
                k.hb,
            ),
            (
                self._clock_offset_ms,
                limits.capacity,
                limits.admit_rate,
                limits.abandon_after_ms,
                limits.claim_timeout_ms,
                int(limits.promote),
                max(0, force),
                TICK_LIMIT,
                key_ttl(
                    limits.abandon_after_ms,
                    limits.session_ttl_ms,
                    limits.claim_timeout_ms,
                    limits.spent_for_ms,
                ),
                limits.spent_for_ms,
                SWEEP_LIMIT,
            ),
        )
        promoted, expired, no_shows, abandoned = ([text(x) for x in part] for part in reply)
        return TickResult(
            promoted=promoted, expired_sessions=expired, no_shows=no_shows, abandoned=abandoned
        )

    async def stats(self, room: str) -> RoomStats:
        """See ``waitroom_proxy.ports.Store.stats``."""
        k = room_keys(room)
        reply = await self._run(
            "stats", (k.queue, k.promoted, k.active, k.counters), (self._clock_offset_ms,)
        )
        qlen, active, promoted, admitted, now, taken, has_head, head = (int(x) for x in reply)
        return RoomStats(
            queue_length=qlen,
            active=active,
            promoted=promoted,
            admitted_total=admitted,
            now_ms=now,
            promoted_total=taken,
            head_score=head if has_head else None,
        )

    async def revoked_since(self, room: str, since_ms: int) -> tuple[list[str], int]:
        """See ``waitroom_proxy.ports.Store.revoked_since``."""
        k = room_keys(room)
        now, ids = await self._run("revoked_since", (k.revoked,), (self._clock_offset_ms, since_ms))
        return [text(x) for x in ids], int(now)

    async def get_meta(self, room: str) -> dict[str, str]:
        """See ``waitroom_proxy.ports.Store.get_meta``."""
        raw = await self._plain("hgetall", room_keys(room).meta, what="get_meta")
        return {text(key): text(value) for key, value in raw.items()}

    async def set_meta(self, room: str, values: dict[str, str]) -> None:
        """See ``waitroom_proxy.ports.Store.set_meta``."""
        if not values:
            return
        k = room_keys(room)
        args: list[Any] = [key_ttl()]
        for key, value in values.items():
            args += [key, value]
        await self._run("set_meta", (k.meta,), args)

    async def init_meta(self, room: str, key: str, value: str) -> str:
        """See ``waitroom_proxy.ports.Store.init_meta``."""
        if not value:
            raise ValueError("init_meta needs a non-empty value")
        k = room_keys(room)
        return text(await self._run("init_meta", (k.meta,), (key_ttl(), key, value)))

    async def hit(self, client: str, limit: int, window_ms: int) -> int:
        """See ``waitroom_proxy.ports.Store.hit``. Key ``wr:{rl:<client>}``: its own slot."""
        key = rate_limit_key(client)
        return int(await self._run("hit", (key,), (self._clock_offset_ms, limit, window_ms)))

    async def once(self, room: str, key: str, ttl_ms: int) -> bool:
        """See ``waitroom_proxy.ports.Store.once``. Key ``wr:{room}:once:<key>``."""
        check_once(key, ttl_ms)
        marker = room_keys(room).queue.removesuffix("queue") + "once:" + key
        return bool(await self._run("once", (marker,), (ttl_ms,)))

    async def ping(self) -> None:
        """See ``waitroom_proxy.ports.Store.ping``: the store must accept a write
        (``StoreConnection.check_writes``: PING alone answers on a demoted master)."""
        await self._conn.check_writes()

    async def close(self) -> None:
        """Close the connections (only those of a client this store created)."""
        await self._conn.close()
