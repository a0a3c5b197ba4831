"""``domain.binding``: which clients share a binding, and what the token reveals."""

from __future__ import annotations

import pytest

from waitroom_proxy.domain.binding import binding_of, network_of


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("203.0.113.7", "203.0.113.0/24"),
        ("::ffff:203.0.113.7", "203.0.113.0/24"),
        ("2001:db8:1:2::10", "2001:db8:1:2::/64"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_network_of(ip: str, network: str) -> None:
    assert network_of(ip) == network


def test_binding_values() -> None:
    a = binding_of("ip+ua", "203.0.113.7", "Firefox")
    assert a == binding_of("ip+ua", "203.0.113.99", "Firefox")
    assert a != binding_of("ip+ua", "203.0.114.7", "Firefox")
    assert a != binding_of("ip+ua", "203.0.113.7", "Chrome")
    assert a != binding_of("ip", "203.0.113.7", "Firefox"), "the mode is part of the value"
    assert binding_of("ua", "1.1.1.1", "x") == binding_of("ua", "9.9.9.9", "x")
    assert binding_of("none", "1.1.1.1", "x") == "" == binding_of("bogus", "1.1.1.1", "x")
    assert len(a) == 16 and "203" not in a
