"""The waiting page and error page renderer: escaping, context, overrides, CSP."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from jinja2 import TemplateNotFound, TemplateSyntaxError

from waitroom_proxy.asgi import page as page_module
from waitroom_proxy.asgi.page import (
    MESSAGES,
    PageRenderer,
    content_security_policy,
    format_eta,
    is_safe_return_to,
    new_nonce,
)

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
            return json.loads(text)
    raise AssertionError("no page data block")


@pytest.fixture(scope="module")
def renderer() -> PageRenderer:
    return PageRenderer()


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


def test_hostile_room_and_return_to_are_escaped(renderer: PageRenderer) -> None:
    html = renderer.waiting_page(
        status(room=HOSTILE_ROOM, return_to=HOSTILE_RETURN, status="admitted"), nonce=NONCE
    )
    assert HOSTILE_ROOM not in html
    assert "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    tags = parse(html)
    # Only our two script blocks; the hostile name never opens a tag or an attribute.
    assert [attrs.get("id") for attrs, _ in tags.scripts] == ["wr-data", None]
    assert not any(name.startswith("on") for _, attrs in tags.tags for name in attrs)
    # The JSON block cannot be closed early and round-trips to the original values.
    data_text = next(text for attrs, text in tags.scripts if attrs.get("id") == "wr-data")
    assert "</" not in data_text and "<" not in data_text
    data = page_data(html)
    assert data["room"] == HOSTILE_ROOM
    assert data["return_to"] == HOSTILE_RETURN
    # An unsafe return_to is not offered as the continue link.
    continue_link = next(a for tag, a in tags.tags if tag == "a" and a.get("id") == "wr-continue")
    assert continue_link["href"] == ""


def test_hostile_title_in_head_is_escaped(renderer: PageRenderer) -> None:
    html = renderer.waiting_page(status(room="</title><script>x()</script>"), nonce=NONCE)
    title = "<title>You’re in the queue · &lt;/title&gt;&lt;script&gt;x()&lt;/script&gt;</title>"
    assert title in html


def test_safe_return_to_is_the_continue_link(renderer: PageRenderer) -> None:
    html = renderer.waiting_page(status(status="admitted"), nonce=NONCE)
    assert 'id="wr-continue" href="/checkout?x=1"' in html


def test_every_script_and_style_carries_the_nonce_and_nothing_is_external(
    renderer: PageRenderer,
) -> None:
    html = renderer.waiting_page(status(), nonce=NONCE)
    tags = parse(html)
    for tag, attrs in tags.tags:
        assert "style" not in attrs, f"inline style attribute on <{tag}> breaks under the CSP"
        assert not any(name.startswith("on") for name in attrs), f"inline handler on <{tag}>"
        assert "src" not in attrs, f"<{tag}> loads a resource"
        if tag in ("style",) or (tag == "script" and attrs.get("type") != "application/json"):
            assert attrs.get("nonce") == NONCE
        if tag == "link":
            assert attrs == {"rel": "icon", "href": "data:,"}
        if tag == "a":
            assert attrs["href"] in ("", "/checkout?x=1")
        if tag == "form":
            assert attrs["action"] == "/_waitroom/leave"
    assert sum(1 for tag, _ in tags.tags if tag == "style") == 1
    assert sum(1 for tag, _ in tags.tags if tag == "script") == 2


def test_the_script_only_writes_text(renderer: PageRenderer) -> None:
    js = renderer.context(status(), nonce=NONCE)["js"]
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js


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


def test_operator_template_receives_the_same_fields(tmp_path: Path) -> None:
    template = tmp_path / "mine.html"
    template.write_text(
        "".join(f"{key}={{{{ {key} | tojson }}}}\n" for key in FIELDS)
        + "nonce={{ nonce }} prefix={{ prefix }} eta={{ eta_text }} lang={{ lang }} "
        + "leave={{ t.leave }} hostile={{ room }}",
        encoding="utf-8",
    )
    raw = status(room=HOSTILE_ROOM)
    out = PageRenderer(template_path=str(template)).waiting_page(raw, nonce=NONCE, lang="de")
    lines = dict(line.split("=", 1) for line in out.splitlines()[: len(FIELDS)])
    assert {key: json.loads(value) for key, value in lines.items()} == {
        key: raw[key] for key in FIELDS
    }
    assert f"nonce={NONCE} prefix=/_waitroom eta=etwa 2–3 Minuten lang=de" in out
    assert "leave=Warteschlange verlassen" in out
    assert "hostile=&lt;script&gt;" in out  # autoescape is on for operator .html files too


def test_operator_template_gets_defaults_for_missing_fields(tmp_path: Path) -> None:
    template = tmp_path / "plain.html"
    template.write_text(
        "{{ status }} {{ room }} {{ position }} {{ ahead }} {{ queue_length }} "
        "{{ eta_seconds }} {{ refresh_seconds }} [{{ return_to }}]",
        encoding="utf-8",
    )
    rendered = PageRenderer(template_path=str(template)).waiting_page({}, nonce=NONCE)
    assert rendered == "waiting  None None None None 10.0 []"


def test_operator_template_can_extend_the_built_in_page(tmp_path: Path) -> None:
    template = tmp_path / "waiting.html"  # same name as the built-in: no clash
    template.write_text(
        '{% extends "waitroom/waiting.html" %}'
        '{% block header %}<p id="brand">ACME tickets: {{ room }}</p>{% endblock %}',
        encoding="utf-8",
    )
    html = PageRenderer(template_path=str(template)).waiting_page(status(), nonce=NONCE)
    assert '<p id="brand">ACME tickets: sale</p>' in html
    assert '<dd id="wr-position">12</dd>' in html
    assert f'<script nonce="{NONCE}">' in html


def test_broken_operator_template_fails_at_construction(tmp_path: Path) -> None:
    template = tmp_path / "broken.html"
    template.write_text("{% if %}", encoding="utf-8")
    with pytest.raises(TemplateSyntaxError):
        PageRenderer(template_path=str(template))


def test_missing_operator_template_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(TemplateNotFound):
        PageRenderer(template_path=str(tmp_path / "nope.html"))


def test_built_in_loader_refuses_paths() -> None:
    for name in ("../pyproject.toml", "sub/waiting.html", ".hidden"):
        with pytest.raises(TemplateNotFound):
            page_module._builtin_source(name)


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


def test_content_security_policy() -> None:
    policy = content_security_policy(NONCE)
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives == {
        "default-src": "'none'",
        "script-src": f"'nonce-{NONCE}'",
        "style-src": f"'nonce-{NONCE}'",
        "connect-src": "'self'",
        "img-src": "data:",
        "worker-src": "'self'",  # the proof-of-work worker, served under the prefix
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }


@pytest.mark.parametrize("bad", ["", "short", "abc def ghi", "abcdefgh;script-src *", "a\r\nb" * 4])
def test_content_security_policy_refuses_odd_nonces(bad: str) -> None:
    with pytest.raises(ValueError):
        content_security_policy(bad)


def test_new_nonce() -> None:
    nonces = {new_nonce() for _ in range(50)}
    assert len(nonces) == 50
    for nonce in nonces:
        assert nonce in content_security_policy(nonce)


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


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("/", True),
        ("/checkout?x=1", True),
        ("/a//b", True),
        ("//evil.example", False),
        ("/\\evil.example", False),
        ("/\t/evil.example", False),
        ("/\n/evil.example", False),
        # One rule with the redirect after admission (domain.rules): whitespace, backslashes
        # and a final newline are refused on the page too.
        ("/a b", False),
        ("/a\\b", False),
        ("/sale\n", False),
        ("https://evil.example/", False),
        ("javascript:alert(1)", False),
        ("", False),
        (None, False),
        (42, False),
    ],
)
def test_is_safe_return_to(value: object, safe: bool) -> None:
    assert is_safe_return_to(value) is safe


def test_repr_names_the_settings() -> None:
    assert repr(PageRenderer()) == "PageRenderer(prefix='/_waitroom', template_path=None)"
