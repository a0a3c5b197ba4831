"""The proof-of-work Web Worker (``templates/pow-worker.js``) in headless Chromium.

A real uvicorn server on loopback serves a page under the waiting page's Content-Security-Policy
plus ``worker-src 'self'`` (what the page needs to start the worker) and the worker script with
a policy of its own that allows no network at all. Python issues a challenge at a low
difficulty, the worker solves it with each engine, and Python verifies the answer: the two
implementations agree on the protocol. Nothing is timed (``bench/pow_bench.py`` measures).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.fixtures.asgi_server import serve_asgi
from waitroom_proxy.asgi.page import content_security_policy, new_nonce
from waitroom_proxy.domain.pow import PowSigner, meets, solve

WORKER = (Path(__file__).resolve().parents[2] / "templates" / "pow-worker.js").read_text()
SIGNER = PowSigner(["pow-e2e-" + "k" * 32])
WORKER_CSP = "default-src 'none'"

SOLVE_JS = """([challenge, difficulty, engine, start, step]) => new Promise((resolve, reject) => {
  const w = new Worker("/pow-worker.js");
  w.onerror = (e) => reject(new Error("worker failed: " + e.message));
  w.onmessage = (e) => {
    if (e.data.type === "solved" || e.data.type === "error") { w.terminate(); resolve(e.data); }
  };
  w.postMessage({challenge: challenge, difficulty: difficulty, engine: engine,
                 start: start || 0, step: step || 1});
})"""


def app() -> Starlette:
    async def page(request: Request) -> Response:
        nonce = new_nonce()
        csp = content_security_policy(nonce) + "; worker-src 'self'"
        return HTMLResponse("<!doctype html><title>pow</title><p>pow", headers={
            "Content-Security-Policy": csp})  # fmt: skip

    async def worker(request: Request) -> Response:
        return Response(WORKER, media_type="text/javascript", headers={
            "Content-Security-Policy": WORKER_CSP, "X-Content-Type-Options": "nosniff"})  # fmt: skip

    return Starlette(routes=[Route("/pow", page), Route("/pow-worker.js", worker)])


@pytest_asyncio.fixture(loop_scope="session")
async def base() -> AsyncIterator[str]:
    async with serve_asgi(app(), lifespan="off") as url:
        yield url


@pytest.mark.parametrize("engine", ["js", "subtle"])
async def test_the_worker_solves_and_python_verifies(page: Page, base: str, engine: str) -> None:
    await page.goto(f"{base}/pow")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    for difficulty in (0, 1, 8, 12):
        c = SIGNER.issue("sale", difficulty, time.time())
        result: dict[str, Any] = await page.evaluate(SOLVE_JS, [c.text, difficulty, engine])
        assert result["type"] == "solved", result
        assert result["engine"] == engine  # 127.0.0.1 is a secure context: subtle exists
        solved = SIGNER.verify(c.text, result["counter"], room="sale", now=time.time())
        assert solved.challenge_id == c.challenge_id and solved.difficulty == difficulty
        # Both engines search in counter order: the first solution, the one Python finds.
        assert int(result["counter"]) == solve(c.text, difficulty)
        assert result["hashes"] == int(result["counter"]) + 1
    assert errors == []


@pytest.mark.parametrize("engine", ["js", "subtle"])
async def test_workers_can_share_the_search(page: Page, base: str, engine: str) -> None:
    # Worker i of n searches start + i, start + i + n, ...: digits roll over in place (99 997
    # + 7 = 100 004: one more digit, a second SHA-256 block for some challenges).
    await page.goto(f"{base}/pow")
    for start, step in ((99_990, 7), (9, 1), (999_999_999_990, 3)):
        c = SIGNER.issue("sale", 6, time.time())
        result = await page.evaluate(SOLVE_JS, [c.text, 6, engine, start, step])
        assert result["type"] == "solved", result
        counter = int(result["counter"])
        assert (counter - start) % step == 0
        expected = next(n for n in range(start, start + 10**6, step) if meets(c.text, n, 6))
        assert counter == expected
        SIGNER.verify(c.text, result["counter"], room="sale", now=time.time())


async def test_a_new_challenge_replaces_the_search_in_progress(page: Page, base: str) -> None:
    await page.goto(f"{base}/pow")
    hard = SIGNER.issue("sale", 40, time.time())  # would run for days
    easy = SIGNER.issue("sale", 4, time.time())
    result = await page.evaluate(
        """([hard, easy]) => new Promise((resolve) => {
          const w = new Worker("/pow-worker.js");
          w.onmessage = (e) => {
            if (e.data.type === "solved" || e.data.type === "error") { w.terminate(); resolve(e.data); }
          };
          w.postMessage({challenge: hard, difficulty: 40});
          setTimeout(() => w.postMessage({challenge: easy, difficulty: 4}), 50);
        })""",
        [hard.text, easy.text],
    )
    assert result["type"] == "solved" and result["hashes"] == int(result["counter"]) + 1
    SIGNER.verify(easy.text, result["counter"], room="sale", now=time.time())


async def test_the_worker_refuses_bad_requests(page: Page, base: str) -> None:
    await page.goto(f"{base}/pow")
    for challenge, difficulty, says in [
        ("x" * 201, 8, "oversized"),
        (None, 8, "missing"),
        ("wpow1.sale.8.1.é", 8, "printable ASCII"),
        ("wpow1.sale.8", 8.5, "whole number of bits"),
        ("wpow1.sale.8", 65, "whole number of bits"),
    ]:
        result = await page.evaluate(SOLVE_JS, [challenge, difficulty, "js"])
        assert result["type"] == "error" and says in result["message"], result
