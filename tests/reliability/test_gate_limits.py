"""What a visitor's requests may cost, and which room answers (issue 11, items 9 and 11).

- The per-client rate limit is counted before a ticket is verified, on the protected URLs and
  on the heartbeat: a flood of cookie values costs one counter each, no signature check.
- IPv6 clients are counted per /64 (one subscriber's prefix), IPv4 per address.
- ``/status`` and ``/heartbeat`` answer for the ticket's room: a session for another room is
  not "admitted" there (the page would loop between the two).
- Fail-open admits visitors, not requests: the admitted visitor gets a session, so the page's
  assets do not spend the local rate; the store counts those sessions once it is back.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.fixtures.faultproxy import FaultProxy
from tests.reliability.rig import JSON, admitted_client, client, proxy_rig, report
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.domain.policy import FailMode, RoomPolicy
from waitroom_proxy.domain.tokens import Ticket


@pytest.mark.parametrize("where", ["protected", "heartbeat"])
async def test_rate_limit_comes_before_the_ticket_is_read(where: str) -> None:
    limit = 5
    policy = RoomPolicy(name="cost", capacity=1)
    async with proxy_rig(policy, store=MemoryStore(), server={"client_rate_limit": limit}) as rig:
        holder = await admitted_client(rig.url)
        signer = rig.gate.admission.tickets
        verified: list[str] = []
        real = signer._loads

        def counting(value: str) -> Ticket:
            verified.append(value)
            return real(value)

        signer._loads = counting  # type: ignore[method-assign]
        codes: list[int] = []
        now = int(time.time())
        for i in range(40):
            value = signer.dumps(Ticket("cost", f"forged-{i}", 1, now, now, -1, "/"))
            async with client(rig.url, headers={"cookie": f"waitroom_ticket={value}"}) as c:
                if where == "protected":
                    r = await c.get("/x", headers=JSON)
                else:
                    r = await c.post("/_waitroom/heartbeat")
                codes.append(r.status_code)
        await holder.aclose()
    report(f"ticket flood ({where})", requests=len(codes), limited=codes.count(429),
           tickets_verified=len(verified))  # fmt: skip
    assert codes.count(429) >= 40 - limit - 3
    assert len(verified) <= limit + 3, "tickets verified past the rate limit"


async def test_an_ipv6_64_is_one_client() -> None:
    limit = 5
    policy = RoomPolicy(name="six", capacity=1)
    server = {"client_rate_limit": limit, "trusted_proxies": ("127.0.0.1/32",)}
    async with proxy_rig(policy, store=MemoryStore(), server=server) as rig:
        holder = await admitted_client(rig.url)
        codes = []
        for i in range(1, 21):
            address = f"2001:db8:1:2:{i:x}:{i * 7:x}:{i * 13:x}:{i * 31:x}"
            async with client(rig.url, headers={"x-forwarded-for": address}) as c:
                codes.append((await c.get("/x", headers=JSON)).status_code)
        async with client(rig.url, headers={"x-forwarded-for": "2001:db8:1:3::1"}) as c:
            other_net = (await c.get("/x", headers=JSON)).status_code
        await holder.aclose()
    report("one /64, 20 addresses", accepted=codes.count(200), limited=codes.count(429))
    assert codes.count(200) <= limit + 1
    assert codes.count(429) >= 20 - limit - 1
    assert other_net == 200, "another /64 is another client"


async def test_status_answers_for_the_tickets_room() -> None:
    """A visitor admitted to room A waits in room B (full): B's page must say "waiting", not
    "admitted" (A's session), or it navigates back to B's URL and queues again, forever."""
    rooms = (
        RoomPolicy(name="a", capacity=5, match=("*/a/",)),
        RoomPolicy(name="b", capacity=1, match=("*/b/",)),
    )
    async with proxy_rig(rooms, store=MemoryStore(), server={"client_rate_limit": 0}) as rig:
        holder = await admitted_client(rig.url, "/b/x")
        async with client(rig.url) as visitor:
            assert (await visitor.get("/a/x")).json() == {"origin": True}
            assert visitor.cookies.get("waitroom_session")
            waiting = (await visitor.get("/b/x", headers=JSON)).json()
            assert (waiting["status"], waiting["room"]) == ("waiting", "b")
            beat = (await visitor.post("/_waitroom/heartbeat")).json()
            status = (await visitor.get("/_waitroom/status")).json()
        await holder.aclose()
    report("status with another room's session", heartbeat=(beat["status"], beat["room"]),
           status=(status["status"], status["room"]))  # fmt: skip
    assert (beat["status"], beat["room"]) == ("waiting", "b")
    assert (status["status"], status["room"]) == ("waiting", "b")


@pytest.mark.redis
async def test_fail_open_meters_visitors_not_requests(redis_server: Any) -> None:
    """Store down, fail-open at 1 admission a minute: the first visitor's page and its assets
    all pass (one admission); the next visitor waits; once the store is back, the fail-open
    session is counted against capacity."""
    redis_server.flush()
    policy = RoomPolicy(name="open", capacity=3, admit_rate=1, fail_mode=FailMode.OPEN)
    async with FaultProxy("127.0.0.1", redis_server.port) as fp:
        store = RedisStore(fp.url("redis", "/0"), timeout=0.3)
        try:
            async with proxy_rig(policy, store=store, server={"client_rate_limit": 0}) as rig:
                async with client(rig.url) as warm:
                    assert (await warm.get("/warm")).status_code == 200  # the room exists
                fp.refuse = True
                fp.reset()
                async with client(rig.url) as first, client(rig.url) as second:
                    page = await first.get("/page", headers=JSON)
                    assets = [await first.get(f"/asset/{i}", headers=JSON) for i in range(5)]
                    other = await second.get("/page", headers=JSON)
                passed = [r.json() == {"origin": True} for r in (page, *assets)]
                fp.heal()
                counted = await _active_at_least(RedisStore(redis_server.url), "open", 2, 10)
            report("fail-open", first_visitor_passed=f"{sum(passed)}/{len(passed)}",
                   second_visitor=other.status_code, store_active_after=counted)  # fmt: skip
            assert all(passed), passed
            assert other.status_code == 503 and other.json()["status"] == "waiting"
            assert counted == 2, "warm-up session + the fail-open session"
        finally:
            await store.close()


async def _active_at_least(store: RedisStore, room: str, n: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    try:
        while True:
            active = (await store.stats(room)).active
            if active >= n or time.monotonic() > deadline:
                return active
            await asyncio.sleep(0.1)
    finally:
        await store.close()
