"""Fixtures shared by the integration tests: NATS clients and a started ``NatsPublisher`` on
the session's nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from tests.integration.nats_helpers import wait_for
from waitroom_proxy.adapters.nats_events import NatsPublisher


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
