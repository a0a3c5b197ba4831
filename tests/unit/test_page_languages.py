"""The page renderer's languages: the choice, complete message tables and operator messages."""

from __future__ import annotations

import re

import pytest

from tests.unit.page_helpers import NONCE, status
from waitroom_proxy.asgi.page import MESSAGES, PageRenderer


@pytest.mark.parametrize(
    ("lang", "expected"), [("de", "de"), ("de-AT", "de"), ("DE_ch", "de"), ("fr", "en"), ("", "en")]
)
def test_language_choice(renderer: PageRenderer, lang: str, expected: str) -> None:
    html = renderer.waiting_page(status(queue_length=1200), nonce=NONCE, lang=lang)
    assert f'<html lang="{expected}">' in html
    if expected == "de":
        assert "Ihr Platz" in html
        assert '<dd id="wr-queue">1.200</dd>' in html
        assert "etwa 2–3 Minuten" in html


def test_every_language_has_every_message() -> None:
    for lang, messages in MESSAGES.items():
        assert set(messages) == set(MESSAGES["en"]), lang
        for key, text in messages.items():
            placeholders = set(re.findall(r"\{(\w+)\}", text))
            assert placeholders == set(re.findall(r"\{(\w+)\}", MESSAGES["en"][key])), key


def test_operator_messages_override_and_add_languages() -> None:
    renderer = PageRenderer(
        messages={"en": {"leave": "Give up my place"}, "nl": {"waiting_heading": "In de rij"}}
    )
    assert "Give up my place" in renderer.waiting_page(status(), nonce=NONCE)
    dutch = renderer.waiting_page(status(), nonce=NONCE, lang="nl")
    assert "In de rij" in dutch
    assert "Leave the queue" in dutch  # missing keys fall back to English
    assert "nl" in renderer.languages
