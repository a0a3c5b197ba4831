"""Store on a Redis-protocol server: Redis >= 6.2, Valkey, DragonflyDB (DESIGN §6).

Every change is one Lua script (``waitroom_proxy/adapters/lua/*.lua``), registered once and
called by EVALSHA (redis-py reloads it on ``NOSCRIPT``). Each script passes every key it
touches in ``KEYS``; a room's keys share one hash tag, ``wr:{room}:<piece>``, so a room lives
on one shard and Dragonfly can lock just those keys. Times come from the server's ``TIME``.

Keys of a room (all with a TTL refreshed by writes, so an abandoned room cleans itself):

==============  =====  =====================================================================
piece           type   content
==============  =====  =====================================================================
``queue``       zset   place id -> score (arrival sequence or lottery draw)
``hb``          zset   place id -> last heartbeat (ms)
``promoted``    zset   place id -> promotion time (ms)
``active``      zset   session id -> deadline (ms)
``counters``    hash   ``admitted_total``, ``seq``, ``tokens`` (1/60000 token), ``tokens_ts``
``revoked``     zset   session id -> revocation time (ms)
``revoked_exp`` zset   session id -> time the revocation may be forgotten (ms)
``meta``        hash   runtime room state
==============  =====  =====================================================================

A waiter costs one member in ``queue`` and one in ``hb``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any, NamedTuple

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
)

from waitroom_proxy.adapters.redis_clients import (
    StoreClient,
    build_client,
    close_client,
    describe,
)
from waitroom_proxy.domain.policy import ROOM_NAME_RE
from waitroom_proxy.domain.store_url import parse_store_url
from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import PlaceStatus, QueueView, RoomLimits, RoomStats, TickResult

__all__ = ["KEY_PREFIX", "SCRIPT_NAMES", "TICK_LIMIT", "RedisStore", "RoomKeys", "rate_limit_key"]

log = logging.getLogger(__name__)

KEY_PREFIX = "wr"
TICK_LIMIT = 1000
"""Most ids one tick removes from each set, and most waiters it promotes (bounds script time)."""
KEY_TTL_MARGIN_MS = 86_400_000
"""Keys live this long past the longest duration of the call that last wrote them."""
MAX_SCORE = 2**53
"""Sorted-set scores are doubles: integer scores beyond this lose precision."""
READY_TTL_MS = 60_000
"""Life of the key the readiness check writes (``ping``)."""
STORE_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)
"""What a failing store raises (``RedisClusterException`` is not a ``RedisError``: the
cluster client raises it when no node answers or a slot has no owner)."""

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
    "hit",
    "restore",
)

_STATUS = {
    0: PlaceStatus.UNKNOWN,
    1: PlaceStatus.WAITING,
    2: PlaceStatus.PROMOTED,
    3: PlaceStatus.ACTIVE,
    4: PlaceStatus.FULL,
}


class RoomKeys(NamedTuple):
    """The keys of one room."""

    queue: str
    hb: str
    promoted: str
    active: str
    counters: str
    revoked: str
    revoked_exp: str
    meta: str


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


class _Script:
    """One Lua script: EVALSHA, and EVAL when the server does not know it yet.

    Not redis-py's ``register_script``: after ``NOSCRIPT`` it sends ``SCRIPT LOAD`` to every
    primary of a cluster, so a room on a healthy shard would fail while another shard is down.
    EVAL runs the script on the room's own node only, and caches it there.
    """

    __slots__ = ("client", "sha", "source")

    def __init__(self, client: StoreClient, source: str) -> None:
        self.client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await self.client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.client.eval(self.source, len(keys), *keys, *args)


def load_script_source(name: str) -> str:
    """The text of ``lua/<name>.lua`` shipped in this package."""
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _key_ttl(*durations_ms: int) -> int:
    return max((0, *durations_ms)) + KEY_TTL_MARGIN_MS


class RedisStore:
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
        if client is None:
            if url is None:
                raise ValueError("RedisStore needs a url or a client")
            client = build_client(parse_store_url(url), timeout)
            self._owns_client = True
        else:
            self._owns_client = False
        self._client = client
        self._timeout = timeout
        self._scripts = {name: _Script(client, load_script_source(name)) for name in SCRIPT_NAMES}
        self._cluster = client if isinstance(client, RedisCluster) else None
        self._said_moved = False
        self.sharded = self._cluster is not None
        """True on a Redis Cluster: each room lives on one shard and fails alone, so the
        gatekeeper keeps a circuit breaker per room (``service.CircuitBreaker``)."""
        self._cluster_lock = asyncio.Lock()
        self._cluster_ready = False
        self._clock_offset_ms = 0
        """TESTS ONLY: added to the server's TIME in every script so tests can move time.
        Production never changes it (always 0); see ``_advance_clock_for_tests``."""

    @classmethod
    def from_url(cls, url: str, timeout: float = 0.5) -> RedisStore:
        """A store connected to ``url`` with ``timeout`` seconds per operation."""
        return cls(url, timeout=timeout)

    def __repr__(self) -> str:
        return f"RedisStore({describe(self._client)}, timeout={self._timeout})"

    def _advance_clock_for_tests(self, ms: int) -> None:
        """TESTS ONLY: make this client's scripts see the server clock ``ms`` later.

        All clients standing for replicas in a test must be advanced alike. Production code
        must never call this: replicas would disagree on time.
        """
        self._clock_offset_ms += ms

    async def _connect(self) -> None:
        """A cluster client's first slot map, read by one caller while the others wait.

        redis-py 8.1's async cluster client, hit by many commands at once before it has read
        the slot map, loses most of them (connections closed under one another, "Connection
        closed by server"; 37 of 40 fresh clients failed so, measured here); once initialised
        it handles concurrency, re-initialisations after a failover included.
        """
        if self._cluster_ready or self._cluster is None:
            return
        async with self._cluster_lock:
            if not self._cluster_ready:
                await self._cluster.initialize()
                self._cluster_ready = True

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            await self._connect()
            return await self._scripts[name](keys, args)
        except Exception as exc:
            raise await self._failure(name, exc) from exc

    async def _failure(self, what: str, exc: Exception) -> StoreError:
        """The ``StoreError`` for a failed call (the port promises nothing else).

        Anything else the client raises is a failed call too: redis-py's cluster client can
        let an internal error escape while it recycles connections under a command (seen:
        ``AttributeError: 'NoneType' object has no attribute 'writelines'`` on the room of a
        master that had just died). It is logged, and never reaches a visitor as a 500.
        """
        if not isinstance(exc, STORE_ERRORS):
            log.warning("store %s: the client raised %s: %s", what, type(exc).__name__, exc)
        await self._after_error(exc)
        return StoreError(f"store {what} failed: {type(exc).__name__}: {exc}")

    async def _after_error(self, exc: BaseException) -> None:
        """MOVED/ASK (``MovedError`` is an ``AskError``) on a single-server client: the URL names
        one node of a cluster (said once).

        READONLY: the node we reached is a replica now (a failover demoted it).

        Sentinel connections already turn it into a reconnection to the new master (and the
        retry runs there). A cluster node answers MOVED to writes once it is a replica, but a
        node demoted under an open connection can still say READONLY: re-read the slot map
        now, or every later call would go to the same replica.
        """
        if self._cluster is None and isinstance(exc, AskError) and not self._said_moved:
            self._said_moved = True
            log.error(
                "store %s answers MOVED: it is a node of a Redis Cluster; set store_url to "
                "redis+cluster://host:port,host:port/0 (rooms on other nodes fail until then)",
                describe(self._client),
            )
        if isinstance(exc, ReadOnlyError) and self._cluster is not None:
            try:
                await self._cluster.nodes_manager.initialize()
            except STORE_ERRORS as again:
                log.debug("store: re-reading the cluster's slots failed: %s", again)

    @staticmethod
    def _view(reply: Sequence[Any]) -> QueueView:
        try:
            status, position, qlen, score = (int(x) for x in reply)
            return QueueView(_STATUS[status], position=position, queue_length=qlen, score=score)
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
            (k.queue, k.hb, k.promoted, k.active, k.counters),
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
                _key_ttl(limits.abandon_after_ms, limits.session_ttl_ms, limits.claim_timeout_ms),
            ),
        )
        return self._view(reply)

    async def heartbeat(self, room: str, place_id: str) -> QueueView:
        """See ``waitroom_proxy.ports.Store.heartbeat``."""
        k = room_keys(room)
        reply = await self._run(
            "heartbeat",
            (k.queue, k.hb, k.promoted, k.active),
            (self._clock_offset_ms, place_id, _key_ttl()),
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
        self, room: str, place_ids: Sequence[str], session_ttl_ms: int, min_seq: int = 0
    ) -> int:
        """See ``waitroom_proxy.ports.Store.restore``."""
        k = room_keys(room)
        reply = await self._run(
            "restore",
            (k.active, k.queue, k.promoted, k.counters),
            (
                self._clock_offset_ms,
                session_ttl_ms,
                _key_ttl(session_ttl_ms),
                min(max(0, min_seq), MAX_SCORE),
                *place_ids,
            ),
        )
        return int(reply)

    async def leave(self, room: str, place_id: str, revoke_for_ms: int) -> PlaceStatus:
        """See ``waitroom_proxy.ports.Store.leave``."""
        k = room_keys(room)
        reply = await self._run(
            "leave",
            (k.queue, k.hb, k.promoted, k.active, k.revoked, k.revoked_exp),
            (self._clock_offset_ms, place_id, revoke_for_ms, _key_ttl(revoke_for_ms)),
        )
        return _STATUS.get(int(reply), PlaceStatus.UNKNOWN)

    async def tick(self, room: str, limits: RoomLimits, force: int = 0) -> TickResult:
        """See ``waitroom_proxy.ports.Store.tick``."""
        k = room_keys(room)
        reply = await self._run(
            "tick",
            k,
            (
                self._clock_offset_ms,
                limits.capacity,
                limits.admit_rate,
                limits.abandon_after_ms,
                limits.claim_timeout_ms,
                int(limits.promote),
                max(0, force),
                TICK_LIMIT,
                _key_ttl(limits.abandon_after_ms, limits.session_ttl_ms, limits.claim_timeout_ms),
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
        qlen, active, promoted, admitted, now = (int(x) for x in reply)
        return RoomStats(
            queue_length=qlen,
            active=active,
            promoted=promoted,
            admitted_total=admitted,
            now_ms=now,
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
            await self._connect()
            raw = await self._client.hgetall(k.meta)
        except Exception as exc:
            raise await self._failure("get_meta", exc) from exc
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

    async def hit(self, client: str, limit: int, window_ms: int) -> int:
        """See ``waitroom_proxy.ports.Store.hit``. Key ``wr:{rl:<client>}``: its own slot."""
        key = rate_limit_key(client)
        return int(await self._run("hit", (key,), (self._clock_offset_ms, limit, window_ms)))

    async def ping(self) -> None:
        """See ``waitroom_proxy.ports.Store.ping``: the store must accept a write.

        PING alone answers on a replica (a demoted master says PONG and refuses every write),
        so this writes a key of its own, ``wr:{ready}``, with a short TTL. On a cluster, one
        such key per primary (each with a hash tag that lands on that primary): the store is
        ready when at least one primary accepts writes; rooms on a shard that does not are
        that shard's problem, and their own circuit breakers deal with it.
        """
        try:
            await self._connect()
            if self._cluster is not None:
                await self._ping_cluster(self._cluster)
            else:
                await self._client.set(f"{KEY_PREFIX}:{{ready}}", "1", px=READY_TTL_MS)
        except StoreError:
            raise
        except Exception as exc:
            raise await self._failure("ping", exc) from exc

    async def _ping_cluster(self, cluster: RedisCluster) -> None:
        keys: dict[str, str] = {}
        primaries = {node.name for node in cluster.get_primaries()}
        for i in range(16_384):
            if len(keys) == len(primaries):
                break
            key = f"{KEY_PREFIX}:{{ready-{i}}}"
            owner = cluster.get_node_from_key(key)
            if owner is not None:
                keys.setdefault(owner.name, key)
        names = sorted(keys)
        results = await asyncio.gather(
            *(cluster.set(keys[name], "1", px=READY_TTL_MS) for name in names),
            return_exceptions=True,
        )
        failures: list[str] = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancelled
                failures.append(f"{name}: {await self._failure('ping', result)}")
        if len(failures) == len(keys):
            raise StoreError("no primary accepts writes: " + "; ".join(failures))
        if failures:
            log.warning("store: some cluster primaries refuse writes: %s", "; ".join(failures))

    async def close(self) -> None:
        """Close the connections (only those of a client this store created)."""
        if self._owns_client:
            try:
                await close_client(self._client)
            except STORE_ERRORS as exc:  # closing a dead connection: nothing to do
                log.debug("closing the store connection failed: %s", exc)
