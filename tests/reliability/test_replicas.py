"""Three replica processes on one Redis under load: one is killed (SIGKILL), one is drained
(SIGTERM). The test plays the load balancer: round-robin over live replicas, and it takes a
replica out of rotation the moment it kills or stops it (as a readiness probe would, later).

Pass criteria: only requests in flight on the killed replica fail; the store's session count
stays exact; SIGTERM lets every in-flight request finish (0 failed) and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.asgi_server import serve_asgi
from tests.fixtures.redis_server import free_port
from tests.reliability.rig import SECRET, report
from waitroom_proxy.adapters.redis_store import RedisStore

SESSIONS = 12
ORIGIN_DELAY = 0.15


class SlowOrigin:
    def __init__(self) -> None:
        self.hits = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await asyncio.sleep(ORIGIN_DELAY)
        self.hits += 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"ok"})


def _spawn(config: Path, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "waitroom_proxy", "serve", "--config", str(config),
             "--port", str(port), "--log-level", "warning"],
            env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


async def _ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1) as c:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "replica exited"
            with contextlib.suppress(httpx.HTTPError):
                if (await c.get(url + "/_waitroom/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError(url)


async def test_replica_killed_and_drained_under_load(redis_server: Any, tmp_path: Path) -> None:
    redis_server.flush()
    origin = SlowOrigin()
    procs: list[subprocess.Popen[bytes]] = []
    async with serve_asgi(origin) as origin_url:
        config = tmp_path / "waitroom.toml"
        config.write_text(
            f'[server]\nupstream = "{origin_url}"\nstore_url = "{redis_server.url}"\n'
            "client_rate_limit = 0\n\n"
            f'[[rooms]]\nname = "rep"\ncapacity = {SESSIONS + 4}\nactivity_interval = 1\n',
            "utf-8",
        )
        env = {**os.environ, "WAITROOM_SECRET": SECRET}
        env.pop("WAITROOM_CONFIG", None)
        ports = [free_port() for _ in range(3)]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        try:
            for i, p in enumerate(ports):
                procs.append(_spawn(config, p, env, tmp_path / f"replica{i}.log"))
            for u, proc in zip(urls, procs, strict=True):
                await _ready(u, proc)
            live = [0, 1, 2]
            clients = []
            for i in range(SESSIONS):
                c = httpx.AsyncClient(timeout=10)
                r = await c.get(urls[i % 3] + "/s")
                assert r.status_code == 200 and r.text == "ok", r.text[:200]
                clients.append(c)
            results: list[tuple[int, float, float, str]] = []  # replica, start, end, outcome
            stop = asyncio.Event()
            turn = [0]

            async def worker(c: httpx.AsyncClient) -> None:
                while not stop.is_set():
                    turn[0] += 1
                    replica = live[turn[0] % len(live)]
                    t0 = time.monotonic()
                    try:
                        r = await c.get(urls[replica] + "/s")
                        outcome = (
                            "ok" if r.status_code == 200 and r.text == "ok" else str(r.status_code)
                        )
                    except httpx.HTTPError as exc:
                        outcome = type(exc).__name__
                    results.append((replica, t0, time.monotonic(), outcome))

            tasks = [asyncio.create_task(worker(c)) for c in clients]
            await asyncio.sleep(1.5)
            # SIGKILL replica 2, out of rotation at once.
            live.remove(2)
            t_kill = time.monotonic()
            os.kill(procs[2].pid, signal.SIGKILL)
            await asyncio.sleep(1.5)
            store = RedisStore(redis_server.url, timeout=1.0)
            active_after_kill = (await store.stats("rep")).active
            # SIGTERM replica 1, out of rotation at once: it must drain.
            live.remove(1)
            t_term = time.monotonic()
            os.kill(procs[1].pid, signal.SIGTERM)
            exit_code = await asyncio.to_thread(procs[1].wait, 15)
            drained_s = time.monotonic() - t_term
            log1 = (tmp_path / "replica1.log").read_text(errors="replace")
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*tasks)
            for c in clients:
                await c.post(urls[0] + "/_waitroom/leave")
                await c.aclose()
            active_after_leave = (await store.stats("rep")).active
            await store.close()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)

    failed = [r for r in results if r[3] != "ok"]
    killed_in_flight = [r for r in results if r[0] == 2 and r[1] < t_kill < r[2] + 0.001]
    drained = [r for r in results if r[0] == 1 and r[1] < t_term]
    drained_failed = [r for r in drained if r[3] != "ok"]
    report("replicas: 1 of 3 killed, 1 drained", requests=len(results), failed=len(failed),
           failed_in_flight_on_killed=sum(1 for r in failed if r in killed_in_flight),
           failed_elsewhere=sum(1 for r in failed if r not in killed_in_flight),
           active_after_kill=active_after_kill, sessions=SESSIONS,
           sigterm_requests=len(drained), sigterm_failed=len(drained_failed),
           sigterm_exit=exit_code, drain_s=drained_s,
           active_after_leave=active_after_leave)  # fmt: skip
    assert all(r in killed_in_flight for r in failed), [
        r for r in failed if r not in killed_in_flight
    ]
    assert len(failed) <= SESSIONS
    assert active_after_kill == SESSIONS
    # uvicorn re-raises the signal it handled once shut down: -SIGTERM after a clean drain.
    assert exit_code in (0, -signal.SIGTERM) and not drained_failed
    assert "Traceback" not in log1
    assert active_after_leave == 0
