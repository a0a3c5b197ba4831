"""The one parse of the request's cookies on the fast path (``room_headers.room_cookies``) says
exactly what the two parses it replaced said: the room's cookies as ``read_cookies`` reads them,
and the ``Cookie`` the origin receives as ``strip_cookie_names`` builds it; and the upstream
headers built from it are the same as when the proxy parsed the cookies itself."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waitroom_proxy.asgi.headers import strip_cookie_names, upstream_request_headers
from waitroom_proxy.asgi.room_headers import ROOM_COOKIES, read_cookies, room_cookies

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_PIECES = [b"waitroom_session=", b"waitroom_ticket=", b"waitroom_session", b" waitroom_ticket =",
           b"cart=", b"a", b"=", b";", b"; ", b" ", b'"', b"tok.en", b"\t", b"\xff"]  # fmt: skip
cookie_value = st.lists(st.sampled_from(_PIECES), max_size=10).map(b"".join)
cookie_headers = st.lists(cookie_value, min_size=1, max_size=3)


def _sessions(values: list[bytes]) -> int:
    return sum(
        1 for v in values for p in v.split(b";") if p.strip().startswith(b"waitroom_session=")
    )


@FUZZ
@given(cookie_headers)
def test_one_parse_says_what_the_two_said(values: list[bytes]) -> None:
    session, ticket, rest, sessions = room_cookies(values)
    assert (session, ticket) == read_cookies(values)
    assert rest == (strip_cookie_names(values, ROOM_COOKIES) or b"")
    assert sessions == _sessions(values)
    assert room_cookies(values) == (session, ticket, rest, sessions), "cached: the same answer"


@FUZZ
@given(cookie_headers, st.booleans())
def test_the_origin_gets_the_same_headers(values: list[bytes], named: bool) -> None:
    headers = [(b"host", b"shop.test"), *((b"cookie", v) for v in values), (b"accept", b"*/*")]
    if named:
        headers.append((b"connection", b"cookie"))  # a Connection that names Cookie drops it
    added = ((b"waitroom-verified", b"token"),)
    kw = {"peer": "10.0.0.1", "scheme": "http", "trusted": False, "default_host": b"x"}
    parsed = upstream_request_headers(headers, add_headers=added, strip_cookies=ROOM_COOKIES,
                                      strip_headers=frozenset({b"x-secret"}), **kw)  # fmt: skip
    given_ = upstream_request_headers(
        headers, add_headers=added, strip_cookies=ROOM_COOKIES, stripped_cookie=room_cookies(values)[2],
        strip_headers=frozenset({b"x-secret", b"waitroom-verified"}), **kw,
    )  # fmt: skip
    assert parsed == given_


def test_the_cache_is_bounded() -> None:
    from waitroom_proxy.asgi import room_headers

    for i in range(room_headers._PARSED_MAX * 2):
        room_cookies([b"waitroom_session=t%d" % i])
    assert len(room_headers._PARSED) <= room_headers._PARSED_MAX
    big = b"cart=" + b"x" * (room_headers._PARSED_BYTES + 1)
    assert room_cookies([big]) == (None, None, big, 0)
    assert big not in room_headers._PARSED
