"""A scheduled sale across replicas: 10,000 visitors in the pre-queue of three replicas on one
store, one draw at the start, the order recomputed by anyone from the published audit, and no
replica opening early on its own clock.

Each replica is a whole ``Gatekeeper`` with its own store client (on Redis: its own
connection), as three processes would be. The store's clock is moved with the test-only
offset (Redis) or the fake clock (memory), identically for every replica.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from waitroom_proxy.adapters.log_events import MemoryPublisher
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.domain.draw import entry_id, verify
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.schedule import Schedule
from waitroom_proxy.domain.tokens import SessionSigner, TicketSigner
from waitroom_proxy.metrics import Metrics
from waitroom_proxy.ports import RoomLimits
from waitroom_proxy.service import Gatekeeper
from waitroom_proxy.service.controller import Controller
from waitroom_proxy.service.outcome import TICKET_COOKIE, OutcomeKind

SECRET = "scheduled-sale-" + "s" * 32
ROOM = "sale"
ENTRIES = 10_000
SKEW = 90.0
"""Seconds the fast replica's clock is ahead."""


@dataclass
class Replica:
    gate: Gatekeeper
    controller: Controller
    publisher: MemoryPublisher
    store: Any


@dataclass
class Rig:
    replicas: list[Replica]
    advance: Callable[[float], None]
    """Move the store's clock (every replica's view of it) by seconds."""
    store_now: Callable[[], float]
    raw: Any
    """An adapter on the same data, for checks."""


def _policy(start: float) -> RoomPolicy:
    schedule = Schedule(
        prequeue_at=datetime.fromtimestamp(start - 3600, UTC),
        start_at=datetime.fromtimestamp(start, UTC),
        end_at=datetime.fromtimestamp(start + 7200, UTC),
        shuffle_at_start=True,
    )
    return RoomPolicy(name=ROOM, capacity=100, abandon_after=600, claim_timeout=600,
                      schedule=schedule)  # fmt: skip


def _replica(store: Any, name: str, policy: RoomPolicy, clock: Callable[[], float]) -> Replica:
    publisher = MemoryPublisher()
    gate = Gatekeeper(
        (policy,),
        store=store,
        publisher=publisher,
        tickets=TicketSigner([SECRET]),
        sessions=SessionSigner([SECRET]),
        metrics=Metrics(),
        clock=clock,
        replica_id=name,
        client_rate_limit=0,
    )
    return Replica(gate, Controller(gate), publisher, store)


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """Three replicas on one store; the third one's clock is ``SKEW`` seconds fast. The sale
    starts 60 s after the store's now: the fast replica believes it started 30 s ago."""
    kind = request.param
    if kind == "memory":
        now = [1_900_000_000.0]
        shared = MemoryStore(clock=lambda: now[0])
        policy = _policy(now[0] + 60)
        clocks = [lambda: now[0], lambda: now[0], lambda: now[0] + SKEW]
        reps = [_replica(shared, f"r{i}", policy, c) for i, c in enumerate(clocks)]

        def advance(seconds: float) -> None:
            now[0] += seconds

        yield Rig(reps, advance, lambda: now[0], shared)
        return
    if kind == "cluster":
        url = request.getfixturevalue("redis_cluster").url
    else:
        server = request.getfixturevalue("redis_server")
        server.flush()
        url = server.url
    stores = [RedisStore(url, timeout=5.0) for _ in range(4)]
    start = time.time() + 60
    policy = _policy(start)
    offset = [0.0]
    clocks = [
        lambda: time.time() + offset[0],
        lambda: time.time() + offset[0],
        lambda: time.time() + offset[0] + SKEW,
    ]
    reps = [_replica(s, f"r{i}", policy, c) for i, (s, c) in enumerate(zip(stores, clocks))]

    def advance_redis(seconds: float) -> None:
        offset[0] += seconds
        for s in stores:
            s._advance_clock_for_tests(round(seconds * 1000))

    try:
        yield Rig(reps, advance_redis, lambda: time.time() + offset[0], stores[3])
    finally:
        for s in stores:
            await s.close()


def _events(rig: Rig, kind: str) -> list[Any]:
    return [e for r in rig.replicas for e in r.publisher.events if e.type == kind]


async def _arrive(rep: Replica, now: float) -> tuple[OutcomeKind, dict[str, Any], str | None]:
    room = rep.gate.rooms[ROOM]
    outcome = await rep.gate.admission.arrive(room, None, "/", now)
    value = next((v for n, v, _ in outcome.cookies if n == TICKET_COOKIE and v), None)
    place = rep.gate.admission.read_ticket(value).place_id if value else None  # type: ignore[union-attr]
    return outcome.kind, outcome.status, place


async def test_ten_thousand_prequeue_entries_are_drawn_once_across_three_replicas(
    rig: Rig,
) -> None:
    reps = rig.replicas
    fast = reps[2]
    # Before the pre-queue opens (store clock): idle everywhere, nobody gets a ticket.
    rig.advance(-3700)
    kind, status, place = await _arrive(reps[0], reps[0].gate.clock())
    assert (kind, status["status"], place) == (OutcomeKind.WAIT, "idle", None)
    rig.advance(3700)

    # 10,000 visitors over the three replicas (the fast one included).
    places: list[str] = []
    for first in range(0, ENTRIES, 250):
        batch = [reps[i % 3] for i in range(first, first + 250)]
        answers = await asyncio.gather(*(_arrive(r, r.gate.clock()) for r in batch))
        for kind, status, place in answers:
            assert kind is OutcomeKind.WAIT and status["status"] == "prequeue", status
            assert status["position"] == 0, "a pre-queue ticket has no position"
            assert place is not None
            places.append(place)
    assert len(set(places)) == ENTRIES
    opened = _events(rig, "queue.prequeue_opened")
    assert len(opened) == 1, "the commitment is published once"
    commitment = opened[0].data["commitment"]

    # The fast replica thinks the sale started 30 s ago; the store says it has not.
    await asyncio.gather(*(r.controller.tick_room(r.gate.rooms[ROOM]) for r in reps))
    kind, status, _ = await _arrive(fast, fast.gate.clock())
    assert status["status"] == "prequeue" and kind is OutcomeKind.WAIT
    assert (await rig.raw.stats(ROOM)).queue_length == 0
    assert _events(rig, "queue.shuffled") == []
    before = await fast.gate.lifecycle.audit(fast.gate.rooms[ROOM])
    assert before is not None and before["commitment"] == commitment and before["seed"] is None
    assert before["order"] == []

    # The start, by the store's clock: all three controllers race; one release.
    rig.advance(61)
    await asyncio.gather(*(r.controller.tick_room(r.gate.rooms[ROOM]) for r in reps))
    shuffled = _events(rig, "queue.shuffled")
    assert len(shuffled) == 1 and shuffled[0].data["entries"] == ENTRIES + 1

    doc = await reps[1].gate.lifecycle.audit(reps[1].gate.rooms[ROOM])
    assert doc is not None and verify(doc).ok
    # Anyone recomputes the order from the document with the standard library alone.
    seed = bytes.fromhex(doc["seed"])
    assert hashlib.sha256(seed).hexdigest() == doc["commitment"] == commitment
    entries = sorted(doc["entries"])
    digest = hashlib.sha256("\n".join(entries).encode()).digest()

    def key(e: str) -> tuple[bytes, str]:
        return hmac.new(seed, digest + bytes.fromhex(e), "sha256").digest(), e

    assert sorted(entries, key=key) == doc["order"]
    # Every visitor is in it once (the fast replica's late visitor too), nobody else.
    assert len(entries) == ENTRIES + 1
    assert set(doc["entries"]) >= {entry_id(ROOM, p) for p in places}

    # The store admits in exactly the published order; a later arrival queues behind.
    kind, status, late = await _arrive(reps[0], reps[0].gate.clock())
    assert status["status"] == "waiting" and status["position"] == status["queue_length"]
    limits = RoomLimits(capacity=ENTRIES + 10, abandon_after_ms=600_000,
                        claim_timeout_ms=600_000, session_ttl_ms=600_000)  # fmt: skip
    # The controllers' tick already promoted the first `capacity` (one replica took them all).
    promoted = [e.data["place_id"] for e in _events(rig, "position.admitted")]
    assert len(promoted) == 100
    while len(promoted) < ENTRIES + 2:
        result = await rig.raw.tick(ROOM, limits)
        assert result.promoted, "the queue must drain"
        promoted += result.promoted
    assert len(set(promoted)) == ENTRIES + 2
    assert [entry_id(ROOM, p) for p in promoted[:-1]] == doc["order"]
    assert promoted[-1] == late

    # A second pass of every controller changes nothing.
    await asyncio.gather(*(r.controller.tick_room(r.gate.rooms[ROOM]) for r in reps))
    assert len(_events(rig, "queue.shuffled")) == 1


async def test_the_sale_ends_by_the_stores_clock_once(rig: Rig) -> None:
    reps = rig.replicas
    rig.advance(61)
    kind, status, _ = await _arrive(reps[0], reps[0].gate.clock())
    assert kind is OutcomeKind.PASS, "open, nobody waiting: admitted at once"
    rig.advance(7200)
    await asyncio.gather(*(r.controller.tick_room(r.gate.rooms[ROOM]) for r in reps))
    assert len(_events(rig, "queue.ended")) == 1
    for r in reps:
        kind, status, place = await _arrive(r, r.gate.clock())
        assert (kind, status["status"], place) == (OutcomeKind.REJECTED, "ended", None)
