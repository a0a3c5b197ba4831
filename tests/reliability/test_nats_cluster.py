"""A 3-node NATS JetStream cluster loses the node the publisher is connected to, then the
stream's leader, while events flow (DESIGN §7).

The real ``NatsPublisher`` gets the three URLs (``nats_url`` as a list) and
``nats_stream_replicas = 3``, creates the streams with three replicas, and publishes a steady
stream of events. Mid-way the node it is connected to is killed (SIGKILL); once that node is
back and caught up, the node leading the ``WAITROOM`` stream is killed too. Promised and
checked: every event is in the stream exactly once (``Nats-Msg-Id`` de-duplicates what was
resent after a lost ack) and nothing was dropped. Measured: how long the publisher was
without a server after each kill, and the deepest its buffer got.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext, api

from tests.fixtures.nats_cluster import NatsCluster
from tests.reliability.rig import report
from waitroom_proxy.adapters.nats_events import STREAM, NatsPublisher
from waitroom_proxy.domain import events as ev

ROOM = "natscluster"
RATE = 400  # events per second
DURATION = 7.0


async def _retry(what: Any, timeout: float = 20.0) -> Any:
    """Await ``what()`` until it answers (the observer's node may be the one killed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await what()
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _leader(js: JetStreamContext) -> str:
    info = await _retry(lambda: js.stream_info(STREAM))
    assert info.cluster is not None and info.cluster.leader
    return str(info.cluster.leader)


async def _all_current(js: JetStreamContext) -> bool:
    info = await js.stream_info(STREAM)
    replicas = (info.cluster.replicas or []) if info.cluster else []
    return len(replicas) == 2 and all(r.current for r in replicas)


async def test_connected_node_and_stream_leader_killed_under_load(
    nats_cluster: NatsCluster,
) -> None:
    pub = NatsPublisher(
        nats_cluster.url,
        source="waitroom-proxy/nats-cluster",
        stream_replicas=3,
        backoff_base=0.02,
        backoff_max=0.5,
    )
    observer = await nats.connect(
        servers=nats_cluster.url.split(","), connect_timeout=2, max_reconnect_attempts=-1
    )
    js = observer.jetstream(timeout=2)
    sent: list[str] = []
    peak = 0
    stop = asyncio.Event()

    async def produce() -> None:
        nonlocal peak
        i = 0
        while not stop.is_set():
            for _ in range(RATE // 20):
                e = ev.new_event(ev.POSITION_ENQUEUED, ROOM, {"i": i}, time.time())
                sent.append(e.id)
                pub.publish(e)
                i += 1
            peak = max(peak, pub.buffered)
            await asyncio.sleep(0.05)

    await pub.start()
    try:
        pub.publish(ev.new_event(ev.QUEUE_RESUMED, ROOM, {}, time.time()))
        async with asyncio.timeout(20):
            assert await pub.flush()
        config = (await js.stream_info(STREAM)).config
        assert config.num_replicas == 3
        producer = asyncio.create_task(produce())
        t0 = time.monotonic()
        await asyncio.sleep(1.5)
        assert pub._nc is not None and pub._nc.connected_url is not None
        connected = nats_cluster.index_of_port(int(pub._nc.connected_url.port or 0))
        t_kill_connected = time.monotonic()
        nats_cluster.nodes[connected].kill()
        while not pub.connected:
            await asyncio.sleep(0.005)
        reconnect_s = time.monotonic() - t_kill_connected
        await asyncio.sleep(1.0)
        nats_cluster.nodes[connected].start()
        await asyncio.to_thread(nats_cluster.wait_healthy)
        deadline = time.monotonic() + 20
        while not await _retry(lambda: _all_current(js)):
            assert time.monotonic() < deadline, "the restarted node never caught up"
            await asyncio.sleep(0.1)
        leader = nats_cluster.index_of_name(await _leader(js))
        t_kill_leader = time.monotonic()
        nats_cluster.nodes[leader].kill()
        new_leader = await _leader(js)
        election_s = time.monotonic() - t_kill_leader
        await asyncio.sleep(max(0.0, DURATION - (time.monotonic() - t0)))
        stop.set()
        await producer
        async with asyncio.timeout(30):
            assert await pub.flush(), "events left in the buffer"
        counters = pub.counters()
    finally:
        stop.set()
        await pub.close()

    try:
        stored = await _read_ids(js, f"waitroom.{ROOM}.position.enqueued", len(sent))
    finally:
        with contextlib.suppress(Exception):
            await observer.close()
    report(
        "nats cluster: connected node, then stream leader killed",
        events=len(sent),
        stored=len(stored),
        unique_stored=len(set(stored)),
        dropped=counters["dropped"],
        retries=counters["retries"],
        reconnect_after_kill_s=reconnect_s,
        new_leader_after_s=election_s,
        new_leader=new_leader,
        buffer_peak=peak,
    )
    assert counters["dropped"] == 0
    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert set(stored) == set(sent), f"{len(set(sent) - set(stored))} event(s) lost"


async def _read_ids(js: JetStreamContext, subject: str, expected: int) -> list[str]:
    """Every event id stored on ``subject`` (a pull consumer, in batches)."""
    psub = await _retry(
        lambda: js.pull_subscribe(
            subject, stream=STREAM, config=api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
        )
    )
    ids: list[str] = []
    try:
        while True:
            try:
                batch = await psub.fetch(500, timeout=2)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            for msg in batch:
                ids.append(json.loads(msg.data)["id"])
                await msg.ack()
            if len(ids) >= expected:
                # One more fetch: anything beyond the expected count is a duplicate to see.
                continue
    finally:
        await psub.unsubscribe()
    return ids
