"""One reading of every request: trailers, Host and paths (issue 11, items 2-4; DESIGN §4).

Every attack request here targets the full ``sale`` room (see ``gate_rig``): it must be
refused (400) or queued, and must never reach the origin. Requests go out over raw sockets in
one write, on both uvicorn parsers behind our hardened protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.reliability.gate_rig import SECRET, Gate, exchange, run_gate, status_of

JSON = b"Accept: application/json\r\nConnection: close\r\n"


@pytest.fixture(params=["httptools", "h11"])
async def gate(request: pytest.FixtureRequest) -> AsyncIterator[Gate]:
    async with run_gate(request.param) as g:
        yield g


@pytest.fixture(params=["httptools", "h11"])
async def gate_behind_lb(request: pytest.FixtureRequest) -> AsyncIterator[Gate]:
    """The proxy behind a load balancer on loopback (its X-Forwarded-For is believed)."""
    async with run_gate(request.param, trusted_proxies=("127.0.0.1/32",)) as g:
        yield g


def queued(raw: bytes) -> bool:
    return status_of(raw) == 200 and b'"status": "waiting"' in raw


def chunked(path: bytes, trailer: bytes, headers: bytes = b"") -> bytes:
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n"
        + headers + JSON + b"\r\n3\r\nabc\r\n0\r\n" + trailer + b"\r\n"
    )  # fmt: skip


# -- item 2: trailers ---------------------------------------------------------------------------


async def test_trailers_never_act_as_headers(gate_behind_lb: Gate) -> None:
    g = gate_behind_lb
    attacks = {
        "bypass secret": chunked(b"/buy1", b"Waitroom-Bypass: " + SECRET.encode() + b"\r\n"),
        "forwarded-for in a bypass network": chunked(
            b"/buy2", b"X-Forwarded-For: 10.1.2.3\r\n", b"X-Forwarded-For: 203.0.113.9\r\n"
        ),
        "host of a free room": chunked(b"/buy3", b"Host: free.test\r\n"),
    }
    for name, data in attacks.items():
        raw = await exchange(g.port, data)
        assert queued(raw), (name, raw[:300])
    assert g.origin.requests == [], [r.target for r in g.origin.requests]
    # A bypassed upload with trailers: the origin gets the body, no trailer field as a header.
    raw = await exchange(g.port, chunked(b"/static/up", b"X-Trailer: 1\r\nHost: free.test\r\n"))
    assert status_of(raw) == 200
    (seen,) = g.origin.requests
    assert seen.body == b"abc"
    assert seen.header(b"host") == [b"shop.test"]
    assert b"x-trailer" not in seen.names()


async def test_secret_in_a_header_still_bypasses(gate: Gate) -> None:
    data = b"GET /buy HTTP/1.1\r\nHost: shop.test\r\nWaitroom-Bypass: " + SECRET.encode()
    raw = await exchange(gate.port, data + b"\r\n" + JSON + b"\r\n")
    assert status_of(raw) == 200 and not queued(raw)
    assert gate.origin.targets() == [b"/buy"]


# -- item 3: Host -------------------------------------------------------------------------------

BAD_HOSTS = {
    "two Host headers": b"GET /buy HTTP/1.1\r\nHost: shop.test\r\nHost: free.test\r\n",
    "two Host headers, free first": b"GET /buy HTTP/1.1\r\nHost: free.test\r\nHost: shop.test\r\n",
    "no Host": b"GET /buy HTTP/1.1\r\n",
    "empty Host": b"GET /buy HTTP/1.1\r\nHost: \r\n",
    "Host with a path": b"GET /buy HTTP/1.1\r\nHost: free.test/x\r\n",
    "Host with user info": b"GET /buy HTTP/1.1\r\nHost: u@free.test\r\n",
    "Host with a bad port": b"GET /buy HTTP/1.1\r\nHost: free.test:99999\r\n",
    "Host with a comma": b"GET /buy HTTP/1.1\r\nHost: free.test,shop.test\r\n",
    "absolute-form with user info": b"GET http://u@free.test/buy HTTP/1.1\r\nHost: free.test\r\n",
    "absolute-form, other scheme": b"GET ftp://free.test/buy HTTP/1.1\r\nHost: free.test\r\n",
    "absolute-form without Host": b"GET http://free.test/buy HTTP/1.1\r\n",
    "asterisk-form": b"OPTIONS * HTTP/1.1\r\nHost: free.test\r\n",
}


async def test_bad_host_is_refused(gate: Gate) -> None:
    results = {}
    for name, head in BAD_HOSTS.items():
        results[name] = status_of(await exchange(gate.port, head + JSON + b"\r\n"))
    assert results == dict.fromkeys(BAD_HOSTS, 400)
    assert gate.origin.requests == []


async def test_http10_may_omit_host(gate: Gate) -> None:
    raw = await exchange(gate.port, b"GET /old HTTP/1.0\r\n\r\n")
    assert status_of(raw) == 200  # no room matches a request without a host
    (seen,) = gate.origin.requests
    assert seen.target == b"/old"
    assert len(seen.header(b"host")) == 1


async def test_absolute_form_authority_is_the_host(gate: Gate) -> None:
    # The target's authority decides the room (full: queued), whatever the Host header says.
    raw = await exchange(
        gate.port, b"GET http://shop.test/buy HTTP/1.1\r\nHost: free.test\r\n" + JSON + b"\r\n"
    )
    assert queued(raw), raw[:300]
    assert gate.origin.requests == []
    # ... and is the Host the origin receives, with an origin-form target.
    raw = await exchange(
        gate.port,
        b"GET HTTP://Free.Test:80/item?x=1 HTTP/1.1\r\nHost: shop.test\r\n" + JSON + b"\r\n",
    )
    assert status_of(raw) == 200 and not queued(raw), raw[:300]
    (seen,) = gate.origin.requests
    assert seen.target == b"/item?x=1"
    assert seen.header(b"host") == [b"Free.Test:80"]
    assert seen.header(b"waitroom-verified")  # admitted into the free room


# -- item 4: paths ------------------------------------------------------------------------------

# With bypass "/static/" and "*.css", each of these names a path of the full room.
DODGES = [
    b"/static/../buy",
    b"/static/%2e%2e/buy",
    b"/static/%2E%2e/buy",
    b"/static/.%2e/buy",
    b"/static/%2e./buy",
    b"/static/./../buy",
    b"/static//../buy",
    b"/static/x/../../buy",
    b"/static%2F..%2Fbuy",
    b"/static/..%2Fbuy",
    b"/static/..;/buy",
    b"/static/.;/../buy",
    b"/static/%2e%2e;x/buy",
    b"/static/..%5Cbuy",
    b"/static\\..\\buy",
    b"/static/%252e%252e/buy",
    b"/%2Fstatic/../buy",
    b"/buy;.css",
    b"/buy;x=1/a.css/..",
    b"/a.css/../buy",
]
REFUSED = [
    b"/buy%00",
    b"/buy%00.css",
    b"/buy%zz",
    b"/buy%2",
    b"/buy%",
    b"/../buy",
    b"/a/../../buy",
    b"/%2e%2e/buy",
    b"/buy%0a",
    b"/buy%0d%0aX-Injected:%201",
    b"/buy%c0%ae%c0%ae/x",
    b"/buy%ff",
    b"/static/%252e",
    b"/a\\b",
    b"/buy#frag",
]


async def test_path_spellings_never_dodge_the_room(gate: Gate) -> None:
    results = {}
    for path in DODGES:
        raw = await exchange(gate.port, b"GET " + path + b" HTTP/1.1\r\nHost: shop.test\r\n"
                             + JSON + b"\r\n")  # fmt: skip
        results[path] = "400" if status_of(raw) == 400 else "queued" if queued(raw) else raw[:60]
    assert all(v in ("400", "queued") for v in results.values()), results
    assert gate.origin.requests == [], gate.origin.targets()


async def test_ambiguous_paths_are_refused(gate: Gate) -> None:
    results = {}
    for path in REFUSED:
        # No room matches other.test: without the edge, these would all be forwarded.
        raw = await exchange(gate.port, b"GET " + path + b" HTTP/1.1\r\nHost: other.test\r\n"
                             + JSON + b"\r\n")  # fmt: skip
        results[path] = status_of(raw)
    assert results == dict.fromkeys(REFUSED, 400)
    assert gate.origin.requests == [], gate.origin.targets()


NORMALISED = {
    b"/static/a/../b.js": b"/static/b.js",
    b"/static/./b.js": b"/static/b.js",
    b"//static//b.js": b"/static/b.js",
    b"/static/%7e%41%2d%5f": b"/static/~A-_",
    b"/static/a%2fb%3f": b"/static/a%2Fb%3F",
    b"/static/caf%c3%a9|{x}^": b"/static/caf%C3%A9%7C%7Bx%7D%5E",
    b"/static/a/..?q=/../x%00": b"/static/?q=/../x%00",
    b"/x/%2e%2e/static/y.css": b"/static/y.css",
    b"/x/..%2e/y.css": b"/x/.../y.css",
}


async def test_origin_receives_the_normalised_target(gate: Gate) -> None:
    for sent in NORMALISED:
        raw = await exchange(gate.port, b"GET " + sent + b" HTTP/1.1\r\nHost: shop.test\r\n"
                             + JSON + b"\r\n")  # fmt: skip
        assert status_of(raw) == 200 and not queued(raw), (sent, raw[:200])
    assert gate.origin.targets() == list(NORMALISED.values())


async def test_prefixed_upstream_is_never_escaped() -> None:
    async with run_gate(upstream_path="/app") as g:
        for path in (b"/../x", b"/a/../../x", b"/%2e%2e/x", b"/a/%2e%2e/%2E%2E/x"):
            raw = await exchange(g.port, b"GET " + path + b" HTTP/1.1\r\nHost: other.test\r\n"
                                 + JSON + b"\r\n")  # fmt: skip
            assert status_of(raw) == 400, (path, raw[:200])
        raw = await exchange(g.port, b"GET /a/../x HTTP/1.1\r\nHost: other.test\r\n" + JSON
                             + b"\r\n")  # fmt: skip
        assert status_of(raw) == 200
        assert g.origin.targets() == [b"/app/x"]
