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

import logging
import math
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    PrefixLoader,
    StrictUndefined,
    Template,
)
from markupsafe import Markup

from waitroom_proxy.asgi.brand import Brand
from waitroom_proxy.asgi.messages import (
    MESSAGES,
    count,
    format_count,
    format_eta,
    negotiate,
    number,
    pick_language,
    title_for,
)
from waitroom_proxy.asgi.page_sources import (
    BuiltinLoader,
    content_security_policy,
    new_nonce,
    pow_worker_source,
)
from waitroom_proxy.asgi.page_sources import builtin_source as _builtin_source
from waitroom_proxy.asgi.response import error_text
from waitroom_proxy.domain.progress import progress_percent
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
    "pow_worker_source",
    "proxy_error_page",
    "title_for",
]

log = logging.getLogger(__name__)

STATUSES = ("waiting", "challenge", "admitted", "expired", "used", "rejected", "full")

DEFAULT_REFRESH_SECONDS = 10.0
_BUILTIN = "waitroom"
_OPERATOR = "operator"


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
        loaders: dict[str, BaseLoader] = {_BUILTIN: BuiltinLoader()}
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
        for lang, table in (messages or {}).items():
            unknown = sorted(set(table) - set(MESSAGES["en"]))
            if unknown:
                log.warning("page messages [%s]: unknown keys ignored: %s", lang, unknown)
        self._messages: dict[str, dict[str, str]] = {}
        for lang in {*MESSAGES, *(messages or {})}:
            merged = dict(MESSAGES["en"])
            merged.update(MESSAGES.get(lang, {}))
            extra = (messages or {}).get(lang, {})
            merged.update({k: v for k, v in extra.items() if k in MESSAGES["en"]})
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

    @property
    def messages(self) -> Mapping[str, Mapping[str, str]]:
        """The strings of every language (English filled in where one lacks a key)."""
        return self._messages

    def context(
        self,
        status: Mapping[str, Any],
        *,
        nonce: str,
        lang: str = "en",
        brand: Brand | None = None,
    ) -> dict[str, Any]:
        """The template context for ``status`` (a JSON status; missing fields get defaults).

        Besides the JSON fields, templates get: ``prefix``, ``nonce``, ``lang``, ``t`` (the
        messages of ``lang``), ``title_text`` (the document title for the status),
        ``eta_text``, ``position_text``/``ahead_text``/``queue_text`` (formatted numbers),
        ``progress`` (0-100: ``domain.progress`` from ``first_position`` and ``position``),
        ``message`` (the room's notice to waiters, or None),
        ``meta_refresh`` (whole seconds for the no-JS reload), ``return_to_safe``, ``css``,
        ``js``, ``page_data`` (what the script reads), ``brand`` (the operator's title, logo,
        colours and links: :class:`~waitroom_proxy.asgi.brand.Brand`) and ``title_suffix``
        (the brand's title, else the room name).
        """
        brand = brand if brand is not None else Brand()
        language = pick_language(lang, self._messages)
        t = self._messages[language]
        state = status.get("status")
        state = state if state in STATUSES else "waiting"
        room = status.get("room")
        room = room if isinstance(room, str) else ""
        position = count(status.get("position"))
        ahead = count(status.get("ahead"))
        if ahead is None and position is not None:
            ahead = max(0, position - 1)
        queue_length = count(status.get("queue_length"))
        eta = status.get("eta_seconds")
        eta_seconds = (
            {"p50": number(eta.get("p50")), "p90": number(eta.get("p90"))}
            if isinstance(eta, Mapping)
            else None
        )
        refresh = number(status.get("refresh_seconds"))
        refresh = refresh if refresh is not None and refresh > 0 else DEFAULT_REFRESH_SECONDS
        return_to = status.get("return_to")
        return_to = return_to if isinstance(return_to, str) else ""
        return_to_safe = is_safe_return_to(return_to)
        # The one formula (domain.progress), from the position at joining that the ticket
        # carries: the script computes the same from the same fields (waitroom.js).
        first = count(status.get("first_position")) or None
        progress = progress_percent(
            first, position if state == "waiting" else None, admitted=state == "admitted"
        )
        message = status.get("message")
        message = message if isinstance(message, str) and message.strip() else None
        fields = {
            "status": state,
            "room": room,
            "position": position,
            "ahead": ahead,
            "queue_length": queue_length,
            "eta_seconds": eta_seconds,
            "refresh_seconds": refresh,
            "return_to": return_to,
            "first_position": first,
            "message": message,
        }
        pow_ = status.get("pow")
        if isinstance(pow_, Mapping) and state == "challenge":
            # What the page's worker solves: the challenge as the server issued it.
            fields["pow"] = {
                "challenge": str(pow_.get("challenge", "")),
                "difficulty": count(pow_.get("difficulty")) or 0,
            }
        title_suffix = brand.title or room
        page_data = {**fields, "prefix": self._prefix, "lang": language, "messages": t,
                     "title_suffix": title_suffix}  # fmt: skip
        return {
            **fields,
            "prefix": self._prefix,
            "nonce": nonce,
            "lang": language,
            "t": t,
            "title_text": title_for(state, t),
            "eta_text": format_eta(eta_seconds, t),
            "position_text": format_count(position, t),
            "ahead_text": format_count(ahead, t),
            "queue_text": format_count(queue_length, t),
            "progress": progress,
            "meta_refresh": max(1, math.ceil(refresh)),
            "return_to_safe": return_to_safe,
            "css": self._css,
            "js": self._js,
            "page_data": page_data,
            "brand": brand,
            "title_suffix": title_suffix,
        }

    def waiting_page(
        self,
        status: Mapping[str, Any],
        *,
        nonce: str,
        lang: str = "en",
        brand: Brand | None = None,
    ) -> str:
        """The waiting page for ``status`` (the JSON status contract), as HTML.

        Args:
            status: the same mapping ``GET {prefix}/status`` returns; missing fields are fine.
            nonce: the CSP nonce of this response (see :func:`content_security_policy`).
            lang: a language tag; ``de-AT`` falls back to ``de``, unknown ones to English.
            brand: the room's brand (none: the built-in look).
        """
        return self._waiting.render(self.context(status, nonce=nonce, lang=lang, brand=brand))

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
        language = pick_language(lang, self._messages)
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
    """One renderer per operator template, the built-in one for the rest, and each room's
    brand.

    Args:
        prefix: the reserved route prefix.
        templates: room name → operator template path (rooms without one are left out).
        brands: room name → its brand (rooms without one get the built-in look).
        messages: extra languages or replaced strings (``PageRenderer``'s ``messages``).
    """

    def __init__(
        self,
        prefix: str,
        templates: Mapping[str, str] | None = None,
        *,
        brands: Mapping[str, Brand] | None = None,
        messages: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.default = PageRenderer(prefix=prefix, messages=messages)
        self._by_room = {
            name: PageRenderer(prefix=prefix, template_path=path, messages=messages)
            for name, path in (templates or {}).items()
        }
        self._brands = dict(brands or {})

    def __repr__(self) -> str:
        return f"Pages({self.default!r}, rooms={sorted(self._by_room)!r})"

    def for_room(self, name: str) -> PageRenderer:
        return self._by_room.get(name, self.default)

    def brand_for(self, name: str) -> Brand | None:
        return self._brands.get(name)

    def waiting(
        self, room: str, status: Mapping[str, Any], *, nonce: str, accept_language: str | None
    ) -> str:
        """The waiting page of ``room`` in the visitor's language (``Accept-Language``)."""
        renderer = self.for_room(room)
        lang = negotiate(accept_language, renderer.messages)
        return renderer.waiting_page(status, nonce=nonce, lang=lang, brand=self.brand_for(room))
