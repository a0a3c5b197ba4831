"""Forward-auth mode (DESIGN §4b): ``GET /_waitroom/auth`` judged as the inline gate judges.

Real uvicorn on loopback (the peer an LB on the same host would be); the in-process store,
which the contract suite holds to Redis's behaviour. The untrusted-peer cases need a peer
address that is not loopback, which only an in-process transport can give.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import Bypass, RoomPolicy
from waitroom_proxy.server import build_app

SECRET = "fwd-auth-secret-" + "f" * 32
AUTH = "/_waitroom/auth"


def settings_for(capacity: int = 1, **room: Any) -> Settings:
    policy = RoomPolicy(name="shop", capacity=capacity, match=("*/",), heartbeat_interval=1, **room)
    return Settings(rooms=(policy,), secret=SECRET, trusted_proxies=("127.0.0.1/32",))


@contextlib.asynccontextmanager
async def forward_auth(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = build_app(settings, store=MemoryStore(), controller_interval=0.1, access_log=False)
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as client:

        async def forget(response: httpx.Response) -> None:
            client.cookies.clear()  # each request says which cookies it carries

        client.event_hooks["response"] = [forget]
        yield client, app.engine


def described(uri: str, cookie: str | None = None, **extra: str) -> dict[str, str]:
    """What nginx's shipped config sends to /auth."""
    headers = {"x-original-uri": uri, "x-original-method": "GET", "host": "shop.test"}
    if cookie:
        headers["cookie"] = cookie
    headers.update(extra)
    return headers


def session_cookie(response: httpx.Response) -> str:
    for value in response.headers.get_list("set-cookie"):
        if value.startswith("waitroom_session=") and not value.startswith("waitroom_session=;"):
            return value.split(";")[0]
    raise AssertionError(f"no session cookie in {response.headers!r}")


async def admitted_cookie(client: httpx.AsyncClient) -> str:
    """A newcomer's journey while there is room: 401 at /auth, then the follow-up request
    (the LB's error page) sends the visitor back with a session."""
    r = await client.get(AUTH, headers=described("/sale"))
    assert r.status_code == 401 and r.content == b""
    follow = await client.get("/sale", headers={"host": "shop.test"})
    assert follow.status_code == 307 and follow.headers["location"] == "/sale"
    return session_cookie(follow)


async def test_newcomer_admitted_then_passes_with_a_cacheable_answer() -> None:
    async with forward_auth(settings_for()) as (client, _):
        cookie = await admitted_cookie(client)
        r = await client.get(AUTH, headers=described("/sale?x=1", cookie))
        assert r.status_code == 200
        assert r.headers["waitroom-verified"] == cookie.split("=", 1)[1]
        assert r.headers["waitroom-target"] == "/sale?x=1"
        assert r.headers["cache-control"] == "private, max-age=5"
        assert r.headers["x-accel-expires"] == "5"
        assert "set-cookie" not in r.headers


async def test_full_room_queues_once_at_the_follow_up() -> None:
    async with forward_auth(settings_for()) as (client, engine):
        await admitted_cookie(client)
        # The second visitor: /auth says wait and takes no place ...
        r = await client.get(AUTH, headers=described("/sale"))
        assert r.status_code == 401
        assert (await engine.gate.store.stats("shop")).queue_length == 0
        # ... the follow-up shows the page and takes one place.
        page = await client.get(
            "/sale", headers={"host": "shop.test", "accept": "application/json"}
        )
        assert page.json()["status"] == "waiting"
        ticket = next(c for c in page.headers.get_list("set-cookie") if "waitroom_ticket=" in c)
        ticket = ticket.split(";")[0]
        # Reloading: /auth with the ticket still takes no place; the follow-up keeps the same one.
        r = await client.get(AUTH, headers=described("/sale", ticket))
        assert r.status_code == 401
        again = await client.get(
            "/sale", headers={"host": "shop.test", "accept": "application/json", "cookie": ticket}
        )
        assert again.json()["status"] == "waiting"
        assert again.json()["queue_length"] == 1
        assert (await engine.gate.store.stats("shop")).queue_length == 1


async def test_style_page_arrives_at_auth() -> None:
    async with forward_auth(settings_for()) as (client, _):
        r = await client.get(AUTH + "?style=page", headers=described("/sale"))
        assert r.status_code == 200, "room for the first visitor: a session at once"
        cookie = session_cookie(r)
        assert r.headers["waitroom-verified"] == cookie.split("=", 1)[1]
        assert r.headers["cache-control"] == "no-store", "a Set-Cookie answer is never cached"
        r = await client.get(AUTH + "?style=page", headers=described("/sale"))
        assert r.status_code == 401, "the page itself, but never a 2xx (Traefik would pass it)"
        assert "text/html" in r.headers["content-type"] and b"<html" in r.content.lower()
        assert any("waitroom_ticket=" in c for c in r.headers.get_list("set-cookie"))
        r = await client.get(
            AUTH + "?style=page", headers=described("/sale", accept="application/json")
        )
        assert r.status_code == 401 and r.json()["status"] == "waiting"


async def test_session_for_another_cookie_or_twice() -> None:
    async with forward_auth(settings_for(capacity=5)) as (client, _):
        cookie = await admitted_cookie(client)
        token = cookie.split("=", 1)[1]
        forged = "waitroom_session=" + token[:-4] + "AAAA"
        assert (await client.get(AUTH, headers=described("/sale", forged))).status_code == 401
        # Two session cookies: read as the inline gate reads them (the last), but never cached:
        # nginx keys its cache on the first.
        twice = f"waitroom_session=junk; {cookie}"
        r = await client.get(AUTH, headers=described("/sale", twice))
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        twice = f"{cookie}; waitroom_session=junk"
        assert (await client.get(AUTH, headers=described("/sale", twice))).status_code == 401


async def test_revoked_session_stops_passing_at_once() -> None:
    async with forward_auth(settings_for(capacity=5)) as (client, engine):
        cookie = await admitted_cookie(client)
        assert (await client.get(AUTH, headers=described("/sale", cookie))).status_code == 200
        gate = engine.gate
        room = gate.rooms["shop"]
        session = gate.sessions.session_for(cookie.split("=", 1)[1], room, gate.clock())
        assert session is not None
        await engine.operations.revoke(room, session.place_id)
        assert (await client.get(AUTH, headers=described("/sale", cookie))).status_code == 401


async def test_cache_lifetime_never_outlives_the_session() -> None:
    policy = settings_for(capacity=5, session_max=3, session_renewal=False).rooms
    settings = Settings(rooms=policy, secret=SECRET, auth_cache_seconds=60)
    async with forward_auth(settings) as (client, _):
        cookie = await admitted_cookie(client)
        r = await client.get(AUTH, headers=described("/sale", cookie))
        assert r.status_code == 200
        max_age = int(r.headers["cache-control"].rsplit("=", 1)[1])
        assert 0 < max_age <= 3


async def test_cache_lifetime_never_outlives_the_renewal_point() -> None:
    """A cached pass must not hide the renewed cookie until the old token expires."""
    policy = settings_for(capacity=5, session_ttl=10, session_max=600).rooms
    settings = Settings(rooms=policy, secret=SECRET, auth_cache_seconds=60)
    async with forward_auth(settings) as (client, _):
        cookie = await admitted_cookie(client)
        r = await client.get(AUTH, headers=described("/sale", cookie))
        assert r.status_code == 200
        max_age = int(r.headers["cache-control"].rsplit("=", 1)[1])
        assert 0 < max_age <= 5, "renewal is due 5 s before the 10 s token expires"


BYPASS = Bypass(paths=("/static/", "*.css"), methods=("OPTIONS",))


@pytest.mark.parametrize(
    ("uri", "status"),
    [
        ("/static/app.js", 200),
        ("/static/../sale", 401),  # dot segments resolved before the bypass is judged
        ("/static/%2e%2e/sale", 401),
        ("/static//../sale", 401),
        ("//static/../sale", 401),
        ("/sale;x.css", 401),  # Servlet origins route it as /sale
        ("/static%2F..%2Fsale", 403),  # where origins disagree: refused
        ("/static/%00/x", 403),
        ("/sale%2525", 403),  # double encoding
        ("sale", 403),  # not origin-form
    ],
)
async def test_bypass_spellings(uri: str, status: int) -> None:
    async with forward_auth(settings_for(bypass=BYPASS)) as (client, _):
        r = await client.get(AUTH, headers=described(uri))
        assert r.status_code == status, r.text
        if status == 200:
            assert r.headers["cache-control"] == "private, max-age=5", "path-only: cacheable"


async def test_bypass_by_method_is_never_cached() -> None:
    async with forward_auth(settings_for(bypass=BYPASS)) as (client, _):
        r = await client.get(AUTH, headers=described("/sale", **{"x-original-method": "OPTIONS"}))
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store" and r.headers["x-accel-expires"] == "0"


@pytest.mark.parametrize(
    "headers",
    [
        # A visitor's own X-Forwarded-Uri passed on by nginx (which sets X-Original-URI only).
        {"x-original-uri": "/sale", "x-forwarded-uri": "/static/x", "host": "shop.test"},
        # A visitor's own X-Original-URI passed on by Caddy (which sets X-Forwarded-Uri only).
        {"x-forwarded-uri": "/sale", "x-original-uri": "/static/x", "host": "shop.test"},
        {"x-original-url": "http://shop.test/sale", "x-original-uri": "/static/x"},
        {"host": "shop.test"},
        {"x-original-url": "javascript:alert(1)", "host": "shop.test"},
    ],
)
async def test_ambiguous_descriptions_are_refused(headers: dict[str, str]) -> None:
    async with forward_auth(settings_for(bypass=BYPASS)) as (client, _):
        r = await client.get(AUTH, headers=headers)
        assert r.status_code == 403 and r.text.startswith("forward-auth: ")


async def test_repeated_description_is_refused() -> None:
    async with forward_auth(settings_for(bypass=BYPASS)) as (client, _):
        headers = [("x-original-uri", "/sale"), ("x-original-uri", "/static/x"), ("host", "a")]
        r = await client.get(AUTH, headers=headers)
        assert r.status_code == 403 and "more than once" in r.text


async def test_every_lb_family_is_read() -> None:
    async with forward_auth(settings_for(bypass=BYPASS)) as (client, _):
        traefik = {"x-forwarded-uri": "/static/a", "x-forwarded-method": "GET",
                   "x-forwarded-host": "shop.test", "x-forwarded-proto": "https"}  # fmt: skip
        assert (await client.get(AUTH, headers=traefik)).status_code == 200
        traefik["x-forwarded-uri"] = "/sale"
        assert (await client.get(AUTH, headers=traefik)).status_code == 401
        ingress = {"x-original-url": "https://shop.test/static/a", "x-original-method": "GET"}
        assert (await client.get(AUTH, headers=ingress)).status_code == 200
        ingress["x-original-url"] = "https://shop.test/sale"
        assert (await client.get(AUTH, headers=ingress)).status_code == 401


async def test_untrusted_peer_is_not_believed() -> None:
    """A forged description from a peer that is neither loopback nor a trusted proxy."""
    app = build_app(settings_for(bypass=BYPASS), store=MemoryStore(), access_log=False)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        r = await client.get(AUTH, headers=described("/static/x"))
        assert r.status_code == 403
        assert r.text == "forward-auth: the peer 203.0.113.9 is not in trusted_proxies\n"
    await app.engine.stop()


async def test_wait_route_is_the_follow_up_of_a_redirecting_lb() -> None:
    """ingress-nginx ``auth-signin``: a 401 becomes a redirect to ``/_waitroom/wait?rd=``."""
    async with forward_auth(settings_for()) as (client, _):
        host = {"host": "shop.test"}
        r = await client.get("/_waitroom/wait", params={"rd": "/sale?x=1"}, headers=host)
        assert r.status_code == 307 and r.headers["location"] == "/sale?x=1"
        cookie = session_cookie(r)
        assert (await client.get(AUTH, headers=described("/sale?x=1", cookie))).status_code == 200
        json_ = {**host, "accept": "application/json"}
        r = await client.get("/_waitroom/wait", params={"rd": "/sale"}, headers=json_)
        assert r.json()["status"] == "waiting" and r.json()["return_to"] == "/sale"
        for query in ("rd=//evil.example/x", "rd=https://evil.example/", "", "rd=/a&rd=/b",
                      "rd=/x/%2e%2e/%2e%2e/y"):  # fmt: skip
            r = await client.get("/_waitroom/wait?" + query, headers=host)
            assert r.status_code == 400, query


async def test_a_bound_session_passes_only_from_its_client_and_is_never_cached() -> None:
    """``session_binding``: the session started at the follow-up is bound to the client the LB
    describes; /auth passes it from there (uncached: the LB's cache key is the cookie alone) and
    refuses it from another network or browser."""
    async with forward_auth(settings_for(session_binding="ip+ua")) as (client, _):
        mine = {"x-forwarded-for": "198.51.100.7", "user-agent": "Browser/1"}
        r = await client.get(AUTH, headers=described("/sale", **mine))
        assert r.status_code == 401
        follow = await client.get("/sale", headers={"host": "shop.test", **mine})
        assert follow.status_code == 307
        cookie = session_cookie(follow)
        ok = await client.get(AUTH, headers=described("/sale", cookie, **mine))
        assert ok.status_code == 200
        assert ok.headers["cache-control"] == "no-store"
        elsewhere = {"x-forwarded-for": "203.0.113.9", "user-agent": "Browser/1"}
        other_net = await client.get(AUTH, headers=described("/sale", cookie, **elsewhere))
        assert other_net.status_code == 401
        other_ua = {"x-forwarded-for": "198.51.100.7", "user-agent": "Bot/2"}
        assert (
            await client.get(AUTH, headers=described("/sale", cookie, **other_ua))
        ).status_code == 401
