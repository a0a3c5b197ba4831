"""Headers the origin trusts are the proxy's alone, on every path (issue 11, item 7; DESIGN §4).

The client forges ``Waitroom-Verified``, the room's cookies, ``X-Forwarded-*``, ``Forwarded``,
``X-Real-IP`` and their ``_`` spellings (CGI and WSGI origins read ``X_Forwarded_For`` as
``HTTP_X_FORWARDED_FOR``, the same variable as ``X-Forwarded-For``). Whatever path the request
takes — no room, bypass, a valid session, fail-open, or the middleware in a host app — none of
it reaches the app or origin; ``TRACE`` and ``CONNECT`` are refused, never forwarded.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fixtures.asgi_server import serve_asgi
from tests.fixtures.origin import closed_port_url
from tests.reliability.gate_rig import (
    ROOMS,
    SIGNING,
    Gate,
    exchange,
    run_gate,
    status_of,
)
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.asgi.middleware import WaitroomMiddleware
from waitroom_proxy.bootstrap import build_engine
from waitroom_proxy.config import Settings

FORGED = (
    b"Waitroom-Verified: forged\r\nWaitroom_Verified: forged\r\nwaitroom_verified: forged\r\n"
    b"X-Forwarded-For: 10.0.0.1\r\nX_Forwarded_For: 10.0.0.1\r\n"
    b"X-Forwarded-Proto: https\r\nX_Forwarded_Proto: https\r\n"
    b"X-Forwarded-Host: evil.test\r\nX_Forwarded_Host: evil.test\r\n"
    b"X-Forwarded-Port: 1\r\nX-Forwarded-Prefix: /evil\r\nForwarded: for=10.0.0.1\r\n"
    b"X-Real-IP: 10.0.0.1\r\nX_Real_IP: 10.0.0.1\r\n"
)
NEVER = {
    b"waitroom_verified",
    b"x_forwarded_for",
    b"x_forwarded_proto",
    b"x_forwarded_host",
    b"x-forwarded-port",
    b"x-forwarded-prefix",
    b"forwarded",
    b"x-real-ip",
    b"x_real_ip",
}


def request(host: bytes, path: bytes, cookie: bytes, method: bytes = b"GET") -> bytes:
    return (
        method + b" " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + FORGED
        + b"Cookie: " + cookie + b"\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )  # fmt: skip


FORGED_COOKIE = b"waitroom_session=forged; keep=1; waitroom_ticket=forged"


@pytest.fixture(params=["httptools", "h11"])
async def gate(request: pytest.FixtureRequest) -> AsyncIterator[Gate]:
    async with run_gate(request.param) as g:
        yield g


def check_forwarded(headers: list[tuple[bytes, bytes]], host: bytes, verified: str | None) -> None:
    names = [n.lower() for n, _ in headers]
    assert not NEVER & set(names), NEVER & set(names)

    def values(name: bytes) -> list[bytes]:
        return [v for n, v in headers if n.lower() == name]

    assert values(b"waitroom-verified") == ([verified.encode()] if verified else [])
    assert values(b"x-forwarded-for") == [b"127.0.0.1"]
    assert values(b"x-forwarded-proto") == [b"http"]
    assert values(b"x-forwarded-host") == [host]
    assert values(b"cookie") == [b"keep=1"]


async def test_no_room_bypass_and_session_paths(gate: Gate) -> None:
    cases = [
        (b"other.test", b"/no-room", FORGED_COOKIE, None),
        (b"shop.test", b"/static/app.js", FORGED_COOKIE, None),
        (b"shop.test", b"/buy", b"waitroom_session=" + gate.holder.encode() + b"; keep=1; "
         b"waitroom_ticket=forged", gate.holder),
    ]  # fmt: skip
    for host, path, cookie, verified in cases:
        raw = await exchange(gate.port, request(host, path, cookie))
        assert status_of(raw) == 200, (path, raw[:300])
        seen = gate.origin.requests[-1]
        assert seen.target == path
        check_forwarded(seen.headers, host, verified)
    assert len(gate.origin.requests) == len(cases)


async def test_fail_open_path() -> None:
    dead = "redis://" + closed_port_url().removeprefix("http://") + "/0"
    store = RedisStore.from_url(dead, timeout=0.2)
    async with run_gate(store=store, hold=False) as g:
        raw = await exchange(g.port, request(b"shop.test", b"/buy", FORGED_COOKIE))
        assert status_of(raw) == 200, raw[:300]
        (seen,) = g.origin.requests
        # A fail-open admission is a session of the proxy's own (counted once the store is
        # back): the origin sees that token, the one the visitor's cookie now holds, never the
        # client's forged one.
        issued = re.search(rb"set-cookie: waitroom_session=([^;\r]+)", raw, re.I)
        assert issued, raw[:600]
        check_forwarded(seen.headers, b"shop.test", issued.group(1).decode())


async def test_trace_and_connect_are_refused(gate: Gate) -> None:
    cookie = b"waitroom_session=" + gate.holder.encode()
    raw = await exchange(gate.port, request(b"shop.test", b"/buy", cookie, b"TRACE"))
    assert status_of(raw) == 405, raw[:300]
    assert gate.holder.encode() not in raw
    raw = await exchange(gate.port, request(b"other.test", b"/x", cookie, b"TRACE"))
    assert status_of(raw) == 405
    raw = await exchange(
        gate.port,
        b"CONNECT shop.test:443 HTTP/1.1\r\nHost: shop.test:443\r\nConnection: close\r\n\r\n",
    )
    assert status_of(raw) in (400, 405), raw[:300]  # 400: uvicorn refuses the target itself
    assert gate.origin.requests == []


# -- the middleware in a host app ---------------------------------------------------------------


class HostApp:
    """A host app that records the headers of every request it serves."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, list[tuple[bytes, bytes]]]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.seen.append((scope["method"], scope["path"], list(scope["headers"])))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"ok"})


async def test_host_app_middleware_paths() -> None:
    host_app = HostApp()
    settings = Settings(rooms=ROOMS, secret=SIGNING, client_rate_limit=0)
    engine = build_engine(settings, store=MemoryStore(), controller_interval=0.2)
    async with serve_asgi(WaitroomMiddleware(host_app, engine=engine)) as url:
        port = int(url.rsplit(":", 1)[1])
        raw = await exchange(port, b"GET /hold HTTP/1.1\r\nHost: shop.test\r\n"
                             b"Connection: close\r\n\r\n")  # fmt: skip
        token = raw.split(b"waitroom_session=", 1)[1].split(b";", 1)[0]
        cases = [
            (b"other.test", b"/no-room", FORGED_COOKIE, None),
            (b"shop.test", b"/static/app.js", FORGED_COOKIE, None),
            (b"shop.test", b"/buy", b"waitroom_session=" + token + b"; keep=1", token.decode()),
        ]
        for host, path, cookie, verified in cases:
            raw = await exchange(port, request(host, path, cookie))
            assert status_of(raw) == 200, (path, raw[:300])
            method, seen_path, headers = host_app.seen[-1]
            assert seen_path == path.decode()
            names = {n for n, _ in headers}
            assert not NEVER & names, NEVER & names
            assert b"x-forwarded-for" not in names and b"x-forwarded-host" not in names
            values = [v for n, v in headers if n == b"waitroom-verified"]
            assert values == ([verified.encode()] if verified else [])
            assert [v for n, v in headers if n == b"cookie"] == [b"keep=1"]
        raw = await exchange(port, request(b"shop.test", b"/buy", b"waitroom_session=" + token,
                                           b"TRACE"))  # fmt: skip
        assert status_of(raw) == 405
        assert len(host_app.seen) == 1 + len(cases)
