"""Each store topology on real servers (DESIGN §6): a store that only reads is not ready, a
cluster's failures stay with the rooms of the failing shard, rate-limit keys spread over the
shards, and a Sentinel client follows a failover (READONLY from the demoted master included).

The longer failure scenarios under load, with their measurements, are in
``tests/reliability/test_redis_cluster.py`` and ``test_sentinel_failover.py``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from redis.crc import key_slot

from tests.fixtures.redis_cluster import RedisClusterServers
from tests.fixtures.redis_procs import RedisProc, redis_binary, wait_until
from tests.fixtures.redis_sentinel import SERVICE, SentinelSet
from tests.fixtures.redis_server import free_port
from tests.reliability.rig import JSON, client, proxy_rig, report
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.domain.policy import FailMode, RoomPolicy
from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import PlaceStatus, RoomLimits

pytestmark = pytest.mark.redis

LIM = RoomLimits(capacity=100, session_ttl_ms=60_000)


def room_policies(names: list[str], capacity: int = 1) -> tuple[RoomPolicy, ...]:
    return tuple(
        RoomPolicy(name=n, capacity=capacity, match=(f"*/{n}/",), fail_mode=FailMode.CLOSED)
        for n in names
    )


async def newcomer(url: str, room: str, **headers: str) -> httpx.Response:
    async with client(url) as c:
        return await c.get(f"/{room}/page", headers={**JSON, **headers})


async def test_readyz_refuses_a_store_that_answers_ping_but_refuses_writes(tmp_path: Path) -> None:
    """A demoted master answers PING and refuses every write: /readyz must say so."""
    proc = RedisProc(redis_binary(), tmp_path / "r", "read-only")
    proc.start()
    try:
        store = RedisStore(f"redis://127.0.0.1:{proc.port}/0", timeout=0.5)
        async with proxy_rig(room_policies(["solo"]), store=store) as rig:
            async with client(rig.url) as c:
                assert (await c.get("/_waitroom/readyz")).status_code == 200
                with proc.client() as raw:
                    raw.execute_command("REPLICAOF", "127.0.0.1", free_port())  # nobody there
                    assert raw.ping()
                r = await c.get("/_waitroom/readyz")
                assert r.status_code == 503, r.text
                with proc.client() as raw:
                    raw.execute_command("REPLICAOF", "NO", "ONE")
                assert (await c.get("/_waitroom/readyz")).status_code == 200
        with proc.client() as raw:  # the check leaves one small key of its own, with a TTL
            assert raw.keys("wr:{ready}*") == ["wr:{ready}"]
            assert 0 < raw.pttl("wr:{ready}") <= 60_000
    finally:
        proc.stop()


async def test_a_moved_storm_stays_with_its_room(redis_cluster: RedisClusterServers) -> None:
    """One master is told that another owns the slot of a room, while that one still thinks
    the first does: every call for the room bounces (MOVED) until redis-py gives up ("TTL
    exhausted"). Only that room fails, fast; the rooms of every shard, the bouncing pair's own
    other rooms included, go on; once the slot map is right again the room is back."""
    rooms = redis_cluster.rooms_per_master()
    looping = rooms[0]
    store = RedisStore(redis_cluster.url, timeout=0.5)
    a, b = redis_cluster.nodes[0], redis_cluster.nodes[1]
    slot = key_slot(f"wr:{{{looping}}}:queue".encode())
    with a.client() as ca, b.client() as cb:
        a_id, b_id = ca.execute_command("CLUSTER", "MYID"), cb.execute_command("CLUSTER", "MYID")
        ca.execute_command("CLUSTER", "SETSLOT", slot, "NODE", b_id)  # the room has no keys yet
    try:
        async with proxy_rig(
            room_policies(rooms), store=store, server={"client_rate_limit": 0}
        ) as rig:
            answers: dict[str, list[tuple[int, str]]] = {name: [] for name in rooms}
            for _ in range(6):
                for name in rooms:
                    r = await newcomer(rig.url, name)
                    answers[name].append((r.status_code, r.json().get("status", "passed")))
            assert all(code == 503 for code, _ in answers[looping]), answers[looping]
            assert rig.gate.store.breaker_for(looping).is_open
            for name in rooms[1:]:
                assert answers[name][0] == (200, "passed")
                assert all(a == (200, "waiting") for a in answers[name][1:]), answers[name]
                assert not rig.gate.store.breaker_for(name).is_open
            with a.client() as ca:
                ca.execute_command("CLUSTER", "SETSLOT", slot, "NODE", a_id)
            rig.gate.store.breaker_for(looping).open_until = 0.0
            deadline = time.monotonic() + 10
            while (r := await newcomer(rig.url, looping)).status_code != 200:
                assert time.monotonic() < deadline, "the room never came back"
                await asyncio.sleep(0.2)
            assert r.json().get("status", "passed") == "passed"
    finally:
        with a.client() as ca:
            ca.execute_command("CLUSTER", "SETSLOT", slot, "NODE", a_id)


async def test_a_plain_url_on_a_cluster_node_says_what_to_write(
    redis_cluster: RedisClusterServers, caplog: pytest.LogCaptureFixture
) -> None:
    """redis:// names one node of a cluster: the rooms whose slots are elsewhere get MOVED. The
    store says, once, that the URL must be redis+cluster://."""
    home, elsewhere = redis_cluster.rooms_per_master()[:2]
    store = RedisStore(f"redis://127.0.0.1:{redis_cluster.nodes[0].port}/0", timeout=0.5)
    try:
        assert (await store.arrive(home, "a", LIM)).status is PlaceStatus.ACTIVE
        for _ in range(3):
            with pytest.raises(StoreError, match="MovedError"):
                await store.arrive(elsewhere, "a", LIM)
    finally:
        await store.close()
    said = [r.getMessage() for r in caplog.records if "answers MOVED" in r.getMessage()]
    assert len(said) == 1 and "redis+cluster://host:port,host:port/0" in said[0]


async def test_rooms_on_every_shard_and_rate_limit_keys_spread(
    redis_cluster: RedisClusterServers,
) -> None:
    rooms = redis_cluster.rooms_per_master()
    store = RedisStore(redis_cluster.url, timeout=1.0)
    server = {"client_rate_limit": 1000, "trusted_proxies": ("127.0.0.1/32",)}
    async with proxy_rig(room_policies(rooms), store=store, server=server) as rig:
        for i in range(60):
            room = rooms[i % 3]
            r = await newcomer(rig.url, room, **{"x-forwarded-for": f"198.51.100.{i}"})
            assert r.status_code == 200
            assert r.json().get("status", "passed") == ("passed" if i < 3 else "waiting")
        for room in rooms:
            stats = await store.stats(room)
            assert (stats.active, stats.queue_length) == (1, 19)
    per_master = []
    for node in redis_cluster.nodes:
        with node.client() as c:
            per_master.append(len(c.keys("wr:{rl:*}")))
    report("cluster rate-limit keys per master", counts=per_master)
    assert sum(per_master) == 60 and min(per_master) > 0, per_master
    for i, room in enumerate(rooms):  # each room's keys on its own master, nowhere else
        for j, node in enumerate(redis_cluster.nodes):
            with node.client() as c:
                assert bool(c.keys(f"wr:{{{room}}}:*")) == (i == j)


async def test_cluster_readiness_needs_one_primary_that_writes(
    redis_cluster: RedisClusterServers,
) -> None:
    store = RedisStore(redis_cluster.url, timeout=0.5)
    try:
        await store.ping()
        redis_cluster.nodes[2].kill()
        await store.ping()  # two primaries accept writes: ready (that shard's rooms fail alone)
        redis_cluster.nodes[0].kill()
        redis_cluster.nodes[1].kill()
        with pytest.raises(StoreError):
            await store.ping()
    finally:
        await store.close()


def _failover(sentinels: SentinelSet) -> None:
    with sentinels.sentinels[0].client() as c:
        c.execute_command("SENTINEL", "FAILOVER", SERVICE)


async def test_sentinel_follows_a_failover_and_readonly_is_not_forever(
    redis_sentinel: SentinelSet,
) -> None:
    """A graceful failover demotes the master while it keeps running: connections to it get
    READONLY (or are closed). The Sentinel client asks the sentinels again and goes on; a
    plain client left on the old address fails (every write READONLY), and its readiness check
    says so instead of PONG."""
    room = "sentinel-room"
    store = RedisStore(redis_sentinel.url, timeout=0.5)
    old = redis_sentinel.master()
    stale = RedisStore(f"redis://127.0.0.1:{old.port}/0", timeout=0.5)
    try:
        assert (await store.arrive(room, "before", LIM)).status is PlaceStatus.ACTIVE
        await stale.ping()
        new = redis_sentinel.replica()
        await asyncio.to_thread(_failover, redis_sentinel)
        t0 = time.monotonic()
        await asyncio.to_thread(redis_sentinel.wait_master_is, new)
        failures, first_ok = 0, None
        for i in range(400):
            try:
                view = await store.arrive(room, f"after-{i}", LIM)
            except StoreError:
                failures += 1
                await asyncio.sleep(0.05)
                continue
            assert view.status is PlaceStatus.ACTIVE
            if first_ok is None:
                first_ok = time.monotonic() - t0
            if i >= 30:
                break
        assert first_ok is not None, "never wrote to the new master"
        tail = [await store.arrive(room, f"tail-{i}", LIM) for i in range(20)]
        assert all(v.status is PlaceStatus.ACTIVE for v in tail)
        assert (await store.stats(room)).active >= 1 + 20  # "before" was replicated and kept
        await store.ping()
        await asyncio.to_thread(
            wait_until, lambda: redis_sentinel.role(old) == "slave", 20, "the old master demoted"
        )
        with pytest.raises(StoreError, match="ReadOnly"):
            await stale.arrive(room, "stale", LIM)
        with pytest.raises(StoreError, match="ReadOnly"):
            await stale.ping()
        report("sentinel graceful failover", failed_calls=failures, first_write_after_s=first_ok)
    finally:
        await store.close()
        await stale.close()
