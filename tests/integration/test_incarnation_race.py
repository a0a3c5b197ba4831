"""Replicas (or ``--workers`` processes) starting together on an empty store agree on the
room's incarnation marker: none of them mistakes another's marker for a store loss.

A barrier makes the race certain: both replicas read the empty meta map before either writes
its marker (as two workers do when they start in the same instant).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from waitroom_proxy.adapters.log_events import MemoryPublisher
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.tokens import SessionSigner, TicketSigner
from waitroom_proxy.metrics import Metrics
from waitroom_proxy.service import Gatekeeper

SECRET = "incarnation-" + "i" * 32


class ReadTogether:
    """A store whose first ``get_meta`` of each caller returns only once every caller has
    read: the interleaving of two replicas starting at the same instant, made certain."""

    def __init__(self, inner: Any, parties: int) -> None:
        self.inner = inner
        self.barrier: asyncio.Barrier | None = asyncio.Barrier(parties)

    async def get_meta(self, room: str) -> dict[str, str]:
        meta: dict[str, str] = await self.inner.get_meta(room)
        if self.barrier is not None:
            await self.barrier.wait()
        return meta

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def replica(store: Any, name: str, room: RoomPolicy) -> Gatekeeper:
    return Gatekeeper(
        (room,),
        store=store,
        publisher=MemoryPublisher(),
        tickets=TicketSigner([SECRET]),
        sessions=SessionSigner([SECRET]),
        metrics=Metrics(),
        replica_id=name,
    )


@pytest.mark.parametrize("kind", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_two_replicas_on_an_empty_store_agree_on_the_marker(
    kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        server.flush()
        a_store: Any = RedisStore(server.url, timeout=2.0)
        b_store: Any = RedisStore(server.url, timeout=2.0)
    else:
        a_store = b_store = MemoryStore()
    room = RoomPolicy(name="sale", capacity=2)
    together_a = ReadTogether(a_store, 2)
    together_b = ReadTogether(b_store, 2)
    together_b.barrier = together_a.barrier  # one barrier for both replicas
    a = replica(together_a, "a", room)
    b = replica(together_b, "b", room)
    try:
        with caplog.at_level(logging.WARNING, logger="waitroom_proxy"):
            await asyncio.gather(a.sync.refresh(a.rooms["sale"]), b.sync.refresh(b.rooms["sale"]))
            together_a.barrier = together_b.barrier = None
            for _ in range(3):  # the controllers' next ticks
                await a.sync.refresh(a.rooms["sale"])
                await b.sync.refresh(b.rooms["sale"])
        marker = (await a_store.get_meta("sale"))["incarnation"]
        assert a.rooms["sale"].incarnation == b.rooms["sale"].incarnation == marker
        lost = [r.getMessage() for r in caplog.records if "lost its state" in r.getMessage()]
        assert not lost, lost
        assert not a.rooms["sale"].held and not b.rooms["sale"].held
    finally:
        if kind == "redis":
            await a_store.close()
            await b_store.close()
