"""examples/fastapi_app.py under real uvicorn (``uvicorn examples.fastapi_app:app``, a child
process): the host's routes and lifespan keep working inside WaitroomMiddleware; at capacity 1
a second visitor waits; the checkout's ``Waitroom-Command: complete`` frees the slot and the
waiter is admitted."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

import httpx

from tests.examples.procs import REPO, Proc, free_port, missing, wait_http

SECRET = "fastapi-example-" + "s" * 32
WAITING = 'id="wr-waiting-h"'


def test_fastapi_example(tmp_path: Path) -> None:
    if importlib.util.find_spec("fastapi") is None:
        missing("fastapi is not installed: it is in the test extras (pip install -e '.[test]')")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITROOM_")}
    env |= {"WAITROOM_CAPACITY": "1", "WAITROOM_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
    server = Proc(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app",
         "--host", "127.0.0.1", "--port", str(port)],
        tmp_path / "uvicorn.log", env=env, cwd=REPO,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/_waitroom/healthz", server)
        with (
            httpx.Client(base_url=url, timeout=10) as a,
            httpx.Client(base_url=url, timeout=10) as b,
        ):
            r = a.get("/")
            assert r.status_code == 200 and "<h1>Example shop</h1>" in r.text
            assert "concert-ticket: 100 left" in r.text, "the lifespan's state is there"
            r = a.get("/api/stock")
            assert r.json() == {
                "stock": {"concert-ticket": 100, "festival-pass": 20},
                "orders": 0,
                "session": True,
            }

            r = b.get("/")
            assert r.status_code == 200 and WAITING in r.text and "Example shop" not in r.text
            status = b.get("/", headers={"accept": "application/json"}).json()
            assert (status["status"], status["position"]) == ("waiting", 1)
            r = b.post("/checkout")  # no session: the shop is not reached
            assert WAITING in r.text

            r = a.post("/checkout")
            assert r.status_code == 200 and "Order number 1." in r.text
            assert "waitroom-command" not in r.headers
            assert any(c.startswith("waitroom_session=;") for c in r.headers.get_list("set-cookie"))

            deadline = time.monotonic() + 10
            while (body := b.post("/_waitroom/heartbeat").json())["status"] != "admitted":
                assert body["status"] == "waiting" and time.monotonic() < deadline, body
                time.sleep(0.2)
            assert body["return_to"] == "/"
            r = b.get("/")
            assert r.status_code == 200 and "concert-ticket: 99 left" in r.text
            # A checked out: the slot is B's now, A waits like any newcomer.
            assert a.get("/", headers={"accept": "application/json"}).json()["status"] == "waiting"
    finally:
        status = server.stop()
    out = server.output()
    assert status in (0, -signal.SIGTERM), out[-3000:]
    assert "shop: started" in out and "shop: stopped after 1 order(s)" in out, out[-3000:]
    assert "Application shutdown complete" in out and "Traceback" not in out
