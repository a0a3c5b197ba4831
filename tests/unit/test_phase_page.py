"""The phase pages of a scheduled room (idle, pre-queue, ended): their own titles, the
visitor's language, the room's brand, the countdown's wording, and what reaches the HTML."""

from __future__ import annotations

import json
import re

import pytest

from waitroom_proxy.asgi.brand import Brand
from waitroom_proxy.asgi.messages import MESSAGES, countdown_text
from waitroom_proxy.asgi.page import Pages
from waitroom_proxy.asgi.phase_page import phase_page, phase_page_of

NONCE = "n0nce-for-tests"


@pytest.mark.parametrize(
    ("seconds", "en", "de"),
    [
        (0, "Starts in 0 s", "Beginnt in 0 Sek."),
        (9, "Starts in 9 s", "Beginnt in 9 Sek."),
        (250, "Starts in 4 min 10 s", "Beginnt in 4 Min. 10 Sek."),
        (7500, "Starts in 2 h 05 min", "Beginnt in 2 Std. 05 Min."),
        (-3, "Starts in 0 s", "Beginnt in 0 Sek."),
    ],
)
def test_countdown_wording(seconds: int, en: str, de: str) -> None:
    assert countdown_text(seconds, MESSAGES["en"]) == en
    assert countdown_text(seconds, MESSAGES["de"]) == de


@pytest.mark.parametrize(
    ("state", "title"),
    [("idle", "The sale has not started"), ("prequeue", "You are in the pre-queue"),
     ("ended", "The sale has ended")],
)  # fmt: skip
def test_each_phase_has_its_own_title(state: str, title: str) -> None:
    html = phase_page({"status": state, "seconds_to_change": 100}, nonce=NONCE)
    assert f"<title>{title}</title>" in html
    assert f'data-status="{state}"' in html
    if state == "ended":
        assert 'id="wr-countdown"' not in html and "http-equiv" not in html
    else:
        assert "Starts in 1 min 40 s" in html


def test_language_brand_and_escaping() -> None:
    pages = Pages("/_waitroom", brands={"sale": Brand(title="Shop <&>",
                                                       links=(("Hilfe", "/hilfe"),))})  # fmt: skip
    status = {"status": "prequeue", "seconds_to_change": 65, "refresh_seconds": 5,
              "commitment": "ab" * 32, "starts_at": "2030-01-01T10:00:00Z"}  # fmt: skip
    html = phase_page_of(pages, "sale", status, nonce=NONCE, accept_language="de-CH, en;q=0.5")
    assert '<html lang="de">' in html
    assert "<title>Sie sind in der Vorwarteschlange · Shop &lt;&amp;&gt;</title>" in html
    assert "Beginnt in 1 Min. 05 Sek." in html and "ab" * 32 in html
    assert '<a href="/hilfe"' in html
    assert '<time id="wr-when" datetime="2030-01-01T10:00:00Z">2030-01-01 10:00 UTC</time>' in html
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in html
    data = re.search(r'<script type="application/json" id="wr-phase-data"[^>]*>(.*?)</script>',
                     html, re.S)  # fmt: skip
    assert data is not None
    parsed = json.loads(data.group(1))
    assert parsed["left"] == 65 and parsed["refresh"] == 5
    assert parsed["formats"]["countdown_seconds"] == "Beginnt in {s} Sek."
    # Every script and style carries the nonce (the CSP allows nothing else).
    for tag in re.findall(r"<(?:script|style)\b[^>]*>", html):
        assert f'nonce="{NONCE}"' in tag, tag


def test_operator_strings_reach_the_phase_pages() -> None:
    pages = Pages("/_waitroom", messages={"en": {"idle_title": "Doors open soon"}})
    html = phase_page_of(pages, "sale", {"status": "idle"}, nonce=NONCE, accept_language=None)
    assert "<title>Doors open soon · sale</title>" in html


def test_a_hostile_status_cannot_break_out_of_the_script() -> None:
    pages = Pages("/_waitroom", messages={"en": {"countdown_seconds": "</script><b>{s}"}})
    html = phase_page_of(pages, "sale", {"status": "idle", "seconds_to_change": 3},
                         nonce=NONCE, accept_language=None)  # fmt: skip
    assert "</script><b>" not in html
