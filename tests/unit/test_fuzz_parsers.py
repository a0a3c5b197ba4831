"""Hypothesis fuzzing of what parses visitor input: cookies and session tokens, return_to, the
header filter of the proxy, and the request framing check (tests/unit/test_tokens.py already
fuzzes the ticket parser; the admin API's schemathesis run is in tests/integration)."""

from __future__ import annotations

import base64
import json
from urllib.parse import urljoin, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waitroom_proxy.asgi.hardening import framing_problem
from waitroom_proxy.asgi.headers import HOP_BY_HOP, filter_hop_by_hop, upstream_request_headers
from waitroom_proxy.asgi.middleware import read_cookies
from waitroom_proxy.domain.rules import safe_return_to
from waitroom_proxy.domain.tokens import SESSION_TYP, SessionSigner
from waitroom_proxy.errors import TokenError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECRET = "fuzz-secret-" + "f" * 32
SIGNER = SessionSigner([SECRET])
NOW = 1_800_000_000.0

_NAMES = [b"host", b"cookie", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
          b"via", b"content-length", b"waitroom-verified", b"x-custom", b"expect"]  # fmt: skip
header_names = st.one_of(
    st.sampled_from([*sorted(HOP_BY_HOP), *_NAMES]),
    st.binary(min_size=1, max_size=12).map(bytes.lower),
)
header_values = st.one_of(
    st.binary(max_size=40),
    st.lists(st.sampled_from([b"close", b"keep-alive", b"x-custom", b"cookie", b"via",
             b"x-forwarded-for", b"upgrade", b" ", b","]), max_size=4).map(b", ".join),
)  # fmt: skip
headers_st = st.lists(st.tuples(header_names, header_values), max_size=12)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


jwt_like = st.builds(
    lambda h, p, s: f"{_b64(json.dumps(h).encode())}.{_b64(json.dumps(p).encode())}.{_b64(s)}",
    st.dictionaries(st.sampled_from(["alg", "typ", "kid", "crit", "jku"]),
                    st.one_of(st.text(max_size=12), st.integers(), st.none(),
                              st.just(SESSION_TYP), st.sampled_from(["HS256", "none", "EdDSA"]))),
    st.dictionaries(st.sampled_from(["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "sst"]),
                    st.one_of(st.text(max_size=12), st.integers(), st.floats(allow_nan=True),
                              st.lists(st.text(max_size=4), max_size=2), st.none())),
    st.binary(max_size=40),
)  # fmt: skip


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=4))
def test_cookie_reader_never_raises(values: list[bytes]) -> None:
    session, ticket = read_cookies(values)
    for v in (session, ticket):
        assert v is None or isinstance(v, str)


@FUZZ
@given(st.one_of(st.text(max_size=300), jwt_like))
def test_session_verify_raises_only_token_error(token: str) -> None:
    try:
        SIGNER.verify(token, now=NOW, room="r")
    except TokenError:
        return
    raise AssertionError(f"accepted a token it never issued: {token!r}")


@FUZZ
@given(st.lists(st.text(max_size=60), max_size=2).map("; ".join))
def test_session_cookie_from_any_cookie_header(cookie: str) -> None:
    session, _ = read_cookies([("waitroom_session=" + cookie).encode("utf-8", "replace")])
    if session:
        try:
            SIGNER.verify(session, now=NOW, room="r")
        except TokenError:
            pass
        else:
            raise AssertionError(session)


url_pieces = st.sampled_from(["/", "//", "\\", "/\\", "http:", "https://e.x", "javascript:",
                              "e.x", "@", "%2f", "%5c", "\t", "\n", "\r", " ", "\x00", "?", "#",
                              ".", "..", ":", "\u3002", "\uff0f", "a", "%0d%0a"])  # fmt: skip


@FUZZ
@given(st.one_of(st.text(max_size=80), st.lists(url_pieces, max_size=8).map("".join)))
def test_return_to_stays_on_site(value: str) -> None:
    out = safe_return_to(value)
    assert out == "/" or out == value
    assert out.startswith("/") and not out.startswith(("//", "/\\"))
    assert not any(c in out for c in "\\\t\n\r\x00 ")
    # Browsers strip tabs and newlines and read backslashes as slashes: still on site.
    browserish = out.replace("\\", "/").replace("\t", "").replace("\n", "").replace("\r", "")
    target = urlsplit(urljoin("https://site.test/x/", browserish))
    assert target.netloc == "site.test" and target.scheme == "https"


@FUZZ
@given(headers_st)
def test_hop_by_hop_filter(headers: list[tuple[bytes, bytes]]) -> None:
    out = filter_hop_by_hop(headers)
    named = set()
    for n, v in headers:
        if n == b"connection":
            named |= {t.strip().lower() for t in v.split(b",") if t.strip()}
    assert not any(n in HOP_BY_HOP or n in named for n, _ in out)
    kept = [h for h in headers if h[0] not in HOP_BY_HOP and h[0] not in named]
    assert out == kept  # order and repeats preserved


@FUZZ
@given(headers_st, st.booleans(), st.sampled_from(["http", "https", "ws"]))
def test_upstream_request_headers(
    headers: list[tuple[bytes, bytes]], trusted: bool, scheme: str
) -> None:
    added = ((b"waitroom-verified", b"signed-token"),)
    host, out = upstream_request_headers(
        headers, peer="203.0.113.9", scheme=scheme, trusted=trusted, default_host=b"origin:80",
        add_headers=added, strip_cookies=("waitroom_session", "waitroom_ticket"),
    )  # fmt: skip
    names = [n for n, _ in out]
    assert not any(n in HOP_BY_HOP or n == b"host" for n in names)
    assert [v for n, v in out if n == b"waitroom-verified"] == [b"signed-token"]
    for n, v in out:
        if n == b"cookie":
            parts = [p.strip().split(b"=", 1)[0].strip() for p in v.split(b";")]
            assert b"waitroom_session" not in parts and b"waitroom_ticket" not in parts
    xff = [v for n, v in out if n == b"x-forwarded-for"]
    assert len(xff) == 1 and xff[0].endswith(b"203.0.113.9")
    if not trusted:
        assert xff == [b"203.0.113.9"]
    assert names.count(b"x-forwarded-proto") == 1
    assert names.count(b"via") <= sum(n == b"via" for n, _ in headers)  # none added
    assert isinstance(host, bytes)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"content-length", b"transfer-encoding", b"host", b"x"]),
            st.one_of(st.sampled_from([b"chunked", b"Chunked", b" chunked ", b"gzip, chunked",
                                       b"0", b"10", b"3, 3", b"-1", b"+5", b""]),
                      st.binary(max_size=8)),
        ),
        max_size=5,
    ),
    st.sampled_from(["1.0", "1.1"]),
)  # fmt: skip
def test_framing_check(headers: list[tuple[bytes, bytes]], version: str) -> None:
    problem = framing_problem(headers, version)
    lengths = [v for n, v in headers if n == b"content-length"]
    encodings = [v for n, v in headers if n == b"transfer-encoding"]
    if problem is None:
        # Sound framing: one plain length, or exactly one "chunked" on HTTP/1.1, never both.
        assert len(lengths) <= 1 and len(encodings) <= 1
        assert not (lengths and encodings)
        assert all(v.strip(b" \t").isdigit() for v in lengths)
        assert all(v.strip(b" \t").lower() == b"chunked" for v in encodings)
        assert not (encodings and version == "1.0")
    else:
        assert lengths or encodings
