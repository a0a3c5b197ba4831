"""What the visitor sees of the origin's response (issue 11, items 11 and 12).

- every ``Waitroom-Command`` is removed, whatever its case, and only the first valid one acts;
- a 502/504 is a small JSON object when the client asked for JSON;
- redirects to the upstream's own address are rewritten to the public one (nginx's
  ``proxy_redirect default``), so no visitor is sent to the origin directly, past the room.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.fixtures.nginx import nginx_static
from tests.fixtures.origin import closed_port_url, serve_asgi
from tests.fixtures.recording_origin import Script, recording_origin
from tests.integration.test_upstream_reuse import through_proxy
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.server import build_app

SECRET = "response-secret-" + "s" * 32


@asynccontextmanager
async def room_app(upstream: str) -> AsyncIterator[httpx.AsyncClient]:
    """The production app (memory store), one room of capacity 1, a client already admitted."""
    policy = RoomPolicy(name="resp", capacity=1, heartbeat_interval=1, abandon_after=30)
    app = build_app(Settings(rooms=(policy,), upstream=upstream, secret=SECRET))
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as c:
        yield c


def ok(headers: bytes) -> Script:
    return Script(b"HTTP/1.1 200 OK\r\n" + headers + b"content-length: 2\r\n\r\nok")


async def test_every_waitroom_command_is_stripped_and_the_first_valid_acts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scripts = {
        b"/many": ok(
            b"Waitroom-Command: bogus\r\nWAITROOM-COMMAND: complete\r\n"
            b"waitroom-command: extend=600\r\nWaitRoom-Command: revoke\r\n"
        ),
    }
    caplog.set_level(logging.WARNING)
    async with recording_origin(scripts) as origin, room_app(origin.url) as c:
        r = await c.get("/many")
        assert r.status_code == 200 and r.text == "ok"
        assert "waitroom-command" not in {k.lower() for k in r.headers}
        # "complete" (the first valid one) ended the session: its cookie is cleared, and no
        # extend=600 cookie was set.
        cookies = r.headers.get_list("set-cookie")
        assert any(v.startswith("waitroom_session=;") for v in cookies), cookies
        assert not any("Max-Age=600" in v for v in cookies)
    text = caplog.text
    assert "'bogus'" in text and "acting on the first: 'complete'" in text


async def test_a_502_answers_json_when_json_was_asked() -> None:
    async with room_app(closed_port_url()) as c:
        r = await c.get("/api", headers={"accept": "application/json"})
        assert r.status_code == 502
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"] == "bad_gateway" and r.json()["status"] == 502
        assert len(r.content) < 200
        # The visitor admitted by this request keeps the place: the 502 carries the cookie.
        assert any(v.startswith("waitroom_session=ey") for v in r.headers.get_list("set-cookie"))
        html = await c.get("/api", headers={"accept": "text/html,application/json"})
        assert html.status_code == 502 and html.headers["content-type"].startswith("text/html")


async def test_a_504_answers_json_when_json_was_asked() -> None:
    gate = asyncio.Event()
    scripts = {b"/slow": Script(b"", gate=gate, rest=b"HTTP/1.1 200 OK\r\n\r\n")}
    async with (
        recording_origin(scripts) as origin,
        through_proxy(origin.url, read_timeout=0.3) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as c,
    ):
        r = await c.get("/slow", headers={"accept": "application/json"})
        gate.set()
    assert r.status_code == 504 and r.json()["error"] == "gateway_timeout"


async def test_redirects_to_the_upstream_itself_are_rewritten_to_the_public_address() -> None:
    scripts: dict[bytes, Script] = {}
    async with recording_origin(scripts) as origin:
        me = f"http://127.0.0.1:{origin.port}".encode()
        scripts[b"/std/r"] = Script(
            b"HTTP/1.1 302 Found\r\nlocation: " + me + b"/std/vec/?a=1\r\n"
            b"content-location: " + me.upper().replace(b"HTTP", b"http") + b"/std/x\r\n"
            b"refresh: 5; url=" + me + b"/std\r\ncontent-length: 0\r\n\r\n"
        )
        scripts[b"/std/keep"] = Script(
            b"HTTP/1.1 302 Found\r\nlocation: " + me + b"/other\r\n"
            b"content-location: /std/rel\r\nrefresh: 1; url=http://elsewhere.example/\r\n"
            b"link: <" + me + b"/std/a>\r\ncontent-length: 0\r\n\r\n"
        )
        scripts[b"/std/port"] = Script(
            b"HTTP/1.1 301 Moved\r\nlocation: " + me + b"0/std/x\r\ncontent-length: 0\r\n\r\n"
        )
        async with (
            through_proxy(origin.url + "/std", trusted_proxies=["127.0.0.0/8"]) as (url, _),
            httpx.AsyncClient(base_url=url, timeout=10) as c,
        ):
            r = await c.get("/r", headers={"host": "shop.example"})
            t = await c.get("/r", headers={"host": "shop.example", "x-forwarded-proto": "https"})
            k = await c.get("/keep", headers={"host": "shop.example"})
            p = await c.get("/port", headers={"host": "shop.example"})
    assert r.headers["location"] == "http://shop.example/vec/?a=1"
    assert r.headers["content-location"] == "http://shop.example/x"
    assert r.headers["refresh"] == "5; url=/"
    assert t.headers["location"] == "https://shop.example/vec/?a=1"
    # Outside the prefix, relative, other sites, other headers: left as they are (as nginx).
    assert k.headers["location"] == me.decode() + "/other"
    assert k.headers["content-location"] == "/std/rel"
    assert k.headers["refresh"] == "1; url=http://elsewhere.example/"
    assert k.headers["link"] == "<" + me.decode() + "/std/a>"
    assert p.headers["location"] == me.decode() + "0/std/x"  # another port is another site


async def test_the_origin_receives_no_via() -> None:
    async with recording_origin() as origin, through_proxy(origin.url) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=10) as c:
            r = await c.get("/x", headers={"accept-encoding": "gzip"})
    assert r.status_code == 200
    (req,) = origin.requests
    assert req.header(b"via") == []


async def test_a_waitroom_command_never_reaches_the_visitor_on_a_path_without_session() -> None:
    # Bypass and no-room paths forward without the room's response hook.
    scripts = {b"/x": ok(b"waitroom-command: complete\r\nWaitroom-Command: revoke\r\n")}
    async with (
        recording_origin(scripts) as origin,
        through_proxy(origin.url) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as c,
    ):
        r = await c.get("/x")
    assert r.status_code == 200 and r.text == "ok"
    assert "waitroom-command" not in {k.lower() for k in r.headers}


async def test_a_stock_nginx_origin_keeps_compressing(tmp_path: Path) -> None:
    # nginx's default gzip_proxied off compresses nothing for a request carrying Via: a proxy
    # that added one made a docs site 6.7x heavier.
    (tmp_path / "page.txt").write_text("waiting room " * 400)
    async with (
        nginx_static(tmp_path) as origin_url,
        through_proxy(origin_url) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=10) as c,
    ):
        r = await c.get("/page.txt", headers={"accept-encoding": "gzip"})
    assert r.status_code == 200 and r.text == "waiting room " * 400
    assert r.headers.get("content-encoding") == "gzip"
    assert r.num_bytes_downloaded < 1000  # on the wire, before httpx decodes it
