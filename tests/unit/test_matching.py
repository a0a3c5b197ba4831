"""Room matching: most specific host, then longest path prefix on segment boundaries."""

from __future__ import annotations

import pytest

from waitroom_proxy.domain.matching import (
    RoomMatcher,
    find_room,
    normalize_host,
    parse_pattern,
)
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.target import BadRequest, parse_host


def room(name: str, *patterns: str) -> RoomPolicy:
    return RoomPolicy(name=name, capacity=1, match=patterns)


ROOMS = [
    room("everything", "*/"),
    room("any-sale", "*/sale"),
    room("sub", "*.example.com/"),
    room("deep-sub", "*.shop.example.com/"),
    room("shop", "shop.example.com/"),
    room("shop-checkout", "shop.example.com/checkout/"),
]


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        ("other.org", "/", "everything"),
        ("other.org", "/sale", "any-sale"),
        ("other.org", "/sale/item/1", "any-sale"),
        ("other.org", "/salespeople", "everything"),  # segment boundary
        ("www.example.com", "/", "sub"),
        ("www.example.com", "/sale", "sub"),  # host specificity beats path length
        ("example.com", "/", "everything"),  # *.example.com excludes the apex
        ("a.b.example.com", "/", "sub"),  # any depth
        ("x.shop.example.com", "/", "deep-sub"),  # longer wildcard suffix wins
        ("shop.example.com", "/", "shop"),
        ("shop.example.com", "/checkout", "shop-checkout"),  # trailing slash ignored
        ("shop.example.com", "/checkout/pay", "shop-checkout"),
        ("shop.example.com", "/checkouts", "shop"),
        ("SHOP.Example.COM:8443", "/checkout", "shop-checkout"),  # case, port
        ("shop.example.com.", "/", "shop"),  # trailing dot
        ("shop.example.com", "/x/../checkout/pay", "shop-checkout"),  # dot segments
        ("shop.example.com", "//checkout", "shop-checkout"),  # repeated slashes
        ("other.org", "/./sale/", "any-sale"),
        ("", "/", "everything"),
    ],
)
def test_most_specific_room_wins(host: str, path: str, expected: str) -> None:
    # find_room normalises the raw Host and path as the request edge does.
    matched = find_room(ROOMS, host, path)
    assert matched is not None
    assert matched.name == expected


def test_falls_back_to_less_specific_host_when_paths_do_not_match() -> None:
    rooms = [room("api", "api.example.com/v2"), room("rest", "*/")]
    matcher = RoomMatcher(rooms)
    assert matcher.match("api.example.com", "/v1/x").name == "rest"  # type: ignore[union-attr]
    assert matcher.match("api.example.com", "/v2/x").name == "api"  # type: ignore[union-attr]


def test_no_room_matches() -> None:
    matcher = RoomMatcher([room("shop", "shop.example.com/")])
    assert matcher.match("other.org", "/") is None
    assert matcher.match("shop.example.com.evil.org", "/") is None
    assert RoomMatcher([]).match("x", "/") is None


def test_dot_segments_cannot_climb_out_of_a_room() -> None:
    rooms = [room("sale", "*/sale"), room("docs", "*/docs")]
    assert find_room(rooms, "h", "/docs/../sale").name == "sale"  # type: ignore[union-attr]
    assert find_room(rooms, "h", "/docs/%2e%2e/sale").name == "sale"  # type: ignore[union-attr]
    assert find_room(rooms, "h", "/nothing/..") is None
    with pytest.raises(BadRequest):  # the edge answers 400: nothing to match
        find_room(rooms, "h", "/../../sale")


def test_rooms_are_matched_without_path_parameters() -> None:
    # Servlet and Spring origins serve /sale;jsessionid=x as /sale.
    rooms = [room("sale", "*/sale")]
    assert find_room(rooms, "h", "/sale;jsessionid=1").name == "sale"  # type: ignore[union-attr]
    assert find_room(rooms, "h", "/sale;x/item").name == "sale"  # type: ignore[union-attr]


def test_find_room_is_the_one_off_form() -> None:
    found = find_room(ROOMS, "shop.example.com", "/checkout")
    assert found is not None and found.name == "shop-checkout"
    assert find_room([], "h", "/") is None


def test_first_listed_room_wins_an_exact_tie() -> None:
    matcher = RoomMatcher([room("a", "*/x"), room("b", "*/x/")])
    assert matcher.match("h", "/x").name == "a"  # type: ignore[union-attr]


def test_ipv6_host() -> None:
    matcher = RoomMatcher([room("v6", "[::1]/"), room("rest", "*/")])
    assert matcher.match(parse_host(b"[::1]:8080"), "/").name == "v6"  # type: ignore[union-attr]
    assert normalize_host("[::1]:8080") == "[::1]"


def test_parse_pattern() -> None:
    assert str(parse_pattern("Shop.Example.com/Sale/")) == "shop.example.com/Sale"
    assert str(parse_pattern("*/")) == "*/"
    with pytest.raises(ValueError, match="no '/'"):
        parse_pattern("example.com")
    with pytest.raises(ValueError, match="host part is empty"):
        parse_pattern("/shop")
