"""Sentinel: the master is killed under load and the replica is promoted (DESIGN §6).

A master, its replica and three sentinels (``redis_sentinel``); the proxy under test reaches
them with ``redis+sentinel://``. A full room (capacity 4) has waiters who keep polling and
newcomers who keep coming; a separate client samples the room's counts on whichever server
is master. Then the master gets SIGKILL. The sentinels promote the replica in about 4 s; the
proxy finds the new master by itself. Later the old master comes back (empty) and the
sentinels make it a replica.

Promised and checked: no place lost (every waiter still waiting, or admitted, never
``expired``); admissions after the failover in arrival order; capacity never exceeded in the
store; sessions pass throughout (their tokens verify locally); no 500. Measured: seconds
without a store (first failed call to the first answered one), and what the waiters saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

from tests.fixtures.redis_procs import wait_until
from tests.fixtures.redis_sentinel import SentinelSet
from tests.reliability.rig import JSON, Recorder, admitted_client, client, proxy_rig, report, timed
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.domain.policy import FailMode, RoomPolicy
from waitroom_proxy.errors import StoreError

CAPACITY = 4
WAITERS = 8
STORE_TIMEOUT = 0.25


class Sampler:
    """Samples active + promoted of the room on the current master until stopped."""

    def __init__(self, url: str, room: str) -> None:
        self.store = RedisStore(url, timeout=STORE_TIMEOUT)
        self.room = room
        self.samples = 0
        self.max_used = 0
        self.last_ok = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stats = await self.store.stats(self.room)
            except StoreError:
                await asyncio.sleep(0.05)
                continue
            self.samples += 1
            self.max_used = max(self.max_used, stats.active + stats.promoted)
            await asyncio.sleep(0.02)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.store.close()


async def _poll(
    c: httpx.AsyncClient, rec: Recorder, stop: asyncio.Event, admitted: list[float]
) -> None:
    while not stop.is_set():
        r = await timed(c, rec, "POST", "/_waitroom/heartbeat")
        if r is not None and r.status_code == 200 and r.json().get("status") == "admitted":
            admitted.append(time.monotonic())
            return
        await asyncio.sleep(0.1)


async def _newcomers(url: str, rec: Recorder, stop: asyncio.Event) -> None:
    async with client(url) as c:
        while not stop.is_set():
            c.cookies.clear()
            await timed(c, rec, "GET", "/new", headers=JSON)
            await asyncio.sleep(0.1)


async def _sessions(c: httpx.AsyncClient, rec: Recorder, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await timed(c, rec, "GET", "/s")
        await asyncio.sleep(0.1)


async def test_master_killed_under_load_nothing_lost(redis_sentinel: SentinelSet) -> None:
    room = RoomPolicy(
        name="failover",
        capacity=CAPACITY,
        heartbeat_interval=1,
        abandon_after=60,
        claim_timeout=30,
        fail_mode=FailMode.CLOSED,
    )
    store = RedisStore(redis_sentinel.url, timeout=STORE_TIMEOUT)
    sampler = Sampler(redis_sentinel.url, room.name)
    old, new = redis_sentinel.master(), redis_sentinel.replica()
    async with proxy_rig(room, store=store, server={"client_rate_limit": 0}) as rig:
        sessions = [await admitted_client(rig.url) for _ in range(CAPACITY)]
        waiters = []
        for _ in range(WAITERS):  # in this order: FIFO must hold across the failover
            c = client(rig.url)
            assert (await c.get("/wanted", headers=JSON)).json()["status"] == "waiting"
            waiters.append(c)
        beats = [Recorder() for _ in waiters]
        admitted: list[list[float]] = [[] for _ in waiters]
        fresh, sess = Recorder(), Recorder()
        stop = asyncio.Event()
        sampler.start()
        tasks = [
            asyncio.create_task(_poll(c, rec, stop, a))
            for c, rec, a in zip(waiters, beats, admitted, strict=True)
        ]
        tasks += [asyncio.create_task(_newcomers(rig.url, fresh, stop)) for _ in range(2)]
        tasks += [asyncio.create_task(_sessions(c, sess, stop)) for c in sessions[1:]]
        try:
            await asyncio.sleep(1.0)
            with old.client() as raw:  # everything so far is on the replica
                assert raw.execute_command("WAIT", 1, 2000) == 1
            t_kill = time.monotonic()
            old.kill()
            t_down = await rig.events.wait_for("system.store_down", t_kill, 10)
            assert t_down is not None, "the breaker never opened"
            t_up = await rig.events.wait_for("system.store_up", t_kill, 30)
            assert t_up is not None, "the proxy never found the new master"
            assert redis_sentinel.master_port() == new.port
            await asyncio.sleep(1.0)
            # The old master comes back empty; the sentinels make it a replica. The proxy
            # must not take it for the master meanwhile (it would admit into an empty room).
            t_back = time.monotonic()
            old.start()
            await asyncio.to_thread(
                wait_until, lambda: redis_sentinel.role(old) == "slave", 30, "old master demoted"
            )
            t_demoted = time.monotonic()
            await asyncio.sleep(0.5)
            # Slots free one by one: the waiters get them in arrival order.
            for s in sessions:
                left = await s.post("/_waitroom/leave")
                assert left.json()["status"] == "left"
            deadline = time.monotonic() + 20
            while sum(1 for a in admitted if a) < CAPACITY and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await sampler.stop()
            for c in [*sessions, *waiters]:
                with contextlib.suppress(Exception):
                    await c.aclose()

    order = [i for i in range(WAITERS) if admitted[i]]
    statuses = [s.body_status for rec in beats for s in rec.samples]
    failed_beats = [s for rec in beats for s in rec.samples if s.status != 200]
    first_failed = min((s.t for s in failed_beats), default=t_kill)
    last_failed = max((s.t + s.latency for s in failed_beats), default=t_kill)
    report(
        "sentinel: master killed under load",
        breaker_open_after_s=t_down - t_kill,
        store_back_after_s=t_up - t_kill,
        heartbeats_failing_for_s=last_failed - first_failed,
        failed_heartbeats=len(failed_beats),
        heartbeats=sum(len(rec.samples) for rec in beats),
        old_master_demoted_after_s=t_demoted - t_back,
        admitted_in_order=order,
        max_active_plus_promoted=sampler.max_used,
        store_samples=sampler.samples,
        newcomer_requests=len(fresh.samples),
    )
    every = [s for rec in (*beats, fresh, sess) for s in rec.samples]
    assert not [s for s in every if s.status == 500], "a 500"
    assert "expired" not in statuses, "a waiter lost the place"
    assert all(s.status == 200 for s in sess.samples) and not sess.errors, "a session failed"
    assert {s.status for s in failed_beats} <= {503}, "the waiting page while the store is away"
    assert order == list(range(CAPACITY)), f"admitted out of arrival order: {order}"
    assert sampler.samples > 50 and sampler.max_used <= CAPACITY
