"""Fixtures shared by the integration tests.

- NATS: clients and a started ``NatsPublisher`` on the session's nats-server.
- The admin listener: ``make_env`` starts replicas of one room on one store, each a real uvicorn
  proxy and admin listener in front of an origin. Store-dependent tests run against the
  in-process store and a real Redis-protocol server (``store_kind``); several "replicas" are
  several engines on one store (one shared ``MemoryStore`` object, or one Redis server with a
  client each), as in production.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from tests.fixtures.asgi_server import serve_asgi
from tests.integration.admin_helpers import (
    SECRET,
    TOKEN,
    CountingPublisher,
    Env,
    Replica,
    origin_app,
    stop_controller,
)
from tests.integration.nats_helpers import wait_for
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.nats_events import NatsPublisher
from waitroom_proxy.admin import build_admin
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.server import build_app


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


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_env(store_kind: str, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``async with make_env(n=2, capacity=1) as env``: n replicas of one room on one store."""

    @contextlib.asynccontextmanager
    async def factory(n: int = 1, **room_kwargs: Any) -> AsyncIterator[Env]:
        shared = MemoryStore()
        redis_url = request.getfixturevalue("redis_url") if store_kind == "redis" else None
        room = "a" + uuid.uuid4().hex[:12]
        policy = RoomPolicy(
            name=room,
            capacity=room_kwargs.pop("capacity", 1),
            heartbeat_interval=1,
            abandon_after=30,
            **room_kwargs,
        )
        async with contextlib.AsyncExitStack() as stack:
            origin_url = await stack.enter_async_context(serve_asgi(origin_app()))
            replicas = []
            for _ in range(n):
                if redis_url is not None:
                    from waitroom_proxy.adapters.redis_store import RedisStore

                    store: Any = RedisStore.from_url(redis_url, timeout=1.0)
                else:
                    store = shared
                publisher = CountingPublisher()
                settings = Settings(rooms=(policy,), upstream=origin_url, secret=SECRET)
                app = build_app(settings, store=store, publisher=publisher,
                                controller_interval=0.1)  # fmt: skip
                url = await stack.enter_async_context(serve_asgi(app))
                stack.push_async_callback(stop_controller, app.engine)
                admin = await stack.enter_async_context(
                    serve_asgi(build_admin(app.engine, TOKEN), lifespan="off")
                )
                replicas.append(Replica(url, admin, app.engine, publisher))
            yield Env(room, replicas)

    return factory
