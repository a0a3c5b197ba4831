"""Operator templates for the waiting page: the fields they receive, extending the built-in page,
and failing at construction when broken or missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jinja2 import TemplateNotFound, TemplateSyntaxError

from tests.unit.page_helpers import FIELDS, HOSTILE_ROOM, NONCE, status
from waitroom_proxy.asgi import page as page_module
from waitroom_proxy.asgi.page import PageRenderer


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
