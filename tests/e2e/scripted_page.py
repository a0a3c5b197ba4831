"""A scripted room for the waiting page in headless Chromium, served by a real uvicorn server on
loopback.

The server renders the page with :class:`PageRenderer` under the production CSP and answers
``POST /_waitroom/heartbeat`` with whatever JSON the test scripts (``room.answer``), so each
test steps the page through states deterministically. The server runs in a thread with its own
loop; the browser tests run on the session loop (see ``tests/fixtures/browser.py``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from playwright.async_api import Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from waitroom_proxy.asgi.page import PageRenderer, content_security_policy, new_nonce

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
