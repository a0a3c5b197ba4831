"""The waiting page in headless Chromium through its states: reconnecting, expired, rejected and
full, final-state titles and leaving the queue (server: ``tests/e2e/scripted_page.py``)."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Page, expect

from tests.e2e.scripted_page import BackgroundServer, ScriptedRoom, status, wait_until


async def test_reconnecting_is_shown_and_cleared(
    page: Page, room: ScriptedRoom, server: BackgroundServer
) -> None:
    room.fail_heartbeats = True
    await page.goto(f"{server.base}/page")
    notice = page.locator("#wr-reconnecting")
    await expect(notice).to_be_visible()
    await expect(notice).to_have_text("Reconnecting…")
    failed = room.heartbeats
    room.fail_heartbeats = False
    room.answer = status(position=2)
    # Backoff starts at about one second (with jitter) and the page keeps trying.
    await expect(page.locator("#wr-position")).to_have_text("2", timeout=5000)
    await expect(notice).to_be_hidden()
    assert room.heartbeats > failed


async def test_expired_offers_rejoin_and_stops_polling(
    page: Page, room: ScriptedRoom, server: BackgroundServer
) -> None:
    await page.goto(f"{server.base}/page")
    room.answer = status(status="expired")
    await expect(page.locator("#wr-expired")).to_be_visible()
    await expect(page.locator("#wr-waiting")).to_be_hidden()
    await expect(page.locator("#wr-live")).to_contain_text("Your place has expired")
    polls = room.heartbeats
    await asyncio.sleep(0.8)
    assert room.heartbeats == polls
    await page.get_by_role("link", name="Rejoin the queue").click()
    await wait_until(lambda: room.page_loads >= 2)


@pytest.mark.parametrize(
    ("state", "heading"),
    [
        ("rejected", "Sold out"),
        ("full", "The waiting room is full"),
        ("used", "This place was already used"),
    ],
)
async def test_rejected_and_full_show_their_message(
    page: Page, room: ScriptedRoom, server: BackgroundServer, state: str, heading: str
) -> None:
    await page.goto(f"{server.base}/page")
    await expect(page).to_have_title("You’re in the queue · sale")
    room.answer = status(status=state)
    await expect(page.get_by_role("heading", name=heading)).to_be_visible()
    await expect(page.locator("#wr-waiting")).to_be_hidden()
    # The tab says it too, not "You're in the queue".
    await expect(page).to_have_title(f"{heading} · sale")


@pytest.mark.parametrize(
    ("state", "title"),
    [
        ("rejected", "Sold out · sale"),
        ("full", "The waiting room is full · sale"),
        ("expired", "Your place has expired · sale"),
        ("used", "This place was already used · sale"),
    ],
)
async def test_pages_served_in_a_final_state_are_titled_after_it(
    page: Page, room: ScriptedRoom, server: BackgroundServer, state: str, title: str
) -> None:
    room.initial = status(status=state)
    room.answer = status(status=state)
    await page.goto(f"{server.base}/page")
    await expect(page).to_have_title(title)
    await expect(page.locator("#wr-waiting")).to_be_hidden()


async def test_leave_the_queue(page: Page, room: ScriptedRoom, server: BackgroundServer) -> None:
    await page.goto(f"{server.base}/page")
    await page.get_by_role("button", name="Leave the queue").click()
    await expect(page.get_by_role("heading", name="You left the queue")).to_be_visible()
    await expect(page).to_have_title("You left the queue · sale")
    await wait_until(lambda: room.leaves == 1)
    polls = room.heartbeats
    await asyncio.sleep(0.8)
    assert room.heartbeats == polls
