"""The store is called through its circuit breakers only (``service.guarded.GuardedStore``).

A store call that skips the breaker waits out the store timeout on every request of an outage
and is never counted: the origin's ``extend`` once did that. Every path that reaches the store
runs here against a store that records who called it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.asgi.middleware import WaitroomMiddleware
from waitroom_proxy.bootstrap import build_engine
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy

SECRET = "guarded-" + "g" * 32
PORT_METHODS = {
    "arrive", "heartbeat", "claim", "touch", "restore", "reassert", "leave", "tick", "stats",
    "revoked_since", "get_meta", "set_meta", "init_meta", "hit", "ping",
}  # fmt: skip


class Recording(MemoryStore):
    """Records the module of every caller of a port method."""

    def __init__(self) -> None:
        super().__init__()
        self.callers: dict[str, set[str]] = {}

    def __getattribute__(self, name: str) -> Any:
        if name in PORT_METHODS:
            caller = sys._getframe(1).f_globals.get("__name__", "?")
            object.__getattribute__(self, "callers").setdefault(name, set()).add(caller)
        return super().__getattribute__(name)


def shop() -> Starlette:
    async def page(request: Request) -> Response:
        command = request.query_params.get("command")
        headers = {"Waitroom-Command": command} if command else {}
        return PlainTextResponse("shop", headers=headers)

    return Starlette(routes=[Route("/{path:path}", page)])


async def test_every_store_call_goes_through_the_breaker() -> None:
    store = Recording()
    settings = Settings(
        rooms=(RoomPolicy(name="shop", capacity=1, heartbeat_interval=1, admit_rate=600),),
        secret=SECRET,
        client_rate_limit=10_000,
    )
    engine = build_engine(settings, store=store, controller_interval=0.05)
    app: Any = WaitroomMiddleware(shop(), engine=engine)
    async with serve_asgi(app) as url:
        async with httpx.AsyncClient(base_url=url) as a, httpx.AsyncClient(base_url=url) as b:
            assert (await a.get("/")).status_code == 200  # admitted at once
            assert (await b.get("/", headers={"accept": "application/json"})).json()[
                "status"
            ] == "waiting"
            await b.post("/_waitroom/heartbeat")
            await a.get("/", params={"command": "extend=60"})  # the origin extends
            await a.get("/", params={"command": "complete"})  # ... then ends it
            await until(lambda: "leave" in store.callers)
            for _ in range(200):  # the controller promotes b; its next poll claims the slot
                if (await b.post("/_waitroom/heartbeat")).json()["status"] == "admitted":
                    break
                await asyncio.sleep(0.05)
            assert "claim" in store.callers
            await b.get("/_waitroom/readyz")
            ops = engine.operations
            room = ops.rooms["shop"]
            await ops.pause(room)
            await ops.resume(room)
            await ops.admit(room, 1)
            await ops.revoke(room, "p" * 22)
            assert await ops.store_up()
            await b.post("/_waitroom/leave")
            await until(
                lambda: {"reassert", "tick", "revoked_since", "stats"} <= set(store.callers)
            )
    # touch is still a port method, but the service re-asserts sessions instead (reassert).
    assert set(store.callers) >= PORT_METHODS - {"restore", "touch"}, set(store.callers)
    outside = {m: c for m, c in store.callers.items() if c != {"waitroom_proxy.service.guarded"}}
    assert outside == {}


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "not within the timeout"
        await asyncio.sleep(0.02)
