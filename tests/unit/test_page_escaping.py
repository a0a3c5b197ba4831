"""The page renderer's defences: hostile values escaped, scripts and styles under the nonce, the
Content-Security-Policy and which return-to targets are safe."""

from __future__ import annotations

import pytest

from tests.unit.page_helpers import HOSTILE_RETURN, HOSTILE_ROOM, NONCE, page_data, parse, status
from waitroom_proxy.asgi.page import (
    PageRenderer,
    content_security_policy,
    is_safe_return_to,
    new_nonce,
)


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
