"""The pages of a scheduled room outside its open phase: the idle countdown, the pre-queue and
the ended (sold-out) page. Separate from the waiting page (``asgi.page``): they show no
position. Each is in the visitor's language (the same messages and ``Accept-Language``
negotiation as the waiting page, so ``page_messages`` adds or replaces their strings too) and in
the room's brand (title, logo, colours, links).

The countdown is counted down by a small inline script (nonce'd, nothing loaded) from the
server's ``seconds_to_change``, a duration, so a visitor's wrong clock does not move it; at zero
the page reloads after up to two seconds of random delay (a pre-queue of thousands must not
reload in the same millisecond). Without JavaScript a meta refresh reloads the page when the
next phase is due (or every ``refresh_seconds``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, StrictUndefined, Template
from markupsafe import Markup

from waitroom_proxy.asgi.brand import Brand
from waitroom_proxy.asgi.messages import MESSAGES, countdown_text, negotiate, title_for
from waitroom_proxy.asgi.page import Pages
from waitroom_proxy.asgi.page_sources import builtin_source as _builtin_source

__all__ = ["PHASE_STATUSES", "phase_page", "phase_page_of"]

PHASE_STATUSES = frozenset({"idle", "prequeue", "ended"})
"""JSON ``status`` values this module renders."""

_WHEN = {"idle": "opens_at", "prequeue": "starts_at", "ended": "ended_at"}
"""The status field each page shows as its time."""
_COUNTDOWN_KEYS = ("countdown_hours", "countdown_minutes", "countdown_seconds")


@cache
def _template() -> Template:
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True)  # fmt: skip
    return env.from_string(_builtin_source("phase.html"))


def phase_page(
    status: Mapping[str, Any],
    *,
    nonce: str,
    lang: str = "en",
    messages: Mapping[str, str] | None = None,
    brand: Brand | None = None,
    room: str = "",
) -> str:
    """The HTML page of ``status`` (``status["status"]`` in :data:`PHASE_STATUSES`).

    ``messages``: the strings of ``lang`` (default: the built-in English ones).
    """
    t = messages if messages is not None else MESSAGES["en"]
    brand = brand if brand is not None else Brand()
    state = str(status.get("status"))
    if state not in PHASE_STATUSES:
        state = "idle"
    seconds = status.get("seconds_to_change")
    left = -1
    if state != "ended" and isinstance(seconds, int | float) and not isinstance(seconds, bool):
        left = max(0, round(seconds))
    refresh = status.get("refresh_seconds")
    reload_after = 0
    if isinstance(refresh, int | float) and not isinstance(refresh, bool) and state != "ended":
        reload_after = max(1, round(refresh))
    return _template().render(
        status=status,
        state=state,
        lang=lang,
        t=t,
        title=title_for(state, t),
        title_suffix=brand.title or room,
        lead=t[f"{state}_lead"],
        when=str(status.get(_WHEN[state]) or ""),
        when_text=_readable(str(status.get(_WHEN[state]) or "")),
        countdown=countdown_text(left, t) if left >= 0 else "",
        seconds_left=left,
        formats={key: t[key] for key in _COUNTDOWN_KEYS},
        refresh=reload_after,
        nonce=nonce,
        brand=brand,
        room=room,
        css=Markup(_builtin_source("waitroom.css")),  # noqa: S704 - our own file
    )


def _readable(when: str) -> str:
    """``2030-06-01 10:00 UTC`` from RFC 3339 (the script shows it in the visitor's own time
    zone and language)."""
    try:
        at = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return when
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def phase_page_of(
    pages: Pages, room: str, status: Mapping[str, Any], *, nonce: str, accept_language: str | None
) -> str:
    """The phase page of ``room`` in the visitor's language and the room's brand."""
    messages = pages.for_room(room).messages
    lang = negotiate(accept_language, messages)
    return phase_page(
        status,
        nonce=nonce,
        lang=lang,
        messages=messages[lang],
        brand=pages.brand_for(room),
        room=room,
    )
