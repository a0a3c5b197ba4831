"""The value types of the waiting page's settings: the live message to waiters and the
operator's branding (title, logo, colours, links). Each refuses with a precise message, like
the other types of ``config.values``; the renderer then trusts them (and still escapes text).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import ValidationInfo

from waitroom_proxy.config.network import _existing_file
from waitroom_proxy.config.problems import refuse, show
from waitroom_proxy.config.values import Check

MAX_MESSAGE = 500
"""Characters of the message to waiters: a notice, not a page."""
MAX_TITLE = 120
MAX_LOGO_BYTES = 65_536
"""The logo is inlined in every page (the page loads nothing): keep it small."""
MAX_LINKS = 8
LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
              ".gif": "image/gif", ".webp": "image/webp", ".svg": "image/svg+xml"}  # fmt: skip
_COLOUR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_HREF_RE = re.compile(r"^(?:https?://[^\s\"'<>\\]+|/(?![/\\])[^\s\"'<>\\]*)$")


def _plain_text(value: Any, limit: int, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        refuse(f"must be a string ({what}), got {show(value)}")
    text = value.strip()
    if _CONTROL_RE.search(text):
        refuse(f"must not contain control characters, got {show(value)}")
    if len(text) > limit:
        refuse(f"must be at most {limit} characters, got {len(text)}")
    return text or None


def _message(value: Any) -> str | None:
    return _plain_text(value, MAX_MESSAGE, "an empty string clears it")


def _title(value: Any) -> str | None:
    return _plain_text(value, MAX_TITLE, "the page's title")


def _colour(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _COLOUR_RE.match(value.strip()):
        refuse(f'must be a colour like "#1a73e8" or "#fff", got {show(value)}')
    return value.strip().lower()


def _logo(value: Any, info: ValidationInfo) -> str | None:
    if value is None:
        return None
    path = Path(_existing_file(value, info))
    kind = LOGO_TYPES.get(path.suffix.lower())
    if kind is None:
        refuse(f"must be a {', '.join(sorted(LOGO_TYPES))} file, got {show(value)}")
    size = path.stat().st_size
    if size > MAX_LOGO_BYTES:
        refuse(f"must be at most {MAX_LOGO_BYTES} bytes (it is inlined), got {size}")
    return str(path)


def _links(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list | tuple):
        refuse(f'must be an array of {{label = "...", href = "..."}} tables, got {show(value)}')
    if len(value) > MAX_LINKS:
        refuse(f"must have at most {MAX_LINKS} links, got {len(value)}")
    out: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        if isinstance(item, list | tuple) and len(item) == 2:
            item = {"label": item[0], "href": item[1]}  # the stored shape, read back
        if not isinstance(item, dict) or set(item) != {"label", "href"}:
            refuse(f'[{i}] must be a table {{label = "...", href = "..."}}, got {show(item)}')
        label = _plain_text(item["label"], 60, "the link's text")
        href = item["href"]
        if not label:
            refuse(f"[{i}].label must be a non-empty string")
        if not isinstance(href, str) or not _HREF_RE.match(href.strip()):
            refuse(f"[{i}].href must be an http(s) URL or a same-site path, got {show(href)}")
        out.append((label, href.strip()))
    return tuple(out)


_LANG_RE = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{2,8})*$")


def _messages_file(value: Any, info: ValidationInfo) -> str | None:
    """A TOML file of page strings: one table per language tag, string values."""
    if value is None:
        return None
    path = _existing_file(value, info)
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        refuse(f"not a readable TOML file {show(value)} ({exc})")
    for lang, table in data.items():
        if not _LANG_RE.match(lang):
            refuse(f'[{lang}] must be a lower-case language tag such as "fr" or "pt-br"')
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            refuse(f"[{lang}] must be a table of strings (message key = text)")
    return path


def read_messages(path: str | None) -> dict[str, dict[str, str]]:
    """The languages of a checked ``page_messages`` file ({} without one)."""
    if path is None:
        return {}
    data = tomllib.loads(Path(path).read_text("utf-8"))
    return {lang: dict(table) for lang, table in data.items()}


PageMessages = Annotated[str | None, Check(_messages_file, "a TOML file of page strings")]
PageMessage = Annotated[
    str | None, Check(_message, f"at most {MAX_MESSAGE} characters", max_length=MAX_MESSAGE)
]
PageTitle = Annotated[
    str | None, Check(_title, f"at most {MAX_TITLE} characters", max_length=MAX_TITLE)
]
Colour = Annotated[str | None, Check(_colour, 'a colour like "#1a73e8"')]
Logo = Annotated[str | None, Check(_logo, "an image file")]
Links = Annotated[tuple[tuple[str, str], ...], Check(_links, "an array of links")]
