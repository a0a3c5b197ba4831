"""``waitroom-proxy demo`` runs with no external services: two visitors in, the third waits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx


def free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free pair of ports")


def test_demo_command() -> None:
    port = free_port_pair()
    proc = subprocess.Popen(
        [sys.executable, "-m", "waitroom_proxy", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url + "/_waitroom/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "demo did not start"
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.2)
        seen = []
        for _ in range(3):
            with httpx.Client(base_url=url, timeout=5) as c:
                r = c.get("/", headers={"accept": "text/html"})
                seen.append("Demo shop" in r.text)
        assert seen == [True, True, False]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    assert "open http://127.0.0.1:" in out
    assert "Traceback" not in out
