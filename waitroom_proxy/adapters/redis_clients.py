"""The redis-py client for each store topology, all with one timeout and retry policy.

``build_client(target, timeout)`` turns a parsed store URL (``domain.store_url``) into:

- one server: ``redis.asyncio.Redis`` (TCP, TLS or a Unix socket);
- a Redis/Valkey Cluster: ``redis.asyncio.cluster.RedisCluster``, which follows MOVED/ASK and
  re-reads the slot map after a connection error (a failover);
- Sentinel: ``Sentinel(...).master_for(service)``, whose connections ask the sentinels for the
  master each time they (re)connect; a ``READONLY`` reply (a demoted master) drops the
  connection and is retried once on the master the sentinels name now.

The policy, the same everywhere: ``timeout`` seconds to connect and for each answer; one
immediate retry for a broken connection only (it re-resolves the master or the slots), never
for a timeout (a slow store must not hold a request twice as long). Every script is safe to run
twice. No client-side cap on connections (the single-server pool has none either); the
timeout bounds each call.

``describe(client)`` names where a client points, for reprs and logs, never with a password.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from waitroom_proxy.domain.store_url import StoreTarget

__all__ = ["StoreClient", "WaitroomCluster", "build_client", "close_client", "describe"]

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
