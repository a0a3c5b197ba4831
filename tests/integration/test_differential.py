"""Differential suite: one raw-byte corpus through nginx ``proxy_pass`` and through the proxy.

Each proxy stands in front of its own identical recording origin; per case we compare what the
client gets, what the origin receives, whether the next request reuses the upstream connection
and whether the origin parses it as a request of its own. Every divergence is either fixed or
listed in ``KNOWN`` below, with the RFC clause that allows it; ``docs/http-conformance.md``
("Responses and connections") carries the same list for readers. A new divergence fails, and so
does a listed one that went away (the list stays true).

The corpus covers origin-side oddities, response framing, HTTP/1.0 clients, pipelining, chunked
uploads, methods, ``Expect`` and connection reuse. The request-side classes (Host, paths,
request trailers, headers the origin trusts, framing) are in ``test_differential_requests``.
"""

from __future__ import annotations

import pytest

from tests.fixtures.differential import (
    Case,
    Outcome,
    documented,
    nginx_side,
    run_case,
    waitroom_side,
)
from tests.fixtures.recording_origin import Script

H = b"host: diff.test\r\n"
CLOSE = b"connection: close\r\n"


def get(target: bytes = b"/a", extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET " + target + b" " + version + b"\r\n" + H + extra + CLOSE + b"\r\n"


def answer(raw: bytes, **kw: bool) -> dict[bytes, Script]:
    return {b"/a": Script(raw, **kw)}


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)
INJECT = b"HTTP/1.1 200 OK\r\nx-injected: 1\r\ncontent-length: 4\r\n\r\nevil"

CASES = [
    # -- plain exchanges and framing ---------------------------------------------------------
    Case("get-length", (get(),), scripts=answer(OK)),
    Case("get-chunked", (get(),), scripts=answer(CHUNKED)),
    Case(
        "response-trailers",
        (get(),),
        scripts=answer(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n"
            b"2\r\nok\r\n0\r\nx-t: forged\r\n\r\n"
        ),
    ),
    Case(
        "close-delimited",
        (get(),),
        scripts=answer(b"HTTP/1.1 200 OK\r\n\r\nuntil close", close=True),
    ),
    Case(
        "origin-connection-close",
        (get(),),
        scripts=answer(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok", close=True
        ),
    ),
    Case(
        "origin-http10-keepalive",
        (get(),),
        scripts=answer(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok"),
    ),
    Case(
        "origin-connection-names-header",
        (get(),),
        scripts=answer(
            b"HTTP/1.1 200 OK\r\nconnection: x-hop\r\nx-hop: 1\r\nx-end: 2\r\n"
            b"content-length: 2\r\n\r\nok"
        ),
    ),
    Case(
        "interim-1xx",
        (get(),),
        scripts=answer(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\n" + OK
        ),
    ),
    # -- origin-side oddities ----------------------------------------------------------------
    Case("bytes-after-length", (get(),), scripts=answer(OK + b"trailing garbage")),
    Case(
        "response-after-204", (get(),), scripts=answer(b"HTTP/1.1 204 No Content\r\n\r\n" + INJECT)
    ),
    Case(
        "204-with-length",
        (get(),),
        scripts=answer(b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
    ),
    Case(
        "304-with-length",
        (get(),),
        scripts=answer(b'HTTP/1.1 304 Not Modified\r\netag: "e"\r\ncontent-length: 5\r\n\r\n'),
    ),
    Case(
        "status-999", (get(),), scripts=answer(b"HTTP/1.1 999 Odd\r\ncontent-length: 2\r\n\r\nhi")
    ),
    Case(
        "status-101-no-upgrade",
        (get(),),
        scripts=answer(b"HTTP/1.1 101 Switching Protocols\r\ncontent-length: 0\r\n\r\n"),
    ),
    Case(
        "length-and-chunked",
        (get(),),
        scripts=answer(
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
    ),
    Case(
        "duplicate-length",
        (get(),),
        scripts=answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok"),
    ),
    Case(
        "bad-chunk-size",
        (get(),),
        scripts=answer(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"
        ),
    ),
    Case(
        "short-body-then-close",
        (get(),),
        scripts=answer(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", close=True),
    ),
    Case(
        "redirect-to-origin",
        (get(),),
        scripts=answer(
            b"HTTP/1.1 302 Found\r\nlocation: http://ORIGIN/b?x=1\r\ncontent-length: 0\r\n\r\n"
        ),
    ),
    Case(
        "redirect-relative",
        (get(),),
        scripts=answer(b"HTTP/1.1 302 Found\r\nlocation: /b\r\ncontent-length: 0\r\n\r\n"),
    ),
    Case(
        "refresh-to-origin",
        (get(),),
        scripts=answer(
            b"HTTP/1.1 200 OK\r\nrefresh: 0; url=http://ORIGIN/b\r\ncontent-length: 0\r\n\r\n"
        ),
    ),
    Case(
        "content-location-to-origin",
        (get(),),
        scripts=answer(
            b"HTTP/1.1 200 OK\r\ncontent-location: http://ORIGIN/b\r\ncontent-length: 0\r\n\r\n"
        ),
    ),
    # -- HEAD ----------------------------------------------------------------------------------
    Case(
        "head-length",
        (b"HEAD /a HTTP/1.1\r\n" + H + CLOSE + b"\r\n",),
        ("HEAD",),
        answer(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
    ),
    Case(
        "head-chunked-stray-end",
        (b"HEAD /a HTTP/1.1\r\n" + H + CLOSE + b"\r\n",),
        ("HEAD",),
        answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"),
    ),
    # -- HTTP/1.0 clients ----------------------------------------------------------------------
    Case(
        "http10-chunked-origin",
        (b"GET /a HTTP/1.0\r\n" + H + b"\r\n",),
        scripts=answer(CHUNKED),
        http10=True,
    ),
    Case("http10-length", (b"GET /a HTTP/1.0\r\n" + H + b"\r\n",), scripts=answer(OK), http10=True),
    Case(
        "http10-keepalive-then-close",
        (
            b"GET /a HTTP/1.0\r\n"
            + H
            + b"connection: keep-alive\r\n\r\n"
            + get(b"/b", b"", b"HTTP/1.0"),
        ),
        ("GET", "GET"),
        answer(OK),
        http10=True,
    ),
    # -- pipelining and methods ------------------------------------------------------------
    Case(
        "pipelined-three",
        (b"GET /a HTTP/1.1\r\n" + H + b"\r\nGET /b HTTP/1.1\r\n" + H + b"\r\n" + get(b"/c"),),
        ("GET", "GET", "GET"),
        answer(OK),
    ),
    Case(
        "post-length",
        (b"POST /a HTTP/1.1\r\n" + H + CLOSE + b"content-length: 5\r\n\r\nhello",),
        ("POST",),
    ),
    Case(
        "post-chunked-upload",
        (
            b"POST /a HTTP/1.1\r\n"
            + H
            + CLOSE
            + b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        ("POST",),
    ),
    Case(
        "put-empty", (b"PUT /a HTTP/1.1\r\n" + H + CLOSE + b"content-length: 0\r\n\r\n",), ("PUT",)
    ),
    Case("delete", (b"DELETE /a HTTP/1.1\r\n" + H + CLOSE + b"\r\n",), ("DELETE",)),
    Case("options", (b"OPTIONS /a HTTP/1.1\r\n" + H + CLOSE + b"\r\n",), ("OPTIONS",)),
    Case(
        "patch",
        (b"PATCH /a HTTP/1.1\r\n" + H + CLOSE + b"content-length: 2\r\n\r\n{}",),
        ("PATCH",),
    ),
    Case(
        "expect-100",
        (
            b"POST /a HTTP/1.1\r\n" + H + CLOSE + b"expect: 100-continue\r\n"
            b"content-length: 5\r\n\r\nhello",
        ),
        ("POST",),
    ),
    # -- connection reuse after an early answer ------------------------------------------------
    Case(
        "early-answer-streamed-body",
        (
            b"POST /e HTTP/1.1\r\n" + H + CLOSE + b"content-length: 20\r\n\r\n" + b"a" * 10,
            b"b" * 10,
        ),
        ("POST",),
        {b"/e": Script(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly", early=True)},
    ),
]

# Divergences from nginx, by case, with the aspect that differs and why it is allowed. The same
# list, explained, is in docs/http-conformance.md ("Responses and connections").
KNOWN: dict[str, tuple[set[str], str]] = {
    "response-trailers": (
        {"client"},
        "RFC 9110 §6.5.1: trailers MAY be discarded; then no "
        "Trailer field announces them (nginx keeps the announcement)",
    ),
    "origin-connection-names-header": (
        {"client"},
        "RFC 9110 §7.6.1: fields named in Connection MUST be removed (nginx forwards them)",
    ),
    "origin-http10-keepalive": (
        {"reuse"},
        "RFC 9112 §9.3: an HTTP/1.0 connection with "
        "keep-alive is persistent (nginx never reuses it)",
    ),
    "interim-1xx": (
        {"reuse"},
        "RFC 9110 §15.2: 1xx are skipped; the connection stays "
        "persistent (nginx closes it; either is allowed)",
    ),
    "204-with-length": ({"client"}, "RFC 9110 §8.6: no Content-Length in a 204"),
    "304-with-length": ({"client"}, "RFC 9110 §8.6: Content-Length in a 304 is optional"),
    "status-999": (
        {"client", "reuse"},
        "RFC 9110 §15: codes outside 100-599 are invalid; §15.6.3: 502 for an invalid response",
    ),
    "status-101-no-upgrade": (
        {"client", "reuse"},
        "RFC 9110 §7.8: no switch without Upgrade; 502 (nginx relays a 101 the client cannot use)",
    ),
    "length-and-chunked": (
        {"client", "reuse"},
        "RFC 9112 §6.3 (3): both framings ought to be handled as an error; 502",
    ),
    "duplicate-length": (
        {"client"},
        "RFC 9112 §6.3 (5): an invalid Content-Length is an "
        "unrecoverable error; 502 (nginx relays a broken body)",
    ),
    "bad-chunk-size": (
        {"client"},
        "RFC 9110 §15.6.3: 502 for an invalid response (nginx closes without any response)",
    ),
    "redirect-to-origin": (
        {"client"},
        "RFC 9110 §7.2: the public authority is the Host "
        "the client sent (nginx adds its own listen port)",
    ),
    "content-location-to-origin": (
        {"client"},
        "RFC 9110 §3.7: a gateway is the origin for "
        "its clients; its own URLs are rewritten (nginx: only "
        "Location and Refresh)",
    ),
    "head-chunked-stray-end": (
        {"reuse"},
        "RFC 9110 §9.3.2: a HEAD response has no body; RFC 9112 §9.6: closing is always allowed",
    ),
    "http10-chunked-origin": (
        {"client"},
        "RFC 9112 §6.3: a Content-Length (buffered) or "
        "close-delimited body are both valid for HTTP/1.0",
    ),
    "http10-keepalive-then-close": (
        {"client", "origin"},
        "RFC 9112 §9.3, §9.6: the server "
        "closes HTTP/1.0 connections (Connection: close); the "
        "client retries the rest",
    ),
}


ours = waitroom_side()


def describe(a: Outcome, b: Outcome) -> str:
    return f"\nnginx: {a}\nours:  {b}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_same_as_nginx_or_listed(case: Case) -> None:
    reference = await run_case(case, nginx_side)
    got = await run_case(case, ours)
    diff = got.aspects(reference)
    expected, why = KNOWN.get(case.name, (set(), ""))
    assert diff == expected, (
        f"{case.name}: differs in {sorted(diff)}, listed {sorted(expected)} ({why})"
        + describe(reference, got)
    )
    # Whatever nginx does, these hold for the proxy.
    assert got.next_parsed, "the next request was not parsed as a request of its own"
    assert all(r[0] != "origin-parse-error" for r in got.origin)
    for response in got.client:
        if response[0] in ("invalid", "incomplete"):
            # Only where the origin broke after its head: then a cut response is all anyone
            # can send (nginx too).
            assert any(r[0] in ("invalid", "incomplete") for r in reference.client), response
        if case.http10:
            assert response[3] != "chunked-to-http10 (invalid)"


def test_the_documented_list_is_the_tested_list() -> None:
    listed, section = documented("Responses and connections")
    assert listed == set(KNOWN)
    same = len(CASES) - len(KNOWN)
    assert f"{len(CASES)} cases: {same} behave exactly as nginx, {len(KNOWN)} differ" in section
