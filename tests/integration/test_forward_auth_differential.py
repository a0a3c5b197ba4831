"""Forward-auth decides as the inline gate decides: the same request, sent byte for byte to the
proxy (does it reach the origin?) and described to ``/_waitroom/auth`` as nginx describes it
(does it pass?), must get the same verdict, for every host, spelling, method and cookie.

Both run on one store with one secret (two replicas of one deployment); the room is full, so
a newcomer waits in both modes (forward-auth takes the place at the LB's follow-up request,
which the proxy does at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import Bypass, RoomPolicy
from waitroom_proxy.server import build_app

SECRET = "fwd-diff-secret-" + "d" * 32

ROOMS = (
    RoomPolicy(
        name="shop",
        capacity=1,
        match=("shop.test/",),
        bypass=Bypass(paths=("/static/", "*.css", "/api/health"), methods=("OPTIONS",)),
    ),
    RoomPolicy(name="tickets", capacity=1, match=("*/tickets",)),
)
TARGETS = [
    "/", "/sale", "/sale?x=/static/", "/static/a.js", "/static", "/STATIC/a", "/a.css",
    "/sale;x.css", "/static/../sale", "/static/%2e%2e/sale", "/%73tatic/a", "/static%2fa",
    "/static%2F..%2Fsale", "//static/../sale", "/static/./a", "/%2e%2e/x", "/x/..",
    "/tickets", "/tickets/1", "/Tickets", "/tickets%2f1", "/api/health", "/api/health/../x",
    "/sale%00", "/sale%zz", "/sale%2525", "/static\\..\\sale",
]  # fmt: skip
HOSTS = ["shop.test", "SHOP.test", "shop.test.", "shop.test:8080", "other.test", "bad host"]
METHODS = ["GET", "POST", "OPTIONS"]


async def origin(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"x-origin", b"1"), (b"content-length", b"0")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b""})


async def raw(url: str, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as is; the status and the head of the answer."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    return int(head.split(b" ", 2)[1]), head.lower()


@contextlib.asynccontextmanager
async def both() -> AsyncIterator[tuple[str, str, str]]:
    store = MemoryStore()
    common: dict[str, Any] = {"rooms": ROOMS, "secret": SECRET}
    async with serve_asgi(origin) as origin_url:
        proxy = build_app(Settings(upstream=origin_url, **common), store=store, access_log=False)
        auth = build_app(Settings(**common), store=store, access_log=False)
        async with serve_asgi(proxy) as proxy_url, serve_asgi(auth) as auth_url:
            # Fill the room with one session; its cookie is one of the cookies tried.
            async with httpx.AsyncClient(base_url=proxy_url) as client:
                r = await client.get("/sale", headers={"host": "shop.test"})
                assert r.headers.get("x-origin") == "1"
                cookie = next(c for c in r.headers.get_list("set-cookie") if "session=" in c)
                r = await client.get("/tickets", headers={"host": "other.test"})
                assert r.headers.get("x-origin") == "1", "the other room is full too"
            yield proxy_url, auth_url, cookie.split(";")[0]


async def test_forward_auth_and_inline_gate_agree() -> None:
    async with both() as (proxy_url, auth_url, session):
        cookies = [None, session, "waitroom_session=forged", f"a=1; {session}"]
        disagreements = []
        seen: set[str] = set()
        for target, host, method, cookie in itertools.product(TARGETS, HOSTS, METHODS, cookies):
            extra = f"Cookie: {cookie}\r\n" if cookie else ""
            inline_req = (f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}"
                          "Content-Length: 0\r\n\r\n").encode("latin-1")  # fmt: skip
            status, head = await raw(proxy_url, inline_req)
            inline = "pass" if b"x-origin: 1" in head else ("refused" if status == 400 else "no")
            auth_req = (f"GET /_waitroom/auth HTTP/1.1\r\nHost: {host}\r\n"
                        f"X-Original-URI: {target}\r\nX-Original-Method: {method}\r\n{extra}"
                        "\r\n").encode("latin-1")  # fmt: skip
            status, head = await raw(auth_url, auth_req)
            if status == 400:  # the auth request's own Host is refused before it is read
                auth = "refused"
            else:
                auth = {200: "pass", 401: "no", 403: "refused"}.get(status, str(status))
            seen.add(inline)
            if inline != auth:
                disagreements.append((method, host, target, cookie and cookie[:20], inline, auth))
        assert disagreements == []
        assert seen == {"pass", "no", "refused"}, "the corpus reaches every verdict"
