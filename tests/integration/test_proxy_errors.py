"""UpstreamProxy failure paths, against scripted raw TCP origins and closed ports on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.fixtures.origin import (
    closed_port_url,
    raw_exchange,
    read_request,
    serve_asgi,
    serve_raw,
)
from waitroom_proxy.asgi.proxy import UpstreamProxy

LEAKS = (b"Traceback", b"Errno", b"Error", b"httptools", b"127.0.0.1")


@asynccontextmanager
async def proxied(upstream: str, **options: Any) -> AsyncIterator[tuple[str, UpstreamProxy]]:
    proxy = UpstreamProxy(upstream, **options)
    try:
        async with serve_asgi(proxy) as url:
            yield url, proxy
    finally:
        await proxy.aclose()


def assert_no_leak(body: bytes) -> None:
    for word in LEAKS:
        assert word not in body, word


async def test_refused_upstream_gives_friendly_502_fast() -> None:
    async with proxied(closed_port_url()) as (url, _):
        await raw_exchange(url, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")  # warm up the proxy
        t0 = time.perf_counter()
        resp = await raw_exchange(url, b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        elapsed = time.perf_counter() - t0
    assert resp.status == 502
    # No retries and no waiting for the 5 s connect timeout (slack for a loaded machine).
    assert elapsed < 1.0
    assert b'<p class="code">502</p>' in resp.body  # the page renderer's error page
    assert b"not answering" in resp.body
    assert resp.get_all(b"content-type") == [b"text/html; charset=utf-8"]
    assert_no_leak(resp.body)


async def test_custom_error_page() -> None:
    def page(status: int, reason: str) -> bytes:
        return f"<p>custom {status} {reason}</p>".encode()

    async with proxied(closed_port_url(), error_page=page) as (url, _):
        resp = await raw_exchange(url, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
    assert (resp.status, resp.body) == (502, b"<p>custom 502 Bad Gateway</p>")


async def test_invalid_response_gives_502_without_details() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SPDY/9 banana\r\n\x00\x01\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with serve_raw(handler) as origin, proxied(origin) as (url, proxy):
        resp = await raw_exchange(url, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        assert proxy.pool.idle_count == 0
    assert resp.status == 502
    assert_no_leak(resp.body)


async def test_post_is_never_retried_on_a_stale_pooled_connection() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Answers the first request of each connection; on a second one it reads the request
        # (the origin has *seen* it) and closes without a byte of response, like an origin
        # whose keep-alive timer fired just as the request arrived.
        for n in (1, 2):
            line, _, _ = await read_request(reader)
            seen.append(line)
            if n == 2:
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    async with (
        serve_raw(handler) as origin,
        proxied(origin) as (url, proxy),
        httpx.AsyncClient() as client,
    ):
        first = await client.get(url + "/first")
        assert proxy.pool.idle_count == 1
        post = await client.post(url + "/submit", content=b"order=1")
    assert first.status_code == 200
    assert post.status_code == 502
    assert seen.count(b"POST /submit HTTP/1.1") == 1


async def test_get_is_retried_once_on_a_stale_pooled_connection() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for n in (1, 2):
            line, _, _ = await read_request(reader)
            seen.append(line)
            if n == 2:
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    async with (
        serve_raw(handler) as origin,
        proxied(origin) as (url, _),
        httpx.AsyncClient() as client,
    ):
        await client.get(url + "/first")
        again = await client.get(url + "/again")
    assert (again.status_code, again.content) == (200, b"ok")
    assert seen.count(b"GET /again HTTP/1.1") == 2  # stale connection, then one fresh retry


async def test_response_read_until_close() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")
        for piece in (b"no length, ", b"not chunked, ", b"ends at close"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)

    async with serve_raw(handler) as origin, proxied(origin) as (url, proxy):
        resp = await raw_exchange(url, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        assert proxy.pool.idle_count == 0  # a connection that ended the body is never reused
    assert resp.status == 200
    assert resp.body == b"no length, not chunked, ends at close"


async def test_interim_1xx_responses_are_skipped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"
            b"HTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone"
        )
        await writer.drain()
        await reader.read()

    async with serve_raw(handler) as origin, proxied(origin) as (url, _):
        resp = await raw_exchange(url, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
    assert (resp.status, resp.body) == (201, b"done")
    assert resp.get_all(b"link") == []


async def test_upstream_dying_mid_body_cuts_the_response() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
        await writer.drain()
        await asyncio.sleep(0.05)

    async with (
        serve_raw(handler) as origin,
        proxied(origin) as (url, _),
        httpx.AsyncClient() as client,
    ):
        # Never a fake success: the client sees a truncated response, not a complete one.
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url + "/")


async def test_stall_after_headers_cuts_the_response_at_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await reader.read()

    async with (
        serve_raw(handler) as origin,
        proxied(origin, read_timeout=0.2) as (url, _),
        httpx.AsyncClient() as client,
    ):
        t0 = time.perf_counter()
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(url + "/")
        assert time.perf_counter() - t0 < 2


async def test_early_response_during_upload_stops_the_upload() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 3\r\n\r\nbig")
        await writer.drain()
        await asyncio.sleep(0.5)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b"x" * 65536
            await asyncio.sleep(0.005)

    async with (
        serve_raw(handler) as origin,
        proxied(origin) as (url, proxy),
        httpx.AsyncClient() as client,
    ):
        resp = await client.post(url + "/", content=body())
        assert proxy.pool.idle_count == 0
    assert (resp.status_code, resp.content) == (413, b"big")
