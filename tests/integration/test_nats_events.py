"""NatsPublisher and ``events tail`` against a real nats-server with JetStream.

Every test uses its own room name, so tests can share the session's server and stream.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

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
from waitroom_proxy.ports import Event, EventPublisher


def new_room() -> str:
    return "t" + uuid.uuid4().hex[:12]


def make(type_: str, room: str | None, **data: Any) -> Event:
    return ev.new_event(type_, room, data, time.time())


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=-1)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def js(nc: NatsClient) -> JetStreamContext:
    return nc.jetstream()


@pytest.fixture
async def publisher(nats_url: str) -> AsyncIterator[NatsPublisher]:
    pub = NatsPublisher(nats_url, source="waitroom-proxy/test-a", backoff_base=0.02)
    await pub.start()
    await wait_for(lambda: pub.connected, 10)
    try:
        yield pub
    finally:
        await pub.close()


async def wait_for(cond: Any, timeout: float, step: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)


async def flushed(pub: NatsPublisher, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        assert await pub.flush()


async def count(js: JetStreamContext, subject: str, stream: str = STREAM) -> int:
    info = await js.stream_info(stream, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


async def read(js: JetStreamContext, subject: str, stream: str = STREAM) -> list[Msg]:
    """Every stored message on ``subject``, in stream order."""
    n = await count(js, subject, stream)
    if n == 0:
        return []
    sub = await js.subscribe(
        subject, stream=stream, ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL
    )
    try:
        return [await sub.next_msg(timeout=5) for _ in range(n)]
    finally:
        await sub.unsubscribe()


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


# -- tail ------------------------------------------------------------------------------------


class _Lines(io.StringIO):
    """A StringIO written from the tail thread and read from the test."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def write(self, s: str) -> int:
        with self.lock:
            return super().write(s)

    def lines(self) -> list[str]:
        with self.lock:
            return self.getvalue().splitlines()


async def _run_tail(nats_url: str, room: str | None, n: int) -> tuple[threading.Thread, _Lines]:
    out = _Lines()
    ready = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            tail(nats_url, room, out=out, max_events=n, on_ready=ready.set)
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    await asyncio.to_thread(ready.wait, 10)
    assert not errors, errors
    return thread, out


async def test_tail_prints_one_room(publisher: NatsPublisher, nats_url: str) -> None:
    room, other = new_room(), new_room()
    thread, out = await _run_tail(nats_url, room, 2)
    publisher.publish(make(ev.POSITION_ENQUEUED, other, place="x"))
    publisher.publish(make(ev.SYSTEM_STORE_DOWN, None))
    e1 = make(ev.POSITION_ENQUEUED, room, place="p1")
    e2 = make(ev.POSITION_ADMITTED, room, place="p1")
    publisher.publish(e1)
    publisher.publish(e2)
    await flushed(publisher)
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()
    assert out.lines() == [
        f'{ev.rfc3339(e1.time)}  position.enqueued  {room}  {{"place":"p1"}}',
        f'{ev.rfc3339(e2.time)}  position.admitted  {room}  {{"place":"p1"}}',
    ]


async def test_tail_prints_everything_without_a_room(
    publisher: NatsPublisher, nats_url: str
) -> None:
    room = new_room()
    thread, out = await _run_tail(nats_url, None, 2)
    e1 = make(ev.SYSTEM_STORE_UP, None)
    e2 = make(ev.QUEUE_PAUSED, room)
    publisher.publish(e1)
    publisher.publish(e2)
    await flushed(publisher)
    await asyncio.to_thread(thread.join, 10)
    lines = out.lines()
    assert lines[0] == f"{ev.rfc3339(e1.time)}  system.store_up  -  {{}}"
    assert lines[1] == f"{ev.rfc3339(e2.time)}  queue.paused  {room}  {{}}"


def test_tail_says_clearly_when_nats_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as info:
        tail(f"nats://user:secret@127.0.0.1:{port}", None, connect_timeout=1.0)
    assert time.monotonic() - t0 < 5
    msg = str(info.value.code)
    assert "cannot reach NATS" in msg and f"127.0.0.1:{port}" in msg
    assert "secret" not in msg


def _cli() -> list[str]:
    return [sys.executable, "-m", "waitroom_proxy"]


async def test_cli_events_tail_prints_until_interrupted(
    publisher: NatsPublisher, nats_url: str
) -> None:
    room = new_room()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITROOM_")}
    proc = subprocess.Popen(
        [*_cli(), "events", "tail", "--room", room, "--nats-url", nats_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first: list[str] = []
        reader = threading.Thread(
            target=lambda: first.append(proc.stdout.readline() if proc.stdout else ""),
            daemon=True,
        )
        reader.start()
        # The consumer delivers only new events: publish until the first line shows up.
        deadline = time.monotonic() + 20
        while reader.is_alive():
            assert time.monotonic() < deadline, "events tail printed nothing"
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            publisher.publish(make(ev.SESSION_STARTED, room, place="p9"))
            await asyncio.sleep(0.2)
        assert first[0].split("  ")[1:] == ["session.started", room, '{"place":"p9"}\n']
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_events_tail_fails_clearly_when_nats_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITROOM_")}
    proc = subprocess.run(
        [*_cli(), "events", "tail", "--nats-url", f"nats://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "cannot reach NATS" in proc.stderr
