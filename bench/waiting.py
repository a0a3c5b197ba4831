"""Part 2: waiting-room traffic on one replica (one worker process on one core).

A room of capacity 1 whose only slot is held, so every newcomer queues. The async load client
(:mod:`bench.loadclient`, keep-alive connections, pinned with Redis to the other core) runs:

- **enqueue (JSON)**: ``GET /`` with ``Accept: application/json``, no cookie: a new place each;
- **enqueue (HTML page)**: the same as a browser's first visit (the waiting page is rendered);
- **heartbeat**: ``POST /_waitroom/heartbeat`` with the ticket cookies of the enqueued places,
  reused round-robin.

Store commands per operation: the ``INFO commandstats`` delta over the phase (``INFO``
excluded) minus the admission controller's background rate, measured over an idle window just
before the phase.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench.admitted import store_calls
from bench.apps import server_cmd
from bench.common import (
    SERVER_CPU,
    Proc,
    free_port,
    group_cpu_seconds,
    loadavg,
    pinned,
    wait_http,
)
from bench.loadclient import LoadClient, Tally, drive

ROOM_TOML = """
[[rooms]]
name = "wait"
capacity = 1
abandon_after = 3600
"""


def evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def _phase(
    client: LoadClient,
    name: str,
    request: Any,
    *,
    duration: float,
    concurrency: int,
    sync: redis.Redis,
    idle: float,
    pgid: int,
) -> dict[str, Any]:
    # The controller's background store traffic, measured while nothing else happens.
    c0, e0 = store_calls(sync), evalsha_calls(sync)
    await asyncio.sleep(idle)
    bg_calls = (store_calls(sync) - c0) / idle
    bg_eval = (evalsha_calls(sync) - e0) / idle
    tally = Tally()
    c0, e0 = store_calls(sync), evalsha_calls(sync)
    cpu0 = time.process_time()
    server0 = group_cpu_seconds(pgid)

    async def op(i: int) -> None:
        t = time.perf_counter()
        try:
            ok = await request(i)
        except Exception:
            tally.add(0, (time.perf_counter() - t) * 1000, False)
            raise
        tally.add(ok[0], (time.perf_counter() - t) * 1000, ok[1])

    _done, secs = await drive(op, duration=duration, concurrency=concurrency)
    client_cpu = (time.process_time() - cpu0) / secs
    server_cpu = group_cpu_seconds(pgid) - server0
    calls = store_calls(sync) - c0 - bg_calls * secs
    evals = evalsha_calls(sync) - e0 - bg_eval * secs
    n = max(1, tally.ok + tally.failed)
    return {
        "op": name,
        "per_s": tally.ok / secs,
        "p50_ms": tally.percentile(50),
        "p99_ms": tally.percentile(99),
        "errors": tally.failed,
        "statuses": dict(sorted(tally.statuses.items())),
        "evalsha_per_op": evals / n,
        "commands_per_op": calls / n,
        "client_cpu": client_cpu,
        "server_cpu_us": 1e6 * server_cpu / n,
        "seconds": secs,
    }


async def _run(
    base: str, sync: redis.Redis, duration: float, concurrency: int, idle: float, pgid: int
) -> list[dict[str, Any]]:
    client = LoadClient(base, pool_size=concurrency + 8)
    tickets: list[str] = []
    json_accept = [(b"accept", b"application/json")]
    html_accept = [(b"accept", b"text/html,application/xhtml+xml")]
    # Hold the only slot, so that everybody after this queues (the origin is not running: this
    # one visitor is admitted, then gets a 502, which does not matter here).
    await client.request("GET", "/", json_accept)

    async def enqueue_json(i: int) -> tuple[int, bool]:
        r = await client.request("GET", "/", json_accept)
        ticket = r.cookie("waitroom_ticket")
        if ticket:
            tickets.append(ticket)
        return r.status, r.status == 200 and ticket is not None

    async def enqueue_html(i: int) -> tuple[int, bool]:
        r = await client.request("GET", "/", html_accept)
        ticket = r.cookie("waitroom_ticket")
        if ticket:
            tickets.append(ticket)
        return r.status, r.status == 200 and ticket is not None and b"<html" in r.body[:400]

    async def heartbeat(i: int) -> tuple[int, bool]:
        ticket = tickets[(i * 7919) % len(tickets)]
        r = await client.request(
            "POST", "/_waitroom/heartbeat",
            [(b"accept", b"application/json"), (b"cookie", b"waitroom_ticket=" + ticket.encode())],
        )  # fmt: skip
        return r.status, r.status == 200 and b'"waiting"' in r.body

    rows = []
    try:
        # warm-up: connections, Jinja template, scripts loaded
        await drive(enqueue_html, duration=min(1.0, duration), concurrency=concurrency)
        kw = {
            "duration": duration,
            "concurrency": concurrency,
            "sync": sync,
            "idle": idle,
            "pgid": pgid,
        }
        rows.append(await _phase(client, "enqueue (JSON)", enqueue_json, **kw))
        rows.append(await _phase(client, "enqueue (HTML page)", enqueue_html, **kw))
        rows.append(await _phase(client, "heartbeat", heartbeat, **kw))
    finally:
        await client.aclose()
    for row in rows:
        row["queue_length"] = len(tickets)
    return rows


def run(
    *,
    store_url: str,
    duration: float,
    concurrency: int,
    servers: list[str],
    idle: float = 2.0,
    workdir: Path | None = None,
) -> dict[str, Any]:
    tmp = Path(workdir or tempfile.mkdtemp(prefix="waitroom-bench-waiting-"))
    (tmp / "room.toml").write_text(ROOM_TOML)
    origin_port = free_port()  # never reached: nobody is admitted after the first visitor
    env = {
        "WAITROOM_CONFIG": str(tmp / "room.toml"),
        "WAITROOM_UPSTREAM": f"http://127.0.0.1:{origin_port}",
        "WAITROOM_STORE_URL": store_url,
        "WAITROOM_SECRET": secrets.token_urlsafe(32),
        "WAITROOM_CLIENT_RATE_LIMIT": "0",
        "WAITROOM_LOG_LEVEL": "warning",
    }
    sync = redis.Redis.from_url(store_url, decode_responses=True)
    results: dict[str, Any] = {"load_before": loadavg(), "rows": {}}
    try:
        for server in servers:
            sync.flushall()
            port = free_port()
            proc = Proc(
                f"waitroom ({server})",
                pinned(SERVER_CPU, server_cmd(server, "waitroom", port)),
                env=env,
                log=tmp / f"waiting-{server}.log",
            )
            try:
                wait_http(f"http://127.0.0.1:{port}/_waitroom/healthz", timeout=30)
                rows = asyncio.run(
                    _run(f"http://127.0.0.1:{port}", sync, duration, concurrency, idle, proc.pid)
                )
                if not proc.alive():
                    raise RuntimeError(f"{proc.name} died (see {tmp})")
            finally:
                proc.stop()
            results["rows"][server] = rows
    finally:
        sync.close()
    results["load_after"] = loadavg()
    return results
