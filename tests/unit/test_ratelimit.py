"""The sliding-window rule behind the per-client rate limit."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from waitroom_proxy.domain.ratelimit import WindowState, hit

WIN = 60_000


def test_allows_up_to_limit_then_waits() -> None:
    state: WindowState | None = None
    for _ in range(5):
        state, wait = hit(state, 1_000, 5, WIN)
        assert wait == 0
    refused, wait = hit(state, 1_000, 5, WIN)
    assert refused is None and wait == WIN - 1_000


def test_previous_window_weighs_in_and_decays() -> None:
    state: WindowState | None = None
    for _ in range(10):
        state, _ = hit(state, 59_000, 10, WIN)
    # Just after the window turns, the previous 10 still count almost fully.
    refused, wait = hit(state, 61_000, 10, WIN)
    assert refused is None and wait > 0
    # After the advertised wait, a hit succeeds.
    later, wait2 = hit(state, 61_000 + wait, 10, WIN)
    assert later is not None and wait2 == 0


@given(st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=200))
@settings(max_examples=200)
def test_never_more_than_limit_in_any_window(gaps: list[int]) -> None:
    """Accepted hits in any sliding window of WIN ms never exceed 2 x limit (the counter's
    known worst case) and never exceed limit within one fixed window."""
    limit = 7
    state: WindowState | None = None
    now = 0
    accepted: list[int] = []
    for gap in gaps:
        now += gap
        new, wait = hit(state, now, limit, WIN)
        if wait == 0:
            assert new is not None
            state = new
            accepted.append(now)
    for t in accepted:
        assert sum(1 for u in accepted if t // WIN == u // WIN) <= limit
        assert sum(1 for u in accepted if t <= u < t + WIN) <= 2 * limit
