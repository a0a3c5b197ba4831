"""The JetStream streams against a real nats-server: created, reused as the operator tuned them,
refused when impossible, and the dead-letter stream."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import nats
import nats.js.errors
import pytest
from nats.js import JetStreamContext, api

from tests.integration.nats_helpers import count, flushed, make, new_room, read, wait_for
from waitroom_proxy.adapters import nats_events
from waitroom_proxy.adapters.nats_events import (
    DLQ_STREAM,
    DLQ_SUBJECTS,
    STREAM,
    NatsPublisher,
    ensure_streams,
)
from waitroom_proxy.cli.event_tail import tail
from waitroom_proxy.domain import events as ev

# -- streams ---------------------------------------------------------------------------------


async def _delete_streams(js: JetStreamContext) -> None:
    for name in (STREAM, DLQ_STREAM):
        try:
            await js.delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass


async def test_streams_are_created_and_a_second_replica_starts_fine(
    nats_url: str, js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    await _delete_streams(js)
    with pytest.raises(SystemExit, match="no WAITROOM stream"):
        await asyncio.to_thread(tail, nats_url, None)
    # Two replicas starting at the same moment race to create the streams.
    a = NatsPublisher(nats_url, source="waitroom-proxy/replica-a")
    b = NatsPublisher(nats_url, source="waitroom-proxy/replica-b")
    with caplog.at_level(logging.WARNING, logger=nats_events.__name__):
        await asyncio.gather(a.start(), b.start())
        room = new_room()
        a.publish(make(ev.POSITION_ENQUEUED, room, by="a"))
        b.publish(make(ev.POSITION_ENQUEUED, room, by="b"))
        await flushed(a)
        await flushed(b)
        # A third replica against streams that already exist.
        c = NatsPublisher(nats_url, source="waitroom-proxy/replica-c")
        await c.start()
        c.publish(make(ev.POSITION_ENQUEUED, room, by="c"))
        await flushed(c)
        for p in (a, b, c):
            await p.close()
    assert not [r for r in caplog.records if "different configuration" in r.getMessage()]
    assert await count(js, f"waitroom.{room}.>") == 3

    info = await js.stream_info(STREAM)
    assert info.config.subjects == ["waitroom.>"]
    assert info.config.storage == api.StorageType.FILE
    assert info.config.duplicate_window == 120
    assert info.config.max_age == 7 * 24 * 3600
    dlq = await js.stream_info(DLQ_STREAM)
    assert dlq.config.subjects == ["$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.WAITROOM.>"]
    assert dlq.config.subjects == list(DLQ_SUBJECTS)
    assert dlq.config.storage == api.StorageType.FILE


async def test_a_stream_tuned_by_the_operator_is_used_as_it_is(
    nats_url: str, js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    await ensure_streams(js)
    info = await js.stream_info(STREAM)
    tuned = info.config.evolve(max_age=24 * 3600.0)
    await js.update_stream(tuned)
    try:
        pub = NatsPublisher(nats_url, source="waitroom-proxy/test-tuned")
        with caplog.at_level(logging.WARNING, logger=nats_events.__name__):
            await pub.start()
            room = new_room()
            pub.publish(make(ev.QUEUE_PAUSED, room))
            await flushed(pub)
            await pub.close()
        found = [
            r.getMessage() for r in caplog.records if "different configuration" in r.getMessage()
        ]
        # What differs is named, and counted in a metric; the stream is left as it is.
        assert found == [
            "stream WAITROOM exists with a different configuration: max_age 86400 s "
            "(wanted 604800 s); using it as it is"
        ]
        assert pub.counters()["stream_mismatches"] == 1
        assert (await js.stream_info(STREAM)).config.max_age == 24 * 3600
        assert await count(js, f"waitroom.{room}.>") == 1
    finally:
        await js.update_stream(info.config)


async def test_more_stream_replicas_than_servers_is_an_error_not_a_crash(
    nats_url: str, js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    """``nats_stream_replicas = 3`` against a single server: JetStream refuses the streams.
    The reason is logged as an error (once, not on every retry); events wait in the buffer;
    publish() never raises."""
    await _delete_streams(js)
    pub = NatsPublisher(nats_url, source="waitroom-proxy/test-r3", stream_replicas=3,
                        backoff_base=0.01, backoff_max=0.05)  # fmt: skip
    try:
        with caplog.at_level(logging.WARNING):
            await pub.start()
            pub.publish(make(ev.QUEUE_PAUSED, new_room()))
            await wait_for(lambda: pub.retries >= 5, 10)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        message = errors[0].getMessage()
        assert "cannot create stream WAITROOM with 3 replica(s)" in message
        assert "replicas > 1 not supported in non-clustered mode" in message
        assert pub.buffered == 1 and pub.dropped == 0 and pub.published == 0
    finally:
        await pub.close()
    with pytest.raises(nats.js.errors.NotFoundError):
        await js.stream_info(STREAM)
    await ensure_streams(js)  # leave the streams for the other tests


async def test_dlq_captures_max_delivery_advisories(
    publisher: NatsPublisher, js: JetStreamContext
) -> None:
    room = new_room()
    publisher.publish(make(ev.SESSION_REVOKED, room))
    await flushed(publisher)
    durable = f"dlq-test-{room}"
    psub = await js.pull_subscribe(
        f"waitroom.{room}.>",
        durable=durable,
        stream=STREAM,
        config=api.ConsumerConfig(max_deliver=2, ack_wait=0.3),
    )
    try:
        for _ in range(2):  # delivered twice, never acknowledged
            (msg,) = await psub.fetch(1, timeout=5)
            assert msg.subject == f"waitroom.{room}.session.revoked"
            await asyncio.sleep(0.4)
        subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{STREAM}.{durable}"
        deadline = time.monotonic() + 10
        while await count(js, subject, DLQ_STREAM) == 0:
            assert time.monotonic() < deadline, "no advisory in the DLQ stream"
            with pytest.raises(nats.errors.TimeoutError):
                await psub.fetch(1, timeout=0.2)  # poke the consumer
        (adv,) = await read(js, subject, DLQ_STREAM)
        doc = json.loads(adv.data)
        assert doc["type"] == "io.nats.jetstream.advisory.v1.max_deliver"
        assert doc["stream"] == STREAM and doc["consumer"] == durable
    finally:
        await psub.unsubscribe()
        await js.delete_consumer(STREAM, durable)
