"""The pages of a scheduled room outside its open phase: the idle countdown, the pre-queue and
the ended (sold-out) page. Small and separate from the waiting page (``asgi.page``): they show
no position, and they need no script (a meta refresh reloads them when the next phase is due).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from jinja2 import Environment, StrictUndefined, Template
from markupsafe import Markup

from waitroom_proxy.asgi.page import _builtin_source

PHASE_STATUSES = frozenset({"idle", "prequeue", "ended"})
"""JSON ``status`` values this module renders."""

_TEXTS = {
    "idle": ("The sale has not started", "Tickets are given from:", "opens_at"),
    "prequeue": (
        "You are in the pre-queue",
        "Keep this page open. When the sale starts, everyone in the pre-queue gets a place "
        "in a random order, drawn fairly; then you will see your position. It starts at:",
        "starts_at",
    ),
    "ended": ("The sale has ended", "This sale is over; nobody new can enter.", "ended_at"),
}


@cache
def _template() -> Template:
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True)  # fmt: skip
    return env.from_string(_builtin_source("phase.html"))


def countdown_text(seconds: int) -> str:
    """``2 h 05 min``, ``4 min 10 s``, ``9 s``: a countdown worded for the page."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"Starts in {hours} h {minutes:02d} min"
    if minutes:
        return f"Starts in {minutes} min {secs:02d} s"
    return f"Starts in {secs} s"


def phase_page(status: Mapping[str, Any], *, nonce: str) -> str:
    """The HTML page of ``status`` (``status["status"]`` in :data:`PHASE_STATUSES`)."""
    state = str(status.get("status"))
    title, lead, when_key = _TEXTS.get(state, _TEXTS["idle"])
    seconds = status.get("seconds_to_change")
    countdown = (
        countdown_text(int(seconds))
        if state != "ended" and isinstance(seconds, int | float)
        else ""
    )
    refresh = status.get("refresh_seconds")
    reload_after = 0
    if isinstance(refresh, int | float) and state != "ended":
        reload_after = max(1, round(refresh))
    return _template().render(
        status=status,
        title=title,
        lead=lead,
        when=str(status.get(when_key) or ""),
        countdown=countdown,
        refresh=reload_after,
        nonce=nonce,
        css=Markup(_builtin_source("waitroom.css")),  # noqa: S704 - our own file
    )
