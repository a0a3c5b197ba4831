"""The request chain: request ids, JSON access log, recovery, CORS on the JSON routes."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import httpx
import pytest

from tests.fixtures.asgi_server import serve_asgi
from tests.fixtures.origin import run_origin
from waitroom_proxy.adapters.memory_store import MemoryStore
from waitroom_proxy.asgi.chain import AccessLogWriter, RequestContext
from waitroom_proxy.config import Settings
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.logs import JsonFormatter, RequestIdFilter
from waitroom_proxy.server import build_app

SECRET = "chain-" + "c" * 32


@pytest.fixture(autouse=True)
def access_logger_on() -> Any:
    logger = logging.getLogger("waitroom_proxy.access")
    old = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(old)


async def test_request_id_and_access_log() -> None:
    buf = io.StringIO()
    async with run_origin() as origin:
        settings = Settings(rooms=(RoomPolicy(name="c", capacity=5),), upstream=origin.url,
                            secret=SECRET)  # fmt: skip
        app = build_app(settings, store=MemoryStore())
        app.app._writer = AccessLogWriter(buf)  # the guard wraps the request context
        async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as c:
            r1 = await c.get("/echo/a", headers={"x-request-id": "abc-123.X_y"})
            r2 = await c.get("/echo/b", headers={"x-request-id": "bad id;<x>"})
            r3 = await c.get("/echo/c")
    assert r1.headers["x-request-id"] == "abc-123.X_y", "a sane client id is kept"
    assert r2.headers["x-request-id"] != "bad id;<x>"
    assert r3.headers["x-request-id"] not in (
        r1.headers["x-request-id"],
        r2.headers["x-request-id"],
    )
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    by_id = {x["request_id"]: x for x in lines}
    line = by_id["abc-123.X_y"]
    assert (line["method"], line["path"], line["status"]) == ("GET", "/echo/a", 200)
    assert line["logger"] == "waitroom_proxy.access" and line["duration_ms"] >= 0
    assert line["client"] == "127.0.0.1" and line["bytes"] > 0
    assert {r2.headers["x-request-id"], r3.headers["x-request-id"]} <= set(by_id)


async def test_recovery_answers_a_plain_500_and_logs_with_the_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raise RuntimeError("secret internals")

    buf = io.StringIO()
    app = RequestContext(broken, writer=AccessLogWriter(buf))
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.ERROR, logger="waitroom_proxy.asgi.chain"):
        async with serve_asgi(app, lifespan="off") as url, httpx.AsyncClient(base_url=url) as c:
            r = await c.get("/x", headers={"x-request-id": "req-500"})
    assert r.status_code == 500
    assert "secret internals" not in r.text and "Traceback" not in r.text
    assert r.headers["x-request-id"] == "req-500"
    record = next(rec for rec in caplog.records if "unhandled error" in rec.getMessage())
    assert record.request_id == "req-500"  # type: ignore[attr-defined]
    formatted = json.loads(JsonFormatter().format(record))
    assert formatted["request_id"] == "req-500" and "secret internals" in formatted["exc"]
    assert json.loads(buf.getvalue())["status"] == 500


async def test_cors_only_for_configured_origins() -> None:
    async with run_origin() as origin:
        settings = Settings(rooms=(RoomPolicy(name="c", capacity=5),), upstream=origin.url,
                            secret=SECRET, cors_origins=("https://shop.example",))  # fmt: skip
        app = build_app(settings, store=MemoryStore(), access_log=False)
        async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as c:
            pre = {"access-control-request-method": "POST"}
            ok = await c.options("/_waitroom/heartbeat",
                                 headers={"origin": "https://shop.example", **pre})  # fmt: skip
            assert ok.headers["access-control-allow-origin"] == "https://shop.example"
            assert ok.headers["access-control-allow-credentials"] == "true"
            bad = await c.options("/_waitroom/heartbeat",
                                  headers={"origin": "https://evil.example", **pre})  # fmt: skip
            assert "access-control-allow-origin" not in bad.headers
            r = await c.get("/_waitroom/status", headers={"origin": "https://evil.example"})
            assert "access-control-allow-origin" not in r.headers
