"""The pages of a scheduled sale before it opens, in real headless Chromium through the real
proxy (issue 15, items 1 and 4): the idle page in the visitor's language and the room's brand,
its countdown ticking every second from the server's duration, and the page moving itself on to
the pre-queue when that opens (the script reloads it; no click). The CSP holds; nothing is
loaded from anywhere.

Set ``WAITROOM_UPDATE_SCREENSHOT=1`` to rewrite ``docs/prequeue-page.png``.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.e2e.scripted_page import WATCH_SCRIPT
from tests.e2e.test_branded_page import REPO, branded
from tests.e2e.test_journey import origin
from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.schedule import Schedule
from waitroom_proxy.server import build_app

COUNTDOWN = re.compile(r"^Beginnt in (\d+) Sek\.$")


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def test_idle_countdown_then_prequeue_in_german_and_brand(
    browser: Browser, tmp_path: Path
) -> None:
    t0 = time.time()
    schedule = Schedule(prequeue_at=_at(t0 + 6), start_at=_at(t0 + 3600), shuffle_at_start=True)
    async with serve_asgi(origin()) as origin_url:
        settings = Settings(
            rooms=(branded("sale", schedule=schedule),),
            upstream=origin_url,
            secret="phase-" + "p" * 32,
        )
        app = build_app(settings, store=MemoryStore(), controller_interval=0.2)
        async with serve_asgi(app) as url:
            ctx = await browser.new_context(locale="de-DE", viewport={"width": 720, "height": 640})
            try:
                page = await ctx.new_page()
                await page.add_init_script(WATCH_SCRIPT)
                requests: list[str] = []
                page.on("request", lambda r: requests.append(r.url))
                await page.goto(url + "/sale")
                await expect(page).to_have_title(
                    "Der Verkauf hat noch nicht begonnen · Example <Tickets>"
                )
                await expect(page.locator("html")).to_have_attribute("lang", "de")
                await expect(page.locator("#wr-brand")).to_have_text("Example <Tickets>")
                await expect(page.locator("#wr-links a")).to_have_count(2)
                countdown = page.locator("#wr-countdown")
                first = COUNTDOWN.match(await countdown.inner_text())
                assert first is not None, await countdown.inner_text()
                # It counts down by itself (the server said a duration, not a clock time).
                await expect(countdown).not_to_have_text(first.group(0), timeout=3000)
                later = COUNTDOWN.match(await countdown.inner_text())
                assert later is not None and int(later.group(1)) < int(first.group(1))
                # At zero the page reloads itself: the pre-queue is open, still in German.
                await expect(page).to_have_title(
                    "Sie sind in der Vorwarteschlange · Example <Tickets>", timeout=15_000
                )
                await expect(page.locator("main")).to_have_attribute("data-status", "prequeue")
                # The start in the visitor's language and time zone, e.g. "Mittwoch, 2. …".
                when = await page.locator("#wr-when").inner_text()
                assert "UTC" not in when and re.search(r"\d{4}", when), when
                assert await page.evaluate("window.__cspViolations") == []
                assert await page.evaluate("window.__errors") == []
                assert all(r.startswith(url) for r in requests), requests
                shot = tmp_path / "prequeue.png"
                await page.screenshot(path=str(shot), animations="disabled")
                if os.environ.get("WAITROOM_UPDATE_SCREENSHOT") == "1":
                    (REPO / "docs" / "prequeue-page.png").write_bytes(shot.read_bytes())
            finally:
                await ctx.close()
