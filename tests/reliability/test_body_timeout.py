"""A client that goes silent mid-body gets 408 and a close (issue 11, item 11; DESIGN §4).

Without ``body_timeout`` a client that declares a body and then trickles it, or stops, holds an
upstream connection and an origin worker for as long as it likes (nginx cuts it after
``client_body_timeout``, 60 s by default). The deadline is the idle time between two pieces of
the body, not the time for the whole body: a slow but steady upload passes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.reliability.gate_rig import Gate, run_gate, status_of

BODY_TIMEOUT = 1.0


@pytest.fixture(params=["httptools", "h11"])
async def gate(request: pytest.FixtureRequest) -> AsyncIterator[Gate]:
    async with run_gate(request.param, body_timeout=BODY_TIMEOUT) as g:
        yield g


async def _stall(port: int, first: bytes) -> tuple[bytes, bool]:
    """Send ``first``, then nothing: what comes back, and whether the server closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first)
    got = b""
    closed = False
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(BODY_TIMEOUT + 20):  # a hang fails below, not here
            while chunk := await reader.read(65536):
                got += chunk
            closed = True
    writer.close()
    return got, closed


async def test_stalled_bodies_get_408_and_close(gate: Gate) -> None:
    head = b"POST /static/up HTTP/1.1\r\nHost: shop.test\r\n"
    for first in (
        head + b"Content-Length: 10\r\n\r\nabc",
        head + b"Content-Length: 10\r\n\r\n",
        head + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    ):
        got, closed = await _stall(gate.port, first)
        assert status_of(got) == 408, (first, got[:200])
        assert closed
    assert gate.origin.requests == []  # no request reached the origin complete


async def test_slow_but_steady_upload_passes(gate: Gate) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gate.port)
    writer.write(b"POST /static/up HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 20\r\n"
                 b"Connection: close\r\n\r\n")  # fmt: skip
    for _ in range(20):  # 20 pieces, each well within the deadline
        await asyncio.sleep(BODY_TIMEOUT / 50)
        writer.write(b"x")
        await writer.drain()
    async with asyncio.timeout(20):
        got = await reader.read(-1)
    writer.close()
    assert status_of(got) == 200, got[:200]
    (seen,) = gate.origin.requests
    assert seen.body == b"x" * 20


async def test_requests_without_a_body_are_not_affected(gate: Gate) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gate.port)
    writer.write(b"GET /static/a HTTP/1.1\r\nHost: shop.test\r\n\r\n")
    async with asyncio.timeout(20):
        first = await reader.readuntil(b"ok")
    await asyncio.sleep(BODY_TIMEOUT * 1.5)  # idle between requests: not a body timeout
    writer.write(b"GET /static/b HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
    async with asyncio.timeout(20):
        second = await reader.read(-1)
    writer.close()
    assert status_of(first) == 200 and status_of(second) == 200
    assert gate.origin.targets() == [b"/static/a", b"/static/b"]
