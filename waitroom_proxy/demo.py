"""``waitroom-proxy demo``: a small built-in origin behind the proxy, capacity 2, embedded store.

Open the printed URL in two or three private windows (or different browsers: each needs its
own cookies to be a visitor of its own): the first two get the shop, the next one waits and is
let in when someone clicks "leave". One port: the toy origin takes a free loopback port of its
own, which only the proxy uses.
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import Bypass, RoomPolicy
from waitroom_proxy.listen import bind_listener, format_address
from waitroom_proxy.server.apps import build_app

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Demo shop</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.5rem 1rem}}</style></head><body>
<h1>Demo shop: you are in</h1>
<p>You hold one of the {capacity} places. Path asked: <code>{path}</code></p>
<p>Your session token reached this origin in the <code>Waitroom-Verified</code> header
({verified} characters).</p>
<form method="post" action="/_waitroom/leave"><button>Leave (frees your place)</button></form>
</body></html>"""


def demo_origin(capacity: int) -> Starlette:
    """The demo's origin: a page that says who got in."""

    async def page(request: Request) -> Response:
        verified = request.headers.get("waitroom-verified", "")
        body = _PAGE.format(
            capacity=capacity, path=html.escape(request.url.path), verified=len(verified)
        )
        return HTMLResponse(body)

    return Starlette(routes=[Route("/{path:path}", page, methods=["GET", "POST"])])


async def _main(host: str, port: int, capacity: int) -> None:
    # Both sockets first: a port in use ends here, in one line, before the banner. The origin
    # takes any free loopback port (only the proxy talks to it), so the demo needs one port.
    proxy_sock = bind_listener(host, port, "--port")
    origin_sock = bind_listener("127.0.0.1", 0, "the demo origin")
    origin_port = origin_sock.getsockname()[1]
    quiet: dict[str, Any] = {"log_level": "warning", "access_log": False}
    origin = uvicorn.Server(
        uvicorn.Config(demo_origin(capacity), host="127.0.0.1", port=origin_port, **quiet)
    )
    room = RoomPolicy(
        name="demo",
        capacity=capacity,
        heartbeat_interval=2,
        session_ttl=120,
        abandon_after=30,
        bypass=Bypass(paths=("/favicon.ico",)),
    )
    # One process: a fresh random secret is right here (no warning about sharing it).
    settings = Settings(
        rooms=(room,),
        upstream=f"http://127.0.0.1:{origin_port}",
        secret=secrets.token_urlsafe(32),
    )
    app: Any = build_app(settings)
    proxy = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, server_header=False, date_header=False, **quiet)
    )
    url = f"http://{format_address(host, port)}/"
    print(f"waitroom-proxy demo: open {url} in up to {capacity + 1} browser windows")
    print(
        "  each visitor needs its own cookies: use a private window or another browser for "
        "each one (tabs of one window share a visitor)"
    )
    print(f"  capacity {capacity}: visitor {capacity + 1} waits until someone clicks Leave")
    print(f"  JSON status: curl -H 'Accept: application/json' {url}")
    print("  Ctrl-C stops")
    await asyncio.gather(origin.serve(sockets=[origin_sock]), proxy.serve(sockets=[proxy_sock]))


def run_demo(port: int = 8080, host: str = "127.0.0.1", capacity: int = 2) -> None:
    """Run the demo until interrupted.

    Raises:
        ListenError: ``port`` cannot be used (the message names it); nothing was printed.
    """
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_main(host, port, capacity))
