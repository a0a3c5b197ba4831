"""The page's brand, language negotiation and page settings: what reaches HTML or CSS is
checked (by the config loader, and again by the renderer for hand-built settings)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from waitroom_proxy.asgi.brand import Brand
from waitroom_proxy.asgi.messages import MESSAGES, negotiate
from waitroom_proxy.asgi.page import PageRenderer
from waitroom_proxy.config import load_settings
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.errors import ConfigError

LOGO = Path(__file__).resolve().parents[2] / "examples" / "logo.svg"


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        ("de-AT,de;q=0.9,en;q=0.8", "de"),
        ("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", "en"),
        ("en;q=0.1, de", "de"),
        ("de;q=0, en", "en"),
        ("xx;q=abc, de", "de"),
        ("*", "en"),
        ("", "en"),
        (None, "en"),
        ("de" + ",x" * 5000, "de"),
        ("<script>", "en"),
    ],
)
def test_accept_language(header: str | None, lang: str) -> None:
    assert negotiate(header, MESSAGES) == lang


def test_hand_built_brand_values_that_could_inject_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = RoomPolicy(
        name="r",
        capacity=1,
        page_accent="red;}body{display:none",
        page_background="#abc",
        page_links=(("x", "javascript:alert(1)"), ("ok", "/help"), ("y", "//evil.example")),
        page_logo="/nonexistent/logo.png",
    )
    with caplog.at_level(logging.WARNING):
        brand = Brand.of(policy)
    assert "display" not in brand.css and "--bg:#abc" in brand.css
    assert brand.links == (("ok", "/help"),)
    assert brand.logo is None
    assert len(caplog.records) == 4


def test_branded_page_escapes_title_and_links() -> None:
    brand = Brand.of(
        RoomPolicy(
            name="r",
            capacity=1,
            page_title='<img src=x onerror="1">',
            page_links=(("<b>", "https://example.com/?a=1&b=2"),),
            page_logo=str(LOGO),
        )
    )
    html = PageRenderer().waiting_page({"status": "waiting", "room": "r"}, nonce="n" * 16,
                                       brand=brand)  # fmt: skip
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert 'href="https://example.com/?a=1&amp;b=2"' in html and "&lt;b&gt;</a>" in html
    assert 'src="data:image/svg+xml;base64,' in html


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "waitroom.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('page_accent = "red"', 'rooms[0].page_accent: must be a colour like "#1a73e8"'),
        ('page_text = "#12345"', "rooms[0].page_text: must be a colour"),
        ("message = 3", "rooms[0].message: must be a string"),
        (f'message = "{"x" * 501}"', "rooms[0].message: must be at most 500 characters"),
        ('page_title = "a\\u0007b"', "rooms[0].page_title: must not contain control characters"),
        ('page_logo = "waitroom.toml"', "rooms[0].page_logo: must be a .gif, .jpeg"),
        ('page_links = [{label = "x", href = "javascript:1"}]', "[0].href must be an http(s)"),
        ('page_links = [{label = "x"}]', "[0] must be a table"),
        ("pow_difficulty = 41", "rooms[0].pow_difficulty: must be an integer 0-40"),
    ],
)
def test_page_settings_refused_precisely(tmp_path: Path, line: str, problem: str) -> None:
    path = write(tmp_path, f'[[rooms]]\nname = "r"\ncapacity = 1\n{line}\n')
    with pytest.raises(ConfigError) as err:
        load_settings(str(path), env={})
    assert problem in str(err.value), str(err.value)


def test_page_messages_file_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "m.toml"
    bad.write_text('[FR]\npage_title = "x"\n', encoding="utf-8")
    path = write(
        tmp_path, f'[server]\npage_messages = "{bad}"\n[[rooms]]\nname = "r"\ncapacity = 1\n'
    )
    with pytest.raises(ConfigError, match=r"server.page_messages: \[FR\] must be a lower-case"):
        load_settings(str(path), env={})
    bad.write_text("[fr]\npage_title = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[fr\] must be a table of strings"):
        load_settings(str(path), env={})
