"""examples/static-site: waitroom-proxy (the example's own waitroom.toml) in front of
``python -m http.server`` serving the example's site, both real processes on free ports.

Capacity 2: two visitors get the site's HTML, the third the waiting page; static assets bypass
the room; when one visitor leaves, the third is admitted through the heartbeat and gets the
page first asked for. Both processes stop cleanly on SIGTERM, and so does ``run.sh``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.examples.procs import REPO, Proc, free_port, venv_script, wait_http

EXAMPLE = REPO / "examples" / "static-site"
WAITING = 'id="wr-waiting-h"'


def proxy_env() -> dict[str, str]:
    """The environment minus WAITROOM_* settings a developer may have exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITROOM_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_admitted(c: httpx.Client, timeout: float = 10.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, object] = c.post("/_waitroom/heartbeat").json()
        if body["status"] == "admitted":
            return body
        assert body["status"] == "waiting", body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[str, Proc, Proc]]:
    site_port, proxy_port = free_port(), free_port()
    site = Proc(
        [sys.executable, "-m", "http.server", str(site_port), "--bind", "127.0.0.1",
         "--directory", str(EXAMPLE / "site")],
        tmp_path / "site.log", env=proxy_env(),
    )  # fmt: skip
    proxy = Proc(
        [venv_script("waitroom-proxy"), "serve", "--config", str(EXAMPLE / "waitroom.toml"),
         "--upstream", f"http://127.0.0.1:{site_port}", "--port", str(proxy_port)],
        tmp_path / "proxy.log", env=proxy_env(),
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{site_port}/", site)
        wait_http(f"http://127.0.0.1:{proxy_port}/_waitroom/healthz", proxy)
        yield f"http://127.0.0.1:{proxy_port}", site, proxy
    finally:
        proxy.stop()
        site.stop()


def test_static_site_capacity_two(stack: tuple[str, Proc, Proc]) -> None:
    url, site, proxy = stack
    with (
        httpx.Client(base_url=url, timeout=10) as a,
        httpx.Client(base_url=url, timeout=10) as b,
        httpx.Client(base_url=url, timeout=10) as c,
    ):
        r = a.get("/")
        assert r.status_code == 200 and "<h1>Example Shop</h1>" in r.text
        assert "waitroom_session" in a.cookies
        r = b.get("/sale.html")
        assert r.status_code == 200 and "<h1>The Sale</h1>" in r.text

        r = c.get("/sale.html")
        assert r.status_code == 200 and WAITING in r.text and "The Sale" not in r.text
        assert "waitroom_ticket" in c.cookies and "waitroom_session" not in c.cookies
        status = c.get("/sale.html", headers={"accept": "application/json"}).json()
        assert (status["status"], status["position"]) == ("waiting", 1)
        # Bypassed paths are served to the waiter without a slot.
        for path, text in (("/static/style.css", "font-family"), ("/robots.txt", "User-agent")):
            r = c.get(path)
            assert r.status_code == 200 and text in r.text, path
        # Admitted visitors keep browsing.
        assert "<h1>The Sale</h1>" in a.get("/sale.html").text

        assert a.post("/_waitroom/leave").json()["status"] == "left"
        body = wait_admitted(c)
        assert body["return_to"] == "/sale.html"
        r = c.get("/sale.html")
        assert r.status_code == 200 and "<h1>The Sale</h1>" in r.text
        # A left: a new visit of A now waits behind nobody but the full room.
        r = a.get("/", headers={"accept": "application/json"})
        assert r.json()["status"] == "waiting"

    # Ctrl-C (SIGINT): a graceful shutdown and exit status 0, as in a terminal.
    assert proxy.stop(signal.SIGINT) == 0, proxy.output()[-3000:]
    assert site.stop(signal.SIGINT) == 0, site.output()[-3000:]
    out = proxy.output()
    assert "Application shutdown complete" in out, out[-3000:]
    assert "Traceback" not in out and "Aborted" not in out
    assert "Traceback" not in site.output()


def test_run_script(tmp_path: Path) -> None:
    """run.sh starts both on the ports given, prints the URLs and stops both on SIGTERM."""
    site_port, proxy_port = free_port(), free_port()
    env = proxy_env() | {
        "SITE_PORT": str(site_port),
        "PROXY_PORT": str(proxy_port),
        "PYTHON": sys.executable,
        "WAITROOM_PROXY": venv_script("waitroom-proxy"),
    }
    # Its own session (process group): after it ends, nothing may be left in that group.
    script = Proc(["bash", str(EXAMPLE / "run.sh")], tmp_path / "run.log", env=env,
                  new_session=True)  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{proxy_port}/_waitroom/healthz", script)
        with httpx.Client(base_url=f"http://127.0.0.1:{proxy_port}", timeout=10) as a:
            r = a.get("/")
            assert r.status_code == 200 and "<h1>Example Shop</h1>" in r.text
        r = httpx.get(f"http://127.0.0.1:{site_port}/sale.html", timeout=10)
        assert "<h1>The Sale</h1>" in r.text
    finally:
        status = script.stop()
        try:
            os.killpg(script.pid, 0)
            leftover = True
        except ProcessLookupError:
            leftover = False
        if leftover:  # never leave a child behind, even when the test fails
            os.killpg(script.pid, signal.SIGKILL)
    out = script.output()
    assert status == 0, out[-3000:]
    assert not leftover, "run.sh left a process running"
    assert f"proxy: http://127.0.0.1:{proxy_port}/" in out and "stopped" in out
    assert "Traceback" not in out


def test_run_script_without_the_command_says_so_before_starting(tmp_path: Path) -> None:
    env = proxy_env() | {"SITE_PORT": str(free_port()), "WAITROOM_PROXY": "no-such-command-x"}
    script = Proc(["bash", str(EXAMPLE / "run.sh")], tmp_path / "run.log", env=env)
    assert script.popen.wait(timeout=30) == 127
    out = script.output()
    assert out.strip().splitlines() == [
        "run.sh: cannot find the waitroom-proxy command (no-such-command-x): run scripts/install "
        "from the repository root first, or set WAITROOM_PROXY to its path"
    ], out
    with pytest.raises(httpx.TransportError):  # the site was not started either
        httpx.get(f"http://127.0.0.1:{env['SITE_PORT']}/", timeout=2)
