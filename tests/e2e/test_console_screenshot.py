"""The console with a full hour of charts, in headless Chromium: what ``docs/console.png`` shows.

An hour of real traffic does not fit in a test, so the charts' hour is *simulated*: a sale that
opened 50 minutes ago (a surge of arrivals, a full room, sessions of about two minutes), the
capacity raised from 30 to 40 twenty minutes later, admissions paused for four minutes, a
second wave of arrivals ten minutes ago, and the ETA error of each admission. The simulation feeds the real code path: :class:`Reading`
values (store counts, the ETA-error histogram of a real ``Metrics`` registry) recorded into the
console's :class:`History`, served by the real admin listener and drawn by the real page. The
table, the controls and the schedule (the sale ends in 45 minutes) are live: 40 visitors hold
sessions and 25 wait in the real proxy, which is where the charts' last values end too.

The test checks that a full hour renders (360 points a line); set
``WAITROOM_UPDATE_SCREENSHOT=1`` to rewrite ``docs/console.png``.
"""

from __future__ import annotations

import math
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from playwright.async_api import Browser, expect
from prometheus_client import CollectorRegistry

from tests.e2e.test_console import TOKEN, log_in, points
from tests.e2e.test_journey import origin
from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.admin import build_admin
from waitroom_proxy.admin.history import POINTS, History, Reading
from waitroom_proxy.admin.sampler import eta_error_buckets
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.metrics import Metrics
from waitroom_proxy.server import build_app
from waitroom_proxy.service import Engine

REPO = Path(__file__).resolve().parents[2]
STEP = 10.0
ACTIVE, WAITING = 40, 25


def simulated_hour(end: float, room: str = "shop") -> list[Reading]:
    """One reading every 10 s for the hour before ``end``; last values: 40 active, 25 queued."""
    rng = random.Random(15)
    metrics = Metrics(CollectorRegistry())
    queue, active, admitted = 0.0, 0.0, 0
    readings = []
    for i in range(POINTS):
        minute = (i - POINTS) * STEP / 60  # -60 .. 0
        capacity = 30 if minute < -30 else ACTIVE
        paused = -22 <= minute < -18
        opened = minute >= -50
        surge = 90 * math.exp(-(minute + 50) / 6) + 4
        wave = 30 * math.exp(-((minute + 9) ** 2) / 6)  # a second wave (a newsletter)
        arrivals = (surge + wave) * STEP / 60 if opened else 0.05
        queue += rng.uniform(0.6, 1.4) * arrivals
        ended = active * STEP / 120 * rng.uniform(0.7, 1.3)  # sessions of about 2 minutes
        active = max(0.0, active - ended)
        room_for = 0.0 if paused else max(0.0, capacity - active)
        moved = min(queue, room_for)
        queue, active = queue - moved, active + moved
        admitted += round(moved)
        late = 45 if minute >= -18 else 0  # after the pause: waits longer than predicted
        for _ in range(round(moved)):
            metrics.eta_error_seconds.labels(room).observe(rng.gauss(12 - late, 9))
        if i >= POINTS - 12:  # the last two minutes: settle on the live state
            share = (i - (POINTS - 12)) / 11
            queue = queue * (1 - share) + WAITING * share
            active = active * (1 - share) + ACTIVE * share
        readings.append(
            Reading(
                t=end - (POINTS - 1 - i) * STEP,
                capacity=capacity,
                paused=paused,
                queue_length=round(queue),
                active=round(active),
                promoted=0,
                admitted_total=admitted,
                eta_buckets=eta_error_buckets(metrics.registry).get(room, ()),
            )
        )
    return readings


async def patch_and_claim(engine: Engine, promoted: list[httpx.AsyncClient], proxy: str) -> None:
    """Capacity 30 → 40 and a rate of 120/min, as an operator would; the next ten waiters
    claim their places (a heartbeat each), so the live room is 40 active and 25 waiting."""
    ops = engine.operations
    room = ops.rooms["shop"]
    await ops.set_overrides(room, {"capacity": ACTIVE, "admit_rate": 120}, {"capacity": ACTIVE})
    await ops.admit(room, ACTIVE - 30)
    for c in promoted:
        r = await c.post(proxy + "/_waitroom/heartbeat")
        assert r.json()["status"] == "admitted", r.text


async def test_console_with_an_hour_of_charts(browser: Browser, tmp_path: Path) -> None:
    # Configured at 30 and no rate; the operator raised it to 40 and set a rate (as charted).
    policy = RoomPolicy(name="shop", capacity=30, heartbeat_interval=10,
                        message="Tickets for Saturday only.")  # fmt: skip
    sale = RoomPolicy(name="members", capacity=200, match=("*/members",))
    async with serve_asgi(origin()) as origin_url:
        settings = Settings(rooms=(policy, sale), upstream=origin_url, secret="s" * 40)
        app = build_app(settings, store=MemoryStore(), controller_interval=0.2)
        clients = [httpx.AsyncClient(timeout=10) for _ in range(ACTIVE + WAITING)]
        async with serve_asgi(app) as proxy:
            for c in clients:
                await c.get(proxy + "/", headers={"accept": "application/json"})
            await patch_and_claim(app.engine, clients[30:ACTIVE], proxy)
            now = app.engine.operations.now()
            history = History(interval=STEP)
            # The hour ends a minute ahead, so the live sampler's readings (earlier) are
            # ignored and the picture holds still while it is taken.
            history.extend("shop", simulated_hour(now + 60))
            admin_app = build_admin(app.engine, TOKEN, history=history)
            async with serve_asgi(admin_app) as admin:
                async with httpx.AsyncClient(
                    base_url=admin, headers={"authorization": f"Bearer {TOKEN}"}
                ) as api:
                    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=50)
                    body = {"start_at": start.isoformat(),
                            "end_at": (start + timedelta(minutes=95)).isoformat()}  # fmt: skip
                    r = await api.put("/admin/rooms/shop/schedule", json=body)
                    assert r.status_code == 200, r.text
                context = await browser.new_context(
                    viewport={"width": 1200, "height": 1180}, color_scheme="light"
                )
                try:
                    page = await context.new_page()
                    await log_in(page, admin)
                    await expect(page.locator("#now-queue")).to_have_text(str(WAITING))
                    await expect(page.locator("#phase")).to_have_text("open")
                    await expect(page.locator("#next-change")).to_contain_text("until ended")
                    for chart in ("queue", "active", "admissions"):
                        assert await points(page, chart) >= POINTS - 1, chart
                    assert await points(page, "eta") > POINTS // 2
                    assert await page.locator("#chart-queue rect.paused").count() > 20
                    assert await page.evaluate("window.__cspViolations") == []
                    assert await page.evaluate("window.__errors") == []
                    shot = tmp_path / "console.png"
                    await page.screenshot(path=str(shot), full_page=True, animations="disabled")
                    if os.environ.get("WAITROOM_UPDATE_SCREENSHOT") == "1":
                        (REPO / "docs" / "console.png").write_bytes(shot.read_bytes())
                finally:
                    await context.close()
            await app.engine.controller.stop()
        for c in clients:
            await c.aclose()
