"""The waiting page in headless Chromium without its script, with reduced motion and on narrow
screens, and its screenshot (server: ``tests/e2e/scripted_page.py``).

Set ``WAITROOM_UPDATE_SCREENSHOT=1`` to rewrite ``docs/waiting-page.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.e2e.scripted_page import REPO, BackgroundServer, ScriptedRoom, status, wait_until
from waitroom_proxy.domain.progress import progress_percent


async def test_without_javascript_meta_refresh_reloads_and_shows_position(
    browser: Browser, room: ScriptedRoom, server: BackgroundServer
) -> None:
    room.initial = status(
        position=42, ahead=41, queue_length=1200, refresh_seconds=1, first_position=180
    )
    ctx = await browser.new_context(java_script_enabled=False)
    try:
        page = await ctx.new_page()
        page.set_default_timeout(10_000)
        await page.goto(f"{server.base}/page")
        refresh = page.locator('meta[http-equiv="refresh"]')
        assert await refresh.get_attribute("content") == "1"
        await expect(page.locator("#wr-position")).to_have_text("42")
        await expect(page.locator("#wr-queue")).to_have_text("1,200")
        # The static bar: the one formula, from the position at joining the status carries.
        bar = await page.locator("#wr-progress").get_attribute("value")
        assert bar == str(progress_percent(180, 42)) == "76"
        # The leave form needs the script: it stays hidden.
        await expect(page.locator("#wr-leave")).to_be_hidden()
        await wait_until(lambda: room.page_loads >= 2, timeout=5)
        assert room.heartbeats == 0
    finally:
        await ctx.close()


async def test_reduced_motion_and_narrow_screens(
    browser: Browser, room: ScriptedRoom, server: BackgroundServer
) -> None:
    room.initial = status(position=1234567, ahead=1234566, queue_length=9876543, refresh_seconds=60)
    ctx = await browser.new_context(viewport={"width": 320, "height": 640}, reduced_motion="reduce")
    try:
        page = await ctx.new_page()
        page.set_default_timeout(10_000)
        await page.goto(f"{server.base}/page")
        await expect(page.locator("#wr-position")).to_have_text("1,234,567")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 320
        animation = await page.evaluate(
            "getComputedStyle(document.querySelector('.room .dot')).animationName"
        )
        assert animation == "none"
    finally:
        await ctx.close()


async def test_screenshot(
    browser: Browser, room: ScriptedRoom, server: BackgroundServer, tmp_path: Path
) -> None:
    room.initial = status(
        room="sale",
        position=42,
        ahead=41,
        queue_length=1200,
        eta_seconds={"p50": 180, "p90": 300},
        refresh_seconds=600,
    )
    ctx = await browser.new_context(viewport={"width": 720, "height": 760}, device_scale_factor=1)
    try:
        # As if the visitor joined at place 180 and has moved up since.
        await ctx.add_init_script("sessionStorage.setItem('waitroom:first:sale', '180')")
        page = await ctx.new_page()
        page.set_default_timeout(10_000)
        await page.goto(f"{server.base}/page")
        await expect(page.locator("#wr-eta")).to_have_text("about 3–5 minutes")
        await expect(page.locator("#wr-progress")).to_have_attribute(
            "value", str(progress_percent(180, 42))
        )
        await expect(page.locator("#wr-leave")).to_be_visible()
        out = tmp_path / "waiting-page.png"
        await page.screenshot(path=str(out), timeout=10_000, animations="disabled")
        assert out.stat().st_size > 10_000
        if os.environ.get("WAITROOM_UPDATE_SCREENSHOT") == "1":
            (REPO / "docs" / "waiting-page.png").write_bytes(out.read_bytes())
    finally:
        await ctx.close()


async def test_bar_and_message_agree_with_and_without_script(
    browser: Browser, page: Page, room: ScriptedRoom, server: BackgroundServer
) -> None:
    """The script and the script-free page draw the same bar from the server's
    ``first_position`` (one formula, ``domain.progress``), and show the live message."""
    room.initial = room.answer = status(position=4, ahead=3, first_position=9, message="Hi <b>")
    expected = str(progress_percent(9, 4))
    await page.goto(f"{server.base}/page")
    await expect(page.locator("#wr-progress")).to_have_attribute("value", expected)
    await expect(page.locator("#wr-message")).to_have_text("Hi <b>")
    room.answer = status(position=2, ahead=1, first_position=9, message=None)
    await expect(page.locator("#wr-position")).to_have_text("2")
    await expect(page.locator("#wr-progress")).to_have_attribute(
        "value", str(progress_percent(9, 2))
    )
    await expect(page.locator("#wr-message")).to_be_hidden()
    ctx = await browser.new_context(java_script_enabled=False)
    try:
        static = await ctx.new_page()
        await static.goto(f"{server.base}/page")
        await expect(static.locator("#wr-progress")).to_have_attribute("value", expected)
        await expect(static.locator("#wr-message")).to_have_text("Hi <b>")
    finally:
        await ctx.close()
