"""The console's history under ``waitroom-proxy serve`` itself (a real process): the admin
listener runs without a lifespan there, and the sampler still starts with the listener, not
with the first request; the process still shuts down cleanly with it running (uvicorn ends a
single process by re-raising the SIGTERM it handled, so its status is -15 either way)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.examples.procs import Proc, free_port, venv_script, wait_http
from tests.integration.test_serve_process import SECRET, TOKEN, clean_env, origin

__all__ = ["origin"]  # the fixture, imported for this module's test


def test_serve_samples_from_the_start(tmp_path: Path, origin: str) -> None:
    port, admin = free_port(), free_port()
    env = clean_env(WAITROOM_SECRET=SECRET, WAITROOM_ADMIN_TOKEN=TOKEN)
    proxy = Proc(
        [venv_script("waitroom-proxy"), "serve", "--upstream", origin, "--capacity", "5",
         "--port", str(port), "--admin-port", str(admin)],
        tmp_path / "proxy.log", env=env,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/_waitroom/healthz", proxy, timeout=60)
        auth = {"authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{admin}", headers=auth, timeout=5) as a:
            # The very first request to the admin listener: the samples are already there.
            rooms = a.get("/admin/rooms/default/history")
            assert rooms.status_code == 200, rooms.text
            body = rooms.json()
            assert body["interval_seconds"] == 10.0 and body["points"] == 360
            assert len(body["samples"]) >= 1, "sampling began with the listener"
            first = body["samples"][0]
            assert first["capacity"] == 5 and first["queue_length"] == 0
            page = a.get("/admin/")
            assert page.status_code == 200 and "chart-queue" in page.text
    finally:
        status = proxy.stop(signal.SIGTERM)
    output = proxy.output()
    assert status in (0, -signal.SIGTERM), output[-3000:]
    assert "Application shutdown complete." in output, output[-3000:]
    assert "admin history: sampling failed" not in output and "Traceback" not in output
