"""The JSON status of a place: what ``/status``, ``/heartbeat``, the JSON waiting answer and the
waiting page's template all receive. A superset of Cloudflare Waiting Room's fields, so pages
written for it work here."""

from __future__ import annotations

import time
from typing import Any

from waitroom_proxy.domain.eta import Eta
from waitroom_proxy.domain.policy import Mode
from waitroom_proxy.domain.progress import progress_percent
from waitroom_proxy.domain.rules import refresh_seconds
from waitroom_proxy.ports import QueueView
from waitroom_proxy.service.room import RoomRuntime


def _minutes(n: int) -> str:
    """Cloudflare's ``waitTimeFormatted`` wording: "1 minute", "5 minutes"."""
    return f"{n} minute" if n == 1 else f"{n} minutes"


def status_dict(
    room: RoomRuntime,
    status: str,
    view: QueueView | None,
    return_to: str,
    now: float,
    eta: Eta | None = None,
    *,
    first: int = 0,
) -> dict[str, Any]:
    """The JSON status of ``room`` for a place in ``status`` (``waiting``, ``admitted``, ...).

    ``first``: the position at joining (the ticket's), from which ``progress`` is measured
    (``domain.progress``: the one formula of both pages and of API clients).
    """
    position = view.position if view is not None else 0
    ahead = view.ahead if view is not None else 0
    qlen = view.queue_length if view is not None else 0
    refresh = refresh_seconds(room.policy, ahead)
    waiting = status == "waiting"
    wait_min = (eta.p50 + 59) // 60 if eta is not None else 0
    return {
        "status": status,
        "room": room.name,
        "position": position,
        "ahead": ahead,
        "queue_length": qlen,
        "eta_seconds": eta.as_dict() if eta is not None else None,
        "refresh_seconds": refresh,
        "return_to": return_to,
        "progress": progress_percent(
            first or None, position if waiting else None, admitted=status == "admitted"
        ),
        "first_position": max(first, position) if waiting else 0,
        "message": room.policy.message,
        "cfWaitingRoom": {
            "inWaitingRoom": waiting,
            "waitTimeKnown": eta is not None,
            "waitTime": wait_min,
            "waitTime50Percentile": wait_min,
            "waitTime90Percentile": (eta.p90 + 59) // 60 if eta is not None else 0,
            "waitTimeFormatted": _minutes(wait_min) if eta is not None else "unavailable",
            "queueIsFull": status == "full",
            "queueAll": room.policy.mode is Mode.QUEUE_ALL or room.paused,
            "lastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "refreshIntervalSeconds": refresh,
        },
    }
