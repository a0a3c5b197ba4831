"""One table from the gatekeeper's outcome to HTTP, for every caller (``asgi.answers``)."""

from __future__ import annotations

import pytest

from waitroom_proxy.asgi.answers import Answer, Caller, answer_for, rate_limited
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.service import Outcome, OutcomeKind, RoomRuntime

K = OutcomeKind


def outcome(kind: OutcomeKind, page_status: int = 200, refresh: float = 4.0) -> Outcome:
    room = RoomRuntime.of(RoomPolicy(name="r", capacity=1, page_status=page_status))
    return Outcome(kind, room, status={"refresh_seconds": refresh})


@pytest.mark.parametrize(
    ("kind", "page_status", "expected"),
    [
        (K.PASS, 200, Answer(200, True, "passed", None)),
        (K.FAIL_OPEN, 200, Answer(200, True, "failed_open", None)),
        (K.WAIT, 200, Answer(200, False, "queued", None)),
        (K.WAIT, 202, Answer(202, False, "queued", None)),
        (K.WAIT, 429, Answer(429, False, "queued", 4)),
        (K.WAIT, 503, Answer(503, False, "queued", 4)),
        (K.EXPIRED, 200, Answer(200, False, "queued", None)),
        (K.FULL, 200, Answer(503, False, "rejected", 4)),
        (K.ERROR, 202, Answer(503, False, "failed_closed", 4)),
        (K.REJECTED, 200, Answer(403, False, "rejected", None)),  # sold out is not "OK"
        (K.REJECTED, 503, Answer(503, False, "rejected", 4)),
    ],
)
def test_a_protected_url(kind: OutcomeKind, page_status: int, expected: Answer) -> None:
    assert answer_for(outcome(kind, page_status), Caller.PAGE) == expected


@pytest.mark.parametrize("kind", list(OutcomeKind))
def test_the_poll_routes_answer_200_unless_the_room_fails_closed(kind: OutcomeKind) -> None:
    answer = answer_for(outcome(kind, page_status=503), Caller.POLL)
    assert answer.metric is None  # the page's own polls are not requests for the site
    if kind is K.ERROR:
        assert (answer.status, answer.retry_after) == (503, 4)
    else:
        assert (answer.status, answer.retry_after) == (200, None)


@pytest.mark.parametrize("kind", list(OutcomeKind))
def test_forward_auth_says_yes_or_no(kind: OutcomeKind) -> None:
    answer = answer_for(outcome(kind), Caller.AUTH)
    admitted = kind in (K.PASS, K.FAIL_OPEN)
    assert (answer.status, answer.forward) == ((200, True) if admitted else (401, False))
    assert answer.metric == answer_for(outcome(kind), Caller.PAGE).metric


@pytest.mark.parametrize(("refresh", "retry"), [(0.2, 1), (0.0, 10), (10.9, 10), (30, 30)])
def test_retry_after_is_the_next_poll_in_whole_seconds(refresh: float, retry: int) -> None:
    assert answer_for(outcome(K.ERROR, refresh=refresh), Caller.PAGE).retry_after == retry


@pytest.mark.parametrize(("wait", "retry"), [(0.001, 1), (1.0, 1), (1.2, 2), (59.5, 60)])
def test_rate_limited(wait: float, retry: int) -> None:
    assert rate_limited(wait) == Answer(429, False, "rejected", retry)
