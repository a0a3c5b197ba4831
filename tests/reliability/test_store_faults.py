"""The store fails under load: fail modes, the circuit breaker, recovery, a slow store.

The store is a real Redis server reached through ``FaultProxy`` (blackhole = nothing answers,
stop = connections refused and reset, latency = slow replies). The proxy under test runs on
real uvicorn with a counting origin. All clients share 127.0.0.1, so the per-client rate
limit is off here (it has its own test) except in the slow-store test, where it is set high
so that its store call is still made on every newcomer request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fixtures.faultproxy import FaultProxy
from tests.reliability.rig import (
    JSON,
    Recorder,
    admitted_client,
    client,
    percentile,
    proxy_rig,
    report,
    timed,
)
from waitroom_proxy.adapters.redis_store import RedisStore
from waitroom_proxy.domain.policy import FailMode, RoomPolicy

STORE_TIMEOUT = 1.0
"""Long enough that a healthy store answers in time on a loaded machine (a call that times
out for a slow event loop is a store failure to the breaker, and keeps it open)."""
CAPACITY = 8
NEWCOMER_LOOPS = 4
# Tasks that call the store at the same time: the newcomer loops, the waiter, the admission
# controller (its calls are sequential) and the activity flush. When the store fails, each may
# have one call in flight when the breaker opens; every one of them then fails too.
CONCURRENT_CALLERS = NEWCOMER_LOOPS + 3
ADMIT_RATE = 600  # per minute: the fail-open local share is 10 newcomers per second (burst 10)


@pytest.fixture
async def store_via_fault(redis_server: Any) -> AsyncIterator[tuple[RedisStore, FaultProxy]]:
    redis_server.flush()
    async with FaultProxy("127.0.0.1", redis_server.port) as fp:
        store = RedisStore(fp.url("redis", "/0"), timeout=STORE_TIMEOUT)
        try:
            yield store, fp
        finally:
            fp.heal()
            await store.close()


async def _sessions_loop(c: httpx.AsyncClient, rec: Recorder, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await timed(c, rec, "GET", "/s")
        await asyncio.sleep(0.01)


async def _newcomers_loop(url: str, rec: Recorder, stop: asyncio.Event) -> None:
    async with client(url) as c:
        while not stop.is_set():
            c.cookies.clear()
            await timed(c, rec, "GET", "/new", headers=JSON)
            await asyncio.sleep(0.02)


async def _waiter_loop(c: httpx.AsyncClient, rec: Recorder, stop: asyncio.Event) -> None:
    while not stop.is_set():
        r = await timed(c, rec, "POST", "/_waitroom/heartbeat")
        if r is not None and r.status_code == 200 and r.json().get("status") == "admitted":
            return
        await asyncio.sleep(0.2)


async def _wait_active(store: RedisStore, at_least: int, timeout: float) -> int:
    """The store's active count once it reaches ``at_least`` (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        active = (await store.stats("outage")).active
        if active >= at_least or time.monotonic() > deadline:
            return active
        await asyncio.sleep(0.1)


def store_errors(rig: Any) -> float:
    """Store calls that failed so far (every op): each one reached the store."""
    return sum(
        sample.value
        for metric in rig.gate.metrics.store_errors.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def _outage(
    store_via_fault: tuple[RedisStore, FaultProxy],
    caplog: pytest.LogCaptureFixture,
    *,
    fail_mode: FailMode,
    fault: str,
    duration: float,
) -> None:
    store, fp = store_via_fault
    policy = RoomPolicy(
        name="outage",
        capacity=CAPACITY,
        admit_rate=ADMIT_RATE,
        heartbeat_interval=1,
        abandon_after=60,
        fail_mode=fail_mode,
    )
    caplog.set_level(logging.WARNING, logger="waitroom_proxy.service")
    async with proxy_rig(policy, store=store, server={"client_rate_limit": 0}) as rig:
        sessions = [await admitted_client(rig.url) for _ in range(CAPACITY)]
        waiter = client(rig.url)
        r = await waiter.get("/wanted", headers=JSON)
        assert r.json()["status"] == "waiting"
        s_rec, n_rec, w_rec = Recorder(), Recorder(), Recorder()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_sessions_loop(c, s_rec, stop)) for c in sessions]
        tasks += [
            asyncio.create_task(_newcomers_loop(rig.url, n_rec, stop))
            for _ in range(NEWCOMER_LOOPS)
        ]
        waiter_task = asyncio.create_task(_waiter_loop(waiter, w_rec, stop))
        breaker = rig.gate.store.breaker_for(rig.room)
        try:
            await asyncio.sleep(1.0)
            new_hits_before = rig.origin.hits["/new"]
            errors_before = store_errors(rig)
            t_fault = time.monotonic()
            if fault == "blackhole":
                fp.blackhole = True
            else:
                await fp.stop()
            # Liveness bounds only (generous: how long is not what these tests promise).
            t_down = await rig.events.wait_for("system.store_down", t_fault, 30)
            assert t_down is not None, "no store_down event"
            await asyncio.sleep(max(0.0, duration / 2 - (time.monotonic() - t_fault)))
            gauge_during = rig.gate.metrics.store_up._value.get()
            await asyncio.sleep(max(0.0, duration - (time.monotonic() - t_fault)))
            new_hits_during = rig.origin.hits["/new"] - new_hits_before
            t_heal = time.monotonic()
            if fault == "blackhole":
                fp.blackhole = False
            else:
                await fp.start()
            t_up = await rig.events.wait_for("system.store_up", t_heal, 30)
            assert t_up is not None, "no store_up event"
            errors_during = store_errors(rig) - errors_before
            # A slot frees: the waiter (who kept polling through the outage) must get it.
            # Right after recovery the breaker can open once more (calls that started on
            # connections broken by the outage fail late): leave again until it lands.
            for _ in range(20):
                left = await sessions[0].post("/_waitroom/leave")
                if left.json()["status"] == "left":
                    break
                await asyncio.sleep(0.25)
            assert left.json()["status"] == "left"
            if fail_mode is FailMode.CLOSED:
                await asyncio.wait_for(waiter_task, 30)
                t_admitted = w_rec.samples[-1].t
            else:
                # Each fail-open admission is a session, counted once the store is back: the
                # room is over capacity then, so nobody (the waiter neither) is admitted.
                counted = await _wait_active(store, CAPACITY - 1 + new_hits_during, 10)
                assert counted >= CAPACITY - 1 + new_hits_during, (counted, new_hits_during)
                await asyncio.sleep(1.0)  # several controller ticks
                assert not waiter_task.done(), "admitted while the room was over capacity"
                t_admitted = t_heal
            await asyncio.sleep(0.5)  # sessions keep passing after the recovery too
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            waiter_task.cancel()
            for c in [*sessions, waiter]:
                await c.aclose()

        s_ok = sum(1 for s in s_rec.samples if s.status == 200)
        s_total = len(s_rec.samples) + len(s_rec.errors)
        session_ratio = s_ok / s_total
        # Answered before the heal (a probe started just before it may be answered after it).
        during = [s for s in n_rec.between(t_down, t_heal) if s.t + s.latency < t_heal]
        waiting_pages = sum(1 for s in during if s.body_status == "waiting")
        five_xx_errors = sum(
            1 for s in n_rec.samples if s.status >= 500 and s.body_status != "waiting"
        )
        report(
            f"store down {duration:g}s ({fault}, fail_mode={fail_mode.value})",
            breaker_open_after_s=t_down - t_fault,
            breaker_closed_after_s=t_up - t_heal,
            admission_after_heal_s=t_admitted - t_heal,
            session_requests=s_total,
            session_success=session_ratio,
            newcomer_requests_during=len(during),
            newcomer_waiting_pages=waiting_pages,
            newcomer_5xx_not_waiting=five_xx_errors,
            newcomer_origin_hits_during=new_hits_during,
            newcomer_errors=len(n_rec.errors),
            store_calls_failed=errors_during,
        )
        # The breaker's promise (README, "Fail modes"): it opens after `threshold` failures,
        # then lets one probe through per `cooldown`. So the store saw at most the calls that
        # opened it, those already in flight, and the probes — however slow this machine.
        probes = (t_up - t_fault) / breaker.cooldown + 1
        bound = breaker.threshold + CONCURRENT_CALLERS + probes
        assert errors_during <= bound, (errors_during, bound)
        assert session_ratio >= 0.999, (s_total - s_ok, s_rec.errors[:3])
        assert not any(s.body_status == "waiting" for s in s_rec.samples), "a session was queued"
        assert gauge_during == 0
        assert rig.gate.metrics.store_up._value.get() == 1
        assert five_xx_errors == 0 and not n_rec.errors
        assert during, "no newcomer request during the outage"
        if fail_mode is FailMode.CLOSED:
            assert waiting_pages == len(during)
            assert all(s.status == 503 for s in during)
            assert new_hits_during == 0
        else:
            # Fail-open starts at the first failed call (before the breaker opens, at the
            # latest): count the share from the fault on.
            allowed = max(1, ADMIT_RATE / 60) + (t_heal - t_fault) * ADMIT_RATE / 60
            assert new_hits_during <= allowed, (new_hits_during, allowed)
            assert new_hits_during >= 1, "fail-open let nobody through"
        messages = [r.getMessage() for r in caplog.records]
        assert any("store unreachable" in m for m in messages)
        assert any("store is reachable again" in m for m in messages)


@pytest.mark.parametrize("fault", ["blackhole", "refused"])
@pytest.mark.parametrize("fail_mode", [FailMode.CLOSED, FailMode.OPEN])
async def test_store_down_3s(
    store_via_fault: Any, caplog: pytest.LogCaptureFixture, fail_mode: FailMode, fault: str
) -> None:
    await _outage(store_via_fault, caplog, fail_mode=fail_mode, fault=fault, duration=3.0)


@pytest.mark.slow
@pytest.mark.parametrize("fail_mode", [FailMode.CLOSED, FailMode.OPEN])
async def test_store_down_10s(
    store_via_fault: Any, caplog: pytest.LogCaptureFixture, fail_mode: FailMode
) -> None:
    await _outage(store_via_fault, caplog, fail_mode=fail_mode, fault="blackhole", duration=10.0)


REPLY_DELAY = 10.0
"""How late the slow store answers: a request that waited for one reply took at least this."""


async def test_store_slow_replies_bounded_by_store_timeout(store_via_fault: Any) -> None:
    """Every store reply comes REPLY_DELAY late: each request is answered by the room's
    fail_mode once its store calls time out (store_timeout), never by waiting for a reply.

    Latencies are reported, not asserted against this machine's speed: the bound asserted is
    the one that tells the two apart (a request that waited for a reply took REPLY_DELAY).
    """
    store, fp = store_via_fault
    policy = RoomPolicy(name="slow", capacity=2, admit_rate=0, heartbeat_interval=1,
                        abandon_after=60, fail_mode=FailMode.CLOSED)  # fmt: skip
    async with proxy_rig(policy, store=store, server={"client_rate_limit": 100_000}) as rig:
        sessions = [await admitted_client(rig.url) for _ in range(2)]
        waiters = []
        for _ in range(4):
            w = client(rig.url, timeout=2 * REPLY_DELAY)
            await w.get("/w", headers=JSON)
            waiters.append(w)
        s_rec, n_rec, h_rec = Recorder(), Recorder(), Recorder()
        stop = asyncio.Event()

        async def heartbeats(c: httpx.AsyncClient) -> None:
            while not stop.is_set():
                await timed(c, h_rec, "POST", "/_waitroom/heartbeat")
                await asyncio.sleep(0.05)

        fp.latency = REPLY_DELAY
        errors_before = store_errors(rig)
        t0 = time.monotonic()
        tasks = [asyncio.create_task(_sessions_loop(c, s_rec, stop)) for c in sessions]
        tasks += [
            asyncio.create_task(_newcomers_loop(rig.url, n_rec, stop))
            for _ in range(NEWCOMER_LOOPS)
        ]
        tasks += [asyncio.create_task(heartbeats(w)) for w in waiters]
        await asyncio.sleep(5.0)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in [*sessions, *waiters]:
            await c.aclose()
        fp.heal()
        failed_calls = store_errors(rig) - errors_before
        store_calls = [s.latency for s in [*n_rec.samples, *h_rec.samples]]
        worst = max(store_calls)
        report(
            f"store slow (+{REPLY_DELAY:g} s per reply)",
            requests=len(store_calls),
            p50_s=percentile(store_calls, 50),
            p99_s=percentile(store_calls, 99),
            max_s=worst,
            session_p99_s=percentile([s.latency for s in s_rec.samples], 99),
            store_calls_timed_out=failed_calls,
            duration_s=time.monotonic() - t0,
        )
        assert not n_rec.errors and not h_rec.errors
        assert n_rec.samples and h_rec.samples
        # Nobody waited for a reply (each would have taken REPLY_DELAY at least) ...
        assert worst < REPLY_DELAY, worst
        # ... the store calls timed out instead, and the room's fail_mode answered.
        assert failed_calls >= 1
        assert all(s.status == 503 and s.body_status == "waiting" for s in n_rec.samples)
        assert all(s.status == 200 for s in s_rec.samples)
