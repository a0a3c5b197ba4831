"""The operator's brand on the waiting page: title, logo, colours and links from a room's
settings (``page_title``, ``page_logo``, ``page_accent``, ``page_background``, ``page_text``,
``page_links``), without a custom template.

The page still loads nothing: the logo is read once, at start-up, and inlined as a ``data:``
URI (the CSP's ``img-src data:``); the colours become CSS custom properties in the page's own
nonce'd style tag. The config loader checks every value, but a host app may build settings by
hand, so what reaches HTML or CSS is checked again here (a colour that is not ``#rgb`` or
``#rrggbb``, a link that is not http(s) or a same-site path, are dropped with a warning); text
is escaped by the template like everything else.
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup

from waitroom_proxy.domain.policy import RoomPolicy

log = logging.getLogger(__name__)

_COLOUR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_HREF_RE = re.compile(r"^(?:https?://[^\s\"'<>\\]+|/(?![/\\])[^\s\"'<>\\]*)$")
_LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".webp": "image/webp", ".svg": "image/svg+xml"}  # fmt: skip
_MAX_LOGO = 65_536
_NO_CSS = Markup("")
_LIGHT = (
    "color-scheme:light",
    "--bg:#eef2f8",
    "--bg-2:#f8fafc",
    "--card:#ffffff",
    "--text:#17202c",
    "--muted:#4a5566",
    "--line:#d9e0ea",
    "--accent:#2a55c9",
    "--accent-soft:#e3eafb",
    "--good:#1d7a46",
    "--warn:#8a5a00",
    "--warn-soft:#fff4d6",
)
"""The built-in light palette (``waitroom.css``), under an operator's colours."""


@dataclass(frozen=True, slots=True)
class Brand:
    """What the template shows of the operator's brand (all optional)."""

    title: str | None = None
    logo: str | None = None
    """A ``data:`` URI."""
    css: Markup = _NO_CSS
    """Custom properties overriding the built-in palette, in light and dark schemes."""
    links: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, policy: RoomPolicy) -> Brand:
        """The brand of a room (reads the logo file: call it at start-up)."""
        colours = {
            "accent": _colour(policy.name, "page_accent", policy.page_accent),
            "bg": _colour(policy.name, "page_background", policy.page_background),
            "text": _colour(policy.name, "page_text", policy.page_text),
        }
        links = tuple(
            (label, href) for label, href in policy.page_links if _link_ok(policy.name, label, href)
        )
        return cls(policy.page_title, _logo(policy.name, policy.page_logo), _css(colours), links)


def _colour(room: str, key: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not _COLOUR_RE.match(value):
        log.warning("room %s: %s is not a colour like #1a73e8; ignored", room, key)
        return None
    return value.lower()


def _link_ok(room: str, label: str, href: str) -> bool:
    if label.strip() and _HREF_RE.match(href):
        return True
    log.warning("room %s: page_links entry %r is not an http(s) URL or a path; ignored", room, href)
    return False


def _logo(room: str, path: str | None) -> str | None:
    if path is None:
        return None
    file = Path(path)
    kind = _LOGO_TYPES.get(file.suffix.lower())
    try:
        data = file.read_bytes() if kind is not None else b""
    except OSError as exc:
        log.warning("room %s: page_logo %s unreadable (%s); no logo", room, path, exc)
        return None
    if kind is None or not data or len(data) > _MAX_LOGO:
        log.warning("room %s: page_logo %s is not an image of at most 64 KiB; no logo", room, path)
        return None
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def _css(colours: dict[str, str | None]) -> Markup:
    """Custom properties from checked colours (nothing else reaches the style tag)."""
    rules: list[str] = []
    accent, bg, text = colours["accent"], colours["bg"], colours["text"]
    if accent:
        soft = f"color-mix(in srgb,{accent} 14%,var(--card))"
        rules += [f"--accent:{accent}", f"--accent-soft:{soft}"]
    if bg:
        rules += [f"--bg:{bg}", f"--bg-2:{bg}"]
    if text:
        rules += [f"--text:{text}", f"--muted:color-mix(in srgb,{text} 75%,var(--card))"]
    if not rules:
        return _NO_CSS
    # An operator's palette is drawn for a light page: keep the built-in light surfaces under
    # it in both schemes (the dark palette would put dark cards under the operator's text).
    body = ";".join([*_LIGHT, *rules])
    css = f":root{{{body}}}@media (prefers-color-scheme: dark){{:root{{{body}}}}}"
    return Markup(css)  # noqa: S704 - built from colours matched by _COLOUR_RE only
