"""``asgi.edge.prepare``: the request settled once, in the scope."""

from __future__ import annotations

from typing import Any

import pytest

from waitroom_proxy.asgi.edge import RAW_TARGET_KEY, Client, Refusal, client_of, prepare, target_of
from waitroom_proxy.asgi.headers import TrustedProxies


def scope(headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "http_version": "1.1",
        "path": "/a/../b",
        "raw_path": b"/a/../b",
        "query_string": b"q=1",
        "client": ("10.0.0.5", 1234),
        "headers": headers,
    }
    base.update(extra)
    return base


FORGED = [
    (b"host", b"shop.test"),
    (b"x-forwarded-for", b"1.2.3.4"),
    (b"x_forwarded_for", b"1.2.3.4"),
    (b"x-forwarded-proto", b"https"),
    (b"forwarded", b"for=1.2.3.4"),
    (b"x-real-ip", b"1.2.3.4"),
    (b"waitroom-verified", b"forged"),
    (b"waitroom_verified", b"forged"),
    (b"x-other_name", b"kept"),
]


def test_untrusted_peer_loses_every_forwarding_header() -> None:
    out = prepare(scope(list(FORGED)), TrustedProxies([]))
    assert out["headers"] == [(b"host", b"shop.test"), (b"x-other_name", b"kept")]
    assert (out["path"], out["raw_path"], out["query_string"]) == ("/b", b"/b", b"q=1")
    assert target_of(out).host == "shop.test"


def test_trusted_peer_keeps_dash_spellings_only() -> None:
    out = prepare(scope(list(FORGED)), TrustedProxies(["10.0.0.0/8"]))
    names = [n for n, _ in out["headers"]]
    assert names == [b"host", b"x-forwarded-for", b"x-forwarded-proto", b"forwarded",
                     b"x-real-ip", b"x-other_name"]  # fmt: skip


def test_prepare_copies_and_is_idempotent() -> None:
    original = scope([(b"host", b"h")])
    out = prepare(original, TrustedProxies([]))
    assert original["path"] == "/a/../b"  # the server's scope is not mutated
    assert prepare(out, TrustedProxies([])) is out


def test_raw_target_from_the_protocol_wins() -> None:
    s = scope([(b"host", b"shop.test")], **{RAW_TARGET_KEY: b"http://free.test/x?y"})
    out = prepare(s, TrustedProxies([]))
    assert out["headers"] == [(b"host", b"free.test")]
    assert (out["path"], out["query_string"]) == ("/x", b"y")


@pytest.mark.parametrize(
    ("headers", "method", "status"),
    [
        ([(b"host", b"a"), (b"host", b"b")], "GET", 400),
        ([], "GET", 400),
        ([(b"host", b"a")], "TRACE", 405),
        ([(b"host", b"a")], "CONNECT", 405),
    ],
)
def test_refusals(headers: list[tuple[bytes, bytes]], method: str, status: int) -> None:
    with pytest.raises(Refusal) as info:
        prepare(scope(headers, method=method), TrustedProxies([]))
    assert info.value.status == status


# -- the client, resolved once -----------------------------------------------------------------


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    out = prepare(scope(FORGED), TrustedProxies(["192.0.2.0/24"]))
    assert client_of(out) == Client("10.0.0.5", False, False)
    assert out["client"] == ("10.0.0.5", 1234)  # the TCP peer stays for X-Forwarded-For


@pytest.mark.parametrize(
    ("xff", "proto", "expected"),
    [
        ([b"203.0.113.7"], b"https", Client("203.0.113.7", True, True)),
        # The rightmost hop that is not a trusted proxy; the leftmost is the client's own word.
        ([b"1.1.1.1, 203.0.113.7, 10.0.0.9"], b"http", Client("203.0.113.7", False, True)),
        ([b"1.1.1.1", b"203.0.113.8"], b"HTTPS, http", Client("203.0.113.8", True, True)),
        ([b"10.0.0.9"], b"gopher", Client("10.0.0.5", False, True)),  # only proxies: the peer
        ([], None, Client("10.0.0.5", False, True)),
    ],
)
def test_behind_a_trusted_proxy_the_forwarded_client(
    xff: list[bytes], proto: bytes | None, expected: Client
) -> None:
    headers = [(b"host", b"shop.test"), *((b"x-forwarded-for", v) for v in xff)]
    if proto is not None:
        headers.append((b"x-forwarded-proto", proto))
    out = prepare(scope(headers), TrustedProxies(["10.0.0.0/8"]))
    assert client_of(out) == expected


@pytest.mark.parametrize(("scheme", "secure"), [("https", True), ("wss", True), ("ws", False)])
def test_the_connection_scheme_says_https(scheme: str, secure: bool) -> None:
    out = prepare(scope([(b"host", b"a")], scheme=scheme), TrustedProxies([]))
    assert client_of(out).secure is secure
