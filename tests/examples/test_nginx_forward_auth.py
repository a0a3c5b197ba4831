"""``examples/nginx/nginx.conf`` run by real nginx, in front of a real origin, with
waitroom-proxy in forward-auth mode on real Redis: the whole journey, the cache, revocation,
and the requests a visitor crafts to get past the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.fixtures.asgi_server import serve_asgi
from tests.fixtures.balancers import shipped_caddy, shipped_nginx
from tests.fixtures.origin import Origin, raw_exchange, run_origin
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import Bypass, RoomPolicy
from waitroom_proxy.server import build_app

SECRET = "nginx-fwd-secret-" + "n" * 32
ROOM = RoomPolicy(
    name="shop", capacity=1, match=("*/",), heartbeat_interval=1, bypass=Bypass(paths=("/static/",))
)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def stack(
    store: RedisStore,
    *,
    auth_cache_seconds: int = 5,
    balancer: str = "nginx",
    room: RoomPolicy = ROOM,
) -> AsyncIterator[tuple[str, Origin, Any]]:
    """The origin, waitroom-proxy in forward-auth mode, and the shipped config of
    ``balancer`` (``nginx`` or ``caddy``) in front."""
    settings = Settings(rooms=(room,), secret=SECRET, auth_cache_seconds=auth_cache_seconds)
    app = build_app(settings, store=store, controller_interval=0.1, access_log=False)
    lb = shipped_nginx if balancer == "nginx" else shipped_caddy
    async with run_origin() as origin, serve_asgi(app) as waitroom:
        async with lb(port_of(origin.url), port_of(waitroom)) as url:
            yield url, origin, app.engine


def header(echo: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k == name]


async def until_admitted(client: httpx.AsyncClient) -> None:
    """Poll as the waiting page does (the controller promotes on its own tick)."""
    async with asyncio.timeout(60):
        while (await client.post("/_waitroom/heartbeat")).json()["status"] != "admitted":
            await asyncio.sleep(0.2)


async def test_journey_through_shipped_nginx(redis_store: RedisStore) -> None:
    await journey(redis_store, "nginx")


async def journey(redis_store: RedisStore, balancer: str) -> None:
    """Queued, admitted automatically, the session cookie, the origin sees the verified token
    and never the room's cookies, leave frees the slot."""
    async with (
        stack(redis_store, balancer=balancer) as (url, origin, _),
        httpx.AsyncClient(base_url=url, follow_redirects=True) as a,
        httpx.AsyncClient(base_url=url) as b,
    ):
        # A: room at once. 401 at /auth, the follow-up gives a session and sends A back.
        a.cookies.set("cart", "7")
        r = await a.get("/echo/sale?x=1")
        assert r.status_code == 200, r.text
        echo = r.json()
        token = a.cookies["waitroom_session"]
        assert header(echo, "waitroom-verified") == [token], "the origin sees the verified token"
        assert header(echo, "cookie") == ["cart=7"], "never the room's cookies"
        a.cookies.set("z", "9")  # after the room's cookie in the header
        r = await a.get("/echo/sale", headers={"accept": "application/json"})
        assert header(r.json(), "cookie") in (["cart=7; z=9"], ["z=9; cart=7"])
        assert echo["raw_path"] == "/echo/sale" and echo["query_string"] == "x=1"
        # B: the room is full: the waiting page's JSON from the follow-up, and a ticket.
        r = await b.get("/echo/sale", headers={"accept": "application/json"})
        assert r.json()["status"] == "waiting" and "waitroom_ticket" in b.cookies
        seen = len(origin.requests)
        r = await b.get("/echo/sale", headers={"accept": "application/json"})
        assert r.json()["status"] == "waiting" and r.json()["position"] == 1
        assert len(origin.requests) == seen, "a waiting visitor never reaches the origin"
        # A leaves: the slot is free at once, B is admitted automatically.
        left = await a.post("/_waitroom/leave")
        assert left.json()["status"] == "left"
        await until_admitted(b)
        r = await b.get("/echo/sale")
        assert r.status_code == 200
        assert header(r.json(), "waitroom-verified") == [b.cookies["waitroom_session"]]
        # A is back to the queue (its session ended).
        r = await a.get("/echo/sale", headers={"accept": "application/json"})
        assert r.json()["status"] == "waiting"


async def test_cached_pass_is_per_session_cookie(redis_store: RedisStore) -> None:
    async with (
        stack(redis_store, auth_cache_seconds=600) as (url, origin, engine),
        httpx.AsyncClient(base_url=url, follow_redirects=True) as a,
    ):
        assert (await a.get("/echo/sale")).status_code == 200
        assert (await a.get("/echo/sale")).status_code == 200
        token = a.cookies["waitroom_session"]
        # The cached pass is only that cookie's (the one slot is A's: others wait).
        seen = len(origin.requests)
        async with httpx.AsyncClient(base_url=url) as other:
            for cookie in ("", "waitroom_session=forged", f"waitroom_session={token}x",
                           f"waitroom_session={token}; waitroom_session=forged"):  # fmt: skip
                r = await other.get(
                    "/echo/sale", headers={"cookie": cookie, "accept": "application/json"}
                )
                assert r.json()["status"] == "waiting", cookie
        assert len(origin.requests) == seen
        # Repeated room cookies never reach the origin either.
        cookie = f"waitroom_ticket=t; waitroom_session=x; k=1; waitroom_session={token}"
        async with httpx.AsyncClient(base_url=url) as other:
            r = await other.get("/echo/sale", headers={"cookie": cookie})
            assert header(r.json(), "cookie") == ["k=1"]
        # It is cached: revoked now, A still passes on nginx's copy for up to 600 s.
        gate = engine.gate
        room = gate.rooms["shop"]
        session = gate.sessions.session_for(token, room, gate.clock())
        assert session is not None
        await engine.operations.revoke(room, session.place_id)
        r = await a.get("/echo/sale")
        assert r.status_code == 200 and header(r.json(), "waitroom-verified") == [token]


async def test_revocation_takes_effect_within_auth_cache_seconds(redis_store: RedisStore) -> None:
    await revocation(redis_store, "nginx")


async def revocation(redis_store: RedisStore, balancer: str) -> None:
    async with (
        stack(redis_store, auth_cache_seconds=1, balancer=balancer) as (url, origin, engine),
        httpx.AsyncClient(base_url=url, follow_redirects=True) as a,
    ):
        assert (await a.get("/echo/sale")).status_code == 200
        assert (await a.get("/echo/sale")).status_code == 200
        token = a.cookies["waitroom_session"]
        gate = engine.gate
        room = gate.rooms["shop"]
        session = gate.sessions.session_for(token, room, gate.clock())
        assert session is not None
        await engine.operations.revoke(room, session.place_id)
        cookie = {"cookie": f"waitroom_session={token}", "accept": "application/json"}
        async with httpx.AsyncClient(base_url=url) as again:
            # nginx may serve its cached pass until it is 1 s old; then never again.
            async with asyncio.timeout(30):
                while (await again.get("/echo/sale", headers=cookie)).status_code == 200:
                    await asyncio.sleep(0.2)
            seen = len(origin.requests)
            for _ in range(3):
                r = await again.get("/echo/sale", headers=cookie)
                assert r.json()["status"] == "waiting"
            assert len(origin.requests) == seen


async def test_renewed_session_cookie_reaches_the_visitor(redis_store: RedisStore) -> None:
    await renewal(redis_store, "nginx")


async def renewal(redis_store: RedisStore, balancer: str) -> None:
    """A sliding session renewed at half its life: the LB relays the new cookie (nginx's
    cached pass ends at the renewal point)."""
    room = dataclasses.replace(ROOM, session_ttl=10, session_max=600)
    async with (
        stack(redis_store, balancer=balancer, room=room) as (url, _, _engine),
        httpx.AsyncClient(base_url=url, follow_redirects=True) as a,
    ):
        assert (await a.get("/echo/sale")).status_code == 200
        first = a.cookies["waitroom_session"]
        async with asyncio.timeout(60):  # the renewal is due 5 s after the session started
            while a.cookies["waitroom_session"] == first:
                await asyncio.sleep(0.5)
                r = await a.get("/echo/sale")
                assert r.status_code == 200
        r = await a.get("/echo/sale")
        assert header(r.json(), "waitroom-verified") == [a.cookies["waitroom_session"]]


FORGERIES = [
    # Headers a visitor adds to describe another request than the one nginx proxies.
    (b"GET /echo/sale HTTP/1.1\r\nHost: x\r\nX-Forwarded-Uri: /static/a\r\n\r\n"),
    (b"GET /echo/sale HTTP/1.1\r\nHost: x\r\nX-Original-URI: /static/a\r\n\r\n"),
    (b"GET /echo/sale HTTP/1.1\r\nHost: x\r\nX-Original-URL: http://x/static/a\r\n\r\n"),
    (b"GET /echo/sale HTTP/1.1\r\nHost: x\r\nWaitroom-Verified: forged\r\n\r\n"),
    # Spellings that nginx routes as one path and an origin may read as another.
    (b"GET /static/../echo/sale HTTP/1.1\r\nHost: x\r\n\r\n"),
    (b"GET /static/%2e%2e/echo/sale HTTP/1.1\r\nHost: x\r\n\r\n"),
    (b"GET //static/../echo/sale HTTP/1.1\r\nHost: x\r\n\r\n"),
    (b"GET /static%2F..%2Fecho/sale HTTP/1.1\r\nHost: x\r\n\r\n"),
    (b"GET /static/..;/echo/sale HTTP/1.1\r\nHost: x\r\n\r\n"),
    (b"GET http://x/static/../echo/sale HTTP/1.1\r\nHost: x\r\n\r\n"),
    (b"GET /_waitroom/auth HTTP/1.1\r\nHost: x\r\nX-Original-URI: /static/a\r\n\r\n"),
]


async def test_crafted_requests_never_reach_the_origin(redis_store: RedisStore) -> None:
    await crafted(redis_store, "nginx")


async def crafted(redis_store: RedisStore, balancer: str) -> None:
    async with (
        stack(redis_store, balancer=balancer) as (url, origin, _),
        httpx.AsyncClient(base_url=url, follow_redirects=True) as a,
    ):
        assert (await a.get("/echo/full")).status_code == 200, "the one slot is taken"
        seen = len(origin.requests)
        for raw in FORGERIES:
            response = await raw_exchange(url, raw)
            assert response.status in (200, 202, 400, 403, 404, 429, 503), (raw, response)
            assert len(origin.requests) == seen, (raw, response.status)
        # A bypassed path goes through, spelled as the gate judged it.
        response = await raw_exchange(url, b"GET /static/./a?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert origin.requests[-1]["path"] == "/static/a"
        assert response.status == 404  # the origin's answer
