"""The operator console in real headless Chromium against a real proxy and admin listener
(issue 15, item 5): log in with the token, see the charts drawn from real samples, use every
control and check its effect through the API, see a refused value's error, and read a
schedule's countdown that a skewed browser clock does not change.

The admin listener samples every 100 ms here, so the charts fill within a second.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from playwright.async_api import Browser, Page, expect

from tests.e2e.scripted_page import WATCH_SCRIPT
from tests.e2e.test_journey import origin
from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.admin import build_admin
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.server import build_app

TOKEN = "console-token-" + "c" * 24
AUTH = {"authorization": f"Bearer {TOKEN}"}
# The browser's clock two hours ahead of the store's: the countdown must not believe it.
SKEWED_CLOCK = """
(() => {
  const shift = 2 * 3600 * 1000, Real = Date;
  class Skewed extends Real {
    constructor(...a) { if (a.length === 0) { super(Real.now() + shift); } else { super(...a); } }
    static now() { return Real.now() + shift; }
  }
  window.Date = Skewed;
})();
"""


@dataclass
class Console:
    proxy: str
    admin: str
    api: httpx.AsyncClient

    async def room(self, name: str = "shop") -> dict[str, Any]:
        got: dict[str, Any] = (await self.api.get(f"/admin/rooms/{name}")).json()
        return got


@contextlib.asynccontextmanager
async def console() -> AsyncIterator[Console]:
    rooms = (
        RoomPolicy(name="shop", capacity=2, admit_rate=600, heartbeat_interval=5),
        RoomPolicy(name="sale", capacity=5, match=("*/sale",)),
    )
    async with serve_asgi(origin()) as origin_url:
        settings = Settings(rooms=rooms, upstream=origin_url, secret="console-" + "s" * 32)
        app = build_app(settings, store=MemoryStore(), controller_interval=0.1)
        admin_app = build_admin(app.engine, TOKEN, history_interval=0.1)
        async with (
            serve_asgi(app) as proxy,
            serve_asgi(admin_app) as admin,
            httpx.AsyncClient(base_url=admin, headers=AUTH, timeout=10) as api,
        ):
            yield Console(proxy, admin, api)
            await app.engine.controller.stop()


async def visitors(url: str, n: int) -> list[httpx.AsyncClient]:
    """``n`` visitors who each asked for the shop once (the first ones get in)."""
    clients = [httpx.AsyncClient(base_url=url, timeout=10) for _ in range(n)]
    for c in clients:
        await c.get("/", headers={"accept": "application/json"})
    return clients


async def log_in(page: Page, admin: str) -> None:
    await page.add_init_script(WATCH_SCRIPT)
    await page.goto(admin + "/admin/")
    await page.fill("#token", TOKEN)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#data")).to_be_visible()


async def points(page: Page, chart: str) -> int:
    return int(await page.get_attribute(f"#chart-{chart}", "data-points") or 0)


async def test_console_charts_and_every_control(browser: Browser) -> None:
    async with console() as env:
        crowd = await visitors(env.proxy, 5)  # 2 in, 3 waiting
        context = await browser.new_context(viewport={"width": 1280, "height": 1000})
        try:
            page = await context.new_page()
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            await page.goto(env.admin + "/admin/")
            await expect(page.locator("#login")).to_be_visible()
            await page.fill("#token", "wrong")
            await page.click("#login button[type=submit]")
            await expect(page.locator("#login-error")).to_have_text("That token was refused.")
            await log_in(page, env.admin)
            await expect(page.locator("#rooms tr")).to_have_count(2)
            await expect(page.locator("#room")).to_have_value("shop")

            # Charts from real samples: lines with points, the current values beside them.
            await expect(page.locator("#now-queue")).to_have_text("3")
            await expect(page.locator("#now-active")).to_have_text("2 / 2")
            await page.wait_for_function(
                "document.getElementById('chart-queue').getAttribute('data-points') >= 5"
            )
            for chart in ("queue", "active"):
                await expect(page.locator(f"#chart-{chart} polyline").first).to_be_attached()
                assert await points(page, chart) >= 5, chart
            assert await page.locator("#chart-active polyline").count() == 2, "active, capacity"

            # Pause.
            await page.click("#pause")
            await expect(page.locator("#control-status")).to_have_text("Admissions paused.")
            assert (await env.room())["paused"] is True
            await expect(page.locator("#room-state")).to_have_text("paused")
            # Admit N (even while paused; capacity still counts, so free it first).
            await page.fill("#capacity", "10")
            await page.click("#set-capacity")
            await expect(page.locator("#control-status")).to_have_text("Capacity is now 10.")
            assert (await env.room())["policy"]["capacity"] == 10
            await page.fill("#admit-count", "2")
            await page.click("#admit")
            await expect(page.locator("#control-status")).to_have_text("Admitted 2 of 2 asked.")
            stats = (await env.room())["stats"]
            assert (stats["promoted"], stats["queue_length"]) == (2, 1)
            # Admit rate and message.
            await page.fill("#admit-rate", "120")
            await page.click("#set-admit-rate")
            await expect(page.locator("#control-status")).to_have_text("Admit rate is now 120.")
            assert (await env.room())["policy"]["admit_rate"] == 120
            await page.fill("#message", "Doors open at <10>")
            await page.click("#set-message")
            await expect(page.locator("#control-status")).to_have_text(
                "Message is now Doors open at <10>."
            )
            assert (await env.room())["policy"]["message"] == "Doors open at <10>"
            # A refused value: the API's own detail, and nothing changed.
            await page.fill("#capacity", "0")
            await page.click("#set-capacity")
            error = page.locator("#control-error")
            await expect(error).to_contain_text("Capacity refused: capacity: ")
            assert (await env.room())["policy"]["capacity"] == 10
            await page.fill("#admit-count", "20000")
            await page.click("#admit")
            await expect(error).to_contain_text("Admit refused: count: ")
            # Resume; the message cleared.
            await page.click("#resume")
            await expect(page.locator("#control-status")).to_have_text("Admissions resumed.")
            assert (await env.room())["paused"] is False
            await page.click("#clear-message")
            await expect(page.locator("#control-status")).to_have_text("Message is now none.")
            assert (await env.room())["policy"]["message"] is None
            # The charts saw the capacity change (10 is the top of the capacity line now).
            await expect(page.locator("#now-active")).to_contain_text("/ 10")

            assert await page.evaluate("window.__cspViolations") == []
            assert await page.evaluate("window.__errors") == []
            assert all(r.startswith(env.admin + "/admin/") for r in requests), requests
        finally:
            await context.close()
            for c in crowd:
                await c.aclose()


async def test_schedule_countdown_follows_the_store_clock(browser: Browser) -> None:
    async with console() as env:
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1, minutes=30)
        body = {"prequeue_at": (start - timedelta(minutes=30)).isoformat(),
                "start_at": start.isoformat()}  # fmt: skip
        assert (await env.api.put("/admin/rooms/sale/schedule", json=body)).status_code == 200
        contexts = [await browser.new_context(), await browser.new_context()]
        try:
            honest, skewed = [await c.new_page() for c in contexts]
            await skewed.add_init_script(SKEWED_CLOCK)
            shown = []
            for page in (honest, skewed):
                await log_in(page, env.admin)
                await page.select_option("#room", "sale")
                await expect(page.locator("#phase")).to_have_text("idle")
                await expect(page.locator("#next-change")).to_contain_text("until prequeue")
                await expect(page.locator("#countdown")).to_have_text(re.compile(r"^00:5\d:\d\d$"))
                shown.append(await page.text_content("#countdown"))
                assert await page.evaluate("window.__errors") == []
            await expect(honest.locator("#skew")).to_have_text(
                "Store clock agrees with this browser (±1 s)."
            )
            await expect(skewed.locator("#skew")).to_contain_text(
                "Store clock is 2.0 h behind this browser"
            )
            # Both count down to the same store time (a minute apart at most: the tick).
            minutes = [int(text.split(":")[1]) for text in shown if text]
            assert max(minutes) - min(minutes) <= 1, shown
            await expect(honest.locator("#schedule-times")).to_contain_text("prequeue")
            # The shop has no schedule.
            await honest.select_option("#room", "shop")
            await expect(honest.locator("#phase")).to_have_text("open")
            await expect(honest.locator("#schedule-times")).to_have_text(
                "No schedule: the room is open."
            )
        finally:
            for c in contexts:
                await c.close()
