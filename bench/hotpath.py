"""The admitted request's Python cost, layer by layer, in-process (no sockets, no server).

    python -m bench.hotpath [--n 200000]

Each layer of the standalone app's chain wraps a stub app that answers at once, and is called
``n`` times with one keep-alive client's request carrying a valid session cookie; the table
gives µs per request above the stub alone. ``upstream_request_headers`` is timed as the bare
proxy calls it and as the waiting room calls it (``Waitroom-Verified`` added, room cookies
stripped). This is the attribution behind the admitted-traffic gap in ``bench/RESULTS.md``.

The last rows are whole requests proxied to an origin on loopback (a minimal keep-alive server
in the same event loop answering 1 KiB): the bare ``UpstreamProxy``, the standalone app
(``server.build_app``, access log off) with a session, and a heartbeat of a queued visitor
(memory store); µs per request, the origin's and the socket calls' share included, so only the
differences between them are the waiting room's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from waitroom_proxy.asgi.chain import RequestContext
from waitroom_proxy.asgi.headers import upstream_request_headers
from waitroom_proxy.asgi.middleware import WaitroomMiddleware
from waitroom_proxy.bootstrap import build_engine
from waitroom_proxy.config import load_settings
from waitroom_proxy.logs import configure_logging

_ORIGIN_REPLY = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
    b"content-length: 1024\r\n\r\n" + b"x" * 1024
)


class _Origin(asyncio.Protocol):
    """A keep-alive origin answering every request (no body) with 1 KiB."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(_ORIGIN_REPLY * data.count(b"\r\n\r\n"))


BODY = b"x" * 1024


async def stub(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1024")]}
    )
    await send({"type": "http.response.body", "body": BODY})


def _scope(cookie: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/1k",
        "raw_path": b"/1k",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"cookie", b"waitroom_session=" + cookie),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


async def _time(app: Callable[..., Any], scope: dict[str, Any], n: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    for _ in range(min(n, 2000)):  # warm-up (and the verified-token cache)
        await app(dict(scope), receive, send)
    start = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - start) / n * 1e6


async def measure(n: int) -> list[tuple[str, float]]:
    settings = load_settings(
        None,
        env={"WAITROOM_UPSTREAM": "http://127.0.0.1:9", "WAITROOM_SECRET": "s" * 40},
        flags={"capacity": 100000},
    )
    engine = build_engine(settings)
    gate = engine.gate
    room = next(iter(gate.rooms.values()))
    token, session = gate.sessions.signer.issue(
        room.name, "p" * 22, now=time.time(), ttl=3600, max_age=7200
    )
    gate.sessions.cache.put(token, session)
    scope = _scope(token.encode())
    rows: list[tuple[str, float]] = []
    base = await _time(stub, scope, n)
    rows.append(("stub app alone (reference)", base))
    try:
        from waitroom_proxy.asgi.hardening import HardeningGuard

        rows.append(("HardeningGuard", await _time(HardeningGuard(stub), scope, n) - base))
    except ImportError:
        HardeningGuard = None  # type: ignore[assignment,misc]
    rows.append(
        (
            "RequestContext, access log off",
            await _time(RequestContext(stub, access_log_enabled=False), scope, n) - base,
        )
    )
    configure_logging("info")
    devnull = open(os.devnull, "w")  # noqa: SIM115
    for h in logging.getLogger().handlers:
        h.setStream(devnull)  # type: ignore[attr-defined]
    rows.append(
        (
            "RequestContext, access log on (JSON line)",
            await _time(RequestContext(stub), scope, n) - base,
        )
    )
    logging.getLogger().setLevel(logging.WARNING)
    engine._started = True  # no controller: in-process timing only
    mw = WaitroomMiddleware(stub, engine=engine)
    mw._started = True
    rows.append(("WaitroomMiddleware, session (host-app path)", await _time(mw, scope, n) - base))
    chain: Any = RequestContext(mw, access_log_enabled=False)
    if HardeningGuard is not None:
        chain = HardeningGuard(chain)
    rows.append(("whole chain, access log off", await _time(chain, scope, n) - base))

    hdrs = scope["headers"] + [(b"accept", b"*/*"), (b"user-agent", b"wrk")]
    verified = ((b"waitroom-verified", token.encode()),)

    def headers_bare() -> None:
        upstream_request_headers(
            hdrs, peer="127.0.0.1", scheme="http", trusted=False, default_host=b"x"
        )

    def headers_room() -> None:
        upstream_request_headers(
            hdrs, peer="127.0.0.1", scheme="http", trusted=False, default_host=b"x",
            add_headers=verified, strip_cookies=("waitroom_session", "waitroom_ticket"),
        )  # fmt: skip

    for name, fn in (("upstream_request_headers, bare", headers_bare),
                     ("upstream_request_headers, waiting room", headers_room)):  # fmt: skip
        for _ in range(2000):
            fn()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        rows.append((name, (time.perf_counter() - start) / n * 1e6))
    devnull.close()
    rows += await _proxied(n // 10)
    return rows


async def _proxied(n: int) -> list[tuple[str, float]]:
    """Whole requests through the bare proxy and the standalone app, to a loopback origin."""
    from waitroom_proxy.adapters.memory_store import MemoryStore
    from waitroom_proxy.asgi.proxy import UpstreamProxy
    from waitroom_proxy.server import build_app

    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Origin, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstream = f"http://127.0.0.1:{port}"
    settings = load_settings(
        None,
        env={"WAITROOM_UPSTREAM": upstream, "WAITROOM_SECRET": "s" * 40},
        flags={"capacity": 1, "client_rate_limit": 0},
    )
    app = build_app(settings, access_log=False, store=MemoryStore(), controller_interval=3600)
    engine = app.engine
    await engine.start()
    gate = engine.gate
    room = next(iter(gate.rooms.values()))
    admitted = await gate.admission.arrive(room, None, "/", gate.clock())
    token = admitted.session_token or ""
    queued = await gate.admission.arrive(room, None, "/", gate.clock())
    ticket = next(v for name, v, _ in queued.cookies if name == "waitroom_ticket")
    bare = UpstreamProxy(upstream)
    poll = {
        **_scope(b""),
        "method": "POST",
        "path": "/_waitroom/heartbeat",
        "raw_path": b"/_waitroom/heartbeat",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"accept", b"application/json"),
                    (b"cookie", b"waitroom_ticket=" + ticket.encode())],
    }  # fmt: skip
    rows = [
        ("proxied: bare UpstreamProxy", await _time(bare, _scope(token.encode()), n)),
        ("proxied: standalone app, session", await _time(app, _scope(token.encode()), n)),
        ("heartbeat: standalone app, queued visitor", await _time(app, poll, n)),
    ]
    await engine.stop()
    await bare.aclose()
    server.close()
    return rows


def table(rows: list[tuple[str, float]]) -> str:
    lines = ["| layer (µs per request above the stub; proxied: per request) | µs |", "|---|---|"]
    lines += [f"| {name} | {us:.2f} |" for name, us in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--n", type=int, default=200_000)
    args = ap.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(table(asyncio.run(measure(args.n))))


if __name__ == "__main__":
    main()
