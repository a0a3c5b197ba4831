"""The waiting page in headless Chromium, served by a real uvicorn server on loopback.

The server renders the page with :class:`PageRenderer` under the production CSP and answers
``POST /_waitroom/heartbeat`` with whatever JSON the test scripts (``room.answer``), so each
test steps the page through states deterministically. The server runs in a thread with its own
loop; the browser tests run on the session loop (see ``tests/fixtures/browser.py``).

Set ``WAITROOM_UPDATE_SCREENSHOT=1`` to rewrite ``docs/waiting-page.png``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from waitroom_proxy.asgi.page import (
    MESSAGES,
    PageRenderer,
    content_security_policy,
    format_eta,
    new_nonce,
)
from waitroom_proxy.domain.progress import progress_percent

REPO = Path(__file__).resolve().parents[2]
FAST = 0.2  # refresh_seconds in tests: the page script accepts fractions of a second

# Collects CSP violations and script errors; init scripts run before the page's own scripts.
WATCH_SCRIPT = """
window.__cspViolations = [];
window.__errors = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); });
"""


def status(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": "waiting",
        "room": "sale",
        "position": 3,
        "ahead": 2,
        "queue_length": 10,
        "eta_seconds": {"p50": 90, "p90": 150},
        "refresh_seconds": FAST,
        "return_to": "/target",
        "cfWaitingRoom": {"inWaitingRoom": True},
    }
    body.update(overrides)
    return body


class ScriptedRoom:
    """What the tiny server answers; the test thread sets it, the server thread reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.initial: dict[str, Any] = status()
            self.answer: dict[str, Any] = status()
            self.lang = "en"
            self.fail_heartbeats = False
            self.heartbeats = 0
            self.leaves = 0
            self.page_loads = 0
            self.heartbeat_headers: list[dict[str, str]] = []

    def count(self, name: str, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)
            if headers is not None:
                self.heartbeat_headers.append(headers)


def make_app(room: ScriptedRoom, renderer: PageRenderer) -> Starlette:
    def secured(html: str, nonce: str) -> HTMLResponse:
        return HTMLResponse(
            html,
            headers={
                "Content-Security-Policy": content_security_policy(nonce),
                "Cache-Control": "no-store",
            },
        )

    async def waiting(request: Request) -> Response:
        room.count("page_loads")
        nonce = new_nonce()
        return secured(renderer.waiting_page(room.initial, nonce=nonce, lang=room.lang), nonce)

    async def target(request: Request) -> Response:
        nonce = new_nonce()
        return secured("<!doctype html><title>target</title><p id=arrived>arrived</p>", nonce)

    async def heartbeat(request: Request) -> Response:
        room.count("heartbeats", dict(request.headers))
        if room.fail_heartbeats:
            return PlainTextResponse("upstream trouble", status_code=503)
        return JSONResponse(room.answer, headers={"Cache-Control": "no-store"})

    async def leave(request: Request) -> Response:
        room.count("leaves")
        return JSONResponse({"status": "left"})

    return Starlette(
        routes=[
            Route("/page", waiting),
            Route("/target", target),
            Route("/_waitroom/heartbeat", heartbeat, methods=["POST"]),
            Route("/_waitroom/leave", leave, methods=["POST"]),
        ]
    )


class BackgroundServer:
    """uvicorn on 127.0.0.1, port 0, in a thread with its own event loop."""

    def __init__(self, app: Starlette) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            loop="asyncio",
            ws="none",
            lifespan="off",
            access_log=False,
            log_level="warning",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="page-server", daemon=True)
        self.base = ""

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def scripted_room() -> ScriptedRoom:
    return ScriptedRoom()


@pytest.fixture(scope="module")
def server(scripted_room: ScriptedRoom) -> Iterator[BackgroundServer]:
    with BackgroundServer(make_app(scripted_room, PageRenderer())) as running:
        yield running


@pytest.fixture
def room(scripted_room: ScriptedRoom) -> ScriptedRoom:
    scripted_room.reset()
    return scripted_room


@pytest_asyncio.fixture(loop_scope="session")
async def requests_seen(context: BrowserContext) -> list[str]:
    seen: list[str] = []
    context.on("request", lambda request: seen.append(request.url))
    await context.add_init_script(WATCH_SCRIPT)
    return seen


async def assert_clean(page: Page, requests_seen: list[str], server: BackgroundServer) -> None:
    """No CSP violation, no script error, and no request to anywhere but our server."""
    assert await page.evaluate("window.__cspViolations") == []
    assert await page.evaluate("window.__errors") == []
    foreign = [url for url in requests_seen if not url.startswith(server.base + "/")]
    assert foreign == []


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


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
