"""Pure header rules of the reverse proxy."""

from __future__ import annotations

from waitroom_proxy.asgi.headers import (
    TrustedProxies,
    connection_tokens,
    filter_hop_by_hop,
    strip_cookie_names,
    upstream_request_headers,
)


def build(headers: list[tuple[bytes, bytes]], **kw: object) -> tuple[bytes, list]:
    options: dict = {"peer": "10.0.0.5", "scheme": "http", "trusted": False}
    options["default_host"] = b"origin:8000"
    options.update(kw)
    return upstream_request_headers(headers, **options)


def values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


def test_connection_tokens() -> None:
    assert connection_tokens(b"Keep-Alive, X-Foo ,,close") == {b"keep-alive", b"x-foo", b"close"}


def test_filter_hop_by_hop_keeps_order_and_repeats() -> None:
    headers = [
        (b"set-cookie", b"a=1"),
        (b"connection", b"x-private"),
        (b"x-private", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"set-cookie", b"b=2"),
        (b"keep-alive", b"timeout=5"),
        (b"proxy-authenticate", b"Basic"),
        (b"content-type", b"text/html"),
    ]
    assert filter_hop_by_hop(headers) == [
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"content-type", b"text/html"),
    ]


def test_strip_cookie_names() -> None:
    names = {"waitroom_session", "waitroom_ticket"}
    assert strip_cookie_names([b"waitroom_session=x; a=1"], names) == b"a=1"
    assert strip_cookie_names([b"a=1", b"waitroom_ticket=t;b=2"], names) == b"a=1; b=2"
    assert strip_cookie_names([b"waitroom_session=x; waitroom_ticket=y"], names) is None
    # Only exact names: a cookie whose name merely starts like ours stays.
    assert strip_cookie_names([b"waitroom_session2=z"], names) == b"waitroom_session2=z"


def test_trusted_proxies() -> None:
    trusted = TrustedProxies(["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"])
    assert "10.1.2.3" in trusted
    assert "192.168.1.7" in trusted
    assert "192.168.1.8" not in trusted
    assert "2001:db8::1" in trusted
    assert "::ffff:10.0.0.1" in trusted  # IPv4-mapped IPv6
    assert "not-an-ip" not in trusted
    assert None not in trusted
    assert "10.1.2.3" in trusted  # cached answer, same result
    assert not TrustedProxies([])
    assert "127.0.0.1" not in TrustedProxies([])


def test_untrusted_peer_forwarded_headers_are_replaced() -> None:
    host, out = build(
        [
            (b"host", b"shop.example"),
            (b"x-forwarded-for", b"6.6.6.6"),
            (b"x-forwarded-proto", b"https"),
            (b"x-forwarded-host", b"forged"),
            (b"accept", b"*/*"),
        ]
    )
    assert host == b"shop.example"
    assert values(out, b"x-forwarded-for") == [b"10.0.0.5"]
    assert values(out, b"x-forwarded-proto") == [b"http"]
    assert values(out, b"x-forwarded-host") == [b"shop.example"]
    assert values(out, b"via") == []  # no Via added, as nginx proxy_pass
    assert values(out, b"host") == []  # returned separately
    assert values(out, b"accept") == [b"*/*"]


def test_trusted_peer_forwarded_headers_are_extended() -> None:
    _, out = build(
        [
            (b"x-forwarded-for", b"1.1.1.1"),
            (b"x-forwarded-for", b"2.2.2.2"),
            (b"x-forwarded-proto", b"https"),
            (b"x-forwarded-host", b"www.example"),
            (b"via", b"1.1 cdn"),
        ],
        trusted=True,
    )
    assert values(out, b"x-forwarded-for") == [b"1.1.1.1, 2.2.2.2, 10.0.0.5"]
    assert values(out, b"x-forwarded-proto") == [b"https"]
    assert values(out, b"x-forwarded-host") == [b"www.example"]
    assert values(out, b"via") == [b"1.1 cdn"]  # the client's own passes unchanged


def test_no_host_uses_default_and_websocket_scheme_maps_to_http() -> None:
    host, out = build([], scheme="wss", peer=None)
    assert host == b"origin:8000"
    assert values(out, b"x-forwarded-proto") == [b"https"]
    assert values(out, b"x-forwarded-for") == []


def test_hop_by_hop_and_connection_named_request_headers_dropped() -> None:
    _, out = build(
        [
            (b"connection", b"keep-alive, x-secret, cookie"),
            (b"x-secret", b"1"),
            (b"cookie", b"a=1"),
            (b"te", b"trailers"),
            (b"upgrade", b"h2c"),
            (b"proxy-authorization", b"Basic x"),
            (b"expect", b"100-continue"),
            (b"x-keep", b"yes"),
        ]
    )
    names = [n for n, _ in out]
    for gone in (b"connection", b"x-secret", b"cookie", b"te", b"upgrade", b"expect"):
        assert gone not in names
    assert b"proxy-authorization" not in names
    assert b"x-keep" in names


def test_add_headers_replace_client_ones_and_cookies_are_stripped() -> None:
    _, out = build(
        [
            (b"waitroom-verified", b"forged"),
            (b"cookie", b"waitroom_session=s; a=1"),
            (b"cookie", b"b=2"),
        ],
        add_headers=[(b"Waitroom-Verified", b"jwt")],
        strip_cookies={"waitroom_session"},
    )
    assert values(out, b"waitroom-verified") == [b"jwt"]
    assert values(out, b"cookie") == [b"a=1; b=2"]


def test_strip_headers_with_and_without_added_ones() -> None:
    given = [(b"waitroom-bypass", b"s"), (b"waitroom-verified", b"forged"), (b"x-a", b"1")]
    strip = frozenset({b"waitroom-bypass"})
    _, out = build(given, strip_headers=strip)
    assert values(out, b"waitroom-bypass") == [] and values(out, b"x-a") == [b"1"]
    _, out = build(given, strip_headers=strip, add_headers=[(b"waitroom-verified", b"jwt")])
    assert values(out, b"waitroom-bypass") == [] and values(out, b"waitroom-verified") == [b"jwt"]


def test_cookies_untouched_without_strip_names() -> None:
    _, out = build([(b"cookie", b"waitroom_session=s; a=1")])
    assert values(out, b"cookie") == [b"waitroom_session=s; a=1"]
