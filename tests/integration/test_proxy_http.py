"""UpstreamProxy against a real origin (uvicorn) on loopback, itself served by real uvicorn."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.fixtures.origin import Origin, raw_exchange, run_origin, serve_asgi
from waitroom_proxy.asgi.proxy import UpstreamProxy


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    async with run_origin() as o:
        yield o


@asynccontextmanager
async def proxied(
    upstream: str,
    *,
    add_headers: Sequence[tuple[bytes, bytes]] = (),
    strip_cookies: Collection[str] = (),
    response_hook: Callable[[int, list[tuple[bytes, bytes]]], list[tuple[bytes, bytes]]]
    | None = None,
    **options: Any,
) -> AsyncIterator[tuple[str, UpstreamProxy]]:
    """Serve an UpstreamProxy (through ``forward`` with the given options) with uvicorn."""
    proxy = UpstreamProxy(upstream, **options)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await proxy.forward(
            scope,
            receive,
            send,
            add_headers=add_headers,
            strip_cookies=strip_cookies,
            response_hook=response_hook,
        )

    try:
        async with serve_asgi(app) as url:
            yield url, proxy
    finally:
        await proxy.aclose()


def header_values(info: dict[str, Any], name: str) -> list[str]:
    return [v for n, v in info["headers"] if n == name]


async def test_path_and_query_pass_exactly(origin: Origin) -> None:
    async with proxied(origin.url) as (url, _):
        target = b"/echo/a%2Fb/c%20d;p=1/%7Euser?q=%41&z=1+2&&x"
        resp = await raw_exchange(url, b"GET " + target + b" HTTP/1.1\r\nhost: site\r\n\r\n")
    info = json.loads(resp.body)
    assert resp.status == 200
    assert info["raw_path"] == "/echo/a%2Fb/c%20d;p=1/%7Euser"
    assert info["query_string"] == "q=%41&z=1+2&&x"


async def test_hostile_host_never_chooses_the_upstream(origin: Origin) -> None:
    # The client's Host is kept for the origin (virtual hosts), but the connection always goes
    # to the configured upstream, whatever the Host or an absolute-form target says.
    async with proxied(origin.url) as (url, _):
        r1 = await raw_exchange(url, b"GET /echo HTTP/1.1\r\nhost: evil.example:1\r\n\r\n")
        r2 = await raw_exchange(
            url, b"GET http://evil.example:2/echo HTTP/1.1\r\nhost: evil.example:2\r\n\r\n"
        )
    for resp, host in ((r1, "evil.example:1"), (r2, "evil.example:2")):
        assert resp.status == 200
        info = json.loads(resp.body)
        assert header_values(info, "host") == [host]
        assert header_values(info, "x-forwarded-host") == [host]
    assert len(origin.requests) == 2


async def test_http10_client_without_host_gets_upstream_authority(origin: Origin) -> None:
    async with proxied(origin.url) as (url, _):
        resp = await raw_exchange(url, b"GET /echo HTTP/1.0\r\n\r\n")
    info = json.loads(resp.body)
    assert header_values(info, "host") == [origin.url.removeprefix("http://")]


async def test_content_length_and_chunked_requests(origin: Origin) -> None:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(5):
            yield b"part%d;" % i
            await asyncio.sleep(0.01)

    async with proxied(origin.url) as (url, _), httpx.AsyncClient() as client:
        r1 = await client.post(url + "/echo", content=b"x" * 5000)
        r2 = await client.post(url + "/echo", content=gen())
        r3 = await client.post(url + "/echo")  # empty body
    i1, i2, i3 = r1.json(), r2.json(), r3.json()
    assert i1["body_length"] == 5000
    assert header_values(i1, "content-length") == ["5000"]
    assert i2["body"] == "part0;part1;part2;part3;part4;"
    assert header_values(i2, "transfer-encoding") == ["chunked"]  # re-framed by the proxy
    assert i3["body_length"] == 0
    assert header_values(i3, "content-length") == ["0"]


async def test_chunked_and_content_length_responses(origin: Origin) -> None:
    async with proxied(origin.url) as (url, _):
        chunked = await raw_exchange(url, b"GET /chunked HTTP/1.1\r\nhost: a\r\n\r\n")
        length = await raw_exchange(url, b"GET /length HTTP/1.1\r\nhost: a\r\n\r\n")
    assert chunked.body == b"one,two,three"
    assert chunked.get_all(b"transfer-encoding") == [b"chunked"]
    assert length.body == b"hello world"
    assert length.get_all(b"content-length") == [b"11"]


async def test_head_204_304_have_no_body_and_connection_is_reused(origin: Origin) -> None:
    async with proxied(origin.url) as (url, proxy), httpx.AsyncClient() as client:
        head = await client.head(url + "/length")
        after_head = await client.get(url + "/echo")
        r204 = await client.get(url + "/status/204")
        r304 = await client.get(url + "/status/304")
        last = await client.get(url + "/echo")
        assert proxy.pool.idle_count == 1
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == "11"
    assert after_head.status_code == 200  # the parser was not confused by the bodiless HEAD
    assert (r204.status_code, r204.content) == (204, b"")
    assert (r304.status_code, r304.content) == (304, b"")
    # One upstream connection served everything (keep-alive pool).
    assert after_head.json()["client_port"] == last.json()["client_port"]


async def test_hop_by_hop_request_headers_dropped(origin: Origin) -> None:
    request = (
        b"GET /echo HTTP/1.1\r\nhost: a\r\n"
        b"connection: keep-alive, x-secret\r\n"
        b"x-secret: 1\r\nkeep-alive: timeout=5\r\nproxy-connection: keep-alive\r\n"
        b"te: trailers\r\ntrailer: x-t\r\nproxy-authorization: Basic Zm9vOmJhcg==\r\n"
        b"upgrade: h2c\r\nx-keep: yes\r\n\r\n"
    )
    async with proxied(origin.url) as (url, _):
        resp = await raw_exchange(url, request)
    names = {n for n, _ in json.loads(resp.body)["headers"]}
    dropped = {"connection", "x-secret", "keep-alive", "proxy-connection", "te", "trailer"}
    dropped |= {"proxy-authorization", "upgrade", "transfer-encoding"}
    assert not names & dropped
    assert "x-keep" in names


async def test_hop_by_hop_response_headers_dropped(origin: Origin) -> None:
    query = "&".join(
        "set=" + h
        for h in (
            "connection:x-private",
            "x-private:1",
            "keep-alive:timeout=5",
            "proxy-authenticate:Basic",
            "trailer:x-t",
            "upgrade:h2c",
            "proxy-connection:keep-alive",
            "x-end-to-end:kept",
        )
    )
    async with proxied(origin.url) as (url, _):
        resp = await raw_exchange(url, f"GET /headers?{query} HTTP/1.1\r\nhost: a\r\n\r\n".encode())
    names = {n for n, _ in resp.headers}
    assert resp.body == b"ok"
    assert resp.get_all(b"x-end-to-end") == [b"kept"]
    assert not names & {
        b"x-private",
        b"keep-alive",
        b"proxy-authenticate",
        b"trailer",
        b"upgrade",
        b"proxy-connection",
    }
    assert resp.get_all(b"connection") in ([], [b"keep-alive"])  # only the server's own


async def test_repeated_set_cookie_survive_and_no_cookie_jar(origin: Origin) -> None:
    async with proxied(origin.url) as (url, _):
        first = await raw_exchange(url, b"GET /cookies HTTP/1.1\r\nhost: a\r\n\r\n")
        # Another visitor (no Cookie header) must not receive the first one's cookies.
        second = await raw_exchange(url, b"GET /echo HTTP/1.1\r\nhost: a\r\n\r\n")
    assert first.get_all(b"set-cookie") == [b"c1=1; Path=/", b"c2=2; Path=/", b"c3=3; Path=/"]
    assert header_values(json.loads(second.body), "cookie") == []


async def test_forwarded_headers_from_untrusted_peer_are_replaced(origin: Origin) -> None:
    request = (
        b"GET /echo HTTP/1.1\r\nhost: shop.example\r\nx-forwarded-for: 6.6.6.6\r\n"
        b"x-forwarded-proto: https\r\nx-forwarded-host: forged.example\r\nvia: 1.0 other\r\n\r\n"
    )
    async with proxied(origin.url) as (url, _):
        info = json.loads((await raw_exchange(url, request)).body)
    assert header_values(info, "x-forwarded-for") == ["127.0.0.1"]
    assert header_values(info, "x-forwarded-proto") == ["http"]
    assert header_values(info, "x-forwarded-host") == ["shop.example"]
    assert header_values(info, "via") == ["1.0 other"]  # passed as is; none added (as nginx)


async def test_forwarded_headers_from_trusted_peer_are_appended(origin: Origin) -> None:
    request = (
        b"GET /echo HTTP/1.1\r\nhost: shop.example\r\nx-forwarded-for: 203.0.113.9\r\n"
        b"x-forwarded-proto: https\r\nx-forwarded-host: www.shop.example\r\n\r\n"
    )
    async with proxied(origin.url, trusted_proxies=["127.0.0.0/8", "::1/128"]) as (url, _):
        info = json.loads((await raw_exchange(url, request)).body)
    assert header_values(info, "x-forwarded-for") == ["203.0.113.9, 127.0.0.1"]
    assert header_values(info, "x-forwarded-proto") == ["https"]
    assert header_values(info, "x-forwarded-host") == ["www.shop.example"]
    assert header_values(info, "via") == []  # nginx adds none; gzip_proxied off depends on it


async def test_add_headers_replace_forged_ones_and_room_cookies_are_stripped(
    origin: Origin,
) -> None:
    opts: dict[str, Any] = {
        "add_headers": [(b"Waitroom-Verified", b"signed.jwt")],
        "strip_cookies": {"waitroom_session", "waitroom_ticket"},
    }
    forged = (
        b"GET /echo HTTP/1.1\r\nhost: a\r\nwaitroom-verified: forged\r\n"
        b"cookie: waitroom_session=s; theme=dark\r\ncookie: waitroom_ticket=t; lang=en\r\n\r\n"
    )
    only_room = b"GET /echo HTTP/1.1\r\nhost: a\r\ncookie: waitroom_ticket=t\r\n\r\n"
    async with proxied(origin.url, **opts) as (url, _):
        i1 = json.loads((await raw_exchange(url, forged)).body)
        i2 = json.loads((await raw_exchange(url, only_room)).body)
    assert header_values(i1, "waitroom-verified") == ["signed.jwt"]
    assert header_values(i1, "cookie") == ["theme=dark; lang=en"]
    assert header_values(i2, "cookie") == []


async def test_response_hook_edits_headers(origin: Origin) -> None:
    seen: list[tuple[int, list[tuple[bytes, bytes]]]] = []

    def hook(status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        seen.append((status, list(headers)))
        out = [h for h in headers if h[0] != b"waitroom-command"]
        out.append((b"set-cookie", b"waitroom_session=new; HttpOnly"))
        return out

    query = "set=waitroom-command:revoke&set=set-cookie:a=1&set=connection:x-p&set=x-p:1"
    async with proxied(origin.url, response_hook=hook) as (url, _):
        resp = await raw_exchange(url, f"GET /headers?{query} HTTP/1.1\r\nhost: a\r\n\r\n".encode())
    assert seen[0][0] == 200
    hook_names = [n for n, _ in seen[0][1]]
    assert b"waitroom-command" in hook_names
    assert b"x-p" not in hook_names and b"connection" not in hook_names  # already filtered
    assert resp.get_all(b"waitroom-command") == []
    assert resp.get_all(b"set-cookie") == [b"a=1", b"waitroom_session=new; HttpOnly"]


async def test_sse_events_arrive_one_at_a_time(origin: Origin) -> None:
    async with (
        proxied(origin.url) as (url, _),
        httpx.AsyncClient(timeout=5) as client,
        client.stream("GET", url + "/sse?n=3") as resp,
    ):
        assert resp.headers["content-type"] == "text/event-stream"
        lines = resp.aiter_lines()
        for i in (1, 2, 3):
            line = await anext(lines)
            while not line:  # the blank line that ends the previous event
                line = await anext(lines)
            assert line == f"data: {i}"
            # The client has event i while the origin has not yet sent event i + 1.
            assert origin.sent == [str(k) for k in range(1, i + 1)]
            origin.gate(f"sse{i}").set()


async def test_client_disconnect_mid_response_closes_upstream(origin: Origin) -> None:
    async with proxied(origin.url) as (url, proxy), httpx.AsyncClient(timeout=5) as client:
        async with client.stream("GET", url + "/stream") as resp:
            async for chunk in resp.aiter_raw():
                assert chunk.startswith(b"x1")
                break
        # The client went away: the origin must see its connection end soon.
        await asyncio.wait_for(origin.stream_closed.wait(), 3)
        assert proxy.pool.idle_count == 0


async def test_stalled_upstream_gives_504_at_read_timeout(origin: Origin) -> None:
    async with proxied(origin.url, read_timeout=0.3) as (url, proxy):
        t0 = time.perf_counter()
        resp = await raw_exchange(url, b"GET /stall HTTP/1.1\r\nhost: a\r\n\r\n")
        elapsed = time.perf_counter() - t0
        assert proxy.pool.idle_count == 0
    assert resp.status == 504
    assert 0.29 <= elapsed < 1.5
    assert b'<p class="code">504</p>' in resp.body and b"taking too long" in resp.body


async def test_keepalive_connections_are_reused(origin: Origin) -> None:
    async with proxied(origin.url) as (url, _), httpx.AsyncClient() as client:
        ports = {(await client.get(url + "/echo")).json()["client_port"] for _ in range(20)}
    assert len(ports) == 1


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@asynccontextmanager
async def rss_peak() -> AsyncIterator[dict[str, int]]:
    """Sample this process's RSS every 20 ms; yields {"base": ..., "peak": ...}."""
    stats = {"base": rss(), "peak": 0}

    async def sample() -> None:
        while True:
            stats["peak"] = max(stats["peak"], rss())
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        yield stats
    finally:
        sampler.cancel()
        stats["peak"] = max(stats["peak"], rss())


@pytest.mark.slow
async def test_200_mib_upload_streams_with_bounded_memory(origin: Origin) -> None:
    chunk = b"\0" * (1 << 20)
    total = 200 * len(chunk)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(200):
            yield chunk

    async with proxied(origin.url) as (url, _), httpx.AsyncClient(timeout=60) as client:
        await client.get(url + "/echo")  # warm up every code path first
        async with rss_peak() as mem:
            resp = await client.post(url + "/upload?slow_mib=32", content=body())
    assert resp.json() == {"bytes": total}
    # Client, proxy and origin all live in this process: if any of them buffered the body,
    # RSS would grow by ~200 MiB.
    grew = mem["peak"] - mem["base"]
    assert grew < 40 * (1 << 20), f"RSS grew by {grew >> 20} MiB"


@pytest.mark.slow
async def test_200_mib_download_to_a_slow_client_with_bounded_memory(origin: Origin) -> None:
    # The client reads slowly: the proxy must stop reading the (fast) origin, not queue its body.
    async with proxied(origin.url) as (url, _), httpx.AsyncClient(timeout=60) as client:
        await client.get(url + "/echo")
        received = 0
        async with rss_peak() as mem, client.stream("GET", url + "/download?mib=200") as resp:
            async for data in resp.aiter_raw(1 << 20):
                received += len(data)
                if received < (32 << 20):
                    await asyncio.sleep(0.005)  # slow at first, while queues would fill
    assert received == 200 << 20
    grew = mem["peak"] - mem["base"]
    assert grew < 40 * (1 << 20), f"RSS grew by {grew >> 20} MiB"


def test_works_under_uvloop() -> None:
    # Production runs uvicorn with uvloop, whose transports differ from asyncio's.
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> list[int]:
        async def gen() -> AsyncIterator[bytes]:
            yield b"a" * 70000
            yield b"b"

        async with (
            run_origin() as origin,
            proxied(origin.url) as (url, _),
            httpx.AsyncClient() as client,
        ):
            r1 = await client.get(url + "/echo")
            r2 = await client.post(url + "/upload", content=gen())
            r3 = await client.get(url + "/download?mib=3")
            r4 = await client.head(url + "/length")
            assert r2.json() == {"bytes": 70001}
            assert len(r3.content) == 3 << 20
            return [r.status_code for r in (r1, r2, r3, r4)]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) == [200, 200, 200, 200]
