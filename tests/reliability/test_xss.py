"""Hostile values in the waiting page and error pages, rendered in headless Chromium.

Every payload calls ``__pwn()`` if it ever runs; the page is loaded with ``set_content`` (no
CSP header), so escaping alone must stop it — the production CSP is a second wall, not the
first. The visitor-controlled value (``return_to``, from the URL asked for) also goes through
the real proxy, with its CSP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext

from tests.reliability.rig import admitted_client, client, proxy_rig, report
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.asgi.page import PageRenderer, new_nonce
from waitroom_proxy.domain.policy import RoomPolicy

PAYLOADS = [
    "<script>__pwn()</script>",
    '"><script>__pwn()</script>',
    "'><img src=x onerror=__pwn()>",
    '"><svg onload=__pwn()>',
    "</script><script>__pwn()</script>",
    "</title><script>__pwn()</script>",
    "javascript:__pwn()",
    '/" onmouseover=__pwn() x="',
    "{{ __pwn() }}",
    "<iframe srcdoc='<script>parent.__pwn()</script>'>",
    "<a href=javascript:__pwn()>x</a>",
    "-->\u2028<script>__pwn()</script>",
    '"];__pwn();//',
    "<!--<script>__pwn()</script>",
    "<math><mtext><table><mglyph><style><img src=x onerror=__pwn()>",
]


def hostile_status(payload: str) -> dict[str, Any]:
    return {
        "status": "waiting",
        "room": payload,
        "position": 3,
        "ahead": 2,
        "queue_length": 10,
        "eta_seconds": {"p50": 60, "p90": 120},
        "refresh_seconds": 30,
        "return_to": "/" + payload,
    }


async def _watch(context: BrowserContext) -> list[str]:
    """Count every call of ``__pwn`` and every dialog, across frames and navigations."""
    hits: list[str] = []
    await context.expose_function("__pwn", lambda *a: hits.append("call"))
    context.on("page", lambda p: p.on("dialog", lambda d: (hits.append("dialog"), d.dismiss())))
    return hits


JS_LINKS = "els => els.filter(e => e.protocol === 'javascript:').length"


async def _executions(context: BrowserContext, hits: list[str], html: str) -> int:
    before = len(hits)
    page = await context.new_page()
    try:
        await page.set_content(html, wait_until="domcontentloaded", timeout=10_000)
        await page.wait_for_timeout(30)
        for link in await page.query_selector_all("a, [onmouseover]"):
            await link.dispatch_event("mouseover")
        await page.wait_for_timeout(20)
        js_links = int(await page.eval_on_selector_all("a", JS_LINKS))
        return len(hits) - before + js_links  # a javascript: link would run on a click
    finally:
        await page.close()


@pytest.mark.parametrize(
    "template",
    ["builtin", "custom.html", "custom.jinja2", "custom.tpl"],
)
async def test_hostile_fields_never_execute(
    browser: Browser, tmp_path: Path, template: str
) -> None:
    if template == "builtin":
        renderer = PageRenderer(prefix="/_waitroom")
    else:
        path = tmp_path / template
        path.write_text(
            "<!doctype html><title>{{ room }}</title><h1>{{ room }}</h1>"
            '<a href="{{ return_to }}">back</a><p>{{ position_text }} {{ eta_text }}</p>',
            "utf-8",
        )
        renderer = PageRenderer(prefix="/_waitroom", template_path=str(path))
    pages = 0
    executed = 0
    context = await browser.new_context(java_script_enabled=True)
    try:
        hits = await _watch(context)
        for payload in PAYLOADS:
            html = renderer.waiting_page(hostile_status(payload), nonce=new_nonce())
            executed += await _executions(context, hits, html)
            pages += 1
            if template == "builtin":  # error pages come from the built-in template
                html = renderer.error_page(502, payload, payload)
                executed += await _executions(context, hits, html)
                pages += 1
    finally:
        await context.close()
    report(f"XSS ({template} template)", payloads=len(PAYLOADS), pages=pages,
           script_executions=executed)  # fmt: skip
    assert executed == 0


async def test_hostile_return_to_through_the_proxy(browser: Browser) -> None:
    policy = RoomPolicy(name="xss", capacity=1)
    executed = 0
    async with proxy_rig(policy, store=MemoryStore(), server={"client_rate_limit": 0}) as rig:
        holder = await admitted_client(rig.url)
        context = await browser.new_context()
        hits = await _watch(context)
        try:
            for payload in PAYLOADS:
                async with client(rig.url) as c:
                    r = await c.get("/" + payload.replace(" ", "%20"))
                    html, csp = r.text, r.headers.get("content-security-policy", "")
                page = await context.new_page()

                async def fulfil(
                    route: Any, request: Any, html: str = html, csp: str = csp
                ) -> None:
                    await route.fulfill(status=200, body=html, headers={
                        "content-type": "text/html", "content-security-policy": csp})  # fmt: skip

                await page.route("http://site.test/**", fulfil)
                await page.goto("http://site.test/w", wait_until="load")
                await page.wait_for_timeout(100)
                executed += int(await page.eval_on_selector_all("a", JS_LINKS))
                await page.close()
            executed += len(hits)
        finally:
            await context.close()
            await holder.aclose()
    report("XSS through the proxy (return_to)", payloads=len(PAYLOADS), script_executions=executed)
    assert executed == 0
