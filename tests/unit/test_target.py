"""``domain.target``: one reading of a request's Host and path (pure; DESIGN §4)."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waitroom_proxy.domain.target import (
    BadRequest,
    normalize_path,
    parse_host,
    parse_target,
    strip_parameters,
)


@pytest.mark.parametrize(
    ("raw", "decoded", "encoded"),
    [
        (b"/", "/", b"/"),
        (b"/a/b", "/a/b", b"/a/b"),
        (b"/a/./b/../c", "/a/c", b"/a/c"),
        (b"/a/b/..", "/a/", b"/a/"),
        (b"/a/.", "/a/", b"/a/"),
        (b"/.", "/", b"/"),
        (b"//a//b/", "/a/b/", b"/a/b/"),
        (b"/%7e%41%2D", "/~A-", b"/~A-"),
        (b"/%2e%2E/", None, None),
        (b"/a/%2e%2e/b", "/b", b"/b"),
        (b"/a%2fb", "/a/b", b"/a%2Fb"),
        (b"/a%5cb", "/a\\b", b"/a%5Cb"),
        (b"/a%3f%23", "/a?#", b"/a%3F%23"),
        (b"/caf%c3%a9", "/café", b"/caf%C3%A9"),
        (b"/caf\xc3\xa9", "/café", b"/caf%C3%A9"),
        (b"/a|b^[c]", "/a|b^[c]", b"/a%7Cb%5E%5Bc%5D"),
        (b"/a;v=1/b", "/a;v=1/b", b"/a;v=1/b"),
        (b"/...", "/...", b"/..."),
        (b"/100%25", "/100%", b"/100%25"),
        (b"/%25zz", "/%zz", b"/%25zz"),
        (b"/.well-known/x", "/.well-known/x", b"/.well-known/x"),
    ],
)
def test_normalize_path(raw: bytes, decoded: str | None, encoded: bytes | None) -> None:
    if decoded is None:
        with pytest.raises(BadRequest):
            normalize_path(raw)
        return
    assert normalize_path(raw) == (decoded, encoded)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"/..", "above the root"),
        (b"/a/../..", "above the root"),
        (b"/%00", "control"),
        (b"/%1f", "control"),
        (b"/%7F", "control"),
        (b"/%0d%0a", "control"),
        (b"/a%zz", "bad %-escape"),
        (b"/a%2", "bad %-escape"),
        (b"/a%", "bad %-escape"),
        (b"/%252e", "double"),
        (b"/%2541", "double"),
        (b"/%c0%ae", "UTF-8"),
        (b"/%ff", "UTF-8"),
        (b"/a\\b", "backslash"),
        (b"/a#b", "fragment"),
        (b"/..;/x", "parameters"),
        (b"/a/.;x", "parameters"),
        (b"/a%2F..%2Fb", "escaped slash"),
        (b"/a%2F", "escaped slash"),
        (b"/%2Fa", "escaped slash"),
        (b"/a%5C..", "escaped slash"),
        (b"/a%2F.;x", "escaped slash"),
        (b"a", "must start with /"),
        (b"", "must start with /"),
    ],
)
def test_ambiguous_paths_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        normalize_path(raw)


@pytest.mark.parametrize(
    ("value", "host"),
    [
        (b"Shop.Example.COM", "shop.example.com"),
        (b"shop.example.com:8443", "shop.example.com"),
        (b"shop.example.com.", "shop.example.com"),
        (b"127.0.0.1:80", "127.0.0.1"),
        (b"[::1]:8080", "[::1]"),
        (b"[2001:DB8::1]", "[2001:db8::1]"),
        (b"under_score-host", "under_score-host"),
    ],
)
def test_parse_host(value: bytes, host: str) -> None:
    assert parse_host(value) == host


@pytest.mark.parametrize(
    "value",
    [b"", b"a b", b"a/b", b"a\\b", b"u@a", b"a:", b"a:0", b"a:65536", b"a:1:2", b"a..b", b".a",
     b"[::1", b"[zz::1]", b"[1.2.3.4]", b"a,b", b"%61", b"a\x00"],
)  # fmt: skip
def test_invalid_hosts_refused(value: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_host(value)


def test_parse_target_host_rules() -> None:
    t = parse_target(b"/a?x=1", [b"Shop.test:8080"])
    assert (t.host, t.authority, t.path, t.raw_path, t.query) == (
        "shop.test", b"Shop.test:8080", "/a", b"/a", b"x=1"
    )  # fmt: skip
    with pytest.raises(BadRequest, match="more than one Host"):
        parse_target(b"/", [b"a", b"a"])
    with pytest.raises(BadRequest, match="missing Host"):
        parse_target(b"/", [], "1.1")
    assert parse_target(b"/", [], "1.0").authority == b""
    with pytest.raises(BadRequest, match="empty Host"):
        parse_target(b"/", [b""], "1.0")


def test_parse_target_absolute_form() -> None:
    t = parse_target(b"http://Other.Test:8443/x/../y?q=1", [b"shop.test"])
    assert (t.host, t.authority, t.raw_path, t.query) == (
        "other.test", b"Other.Test:8443", b"/y", b"q=1"
    )  # fmt: skip
    assert parse_target(b"http://o.test", [b"s"]).raw_path == b"/"
    assert parse_target(b"http://o.test?x", [b"s"]).query == b"x"
    for bad in (b"http://u@o.test/", b"ftp://o.test/", b"http:///x", b"*", b"o.test:443",
                b"http://o.test/#f", b"http://o.test/?a#f"):  # fmt: skip
        with pytest.raises(BadRequest):
            parse_target(bad, [b"s"])
    with pytest.raises(BadRequest, match="invalid Host"):  # the Host header is still checked
        parse_target(b"http://o.test/", [b"a/b"])


def test_strip_parameters() -> None:
    assert strip_parameters("/a;v=1/b;x") == "/a/b"
    assert strip_parameters("/sale;.css") == "/sale"
    assert strip_parameters("/plain") == "/plain"
    assert parse_target(b"/sale;jsessionid=1", [b"h"]).route_path == "/sale"


# -- properties ---------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [b"a", b"static", b".", b"..", b"", b"%2e", b"%2E", b"%2e%2e", b".%2e", b"%2f", b"%2F",
     b"%5c", b"%00", b"%zz", b"%", b"%25", b"%252e", b"%41", b";", b";x", b"..;", b"\\",
     b"%c3%a9", b"\xc3\xa9", b"|", b"~", b"%7e", b"#", b"?", b"%3f", b"%ff", b"%c0%ae"]
)  # fmt: skip
_PATHS = st.lists(_PIECES, max_size=8).map(
    lambda ps: b"/" + b"".join(p + b"/" * (i % 2) for i, p in enumerate(ps))
)


@given(_PATHS)
@settings(max_examples=1000, deadline=None)
def test_normal_form_is_a_fixed_point(raw: bytes) -> None:
    try:
        decoded, encoded = normalize_path(raw)
    except BadRequest:
        return
    # Normalising the normal form changes nothing: the origin re-reading it sees the same path.
    assert normalize_path(encoded) == (decoded, encoded)
    # No dot segment, no empty segment (except a trailing slash), nothing above the root.
    segments = decoded.split("/")[1:]
    assert all(s not in (".", "..") for s in segments)
    assert all(s for s in segments[:-1])
    # The encoded form decodes to the decoded form.
    assert unquote_to_bytes(encoded).decode("utf-8") == decoded
    # Only unreserved, sub-delims, ":", "@", "/" and upper-case %XX escapes remain.
    assert all(
        c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/%"
        for c in encoded
    )
    assert len(re.findall(rb"%[0-9A-F]{2}", encoded)) == encoded.count(b"%")


@given(st.binary(max_size=40))
@settings(max_examples=1000, deadline=None)
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    try:
        normalize_path(b"/" + raw)
        parse_host(raw)
    except BadRequest:
        pass
