"""Pure per-request rules: bypass, return URLs, store limits, poll intervals, ETA."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waitroom_proxy.domain.policy import Bypass, Mode, RoomPolicy
from waitroom_proxy.domain.rules import BypassRules, limits_for, refresh_seconds, safe_return_to


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/checkout?x=1", "/checkout?x=1"),
        ("/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/a\r\nSet-Cookie: x=1", "/"),
        ("/a\tb", "/"),
        ("/\n", "/"),  # "$" of a pattern also matches before a final newline
        ("/sale\n", "/"),
        ("relative/path", "/"),
        ("", "/"),
        (None, "/"),
        ("/" + "a" * 3000, "/"),
    ],
)
def test_safe_return_to(value: str | None, expected: str) -> None:
    assert safe_return_to(value) == expected


@given(st.text(max_size=80))
@settings(max_examples=2000)
def test_return_to_never_off_site(value: str) -> None:
    out = safe_return_to(value)
    assert out.startswith("/") and not out.startswith("//") and not out.startswith("/\\")
    assert not any(c in out for c in "\r\n\t\\ ")


def test_bypass_rules() -> None:
    policy = RoomPolicy(
        name="r",
        capacity=1,
        bypass=Bypass(
            paths=("/static/", "*.css", "/robots.txt"),
            methods=("OPTIONS",),
            cidrs=("10.0.0.0/8", "::1/128"),
            secret="s" * 20,
        ),
    )
    rules = BypassRules.compile(policy)
    assert rules.matches("/static/app.js", "GET", None, None)
    assert rules.matches("/x/y.css", "GET", None, None)
    assert rules.matches("/robots.txt", "GET", None, None)
    assert rules.matches("/buy", "OPTIONS", None, None)
    assert rules.matches("/buy", "GET", "10.1.2.3", None)
    assert rules.matches("/buy", "GET", "::1", None)
    assert rules.matches("/buy", "GET", None, b"s" * 20)
    assert not rules.matches("/buy", "GET", "192.0.2.1", b"wrong")
    assert not rules.matches("/buy", "GET", "not-an-ip", None)
    assert not rules.matches("/staticx", "GET", None, None)


def test_limits_follow_mode_and_pause() -> None:
    base = RoomPolicy(name="r", capacity=5, admit_rate=120, session_ttl=300)
    lim = limits_for(base)
    assert (lim.capacity, lim.admit_rate, lim.burst) == (5, 120, 2)
    assert lim.direct_admit and lim.promote and not lim.count_only
    assert lim.session_ttl_ms == int((300 + base.session_grace) * 1000)
    paused = limits_for(base, paused=True)
    assert not paused.direct_admit and not paused.promote
    for mode in (Mode.QUEUE_ALL, Mode.REJECT):
        m = limits_for(RoomPolicy(name="r", capacity=5, mode=mode))
        assert not m.direct_admit and not m.promote
    assert limits_for(RoomPolicy(name="r", capacity=5, mode=Mode.PASSTHROUGH)).count_only
    fixed = limits_for(RoomPolicy(name="r", capacity=5, session_renewal=False, session_max=900))
    assert fixed.session_ttl_ms == int((900 + base.session_grace) * 1000)


def test_refresh_lengthens_far_from_front_but_stays_below_abandon() -> None:
    p = RoomPolicy(name="r", capacity=1, heartbeat_interval=10, abandon_after=120)
    assert refresh_seconds(p, 0) == 10
    assert refresh_seconds(p, 5_000) == 20
    assert refresh_seconds(p, 50_000) == 20  # not longer far back: domain/pacing.py
    tight = RoomPolicy(name="r", capacity=1, heartbeat_interval=10, abandon_after=45)
    assert refresh_seconds(tight, 50_000) == 15
