"""One place, one session (issue 15, scalper defence): a ticket copied to many clients.

A bot farm that queues once and copies the ticket cookie to many clients must get one session
for that one place, however the clients race (the store's claim is one atomic step), on one
replica or several; every loser is told why ("used"), not sent back to the queue silently as
if its place had expired. Each test runs on the in-process store and on a real Redis server,
through real uvicorn proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import pytest

from tests.reliability.rig import JSON, admitted_client, client, proxy_rig, report
from waitroom_proxy.domain.policy import RoomPolicy

ROOM = "oneplace"
CLONES = 24


@pytest.fixture
def stores(replica_stores: list[Any]) -> list[Any]:
    return replica_stores


def session_cookies(r: httpx.Response) -> list[str]:
    return [v for v in r.headers.get_list("set-cookie") if v.startswith("waitroom_session=ey")]


async def until_promoted(store: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (await store.stats(ROOM)).promoted < 1:
        assert time.monotonic() < deadline, "the waiter was never promoted"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("path", ["heartbeat", "page"])
async def test_one_ticket_raced_by_many_clients_yields_one_session(
    stores: list[Any], path: str
) -> None:
    policy = RoomPolicy(name=ROOM, capacity=1, heartbeat_interval=1)
    server = {"client_rate_limit": 0}
    async with contextlib.AsyncExitStack() as stack:
        rigs = [
            await stack.enter_async_context(proxy_rig(policy, store=s, server=server))
            for s in stores
        ]
        holder = await admitted_client(rigs[0].url)
        visitor = client(rigs[0].url)
        assert (await visitor.get("/sale", headers=JSON)).json()["position"] == 1
        kept = visitor.cookies["waitroom_ticket"]
        clones = [
            client(rigs[i % len(rigs)].url, headers={"cookie": f"waitroom_ticket={kept}"})
            for i in range(CLONES)
        ]
        await holder.post("/_waitroom/leave")
        await until_promoted(stores[0])

        async def race(c: httpx.AsyncClient) -> httpx.Response:
            if path == "heartbeat":
                return await c.post("/_waitroom/heartbeat")
            return await c.get("/sale", headers=JSON)

        answers = await asyncio.gather(*(race(c) for c in clones))
        minted = [cookie for r in answers for cookie in session_cookies(r)]
        bodies = [r.json() for r in answers]
        statuses = sorted(b.get("status", "origin") for b in bodies)
        stats = await stores[0].stats(ROOM)
        late = await clones[0].post("/_waitroom/heartbeat")
        report(
            f"one ticket, {CLONES} clients, {len(rigs)} replica(s), via {path}",
            sessions_minted=len(minted),
            active=stats.active,
            statuses=",".join(sorted(set(statuses))),
        )
        assert len(minted) == 1, statuses
        assert stats.active == 1 and stats.promoted == 0
        assert all(r.status_code == 200 for r in answers)
        winners = [b for b in bodies if b.get("status") == "admitted" or b == {"origin": True}]
        assert len(winners) == 1, statuses
        losers = [b for b in bodies if b not in winners]
        if path == "heartbeat":
            # The page's poll: every loser hears that its place was used elsewhere.
            assert {b["status"] for b in losers} == {"used"}, statuses
        else:
            # A protected URL: a loser of the race itself hears "used"; one that arrives after
            # the claim is a newcomer at the back (DESIGN §5), never a second session.
            assert {b["status"] for b in losers} <= {"used", "waiting"}, statuses
            assert all(b["position"] >= 1 for b in losers if b["status"] == "waiting")
        assert late.json()["status"] == "used", "a later poll with the copy must say why"
        assert not session_cookies(late)
        for c in (holder, visitor, *clones):
            await c.aclose()
