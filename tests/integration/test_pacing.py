"""Pacing through the gatekeeper (``domain.pacing``), on the memory store and a real Redis.

A waiter far from the front polls on the page's schedule; most of its polls must cost the store
nothing, yet it must never lose its place, never be shown ahead of where it is, and be admitted
at its next poll once promoted, however far back the promotion reached. A store that loses its
state, a lottery room and counts gone stale make every poll touch the store again.

The gatekeeper runs on a fake clock; the Redis store's scripts see the same time moves (the
test-only clock offset), plus the few real milliseconds the test takes.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio

from tests.contract.conftest import FakeClock
from tests.reliability.rig import RecordingPublisher
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.redis_store import RedisStore, room_keys
from waitroom_proxy.bootstrap import Engine, build_engine
from waitroom_proxy.config import Settings
from waitroom_proxy.domain import pacing
from waitroom_proxy.domain.policy import Mode, RoomPolicy
from waitroom_proxy.domain.tokens import Ticket
from waitroom_proxy.ports import RoomLimits, Store
from waitroom_proxy.service import TICKET_COOKIE, Outcome

ROOM = "far"
SECRET = "pacing-" + "p" * 32
AHEAD = 1_300  # more than NEAR_FRONT: polls every 20 s, a touch every 4th poll by default
QUEUE_ONLY = RoomLimits(capacity=1, abandon_after_ms=120_000, direct_admit=False)


class CountingStore:
    """A real store that counts the calls made to it (and changes nothing)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.lingers: list[float] = []
        """The ``linger`` of each heartbeat (how long it may wait for the room's others)."""

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def counted(*args: Any, **kw: Any) -> Any:
            self.calls[name] += 1
            if name == "heartbeat":
                self.lingers.append(args[3] if len(args) > 3 else kw.get("linger", 0.0))
            return target(*args, **kw)

        return counted


@dataclass
class Rig:
    clock: FakeClock
    store: CountingStore
    engine: Engine
    raw: redis.asyncio.Redis | None

    @property
    def gate(self) -> Any:
        return self.engine.gate

    @property
    def room(self) -> Any:
        return self.engine.gate.rooms[ROOM]

    def advance(self, seconds: float) -> None:
        self.clock.advance(int(seconds * 1000))
        if isinstance(self.store.inner, RedisStore):
            self.store.inner._advance_clock_for_tests(int(seconds * 1000))

    async def tick(self) -> None:
        await self.engine.controller.tick_room(self.room)

    async def true_position(self, place_id: str) -> int:
        inner = self.store.inner
        if isinstance(inner, MemoryStore):
            order = inner._rooms[ROOM].order
            return 1 + [p for _, p in order].index(place_id)
        assert self.raw is not None
        rank = await self.raw.zrank(room_keys(ROOM).queue, place_id)
        assert rank is not None, f"{place_id} is not in the queue"
        return int(rank) + 1

    async def fill(self, n: int) -> list[str]:
        ids = [f"o{i:05d}" for i in range(n)]
        for pid in ids:
            assert (await self.store.inner.arrive(ROOM, pid, QUEUE_ONLY)).status.value == "waiting"
        return ids

    async def keep_alive(self, ids: list[str]) -> None:
        """The others poll too (straight to the store: only the one waiter under test goes
        through the gatekeeper)."""
        for pid in ids:
            await self.store.inner.heartbeat(ROOM, pid, 120_000)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def make_rig(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    made: list[tuple[Store, redis.asyncio.Redis | None]] = []

    async def make(policy: RoomPolicy) -> Rig:
        clock = FakeClock()
        raw = None
        inner: Store
        if request.param == "memory":
            inner = MemoryStore(clock=clock)
        else:
            server = request.getfixturevalue("redis_server")
            server.flush()
            inner = RedisStore(server.url, timeout=2.0)
            raw = redis.asyncio.Redis.from_url(server.url, decode_responses=True)
        made.append((inner, raw))
        store = CountingStore(inner)
        cfg = Settings(rooms=(policy,), secret=SECRET, client_rate_limit=0)
        engine = build_engine(cfg, store=store, publisher=RecordingPublisher(), clock=clock)  # type: ignore[arg-type]
        rig = Rig(clock, store, engine, raw)
        await rig.tick()  # the room's marker and first counts
        return rig

    yield make
    for inner, raw in made:
        await inner.close()
        if raw is not None:
            await raw.aclose()


class Waiter:
    """One visitor's waiting page: it keeps the ticket cookie and polls when told to."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.value: str | None = None
        self.statuses: list[dict[str, Any]] = []

    def keep(self, outcome: Outcome) -> str:
        for name, value, max_age in outcome.cookies:
            if name == TICKET_COOKIE:
                self.value = value if max_age else None
        self.statuses.append(outcome.status)
        return str(outcome.status.get("status", outcome.kind))

    @property
    def ticket(self) -> Ticket:
        assert self.value is not None
        return self.rig.gate.admission.tickets.loads(self.value)

    async def arrive(self) -> str:
        gate = self.rig.gate
        return self.keep(await gate.admission.arrive(self.rig.room, None, "/", self.rig.clock()))

    async def poll(self) -> str:
        gate = self.rig.gate
        outcome = await gate.admission.heartbeat(self.ticket, "/", self.rig.clock())
        assert outcome is not None
        return self.keep(outcome)

    @property
    def refresh(self) -> float:
        return float(self.statuses[-1]["refresh_seconds"])


async def test_far_back_most_polls_skip_the_store_and_the_place_is_kept(make_rig: Any) -> None:
    """Regression (one-room ceiling): every poll used to run the heartbeat script."""
    rig = await make_rig(RoomPolicy(name=ROOM, capacity=1, session_ttl=3_600))
    assert (await rig.store.inner.arrive(ROOM, "holder", rig.room.limits)).status.value == "active"
    others = await rig.fill(AHEAD)
    me = Waiter(rig)
    assert await me.arrive() == "waiting"
    cookies = 0
    for poll in range(30):  # 10 minutes of polls every 20 s; the counts refresh every 0.5 s
        for _ in range(int(me.refresh / 0.5)):
            rig.advance(0.5)
            await rig.tick()
        if poll % 3 == 0:
            await rig.keep_alive(others)
        before = me.value
        assert await me.poll() == "waiting"
        cookies += me.value != before
        true = await rig.true_position(me.ticket.place_id)
        assert me.statuses[-1]["position"] == AHEAD + 1 == true
    touches = rig.store.calls["heartbeat"]
    assert me.refresh == 20
    assert 6 <= touches <= 9, touches  # every 4th poll (80 s); 30 polls before pacing
    assert cookies == touches  # a ticket is re-signed at a touch only
    # far back a touch may wait for the room's others, to share one store call
    assert rig.store.lingers == [pacing.FAR_LINGER] * touches


async def test_near_the_front_every_poll_touches_at_once(make_rig: Any) -> None:
    """Within NEAR_FRONT places every poll touches, and none waits for others (linger 0)."""
    rig = await make_rig(RoomPolicy(name=ROOM, capacity=1, session_ttl=3_600))
    assert (await rig.store.inner.arrive(ROOM, "holder", rig.room.limits)).status.value == "active"
    await rig.fill(pacing.NEAR_FRONT - 10)
    me = Waiter(rig)
    assert await me.arrive() == "waiting"
    for _ in range(5):
        rig.advance(me.refresh)
        await rig.tick()
        assert await me.poll() == "waiting"
    assert me.refresh == 10
    assert rig.store.lingers == [0.0] * 5


async def test_a_promoted_waiter_far_back_is_admitted_at_its_next_poll(make_rig: Any) -> None:
    """The queue moves (10 admissions a second, nobody claims: no-shows free the slots); the
    waiter is shown positions never ahead of its true place, and once promoted its next poll
    claims the slot."""
    rig = await make_rig(RoomPolicy(name=ROOM, capacity=2_000, admit_rate=600, claim_timeout=30))
    assert (await rig.store.inner.arrive(ROOM, "first", QUEUE_ONLY)).status.value == "waiting"
    others = await rig.fill(AHEAD)
    me = Waiter(rig)
    assert await me.arrive() == "waiting"
    place = me.ticket.place_id
    next_poll = rig.clock() + me.refresh
    promoted_at = None
    skipped = 0
    for step in range(1_000):  # up to 500 s
        rig.advance(0.5)
        await rig.tick()
        if step % 60 == 0:
            await rig.keep_alive([p for p in others if p > "o"])
        if promoted_at is None and any(
            e.type == "position.admitted" and e.data["place_id"] == place
            for _, e in rig.gate.publisher.events
        ):
            promoted_at = rig.clock()
        if rig.clock() < next_poll:
            continue
        touches = rig.store.calls["heartbeat"] + rig.store.calls["claim"]
        status = await me.poll()
        if status == "admitted":
            break
        assert status == "waiting", me.statuses[-1]
        skipped += rig.store.calls["heartbeat"] + rig.store.calls["claim"] == touches
        if promoted_at is None:
            shown = me.statuses[-1]["position"]
            assert shown >= await rig.true_position(place), "shown ahead of its place"
        next_poll = rig.clock() + me.refresh
    assert promoted_at is not None and me.statuses[-1]["status"] == "admitted"
    # Admitted at the first poll after the promotion (polls are at most 20 s apart here).
    assert rig.clock() - promoted_at <= 20.5
    assert skipped > 0


async def test_after_a_store_loss_the_next_poll_touches_and_keeps_the_place(
    make_rig: Any,
) -> None:
    rig = await make_rig(RoomPolicy(name=ROOM, capacity=1, session_ttl=3_600))
    await rig.store.inner.arrive(ROOM, "holder", rig.room.limits)
    others = await rig.fill(AHEAD)
    me = Waiter(rig)
    assert await me.arrive() == "waiting"
    score = me.ticket.score
    rig.advance(20)
    await rig.tick()
    touches = rig.store.calls["heartbeat"]
    assert await me.poll() == "waiting" and rig.store.calls["heartbeat"] == touches  # skipped
    # The store loses everything (a restart without persistence); the others re-enter too.
    if rig.raw is not None:
        await rig.raw.flushall()
    else:
        rig.store.inner._rooms.clear()
    for pid in others:
        await rig.store.inner.arrive(ROOM, pid, QUEUE_ONLY)
    rig.advance(20)
    await rig.tick()  # the controller sees the new marker: the state was lost
    assert await me.poll() == "waiting"
    assert rig.store.calls["heartbeat"] == touches + 1  # the poll touched the store
    view = await rig.store.inner.heartbeat(ROOM, me.ticket.place_id)
    assert view.status.value == "waiting" and view.score == score


async def test_polls_touch_the_store_in_a_lottery_and_when_the_counts_are_old(
    make_rig: Any,
) -> None:
    policy = RoomPolicy(name=ROOM, capacity=1, session_ttl=3_600)
    for mode, tick in ((Mode.RANDOM, True), (Mode.FIFO, False)):
        rig = await make_rig(dataclasses.replace(policy, mode=mode))
        await rig.store.inner.arrive(ROOM, "holder", rig.room.limits)
        await rig.fill(AHEAD)
        me = Waiter(rig)
        assert await me.arrive() == "waiting"
        for _ in range(4):
            rig.advance(20)
            if tick:
                await rig.tick()
            assert await me.poll() == "waiting"
        assert rig.store.calls["heartbeat"] == 4, mode  # every poll


async def test_heartbeats_are_rate_limited_with_no_store_call() -> None:
    """Regression (one-room ceiling): each heartbeat used to cost a ``hit`` script in the
    store, as much store CPU as the heartbeat; enqueues still count in the store."""
    store = CountingStore(MemoryStore())
    cfg = Settings(rooms=(RoomPolicy(name=ROOM, capacity=1),), secret=SECRET, client_rate_limit=5)
    gate = build_engine(cfg, store=store, publisher=RecordingPublisher()).gate  # type: ignore[arg-type]
    waits = [await gate.limit.wait("198.51.100.7", shared=False) for _ in range(7)]
    assert waits[:5] == [0.0] * 5 and all(w > 0 for w in waits[5:])
    assert store.calls["hit"] == 0
    assert await gate.limit.wait("198.51.100.8") == 0.0
    assert store.calls["hit"] == 1
    assert await gate.limit.wait("198.51.100.7") > 0  # its heartbeats count here too
    assert store.calls["hit"] == 1  # refused here first: no store call
