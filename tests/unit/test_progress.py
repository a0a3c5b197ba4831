"""The progress bar formula (``domain.progress``); the browser test checks the script's copy."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from waitroom_proxy.domain.progress import progress_percent


def test_joining_at_the_front_is_half_a_bar() -> None:
    assert progress_percent(1, 1) == 50
    assert progress_percent(None, 1) == 50


def test_worked_examples() -> None:
    assert progress_percent(3, 3) == 25  # places 3, 2, 1 and the door: 1 of 4 steps
    assert progress_percent(3, 2) == 50
    assert progress_percent(3, 1) == 75
    assert progress_percent(1000, 1000) == 1  # never empty while waiting
    assert progress_percent(1000, 1) == 99  # never full before the door
    assert progress_percent(180, 42) == 76


def test_no_position_and_admitted() -> None:
    assert progress_percent(10, None) == 0
    assert progress_percent(10, 0) == 0  # a pre-queue ticket has no position yet
    assert progress_percent(None, None, admitted=True) == 100
    assert progress_percent(5, 3, admitted=True) == 100


def test_a_position_behind_the_first_one_starts_over_from_it() -> None:
    assert progress_percent(10, 20) == progress_percent(20, 20) == progress_percent(None, 20)


positions = st.integers(1, 10**9)


@given(positions, positions)
def test_bounds(first: int, position: int) -> None:
    assert 1 <= progress_percent(first, position) <= 99


@given(positions, positions, positions)
def test_moving_up_never_moves_the_bar_back(first: int, a: int, b: int) -> None:
    near, far = sorted((a, b))
    start = max(first, far)
    assert progress_percent(start, near) >= progress_percent(start, far)
