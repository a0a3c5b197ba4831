"""Shared by the admin listener tests: the token and secret, the replicas of a room, clients and
polling, a visitor's status and place, and a store that can be broken."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from waitroom_proxy.adapters.log_events import MemoryPublisher
from waitroom_proxy.errors import StoreError
from waitroom_proxy.service import Engine

SECRET = "test-secret-" + "x" * 32

TOKEN = "admin-token-" + "t" * 24

AUTH = {"authorization": f"Bearer {TOKEN}"}

JSON = {"accept": "application/json"}


class CountingPublisher(MemoryPublisher):
    """The memory publisher with the ``counters()`` shape the NATS publisher has."""

    def counters(self) -> dict[str, float]:
        return {"published": self.published, "dropped": self.dropped, "retries": self.retries,
                "buffered": self.buffered, "connected": 1.0}  # fmt: skip


def origin_app() -> Starlette:
    async def echo(request: Request) -> Response:
        return JSONResponse({"path": request.url.path,
                             "verified": request.headers.get("waitroom-verified")})  # fmt: skip

    return Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST"])])


@dataclass
class Replica:
    url: str
    admin: str
    engine: Engine
    publisher: CountingPublisher


@dataclass
class Env:
    room: str
    replicas: list[Replica]

    @property
    def a(self) -> Replica:
        return self.replicas[0]

    @property
    def b(self) -> Replica:
        return self.replicas[1]


async def stop_controller(engine: Engine) -> None:
    """Stop the engine's controller before its server shuts down."""
    await engine.controller.stop()


def client(url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=10, **kwargs)


async def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll an async ``check`` until it returns something truthy (or fail after ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert loop.time() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.05)


async def status_of(c: httpx.AsyncClient, path: str = "/", **headers: str) -> dict[str, Any]:
    r = await c.get(path, headers={**JSON, **headers})
    if "verified" in r.json():
        return {"status": "passed", **r.json()}
    return dict(r.json())


async def heartbeat_admitted(c: httpx.AsyncClient) -> bool:
    r = await c.post("/_waitroom/heartbeat")
    return bool(r.json()["status"] == "admitted")


def place_of(session_cookie: str) -> str:
    claims = jwt.decode(session_cookie, options={"verify_signature": False})
    return str(claims["sub"])


# ---------------------------------------------------------------------------- store down
class BreakableStore:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.broken = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.broken and name != "close":
                raise StoreError("store down (test)")
            return await attr(*args, **kwargs)

        return call
