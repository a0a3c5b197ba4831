"""The waiting page and error page renderer: the status fields, sections per status, the
no-script refresh and the error page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.page_helpers import FIELDS, NONCE, page_data, parse, status
from waitroom_proxy.asgi.page import MESSAGES, PageRenderer, format_eta


def test_renders_the_status_fields(renderer: PageRenderer) -> None:
    html = renderer.waiting_page(status(queue_length=1200), nonce=NONCE)
    assert '<dd id="wr-position">12</dd>' in html
    assert '<dd id="wr-ahead">11</dd>' in html
    assert '<dd id="wr-queue">1,200</dd>' in html
    assert '<strong id="wr-eta">about 2–3 minutes</strong>' in html
    assert '<span id="wr-room">sale</span>' in html
    assert '<html lang="en">' in html
    assert 'aria-live="polite"' in html
    data = page_data(html)
    assert {k: data[k] for k in FIELDS} == {
        "status": "waiting",
        "room": "sale",
        "position": 12,
        "ahead": 11,
        "queue_length": 1200,
        "eta_seconds": {"p50": 90.0, "p90": 150.0},
        "refresh_seconds": 10.0,
        "return_to": "/checkout?x=1",
    }
    assert data["prefix"] == "/_waitroom"
    assert data["messages"]["leave"] == "Leave the queue"


def test_noscript_meta_refresh_is_in_head(renderer: PageRenderer) -> None:
    html = renderer.waiting_page(status(refresh_seconds=10), nonce=NONCE)
    head = html.split("</head>", 1)[0]
    assert '<noscript><meta http-equiv="refresh" content="10"></noscript>' in head


@pytest.mark.parametrize(("refresh", "meta"), [(0.2, "1"), (2.5, "3"), (0, "10"), ("x", "10")])
def test_meta_refresh_is_whole_seconds(renderer: PageRenderer, refresh: Any, meta: str) -> None:
    html = renderer.waiting_page(status(refresh_seconds=refresh), nonce=NONCE)
    assert f'<meta http-equiv="refresh" content="{meta}">' in html


def test_safe_return_to_is_the_continue_link(renderer: PageRenderer) -> None:
    html = renderer.waiting_page(status(status="admitted"), nonce=NONCE)
    assert 'id="wr-continue" href="/checkout?x=1"' in html


def test_prefix_reaches_the_form_and_the_script() -> None:
    html = PageRenderer(prefix="/queue/").waiting_page(status(), nonce=NONCE)
    assert 'action="/queue/leave"' in html
    assert page_data(html)["prefix"] == "/queue"


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"status": "waiting"},
        {"status": "mystery", "room": 5, "position": "12", "ahead": None},
        {"position": float("nan"), "queue_length": float("inf"), "eta_seconds": "soon"},
        {"position": True, "queue_length": -3, "eta_seconds": {"p50": "x"}},
        {"eta_seconds": {}, "return_to": None, "refresh_seconds": -1},
    ],
)
def test_missing_or_odd_fields_do_not_crash(renderer: PageRenderer, raw: dict[str, Any]) -> None:
    html = renderer.waiting_page(raw, nonce=NONCE)
    assert '<dd id="wr-position">—</dd>' in html
    assert "calculating…" in html
    assert 'data-status="waiting"' in html
    data = page_data(html)
    assert set(FIELDS) <= set(data)


def test_ahead_defaults_to_position_minus_one(renderer: PageRenderer) -> None:
    html = renderer.waiting_page({"position": 5}, nonce=NONCE)
    assert '<dd id="wr-ahead">4</dd>' in html


@pytest.mark.parametrize(
    ("state", "visible"),
    [
        ("waiting", "wr-waiting"),
        ("admitted", "wr-admitted"),
        ("expired", "wr-expired"),
        ("used", "wr-used"),
        ("rejected", "wr-rejected"),
        ("full", "wr-full"),
    ],
)
def test_one_section_per_status(renderer: PageRenderer, state: str, visible: str) -> None:
    tags = parse(renderer.waiting_page(status(status=state), nonce=NONCE))
    sections = {a["id"]: "hidden" in a for tag, a in tags.tags if tag == "section"}
    assert [sid for sid, hidden in sections.items() if not hidden] == [visible]


@pytest.mark.parametrize(
    ("raw", "progress"),
    [
        ({"position": 42, "first_position": 100, "queue_length": 1200}, 58),
        # Joining at the front: half a bar, never an empty one (0.1 showed 0 %).
        ({"position": 1, "queue_length": 1}, 50),
        ({"position": 1, "first_position": 1, "queue_length": 1}, 50),
        ({"position": 50, "first_position": 10, "queue_length": 60}, 1),
        ({"position": 42}, 2),
        ({"status": "expired", "position": 3, "first_position": 9}, 0),
        ({"status": "admitted"}, 100),
    ],
)
def test_static_progress_without_script(
    renderer: PageRenderer, raw: dict[str, Any], progress: int
) -> None:
    html = renderer.waiting_page(raw, nonce=NONCE)
    assert f'<progress id="wr-progress" max="100" value="{progress}">' in html


def test_error_page(renderer: PageRenderer) -> None:
    html = renderer.error_page(502, "Bad gateway <b>", "The site <i>is</i> not answering.")
    assert '<p class="code">502</p>' in html
    assert "<title>Bad gateway &lt;b&gt;</title>" in html
    assert "The site &lt;i&gt;is&lt;/i&gt; not answering." in html
    tags = parse(html)
    assert not any(tag == "script" for tag, _ in tags.tags)
    assert not any("src" in attrs or "style" in attrs for _, attrs in tags.tags)
    assert ("style", {}) in tags.tags
    with_nonce = renderer.error_page(504, "Timeout", "Slow.", nonce=NONCE)
    assert f'<style nonce="{NONCE}">' in with_nonce
    assert "Erneut versuchen" in renderer.error_page(429, "Zu viele", "Später.", lang="de")


@pytest.mark.parametrize(
    ("eta", "text"),
    [
        (None, "calculating…"),
        ({}, "calculating…"),
        ({"p50": None, "p90": None}, "calculating…"),
        ({"p50": 10, "p90": 59}, "less than a minute"),
        ({"p50": 60, "p90": 60}, "about 1 minute"),
        ({"p50": 60, "p90": 61}, "about 1–2 minutes"),
        ({"p50": 90, "p90": 150}, "about 2–3 minutes"),
        ({"p50": 180, "p90": 300}, "about 3–5 minutes"),
        ({"p50": 600, "p90": 600}, "about 10 minutes"),
        ({"p50": 300, "p90": 120}, "about 5 minutes"),
        ({"p50": None, "p90": 200}, "about 3–4 minutes"),
        ({"p50": 5400, "p90": 5400}, "about 2 hours"),
        ({"p50": 3 * 3600, "p90": 5 * 3600}, "about 3–5 hours"),
        ({"p50": -5, "p90": -1}, "less than a minute"),
    ],
)
def test_format_eta(eta: Any, text: str) -> None:
    assert format_eta(eta, MESSAGES["en"]) == text


def test_repr_names_the_settings() -> None:
    assert repr(PageRenderer()) == "PageRenderer(prefix='/_waitroom', template_path=None)"
