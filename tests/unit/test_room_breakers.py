"""Store failures are per room, not per process (DESIGN §6): on a sharded store (a Redis Cluster)
a room's shard that fails opens that room's circuit breaker only; the per-client rate limit has
its own. The in-process store, made to fail for chosen rooms and marked ``sharded``, stands for
a cluster whose shard is down. A store that is one server keeps one breaker for everything."""

from __future__ import annotations

from typing import Any

from waitroom_proxy.adapters.log_events import MemoryPublisher
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.domain.policy import FailMode, RoomPolicy
from waitroom_proxy.domain.tokens import SessionSigner, TicketSigner
from waitroom_proxy.errors import StoreError
from waitroom_proxy.metrics import Metrics
from waitroom_proxy.service import Gatekeeper
from waitroom_proxy.service.controller import Controller

SECRET = "brk-" + "b" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class ShardDown(MemoryStore):
    """Every call for a room in ``down`` fails (its shard is gone); ``hit`` fails while
    ``hits_down``; calls are counted per room."""

    sharded = True
    """As ``RedisStore`` on a cluster: rooms fail one by one."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.down: set[str] = set()
        self.hits_down = False
        self.calls: dict[str, int] = {}

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name.startswith("_") or not callable(attr) or name in ("close",):
            return attr
        store = self

        async def call(*args: Any, **kwargs: Any) -> Any:
            if name == "hit":
                store.__dict__["hit_calls"] = store.__dict__.get("hit_calls", 0) + 1
                if object.__getattribute__(store, "hits_down"):
                    raise StoreError("rate-limit shard down")
                return await attr(*args, **kwargs)
            room = args[0] if args else None
            calls = object.__getattribute__(store, "calls")
            calls[room] = calls.get(room, 0) + 1
            if room in object.__getattribute__(store, "down"):
                raise StoreError(f"shard of {room} down")
            return await attr(*args, **kwargs)

        return call


def make_gate(store: MemoryStore, clock: Clock, **kw: Any) -> tuple[Gatekeeper, MemoryPublisher]:
    pub = MemoryPublisher()
    rooms = (
        RoomPolicy(name="east", capacity=1, match=("*/east/",), fail_mode=FailMode.CLOSED),
        RoomPolicy(name="west", capacity=1, match=("*/west/",), fail_mode=FailMode.CLOSED),
    )
    g = Gatekeeper(
        rooms,
        store=store,
        publisher=pub,
        tickets=TicketSigner([SECRET]),
        sessions=SessionSigner([SECRET]),
        metrics=Metrics(),
        clock=clock,
        **kw,
    )
    return g, pub


async def test_a_failing_room_does_not_open_the_breaker_of_another() -> None:
    clock = Clock()
    store = ShardDown(clock)
    g, pub = make_gate(store, clock)
    east, west = g.rooms["east"], g.rooms["west"]
    store.down = {"east"}
    for _ in range(20):  # far past the breaker's threshold
        assert (await g.admission.arrive(east, None, "/east/", clock())).kind == "error"
    # The other room's shard is fine: its visitors are still admitted and queued.
    first = await g.admission.arrive(west, None, "/west/", clock())
    second = await g.admission.arrive(west, None, "/west/", clock())
    assert (first.kind, second.kind) == ("pass", "wait")
    assert g.store.breaker_for("east").is_open and not g.store.breaker_for("west").is_open
    # The open breaker stops calls to the failing shard: 3 failures, then fail fast.
    assert store.calls["east"] == 3
    down = [e for e in pub.events if e.type == "system.store_down"]
    assert [e.data.get("room") for e in down] == ["east"]
    assert g.metrics.room_store_up.labels("east")._value.get() == 0
    assert g.metrics.room_store_up.labels("west")._value.get() == 1
    assert g.metrics.store_up._value.get() == 0  # some room has no store
    assert not g.store.ok


async def test_the_controller_keeps_ticking_healthy_rooms() -> None:
    clock = Clock()
    store = ShardDown(clock)
    g, _ = make_gate(store, clock)
    west = g.rooms["west"]
    holder = await g.admission.arrive(west, None, "/west/", clock())
    waiter = await g.admission.arrive(west, None, "/west/", clock())
    assert (holder.kind, waiter.kind) == ("pass", "wait")
    store.down = {"east"}
    controller = Controller(g)
    for _ in range(3):
        # Visitors of the failing room keep coming while the controller runs.
        for _ in range(5):
            await g.admission.arrive(g.rooms["east"], None, "/east/", clock())
        await controller.run_once()
    ticket = g.admission.read_ticket(waiter.cookies[0][1])
    assert ticket is not None
    session = g.sessions.session_for(holder.session_token or "", west, clock())
    assert session is not None
    for _ in range(5):
        await g.admission.arrive(g.rooms["east"], None, "/east/", clock())
    assert await g.admission.leave(None, session)  # a slot frees in the healthy room
    await controller.run_once()
    out = await g.admission.heartbeat(ticket, "/west/", clock())
    assert out is not None and out.kind == "pass", "the waiter of the healthy room got in"


async def test_the_room_recovers_alone_and_says_so() -> None:
    clock = Clock()
    store = ShardDown(clock)
    g, pub = make_gate(store, clock)
    east = g.rooms["east"]
    store.down = {"east"}
    for _ in range(3):
        await g.admission.arrive(east, None, "/east/", clock())
    store.down = set()
    for breaker in g.store.breakers.values():
        breaker.open_until = 0.0  # the cool-down is over
    assert (await g.admission.arrive(east, None, "/east/", clock())).kind == "pass"
    up = [e for e in pub.events if e.type == "system.store_up"]
    assert [e.data.get("room") for e in up] == ["east"]
    assert g.store.ok and g.metrics.store_up._value.get() == 1


async def test_the_rate_limit_has_its_own_breaker() -> None:
    """Rate-limit keys spread over every shard: their failures must not close any room."""
    clock = Clock()
    store = ShardDown(clock)
    g, _ = make_gate(store, clock, client_rate_limit=100)
    store.hits_down = True
    for i in range(10):
        assert await g.limit.wait(f"198.51.100.{i}") == 0.0  # a guard, never a gate
    assert (await g.admission.arrive(g.rooms["east"], None, "/east/", clock())).kind == "pass"
    from waitroom_proxy.service.guarded import HIT_BREAKER

    assert g.store.breaker_for(HIT_BREAKER).is_open
    assert not g.store.breaker_for("east").is_open and not g.store.breaker_for("west").is_open


async def test_no_request_waits_on_the_rate_limit_probe() -> None:
    """With its breaker open the rate limit is skipped on the request path (a request must not
    wait on two half-open probes, the limit's and its room's); the background flush probes it
    and closes it once its store answers."""
    clock = Clock()
    store = ShardDown(clock)
    g, _ = make_gate(store, clock, client_rate_limit=100)
    store.hits_down = True
    for i in range(3):
        await g.limit.wait(f"198.51.100.{i}")
    from waitroom_proxy.service.guarded import HIT_BREAKER

    breaker = g.store.breaker_for(HIT_BREAKER)
    assert breaker.is_open and store.__dict__["hit_calls"] == 3
    breaker.open_until = 0.0  # cool-down over: a request would be the probe, but is not
    assert await g.limit.wait("198.51.100.9") == 0.0
    assert store.__dict__["hit_calls"] == 3
    store.hits_down = False
    await Controller(g).flush()  # the controller's background pass probes it
    assert store.__dict__["hit_calls"] == 4 and not breaker.is_open
    await g.limit.wait("198.51.100.9")
    assert store.__dict__["hit_calls"] == 5


async def test_one_server_is_one_failure_domain() -> None:
    """Not sharded (one server, Sentinel, the in-process store): every room and the rate limit
    share one breaker, as every room fails with that server."""
    from waitroom_proxy.service.guarded import HIT_BREAKER

    clock = Clock()
    store = ShardDown(clock)
    store.sharded = False  # type: ignore[misc]
    g, pub = make_gate(store, clock, client_rate_limit=100)
    store.down = {"east", "west"}
    for _ in range(3):
        await g.admission.arrive(g.rooms["east"], None, "/east/", clock())
    assert (
        g.store.breaker_for("west")
        is g.store.breaker_for("east")
        is g.store.breaker_for(HIT_BREAKER)
    )
    assert g.store.breaker_for("west").is_open
    down = [e for e in pub.events if e.type == "system.store_down"]
    assert len(down) == 1 and "room" not in down[0].data
    assert g.metrics.room_store_up.labels("west")._value.get() == 0
