"""Store on a Redis-protocol server: Redis >= 6.2, Valkey, DragonflyDB, alone, as a
Redis/Valkey Cluster or as a Sentinel-managed master (the client of each topology, its timeout
and retry policy, failures and readiness: ``waitroom_proxy.adapters.redis_clients``).

Every change is one Lua script (``waitroom_proxy/adapters/lua/*.lua``), registered once and
called by EVALSHA (redis-py reloads it on ``NOSCRIPT``). Each script passes every key it
touches in ``KEYS``; a room's keys share one hash tag, ``wr:{room}:<piece>``, so a room lives
on one shard and Dragonfly can lock just those keys. Times come from the server's ``TIME``.

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
from functools import lru_cache
from typing import Any, NamedTuple

from waitroom_proxy.adapters.lua_source import load_script_source
from waitroom_proxy.adapters.once_ids import check_once
from waitroom_proxy.adapters.redis_clients import (
    Script,
    StoreClient,
    StoreConnection,
    build_client,
)
from waitroom_proxy.adapters.redis_draw import DRAW_SCRIPTS, DrawKeys, RedisDrawMixin, draw_keys
from waitroom_proxy.domain.policy import ROOM_NAME_RE
from waitroom_proxy.domain.store_url import parse_store_url
from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import (
    PlaceStatus,
    QueueView,
    Reasserted,
    RoomLimits,
    RoomStats,
    TickResult,
)

__all__ = [
    "KEY_PREFIX",
    "SCRIPT_NAMES",
    "SWEEP_LIMIT",
    "TICK_LIMIT",
    "RedisStore",
    "RoomKeys",
    "rate_limit_key",
]

log = logging.getLogger(__name__)

KEY_PREFIX = "wr"
TICK_LIMIT = 1000
"""Most ids one tick removes from each set, and most waiters it promotes (bounds script time)."""
SWEEP_LIMIT = 5000
"""Most waiters whose last touch one tick reads (about 2 ms of script time at a million
waiters). The sweep reads the whole queue once per ``abandon_after`` of store time, shared by
every replica's ticks: 2M waiters at 120 s are ~17k reads a second, ~8k per tick of one
replica ticking twice a second; past this limit a full sweep takes longer."""
KEY_TTL_MARGIN_MS = 86_400_000
"""Keys live this long past the longest duration of the call that last wrote them."""
MAX_SCORE = 2**53
"""Sorted-set scores are doubles: integer scores beyond this lose precision."""
SPENT_TTL_MS = 3_900_000
"""Key TTL floor for calls that write tombstones without the room's limits (leave, restore):
the default ``spent_for_ms``; the next tick sets the room's own."""

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


class RoomKeys(NamedTuple):
    """The keys of one room."""

    queue: str
    seen: str
    promoted: str
    active: str
    counters: str
    revoked: str
    revoked_exp: str
    meta: str
    spent: str
    hb: str
    """Version 0.1's heartbeat set (see the module docstring): read and refreshed, never
    created."""


@lru_cache(maxsize=4096)
def room_keys(room: str) -> RoomKeys:
    """The keys of ``room``, all with the room's hash tag.

    Raises:
        ValueError: ``room`` is not a valid room name (it could break the hash tag).
    """
    if not ROOM_NAME_RE.match(room):
        raise ValueError(f"invalid room name: {room!r}")
    base = f"{KEY_PREFIX}:{{{room}}}:"
    return RoomKeys(*(base + piece for piece in RoomKeys._fields))


def rate_limit_key(client: str) -> str:
    """The per-client rate-limit key: its own hash tag, so clients spread over the slots of a
    cluster instead of loading the shard of one room."""
    return f"{KEY_PREFIX}:{{rl:{client}}}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _key_ttl(*durations_ms: int) -> int:
    return max((0, *durations_ms)) + KEY_TTL_MARGIN_MS


class RedisStore(RedisDrawMixin):
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

    async def _plain(self, op: str, *args: Any) -> Any:
        """One plain command (a read), with the store's failure handling."""
        try:
            await self._conn.connect()
            return await getattr(self._client, op)(*args)
        except Exception as exc:
            raise await self._conn.failure(op, exc) from exc

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
        reply = await self._run(
            "arrive",
            (k.queue, k.seen, k.promoted, k.active, k.counters, k.spent, k.hb),
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
                _key_ttl(
                    limits.abandon_after_ms,
                    limits.session_ttl_ms,
                    limits.claim_timeout_ms,
                    limits.spent_for_ms,
                ),
            ),
        )
        return self._view(reply)

    async def heartbeat(
        self, room: str, place_id: str, abandon_after_ms: int = 120_000
    ) -> QueueView:
        """See ``waitroom_proxy.ports.Store.heartbeat``."""
        k = room_keys(room)
        reply = await self._run(
            "heartbeat",
            (k.queue, k.seen, k.promoted, k.active, k.spent, k.counters, k.hb),
            (self._clock_offset_ms, place_id, abandon_after_ms),
        )
        return self._view(reply)

    async def claim(self, room: str, place_id: str, session_ttl_ms: int) -> bool:
        """See ``waitroom_proxy.ports.Store.claim``."""
        k = room_keys(room)
        reply = await self._run(
            "claim",
            (k.promoted, k.active),
            (self._clock_offset_ms, place_id, session_ttl_ms, _key_ttl(session_ttl_ms)),
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
            (self._clock_offset_ms, session_ttl_ms, _key_ttl(session_ttl_ms), *place_ids),
        )
        return int(reply)

    async def restore(
        self,
        room: str,
        place_ids: Sequence[str],
        session_ttl_ms: int,
        min_seq: int = 0,
        spent_ids: Sequence[str] = (),
    ) -> int:
        """See ``waitroom_proxy.ports.Store.restore``."""
        k = room_keys(room)
        reply = await self._run(
            "restore",
            (k.active, k.queue, k.promoted, k.counters, k.seen, k.spent, k.hb),
            (
                self._clock_offset_ms,
                session_ttl_ms,
                _key_ttl(session_ttl_ms, SPENT_TTL_MS),
                min(max(0, min_seq), MAX_SCORE),
                len(place_ids),
                *place_ids,
                *spent_ids,
            ),
        )
        return int(reply)

    async def reassert(
        self,
        room: str,
        leases: Sequence[tuple[str, int]],
        ended: Sequence[str] = (),
        revoke_for_ms: int = 0,
    ) -> Reasserted:
        """See ``waitroom_proxy.ports.Store.reassert``."""
        if not leases and not ended:
            return Reasserted()
        k = room_keys(room)
        flat = [x for pid, ms in leases for x in (pid, max(0, int(ms)))]
        longest = max((ms for _, ms in leases), default=0)
        reply = await self._run(
            "reassert",
            (k.active, k.promoted, k.queue, k.seen, k.spent, k.revoked, k.revoked_exp),
            (
                self._clock_offset_ms,
                _key_ttl(longest, revoke_for_ms, SPENT_TTL_MS),
                revoke_for_ms,
                len(leases),
                *flat,
                *ended,
            ),
        )
        kept, readded, refused, dropped = (int(x) for x in reply)
        return Reasserted(kept=kept, readded=readded, refused=refused, dropped=dropped)

    async def leave(self, room: str, place_id: str, revoke_for_ms: int) -> PlaceStatus:
        """See ``waitroom_proxy.ports.Store.leave``."""
        k = room_keys(room)
        reply = await self._run(
            "leave",
            (k.queue, k.seen, k.promoted, k.active, k.revoked, k.revoked_exp, k.spent, k.hb),
            (self._clock_offset_ms, place_id, revoke_for_ms, _key_ttl(revoke_for_ms, SPENT_TTL_MS)),
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
                _key_ttl(
                    limits.abandon_after_ms,
                    limits.session_ttl_ms,
                    limits.claim_timeout_ms,
                    limits.spent_for_ms,
                ),
                limits.spent_for_ms,
                SWEEP_LIMIT,
            ),
        )
        promoted, expired, no_shows, abandoned = ([_text(x) for x in part] for part in reply)
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
        return [_text(x) for x in ids], int(now)

    async def get_meta(self, room: str) -> dict[str, str]:
        """See ``waitroom_proxy.ports.Store.get_meta``."""
        k = room_keys(room)
        try:
            await self._conn.connect()
            raw = await self._client.hgetall(k.meta)
        except Exception as exc:
            raise await self._conn.failure("get_meta", exc) from exc
        return {_text(key): _text(value) for key, value in raw.items()}

    async def set_meta(self, room: str, values: dict[str, str]) -> None:
        """See ``waitroom_proxy.ports.Store.set_meta``."""
        if not values:
            return
        k = room_keys(room)
        args: list[Any] = [_key_ttl()]
        for key, value in values.items():
            args += [key, value]
        await self._run("set_meta", (k.meta,), args)

    async def init_meta(self, room: str, key: str, value: str) -> str:
        """See ``waitroom_proxy.ports.Store.init_meta``."""
        if not value:
            raise ValueError("init_meta needs a non-empty value")
        k = room_keys(room)
        return _text(await self._run("init_meta", (k.meta,), (_key_ttl(), key, value)))

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
