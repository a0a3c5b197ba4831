"""The waiting page as the operator's own, in real headless Chromium through the real proxy
(issue 15, item 4): title, logo, colours and links from the room's settings with no custom
template; the language from ``Accept-Language`` (German ships; French added by a
``page_messages`` file, the documented way to add one); the sold-out page keeps its own title
under the brand. Nothing is loaded from anywhere (the logo is inlined) and the CSP holds.

Set ``WAITROOM_UPDATE_SCREENSHOT=1`` to rewrite ``docs/waiting-page-branded.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.e2e.scripted_page import WATCH_SCRIPT
from tests.e2e.test_journey import origin
from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import Mode, RoomPolicy
from waitroom_proxy.server import build_app

REPO = Path(__file__).resolve().parents[2]
LOGO = REPO / "examples" / "logo.svg"
FRENCH = """
[fr]
page_title = "Vous êtes dans la file"
waiting_heading = "Vous êtes dans la file d’attente"
rejected_heading = "Complet"
"""


def branded(name: str, **kw: object) -> RoomPolicy:
    return RoomPolicy(
        name=name,
        capacity=1,
        heartbeat_interval=5,
        page_title="Example <Tickets>",
        page_logo=str(LOGO),
        page_accent="#0b7a53",
        page_background="#f3f7f5",
        page_text="#10231b",
        page_links=(("Help", "https://example.com/help"), ("Terms", "/terms")),
        message="Saturday is almost gone.",
        **kw,  # type: ignore[arg-type]
    )


async def test_branded_page_in_the_visitors_language(browser: Browser, tmp_path: Path) -> None:
    messages = tmp_path / "messages.toml"
    messages.write_text(FRENCH, encoding="utf-8")
    rooms = (branded("brand"), branded("soldout", match=("*/gone",), mode=Mode.REJECT))
    async with serve_asgi(origin()) as origin_url:
        settings = Settings(
            rooms=rooms,
            upstream=origin_url,
            secret="brand-" + "b" * 32,
            page_messages=str(messages),
        )
        app = build_app(settings, store=MemoryStore(), controller_interval=0.2)
        async with serve_asgi(app) as url:
            holder = await browser.new_context()
            de = await browser.new_context(locale="de-AT", viewport={"width": 720, "height": 800})
            fr = await browser.new_context(locale="fr-CH")
            try:
                await (await holder.new_page()).goto(url + "/")  # takes the only slot
                page = await de.new_page()
                await page.add_init_script(WATCH_SCRIPT)
                requests: list[str] = []
                page.on("request", lambda r: requests.append(r.url))
                await page.goto(url + "/sale")
                await expect(page).to_have_title(
                    "Sie sind in der Warteschlange · Example <Tickets>"
                )
                await expect(page.locator("#wr-brand")).to_have_text("Example <Tickets>")
                await expect(page.locator("#wr-message")).to_have_text("Saturday is almost gone.")
                logo = page.locator("#wr-logo")
                await expect(logo).to_be_visible()
                assert await logo.evaluate("img => img.naturalWidth") > 0
                assert (await logo.get_attribute("src") or "").startswith("data:image/svg+xml;")
                accent = await page.evaluate(
                    "getComputedStyle(document.documentElement).getPropertyValue('--accent')"
                )
                assert accent.strip() == "#0b7a53"
                bg = await page.evaluate("getComputedStyle(document.body).color")
                assert bg == "rgb(16, 35, 27)", "the operator's text colour"
                links = page.locator("#wr-links a")
                await expect(links).to_have_count(2)
                assert await links.nth(0).get_attribute("href") == "https://example.com/help"
                await expect(page.get_by_role("link", name="Terms")).to_have_attribute(
                    "href", "/terms"
                )
                assert all(r.startswith(url) for r in requests), requests
                assert await page.evaluate("window.__cspViolations") == []
                assert await page.evaluate("window.__errors") == []
                shot = tmp_path / "branded.png"
                await page.screenshot(path=str(shot), animations="disabled")
                if os.environ.get("WAITROOM_UPDATE_SCREENSHOT") == "1":
                    (REPO / "docs" / "waiting-page-branded.png").write_bytes(shot.read_bytes())

                gone = await de.new_page()
                await gone.goto(url + "/gone")
                await expect(gone).to_have_title("Ausverkauft · Example <Tickets>")

                french = await fr.new_page()
                await french.goto(url + "/sale")
                await expect(french.locator("html")).to_have_attribute("lang", "fr")
                await expect(french).to_have_title("Vous êtes dans la file · Example <Tickets>")
                await expect(
                    french.get_by_role("heading", name="Vous êtes dans la file d’attente")
                ).to_be_visible()
                # A key the file does not give falls back to English.
                await expect(french.locator("#wr-waiting .lead")).to_contain_text(
                    "This page updates by itself"
                )
                sold = await fr.new_page()
                await sold.goto(url + "/gone")
                await expect(sold).to_have_title("Complet · Example <Tickets>")
            finally:
                for ctx in (holder, de, fr):
                    await ctx.close()
