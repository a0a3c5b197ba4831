"""The scale run's crowd (``bench.scale``): its configuration, the simulated waiters
multiplexed over a few keep-alive connections per replica, and the store sampler (a thread
reading the room's counts every 100 ms)."""

from __future__ import annotations

import asyncio
import heapq
import json
import random
import threading
import time
from dataclasses import dataclass, field

import redis

from bench.loadclient import LoadClient
from waitroom_proxy.adapters.redis_store import room_keys
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
