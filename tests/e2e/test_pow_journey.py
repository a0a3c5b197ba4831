"""Proof of work end to end in real headless Chromium, through the real proxy and origin.

The room asks for work (``pow_difficulty``): the visitor's first page is the challenge page;
its script starts the worker from ``{prefix}/pow-worker.js`` under the page's strict CSP
(``worker-src 'self'``, no external script), posts the solution to ``{prefix}/pow`` and, the
room being free, lands on the URL first asked for. A second visitor gets a place in the queue
the same way. No CSP violation and no script error on the way.
"""

from __future__ import annotations

import time

from playwright.async_api import Browser, expect

from tests.e2e.scripted_page import WATCH_SCRIPT
from tests.e2e.test_journey import origin
from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.server import build_app

BITS = 14  # a fraction of a second in the worker; the path is the same at the default 21


async def test_the_page_solves_the_challenge_and_joins(browser: Browser) -> None:
    room = RoomPolicy(name="pow-e2e", capacity=1, heartbeat_interval=1, pow_difficulty=BITS)
    async with serve_asgi(origin()) as origin_url:
        settings = Settings(rooms=(room,), upstream=origin_url, secret="pow-e2e-" + "p" * 32)
        app = build_app(settings, store=MemoryStore(), controller_interval=0.2)
        async with serve_asgi(app) as url:
            contexts = [await browser.new_context() for _ in range(2)]
            try:
                a = await contexts[0].new_page()
                await a.add_init_script(WATCH_SCRIPT)
                started = time.monotonic()
                await a.goto(url + "/wanted?item=7")
                await a.wait_for_url(url + "/wanted?item=7")
                await expect(a.locator("#origin")).to_have_text("Origin page /wanted?item=7")
                print(f"\nPOW solved and admitted in {time.monotonic() - started:.2f} s")
                cookies = {c["name"] for c in await contexts[0].cookies()}
                assert "waitroom_session" in cookies

                b = await contexts[1].new_page()
                await b.add_init_script(WATCH_SCRIPT)
                await b.goto(url + "/later")
                await expect(b.locator("#wr-position")).to_have_text("1")
                await expect(b.locator("#wr-waiting")).to_be_visible()
                await expect(b.locator("#wr-challenge")).to_be_hidden()
                assert await b.evaluate("window.__cspViolations") == []
                assert await b.evaluate("window.__errors") == []
            finally:
                for ctx in contexts:
                    await ctx.close()


async def test_the_challenge_page_says_what_it_does(browser: Browser) -> None:
    """Without JavaScript the page cannot solve: it says so (no silent hang)."""
    room = RoomPolicy(name="pow-nojs", capacity=1, heartbeat_interval=1, pow_difficulty=BITS)
    async with serve_asgi(origin()) as origin_url:
        settings = Settings(rooms=(room,), upstream=origin_url, secret="pow-nojs-" + "p" * 32)
        app = build_app(settings, store=MemoryStore(), controller_interval=0.2)
        async with serve_asgi(app) as url:
            ctx = await browser.new_context(java_script_enabled=False)
            try:
                page = await ctx.new_page()
                await page.goto(url + "/x")
                await expect(page).to_have_title("Checking your browser · pow-nojs")
                await expect(page.get_by_text("please turn on JavaScript")).to_be_visible()
                await expect(page.locator("#wr-challenge-failed")).to_be_hidden()
            finally:
                await ctx.close()
