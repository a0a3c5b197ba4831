"""The waiting page in headless Chromium: numbers, ETA wording, progress and language formats
update live, and polling pauses while the page is hidden (server: ``tests/e2e/scripted_page.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Page, expect

from tests.e2e.scripted_page import BackgroundServer, ScriptedRoom, assert_clean, status, wait_until
from waitroom_proxy.asgi.page import MESSAGES, format_eta
from waitroom_proxy.domain.progress import progress_percent


async def test_numbers_update_live_region_announces_and_admitted_navigates(
    page: Page, room: ScriptedRoom, server: BackgroundServer, requests_seen: list[str]
) -> None:
    await page.goto(f"{server.base}/page")
    await expect(page.locator("#wr-position")).to_have_text("3")
    await expect(page.locator("#wr-ahead")).to_have_text("2")
    await expect(page.locator("#wr-queue")).to_have_text("10")
    await expect(page.locator("#wr-eta")).to_have_text("about 2–3 minutes")
    live = page.locator("#wr-live")
    assert await live.get_attribute("aria-live") == "polite"
    await expect(live).to_contain_text("You are number 3 in line.")
    # One formula with domain.progress: 1 of 4 steps (places 3, 2, 1, the door).
    await expect(page.locator("#wr-progress")).to_have_attribute("value", "25")

    room.answer = status(position=2, ahead=1, queue_length=12, eta_seconds=None)
    await expect(page.locator("#wr-position")).to_have_text("2")
    await expect(page.locator("#wr-ahead")).to_have_text("1")
    await expect(page.locator("#wr-queue")).to_have_text("12")
    await expect(page.locator("#wr-eta")).to_have_text("calculating…")
    await expect(live).to_contain_text("You are number 2 in line.")
    # Progress is measured from the first position seen (3, kept in sessionStorage).
    await expect(page.locator("#wr-progress")).to_have_attribute("value", "50")

    room.answer = status(position=1, ahead=0, eta_seconds={"p50": 20, "p90": 40})
    await expect(page.locator("#wr-position")).to_have_text("1")
    await expect(live).to_contain_text("You are next in line.")
    await expect(page.locator("#wr-eta")).to_have_text("less than a minute")
    await expect(page.locator("#wr-progress")).to_have_attribute("value", "75")
    await assert_clean(page, requests_seen, server)

    room.answer = status(status="admitted", position=0, ahead=0, return_to="/target")
    await page.wait_for_url(f"{server.base}/target")
    await expect(page.locator("#arrived")).to_have_text("arrived")

    # Every heartbeat was a same-origin POST asking for JSON.
    assert room.heartbeats >= 3
    assert all(h.get("accept") == "application/json" for h in room.heartbeat_headers)
    foreign = [url for url in requests_seen if not url.startswith(server.base + "/")]
    assert foreign == []
    assert f"{server.base}/target" in requests_seen


async def test_eta_wording_in_the_browser_matches_the_renderer(
    page: Page, room: ScriptedRoom, server: BackgroundServer, requests_seen: list[str]
) -> None:
    cases: list[Any] = [
        {"p50": 180, "p90": 300},
        {"p50": 60, "p90": 61},
        {"p50": 60, "p90": 60},
        {"p50": 600, "p90": 600},
        {"p50": 3 * 3600, "p90": 5 * 3600},
        {"p50": 5400, "p90": 5400},
        {"p50": None, "p90": 200},
        {"p50": 30, "p90": 59},
        None,
    ]
    await page.goto(f"{server.base}/page")
    for i, eta in enumerate(cases):
        room.answer = status(position=100 + i, eta_seconds=eta)
        await expect(page.locator("#wr-position")).to_have_text(str(100 + i))
        await expect(page.locator("#wr-eta")).to_have_text(format_eta(eta, MESSAGES["en"]))
    await assert_clean(page, requests_seen, server)


async def test_joining_at_the_front_shows_a_bar_not_an_empty_one(
    page: Page, room: ScriptedRoom, server: BackgroundServer, requests_seen: list[str]
) -> None:
    room.initial = room.answer = status(position=1, ahead=0, queue_length=1)
    await page.goto(f"{server.base}/page")
    await expect(page.locator("#wr-position")).to_have_text("1")
    await expect(page.locator("#wr-progress")).to_have_attribute("value", "50")
    await assert_clean(page, requests_seen, server)


async def test_progress_in_the_browser_is_the_domain_formula(
    page: Page, room: ScriptedRoom, server: BackgroundServer, requests_seen: list[str]
) -> None:
    room.initial = room.answer = status(position=1000, ahead=999, queue_length=1000)
    await page.goto(f"{server.base}/page")
    bar = page.locator("#wr-progress")
    await expect(bar).to_have_attribute("value", str(progress_percent(1000, 1000)))
    first = 1000
    for position in (999, 990, 500, 1500, 1499, 42, 2, 1):
        first = max(first, position)  # moved back (a re-draw): measured from there on
        room.answer = status(position=position, ahead=position - 1)
        await expect(page.locator("#wr-position")).to_have_text(f"{position:,}")
        await expect(bar).to_have_attribute("value", str(progress_percent(first, position)))
    await assert_clean(page, requests_seen, server)


async def test_german_page_formats_numbers_like_the_renderer(
    page: Page, room: ScriptedRoom, server: BackgroundServer
) -> None:
    room.lang = "de"
    room.initial = status(position=42, queue_length=1200)
    room.answer = room.initial  # the first poll may come before the check below
    await page.goto(f"{server.base}/page")
    assert await page.locator("html").get_attribute("lang") == "de"
    await expect(page.locator("#wr-queue")).to_have_text("1.200")
    room.answer = status(position=1234, queue_length=1234567, eta_seconds={"p50": 90, "p90": 150})
    await expect(page.locator("#wr-position")).to_have_text("1.234")
    await expect(page.locator("#wr-queue")).to_have_text("1.234.567")
    await expect(page.locator("#wr-eta")).to_have_text("etwa 2–3 Minuten")
    await expect(page.locator("#wr-live")).to_contain_text("Sie sind Nummer 1.234")


async def test_polling_pauses_while_hidden_and_resumes_at_once(
    page: Page, room: ScriptedRoom, server: BackgroundServer
) -> None:
    await page.goto(f"{server.base}/page")
    await wait_until(lambda: room.heartbeats >= 2)
    await page.evaluate(
        """() => {
        Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
        Object.defineProperty(document, "visibilityState",
            {configurable: true, get: () => "hidden"});
        document.dispatchEvent(new Event("visibilitychange"));
    }"""
    )
    # One heartbeat may have been in flight when the page went hidden; then nothing for
    # 1.5 s, i.e. about 7 periods of 0.2 s.
    await asyncio.sleep(0.3)
    before = room.heartbeats
    await asyncio.sleep(1.5)
    assert room.heartbeats == before

    # Slow the schedule right down: a heartbeat arriving now proves the page polled at once
    # on becoming visible rather than on its timer.
    room.answer = status(position=2, refresh_seconds=60)
    await page.evaluate(
        """() => {
        Object.defineProperty(document, "hidden", {configurable: true, get: () => false});
        Object.defineProperty(document, "visibilityState",
            {configurable: true, get: () => "visible"});
        document.dispatchEvent(new Event("visibilitychange"));
    }"""
    )
    await expect(page.locator("#wr-position")).to_have_text("2", timeout=2000)
    assert room.heartbeats == before + 1
