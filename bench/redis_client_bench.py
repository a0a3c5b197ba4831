"""What a store call costs the replica's CPU: redis-py asyncio vs a lean pipelined client.

    python -m bench.redis_client_bench [--calls 30000] [--in-flight 64]

Runs the store's real ``heartbeat`` script (EVALSHA, same keys and args) against a redis-server
it starts on loopback, ``--in-flight`` calls at a time, and reports this process's CPU time
per call (``time.process_time``) and calls per second:

- ``RedisStore.heartbeat`` (redis-py ``redis.asyncio``, one pooled connection per call in
  flight: what the replica does today);
- a minimal client: one asyncio ``Protocol`` per connection, hiredis as the reply parser, many
  calls pipelined on each of 4 connections, replies matched in order (what a lean store client
  could cost, the way ``asgi/upstream.py`` replaced a general HTTP client on the proxy path).

The heartbeat is one EVALSHA per waiter poll, so this CPU is paid on every heartbeat.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import secrets
import time
from typing import Any

import hiredis
import redis

from bench.store_bench import redis_server
from waitroom_proxy.adapters.redis_store import RedisStore, load_script_source, room_keys
from waitroom_proxy.ports import RoomLimits

ROOM = "rcb"


def _pack(*args: bytes | str | int) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(parts)


class LeanRedis(asyncio.Protocol):
    """Pipelined RESP over one connection: each call appends a future, replies pop in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_result(reply)

    def call(self, payload: bytes) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        assert self.transport is not None
        self.transport.write(payload)
        return fut


async def _redis_py(url: str, ids: list[str], calls: int, in_flight: int) -> tuple[float, float]:
    store = RedisStore(url, timeout=5.0)
    await store.heartbeat(ROOM, ids[0])
    counter = iter(range(calls))

    async def worker() -> None:
        for i in counter:
            await store.heartbeat(ROOM, ids[i % len(ids)])

    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    await store.close()
    return 1e6 * cpu / calls, calls / wall


async def _lean(url: str, ids: list[str], calls: int, in_flight: int) -> tuple[float, float]:
    sync = redis.Redis.from_url(url)
    sha = sync.script_load(load_script_source("heartbeat"))
    sync.close()
    # The same call RedisStore.heartbeat makes (keys and argv as the adapter sends them).
    k = room_keys(ROOM)
    keys = [k.queue, k.hb, k.promoted, k.active]
    ttl = 86_400_000  # the adapter's key TTL margin; any value does for timing
    host, port = url.split("//")[1].split("/")[0].split(":")
    loop = asyncio.get_running_loop()
    conns = [(await loop.create_connection(LeanRedis, host, int(port)))[1] for _ in range(4)]
    counter = iter(range(calls))

    async def worker(n: int) -> None:
        conn = conns[n % len(conns)]
        for i in counter:
            reply = await conn.call(
                _pack(b"EVALSHA", sha, len(keys), *keys, 0, ids[i % len(ids)], ttl)
            )
            if isinstance(reply, Exception):
                raise reply

    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(in_flight)))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    for c in conns:
        assert c.transport is not None
        c.transport.close()
    return 1e6 * cpu / calls, calls / wall


async def _fill(url: str, n: int) -> list[str]:
    store = RedisStore(url, timeout=5.0)
    limits = RoomLimits(capacity=1, abandon_after_ms=3_600_000, direct_admit=False)
    await store.arrive(ROOM, "holder", RoomLimits(capacity=1))
    ids = [secrets.token_urlsafe(16) for _ in range(n)]
    for pid in ids:
        await store.arrive(ROOM, pid, limits)
    await store.close()
    return ids


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--calls", type=int, default=30_000)
    ap.add_argument("--in-flight", type=int, default=64)
    args = ap.parse_args(argv)
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    with redis_server() as (url, _):
        ids = run(_fill(url, 2_000))
        n, k = args.calls, args.in_flight
        rows = [
            ("RedisStore.heartbeat (redis-py asyncio)", run(_redis_py(url, ids, n, k))),
            ("lean pipelined client (asyncio Protocol + hiredis)", run(_lean(url, ids, n, k))),
        ]
    print(f"heartbeat EVALSHA, {args.in_flight} in flight, {args.calls:,} calls")
    print("| client | client CPU µs / call | calls / s |\n|---|---|---|")
    for name, (cpu, rate) in rows:
        print(f"| {name} | {cpu:.1f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
