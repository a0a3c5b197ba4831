"""NATS goes away under load: requests never fail or slow down; lost events are counted.

The real ``NatsPublisher`` talks to a real nats-server through ``FaultProxy``: first the bus
hangs (blackhole: connections stay open, nothing answers), then it is gone (stopped:
connections reset and refused). A small buffer makes the outage overflow it, so drops happen
and must be counted: every event the gatekeeper emitted is published, dropped or still
buffered, none unaccounted for.

"Never slowed" is asserted with the bound that tells a request waiting for the bus from one
that does not: anything waiting for the hung bus waits for the publisher's ack or connect
timeout (``BUS_WAIT``), so every request during the outage must take less than that. The
latencies themselves are reported, not compared with this machine's speed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from tests.fixtures.faultproxy import FaultProxy
from tests.reliability.rig import (
    JSON,
    Recorder,
    admitted_client,
    client,
    percentile,
    proxy_rig,
    report,
    timed,
)
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.nats_events import NatsPublisher
from waitroom_proxy.domain.policy import RoomPolicy


class CountingPublisher:
    """Counts what the gatekeeper emits, then hands it to the real publisher."""

    def __init__(self, inner: NatsPublisher) -> None:
        self.inner = inner
        self.emitted = 0

    def publish(self, event: Any) -> None:
        self.emitted += 1
        self.inner.publish(event)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    def counters(self) -> dict[str, float]:
        return self.inner.counters()


BUFFER = 50
BUS_WAIT = 5.0
"""The publisher's ack and connect timeouts: how long anything waiting for the bus waits."""


async def _nats_outage(nats_server: Any, duration: float) -> None:
    port = int(nats_server.url.rsplit(":", 1)[1])
    async with FaultProxy("127.0.0.1", port) as fp:
        inner = NatsPublisher(fp.url("nats"), source="waitroom-proxy/reliability",
                              buffer_size=BUFFER, backoff_max=1.0, ack_timeout=BUS_WAIT,
                              connect_timeout=BUS_WAIT)  # fmt: skip
        pub = CountingPublisher(inner)
        policy = RoomPolicy(name="natsdown", capacity=5, heartbeat_interval=1)
        async with proxy_rig(
            policy, store=MemoryStore(), server={"client_rate_limit": 0}, publisher=pub
        ) as rig:
            await asyncio.sleep(0.5)
            sessions = [await admitted_client(rig.url) for _ in range(5)]
            rec = Recorder()
            stop = asyncio.Event()

            async def sessions_loop(c: httpx.AsyncClient) -> None:
                while not stop.is_set():
                    await timed(c, rec, "GET", "/s")
                    await asyncio.sleep(0.02)

            async def newcomers_loop() -> None:  # each enqueue emits position.enqueued
                async with client(rig.url) as c:
                    while not stop.is_set():
                        c.cookies.clear()
                        await timed(c, rec, "GET", "/n", headers=JSON)
                        await asyncio.sleep(0.02)

            tasks = [asyncio.create_task(sessions_loop(c)) for c in sessions]
            tasks += [asyncio.create_task(newcomers_loop()) for _ in range(3)]
            await asyncio.sleep(1.0)
            before = rec.samples[:]
            fp.blackhole = True
            t0 = time.monotonic()
            await asyncio.sleep(duration / 2)
            await fp.stop()
            fp.heal()
            await asyncio.sleep(duration / 2)
            # Keep it down until the buffer overflowed (a loaded machine serves fewer
            # newcomers, so fewer events, in the same time); the limit is liveness only.
            while inner.counters()["dropped"] == 0 and time.monotonic() - t0 < 60:
                await asyncio.sleep(0.1)
            during = rec.between(t0, time.monotonic())
            dropped_during = inner.counters()["dropped"]
            await fp.start()
            t_back = time.monotonic()
            while inner.counters()["connected"] != 1.0 and time.monotonic() - t_back < 15:
                await asyncio.sleep(0.1)
            reconnect_s = time.monotonic() - t_back
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for c in sessions:
                await c.aclose()
            async with asyncio.timeout(10):
                await inner.flush()
            counters = inner.counters()
            emitted = pub.emitted
        failed = [s for s in rec.samples if s.status >= 500] + rec.errors
        p99_before = percentile([s.latency for s in before], 99)
        p99_during = percentile([s.latency for s in during], 99)
        worst_during = max(s.latency for s in during)
        report(
            f"NATS down {duration:g}s",
            requests=len(rec.samples),
            failed=len(failed),
            p99_before_s=p99_before,
            p99_during_s=p99_during,
            max_during_s=worst_during,
            emitted=emitted,
            published=counters["published"],
            dropped=counters["dropped"],
            dropped_during_outage=dropped_during,
            buffered=counters["buffered"],
            reconnect_s=reconnect_s,
        )
        assert not failed, failed[:3]
        assert dropped_during > 0, "the outage should have overflowed the buffer"
        # Every emitted event is accounted for (events of the rig's start/stop included).
        assert counters["published"] + counters["dropped"] + counters["buffered"] == emitted
        # No request waited for the bus (it would have waited BUS_WAIT at least).
        assert worst_during < BUS_WAIT, worst_during


async def test_nats_down_6s(nats_server: Any) -> None:
    await _nats_outage(nats_server, 6.0)


@pytest.mark.slow
async def test_nats_down_60s(nats_server: Any) -> None:
    await _nats_outage(nats_server, 60.0)
