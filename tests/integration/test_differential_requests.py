"""Differential suite, request side: what clients send, through nginx ``proxy_pass`` and the proxy.

The same harness as ``test_differential`` (each proxy before its own recording origin; the
client's answer, what the origin receives, reuse and the next request compared), with a
corpus of request-side classes: Host (two, missing, empty, invalid, HTTP/1.0 without one),
absolute-form targets, paths (escapes, dot segments, ``%2F``, backslash, ``;`` parameters,
``//``), chunked request trailers in one write, headers the origin trusts (forged, or spelled
with ``_``), TRACE and CONNECT, ambiguous request framing, and the bypass secret header.

Requests for ``diff.test`` match no room: they show plain proxying. ``gated.diff.test`` is a
room that admits nobody (``queue_all``), with a bypass path and a bypass secret: there the
proxy's answer is the gate's, and the list says so. Every divergence is listed in ``KNOWN``
with the clause that allows it, and in ``docs/http-conformance.md`` ("Requests through both
proxies"); a new one fails, and so does a listed one that went away.
"""

from __future__ import annotations

import pytest

from tests.fixtures.differential import Case, documented, nginx_side, run_case, waitroom_side
from waitroom_proxy.domain.policy import Bypass, Mode, RoomPolicy

BYPASS = b"bypass-secret-0123456789"
GATED = RoomPolicy(
    name="gated",
    capacity=1,
    mode=Mode.QUEUE_ALL,
    match=("gated.diff.test/",),
    bypass=Bypass(paths=("/static/",), secret=BYPASS.decode()),
)
H = b"host: diff.test\r\n"
G = b"host: gated.diff.test\r\n"
CLOSE = b"connection: close\r\n"
SECRET_HEADER = b"waitroom-bypass: " + BYPASS + b"\r\n"


def get(target: bytes = b"/a", extra: bytes = b"", host: bytes = H, v: bytes = b"1.1") -> bytes:
    return b"GET " + target + b" HTTP/" + v + b"\r\n" + host + extra + CLOSE + b"\r\n"


def post(framing: bytes, body: bytes, version: bytes = b"1.1") -> bytes:
    close = CLOSE if version == b"1.1" else b""
    return b"POST /a HTTP/" + version + b"\r\n" + H + close + framing + b"\r\n" + body


CHUNKS = b"3\r\nabc\r\n0\r\n\r\n"
TE = b"transfer-encoding: "
CL = b"content-length: "
FORGED_OTHER = b"forwarded: for=10.0.0.1\r\nx-real-ip: 10.0.0.1\r\n"
ROOM_COOKIES = b"cookie: waitroom_session=forged; keep=1; waitroom_ticket=x\r\n"

CASES = [
    # -- Host ----------------------------------------------------------------------------------
    Case("host-two", (get(extra=b"host: other.test\r\n"),)),
    Case("host-two-same", (get(extra=H),)),
    Case("host-missing", (get(host=b""),)),
    Case("host-empty", (get(host=b"host: \r\n"),)),
    Case("host-slash", (get(host=b"host: a/b\r\n"),)),
    Case("host-userinfo", (get(host=b"host: u@diff.test\r\n"),)),
    Case("host-comma", (get(host=b"host: a,b\r\n"),)),
    Case("host-port-range", (get(host=b"host: diff.test:99999\r\n"),)),
    Case("host-case-and-dot", (get(host=b"host: DIFF.test.\r\n"),)),
    Case("host-with-port", (get(host=b"host: diff.test:8080\r\n"),)),
    Case("http10-no-host", (b"GET /a HTTP/1.0\r\n\r\n",), http10=True),
    # -- absolute-form ---------------------------------------------------------------------------
    Case("absolute-same", (get(b"http://diff.test/a"),)),
    Case("absolute-other", (get(b"http://other.test/a"),)),
    Case("absolute-case", (get(b"HTTP://DIFF.test/a"),)),
    Case("absolute-userinfo", (get(b"http://u@diff.test/a"),)),
    Case("absolute-other-scheme", (get(b"ftp://diff.test/a"),)),
    Case("options-star", (b"OPTIONS * HTTP/1.1\r\n" + H + CLOSE + b"\r\n",), ("OPTIONS",)),
    # -- paths -----------------------------------------------------------------------------------
    Case("path-nul", (get(b"/%00"),)),
    Case("path-bad-escape", (get(b"/%zz"),)),
    Case("path-above-root", (get(b"/../x"),)),
    Case("path-dot-segments", (get(b"/static/../sale"),)),
    Case("path-escaped-dots", (get(b"/static/%2e%2e/sale"),)),
    Case("path-escaped-slash", (get(b"/a%2Fb"),)),
    Case("path-backslash", (get(b"/a\\b"),)),
    Case("path-parameters", (get(b"/sale;jsessionid=1"),)),
    Case("path-double-slash", (get(b"//a//b"),)),
    Case("gated-bypass-path", (get(b"/static/app.js", host=G),)),
    Case("gated-dot-segments", (get(b"/static/../sale", host=G),)),
    Case("gated-escaped-dots", (get(b"/static/%2e%2e/sale", host=G),)),
    # -- line syntax -----------------------------------------------------------------------------
    Case("space-before-colon", (get(extra=b"x-a : 1\r\n"),)),
    Case("obs-fold", (get(extra=b"x-a: 1\r\n 2\r\n"),)),
    Case("bare-lf", (b"GET /a HTTP/1.1\nhost: diff.test\nconnection: close\n\n",)),
    # -- request trailers, in the same write as the head -----------------------------------------
    Case(
        "request-trailers",
        (
            post(
                TE + b"chunked\r\n",
                b"3\r\nabc\r\n0\r\nx-t: 1\r\nhost: evil.test\r\n"
                b"x-forwarded-for: 10.0.0.1\r\n" + SECRET_HEADER + b"\r\n",
            ),
        ),
        ("POST",),
    ),
    Case(
        "gated-request-trailers",
        (
            b"POST /buy HTTP/1.1\r\n" + G + CLOSE + b"transfer-encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n" + SECRET_HEADER + b"\r\n",
        ),
        ("POST",),
    ),
    # -- headers the origin trusts, from an untrusted peer ---------------------------------------
    Case("underscore-forwarded-for", (get(extra=b"x_forwarded_for: 10.0.0.1\r\n"),)),
    Case("underscore-verified", (get(extra=b"waitroom_verified: forged\r\n"),)),
    Case("underscore-other", (get(extra=b"ho_st: evil.test\r\n"),)),
    Case("forged-verified", (get(extra=b"waitroom-verified: forged\r\n"),)),
    Case(
        "forged-forwarded",
        (
            get(
                extra=b"x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: https\r\n"
                b"x-forwarded-host: evil.test\r\n"
            ),
        ),
    ),
    Case("forged-forwarded-other", (get(extra=FORGED_OTHER),)),
    Case("room-cookies", (get(extra=ROOM_COOKIES),)),
    # -- methods ---------------------------------------------------------------------------------
    Case("trace", (b"TRACE /a HTTP/1.1\r\n" + H + CLOSE + b"\r\n",), ("TRACE",)),
    Case("connect", (b"CONNECT diff.test:443 HTTP/1.1\r\n" + H + CLOSE + b"\r\n",), ("CONNECT",)),
    Case("connect-origin-form", (b"CONNECT /a HTTP/1.1\r\n" + H + CLOSE + b"\r\n",), ("CONNECT",)),
    # -- request framing -------------------------------------------------------------------------
    Case("length-and-chunked", (post(CL + b"3\r\n" + TE + b"chunked\r\n", CHUNKS),), ("POST",)),
    Case("duplicate-length", (post(CL + b"3\r\n" + CL + b"3\r\n", b"abc"),), ("POST",)),
    Case("length-list", (post(CL + b"3, 3\r\n", b"abc"),), ("POST",)),
    Case("length-plus", (post(CL + b"+3\r\n", b"abc"),), ("POST",)),
    Case("gzip-then-chunked", (post(TE + b"gzip, chunked\r\n", CHUNKS),), ("POST",)),
    Case("chunked-then-identity", (post(TE + b"chunked, identity\r\n", CHUNKS),), ("POST",)),
    Case("chunked-http10", (post(TE + b"chunked\r\n", CHUNKS, b"1.0"),), ("POST",), http10=True),
    Case(
        "request-in-body",
        (post(b"content-length: 43\r\n", b"GET /smuggled HTTP/1.1\r\nhost: diff.test\r\n\r\n"),),
        ("POST",),
    ),
    Case(
        "pipelined-after-refusal", (get(b"/%00").replace(CLOSE, b"") + get(b"/b"),), ("GET", "GET")
    ),
    # -- the bypass secret header ----------------------------------------------------------------
    Case("bypass-secret", (get(host=G, extra=SECRET_HEADER),)),
    Case("bypass-secret-twice", (get(host=G, extra=SECRET_HEADER + SECRET_HEADER),)),
    Case("bypass-secret-no-room", (get(extra=SECRET_HEADER),)),
    Case("bypass-secret-underscore", (get(host=G, extra=SECRET_HEADER.replace(b"-", b"_", 1)),)),
]

# Divergences from nginx, by case, with the aspect that differs and why it is allowed; the same
# list, explained, is in docs/http-conformance.md ("Requests through both proxies").
REFUSED = {"client", "origin", "reuse"}  # we answer 400 where nginx forwards
NORMALISED = {"client", "origin"}  # the origin gets (and echoes) the normal form
GATE = {"client", "origin", "reuse"}  # the gate queues where nginx (no room) forwards
KNOWN: dict[str, tuple[set[str], str]] = {
    "host-userinfo": (REFUSED, "RFC 9112 §3.2: MUST 400 an invalid Host (no user info in it)"),
    "host-comma": (REFUSED, "RFC 9112 §3.2: MUST 400 an invalid Host (a list is two hosts)"),
    "host-port-range": (REFUSED, "RFC 9112 §3.2: MUST 400 an invalid Host (no such TCP port)"),
    "http10-no-host": (
        REFUSED,
        "RFC 9112 §3.2: the HTTP/1.1 upstream request MUST have a Host: the upstream's "
        "authority (nginx's $http_host is empty: its origin refuses, 502)",
    ),
    "absolute-other": (
        {"origin"},
        "RFC 9112 §3.2.2: the target's authority is the host (nginx forwards the Host header)",
    ),
    "absolute-case": ({"origin"}, "RFC 9112 §3.2.2, as absolute-other"),
    "absolute-other-scheme": (
        REFUSED,
        "RFC 9112 §3.2.2: a server need only accept its own schemes",
    ),
    "path-dot-segments": (NORMALISED, "RFC 3986 §5.2.4, §6.2.2.3: dot segments resolved"),
    "path-escaped-dots": (NORMALISED, "RFC 3986 §2.3, §6.2.2.2: %2e is '.', then resolved"),
    "path-double-slash": (NORMALISED, "RFC 3986 §6.2.3: empty segments merged"),
    "path-backslash": (REFUSED, "RFC 3986 §3.3: not a pchar; WHATWG parsers read it as '/'"),
    "gated-dot-segments": (GATE, "DESIGN §4: /sale is judged, not /static/: queued"),
    "gated-escaped-dots": (GATE, "DESIGN §4: as gated-dot-segments"),
    "bare-lf": (REFUSED, "RFC 9112 §2.2: a recipient MAY accept a bare LF (MAY, not MUST)"),
    "gated-request-trailers": (
        GATE,
        "RFC 9110 §6.5.1: trailer fields are not headers; the secret in one does not bypass",
    ),
    "underscore-other": (
        {"origin"},
        "RFC 9110 §5.1: '_' is a token character; only '_' spellings of trusted names are "
        "dropped (nginx drops every '_' name)",
    ),
    "forged-verified": (
        {"origin"},
        "RFC 9110 §3.7: the gateway's own field (DESIGN §4); the client's copy is dropped",
    ),
    "forged-forwarded-other": (
        {"origin"},
        "RFC 7239 §8.1: Forwarded (and X-Real-IP) from the client cannot be trusted",
    ),
    "room-cookies": ({"origin"}, "RFC 9110 §3.7: the gateway's own cookies (DESIGN §4)"),
    "chunked-then-identity": (
        {"client"},
        "RFC 9112 §6.3: chunked not last: MUST 400 and close (nginx: 501)",
    ),
    "bypass-secret": (
        {"origin"},
        "RFC 9110 §3.7: the gateway's own credential; the origin never gets it",
    ),
    "bypass-secret-no-room": ({"origin"}, "RFC 9110 §3.7, as bypass-secret"),
    "bypass-secret-twice": (
        GATE,
        "RFC 9110 §5.3: a field that is not a list, sent twice, is ambiguous: no bypass",
    ),
    "bypass-secret-underscore": (
        GATE,
        "RFC 9110 §5.1: waitroom_bypass is another field name: no bypass (nginx drops it)",
    ),
}
# Requests for the full room that must reach no origin here (nginx, without the room, serves them).
QUEUED = {"gated-dot-segments", "gated-escaped-dots", "gated-request-trailers",
          "bypass-secret-twice", "bypass-secret-underscore"}  # fmt: skip

ours = waitroom_side((GATED,))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_same_as_nginx_or_listed(case: Case) -> None:
    reference = await run_case(case, nginx_side)
    got = await run_case(case, ours)
    diff = got.aspects(reference)
    expected, why = KNOWN.get(case.name, (set(), ""))
    assert diff == expected, (
        f"{case.name}: differs in {sorted(diff)}, listed {sorted(expected)} ({why})"
        f"\nnginx: {reference}\nours:  {got}"
    )
    # Whatever nginx does, these hold for the proxy.
    if case.name in QUEUED:
        assert got.origin == [], "a queued request reached the origin"
    assert got.next_parsed, "the next request was not parsed as a request of its own"
    assert all(r[0] != "origin-parse-error" for r in got.origin)
    for seen in got.origin:
        method, target, _, headers, body, _, trailers = seen
        names = {n for n, _ in headers}
        assert trailers == [], "trailers are never sent upstream"
        assert not names & {b"waitroom-verified", b"waitroom-bypass", b"waitroom_bypass"}
        assert not names & {b"forwarded", b"x-real-ip", b"x_forwarded_for"}
        assert dict(headers).get(b"x-forwarded-for") == b"127.0.0.1"
        assert b"/smuggled" not in target
        assert method not in (b"TRACE", b"CONNECT")


def test_the_documented_list_is_the_tested_list() -> None:
    listed, section = documented("Requests through both proxies")
    assert listed == set(KNOWN)
    same = len(CASES) - len(KNOWN)
    assert f"{len(CASES)} cases: {same} behave exactly as nginx, {len(KNOWN)} differ" in section
