"""The gate under attack: the standalone proxy (real uvicorn, our hardened protocol) in front of
a strict recording origin, with a full room, bypass rules and a free room on another host.

Rooms:
- ``sale``: ``shop.test/``, capacity 1 — full once ``Gate.holder`` took the one place; bypass
  paths ``/static/`` and ``*.css``, bypass network ``10.0.0.0/8``, bypass secret ``SECRET``;
- ``free``: ``free.test/``, plenty of capacity (anybody is admitted at once).
Any other host matches no room.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tests.fixtures.asgi_server import serve_asgi
from tests.fixtures.h11_recorder import Recorder, run_recorder
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.asgi.hardening import HttpLimits, http_protocol
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import Bypass, RoomPolicy
from waitroom_proxy.domain.rules import BypassRules
from waitroom_proxy.server import build_app

SIGNING = "gate-rig-secret-" + "g" * 32
SECRET = "bypass-secret-0123456789"
ROOMS = (
    RoomPolicy(
        name="sale",
        capacity=1,
        match=("shop.test/",),
        bypass=Bypass(paths=("/static/", "*.css"), cidrs=("10.0.0.0/8",), secret=SECRET),
    ),
    RoomPolicy(name="free", capacity=100_000, match=("free.test/",)),
)
SALE_BYPASS = BypassRules.compile(ROOMS[0])


@dataclass
class Gate:
    url: str
    port: int
    app: Any
    origin: Recorder
    holder: str
    """The session token of the visitor holding the sale room's one place."""

    @property
    def gate(self) -> Any:
        return self.app.engine.gate


async def exchange(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``data`` in one write; read until the server closes (or ``timeout``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    chunks: list[bytes] = []
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return b"".join(chunks)


def status_of(raw: bytes) -> int:
    """The status code of the first response in ``raw`` (0 when there is none)."""
    if not raw.startswith(b"HTTP/1."):
        return 0
    return int(raw[9:12])


async def _take_the_place(port: int) -> str:
    raw = await exchange(
        port, b"GET /hold HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n"
    )
    assert status_of(raw) == 200, raw[:300]
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"set-cookie: waitroom_session="):
            return line.split(b"=", 1)[1].split(b";", 1)[0].decode()
    raise AssertionError(f"no session cookie: {raw[:300]!r}")


@contextlib.asynccontextmanager
async def run_gate(
    kind: str = "httptools",
    *,
    upstream_path: str = "",
    store: Any = None,
    hold: bool = True,
    controller_interval: float = 0.2,
    **server: Any,
) -> AsyncIterator[Gate]:
    """The proxy in front of a recording origin; the sale room is full when this yields
    (unless ``hold`` is false: then nobody holds the place and ``Gate.holder`` is empty)."""
    async with run_recorder() as origin:
        options: dict[str, Any] = {"secret": SIGNING, "client_rate_limit": 0, **server}
        settings = Settings(rooms=ROOMS, upstream=origin.url + upstream_path, **options)
        app = build_app(
            settings,
            store=store if store is not None else MemoryStore(),
            controller_interval=controller_interval,
            access_log=False,
        )
        proto = http_protocol(HttpLimits(), kind)
        async with serve_asgi(app, http=proto) as url:
            port = int(url.rsplit(":", 1)[1])
            holder = await _take_the_place(port) if hold else ""
            origin.requests.clear()
            yield Gate(url, port, app, origin, holder)
