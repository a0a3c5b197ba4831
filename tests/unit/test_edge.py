"""``asgi.edge.prepare``: the request settled once, in the scope."""

from __future__ import annotations

from typing import Any

import pytest

from waitroom_proxy.asgi.edge import RAW_TARGET_KEY, Refusal, prepare, target_of
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
