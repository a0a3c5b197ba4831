"""Proof of work before a ticket, through the real proxy (issue 15, scalper defence).

A room with ``pow_difficulty`` gives a newcomer a challenge, not a place; a solution (found
here with ``domain.pow.solve``, as an API client would) buys one ticket, once; every refusal is
a precise 4xx that leaves the visitor's cookies alone. Runs on the in-process store and on a
real Redis server (the replay record lives in the store, so two replicas share it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.reliability.rig import JSON, admitted_client, client, proxy_rig
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.pow import solve

ROOM = "powroom"
BITS = 10  # cheap for tests; the protocol is the same at 21


@pytest.fixture
def stores(replica_stores: list[Any]) -> list[Any]:
    return replica_stores


def solved(status: dict[str, Any]) -> dict[str, Any]:
    pow_ = status["pow"]
    assert pow_["algorithm"] == "wpow1" and pow_["difficulty"] == BITS
    return {"challenge": pow_["challenge"], "counter": str(solve(pow_["challenge"], BITS))}


@contextlib.asynccontextmanager
async def rigs(stores: list[Any], capacity: int = 1) -> AsyncIterator[list[Any]]:
    policy = RoomPolicy(name=ROOM, capacity=capacity, heartbeat_interval=1, pow_difficulty=BITS)
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                proxy_rig(policy, store=s, server={"client_rate_limit": 0})
            )
            for s in stores
        ]


async def test_a_newcomer_gets_a_challenge_and_a_solution_buys_one_place(
    stores: list[Any],
) -> None:
    async with rigs(stores) as (rig, *_):
        holder_c = client(rig.url)
        first = (await holder_c.get("/sale?x=1", headers=JSON)).json()
        assert first["status"] == "challenge", "no place without work"
        assert "waitroom_ticket" not in holder_c.cookies
        page = await holder_c.get("/sale")
        assert (
            "wr-challenge" in page.text
            and "worker-src 'self'" in page.headers["content-security-policy"]
        )
        r = await holder_c.post("/_waitroom/pow", json={**solved(first), "return_to": "/sale?x=1"})
        assert r.status_code == 200 and r.json()["status"] == "admitted", r.text
        assert holder_c.cookies.get("waitroom_session"), "a free room admits at once"
        assert (await holder_c.get("/sale")).json() == {"origin": True}

        visitor = client(rig.url)
        challenge = (await visitor.get("/sale", headers=JSON)).json()
        answer = solved(challenge)
        r = await visitor.post("/_waitroom/pow", json=answer)
        assert r.status_code == 200 and r.json()["status"] == "waiting", r.text
        assert r.json()["position"] == 1 and visitor.cookies.get("waitroom_ticket")
        # The ticket holder keeps the place with no more work.
        again = (await visitor.get("/sale", headers=JSON)).json()
        assert (again["status"], again["position"]) == ("waiting", 1)
        for c in (holder_c, visitor):
            await c.aclose()


async def test_a_solution_is_accepted_once_across_replicas(stores: list[Any]) -> None:
    async with rigs(stores) as all_rigs:
        holder = await solved_session(all_rigs[0].url)
        answer = await fresh_answer(all_rigs[0].url)
        bots = [client(all_rigs[i % len(all_rigs)].url) for i in range(12)]
        answers = await asyncio.gather(*(b.post("/_waitroom/pow", json=answer) for b in bots))
        codes = sorted(r.status_code for r in answers)
        assert codes.count(200) == 1, codes
        refused = [r.json() for r in answers if r.status_code != 200]
        assert all(r.status_code in (200, 409) for r in answers), codes
        assert {b["reason"] for b in refused} == {"replayed"}
        assert all(b["pow"]["challenge"] != answer["challenge"] for b in refused), (
            "a refusal carries a fresh challenge to solve instead"
        )
        stats = await stores[0].stats(ROOM)
        assert stats.queue_length == 1, "one solution, one place"
        for c in (holder, *bots):
            await c.aclose()


async def fresh_answer(url: str) -> dict[str, Any]:
    """A solved challenge, asked for by a client of its own (closed again)."""
    async with client(url) as c:
        return solved((await c.get("/s", headers=JSON)).json())


async def solved_session(url: str) -> httpx.AsyncClient:
    c = client(url)
    status = (await c.get("/sale", headers=JSON)).json()
    r = await c.post("/_waitroom/pow", json=solved(status))
    assert r.json()["status"] == "admitted", r.text
    return c


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda a: {**a, "counter": str(int(a["counter"]) + 1)}, "wrong_solution"),
        (lambda a: {**a, "counter": "-1"}, "malformed"),
        (lambda a: {**a, "counter": True}, "malformed"),
        (lambda a: {**a, "counter": "1" * 40}, "malformed"),
        (lambda a: {**a, "challenge": a["challenge"][:-2] + "AA"}, "bad_signature"),
        (lambda a: {**a, "challenge": a["challenge"].replace(ROOM, "other")}, "malformed"),
        (lambda a: {"counter": a["counter"]}, "malformed"),
        (lambda a: [a], "malformed"),
        (lambda a: "x" * 5000, "malformed"),
    ],
)
async def test_bad_solutions_get_a_precise_400_and_keep_the_place(
    stores: list[Any], mutate: Any, reason: str
) -> None:
    async with rigs(stores) as (rig, *_):
        holder = await solved_session(rig.url)
        visitor = client(rig.url)
        r = await visitor.post(
            "/_waitroom/pow", json=solved((await visitor.get("/s", headers=JSON)).json())
        )
        assert r.json()["position"] == 1
        ticket = visitor.cookies["waitroom_ticket"]
        answer = await fresh_answer(rig.url)
        r = await visitor.post("/_waitroom/pow", json=mutate(answer))
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["status"] == "refused" and body["reason"] == reason, body
        assert body["message"], "a message a person can read"
        assert not r.headers.get_list("set-cookie"), "a refusal never touches the cookies"
        assert visitor.cookies["waitroom_ticket"] == ticket
        beat = (await visitor.post("/_waitroom/heartbeat")).json()
        assert (beat["status"], beat["position"]) == ("waiting", 1), "the place is kept"
        for c in (holder, visitor):
            await c.aclose()


async def test_an_expired_challenge_is_refused_with_a_fresh_one(stores: list[Any]) -> None:
    async with rigs(stores) as (rig, *_):
        proofs = rig.gate.proofs
        old = proofs.signer.issue(ROOM, BITS, rig.gate.clock() - proofs.signer.ttl - 1)
        answer = {"challenge": old.text, "counter": str(solve(old.text, BITS))}
        async with client(rig.url) as c:
            r = await c.post("/_waitroom/pow", json=answer)
        assert r.status_code == 400 and r.json()["reason"] == "expired"
        assert r.json()["pow"]["difficulty"] == BITS


async def test_raising_the_difficulty_live_refuses_easier_solutions(stores: list[Any]) -> None:
    async with rigs(stores) as (rig, *_):
        async with client(rig.url) as c:
            answer = solved((await c.get("/s", headers=JSON)).json())
            room = rig.gate.rooms[ROOM]
            room.apply(False, {"pow_difficulty": BITS + 2})
            r = await c.post("/_waitroom/pow", json=answer)
            assert r.status_code == 400 and r.json()["reason"] == "too_easy"
            assert r.json()["pow"]["difficulty"] == BITS + 2
            room.apply(False, {"pow_difficulty": 0})
            off = (await c.get("/s", headers=JSON)).json()
            assert off == {"origin": True}, "work off: a free room admits at once"


async def test_without_work_a_room_queues_as_before(stores: list[Any]) -> None:
    policy = RoomPolicy(name=ROOM, capacity=1, heartbeat_interval=1)
    async with proxy_rig(policy, store=stores[0], server={"client_rate_limit": 0}) as rig:
        holder = await admitted_client(rig.url)
        async with client(rig.url) as c:
            assert (await c.get("/s", headers=JSON)).json()["status"] == "waiting"
        await holder.aclose()
