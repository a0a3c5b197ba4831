"""The service layer: the gatekeeper's parts, the controller, the operator's verbs.

Knows rooms, tokens, the store and the events through ports (``waitroom_proxy.ports``) and
pure rules (``waitroom_proxy.domain``); knows nothing of HTTP.
"""

from __future__ import annotations

from waitroom_proxy.service.engine import Engine
from waitroom_proxy.service.gatekeeper import Gatekeeper
from waitroom_proxy.service.outcome import (
    SESSION_COOKIE,
    TICKET_COOKIE,
    TICKET_MAX_AGE,
    Outcome,
    OutcomeKind,
)
from waitroom_proxy.service.room import MUTABLE_FIELDS, RoomRuntime

__all__ = [
    "MUTABLE_FIELDS",
    "SESSION_COOKIE",
    "TICKET_COOKIE",
    "TICKET_MAX_AGE",
    "Engine",
    "Gatekeeper",
    "Outcome",
    "OutcomeKind",
    "RoomRuntime",
]
