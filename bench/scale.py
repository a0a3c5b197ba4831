"""Part 3: scale and fairness. Three replicas, one Redis, NATS, one simulated crowd.

Processes (none pinned: they share every core): nginx as the origin, redis-server, nats-server
with JetStream, three ``uvicorn bench.apps:waitroom`` replicas on one store and one secret, and
this process: the simulated client, the store sampler (a thread) and an event listener.

The run, bounded and self-stopping:

1. **arrivals**: ``waiters`` visitors arrive at ``arrival_rate``/s (``GET /`` with
   ``Accept: application/json``), each on a random replica; their tickets are kept;
2. every waiter heart-beats (``POST /_waitroom/heartbeat``) when its ``refresh_seconds`` says
   (10 s near the front, longer far back: the waiting page's adaptive polling), over a few
   keep-alive connections per replica; a promoted waiter's next heartbeat claims its session;
   it then holds the session for ``hold`` seconds and leaves (``POST /_waitroom/leave``);
3. **phase A** (``phase_a`` seconds from the first arrival): capacity and ``admit_rate`` set,
   the rate binding: admissions per window against the target;
4. **phase B** (``phase_b`` seconds): ``admit_rate`` overridden to 0 through the store's room
   meta (as the admin API does), so capacity binds: time from a leave to the promotion that
   refills the slot.

Measured: ``active <= capacity`` sampled every 100 ms from the store (one MULTI of ZCARDs);
FIFO inversions (a waiter promoted in a later tick than one who arrived after it, or still
waiting at the end behind someone promoted); admissions per window vs the target; ETA p50
predicted at arrival vs the actual wait (arrival → promotion); store memory per waiter
(``used_memory`` delta and ``MEMORY USAGE`` of the queue set and touch hash over the queue
length). Promotions come from the replicas' ``position.admitted`` events on NATS (event time
and order), cross-checked with the store's ``admitted_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
import redis

from bench.admitted import NGINX_CONF
from bench.apps import server_cmd
from bench.common import Proc, free_port, loadavg, tool, wait_http
from bench.scale_analysis import analyse, summary_numbers
from bench.scale_crowd import ROOM, Crowd, Sampler, ScaleConfig
from waitroom_proxy.adapters.redis_store import RedisStore, room_keys

__all__ = ["ScaleConfig", "analyse", "run", "summary_numbers"]


def _event_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _crowd_run(
    cfg: ScaleConfig, bases: list[str], secret: str, store_url: str, nats_url: str,
    sampler: Sampler,
) -> dict[str, Any]:  # fmt: skip
    promotions: list[tuple[float, int, str, bool]] = []  # (time, arrival order, place, direct)
    seq = 0
    nc = await nats.connect(nats_url)

    async def on_event(msg: Any) -> None:
        nonlocal seq
        with contextlib.suppress(ValueError, KeyError):
            doc = json.loads(msg.data)
            data = doc.get("data") or {}
            promotions.append(
                (_event_time(doc["time"]), seq, str(data["place_id"]), bool(data.get("direct")))
            )
            seq += 1

    await nc.subscribe(f"waitroom.{ROOM}.position.admitted", cb=on_event)
    await nc.flush()
    store = RedisStore(store_url, timeout=5.0)
    sync = redis.Redis.from_url(store_url, decode_responses=True)
    keys = room_keys(ROOM)
    crowd = Crowd(cfg, bases, secret)
    mem_before = int(sync.info("memory")["used_memory"])
    start = time.time()
    phase_b_at = start + cfg.phase_a
    end = phase_b_at + cfg.phase_b
    memory: dict[str, float] = {}

    async def measure_memory_and_switch() -> None:
        arrivals_end = start + cfg.waiters / cfg.arrival_rate
        await asyncio.sleep(max(0.0, arrivals_end - time.time()) + 2.0)
        queued = int(sync.zcard(keys.queue))
        used = int(sync.info("memory")["used_memory"]) - mem_before
        usage = sum(int(sync.memory_usage(k, samples=0) or 0) for k in (keys.queue, keys.seen))
        memory.update(
            queued=queued,
            used_per_waiter=used / max(1, queued),
            sets_per_waiter=usage / max(1, queued),
            at=time.time() - start,
        )
        await asyncio.sleep(max(0.0, phase_b_at - time.time()))
        await store.set_meta(ROOM, {"overrides": json.dumps({"admit_rate": 0})})

    side = asyncio.create_task(measure_memory_and_switch())
    try:
        await crowd.run(until=end)
    finally:
        side.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await side
        await asyncio.sleep(1.0)  # late events
        await nc.drain()
        await crowd.aclose()
    end_state = {
        "promoted": set(sync.zrange(keys.promoted, 0, -1)),
        "admitted_total": int(sync.hget(keys.counters, "admitted_total") or 0),
        "queue": int(sync.zcard(keys.queue)),
    }
    await store.close()
    sync.close()
    return {
        "crowd": crowd,
        "promotions": promotions,
        "memory": memory,
        "start": start,
        "phase_b_at": phase_b_at,
        "end": end,
        "end_state": end_state,
    }


def run(
    cfg: ScaleConfig, *, nats_url: str, store_url: str, workdir: Path | None = None
) -> dict[str, Any]:
    nginx = tool("nginx")
    if nginx is None:
        raise RuntimeError("nginx is needed as the origin (apt-get install nginx)")
    tmp = Path(workdir or tempfile.mkdtemp(prefix="waitroom-bench-scale-"))
    tmp.chmod(0o755)
    (tmp / "www").mkdir(exist_ok=True)
    (tmp / "www" / "index.html").write_bytes(b"x" * 1024)
    origin, unused = free_port(), free_port()
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(dir=tmp, origin=origin, proxy=unused))
    (tmp / "room.toml").write_text(
        f"""
[[rooms]]
name = "{ROOM}"
capacity = {cfg.capacity}
admit_rate = {cfg.admit_rate}
heartbeat_interval = {cfg.heartbeat_interval}
"""
    )
    secret = secrets.token_urlsafe(32)
    env = {
        "WAITROOM_CONFIG": str(tmp / "room.toml"),
        "WAITROOM_UPSTREAM": f"http://127.0.0.1:{origin}",
        "WAITROOM_STORE_URL": store_url,
        "WAITROOM_NATS_URL": nats_url,
        "WAITROOM_SECRET": secret,
        "WAITROOM_CLIENT_RATE_LIMIT": "0",
        "WAITROOM_LOG_LEVEL": "warning",
    }
    redis.Redis.from_url(store_url).flushall()
    procs = [Proc("nginx", [nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])]
    bases = []
    sampler = Sampler(store_url)
    try:
        for i in range(cfg.replicas):
            port = free_port()
            procs.append(
                Proc(f"replica {i}", server_cmd("uvicorn", "waitroom", port), env=env,
                     log=tmp / f"replica-{i}.log")
            )  # fmt: skip
            bases.append(f"http://127.0.0.1:{port}")
        wait_http(f"http://127.0.0.1:{origin}/", timeout=15)
        for b in bases:
            wait_http(b + "/_waitroom/healthz", timeout=30)
        load_before = loadavg()
        sampler.start()
        raw = asyncio.run(_crowd_run(cfg, bases, secret, store_url, nats_url, sampler))
        sampler.stop_event.set()
        sampler.join(5)
        dead = [p.name for p in procs if not p.alive()]
        if dead:
            raise RuntimeError(f"died during the scale run: {dead} (logs in {tmp})")
    finally:
        sampler.stop_event.set()
        for p in reversed(procs):
            p.stop()
    result = analyse(cfg, raw, sampler.samples)
    result["load_before"] = load_before
    result["load_after"] = loadavg()
    result["series"] = {
        "samples": [(s[0] - raw["start"], s[1], s[2], s[3], s[4]) for s in sampler.samples],
        "promotions": [p[0] - raw["start"] for p in raw["promotions"]],
        "phase_b": raw["phase_b_at"] - raw["start"],
    }
    return result
