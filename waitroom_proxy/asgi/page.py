"""The waiting page and the friendly error page.

The page is one self-contained HTML document: its CSS and JavaScript are inlined (in tags that
carry the per-response CSP nonce) and it loads nothing else, not even from our own server. It
works without JavaScript (a ``<noscript>`` meta refresh reloads it) and, with JavaScript, polls
``POST {prefix}/heartbeat`` and updates itself.

The template receives the JSON status fields (``status``, ``room``, ``position``, ``ahead``,
``queue_length``, ``eta_seconds``, ``refresh_seconds``, ``return_to``), so an operator template
(``template_path``) sees what the JSON routes return, plus a few rendering helpers described
in :meth:`PageRenderer.context`.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    PrefixLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
)
from markupsafe import Markup

from waitroom_proxy.asgi.response import error_text
from waitroom_proxy.domain.rules import is_safe_return_to

__all__ = [
    "MESSAGES",
    "STATUSES",
    "PageRenderer",
    "Pages",
    "builtin_renderer",
    "content_security_policy",
    "default_error_page",
    "format_eta",
    "is_safe_return_to",
    "new_nonce",
    "proxy_error_page",
    "title_for",
]

STATUSES = ("waiting", "admitted", "expired", "rejected", "full")

#: Every visible string of the waiting page, per language. ``{n}``, ``{low}``, ``{high}`` are
#: placeholders filled by the renderer and by the page script (the same rules in both).
MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "page_title": "You’re in the queue",
        "room_label": "Waiting room",
        "waiting_heading": "You’re in the queue",
        "waiting_lead": (
            "This page updates by itself. Keep it open: when it’s your turn, you’ll be taken "
            "to the site automatically."
        ),
        "position_label": "Your place in line",
        "ahead_label": "People ahead of you",
        "queue_label": "People in the queue",
        "eta_label": "Estimated wait",
        "progress_label": "Your progress toward the front",
        "eta_unknown": "calculating…",
        "eta_soon": "less than a minute",
        "eta_minute": "about 1 minute",
        "eta_minutes": "about {n} minutes",
        "eta_range_minutes": "about {low}–{high} minutes",
        "eta_hour": "about 1 hour",
        "eta_hours": "about {n} hours",
        "eta_range_hours": "about {low}–{high} hours",
        "announce_position": "You are number {n} in line.",
        "announce_next": "You are next in line.",
        "admitted_heading": "It’s your turn!",
        "admitted_text": "Taking you to the site now…",
        "admitted_link": "Continue to the site",
        "expired_heading": "Your place has expired",
        "expired_text": (
            "This page was inactive for too long, so your place in the queue was released."
        ),
        "rejoin": "Rejoin the queue",
        "rejected_heading": "Sold out",
        "rejected_text": "Sorry, this event is no longer accepting visitors.",
        "full_heading": "The waiting room is full",
        "full_text": "Too many people are waiting right now. Please try again in a little while.",
        "try_again": "Try again",
        "left_heading": "You left the queue",
        "left_text": "Your place has been given up. You can join again at any time.",
        "leave": "Leave the queue",
        "reconnecting": "Reconnecting…",
        "noscript_hint": "This page reloads by itself every {n} seconds.",
        "footer": "You keep your place as long as this page stays open.",
        "error_retry": "Try again",
        "back_to_site": "Back to the site",
        "thousands_separator": ",",
    },
    "de": {
        "page_title": "Sie sind in der Warteschlange",
        "room_label": "Warteraum",
        "waiting_heading": "Sie sind in der Warteschlange",
        "waiting_lead": (
            "Diese Seite aktualisiert sich selbst. Lassen Sie sie geöffnet: Wenn Sie an der "
            "Reihe sind, werden Sie automatisch weitergeleitet."
        ),
        "position_label": "Ihr Platz",
        "ahead_label": "Personen vor Ihnen",
        "queue_label": "Personen in der Warteschlange",
        "eta_label": "Geschätzte Wartezeit",
        "progress_label": "Ihr Fortschritt nach vorne",
        "eta_unknown": "wird berechnet…",
        "eta_soon": "weniger als eine Minute",
        "eta_minute": "etwa 1 Minute",
        "eta_minutes": "etwa {n} Minuten",
        "eta_range_minutes": "etwa {low}–{high} Minuten",
        "eta_hour": "etwa 1 Stunde",
        "eta_hours": "etwa {n} Stunden",
        "eta_range_hours": "etwa {low}–{high} Stunden",
        "announce_position": "Sie sind Nummer {n} in der Warteschlange.",
        "announce_next": "Sie sind als Nächstes an der Reihe.",
        "admitted_heading": "Sie sind an der Reihe!",
        "admitted_text": "Sie werden jetzt weitergeleitet…",
        "admitted_link": "Weiter zur Website",
        "expired_heading": "Ihr Platz ist abgelaufen",
        "expired_text": (
            "Diese Seite war zu lange inaktiv, daher wurde Ihr Platz in der Warteschlange "
            "freigegeben."
        ),
        "rejoin": "Erneut anstellen",
        "rejected_heading": "Ausverkauft",
        "rejected_text": "Leider werden keine weiteren Besucher mehr eingelassen.",
        "full_heading": "Der Warteraum ist voll",
        "full_text": (
            "Gerade warten zu viele Personen. Bitte versuchen Sie es in Kürze noch einmal."
        ),
        "try_again": "Erneut versuchen",
        "left_heading": "Sie haben die Warteschlange verlassen",
        "left_text": "Ihr Platz wurde freigegeben. Sie können sich jederzeit neu anstellen.",
        "leave": "Warteschlange verlassen",
        "reconnecting": "Verbindung wird wiederhergestellt…",
        "noscript_hint": "Diese Seite lädt sich alle {n} Sekunden selbst neu.",
        "footer": "Sie behalten Ihren Platz, solange diese Seite geöffnet bleibt.",
        "error_retry": "Erneut versuchen",
        "back_to_site": "Zurück zur Website",
        "thousands_separator": ".",
    },
}

DEFAULT_REFRESH_SECONDS = 10.0
_NONCE_RE = re.compile(r"[A-Za-z0-9+/_=-]{8,128}")
_PLACEHOLDER_RE = re.compile(r"\{(\w+)\}")
_BUILTIN = "waitroom"
_OPERATOR = "operator"


def new_nonce() -> str:
    """A fresh CSP nonce (128 random bits, URL-safe base64)."""
    return secrets.token_urlsafe(16)


def content_security_policy(nonce: str) -> str:
    """The Content-Security-Policy header value for a page rendered with ``nonce``.

    Raises:
        ValueError: ``nonce`` is not 8-128 base64/base64url characters (it goes into a header).
    """
    if not _NONCE_RE.fullmatch(nonce):
        raise ValueError("CSP nonce must be 8-128 base64 characters")
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


_TITLE_KEYS = {
    "waiting": "page_title",
    "admitted": "admitted_heading",
    "expired": "expired_heading",
    "rejected": "rejected_heading",
    "full": "full_heading",
    "left": "left_heading",
}


def title_for(status: str, messages: Mapping[str, str]) -> str:
    """The document title of the page in ``status``: a sold-out or full room must not be
    titled "You're in the queue" (the tab is what a visitor sees first). The page script
    applies the same table when the status changes (see ``waitroom.js``)."""
    return messages[_TITLE_KEYS.get(status, "page_title")]


def _fill(template: str, **values: object) -> str:
    return _PLACEHOLDER_RE.sub(lambda m: str(values.get(m.group(1), m.group(0))), template)


def format_eta(eta_seconds: object, messages: Mapping[str, str]) -> str:
    """The ETA as a range in words ("about 2–3 minutes"), from ``{"p50": s, "p90": s}``.

    The page script applies the same rules when it updates the page (see ``waitroom.js``).
    """
    if not isinstance(eta_seconds, Mapping):
        return messages["eta_unknown"]
    p50 = _number(eta_seconds.get("p50"))
    p90 = _number(eta_seconds.get("p90"))
    if p50 is None and p90 is None:
        return messages["eta_unknown"]
    p50 = p50 if p50 is not None else p90
    p90 = p90 if p90 is not None else p50
    assert p50 is not None and p90 is not None
    p50, p90 = max(0.0, p50), max(0.0, p90, p50)
    if p90 < 60:
        return messages["eta_soon"]
    unit_seconds, one, many, span = 60, "eta_minute", "eta_minutes", "eta_range_minutes"
    if p50 >= 90 * 60:
        unit_seconds, one, many, span = 3600, "eta_hour", "eta_hours", "eta_range_hours"
    low = max(1, math.floor(p50 / unit_seconds + 0.5))
    high = max(low, math.ceil(p90 / unit_seconds))
    if low == high:
        return messages[one] if low == 1 else _fill(messages[many], n=low)
    return _fill(messages[span], low=low, high=high)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return float(value)


def _count(value: object) -> int | None:
    number = _number(value)
    return None if number is None or number < 0 else int(number)


def _format_count(value: int | None, messages: Mapping[str, str]) -> str:
    if value is None:
        return "—"
    return f"{value:,}".replace(",", messages.get("thousands_separator", ","))


def _pick_language(lang: str, messages: Mapping[str, Mapping[str, str]]) -> str:
    wanted = lang.strip().lower().replace("_", "-")
    if wanted in messages:
        return wanted
    primary = wanted.split("-", 1)[0]
    return primary if primary in messages else "en"


@cache
def _builtin_source(name: str) -> str:
    """A built-in template file, from the installed package or the source checkout."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise TemplateNotFound(name)
    try:
        return resources.files("waitroom_proxy.templates").joinpath(name).read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    path = Path(__file__).parents[2] / "templates" / name
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        raise TemplateNotFound(name) from None


class _BuiltinLoader(BaseLoader):
    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        return _builtin_source(template), None, lambda: True


class PageRenderer:
    """Renders the waiting page and the error page.

    Templates are parsed once, here, so a broken operator template fails at start-up rather than
    on the first visitor. An operator template may stand alone or extend the built-in page with
    ``{% extends "waitroom/waiting.html" %}`` and override its blocks (``title``, ``head``,
    ``header``, ``waiting``, ``footer``).

    Args:
        prefix: the reserved route prefix the page script calls (``{prefix}/heartbeat``).
        template_path: an operator's Jinja2 file replacing the built-in waiting page.
        messages: extra or replacement strings per language, merged over :data:`MESSAGES`
            (a new language needs every key: missing ones fall back to English).
    """

    def __init__(
        self,
        *,
        prefix: str = "/_waitroom",
        template_path: str | None = None,
        messages: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self._prefix = prefix.rstrip("/")
        self._template_path = template_path
        loaders: dict[str, BaseLoader] = {_BUILTIN: _BuiltinLoader()}
        if template_path is not None:
            loaders[_OPERATOR] = FileSystemLoader(str(Path(template_path).parent))
        self._env = Environment(
            loader=PrefixLoader(loaders),
            # Every template here renders HTML, whatever its file name: always escape (a
            # ``*.jinja2`` or ``*.tpl`` operator template must not render visitor data raw).
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self._messages: dict[str, dict[str, str]] = {}
        for lang in {*MESSAGES, *(messages or {})}:
            merged = dict(MESSAGES["en"])
            merged.update(MESSAGES.get(lang, {}))
            merged.update((messages or {}).get(lang, {}))
            self._messages[lang] = merged
        waiting_name = (
            f"{_OPERATOR}/{Path(template_path).name}"
            if template_path is not None
            else f"{_BUILTIN}/waiting.html"
        )
        self._waiting: Template = self._env.get_template(waiting_name)
        self._error: Template = self._env.get_template(f"{_BUILTIN}/error.html")
        self._css = Markup(_builtin_source("waitroom.css"))  # noqa: S704 - our own file
        self._js = Markup(_builtin_source("waitroom.js"))  # noqa: S704 - our own file

    def __repr__(self) -> str:
        return f"PageRenderer(prefix={self._prefix!r}, template_path={self._template_path!r})"

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages the page can be rendered in."""
        return tuple(sorted(self._messages))

    def context(self, status: Mapping[str, Any], *, nonce: str, lang: str = "en") -> dict[str, Any]:
        """The template context for ``status`` (a JSON status; missing fields get defaults).

        Besides the JSON fields, templates get: ``prefix``, ``nonce``, ``lang``, ``t`` (the
        messages of ``lang``), ``title_text`` (the document title for the status),
        ``eta_text``, ``position_text``/``ahead_text``/``queue_text`` (formatted numbers),
        ``progress`` (0-100, from position and queue length),
        ``meta_refresh`` (whole seconds for the no-JS reload), ``return_to_safe``, ``css``,
        ``js`` and ``page_data`` (what the script reads).
        """
        language = _pick_language(lang, self._messages)
        t = self._messages[language]
        state = status.get("status")
        state = state if state in STATUSES else "waiting"
        room = status.get("room")
        room = room if isinstance(room, str) else ""
        position = _count(status.get("position"))
        ahead = _count(status.get("ahead"))
        if ahead is None and position is not None:
            ahead = max(0, position - 1)
        queue_length = _count(status.get("queue_length"))
        eta = status.get("eta_seconds")
        eta_seconds = (
            {"p50": _number(eta.get("p50")), "p90": _number(eta.get("p90"))}
            if isinstance(eta, Mapping)
            else None
        )
        refresh = _number(status.get("refresh_seconds"))
        refresh = refresh if refresh is not None and refresh > 0 else DEFAULT_REFRESH_SECONDS
        return_to = status.get("return_to")
        return_to = return_to if isinstance(return_to, str) else ""
        return_to_safe = is_safe_return_to(return_to)
        if state == "admitted":
            progress = 100
        elif position is not None and queue_length:
            # Without the script there is no first position to measure from: show how much
            # of the queue is behind the visitor.
            progress = round(100 * max(0.0, 1 - position / max(queue_length, position)))
        else:
            progress = 0
        fields = {
            "status": state,
            "room": room,
            "position": position,
            "ahead": ahead,
            "queue_length": queue_length,
            "eta_seconds": eta_seconds,
            "refresh_seconds": refresh,
            "return_to": return_to,
        }
        page_data = {**fields, "prefix": self._prefix, "lang": language, "messages": t}
        return {
            **fields,
            "prefix": self._prefix,
            "nonce": nonce,
            "lang": language,
            "t": t,
            "title_text": title_for(state, t),
            "eta_text": format_eta(eta_seconds, t),
            "position_text": _format_count(position, t),
            "ahead_text": _format_count(ahead, t),
            "queue_text": _format_count(queue_length, t),
            "progress": progress,
            "meta_refresh": max(1, math.ceil(refresh)),
            "return_to_safe": return_to_safe,
            "css": self._css,
            "js": self._js,
            "page_data": page_data,
        }

    def waiting_page(self, status: Mapping[str, Any], *, nonce: str, lang: str = "en") -> str:
        """The waiting page for ``status`` (the JSON status contract), as HTML.

        Args:
            status: the same mapping ``GET {prefix}/status`` returns; missing fields are fine.
            nonce: the CSP nonce of this response (see :func:`content_security_policy`).
            lang: a language tag; ``de-AT`` falls back to ``de``, unknown ones to English.
        """
        return self._waiting.render(self.context(status, nonce=nonce, lang=lang))

    def error_page(
        self,
        status_code: int,
        title: str,
        message: str,
        *,
        nonce: str | None = None,
        lang: str = "en",
        action_href: str = "",
        action: str = "error_retry",
    ) -> str:
        """A friendly error page (502, 504, 429…): no script, nothing external.

        Also the page of a plain outcome such as "You left" (a ``status_code`` below 400 shows
        no code badge).

        Args:
            nonce: if the response carries a CSP with a nonce, the style tag needs it.
            action_href: where the button goes; ``""`` reloads the page (right for an error
                answered to a GET, wrong after a POST: pass a same-site path then).
            action: the message key of the button's text (localised like the rest).
        """
        language = _pick_language(lang, self._messages)
        return self._error.render(
            status_code=status_code,
            title=title,
            message=message,
            nonce=nonce,
            lang=language,
            t=self._messages[language],
            css=self._css,
            action_href=action_href if is_safe_return_to(action_href) else "",
            action_label=self._messages[language][action],
        )

    def status_page(self, status_code: int, *, nonce: str | None = None, lang: str = "en") -> str:
        """The error page of an HTTP status (429, 500, 502, 503, 504), worded by
        ``asgi.response.ERROR_TEXTS``: what the proxy answers when it cannot do better."""
        title, message = error_text(status_code)
        return self.error_page(status_code, title, message, nonce=nonce, lang=lang)


@cache
def builtin_renderer() -> PageRenderer:
    """The built-in pages with the default prefix (parsed once, on first use)."""
    return PageRenderer()


def default_error_page(status: int, reason: str) -> bytes:
    """An ``ErrorPage`` (``(status, reason) -> HTML``) from the built-in renderer: the page of
    an ``UpstreamProxy`` given none, and the fallback when a custom one fails."""
    return builtin_renderer().status_page(status).encode()


def proxy_error_page(renderer: PageRenderer) -> Callable[[int, str], bytes]:
    """The ``ErrorPage`` of the proxy's 502/504 answers, from ``renderer`` (an operator's
    prefix and messages). ``reason`` is the status's reason phrase; the page says more."""

    def render(status: int, reason: str) -> bytes:
        return renderer.status_page(status).encode()

    return render


class Pages:
    """One renderer per operator template, the built-in one for the rest.

    Args:
        prefix: the reserved route prefix.
        templates: room name → operator template path (rooms without one are left out).
    """

    def __init__(self, prefix: str, templates: Mapping[str, str] | None = None) -> None:
        self.default = PageRenderer(prefix=prefix)
        self._by_room = {
            name: PageRenderer(prefix=prefix, template_path=path)
            for name, path in (templates or {}).items()
        }

    def __repr__(self) -> str:
        return f"Pages({self.default!r}, rooms={sorted(self._by_room)!r})"

    def for_room(self, name: str) -> PageRenderer:
        return self._by_room.get(name, self.default)
