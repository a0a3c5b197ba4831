"""examples/cluster: nginx round-robin over 3 waitroom-proxy replicas on one Redis store and one
NATS JetStream server, started by the example's own code (``start_cluster``); and the same on a
3-master Redis Cluster and a 3-node NATS cluster (``--redis-cluster --nats-cluster``).

8 visitors (separate cookie jars) go through nginx to a room of capacity 3, each request to the
next replica. Proven here:

- active + promoted sessions never exceed the capacity (the store sampled every ~10 ms all along);
- 3 visitors pass, 5 wait in arrival order; as sessions leave (``POST /_waitroom/leave`` through
  nginx), waiters are admitted one by one, first come first served, whichever replica each
  request reaches;
- a session cookie issued by one replica is honoured by the two others;
- the 3 admin listeners (bearer token) see the same shared room;
- the stream ``WAITROOM`` holds position.enqueued / position.admitted / session.started /
  session.ended for exactly these visitors, published by all 3 replicas (their ``source``
  names differ);
- ``stop()`` ends every process it started (and nginx's worker) by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from examples.cluster.cluster import Cluster, MissingBinary, find_binaries, start_cluster
from tests.examples.procs import REPO, Proc
from tests.fixtures.redis_server import missing
from waitroom_proxy.adapters.redis_store import RedisStore

pytestmark = [pytest.mark.redis, pytest.mark.nats]

CAPACITY = 3
VISITORS = 8
SITE = "<h1>The Sale</h1>"
WAITING = 'id="wr-waiting-h"'
HTML = {"accept": "text/html"}
JSON = {"accept": "application/json"}


@pytest.fixture(params=["single", "distributed"])
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """``single``: one Redis, one NATS. ``distributed``: a 3-master Redis Cluster and a 3-node
    NATS cluster with the streams on 3 replicas (``--redis-cluster --nats-cluster``)."""
    distributed = request.param == "distributed"
    try:
        running = start_cluster(
            tmp_path, capacity=CAPACITY, redis_cluster=distributed, nats_cluster=distributed
        )
    except MissingBinary as exc:
        missing(str(exc))
        raise AssertionError("unreachable") from exc
    try:
        yield running
    finally:
        running.stop()  # again if the test did already: a no-op then


class Sampler:
    """Samples the room's counts from the shared store until stopped."""

    def __init__(self, store_url: str, room: str) -> None:
        self.store = RedisStore(store_url, timeout=2.0)
        self.room = room
        self.max_used = 0
        self.samples = 0
        self.over: list[tuple[int, int]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            stats = await self.store.stats(self.room)
            used = stats.active + stats.promoted
            self.max_used = max(self.max_used, used)
            self.samples += 1
            if used > CAPACITY:
                self.over.append((stats.active, stats.promoted))
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> Sampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        try:
            await self._task
        finally:
            await self.store.close()


async def heartbeat_until_one_admitted(
    clients: list[httpx.AsyncClient], waiting: list[int], timeout: float = 10.0
) -> int:
    """Every waiter heartbeats (each request to the next replica) until one is admitted."""
    deadline = time.monotonic() + timeout
    while True:
        admitted = []
        for i in waiting:
            body = (await clients[i].post("/_waitroom/heartbeat")).json()
            assert body["status"] in ("waiting", "admitted"), body
            if body["status"] == "admitted":
                assert body["return_to"] == "/sale.html"
                admitted.append(i)
        if admitted:
            assert len(admitted) == 1, f"one slot freed, {admitted} admitted"
            return admitted[0]
        assert time.monotonic() < deadline, "nobody admitted after a session left"
        await asyncio.sleep(0.1)


async def read_stream(nats_url: str) -> list[dict[str, Any]]:
    """Every event in the stream ``WAITROOM`` (CloudEvents JSON), in order."""
    nc = await nats.connect(servers=nats_url.split(","), connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=2)
        info = await js.stream_info("WAITROOM")
        assert info.config.num_replicas == (3 if "," in nats_url else 1)
        events = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg("WAITROOM", seq)
            assert msg.data is not None
            events.append(json.loads(msg.data))
        return events
    finally:
        await nc.close()


def summarize(events: list[dict[str, Any]], room: str) -> dict[str, Any]:
    places: dict[str, set[str]] = defaultdict(set)
    sources: set[str] = set()
    replicas_started: set[str] = set()
    ended_reasons: set[str] = set()
    direct: set[str] = set()
    for ce in events:
        kind = ce["type"].removeprefix("io.waitroom.")
        if kind == "system.replica_started":
            replicas_started.add(ce["source"])
        if ce.get("subject") != room:
            continue
        sources.add(ce["source"])
        places[kind].add(ce["data"]["place_id"])
        if kind == "session.ended":
            ended_reasons.add(ce["data"]["reason"])
        if kind == "position.admitted" and ce["data"].get("direct"):
            direct.add(ce["data"]["place_id"])
    return {
        "places": places,
        "sources": sources,
        "replicas_started": replicas_started,
        "ended_reasons": ended_reasons,
        "direct": direct,
    }


async def test_cluster(cluster: Cluster) -> None:
    started = time.monotonic()
    room = cluster.room
    replicas = {url.removeprefix("http://") for url in cluster.replica_urls}
    assert len(replicas) == 3

    async with contextlib.AsyncExitStack() as stack:
        sampler = await stack.enter_async_context(Sampler(cluster.store_url, room))
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=cluster.url, timeout=10))
            for _ in range(VISITORS)
        ]

        # 8 arrivals, each at the next replica: 3 pass, 5 wait in arrival order.
        admitted: list[int] = []
        waiting: list[int] = []
        arrived_at = set()
        for i, c in enumerate(clients):
            r = await c.get("/sale.html", headers=HTML)
            assert r.status_code == 200
            arrived_at.add(r.headers["x-waitroom-replica"])
            if SITE in r.text:
                admitted.append(i)
            else:
                assert WAITING in r.text, r.text[:500]
                waiting.append(i)
        assert admitted == [0, 1, 2] and waiting == [3, 4, 5, 6, 7]
        assert arrived_at == replicas
        for position, i in enumerate(waiting, 1):
            status = (await clients[i].get("/sale.html", headers=JSON)).json()
            assert (status["status"], status["position"]) == ("waiting", position)
            assert status["queue_length"] == len(waiting)

        # One session cookie, honoured by every replica (the cookie jar keeps renewals).
        answered_by = set()
        for _ in range(6):
            r = await clients[0].get("/sale.html", headers=HTML)
            assert r.status_code == 200 and SITE in r.text
            answered_by.add(r.headers["x-waitroom-replica"])
        assert answered_by == replicas

        # Sessions leave one at a time; each frees a slot for the head of the queue.
        order = []
        while waiting:
            leaver = admitted.pop(0)
            r = await clients[leaver].post("/_waitroom/leave")
            assert r.json()["status"] == "left"
            newly = await heartbeat_until_one_admitted(clients, waiting)
            assert newly == waiting[0], "first come, first served across replicas"
            order.append(waiting.pop(0))
            admitted.append(newly)
            r = await clients[newly].get("/sale.html", headers=HTML)
            assert r.status_code == 200 and SITE in r.text
        assert order == [3, 4, 5, 6, 7]
        for i in admitted:
            assert (await clients[i].post("/_waitroom/leave")).json()["status"] == "left"

        # The three admin listeners read the one shared room.
        auth = {"authorization": f"Bearer {cluster.admin_token}"}
        for admin in cluster.admin_urls:
            async with httpx.AsyncClient(base_url=admin, timeout=10) as a:
                assert (await a.get("/admin/rooms")).status_code == 401
                rooms = (await a.get("/admin/rooms", headers=auth)).json()["rooms"]
                stats = next(r for r in rooms if r["name"] == room)["stats"]
                assert stats == {"queue_length": 0, "active": 0, "promoted": 0,
                                 "admitted_total": VISITORS}  # fmt: skip
                metrics = (await a.get("/metrics", headers=auth)).text
                assert "waitroom_" in metrics

    assert not sampler.over, f"active + promoted above capacity: {sampler.over[:5]}"
    assert sampler.max_used == CAPACITY, "the sampler saw the room full"
    assert sampler.samples > 50

    # Every replica's events reach the stream (the publishers send in the background).
    expected_sources = {f"waitroom-proxy/{name}" for name in cluster.replica_names}
    deadline = time.monotonic() + 10
    while True:
        summary = summarize(await read_stream(cluster.nats_url), room)
        places = summary["places"]
        done = (
            len(places["session.started"]) == VISITORS
            and places["session.ended"] == places["session.started"]
            and len(places["position.enqueued"]) == VISITORS - CAPACITY
        )
        if done or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    visitors = places["session.started"]
    assert len(visitors) == VISITORS, summary
    assert places["session.ended"] == visitors and summary["ended_reasons"] == {"left"}
    assert places["position.admitted"] == visitors
    assert len(summary["direct"]) == CAPACITY
    assert places["position.enqueued"] == visitors - summary["direct"]
    assert summary["sources"] == expected_sources, "room events from every replica"
    assert summary["replicas_started"] == expected_sources

    # Everything stops, by PID, leaving nothing behind.
    pids = cluster.pids
    codes = cluster.stop()
    stores = ["redis-1", "redis-2", "redis-3"] if "+cluster" in cluster.store_url else ["redis"]
    buses = ["nats-1", "nats-2", "nats-3"] if "," in cluster.nats_url else ["nats"]
    assert set(codes) == {*stores, *buses, "origin", "replica-1", "replica-2", "replica-3",
                          "nginx"}  # fmt: skip
    assert cluster.leftovers == []
    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert codes[name] in (0, -15), (name, codes[name])
    for name in cluster.replica_names:
        log = (cluster.workdir / f"{name}.log").read_text()
        assert "Traceback" not in log, log[-3000:]
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    "options", [[], ["--redis-cluster", "--nats-cluster"]], ids=["single", "distributed"]
)
def test_cluster_command(tmp_path: Path, options: list[str]) -> None:
    """``examples/cluster/run.sh`` prints the URLs and PIDs; Ctrl-C (SIGINT) stops them all."""
    try:
        find_binaries()
    except MissingBinary as exc:
        missing(str(exc))
    work = tmp_path / "work"
    script = Proc(
        ["bash", str(REPO / "examples" / "cluster" / "run.sh"), "--workdir", str(work),
         "--capacity", "2", "--log-level", "warning", *options],
        tmp_path / "run.log",
        env={**os.environ, "PYTHON": sys.executable, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 40
        while "Ctrl-C stops everything." not in script.output():
            assert script.alive(), script.output()[-3000:]
            assert time.monotonic() < deadline, script.output()[-3000:]
            time.sleep(0.1)
        out = script.output()
        url = re.search(r"visitors \(nginx\): +(\S+)", out)
        pids = re.search(r"pids: +(.+)", out)
        assert url and pids, out
        # One visitor (one cookie jar) gets in: at once, or at the controller's next pass when
        # the first request beat the replicas' first look at the store (then it waits in line).
        with httpx.Client(timeout=10) as visitor:
            admitted_by = time.monotonic() + 20
            while SITE not in (r := visitor.get(url.group(1) + "sale.html")).text:
                assert r.status_code == 200 and time.monotonic() < admitted_by, r.text[-3000:]
                time.sleep(0.5)
        assert r.status_code == 200 and r.headers["x-waitroom-replica"]
    finally:
        status = script.stop(signal.SIGINT, timeout=30)
    out = script.output()
    assert status == 0, out[-3000:]
    assert "stopped: nginx (0)" in out and "Traceback" not in out
    found = re.findall(r"(\S+) (\d+)(?:,|$)", pids.group(1))
    servers = (
        ["redis-1", "redis-2", "redis-3", "nats-1", "nats-2", "nats-3"]
        if options
        else ["redis", "nats"]
    )
    assert [name for name, _ in found] == [*servers, "origin", "replica-1", "replica-2",
                                           "replica-3", "nginx"]  # fmt: skip
    if options:
        assert "redis+cluster://" in out and "(stream WAITROOM, 3 replica(s))" in out
    for _, pid in found:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
