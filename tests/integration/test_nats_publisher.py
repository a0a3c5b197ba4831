"""NatsPublisher against a real nats-server with JetStream: order, subjects, deduplication,
resends, buffering through outages.

Every test uses its own room name, so tests can share the session's server and stream.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from typing import Any

import nats
import nats.js.errors
import pytest
from nats.js import JetStreamContext

from tests.integration.nats_helpers import count, flushed, make, new_room, read, wait_for
from waitroom_proxy.adapters.nats_events import NatsPublisher
from waitroom_proxy.domain import events as ev
from waitroom_proxy.ports import Event, EventPublisher

# -- publishing ------------------------------------------------------------------------------


async def test_visitor_journey_is_stored_in_order_as_cloudevents(
    publisher: NatsPublisher, js: JetStreamContext
) -> None:
    assert isinstance(publisher, EventPublisher)
    room = new_room()
    journey = [
        make(ev.POSITION_ENQUEUED, room, place="p1", position=3),
        make(ev.POSITION_ADMITTED, room, place="p1", waited_s=12.5),
        make(ev.SESSION_STARTED, room, place="p1"),
        make(ev.SESSION_ENDED, room, place="p1", reason="left"),
    ]
    for e in journey:
        publisher.publish(e)
    await flushed(publisher)

    msgs = await read(js, f"waitroom.{room}.>")
    assert [m.subject for m in msgs] == [
        f"waitroom.{room}.position.enqueued",
        f"waitroom.{room}.position.admitted",
        f"waitroom.{room}.session.started",
        f"waitroom.{room}.session.ended",
    ]
    for msg, e in zip(msgs, journey, strict=True):
        doc = json.loads(msg.data)
        assert doc == {
            "specversion": "1.0",
            "id": e.id,
            "type": f"io.waitroom.{e.type}",
            "source": "waitroom-proxy/test-a",
            "time": ev.rfc3339(e.time),
            "subject": room,
            "datacontenttype": "application/json",
            "data": e.data,
        }
        assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == e.id
    assert publisher.published >= 4
    assert publisher.dropped == 0 and publisher.buffered == 0


async def test_system_events_go_to_the_system_subject(
    publisher: NatsPublisher, js: JetStreamContext
) -> None:
    e = make(ev.SYSTEM_REPLICA_STARTED, None, replica=uuid.uuid4().hex)
    publisher.publish(e)
    await flushed(publisher)
    msgs = await read(js, "waitroom.system.replica_started")
    docs = [json.loads(m.data) for m in msgs]
    (doc,) = [d for d in docs if d["id"] == e.id]
    assert "subject" not in doc
    assert doc["type"] == "io.waitroom.system.replica_started"


async def test_same_event_twice_is_stored_once(
    publisher: NatsPublisher, js: JetStreamContext, nats_url: str
) -> None:
    room = new_room()
    e = make(ev.POSITION_LEFT, room, place="p1")
    publisher.publish(e)
    publisher.publish(e)
    await flushed(publisher)
    # Another replica (or a restart) sending it again within the duplicate window.
    other = NatsPublisher(nats_url, source="waitroom-proxy/test-b")
    await other.start()
    other.publish(e)
    await flushed(other)
    await other.close()
    assert other.published == 1  # acknowledged (as a duplicate)...
    assert await count(js, f"waitroom.{room}.>") == 1  # ...and stored once


async def test_lost_acks_are_resent_without_duplicates(
    nats_url: str, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stores the events but their acks never arrive: the publisher times out,
    resends, and the stream still holds each event once."""
    real = JetStreamContext.publish_async
    lost = {"left": 10}

    async def lossy(self: JetStreamContext, *args: Any, **kwargs: Any) -> Any:
        fut = await real(self, *args, **kwargs)  # sent for real
        if lost["left"] > 0:
            lost["left"] -= 1
            fut.cancel()  # its ack is ignored...
            return asyncio.get_running_loop().create_future()  # ...and never comes
        return fut

    monkeypatch.setattr(JetStreamContext, "publish_async", lossy)
    pub = NatsPublisher(nats_url, source="waitroom-proxy/test-lossy", ack_timeout=0.3)
    await pub.start()
    room = new_room()
    sent = [make(ev.POSITION_ENQUEUED, room, i=i) for i in range(50)]
    for e in sent:
        pub.publish(e)
    await flushed(pub)
    await pub.close()

    assert lost["left"] == 0
    assert pub.retries >= 1
    assert pub.published == 50 and pub.dropped == 0
    msgs = await read(js, f"waitroom.{room}.>")
    assert [json.loads(m.data)["id"] for m in msgs] == [e.id for e in sent]


async def test_close_delivers_what_is_buffered(nats_url: str, js: JetStreamContext) -> None:
    pub = NatsPublisher(nats_url, source="waitroom-proxy/test-close")
    await pub.start()
    await wait_for(lambda: pub.connected, 10)
    room = new_room()
    for i in range(500):
        pub.publish(make(ev.SESSION_RENEWED, room, i=i))
    await pub.close()
    assert (pub.published, pub.dropped, pub.buffered) == (500, 0, 0)
    assert await count(js, f"waitroom.{room}.>") == 500
    pub.publish(make(ev.SESSION_RENEWED, room))  # after close: counted, not raised
    assert pub.dropped == 1


async def test_an_event_the_server_refuses_is_dropped_and_the_rest_flow(
    publisher: NatsPublisher, js: JetStreamContext
) -> None:
    room = new_room()
    huge = make(ev.QUEUE_CONFIG_CHANGED, room, blob="x" * 2_000_000)  # above max_payload (1 MB)
    after = make(ev.QUEUE_RESUMED, room)
    dropped = publisher.dropped
    publisher.publish(huge)
    publisher.publish(after)
    await flushed(publisher, 30)
    assert publisher.dropped == dropped + 1
    msgs = await read(js, f"waitroom.{room}.>")
    assert [json.loads(m.data)["id"] for m in msgs] == [after.id]


async def test_start_returns_at_once_when_nats_is_down() -> None:
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pub = NatsPublisher(
        f"nats://127.0.0.1:{port}", source="waitroom-proxy/test-down", close_timeout=0.5
    )
    t0 = time.perf_counter()
    await pub.start()
    # Waiting for a connection would take the connect timeout and reconnect waits (seconds);
    # the bound leaves room for a loaded machine.
    assert time.perf_counter() - t0 < 1.0
    for i in range(10):
        pub.publish(make(ev.POSITION_ENQUEUED, "shop", i=i))
    await asyncio.sleep(0.5)
    assert not pub.connected
    assert pub.buffered == 10
    t0 = time.perf_counter()
    await pub.close()
    assert time.perf_counter() - t0 < 3
    assert pub.dropped == 10 and pub.published == 0


@pytest.mark.slow
async def test_outage_buffers_then_delivers_and_counts_overflow(
    nats_server: Any, nats_url: str
) -> None:
    """NATS stops for a few seconds while events keep coming: publish() never blocks, the
    buffer fills to its size, newer events beyond it are dropped and counted, and after the
    restart the buffered events arrive in order."""
    buffer_size = 2_000
    pub = NatsPublisher(nats_url, source="waitroom-proxy/test-outage", buffer_size=buffer_size)
    await pub.start()
    await wait_for(lambda: pub.connected, 10)
    room = new_room()
    before = make(ev.QUEUE_PAUSED, room)
    pub.publish(before)
    await flushed(pub)

    nats_server.stop()
    try:
        await wait_for(lambda: not pub.connected, 10)
        sent: list[Event] = []
        worst = 0.0
        # ~3 s of traffic while down: 3,000 events, 1,000 more than the buffer holds.
        for _ in range(30):
            for _ in range(100):
                e = make(ev.POSITION_ENQUEUED, room, n=len(sent))
                t0 = time.perf_counter()
                pub.publish(e)
                worst = max(worst, time.perf_counter() - t0)
                sent.append(e)
            await asyncio.sleep(0.1)
        assert not pub.connected
        assert pub.buffered == buffer_size
        assert pub.dropped == len(sent) - buffer_size
        c = pub.counters()
        assert (c["connected"], c["buffered"], c["dropped"]) == (0.0, buffer_size, pub.dropped)
        print(f"\npublish() worst case while NATS was down: {worst * 1e6:.1f} us")
        # A deque append (typically ~1 us); waiting on the network would take seconds. The
        # bound leaves room for a GC pause on a loaded machine.
        assert worst < 0.5
    finally:
        nats_server.start()

    await wait_for(lambda: pub.connected, 15)
    await flushed(pub, 30)
    await pub.close()
    assert pub.dropped == len(sent) - buffer_size
    assert pub.retries >= 1  # resumed after the outage

    client = await nats.connect(nats_url)
    try:
        msgs = await read(client.jetstream(), f"waitroom.{room}.>")
    finally:
        await client.close()
    ids = [json.loads(m.data)["id"] for m in msgs]
    # The buffer kept the oldest events; the newest beyond its size were dropped.
    assert ids == [before.id] + [e.id for e in sent[:buffer_size]]
