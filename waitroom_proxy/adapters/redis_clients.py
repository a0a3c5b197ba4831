"""The redis-py client for each store topology, and what every call through it needs.

``build_client(target, timeout)`` turns a parsed store URL (``domain.store_url``) into:

- one server: ``redis.asyncio.Redis`` (TCP, TLS or a Unix socket);
- a Redis/Valkey Cluster: ``WaitroomCluster`` (a ``RedisCluster``), which follows MOVED/ASK and
  re-reads the slot map after a connection error (a failover);
- Sentinel: ``Sentinel(...).master_for(service)``, whose connections ask the sentinels for the
  master each time they (re)connect; a ``READONLY`` reply (a demoted master) drops the
  connection and is retried once on the master the sentinels name now.

The policy, the same everywhere: ``timeout`` seconds to connect and for each answer; one
immediate retry for a broken connection only (it re-resolves the master or the slots), never
for a timeout (a slow store must not hold a request twice as long). Every script is safe to run
twice. No client-side cap on connections (the single-server pool has none either); the
timeout bounds each call.

``StoreConnection`` wraps the client for ``RedisStore``: the cluster's first slot map read once,
every failure turned into ``StoreError`` (and READONLY / MOVED acted on), the readiness write,
closing every connection, and ``describe()``, which names where the client points, never with
a password. ``Script`` runs one Lua script on any of these clients.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from waitroom_proxy.domain.store_url import StoreTarget
from waitroom_proxy.errors import StoreError

__all__ = [
    "STORE_ERRORS",
    "Script",
    "StoreClient",
    "StoreConnection",
    "WaitroomCluster",
    "build_client",
    "close_client",
    "describe",
]

log = logging.getLogger("waitroom_proxy.adapters.redis_store")

READY_KEY = "wr:{ready}"
READY_TTL_MS = 60_000
"""Life of the key the readiness check writes."""
STORE_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)
"""What a failing store raises (``RedisClusterException`` is not a ``RedisError``: the
cluster client raises it when no node answers or a slot has no owner)."""

StoreClient = Redis | RedisCluster
"""What ``RedisStore`` talks to: a plain or Sentinel-managed ``Redis``, or a cluster."""

CLUSTER_MAX_CONNECTIONS = 65_536
"""Per node. redis-py's default (100) raises MaxConnectionsError under a burst instead of
queueing; the single-server pool is unbounded, so the cluster is made (almost) the same."""


def _retry() -> Retry:
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


class WaitroomCluster(RedisCluster):
    """``RedisCluster`` whose failures stay on the shard that failed.

    - A command is retried only after a connection error (after re-reading the slot map), as
      the single-server client does; never after a timeout or CLUSTERDOWN: those fall to the
      room's circuit breaker instead of doubling the wait.
    - redis-py calls ``aclose()`` on CLUSTERDOWN (and on every 5th MOVED) to force a new slot
      map, which drops every connection of every node, in-flight commands of the healthy
      shards included. A master restarting empty answers CLUSTERDOWN until it has rejoined:
      measured here with 60 concurrent callers, that cost the rooms of the two healthy masters
      ~5 % of their calls ("Connection closed", and AttributeError from a writer closed under
      a connection being opened). Here ``aclose()`` only asks for a new slot map; the
      connections are recycled lazily by redis-py's own mark-for-reconnect, and
      ``close_client`` closes them for good.
    """

    ERRORS_ALLOW_RETRY = (RedisConnectionError,)  # type: ignore[assignment]

    async def aclose(self) -> None:
        self._initialize = True


def _tls(target: StoreTarget) -> dict[str, Any]:
    if not target.tls:
        return {}
    return {"ssl": True, **dict(target.tls_options)}


def build_client(target: StoreTarget, timeout: float) -> StoreClient:
    """A client for ``target`` (see the module docstring); it connects lazily."""
    common: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "health_check_interval": 0,
        "username": target.username,
        "password": target.password,
    }
    if target.topology == "cluster":
        return WaitroomCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            # A shard without its master must not stop the client for the rooms elsewhere.
            require_full_coverage=False,
            retry=_retry(),
            max_connections=CLUSTER_MAX_CONNECTIONS,
            **common,
            **_tls(target),
        )
    if target.topology == "sentinel":
        assert target.service is not None  # the parser requires it
        sentinel_kwargs: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "health_check_interval": 0,
            # Ask each sentinel once, then the next one: redis-py's default would retry a dead
            # sentinel three times with seconds of backoff before trying another.
            "retry": Retry(NoBackoff(), 0),
            "username": target.sentinel_username,
            "password": target.sentinel_password,
            **_tls(target),
        }
        sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        master: Redis = sentinel.master_for(
            target.service, db=target.db, retry=_retry(), **common, **_tls(target)
        )
        return master
    if target.path is not None:
        return Redis(unix_socket_path=target.path, db=target.db, retry=_retry(), **common)
    host, port = target.nodes[0]
    return Redis(host=host, port=port, db=target.db, retry=_retry(), **common, **_tls(target))


async def close_client(client: StoreClient) -> None:
    """Close every connection the client holds, whatever its topology.

    ``aclose()`` alone leaves some open: a cluster client closes nothing while it means to
    re-read the slot map (after any connection error), and a Sentinel-managed client leaves
    its connections to the sentinels to the ``Sentinel`` object that made it.
    """
    if isinstance(client, RedisCluster):
        await RedisCluster.aclose(client)
        await client.nodes_manager.aclose()
        await client.nodes_manager.aclose("startup_nodes")
        return
    await client.aclose()
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        await pool.sentinel_manager.aclose()


def describe(client: Any) -> str:
    """Where ``client`` points: ``host:port``, ``/socket``, ``cluster h:p,h:p`` or
    ``sentinel h:p,h:p/service``. Never a password; works for any redis-py async client."""
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes() or list(client.nodes_manager.startup_nodes.values())
        return "cluster " + ",".join(sorted(node.name for node in nodes))
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        manager = pool.sentinel_manager
        sentinels = ",".join(
            f"{s.connection_pool.connection_kwargs.get('host')}:"
            f"{s.connection_pool.connection_kwargs.get('port')}"
            for s in manager.sentinels
        )
        return f"sentinel {sentinels}/{pool.service_name}"
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
    db = kwargs.get("db") or 0
    return f"{where}/{db}" if db else str(where)


class Script:
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


class StoreConnection:
    """A store client and what every call through it needs (see the module docstring).

    Args:
        client: Any redis-py async client (plain, Sentinel-managed, cluster, fakeredis).
        owns: Close the client in ``close()`` (False for a client the caller passed in).
    """

    def __init__(self, client: StoreClient, *, owns: bool) -> None:
        self.client = client
        self.owns = owns
        self.cluster = client if isinstance(client, RedisCluster) else None
        self._lock = asyncio.Lock()
        self._ready = False
        self._said_moved = False

    @property
    def sharded(self) -> bool:
        """True on a cluster: each room lives on one shard and fails alone."""
        return self.cluster is not None

    def describe(self) -> str:
        return describe(self.client)

    async def connect(self) -> None:
        """A cluster client's first slot map, read by one caller while the others wait.

        redis-py 8.1's async cluster client, hit by many commands at once before it has read
        the slot map, loses most of them (connections closed under one another, "Connection
        closed by server"; 37 of 40 fresh clients failed so, measured here); once initialised
        it handles concurrency, re-initialisations after a failover included.
        """
        if self._ready or self.cluster is None:
            return
        async with self._lock:
            if not self._ready:
                await self.cluster.initialize()
                self._ready = True

    async def failure(self, what: str, exc: Exception) -> StoreError:
        """The ``StoreError`` for a failed call (the store port promises nothing else).

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
        """MOVED/ASK (``MovedError`` is an ``AskError``) on a single-server client: the URL
        names one node of a cluster (said once).

        READONLY: the node reached is a replica now (a failover demoted it). Sentinel
        connections already turn it into a reconnection to the new master (and the retry
        runs there). A cluster node answers MOVED to writes once it is a replica, but a node
        demoted under an open connection can still say READONLY: re-read the slot map now, or
        every later call would go to the same replica.
        """
        if self.cluster is None and isinstance(exc, AskError) and not self._said_moved:
            self._said_moved = True
            log.error(
                "store %s answers MOVED: it is a node of a Redis Cluster; set store_url to "
                "redis+cluster://host:port,host:port/0 (rooms on other nodes fail until then)",
                self.describe(),
            )
        if isinstance(exc, ReadOnlyError) and self.cluster is not None:
            try:
                await self.cluster.nodes_manager.initialize()
            except STORE_ERRORS as again:
                log.debug("store: re-reading the cluster's slots failed: %s", again)

    async def check_writes(self) -> None:
        """Raise ``StoreError`` unless the store accepts a write.

        PING alone answers on a replica (a demoted master says PONG and refuses every write),
        so this writes a key of its own, ``wr:{ready}``, with a short TTL. On a cluster, one
        such key per primary (each with a hash tag that lands on that primary): the store is
        ready when at least one primary accepts writes; rooms on a shard that does not are
        that shard's problem, and their own circuit breakers deal with it.
        """
        try:
            await self.connect()
            if self.cluster is not None:
                await self._check_cluster(self.cluster)
            else:
                await self.client.set(READY_KEY, "1", px=READY_TTL_MS)
        except StoreError:
            raise
        except Exception as exc:
            raise await self.failure("ping", exc) from exc

    async def _check_cluster(self, cluster: RedisCluster) -> None:
        keys: dict[str, str] = {}
        primaries = {node.name for node in cluster.get_primaries()}
        for i in range(16_384):
            if len(keys) == len(primaries):
                break
            key = f"wr:{{ready-{i}}}"
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
                failures.append(f"{name}: {await self.failure('ping', result)}")
        if len(failures) == len(keys):
            raise StoreError("no primary accepts writes: " + "; ".join(failures))
        if failures:
            log.warning("store: some cluster primaries refuse writes: %s", "; ".join(failures))

    async def close(self) -> None:
        """Close the connections (only those of a client this store created)."""
        if not self.owns:
            return
        try:
            await close_client(self.client)
        except STORE_ERRORS as exc:  # closing a dead connection: nothing to do
            log.debug("closing the store connection failed: %s", exc)
