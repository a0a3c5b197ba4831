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
import heapq
import itertools
import json
import random
import secrets
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
import redis

from bench.admitted import NGINX_CONF
from bench.apps import server_cmd
from bench.common import Proc, free_port, loadavg, tool, wait_http
from bench.loadclient import LoadClient
from waitroom_proxy.adapters.redis_store import RedisStore, room_keys
from waitroom_proxy.domain.tokens import TicketSigner

ROOM = "scale"
JSON = (b"accept", b"application/json")


@dataclass
class ScaleConfig:
    waiters: int = 100_000
    arrival_rate: float = 2_000.0
    capacity: int = 300
    admit_rate: int = 600  # per minute
    heartbeat_interval: float = 10.0
    phase_a: float = 180.0
    phase_b: float = 45.0
    window: float = 60.0  # admissions are counted per window (scaled to per minute)
    hold: tuple[float, float] = (5.0, 15.0)
    replicas: int = 3
    connections_per_replica: int = 12


@dataclass
class Waiter:
    idx: int
    arrived: float = 0.0
    place_id: str = ""
    score: int = -1
    ticket: str = ""
    session: str = ""
    eta_p50: float | None = None
    eta_p90: float | None = None
    position: int = 0
    state: str = "new"  # new, waiting, active, left, lost, direct
    claimed: float = 0.0
    left: float = 0.0
    heartbeats: int = 0
    late: list[float] = field(default_factory=list)


class Sampler(threading.Thread):
    """Every 100 ms: queue length, active, promoted, admitted_total, read atomically."""

    def __init__(self, url: str, interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="store-sampler")
        self.client = redis.Redis.from_url(url, decode_responses=True)
        self.interval = interval
        self.samples: list[tuple[float, int, int, int, int]] = []
        self.stop_event = threading.Event()
        self.keys = room_keys(ROOM)

    def run(self) -> None:
        k = self.keys
        next_at = time.time()
        while not self.stop_event.is_set():
            pipe = self.client.pipeline(transaction=True)
            pipe.zcard(k.queue).zcard(k.active).zcard(k.promoted).hget(k.counters, "admitted_total")
            q, a, p, total = pipe.execute()
            self.samples.append((time.time(), int(q), int(a), int(p), int(total or 0)))
            next_at += self.interval
            self.stop_event.wait(max(0.0, next_at - time.time()))
        self.client.close()


class Crowd:
    """The simulated visitors: many tickets multiplexed over a few keep-alive connections."""

    def __init__(self, cfg: ScaleConfig, bases: list[str], secret: str) -> None:
        self.cfg = cfg
        self.clients = [
            LoadClient(b, pool_size=cfg.connections_per_replica + 4, timeout=60) for b in bases
        ]
        self.tickets = TicketSigner([secret])
        self.waiters = [Waiter(i) for i in range(cfg.waiters)]
        self.heap: list[tuple[float, int, str]] = []
        self.stopping = False
        self.errors: dict[str, int] = {}
        self.requests = {"enqueue": 0, "heartbeat": 0, "leave": 0}
        self.direct = 0
        self.t0 = 0.0
        self.rng = random.Random(7)

    def _error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def schedule(self, at: float, idx: int, kind: str) -> None:
        heapq.heappush(self.heap, (at, idx, kind))

    async def run(self, until: float) -> None:
        self.t0 = time.time()
        for w in self.waiters:
            self.schedule(self.t0 + w.idx / self.cfg.arrival_rate, w.idx, "enqueue")
        workers = [
            self._worker(c, until)
            for c in self.clients
            for _ in range(self.cfg.connections_per_replica)
        ]
        await asyncio.gather(*workers)

    async def _worker(self, client: LoadClient, until: float) -> None:
        heap = self.heap
        while True:
            now = time.time()
            if now >= until:
                return
            if not heap or heap[0][0] > now:
                delay = (heap[0][0] - now) if heap else 0.05
                await asyncio.sleep(min(0.05, max(0.001, delay)))
                continue
            due, idx, kind = heapq.heappop(heap)
            w = self.waiters[idx]
            try:
                if kind == "enqueue":
                    await self._enqueue(client, w)
                elif kind == "heartbeat":
                    w.late.append(now - due)
                    await self._heartbeat(client, w)
                elif kind == "leave":
                    await self._leave(client, w)
            except Exception as exc:  # a failed request is retried later, never fatal
                self._error(f"{kind}: {type(exc).__name__}")
                if kind != "leave":
                    self.schedule(time.time() + 1.0, idx, kind)

    def _hold(self) -> float:
        lo, hi = self.cfg.hold
        return self.rng.uniform(lo, hi)

    async def _enqueue(self, client: LoadClient, w: Waiter) -> None:
        w.arrived = time.time()
        r = await client.request("GET", "/", [JSON])
        self.requests["enqueue"] += 1
        session = r.cookie("waitroom_session")
        if session:
            w.session, w.state, w.claimed = session, "direct", time.time()
            self.direct += 1
            self.schedule(time.time() + self._hold(), w.idx, "leave")
            return
        ticket = r.cookie("waitroom_ticket")
        if r.status != 200 or not ticket:
            self._error(f"enqueue status {r.status}")
            self.schedule(time.time() + 1.0, w.idx, "enqueue")
            return
        body = json.loads(r.body)
        t = self.tickets.loads(ticket)
        w.ticket, w.place_id, w.score, w.state = ticket, t.place_id, t.score, "waiting"
        w.position = int(body.get("position") or 0)
        eta = body.get("eta_seconds") or {}
        w.eta_p50, w.eta_p90 = eta.get("p50"), eta.get("p90")
        self.schedule(time.time() + float(body["refresh_seconds"]), w.idx, "heartbeat")

    async def _heartbeat(self, client: LoadClient, w: Waiter) -> None:
        r = await client.request(
            "POST", "/_waitroom/heartbeat",
            [JSON, (b"cookie", b"waitroom_ticket=" + w.ticket.encode())],
        )  # fmt: skip
        self.requests["heartbeat"] += 1
        w.heartbeats += 1
        if r.status != 200:
            self._error(f"heartbeat status {r.status}")
            self.schedule(time.time() + 2.0, w.idx, "heartbeat")
            return
        body = json.loads(r.body)
        status = body.get("status")
        ticket = r.cookie("waitroom_ticket")
        if ticket:
            w.ticket = ticket
        if status == "admitted":
            w.session = r.cookie("waitroom_session") or ""
            w.state, w.claimed = "active", time.time()
            self.schedule(time.time() + self._hold(), w.idx, "leave")
        elif status == "waiting":
            self.schedule(time.time() + float(body["refresh_seconds"]), w.idx, "heartbeat")
        else:
            w.state = "lost"
            self._error(f"heartbeat answered {status}")

    async def _leave(self, client: LoadClient, w: Waiter) -> None:
        r = await client.request(
            "POST", "/_waitroom/leave",
            [JSON, (b"cookie", b"waitroom_session=" + w.session.encode())],
        )  # fmt: skip
        self.requests["leave"] += 1
        if r.status == 200:
            w.state, w.left = "left", time.time()
        else:
            self._error(f"leave status {r.status}")

    async def aclose(self) -> None:
        for c in self.clients:
            await c.aclose()


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


def analyse(cfg: ScaleConfig, raw: dict[str, Any], samples: list[Any]) -> dict[str, Any]:
    crowd: Crowd = raw["crowd"]
    start, phase_b_at, end = raw["start"], raw["phase_b_at"], raw["end"]
    by_place = {w.place_id: w for w in crowd.waiters if w.place_id}
    promos = sorted(raw["promotions"], key=lambda p: (p[0], p[1]))
    queued_promos = [p for p in promos if not p[3]]

    # Capacity: every 100 ms sample of the store.
    violations = sum(1 for s in samples if s[2] > cfg.capacity)
    occupancy_violations = sum(1 for s in samples if s[2] + s[3] > cfg.capacity)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(samples)]

    # FIFO: promoted in a later tick than someone who arrived after them.
    inversions = 0
    max_score = -1
    batch_time = None
    batch_max = -1
    for t, _, pid, _ in queued_promos:
        w = by_place.get(pid)
        if w is None:
            continue
        if t != batch_time:
            max_score = max(max_score, batch_max)
            batch_time, batch_max = t, -1
        if w.score < max_score:
            inversions += 1
        batch_max = max(batch_max, w.score)
    max_score = max(max_score, batch_max)
    promoted_ids = {p[2] for p in promos} | raw["end_state"]["promoted"]
    skipped = sum(
        1
        for w in crowd.waiters
        if w.state == "waiting" and w.place_id not in promoted_ids and 0 <= w.score < max_score
    )

    # Admissions per window in phase A (every promotion, direct ones included) vs the target.
    windows: list[dict[str, float]] = []
    w0 = start
    while w0 + cfg.window <= phase_b_at + 1e-6:
        n = sum(1 for p in promos if w0 <= p[0] < w0 + cfg.window)
        per_min = n * 60.0 / cfg.window
        windows.append(
            {"from": w0 - start, "count": n, "per_min": per_min,
             "error_pct": 100.0 * (per_min - cfg.admit_rate) / cfg.admit_rate}
        )  # fmt: skip
        w0 += cfg.window

    # ETA predicted at arrival vs actual wait (arrival -> promotion event).
    eta_rows = []
    for t, _, pid, direct in queued_promos:
        w = by_place.get(pid)
        if w is None or direct or w.eta_p50 is None:
            continue
        actual = t - w.arrived
        eta_rows.append((t - start, w.eta_p50 - actual, actual, w.eta_p50, w.eta_p90 or 0))
    claim_lag = []
    for t, _, pid, _ in queued_promos:
        w = by_place.get(pid)
        if w is not None and w.claimed:
            claim_lag.append(w.claimed - t)

    # Refill (phase B): once the room is full, k-th leave -> k-th promotion after it.
    full_at = next(
        (s[0] for s in samples if s[0] >= phase_b_at and s[2] + s[3] >= cfg.capacity), None
    )
    refill: list[float] = []
    if full_at is not None:
        leaves = sorted(w.left for w in crowd.waiters if w.left and full_at <= w.left < end - 2.0)
        later = [p[0] for p in promos if p[0] >= full_at]
        j = 0
        for t_leave in leaves:
            while j < len(later) and later[j] < t_leave - 0.002:  # ms-resolution event times
                j += 1
            if j >= len(later):
                break
            refill.append(max(0.0, later[j] - t_leave))
            j += 1

    late = [x for w in crowd.waiters for x in w.late]
    states: dict[str, int] = {}
    for w in crowd.waiters:
        states[w.state] = states.get(w.state, 0) + 1
    arrivals_done = [w.arrived for w in crowd.waiters if w.arrived]
    return {
        "samples": len(samples),
        "sample_gap_p99_ms": 1000 * _pct(gaps, 99),
        "max_active": max((s[2] for s in samples), default=0),
        "max_occupancy": max((s[2] + s[3] for s in samples), default=0),
        "max_queue": max((s[1] for s in samples), default=0),
        "violations": violations,
        "occupancy_violations": occupancy_violations,
        "inversions": inversions,
        "skipped": skipped,
        "promotions": len(promos),
        "direct": sum(1 for p in promos if p[3]),
        "admitted_total": raw["end_state"]["admitted_total"],
        "windows": windows,
        "eta": eta_rows,
        "claim_lag": claim_lag,
        "refill": refill,
        "late": late,
        "states": states,
        "requests": dict(crowd.requests),
        "errors": dict(crowd.errors),
        "arrival_span": (max(arrivals_done) - min(arrivals_done)) if arrivals_done else 0.0,
        "memory": raw["memory"],
        "queue_at_end": raw["end_state"]["queue"],
        "duration": end - start,
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    data = sorted(values)
    return data[min(len(data) - 1, int(q / 100 * len(data)))]


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


def summary_numbers(result: dict[str, Any]) -> dict[str, float]:
    """The headline figures (used by the report and the smoke test)."""
    eta_err = [abs(e[1]) for e in result["eta"]]
    return {
        "eta_abs_err_p50": statistics.median(eta_err) if eta_err else float("nan"),
        "eta_abs_err_p90": _pct(eta_err, 90),
        "refill_p50": _pct(result["refill"], 50),
        "refill_p99": _pct(result["refill"], 99),
        "late_p99": _pct(result["late"], 99),
        "claim_lag_p50": _pct(result["claim_lag"], 50),
    }
