"""The polls (``status``, ``heartbeat``) served in raw ASGI answer as the Starlette routes do.

Two replicas of the same settings on one store: one serves the polls in raw ASGI (as it does
whenever no CORS is configured), the other is told to route them through Starlette, as before.
The same request must get the same status, the same headers in the same order and the same
body from both. With CORS configured, the polls stay with Starlette (its CORS answers).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.asgi.middleware import WaitroomMiddleware
from waitroom_proxy.bootstrap import build_engine
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy

SECRET = "poll-secret-" + "p" * 32


def _app() -> Starlette:
    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("origin")

    return Starlette(routes=[Route("/", home)])


@contextlib.asynccontextmanager
async def _replicas(rate: int = 0) -> AsyncIterator[tuple[str, str, str]]:
    """(raw, routed, plain): the third replica has no rate limit, for making places."""
    store = MemoryStore()
    room = RoomPolicy(name="shop", capacity=1, match=("*/",), heartbeat_interval=1)
    urls: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        for routed, limit in ((False, rate), (True, rate), (False, 0)):
            settings = Settings(rooms=(room,), secret=SECRET, client_rate_limit=limit)
            engine = build_engine(settings, store=store, controller_interval=3600)
            app: Any = WaitroomMiddleware(_app(), engine=engine)
            assert app._polls, "no CORS: the polls are raw ASGI"
            if routed:
                app._polls = set()  # the Starlette routes, as before
            urls.append(await stack.enter_async_context(serve_asgi(app)))
        yield urls[0], urls[1], urls[2]


def _same(raw: httpx.Response, routed: httpx.Response) -> None:
    assert raw.status_code == routed.status_code
    assert raw.headers.raw == routed.headers.raw
    assert raw.content == routed.content


async def _place(url: str) -> tuple[str, str]:
    """(session of the visitor holding the only slot, ticket of one queued behind)."""
    json = {"accept": "application/json"}
    async with httpx.AsyncClient(base_url=url) as a, httpx.AsyncClient(base_url=url) as b:
        first = await a.get("/", headers=json)
        assert first.status_code == 200  # admitted: holds the only slot
        queued = await b.get("/", headers=json)
        assert queued.json()["status"] == "waiting"
        return first.cookies["waitroom_session"], queued.cookies["waitroom_ticket"]


async def _both(raw: str, routed: str, method: str, path: str, **kw: Any) -> tuple[Any, Any]:
    async with httpx.AsyncClient(base_url=raw) as a, httpx.AsyncClient(base_url=routed) as b:
        return await a.request(method, path, **kw), await b.request(method, path, **kw)


async def test_the_raw_polls_answer_as_the_starlette_routes() -> None:
    async with _replicas() as (raw, routed, plain):
        session, ticket = await _place(plain)
        cases: list[tuple[str, str, dict[str, str]]] = [
            ("POST", "/_waitroom/heartbeat", {}),  # no cookies at all
            ("GET", "/_waitroom/status", {"cookie": "waitroom_session=" + session}),
            ("GET", "/_waitroom/status", {"cookie": "waitroom_session=forged.token"}),
            ("POST", "/_waitroom/heartbeat", {"cookie": "waitroom_ticket=forged"}),
            ("GET", "/_waitroom/status", {"cookie": 'waitroom_ticket="\\x7f;; =;junk'}),
            ("POST", "/_waitroom/heartbeat", {"cookie": "waitroom_ticket=" + ticket[:-3] + "abc"}),
            ("GET", "/_waitroom/heartbeat", {}),  # 405, from Starlette on both
            ("HEAD", "/_waitroom/status", {}),
        ]
        for method, path, headers in cases:
            _same(*await _both(raw, routed, method, path, headers=headers))
        # A queued visitor's poll: the place is kept, the same answer from both replicas.
        headers = {"cookie": f"a=1; waitroom_ticket={ticket}", "accept": "application/json"}
        for path, method in (("/_waitroom/heartbeat", "POST"), ("/_waitroom/status", "GET")):
            a, b = await _both(raw, routed, method, path, headers=headers)
            assert a.status_code == b.status_code == 200
            assert [n for n, _ in a.headers.raw] == [n for n, _ in b.headers.raw]
            assert a.json()["status"] == b.json()["status"] == "waiting"
            assert a.json().keys() == b.json().keys()
            assert a.json()["position"] == b.json()["position"] == 1


async def test_a_forged_ticket_is_refused_and_cleared() -> None:
    async with _replicas() as (raw, _routed, _plain), httpx.AsyncClient(base_url=raw) as c:
        r = await c.post("/_waitroom/heartbeat", headers={"cookie": "waitroom_ticket=x.y.z"})
        assert r.json() == {"status": "expired", "room": None}
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["set-cookie"].startswith("waitroom_ticket=; Path=/; Max-Age=0")


async def test_the_raw_polls_are_rate_limited_as_before() -> None:
    async with _replicas(rate=1) as (raw, routed, plain):
        _session, ticket = await _place(plain)
        headers = {"cookie": "waitroom_ticket=" + ticket}
        answers = []
        for _ in range(3):
            answers.append(
                await _both(raw, routed, "POST", "/_waitroom/heartbeat", headers=headers)
            )
        a, b = answers[-1]
        assert a.status_code == b.status_code == 429
        _same(a, b)


async def test_with_cors_the_polls_get_the_cors_answers() -> None:
    settings = Settings(
        rooms=(RoomPolicy(name="shop", capacity=1, match=("*/",)),),
        secret=SECRET,
        cors_origins=("https://front.example",),
    )
    engine = build_engine(settings, store=MemoryStore(), controller_interval=3600)
    app: Any = WaitroomMiddleware(_app(), engine=engine)
    assert not app._polls
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as c:
        r = await c.post("/_waitroom/heartbeat", headers={"origin": "https://front.example"})
        assert r.json()["status"] == "expired"
        assert r.headers["access-control-allow-origin"] == "https://front.example"
        assert r.headers["access-control-allow-credentials"] == "true"
