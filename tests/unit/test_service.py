"""The gatekeeper service with the in-process store, a fake clock and recorded events."""

from __future__ import annotations

from typing import Any

import pytest

from waitroom_proxy.adapters.log_events import MemoryPublisher
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.domain.policy import FailMode, RoomPolicy
from waitroom_proxy.domain.tokens import SessionSigner, TicketSigner
from waitroom_proxy.errors import StoreError
from waitroom_proxy.metrics import Metrics
from waitroom_proxy.service import Gatekeeper
from waitroom_proxy.service.controller import Controller
from waitroom_proxy.service.status import status_dict

SECRET = "svc-" + "s" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class BrokenStore(MemoryStore):
    broken = False
    calls = 0

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        ops = ("arrive", "heartbeat", "claim", "tick", "stats", "touch", "get_meta")
        if name in ops and object.__getattribute__(self, "broken"):

            async def fail(*a: Any, **k: Any) -> Any:
                raise StoreError("down")

            return fail
        return attr


def gate(
    policy: RoomPolicy, store: MemoryStore | None = None, clock: Clock | None = None
) -> tuple[Gatekeeper, MemoryPublisher, Clock]:
    clock = clock or Clock()
    pub = MemoryPublisher()
    g = Gatekeeper(
        (policy,),
        store=store or MemoryStore(clock),
        publisher=pub,
        tickets=TicketSigner([SECRET]),
        sessions=SessionSigner([SECRET]),
        metrics=Metrics(),
        clock=clock,
    )
    return g, pub, clock


async def test_direct_admission_then_queue_then_promotion() -> None:
    g, pub, clock = gate(RoomPolicy(name="r", capacity=1))
    room = g.rooms["r"]
    first = await g.admission.arrive(room, None, "/a", clock())
    assert first.kind == "pass" and first.session_token
    second = await g.admission.arrive(room, None, "/b", clock())
    assert second.kind == "wait" and second.status["position"] == 1
    ticket = g.admission.read_ticket(second.cookies[0][1])
    assert ticket is not None and ticket.return_to == "/b"
    s1 = g.sessions.session_for(first.session_token, room, clock())
    assert s1 is not None
    assert await g.admission.leave(None, s1)
    await Controller(g).run_once()
    admitted = await g.admission.heartbeat(ticket, ticket.return_to, clock())
    assert admitted is not None and admitted.kind == "pass"
    assert admitted.status["return_to"] == "/b"
    assert pub.types() == [
        "position.admitted", "session.started", "position.enqueued", "session.ended",
        "position.admitted", "session.started",
    ]  # fmt: skip
    # The left session is refused locally at once, even though its token is still valid.
    assert g.sessions.session_for(first.session_token, room, clock()) is None


async def test_sliding_renewal_and_absolute_cap() -> None:
    g, pub, clock = gate(RoomPolicy(name="r", capacity=1, session_ttl=100, session_max=250))
    room = g.rooms["r"]
    out = await g.admission.arrive(room, None, "/", clock())
    s = g.sessions.session_for(out.session_token or "", room, clock())
    assert s is not None
    assert g.sessions.renewal_for(room, s, clock()) is None  # fresh
    clock.now += 60
    token = g.sessions.renewal_for(room, s, clock())
    assert token is not None
    s2 = g.sessions.session_for(token, room, clock())
    assert s2 is not None and s2.expires_at == int(clock.now) + 100
    assert s2.started_at == s.started_at
    clock.now += 120
    s3 = g.sessions.session_for(g.sessions.renewal_for(room, s2, clock()) or "", room, clock())
    assert s3 is not None and s3.expires_at == s.started_at + 250, "never past session_max"
    assert "session.renewed" in pub.types()


async def test_activity_is_coalesced() -> None:
    store = MemoryStore()
    g, _, clock = gate(RoomPolicy(name="r", capacity=1, activity_interval=30), store)
    room = g.rooms["r"]
    out = await g.admission.arrive(room, None, "/", clock())
    s = g.sessions.session_for(out.session_token or "", room, clock())
    assert s is not None
    touched: list[int] = []
    real_reassert = store.reassert

    async def reassert(room_name: str, leases: Any, *rest: Any) -> Any:
        touched.append(len(leases))
        return await real_reassert(room_name, leases, *rest)

    store.reassert = reassert  # type: ignore[method-assign]
    for _ in range(100):
        g.sessions.note_activity(room, s, clock())
    await Controller(g).flush()
    assert touched == []  # admitted just now: already reported
    clock.now += 31
    for _ in range(100):
        g.sessions.note_activity(room, s, clock())
    await Controller(g).flush()
    await Controller(g).flush()
    assert touched == [1]


async def test_fail_closed_and_fail_open_share() -> None:
    clock = Clock()
    store = BrokenStore(clock)
    g, pub, _ = gate(RoomPolicy(name="c", capacity=5, fail_mode=FailMode.CLOSED), store, clock)
    store.broken = True
    out = await g.admission.arrive(g.rooms["c"], None, "/", clock())
    assert out.kind == "error"
    for _ in range(3):
        await g.admission.arrive(g.rooms["c"], None, "/", clock())
    assert g.store.breaker_for("c").is_open and "system.store_down" in pub.types()

    store2 = BrokenStore(clock)
    g2, pub2, _ = gate(
        RoomPolicy(name="o", capacity=5, admit_rate=60, fail_mode=FailMode.OPEN), store2, clock
    )
    store2.broken = True
    passed = 0
    for _ in range(50):
        out = await g2.admission.arrive(g2.rooms["o"], None, "/", clock())
        passed += out.kind == "fail_open"
    assert passed == 1, "60/min = 1/s: one newcomer in the same second"
    clock.now += 10
    for _ in range(50):
        out = await g2.admission.arrive(g2.rooms["o"], None, "/", clock())
        passed += out.kind == "fail_open"
    assert passed == 2, "the bucket holds one second's worth"
    assert "system.fail_open_engaged" in pub2.types()


async def test_revocation_reaches_another_replica() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    policy = RoomPolicy(name="r", capacity=2)
    a, _, _ = gate(policy, store, clock)
    b, _, _ = gate(policy, store, clock)
    out = await a.admission.arrive(a.rooms["r"], None, "/", clock())
    token = out.session_token or ""
    assert b.sessions.session_for(token, b.rooms["r"], clock()) is not None
    s = a.sessions.session_for(token, a.rooms["r"], clock())
    assert s is not None
    await a.sessions.end(a.rooms["r"], s.place_id, "revoked")
    await Controller(b).run_once()
    assert b.sessions.session_for(token, b.rooms["r"], clock()) is None


@pytest.mark.parametrize("field", ["capacity", "mode"])
async def test_runtime_overrides_apply(field: str) -> None:
    import json

    g, _, clock = gate(RoomPolicy(name="r", capacity=1))
    value = 7 if field == "capacity" else "queue_all"
    await g.store.set_meta("r", {"overrides": json.dumps({field: value})})
    await g.sync.refresh(g.rooms["r"])
    assert str(getattr(g.rooms["r"].policy, field)) == str(value)


async def test_fail_open_without_rate_is_still_bounded() -> None:
    clock = Clock()
    store = BrokenStore(clock)
    policy = RoomPolicy(name="o", capacity=600, session_ttl=300, fail_mode=FailMode.OPEN)
    g, _, _ = gate(policy, store, clock)
    store.broken = True
    passed = 0
    for _ in range(30):
        clock.now += 0.1
        out = await g.admission.arrive(g.rooms["o"], None, "/", clock())
        passed += out.kind == "fail_open"
    # capacity / session_ttl = 2 per second: about 6 in 3 s (+ the first token), never all 30.
    assert 5 <= passed <= 8


async def test_replicas_count_each_other_through_the_store() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    policy = RoomPolicy(name="r", capacity=2)
    replicas = [gate(policy, store, clock)[0] for _ in range(3)]
    for g in replicas:
        g.replica_id = f"rep{id(g)}"
    for _ in range(2):
        for g in replicas:
            await g.sync.refresh(g.rooms["r"])
    assert [g.sync.replicas_hint for g in replicas] == [3, 3, 3]
    clock.now += 30  # two replicas go away; the third keeps marking
    await replicas[0].sync.refresh(replicas[0].rooms["r"])
    await replicas[0].sync.refresh(replicas[0].rooms["r"])
    assert replicas[0].sync.replicas_hint == 1


async def test_renewal_is_not_signed_again_for_a_client_that_ignores_it() -> None:
    g, pub, clock = gate(RoomPolicy(name="r", capacity=1, session_ttl=100, session_max=3600))
    room = g.rooms["r"]
    out = await g.admission.arrive(room, None, "/", clock())
    s = g.sessions.session_for(out.session_token or "", room, clock())
    assert s is not None
    clock.now += 60
    first = g.sessions.renewal_for(room, s, clock())
    for _ in range(5):
        clock.now += 1
        assert g.sessions.renewal_for(room, s, clock()) == first
    assert pub.types().count("session.renewed") == 1


@pytest.mark.parametrize(
    ("p50", "text"), [(0, "0 minutes"), (1, "1 minute"), (60, "1 minute"), (61, "2 minutes")]
)
def test_cloudflare_wait_time_wording(p50: int, text: str) -> None:
    from waitroom_proxy.domain.eta import Eta

    g, _, clock = gate(RoomPolicy(name="r", capacity=1))
    body = status_dict(g.rooms["r"], "waiting", None, "/", clock(), Eta(p50=p50, p90=p50))
    assert body["cfWaitingRoom"]["waitTimeFormatted"] == text
    assert (
        status_dict(g.rooms["r"], "waiting", None, "/", clock())["cfWaitingRoom"][
            "waitTimeFormatted"
        ]
        == "unavailable"
    )


@pytest.mark.parametrize("activity_interval", [10.0, 30.0, 90.0])
async def test_the_slot_is_held_while_the_token_is_valid_and_freed_by_ttl_plus_5(
    activity_interval: float,
) -> None:
    """The README's promise: a session ends at most ``session_ttl`` after the last request,
    and its slot is freed at most 5 s after that; never while the visitor's token is valid.

    The visitor requests every 7 s for 77 s (the middleware's calls: ``session_for``,
    ``note_activity``, ``renewal_for``), then stops; the controller runs every second.
    """
    ttl = 100.0
    clock = Clock()
    store = MemoryStore(clock)
    policy = RoomPolicy(name="r", capacity=1, session_ttl=ttl, activity_interval=activity_interval)
    g, _, _ = gate(policy, store, clock)
    room = g.rooms["r"]
    start = clock.now
    out = await g.admission.arrive(room, None, "/", clock())
    token = out.session_token or ""
    controller = Controller(g, interval=1.0)

    async def second() -> None:
        clock.now += 1
        await Controller(g).flush()
        await controller.tick_room(room)

    last_request = start
    while clock.now - start < 77:
        session = g.sessions.session_for(token, room, clock())
        assert session is not None
        g.sessions.note_activity(room, session, clock())
        token = g.sessions.renewal_for(room, session, clock()) or token
        last_request = clock.now
        for _ in range(7):
            await second()
    freed_at = None
    while freed_at is None:
        active = (await store.stats("r")).active
        valid = g.sessions.session_for(token, room, clock()) is not None
        if valid:
            assert active == 1, "the store freed the slot of a valid token"
        if active == 0:
            freed_at = clock.now
        else:
            # + 2: the simulated controller flushes activity and ticks once a second.
            assert clock.now - last_request <= ttl + 5 + 2, "slot held past session_ttl + 5 s"
            await second()
    assert freed_at - last_request <= ttl + 5 + 2


@pytest.mark.parametrize(
    ("reason", "event", "metric"),
    [
        ("left", "session.ended", "left"),
        ("completed", "session.ended", "completed"),
        ("revoked", "session.revoked", "revoked"),
        ("admin", "session.revoked", "revoked"),
    ],
)
async def test_every_end_of_a_session_is_the_same_end(reason: str, event: str, metric: str) -> None:
    """A leave, the origin's complete/revoke and the operator's revoke end a session one way:
    refused here at once, the slot freed in the store, one event, one count."""
    g, pub, clock = gate(RoomPolicy(name="r", capacity=1))
    room = g.rooms["r"]
    admitted = await g.admission.arrive(room, None, "/", clock())
    token = admitted.session_token or ""
    session = g.sessions.session_for(token, room, clock())
    assert session is not None
    assert (await g.sessions.end(room, session.place_id, reason)).value == "active"
    assert g.sessions.session_for(token, room, clock()) is None
    assert (room.name, session.place_id) in g.sessions.spent
    assert pub.types()[-1] == event and pub.events[-1].data["reason"] == reason
    ended = g.metrics.registry.get_sample_value(
        "waitroom_sessions_ended_total", {"room": "r", "reason": metric}
    )
    assert ended == 1.0
    assert (await g.admission.arrive(room, None, "/", clock())).kind == "pass"  # the slot is free


class LeaveFails(MemoryStore):
    broken = False

    async def leave(self, room: str, place_id: str, revoke_for_ms: int) -> Any:
        if self.broken:
            raise StoreError("down")
        return await super().leave(room, place_id, revoke_for_ms)


async def test_an_end_the_store_did_not_hear_is_not_announced() -> None:
    clock = Clock()
    store = LeaveFails(clock)
    g, pub, _ = gate(RoomPolicy(name="r", capacity=1), store=store, clock=clock)
    room = g.rooms["r"]
    admitted = await g.admission.arrive(room, None, "/", clock())
    token = admitted.session_token or ""
    session = g.sessions.session_for(token, room, clock())
    assert session is not None
    before = pub.types()
    store.broken = True
    with pytest.raises(StoreError):
        await g.sessions.end(room, session.place_id, "completed")
    assert g.sessions.session_for(token, room, clock()) is None  # refused here all the same
    assert pub.types() == before  # the idle expiry will say it ended, once
