"""Shared by the page renderer tests: the page fields, hostile values, a status body and an HTML
parser for tags, scripts and the page data block."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

NONCE = "n0nce-Abc_123xyz"

FIELDS = (
    "status",
    "room",
    "position",
    "ahead",
    "queue_length",
    "eta_seconds",
    "refresh_seconds",
    "return_to",
)

HOSTILE_ROOM = "<script>alert(1)</script>"

HOSTILE_RETURN = '"><img src=x onerror=alert(1)>'


def status(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "waiting",
        "room": "sale",
        "position": 12,
        "ahead": 11,
        "queue_length": 340,
        "eta_seconds": {"p50": 90, "p90": 150},
        "refresh_seconds": 10,
        "return_to": "/checkout?x=1",
        "cfWaitingRoom": {"inWaitingRoom": True},
    }
    body.update(overrides)
    return body


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of script blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def parse(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    tags.close()
    return tags


def page_data(html: str) -> dict[str, Any]:
    for attrs, text in parse(html).scripts:
        if attrs.get("id") == "wr-data":
            data: dict[str, Any] = json.loads(text)
            return data
    raise AssertionError("no page data block")
