"""Response framing through the proxy, against scripted raw origins (issue 11, item 10).

Each test sends exact bytes to the proxy (served by uvicorn, as in production) and reads every
byte that comes back until the proxy closes, so framing errors cannot hide behind a lenient
client parser.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.fixtures.recording_origin import Script, recording_origin
from tests.integration.test_upstream_reuse import through_proxy, until


async def talk(port: int, request: bytes) -> bytes:
    """Write ``request`` and read until the proxy closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        async with asyncio.timeout(10):
            return await reader.read(-1)
    finally:
        writer.close()


def split(raw: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """(status line, lowercased headers, the rest) of the first response in ``raw``."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    return lines[0], headers, rest


CHUNKED = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)


async def test_an_http10_client_never_gets_chunked_framing() -> None:
    async with (
        recording_origin({b"/c": Script(CHUNKED)}) as origin,
        through_proxy(origin.url) as (_, port),
    ):
        raw = await talk(port, b"GET /c HTTP/1.0\r\nhost: site\r\n\r\n")
    status, headers, body = split(raw)
    assert status.startswith(b"HTTP/1.1 200")
    assert (b"transfer-encoding", b"chunked") not in headers
    assert body == b"hello world"
    assert (b"content-length", b"11") in headers


async def test_an_http10_client_gets_a_streamed_body_whole() -> None:
    gate = asyncio.Event()
    slow = Script(CHUNKED[:-20], rest=CHUNKED[-20:], gate=gate)
    async with (
        recording_origin({b"/c": slow}) as origin,
        through_proxy(origin.url) as (_, port),
    ):
        task = asyncio.create_task(talk(port, b"GET /c HTTP/1.0\r\nhost: site\r\n\r\n"))
        await until(lambda: bool(origin.requests))  # the head and first chunk are on their way
        gate.set()
        raw = await task
    _, headers, body = split(raw)
    assert body == b"hello world" and (b"content-length", b"11") in headers


async def test_response_trailers_never_become_headers() -> None:
    trailer = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-trailer\r\n\r\n"
        b"2\r\nok\r\n0\r\nx-trailer: forged\r\nset-cookie: t=1\r\n\r\n"
    )
    async with (
        recording_origin({b"/t": Script(trailer)}) as origin,
        through_proxy(origin.url) as (_, port),
    ):
        raw = await talk(port, b"GET /t HTTP/1.1\r\nhost: site\r\nconnection: close\r\n\r\n")
    _, headers, body = split(raw)
    names = [n for n, _ in headers]
    assert b"x-trailer" not in names and b"set-cookie" not in names
    assert b"forged" not in raw
    assert body in (b"ok", b"2\r\nok\r\n0\r\n\r\n")


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
async def test_bytes_after_a_bodiless_response_never_reach_the_client(status: bytes) -> None:
    injected = b"HTTP/1.1 200 OK\r\nx-injected: 1\r\ncontent-length: 4\r\n\r\nevil"
    script = Script(b"HTTP/1.1 " + status + b"\r\n\r\n" + injected)
    async with (
        recording_origin({b"/n": script}) as origin,
        through_proxy(origin.url) as (_, port),
    ):
        raw = await talk(
            port,
            b"GET /n HTTP/1.1\r\nhost: site\r\n\r\n"
            b"GET /next HTTP/1.1\r\nhost: site\r\nconnection: close\r\n\r\n",
        )
    assert b"x-injected" not in raw.lower() and b"evil" not in raw
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 " + status[:3])
    assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(b"ok GET /next")
    # The connection that carried stray bytes was closed, never reused.
    assert [len(c.requests) for c in origin.connections] == [1, 1]


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
async def test_a_bodiless_response_with_a_length_keeps_the_client_connection(
    status: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(b"HTTP/1.1 " + status + b'\r\ncontent-length: 5\r\netag: "e"\r\n\r\n')
    caplog.set_level(logging.WARNING)
    async with (
        recording_origin({b"/n": script}) as origin,
        through_proxy(origin.url) as (_, port),
    ):
        raw = await talk(
            port,
            b"GET /n HTTP/1.1\r\nhost: site\r\n\r\n"
            b"GET /next HTTP/1.1\r\nhost: site\r\nconnection: close\r\n\r\n",
        )
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 " + status[:3]) and b'etag: "e"' in first
    assert b"content-length" not in first
    assert rest.startswith(b"HTTP/1.1 200") and rest.endswith(b"ok GET /next")
    assert [r.levelname for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert len(origin.connections) == 1  # the upstream connection was reused too


@pytest.mark.parametrize(
    "line", [b"HTTP/1.1 999 Odd", b"HTTP/1.1 600 X", b"HTTP/1.1 101 Switching"]
)
async def test_an_invalid_status_is_a_502(line: bytes) -> None:
    script = Script(line + b"\r\ncontent-length: 2\r\n\r\nhi")
    async with (
        recording_origin({b"/s": script}) as origin,
        through_proxy(origin.url) as (_, port),
    ):
        raw = await talk(port, b"GET /s HTTP/1.1\r\nhost: site\r\nconnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 502 ")


async def test_body_bytes_after_a_head_response_close_the_upstream_connection() -> None:
    # Found by the fuzzer: a chunked HEAD response followed by a last-chunk is a complete
    # message to the parser, yet those bytes are a body a HEAD response must not have.
    script = Script(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n")
    async with (
        recording_origin({b"/h": script}) as origin,
        through_proxy(origin.url) as (_, port),
    ):
        raw = await talk(
            port,
            b"HEAD /h HTTP/1.1\r\nhost: site\r\n\r\n"
            b"GET /next HTTP/1.1\r\nhost: site\r\nconnection: close\r\n\r\n",
        )
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"ok GET /next")
    assert [len(c.requests) for c in origin.connections] == [1, 1]


async def test_an_http10_client_gets_a_502_rather_than_an_unbounded_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("waitroom_proxy.asgi.http_forward.HTTP10_BUFFER_MAX", 8)
    async with (
        recording_origin({b"/c": Script(CHUNKED)}) as origin,
        through_proxy(origin.url) as (_, port),
    ):
        raw = await talk(port, b"GET /c HTTP/1.0\r\nhost: site\r\n\r\n")
        ok = await talk(port, b"GET /c HTTP/1.1\r\nhost: site\r\nconnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 502 ")
    assert ok.startswith(b"HTTP/1.1 200 ")  # HTTP/1.1 clients stream whatever the size
