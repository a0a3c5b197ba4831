"""Kept tickets replayed through the real proxy (issue 11, items 5 and 6; DESIGN §5).

A ticket admits at most once: after its admission, the end of that session or its abandonment
it carries no position, and a store outage does not bring it back. Each test runs on the
in-process store and on a real Redis server; the proxy is real uvicorn in front of a counting
origin.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.fixtures.faultproxy import FaultProxy
from tests.reliability.rig import JSON, admitted_client, client, proxy_rig, report
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.domain.policy import FailMode, RoomPolicy

ROOM = "replay"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    server = request.getfixturevalue("redis_server")
    server.flush()
    s = RedisStore(server.url, timeout=2.0)
    try:
        yield s
    finally:
        await s.close()


async def poll_until(c: httpx.AsyncClient, status: str, timeout: float = 15.0) -> dict[str, Any]:
    """Heartbeat until the answer has ``status`` (the controller ticks every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = (await c.post("/_waitroom/heartbeat")).json()
        if body["status"] == status or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.1)


def replayer(url: str, ticket: str) -> httpx.AsyncClient:
    """A client that sends a kept ticket value (and nothing else) with every request."""
    return client(url, headers={"cookie": f"waitroom_ticket={ticket}"})


def session_cookies(r: httpx.Response) -> list[str]:
    return [v for v in r.headers.get_list("set-cookie") if v.startswith("waitroom_session=ey")]


async def test_ticket_replayed_after_its_session_ended_is_a_newcomer(store: Any) -> None:
    policy = RoomPolicy(name=ROOM, capacity=1, heartbeat_interval=1)
    async with proxy_rig(policy, store=store, server={"client_rate_limit": 0}) as rig:
        holder = await admitted_client(rig.url)
        visitor = client(rig.url)
        assert (await visitor.get("/sale", headers=JSON)).json()["position"] == 1
        kept = visitor.cookies["waitroom_ticket"]
        later = [client(rig.url) for _ in range(2)]
        for i, c in enumerate(later):
            assert (await c.get("/sale", headers=JSON)).json()["position"] == i + 2
        await holder.post("/_waitroom/leave")
        assert (await poll_until(visitor, "admitted"))["status"] == "admitted"
        assert "waitroom_ticket" not in visitor.cookies, "the ticket cookie is deleted"
        assert (await visitor.post("/_waitroom/leave")).json()["status"] == "left"
        assert (await poll_until(later[0], "admitted"))["status"] == "admitted"
        # The session ended; the kept ticket comes back.
        async with replayer(rig.url, kept) as thief:
            beat = await thief.post("/_waitroom/heartbeat")
            page = await thief.get("/sale", headers=JSON)
        behind = (await later[1].post("/_waitroom/heartbeat")).json()
        replayed = page.json()
        report(
            "ticket replayed after its session",
            heartbeat_status=beat.json()["status"],
            page_status=replayed["status"],
            page_position=replayed.get("position"),
            later_waiter_position=behind["position"],
        )
        assert beat.json()["status"] == "used"
        assert beat.json().get("position", 0) == 0
        assert behind["position"] == 1, "a replay overtook a later waiter"
        assert replayed["status"] == "waiting" and replayed["position"] == 2, replayed
        new_ticket = rig.gate.admission.tickets.loads(page.cookies["waitroom_ticket"])
        assert new_ticket.place_id != rig.gate.admission.tickets.loads(kept).place_id
        for c in (holder, visitor, *later):
            await c.aclose()


@pytest.mark.parametrize("renewal", [True, False], ids=["sliding", "fixed"])
async def test_ticket_replayed_while_its_session_is_active_mints_nothing(
    store: Any, renewal: bool
) -> None:
    policy = RoomPolicy(name=ROOM, capacity=1, heartbeat_interval=1, session_renewal=renewal)
    async with proxy_rig(policy, store=store, server={"client_rate_limit": 0}) as rig:
        holder = await admitted_client(rig.url)
        visitor = client(rig.url)
        await visitor.get("/sale", headers=JSON)
        kept = visitor.cookies["waitroom_ticket"]
        await holder.post("/_waitroom/leave")
        assert (await poll_until(visitor, "admitted"))["status"] == "admitted"
        hits = rig.origin.hits["/sale"]
        minted = passed = 0
        for _ in range(5):
            async with replayer(rig.url, kept) as thief:
                beat = await thief.post("/_waitroom/heartbeat")
                page = await thief.get("/sale", headers=JSON)
            minted += len(session_cookies(beat)) + len(session_cookies(page))
            passed += page.json() == {"origin": True}
            assert beat.json()["status"] == "used"
            assert page.json()["status"] == "waiting"
        stats = await store.stats(ROOM)
        report(
            f"ticket replayed while active ({'sliding' if renewal else 'fixed'})",
            sessions_minted=minted,
            replays_passed=passed,
            store_active=stats.active,
        )
        assert minted == 0 and passed == 0
        assert rig.origin.hits["/sale"] == hits
        assert stats.active == 1, "capacity 1: one session"
        # The visitor's own session is untouched.
        assert (await visitor.get("/sale")).json() == {"origin": True}
        await holder.aclose()
        await visitor.aclose()


@pytest.mark.redis
async def test_store_outage_revives_no_abandoned_ticket(redis_server: Any) -> None:
    """A waiter who stopped polling lost the place; a bot replaying that ticket while the store
    is down must not come back at its old score after the outage. A waiter who kept polling
    through an outage longer than ``abandon_after`` keeps the place."""
    redis_server.flush()
    shift = [0.0]

    def clock() -> float:
        return time.time() + shift[0]

    async with FaultProxy("127.0.0.1", redis_server.port) as fp:
        store = RedisStore(fp.url("redis", "/0"), timeout=0.3)

        def advance(seconds: float) -> None:
            shift[0] += seconds
            store._advance_clock_for_tests(int(seconds * 1000))

        policy = RoomPolicy(name=ROOM, capacity=1, heartbeat_interval=1, abandon_after=120,
                            fail_mode=FailMode.CLOSED)  # fmt: skip
        try:
            async with proxy_rig(
                policy, store=store, server={"client_rate_limit": 0}, clock=clock
            ) as rig:
                holder = await admitted_client(rig.url)
                gone, stayed = client(rig.url), client(rig.url)
                assert (await gone.get("/sale", headers=JSON)).json()["position"] == 1
                assert (await stayed.get("/sale", headers=JSON)).json()["position"] == 2
                stale = gone.cookies["waitroom_ticket"]
                for _ in range(2):  # "gone" stops polling; "stayed" polls every 70 s
                    advance(70)
                    assert (await stayed.post("/_waitroom/heartbeat")).json()["status"] == "waiting"
                await _until(lambda: rig.events.times("position.expired"), 10)
                assert (await stayed.post("/_waitroom/heartbeat")).json()["position"] == 1

                fp.refuse = True
                fp.reset()
                # Through an outage longer than abandon_after, the waiter who stayed keeps
                # polling, and so does a bot replaying the abandoned ticket.
                refreshed: list[str] = []
                for step in range(3):
                    if step:
                        advance(65)
                    assert (await stayed.post("/_waitroom/heartbeat")).status_code == 503
                    async with replayer(rig.url, refreshed[-1] if refreshed else stale) as bot:
                        r = await bot.post("/_waitroom/heartbeat")
                    assert r.status_code == 503
                    refreshed += [
                        v.split(";")[0].split("=", 1)[1]
                        for v in r.headers.get_list("set-cookie")
                        if v.startswith("waitroom_ticket=") and "Max-Age=0" not in v
                    ]
                fp.heal()
                await _until(lambda: rig.gate.store.ok, 10)
                async with replayer(rig.url, refreshed[-1] if refreshed else stale) as bot:
                    back = (await bot.post("/_waitroom/heartbeat")).json()
                kept_place = await poll_until(stayed, "waiting")
                report(
                    "store outage and a stale ticket",
                    tickets_resigned_during_outage=len(refreshed),
                    stale_ticket_after_outage=back["status"],
                    stale_ticket_position=back.get("position"),
                    polling_waiter_position=kept_place.get("position"),
                )
                assert back["status"] == "expired", back
                assert kept_place["status"] == "waiting" and kept_place["position"] == 1
                assert refreshed == [], "a ticket was re-signed without the store"
                for c in (holder, gone, stayed):
                    await c.aclose()
        finally:
            await store.close()


async def _until(predicate: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.mark.redis
async def test_replays_across_a_store_restart_and_two_replicas(redis_server: Any) -> None:
    """Redis restarts empty while two replicas serve one room. Tickets kept from a place that
    was admitted and left (through the other replica), and from one still active, take no
    position afterwards at either replica; the waiter who kept polling keeps the head."""
    redis_server.flush()
    policy = RoomPolicy(name=ROOM, capacity=2, heartbeat_interval=1, abandon_after=60)
    one, two = RedisStore(redis_server.url, timeout=0.3), RedisStore(redis_server.url, timeout=0.3)
    try:
        async with (
            proxy_rig(policy, store=one, server={"client_rate_limit": 0}) as a,
            proxy_rig(policy, store=two, server={"client_rate_limit": 0}) as b,
        ):
            holders = [await admitted_client(a.url) for _ in range(2)]
            left_v, active_v, waiter = client(a.url), client(b.url), client(b.url)
            for i, c in enumerate((left_v, active_v, waiter)):
                assert (await c.get("/sale", headers=JSON)).json()["position"] == i + 1
            kept = {"left": left_v.cookies["waitroom_ticket"],
                    "active": active_v.cookies["waitroom_ticket"]}  # fmt: skip
            await holders[0].post("/_waitroom/leave")
            assert (await poll_until(left_v, "admitted"))["status"] == "admitted"
            await holders[1].post("/_waitroom/leave")
            assert (await poll_until(active_v, "admitted"))["status"] == "admitted"
            # left_v's session ends through replica b (its cookies work on any replica).
            async with client(b.url, cookies=left_v.cookies) as via_b:
                assert (await via_b.post("/_waitroom/leave")).json()["status"] == "left"
            assert (await waiter.post("/_waitroom/heartbeat")).json()["position"] == 1

            redis_server.kill()
            redis_server.start()  # same port, empty
            await asyncio.sleep(1.0)  # each replica notices the loss at its next tick
            answers: dict[str, list[str]] = {}
            for name, value in kept.items():
                for rig in (a, b):
                    async with replayer(rig.url, value) as thief:
                        beat = (await thief.post("/_waitroom/heartbeat")).json()
                        page = await thief.get("/sale", headers=JSON)
                    new = page.cookies.get("waitroom_ticket")
                    same_place = bool(new) and (
                        rig.gate.admission.tickets.loads(new).place_id
                        == rig.gate.admission.tickets.loads(value).place_id
                    )
                    answers.setdefault(name, []).append(
                        f"{beat['status']}/{page.json().get('status')}"
                        f"{'/same place' if same_place else ''}"
                    )
            head = await poll_until(waiter, "waiting")
            report("replays after a store restart", **{k: ",".join(v) for k, v in answers.items()},
                   waiter_position=head.get("position"))  # fmt: skip
            for name, got in answers.items():
                assert all(g.startswith("used/") and "same place" not in g for g in got), (
                    name,
                    got,
                )
            assert head["status"] == "waiting" and head["position"] == 1, head
            for c in (*holders, left_v, active_v, waiter):
                await c.aclose()
    finally:
        await one.close()
        await two.close()
        redis_server.flush()
