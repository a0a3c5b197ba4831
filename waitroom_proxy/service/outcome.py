"""What the gatekeeper decided for one request, before anything is said in HTTP.

The service knows nothing of HTTP: ``asgi.answers`` turns an :class:`Outcome` into a status
code, a metric and headers, one table for every caller (the middleware, the poll routes, and a
forward-auth endpoint that can only say 200 or 401).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from waitroom_proxy.service.room import RoomRuntime

SESSION_COOKIE = "waitroom_session"
TICKET_COOKIE = "waitroom_ticket"
TICKET_MAX_AGE = 86_400

Cookie = tuple[str, str, int]
"""(name, value, max_age); an empty value with max_age 0 deletes the cookie."""


class OutcomeKind(StrEnum):
    """The kinds of decision; the values are what logs and tests have always said."""

    PASS = "pass"  # noqa: S105 - not a password
    """Forward, maybe with a new session cookie."""
    WAIT = "wait"
    """The waiting page (or its JSON)."""
    REJECTED = "rejected"
    """Sold out: the room takes no newcomer."""
    FULL = "full"
    """The queue is full."""
    EXPIRED = "expired"
    """The place is lost (or the ticket was used)."""
    CHALLENGE = "challenge"
    """A newcomer must solve a proof of work before it gets a place (``service.challenge``)."""
    FAIL_OPEN = "fail_open"
    """The store is down and the room lets the request through (a session all the same)."""
    ERROR = "error"
    """The store is down and the room fails closed."""


ADMITTED = frozenset({OutcomeKind.PASS, OutcomeKind.FAIL_OPEN})
"""The kinds that let the request through."""


@dataclass(slots=True)
class Outcome:
    """What to do with a request that is not on the hot path."""

    kind: OutcomeKind
    room: RoomRuntime
    status: dict[str, Any] = field(default_factory=dict)
    """The JSON status (``service.status.status_dict``)."""
    cookies: list[Cookie] = field(default_factory=list)
    session_token: str | None = None
    """The session a ``pass`` or ``fail_open`` outcome started."""
