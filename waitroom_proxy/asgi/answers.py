"""One table from the gatekeeper's decision to HTTP: status code, metric, ``Retry-After``.

Three callers answer for the gate, each in its own way but from this table:

- ``PAGE``: a protected URL (``WaitroomMiddleware``): the request is forwarded, or gets the
  waiting page (or its JSON) with the room's ``page_status``;
- ``POLL``: the waiting page's own calls (``/status``, ``/heartbeat``): JSON, 200 unless the
  store is down and the room fails closed;
- ``AUTH``: a forward-auth endpoint (nginx ``auth_request``, Traefik ``forwardAuth``), which can
  only say yes (200) or no (401) and lets the front proxy show the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from waitroom_proxy.service.outcome import ADMITTED, Outcome, OutcomeKind


class Caller(StrEnum):
    PAGE = "page"
    POLL = "poll"
    AUTH = "auth"


@dataclass(frozen=True, slots=True)
class Answer:
    """How to answer one outcome."""

    status: int
    """The status code (for a forwarded request, the origin's; 200 here)."""
    forward: bool
    """The request goes through (to the app, the origin, or forward-auth's 200)."""
    metric: str | None
    """The ``outcome`` label of ``waitroom_requests_total``; None: not counted."""
    retry_after: int | None
    """Seconds for ``Retry-After`` (429 and 503 answers)."""


_METRIC = {
    OutcomeKind.PASS: "passed",
    OutcomeKind.FAIL_OPEN: "failed_open",
    OutcomeKind.WAIT: "queued",
    OutcomeKind.EXPIRED: "queued",
    OutcomeKind.CHALLENGE: "queued",
    OutcomeKind.ERROR: "failed_closed",
    OutcomeKind.FULL: "rejected",
    OutcomeKind.REJECTED: "rejected",
}
RATE_LIMITED_METRIC = "rejected"


def _retry(outcome: Outcome) -> int:
    """The next poll, in whole seconds (at least 1)."""
    return max(1, int(outcome.status.get("refresh_seconds") or 10))


def answer_for(outcome: Outcome, caller: Caller) -> Answer:
    """How ``caller`` answers ``outcome`` (see the module docstring)."""
    kind = outcome.kind
    if kind in ADMITTED:
        return Answer(200, True, _METRIC[kind] if caller is not Caller.POLL else None, None)
    if caller is Caller.POLL:
        if kind is OutcomeKind.ERROR:
            return Answer(503, False, None, _retry(outcome))
        return Answer(200, False, None, None)
    if caller is Caller.AUTH:
        return Answer(401, False, _METRIC[kind], None)
    page_status = outcome.room.policy.page_status
    if kind is OutcomeKind.FULL or kind is OutcomeKind.ERROR:
        status = 503
    elif kind is OutcomeKind.REJECTED:
        status = 403 if page_status == 200 else page_status
    else:
        status = page_status
    retry = _retry(outcome) if status in (429, 503) else None
    return Answer(status, False, _METRIC[kind], retry)


def rate_limited(wait: float) -> Answer:
    """A client over the per-client rate limit: 429, to come back in ``wait`` seconds."""
    return Answer(429, False, RATE_LIMITED_METRIC, max(1, math.ceil(wait)))
