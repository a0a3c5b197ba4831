"""The waiting page in headless Chromium with hostile values: a room name and return-to render as
text, and a foreign return-to never navigates (server: ``tests/e2e/scripted_page.py``)."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.e2e.scripted_page import BackgroundServer, ScriptedRoom, assert_clean, status


async def test_hostile_room_name_and_return_to_render_as_text(
    page: Page, room: ScriptedRoom, server: BackgroundServer, requests_seen: list[str]
) -> None:
    hostile = (
        '</script><script>window.__xss=1</script>"><img src=/x1 onerror="window.__xss=2">'
        "<svg onload=window.__xss=3>'--!>"
    )
    room.initial = status(room=hostile, return_to='"><img src=/x2 onerror=window.__xss=4>')
    room.answer = status(room=hostile, position=2)
    await page.goto(f"{server.base}/page")
    await expect(page.locator("#wr-room")).to_have_text(hostile)
    await expect(page.locator("#wr-position")).to_have_text("2")
    assert await page.evaluate("typeof window.__xss") == "undefined"
    assert await page.locator("img").count() == 0
    assert await page.locator("svg").count() == 0
    assert not any(url.endswith(("/x1", "/x2")) for url in requests_seen)
    await assert_clean(page, requests_seen, server)


@pytest.mark.parametrize(
    "return_to",
    ["//evil.example/", "/\\evil.example/", "/\t/evil.example/", "javascript:window.__xss=5"],
)
async def test_admitted_with_foreign_return_to_reloads_instead(
    page: Page,
    room: ScriptedRoom,
    server: BackgroundServer,
    requests_seen: list[str],
    return_to: str,
) -> None:
    await page.goto(f"{server.base}/page")
    # What the reload will show: a distinct position, and no polling for a minute.
    room.initial = status(position=7, refresh_seconds=60)
    room.answer = status(status="admitted", return_to=return_to)
    # The page reloads itself (the proxy then lets the admitted visitor through).
    await expect(page.locator("#wr-position")).to_have_text("7")
    assert room.page_loads == 2
    assert page.url == f"{server.base}/page"
    assert await page.evaluate("typeof window.__xss") == "undefined"
    foreign = [url for url in requests_seen if not url.startswith(server.base + "/")]
    assert foreign == []
