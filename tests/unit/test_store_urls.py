"""Store URLs of every topology (DESIGN §6): parsed once, refused precisely, built into the
right client with one timeout and retry policy, and never shown with a password."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from waitroom_proxy.adapters.redis_clients import build_client
from waitroom_proxy.adapters.redis_store import RedisStore, rate_limit_key
from waitroom_proxy.config import load_settings
from waitroom_proxy.domain.redact import redact_url as mask_url
from waitroom_proxy.domain.store_url import StoreUrlError, parse_store_url
from waitroom_proxy.errors import ConfigError

PASSWORD = "s3cr3t-p4ss"


@pytest.mark.parametrize(
    ("url", "topology", "nodes", "db", "service", "tls"),
    [
        ("redis://cache:6379/2", "single", [("cache", 6379)], 2, None, False),
        ("redis://cache", "single", [("cache", 6379)], 0, None, False),
        ("rediss://:pw@cache:6380/0", "single", [("cache", 6380)], 0, None, True),
        ("valkey://[::1]:7000/1", "single", [("::1", 7000)], 1, None, False),
        ("redis+cluster://a:7000,b:7001/0", "cluster", [("a", 7000), ("b", 7001)], 0, None, False),
        ("redis+cluster://a,b", "cluster", [("a", 6379), ("b", 6379)], 0, None, False),
        ("valkeys+cluster://a:7000", "cluster", [("a", 7000)], 0, None, True),
        (
            "redis+sentinel://s1:26379,s2/mymaster/3",
            "sentinel",
            [("s1", 26379), ("s2", 26379)],
            3,
            "mymaster",
            False,
        ),
        ("rediss+sentinel://s1:5000/svc.name_1", "sentinel", [("s1", 5000)], 0, "svc.name_1", True),
    ],
)
def test_every_topology_parses(
    url: str, topology: str, nodes: list[tuple[str, int]], db: int, service: str | None, tls: bool
) -> None:
    target = parse_store_url(url)
    assert target.topology == topology
    assert list(target.nodes) == nodes
    assert (target.db, target.service, target.tls) == (db, service, tls)
    again = parse_store_url(target.url())  # the canonical form parses to the same target
    assert again == target


def test_unix_socket() -> None:
    target = parse_store_url("unix:///run/redis/redis.sock?db=4")
    assert (target.path, target.db, target.nodes) == ("/run/redis/redis.sock", 4, ())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "redis://cache:6379/0?cluster=true",
            'unknown option "cluster": for a Redis Cluster write',
        ),
        ("redis://cache/0?sentinel=mymaster", 'unknown option "sentinel": for Sentinel write'),
        ("redis://cache/0?socket_timeout=1", "set store_timeout instead"),
        ("redis://cache/0?ssl_cert_reqs=none", "TLS options need rediss://"),
        (
            "rediss://cache/0?ssl_cert_reqs=maybe",
            "ssl_cert_reqs must be none, optional or required",
        ),
        ("redis://a:1,b:2/0", "lists several hosts: use redis+cluster://"),
        ("redis+cluster://a:1,b:2/3", "a Redis Cluster has only database 0, got /3"),
        ("redis+cluster:///0", "must name a host"),
        ("redis+cluster://a:1,a:1/0", "lists the same node twice"),
        ("redis+sentinel://s1:26379", "must name the master's service after the sentinels"),
        ("redis+sentinel://s1:26379/my master/0", 'service "my master"'),
        ("redis+sentinel://s1/m/0/1", "too many path segments"),
        ("redis+sentinel://s1/m/x", 'the database must be a number like 0, got "x"'),
        ("redis+cluster://a:99999/0", 'node "a:99999": the port must be 1-65535'),
        ("redis+cluster://a:x,b:1/0", 'node "a:x": the port must be 1-65535'),
        ("redis://::1:6379/0", "write an IPv6 address in brackets"),
        ("redis://secret@cache/0", "user information without a password"),
        ("redis+mirror://a/0", "must be a redis://"),
        ("http://cache/0", "must be a redis://"),
        ("unix://", "must name a socket path"),
        ("unix:///run/r.sock?timeout=1", "unix:// takes only ?db=N"),
    ],
)
def test_refusals_say_why(url: str, message: str) -> None:
    with pytest.raises(StoreUrlError) as caught:
        parse_store_url(url)
    assert message in str(caught.value)


def test_check_config_refuses_a_url_that_used_to_pass_then_500() -> None:
    """``?cluster=true`` passed validation and then every request failed (TypeError)."""
    with pytest.raises(ConfigError) as caught:
        load_settings(
            None,
            env={"WAITROOM_CAPACITY": "1", "WAITROOM_STORE_URL": "redis://h:7000?cluster=true"},
        )
    assert caught.value.problems == [
        'WAITROOM_STORE_URL: unknown option "cluster": for a Redis Cluster write '
        'redis+cluster://host:port,host:port/0, got "redis://h:7000?cluster=true"'
    ]


def test_refusals_never_show_the_password() -> None:
    for url in (
        f"redis+sentinel://:{PASSWORD}@s1:26379",
        f"redis+cluster://user:{PASSWORD}@a:1/4",
        f"redis+sentinel://s1/m/0?sentinel_password={PASSWORD}&bogus=1",
        f"redis://{PASSWORD}@cache/0",
    ):
        with pytest.raises(ConfigError) as caught:
            load_settings(None, env={"WAITROOM_CAPACITY": "1", "WAITROOM_STORE_URL": url})
        text = "\n".join(caught.value.problems)
        assert PASSWORD not in text and "***" in text, text


def test_tls_files_must_exist(tmp_path: object) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            None,
            env={
                "WAITROOM_CAPACITY": "1",
                "WAITROOM_STORE_URL": "rediss+cluster://a:1/0?ssl_ca_certs=/no/such/ca.pem",
            },
        )
    assert caught.value.problems == [
        'WAITROOM_STORE_URL: ssl_ca_certs: no such file "/no/such/ca.pem"'
    ]


def test_valkey_spellings_become_redis_for_the_client() -> None:
    settings = load_settings(
        None, env={"WAITROOM_CAPACITY": "1", "WAITROOM_STORE_URL": "valkeys+sentinel://s/m/0"}
    )
    assert settings.store_url == "rediss+sentinel://s/m/0"


def test_mask_url_hides_every_password() -> None:
    assert mask_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert mask_url("redis://h:1/0") == "redis://h:1/0"
    assert mask_url("redis+cluster://u:p@ss@a:1,b:2/0") == "redis+cluster://u:***@a:1,b:2/0"
    assert mask_url("redis+sentinel://s/m/0?sentinel_password=x&y=1") == (
        "redis+sentinel://s/m/0?sentinel_password=***&y=1"
    )
    assert mask_url("nats://u:pw@a:4222,nats://b:4222") == "nats://u:***@a:4222,nats://b:4222"


def test_one_redactor_for_every_url_and_list() -> None:
    # A comma inside a password does not split the URL (it used to leave "pa" in the clear).
    assert mask_url("redis://u:pa,ss@h:1/0") == "redis://u:***@h:1/0"
    problems = []
    try:
        load_settings(
            None, env={"WAITROOM_CAPACITY": "1", "WAITROOM_STORE_URL": "http://u:pa,ss@c"}
        )
    except ConfigError as exc:
        problems = exc.problems
    assert problems and not any("pa" in p.split("got", 1)[1] for p in problems), problems
    # Every URL of a list, whichever carries the password; a token alone is hidden whole.
    assert mask_url("nats://a:1, nats://u:pw@b:2") == "nats://a:1, nats://u:***@b:2"
    assert mask_url("nats://s3cret@a:1,tls://b:2") == "nats://***@a:1,tls://b:2"
    assert parse_store_url("rediss://:p%40ss@h:1/0?ssl_cert_reqs=none").display() == (
        "rediss://:***@h:1/0?ssl_cert_reqs=none"
    )


@pytest.mark.parametrize("url", ["redis://h\n:1/0", "redis+sentinel://s:1/mymaster\n/0"])
def test_a_newline_is_not_part_of_a_host_or_service(url: str) -> None:
    with pytest.raises(StoreUrlError):
        parse_store_url(url)


# -- clients ---------------------------------------------------------------------------------

URLS = {
    "single": f"redis://:{PASSWORD}@cache.example:6380/2",
    "tls": f"rediss://user:{PASSWORD}@cache.example:6380/0?ssl_cert_reqs=none",
    "unix": f"unix://:{PASSWORD}@/run/redis.sock?db=1",
    "cluster": f"redis+cluster://:{PASSWORD}@10.0.0.1:7000,10.0.0.2:7001/0",
    "sentinel": (
        f"redis+sentinel://:{PASSWORD}@10.0.0.1:26379,10.0.0.2:26380/mymaster/3"
        f"?sentinel_password={PASSWORD}"
    ),
}


def _connection_kwargs(client: object) -> dict[str, object]:
    if isinstance(client, RedisCluster):
        return dict(client.nodes_manager.connection_kwargs)
    assert isinstance(client, Redis)
    return dict(client.connection_pool.connection_kwargs)


@pytest.mark.parametrize("kind", list(URLS))
def test_every_client_gets_the_same_timeouts_and_retry(kind: str) -> None:
    client = build_client(parse_store_url(URLS[kind]), timeout=0.3)
    kwargs = _connection_kwargs(client)
    # redis-py leaves the connect timeout out for Unix sockets; it then uses socket_timeout.
    connect = kwargs.get("socket_connect_timeout", kwargs["socket_timeout"])
    assert kwargs["socket_timeout"] == 0.3 and connect == 0.3
    assert kwargs["password"] == PASSWORD
    retry = client.retry if isinstance(client, RedisCluster) else kwargs["retry"]
    assert retry.get_retries() == 1  # type: ignore[union-attr]
    if isinstance(client, RedisCluster):
        # The cluster retries after a connection error (re-reading the slots), never after a
        # timeout or CLUSTERDOWN; its per-node pools must not cap a burst at 100 connections.
        assert (RedisConnectionError,) == type(client).ERRORS_ALLOW_RETRY
        assert client.nodes_manager.connection_kwargs["max_connections"] >= 10_000
        assert client.nodes_manager.require_full_coverage is False
    else:
        supported = retry._supported_errors  # type: ignore[union-attr]
        assert RedisConnectionError in supported and RedisTimeoutError not in supported
    if kind == "sentinel":
        pool = client.connection_pool  # type: ignore[union-attr]
        assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
        assert kwargs["db"] == 3
        for sentinel in pool.sentinel_manager.sentinels:
            skw = sentinel.connection_pool.connection_kwargs
            assert skw["socket_timeout"] == 0.3 and skw["socket_connect_timeout"] == 0.3
            assert skw["password"] == PASSWORD
            assert skw["retry"].get_retries() == 0  # a dead sentinel: go to the next one
    if kind == "tls":
        assert kwargs["ssl_cert_reqs"] == "none"


@pytest.mark.parametrize("kind", list(URLS))
async def test_repr_works_for_every_client_and_never_shows_a_password(kind: str) -> None:
    store = RedisStore(URLS[kind], timeout=0.3)
    try:
        text = repr(store)
    finally:
        await store.close()
    assert PASSWORD not in text
    expected = {
        "single": "cache.example:6380/2",
        "tls": "cache.example:6380",
        "unix": "/run/redis.sock/1",
        "cluster": "cluster 10.0.0.1:7000,10.0.0.2:7001",
        "sentinel": "sentinel 10.0.0.1:26379,10.0.0.2:26380/mymaster",
    }[kind]
    assert text == f"RedisStore({expected}, timeout=0.3)"


def test_rate_limit_keys_spread_over_the_slots() -> None:
    """Each client's key has its own hash tag: 300 clients land on every third of the slots
    (a 3-master cluster), not on the shard of one room."""
    thirds = {
        key_slot(rate_limit_key(f"198.51.100.{i}").encode()) * 3 // 16_384 for i in range(300)
    }
    assert thirds == {0, 1, 2}
    assert rate_limit_key("203.0.113.9") == "wr:{rl:203.0.113.9}"
