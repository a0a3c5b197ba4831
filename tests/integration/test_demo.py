"""``waitroom-proxy demo`` runs with no external services: two visitors in, the third waits.

It needs one port (its toy origin takes a free loopback port of its own), says that each
visitor needs a private window or another browser, and a port in use ends in one line that
names it, before any banner.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from tests.fixtures.redis_server import free_port


def start_demo(port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "waitroom_proxy", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_up(proc: subprocess.Popen[str], url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url + "/_waitroom/healthz", timeout=1)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "demo did not start"
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.2)


def test_demo_command() -> None:
    port = free_port()
    # The port after it is taken: the demo does not need it (it used to bind port + 1).
    with socket.socket() as neighbour:
        try:
            neighbour.bind(("127.0.0.1", port + 1))
            neighbour.listen()
        except OSError:
            pass  # taken by someone else already: just as good
        proc = start_demo(port)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_up(proc, url)
            seen = []
            for _ in range(3):
                with httpx.Client(base_url=url, timeout=5) as c:
                    r = c.get("/", headers={"accept": "text/html"})
                    seen.append("Demo shop" in r.text)
            assert seen == [True, True, False]
        finally:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=15)
    assert f"open http://127.0.0.1:{port}/ in up to 3 browser windows" in out
    assert "private window or another browser" in out
    assert "Traceback" not in out
    assert proc.returncode == 0, out


def test_demo_on_a_port_in_use_says_so_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = start_demo(port)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1, out
    assert out.strip().splitlines() == [
        f"cannot listen on 127.0.0.1:{port} (--port): address already in use: another process "
        "listens there; stop it or choose another port"
    ], out
