"""How deep the store client's pipelines get in a replica under load: one worker of the real
app (uvicorn, one core) answering waiting pages' heartbeats, Redis and the load client on the
other core.

    python -m bench.ceiling_depth                        # 8, 64 and 256 requests in flight
    python -m bench.ceiling_depth --in-flight 64 --seconds 10

A room of capacity 1 whose slot is held, ``--places`` waiters queued (all within 1,000 of the
front, so every heartbeat touches the store), then heartbeats with the places' tickets, as
many in flight at once as asked (keep-alive connections, one request at a time each). The
depth is the store's own count: script calls per socket read (``INFO stats``
``total_reads_processed``; one read takes a whole pipeline), over the phase. The figure the
ceiling's pipelined column assumes (``bench/ceiling.py --in-flight``) is checked here.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
from pathlib import Path
from typing import Any

import redis

from bench.apps import server_cmd
from bench.ceiling_store import pinned_redis
from bench.common import CLIENT_CPU, SERVER_CPU, Proc, cpu_count, free_port, pinned, wait_http
from bench.loadclient import LoadClient, Tally, drive
from bench.waiting import ROOM_TOML, evalsha_calls


def reads(client: redis.Redis) -> int:
    return int(client.info("stats")["total_reads_processed"])


async def phases(base: str, sync: redis.Redis, args: Any) -> list[dict[str, Any]]:
    client = LoadClient(base, pool_size=max(args.in_flight) + 8)
    accept = [(b"accept", b"application/json")]
    await client.request("GET", "/", accept)  # holds the only slot: everybody after waits
    tickets = []
    for _ in range(args.places):
        ticket = (await client.request("GET", "/", accept)).cookie("waitroom_ticket")
        assert ticket, "no ticket"
        tickets.append(ticket.encode())
    rows = []
    try:
        for in_flight in args.in_flight:
            tally = Tally()

            async def beat(i: int, tally: Tally = tally) -> None:
                cookie = b"waitroom_ticket=" + tickets[(i * 7919) % len(tickets)]
                r = await client.request(
                    "POST", "/_waitroom/heartbeat", [*accept, (b"cookie", cookie)]
                )
                tally.add(r.status, 0.0, r.status == 200 and b'"waiting"' in r.body)

            await drive(beat, duration=1.0, concurrency=in_flight)  # warm-up
            e0, r0 = evalsha_calls(sync), reads(sync)
            _done, secs = await drive(beat, duration=args.seconds, concurrency=in_flight)
            calls, socket_reads = evalsha_calls(sync) - e0, reads(sync) - r0
            rows.append({
                "in_flight": in_flight,
                "heartbeats_per_s": tally.ok / secs,
                "failed": tally.failed,
                "script_calls": calls,
                "depth": calls / max(1, socket_reads),
            })  # fmt: skip
    finally:
        await client.aclose()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--in-flight", type=int, nargs="+", default=[8, 64, 256])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--places", type=int, default=500)
    args = ap.parse_args(argv)
    two = cpu_count() >= 2
    tmp = Path(tempfile.mkdtemp(prefix="waitroom-ceiling-depth-"))
    (tmp / "room.toml").write_text(ROOM_TOML)
    with pinned_redis(CLIENT_CPU if two else None) as server:
        env = {
            "WAITROOM_CONFIG": str(tmp / "room.toml"),
            "WAITROOM_UPSTREAM": f"http://127.0.0.1:{free_port()}",  # never reached
            "WAITROOM_STORE_URL": server.url,
            "WAITROOM_SECRET": secrets.token_urlsafe(32),
            "WAITROOM_CLIENT_RATE_LIMIT": "0",
            "WAITROOM_LOG_LEVEL": "warning",
        }
        port = free_port()
        cmd = server_cmd("uvicorn", "waitroom", port)
        proc = Proc("waitroom", pinned(SERVER_CPU if two else None, cmd), env=env,
                    log=tmp / "worker.log")  # fmt: skip
        sync = server.client()
        try:
            wait_http(f"http://127.0.0.1:{port}/_waitroom/healthz", timeout=30)
            rows = asyncio.run(phases(f"http://127.0.0.1:{port}", sync, args))
        finally:
            proc.stop()
            sync.close()
    print("| heartbeats in flight | heartbeats / s | failed | store calls per round trip |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['in_flight']} | {r['heartbeats_per_s']:,.0f} | {r['failed']} | "
              f"{r['depth']:.1f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
