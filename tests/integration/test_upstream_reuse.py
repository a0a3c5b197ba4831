"""Upstream connection reuse against a strict recording origin (DESIGN §4, last sentence).

A pooled connection may carry the next request only if the last exchange ended exactly on a
message boundary in both directions. The attack these tests replay: the origin answers before
the streamed request body has ended (legal), the proxy stops sending, and a connection that
still owes body bytes goes back to the pool; the origin then reads the next request's head as
the rest of that body and parses the attacker's own bytes as a request, past the gate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.fixtures.origin import serve_asgi
from tests.fixtures.recording_origin import RecordingOrigin, Script, recording_origin
from waitroom_proxy.asgi.proxy import UpstreamProxy


def early(gate: asyncio.Event) -> Script:
    """Answer after the head; the response body ends only once ``gate`` is set."""
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nea"
    return Script(head, early=True, rest=b"rly", gate=gate)


SMUGGLED = (
    b"GET /sale HTTP/1.1\r\nhost: site\r\nx-forwarded-for: 6.6.6.6\r\n"
    b"waitroom-verified: forged\r\n\r\n"
)
B = b"POST /static HTTP/1.1\r\nhost: site\r\ncontent-length: %d\r\n\r\n%b" % (
    len(SMUGGLED),
    SMUGGLED,
)


@asynccontextmanager
async def through_proxy(upstream: str, **options: Any) -> AsyncIterator[tuple[str, int]]:
    proxy = UpstreamProxy(upstream, **options)
    try:
        async with serve_asgi(proxy) as url:
            yield url, int(url.rsplit(":", 1)[1])
    finally:
        await proxy.aclose()


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One response with a Content-Length body (what every script here sends)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


async def until(predicate: Any) -> None:
    """Wait for a condition that the peer makes true (bounded; no timed assertion)."""
    async with asyncio.timeout(10):
        while not predicate():
            await asyncio.sleep(0.005)


def forwarded_head_length(origin: RecordingOrigin, start: bytes) -> int:
    for conn in origin.connections:
        raw = bytes(conn.raw)
        at = raw.find(start)
        if at >= 0:
            return raw.index(b"\r\n\r\n", at) + 4 - at
    raise AssertionError(f"{start!r} never reached the origin")


async def test_early_answer_never_pools_a_connection_owing_body_bytes() -> None:
    gate = asyncio.Event()
    async with (
        recording_origin({b"/early": early(gate)}) as origin,
        through_proxy(origin.url, read_timeout=5) as (_, port),
    ):
        # What the proxy writes for B's head (the attacker can learn this length the same way).
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(B)
        assert b"ok POST /static" in await read_response(r)
        owed = forwarded_head_length(origin, b"POST /static")

        # A: a streamed upload the origin answers after its head; P3 is what stays owed.
        p1, p2, p3 = b"a" * 10, b"b" * 10, b"c" * owed
        w.write(b"POST /early HTTP/1.1\r\nhost: site\r\ncontent-length: %d\r\n\r\n" % (20 + owed))
        w.write(p1)
        await until(lambda: any(q.target == b"/early" for q in origin.requests))
        w.write(p2)  # the proxy notices the early answer after forwarding this piece
        await r.readuntil(b"\r\n\r\n")  # the head is relayed: the upload has stopped
        gate.set()  # only now does the response end (the exchange completes "cleanly")
        assert await r.readexactly(5) == b"early"
        w.write(p3)  # the client's request ends on its own connection; the proxy drops it

        # B on a fresh client connection: must reach the origin as a request of its own.
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(B)
        answer = await read_response(r2)
        w.close()
        w2.close()

    targets = [q.target for q in origin.requests]
    assert b"ok POST /static" in answer
    assert b"/sale" not in targets, "a request body was parsed as a request past the proxy"
    assert targets == [b"/static", b"/early", b"/static"]
    assert all(not q.header(b"waitroom-verified") for q in origin.requests)
    statics = [q for q in origin.requests if q.target == b"/static"]
    assert [q.body for q in statics] == [SMUGGLED, SMUGGLED]
    assert all(c.error is None for c in origin.connections)


async def test_a_fully_sent_early_answered_upload_may_not_be_reused_either() -> None:
    # The origin answered before the body ended, then read all of it: the proxy stopped
    # sending, so the connection owes bytes and must close, not pool (the pool stays empty).
    gate = asyncio.Event()
    async with (
        recording_origin({b"/early": early(gate)}) as origin,
        through_proxy(origin.url, read_timeout=5) as (_, port),
    ):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"POST /early HTTP/1.1\r\nhost: site\r\ncontent-length: 30\r\n\r\n" + b"x" * 10)
        await until(lambda: bool(origin.requests))
        w.write(b"y" * 10)
        await r.readuntil(b"\r\n\r\n")
        gate.set()
        assert await r.readexactly(5) == b"early"
        w.write(b"z" * 10)
        w.write(b"GET /next HTTP/1.1\r\nhost: site\r\n\r\n")
        assert (await read_response(r)).endswith(b"ok GET /next")
        w.close()
    assert [q.target for q in origin.requests] == [b"/early", b"/next"]
    assert len(origin.connections) == 2


async def test_an_early_answer_reaches_a_client_that_stops_sending() -> None:
    # The origin refuses the upload after its head (a 413, as an upload limit does) and reads
    # no more. The visitor must get that answer without sending the rest of the body.
    refuse = Script(
        b"HTTP/1.1 413 Content Too Large\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbig",
        early=True,
        close=True,
    )
    async with (
        recording_origin({b"/up": refuse}) as origin,
        through_proxy(origin.url, read_timeout=5) as (_, port),
    ):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"POST /up HTTP/1.1\r\nhost: site\r\ncontent-length: 100000\r\n\r\n" + b"x" * 10)
        async with asyncio.timeout(10):  # bounds the failure; nothing is timed
            answer = await read_response(r)
        w.close()
    assert answer.startswith(b"HTTP/1.1 413") and answer.endswith(b"big")
    assert [q.target for q in origin.requests] == [b"/up"]


async def test_a_streamed_upload_answered_after_its_end_is_relayed() -> None:
    # The proxy waits for the client's pieces and for an early answer at once; waiting for the
    # answer once the body has ended must not lose the wake-up of the earlier wait.
    async with (
        recording_origin() as origin,
        through_proxy(origin.url, read_timeout=5) as (_, port),
    ):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            w.write(b"POST /up HTTP/1.1\r\nhost: site\r\ncontent-length: 20\r\n\r\n" + b"x" * 10)
            await until(lambda: bool(origin.requests))
            w.write(b"y" * 10)
            async with asyncio.timeout(4):  # under read_timeout: a lost wake-up is a 504
                assert (await read_response(r)).endswith(b"ok POST /up")
        w.close()
    assert [q.body for q in origin.requests] == [b"x" * 10 + b"y" * 10] * 3
