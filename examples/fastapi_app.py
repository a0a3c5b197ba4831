"""A FastAPI shop with the waiting room inside it, as ASGI middleware.

The shop keeps its own routes and its own lifespan; ``WaitroomMiddleware`` wraps the whole app
and adds the ``/_waitroom/*`` routes (heartbeat, leave, status, health). Visitors beyond the
room's capacity get the waiting page instead of the shop; a finished checkout answers
``Waitroom-Command: complete``, which ends the visitor's session and frees the slot for the
next one in the queue.

Run from the repository root, after ``scripts/install test`` (the locked test dependencies
include FastAPI and uvicorn):

    WAITROOM_CAPACITY=1 .venv/bin/uvicorn examples.fastapi_app:app --port 8000

then open http://127.0.0.1:8000/ in two private windows: the second waits until the first
checks out. Settings come from the environment as for ``waitroom-proxy serve``:
``WAITROOM_CONFIG`` names a TOML file with ``[[rooms]]`` (see examples/waitroom.toml; its
``upstream`` is not needed here), or ``WAITROOM_CAPACITY`` / ``WAITROOM_ADMIT_RATE`` make one
room for every path; with neither, one room of capacity 50. With ``uvicorn --workers N`` or
several hosts, every process needs the same ``WAITROOM_STORE_URL`` and ``WAITROOM_SECRET``.
"""

from __future__ import annotations

import html
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from waitroom_proxy import WaitroomMiddleware
from waitroom_proxy.config import Settings, load_settings

log = logging.getLogger("uvicorn.error")  # uvicorn prints this logger's messages

DEFAULT_CAPACITY = "50"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The shop's own start-up and shut-down: still run with the waiting room around it."""
    app.state.stock = {"concert-ticket": 100, "festival-pass": 20}
    app.state.orders = 0
    app.state.started_at = time.time()
    log.info("shop: started")
    yield
    log.info("shop: stopped after %d order(s)", app.state.orders)


shop = FastAPI(title="Example shop", lifespan=lifespan)

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Example shop</title></head>
<body>
  <h1>Example shop</h1>
  <ul>{items}</ul>
  <form method="post" action="/checkout"><button>Check out</button></form>
</body>
</html>
"""

THANKS = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Thank you</title></head>
<body><h1>Thank you for your order</h1><p>Order number {order}.</p></body>
</html>
"""


@shop.get("/", response_class=HTMLResponse)
async def home(request: Request) -> str:
    """The shop page: only admitted visitors get here."""
    stock: dict[str, int] = request.app.state.stock
    items = "".join(f"<li>{html.escape(name)}: {count} left</li>" for name, count in stock.items())
    return PAGE.format(items=items)


@shop.get("/api/stock")
async def api_stock(request: Request) -> dict[str, Any]:
    """What the lifespan set up, and whether the request came through the waiting room."""
    return {
        "stock": request.app.state.stock,
        "orders": request.app.state.orders,
        # The signed session token of the visitor (a JWT); an origin behind a separate proxy
        # would verify it (HS256 with the shared secret, or the key at /_waitroom/jwks.json).
        "session": request.headers.get("waitroom-verified") is not None,
    }


@shop.post("/checkout", response_class=HTMLResponse)
async def checkout(request: Request) -> HTMLResponse:
    """Take the order, then free the visitor's slot: the next in the queue is let in."""
    request.app.state.orders += 1
    for name in request.app.state.stock:
        request.app.state.stock[name] -= 1
    return HTMLResponse(
        THANKS.format(order=request.app.state.orders),
        headers={"Waitroom-Command": "complete"},  # removed before the visitor sees it
    )


def waitroom_settings(env: dict[str, str] | None = None) -> Settings:
    """The waiting room's settings: WAITROOM_CONFIG / WAITROOM_* variables, else one room of
    capacity 50 for every path."""
    env = dict(os.environ if env is None else env)
    if not env.get("WAITROOM_CONFIG") and not env.get("WAITROOM_CAPACITY"):
        env["WAITROOM_CAPACITY"] = DEFAULT_CAPACITY
    return load_settings(env=env)


app = WaitroomMiddleware(shop, waitroom_settings())
