"""The standalone proxy end to end: real uvicorn, a real origin server, real HTTP clients.

Every test runs against the in-process store and against a real Redis-protocol server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import Bypass, Mode, RoomPolicy
from waitroom_proxy.errors import StoreError
from waitroom_proxy.server import build_app

SECRET = "test-secret-" + "x" * 32


class CountingStore:
    """Wraps a store and records which operations were called (to prove the hot path has none)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.broken = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self.broken and name not in ("close",):
                raise StoreError("store down (test)")
            return await attr(*args, **kwargs)

        return call


def origin_app() -> Starlette:
    seen: list[dict[str, Any]] = []

    async def echo(request: Request) -> Response:
        seen.append(
            {
                "path": request.url.path,
                "verified": request.headers.get("waitroom-verified"),
                "cookie": request.headers.get("cookie"),
            }
        )
        return JSONResponse(seen[-1])

    async def command(request: Request) -> Response:
        return PlainTextResponse("done", headers={"Waitroom-Command": request.path_params["c"]})

    app = Starlette(
        routes=[
            Route("/cmd/{c}", command),
            Route("/{path:path}", echo, methods=["GET", "POST", "OPTIONS"]),
        ]
    )
    app.state.seen = seen
    return app


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_proxy(store_kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Returns an async context factory: ``async with make_proxy(**room) as env``."""
    import contextlib

    origin = origin_app()

    @contextlib.asynccontextmanager
    async def factory(**room_kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        if store_kind == "redis":
            from waitroom_proxy.adapters.redis_store import RedisStore

            redis_url = request.getfixturevalue("redis_url")
            inner: Any = RedisStore.from_url(redis_url, timeout=1.0)
        else:
            inner = MemoryStore()
        store = CountingStore(inner)
        server_kwargs = room_kwargs.pop("server", {})
        room_name = room_kwargs.pop("name", None) or f"r{abs(hash(request.node.name)) % 10**8}"
        policy = RoomPolicy(
            name=room_name,
            capacity=room_kwargs.pop("capacity", 1),
            heartbeat_interval=1,
            abandon_after=30,
            **room_kwargs,
        )
        async with serve_asgi(origin) as origin_url:
            settings = Settings(
                rooms=(policy,), upstream=origin_url, secret=SECRET, **server_kwargs
            )
            app = build_app(settings, store=store, controller_interval=0.1)
            async with serve_asgi(app) as url:
                yield {"url": url, "store": store, "origin": origin, "engine": app.engine,
                       "room": room_name}  # fmt: skip

    yield factory


def client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=10)


async def wait_admitted(c: httpx.AsyncClient, timeout: float = 5.0) -> httpx.Response:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await c.post("/_waitroom/heartbeat")
        if r.json()["status"] == "admitted":
            return r
        assert asyncio.get_running_loop().time() < deadline, r.json()
        await asyncio.sleep(0.1)


async def test_journey_capacity_one(make_proxy: Any) -> None:
    async with make_proxy(capacity=1) as env, client(env["url"]) as a, client(env["url"]) as b:
        r = await a.get("/page", headers={"cookie": "theme=dark"})
        assert r.status_code == 200
        body = r.json()
        assert body["verified"], "origin receives the signed session token"
        assert body["cookie"] == "theme=dark", "the room's cookies never reach the origin"
        set_cookie = r.headers.get_list("set-cookie")
        assert any(
            c.startswith("waitroom_session=") and "HttpOnly" in c and "SameSite=Lax" in c
            for c in set_cookie
        )

        r = await b.get("/wanted?x=1")
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert r.headers["cache-control"] == "no-store"
        assert "nonce-" in r.headers["content-security-policy"]
        r = await b.get("/wanted?x=1", headers={"accept": "application/json"})
        status = r.json()
        assert (status["status"], status["position"], status["ahead"]) == ("waiting", 1, 0)
        assert status["cfWaitingRoom"]["inWaitingRoom"] is True

        # A keeps passing with no store round-trip.
        before = len(env["store"].calls)
        request_ops = {"arrive", "heartbeat", "claim", "leave"}
        for _ in range(20):
            assert (await a.get("/page")).status_code == 200
        during = env["store"].calls[before:]
        assert not request_ops & set(during), during

        r = await a.post("/_waitroom/leave")
        assert r.json()["status"] == "left"
        r = await wait_admitted(b)
        assert r.json()["return_to"] == "/wanted?x=1"
        r = await b.get("/wanted?x=1")
        assert r.status_code == 200 and r.json()["verified"]


async def test_bad_cookies_are_treated_as_absent(make_proxy: Any) -> None:
    async with make_proxy(capacity=1) as env, client(env["url"]) as a:
        assert (await a.get("/")).status_code == 200  # takes the only slot
        bad_values = [
            "garbage",
            "a.b.c",
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
            "x" * 4000,
            '"quoted"',
            "%00%0d%0a",
        ]
        for value in bad_values:
            for name in ("waitroom_session", "waitroom_ticket"):
                async with client(env["url"]) as c:
                    r = await c.get(
                        "/", headers={"cookie": f"{name}={value}", "accept": "application/json"}
                    )
                    assert r.status_code == 200, (name, value, r.status_code)
                    assert r.json()["status"] == "waiting"
                    r = await c.post("/_waitroom/heartbeat", headers={"cookie": f"{name}={value}"})
                    assert r.status_code == 200 and r.json()["status"] in ("waiting", "expired")


async def test_place_kept_by_ticket(make_proxy: Any) -> None:
    async with make_proxy(capacity=1) as env, client(env["url"]) as a:
        await a.get("/")
        positions = []
        clients = [client(env["url"]) for _ in range(3)]
        try:
            for c in clients:
                r = await c.get("/", headers={"accept": "application/json"})
                positions.append(r.json()["position"])
            assert positions == [1, 2, 3]
            # Asking again keeps the place (idempotent), and so does a heartbeat.
            r = await clients[1].get("/", headers={"accept": "application/json"})
            assert r.json()["position"] == 2
            r = await clients[1].post("/_waitroom/heartbeat")
            assert r.json()["position"] == 2 and r.json()["queue_length"] == 3
        finally:
            for c in clients:
                await c.aclose()


async def test_origin_commands(make_proxy: Any) -> None:
    async with make_proxy(capacity=1) as env, client(env["url"]) as a:
        assert (await a.get("/")).status_code == 200
        r = await a.get("/cmd/extend=600")
        assert "waitroom-command" not in r.headers
        assert any("Max-Age=600" in c for c in r.headers.get_list("set-cookie"))
        r = await a.get("/cmd/complete")
        assert r.status_code == 200 and "waitroom-command" not in r.headers
        assert any(c.startswith("waitroom_session=;") for c in r.headers.get_list("set-cookie"))
        # The slot is free at once: a newcomer is admitted directly.
        await asyncio.sleep(0.2)
        async with client(env["url"]) as b:
            r = await b.get("/")
            assert r.status_code == 200 and r.json()["verified"]


async def test_bypass_rules(make_proxy: Any) -> None:
    bypass = Bypass(
        paths=("/static/", "*.css"), methods=("OPTIONS",), secret="let-me-in-" + "z" * 20
    )
    async with make_proxy(capacity=1, bypass=bypass) as env, client(env["url"]) as a:
        await a.get("/")  # fills capacity
        async with client(env["url"]) as b:
            for path in ("/static/app.js", "/x/site.css"):
                r = await b.get(path)
                assert r.status_code == 200 and r.json()["verified"] is None, path
            assert (await b.options("/anything")).status_code == 200
            r = await b.get("/private", headers={"waitroom-bypass": "let-me-in-" + "z" * 20})
            assert r.json()["path"] == "/private"
            r = await b.get(
                "/private", headers={"waitroom-bypass": "wrong", "accept": "application/json"}
            )
            assert r.json()["status"] == "waiting"


async def test_offsite_return_to_refused(make_proxy: Any) -> None:
    async with make_proxy(capacity=1) as env, client(env["url"]) as a:
        await a.get("/")
        port = int(env["url"].rsplit(":", 1)[1])
        for raw in ("//evil.example/x", "/\\evil.example", "/%0d%0aSet-Cookie:%20x=1"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"GET {raw} HTTP/1.1\r\nHost: t\r\nAccept: application/json\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = await reader.read()
            writer.close()
            await writer.wait_closed()
            head, _, body = data.partition(b"\r\n\r\n")
            assert b"\r\nSet-Cookie: x" not in head and b"x=1" not in head, raw
            if raw.startswith("//"):  # slashes merged at the edge: an on-site path
                assert json.loads(body)["return_to"] == "/evil.example/x", raw
            else:  # a raw backslash, an escaped CR LF: refused at the edge
                assert head.startswith(b"HTTP/1.1 400 "), (raw, head)


async def test_reject_and_passthrough_modes(make_proxy: Any) -> None:
    async with make_proxy(capacity=5, mode=Mode.REJECT) as env, client(env["url"]) as a:
        r = await a.get("/", headers={"accept": "application/json"})
        assert r.status_code == 403 and r.json()["status"] == "rejected"
    async with make_proxy(capacity=1, mode=Mode.PASSTHROUGH) as env:
        for _ in range(3):
            async with client(env["url"]) as c:
                assert (await c.get("/")).json()["verified"]
        stats = await env["store"].inner.stats(env["room"])
        assert stats.active == 3


async def test_fail_modes(make_proxy: Any) -> None:
    from waitroom_proxy.domain.policy import FailMode

    async with make_proxy(capacity=1, fail_mode=FailMode.CLOSED) as env, client(env["url"]) as a:
        assert (await a.get("/")).status_code == 200
        env["store"].broken = True
        async with client(env["url"]) as b:
            r = await b.get("/", headers={"accept": "application/json"})
            assert r.status_code == 503 and "retry-after" in r.headers
            assert r.json()["status"] == "waiting"
        # An admitted visitor keeps passing: the token verifies locally.
        assert (await a.get("/")).status_code == 200
        env["store"].broken = False
    async with make_proxy(capacity=1, fail_mode=FailMode.OPEN) as env, client(env["url"]) as a:
        env["store"].broken = True
        r = await a.get("/")
        assert r.status_code == 200 and r.json()["path"] == "/"


async def test_waiting_json_status_route(make_proxy: Any) -> None:
    async with make_proxy(capacity=1) as env, client(env["url"]) as a:
        r = await a.get("/_waitroom/status")
        assert r.json()["status"] == "expired"  # no ticket yet
        assert (await a.get("/_waitroom/healthz")).json() == {"status": "ok"}
        r = await a.get("/_waitroom/readyz")
        assert r.status_code == 200 and r.json()["checks"]["upstream"] == "ok"
        assert (await a.get("/_waitroom/nope")).status_code == 404
        assert json.loads((await a.get("/_waitroom/jwks.json")).text) == {"keys": []}


def test_settings_repr_hides_secret() -> None:
    s = Settings(rooms=(), secret=SECRET, admin_token="tok-" + "y" * 20)
    assert SECRET not in repr(s) and "tok-" not in repr(s)
    assert replace(s, secret="z" * 40).secret == "z" * 40


async def test_client_rate_limit(make_proxy: Any) -> None:
    # The client address comes from X-Forwarded-For (the peer is a trusted proxy): a fresh
    # address per run, so counts left in the shared store by other tests don't interfere.
    import secrets

    ip = f"203.0.113.{secrets.randbelow(250) + 1}"
    fwd = {"x-forwarded-for": ip}
    server = {"client_rate_limit": 4, "trusted_proxies": ("127.0.0.1/32",)}
    async with make_proxy(capacity=1, server=server) as env:
        if hasattr(env["store"].inner, "_client"):
            await env["store"].inner._client.delete(f"wr:{{rl:{ip}}}")
        async with client(env["url"]) as a:
            assert (await a.get("/", headers=fwd)).status_code == 200  # admitted: one hit
            # A session's requests are not rate limited (no store call at all).
            for _ in range(10):
                assert (await a.get("/", headers=fwd)).status_code == 200
        codes = []
        async with client(env["url"]) as b:
            json_fwd = {**fwd, "accept": "application/json"}
            for _ in range(3):
                codes.append((await b.get("/", headers=json_fwd)).status_code)
            r = await b.post("/_waitroom/heartbeat", headers=fwd)
            codes.append(r.status_code)
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
            r = await b.get("/", headers=json_fwd)
            assert r.status_code == 429 and r.json()["status"] == "rate_limited"
            r = await b.get("/", headers=fwd)
            assert r.status_code == 429 and "text/html" in r.headers["content-type"]
            # Another client address is not affected.
            r = await b.get(
                "/", headers={"x-forwarded-for": "192.0.2.9", "accept": "application/json"}
            )
            assert r.status_code == 200
        assert codes == [200, 200, 200, 429]
