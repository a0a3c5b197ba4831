"""``WaitroomMiddleware`` inside a host app: the host keeps its routes and its lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.asgi.middleware import WaitroomMiddleware
from waitroom_proxy.bootstrap import build_engine
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy

SECRET = "mw-secret-" + "m" * 32


def host_app(events: list[str]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    async def home(request: Request) -> Response:
        return JSONResponse(
            {
                "verified": request.headers.get("waitroom-verified"),
                "cookie": request.headers.get("cookie"),
            }
        )

    async def stream(request: Request) -> Response:
        return PlainTextResponse("x", headers={"Waitroom-Command": "complete"})

    return Starlette(routes=[Route("/", home), Route("/done", stream)], lifespan=lifespan)


async def test_middleware_in_a_starlette_host() -> None:
    events: list[str] = []
    settings = Settings(
        rooms=(RoomPolicy(name="shop", capacity=1, match=("*/",), heartbeat_interval=1),),
        secret=SECRET,
    )
    engine = build_engine(settings, store=MemoryStore(), controller_interval=0.1)
    app: Any = WaitroomMiddleware(host_app(events), engine=engine)
    async with serve_asgi(app) as url:
        assert events == ["startup"], "the host's lifespan still runs"
        assert engine.controller._task is not None, "the engine started with the host"
        async with httpx.AsyncClient(base_url=url) as a, httpx.AsyncClient(base_url=url) as b:
            r = await a.get("/", headers={"cookie": "cart=7"})
            assert r.status_code == 200 and r.json()["verified"]
            assert r.json()["cookie"] == "cart=7"
            r = await b.get("/", headers={"accept": "application/json"})
            assert r.json()["status"] == "waiting"
            r = await a.get("/done")
            assert "waitroom-command" not in r.headers
            assert any(c.startswith("waitroom_session=;") for c in r.headers.get_list("set-cookie"))
            for _ in range(50):
                r = await b.post("/_waitroom/heartbeat")
                if r.json()["status"] == "admitted":
                    break
                import asyncio

                await asyncio.sleep(0.1)
            assert r.json()["status"] == "admitted"
            assert (await b.get("/")).json()["verified"]
    assert events == ["startup", "shutdown"]
    assert engine.controller._task is None, "the engine stopped with the host"


async def test_middleware_requires_settings_or_engine() -> None:
    import pytest

    with pytest.raises(TypeError):
        WaitroomMiddleware(host_app([]))
    settings = Settings(rooms=(RoomPolicy(name="shop", capacity=1),), secret=SECRET)
    with pytest.raises(TypeError, match=r"waitroom_proxy\.WaitroomMiddleware\(app, settings\)"):
        WaitroomMiddleware(host_app([]), settings)  # the engine is built by the factory


async def test_the_package_builds_the_middleware_from_settings() -> None:
    """``waitroom_proxy.WaitroomMiddleware(app, settings)``: the public entry of a host app."""
    import waitroom_proxy

    events: list[str] = []
    settings = Settings(rooms=(RoomPolicy(name="shop", capacity=1, match=("*/",)),), secret=SECRET)
    app: Any = waitroom_proxy.WaitroomMiddleware(host_app(events), settings, store=MemoryStore())
    assert isinstance(app, WaitroomMiddleware)
    async with serve_asgi(app) as url:
        async with httpx.AsyncClient(base_url=url) as a, httpx.AsyncClient(base_url=url) as b:
            assert (await a.get("/")).json()["verified"]
            r = await b.get("/", headers={"accept": "application/json"})
            assert r.json()["status"] == "waiting"
    assert events == ["startup", "shutdown"]
