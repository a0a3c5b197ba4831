"""What a store call costs the replica's CPU, per Redis client, side by side in one run.

    python -m bench.redis_client_bench [--calls 30000] [--in-flight 64] [--rounds 3] [--write]

``--write`` puts the table in ``bench/results/clients.md`` and its section of
``bench/RESULTS.md``.

Runs the store's real ``heartbeat`` script (EVALSHA with exactly the keys and arguments
``RedisStore.heartbeat`` sends, recorded from the adapter) against a redis-server it starts on
loopback, pinned to one core while this process is pinned to the other; ``--in-flight`` calls
at a time. Per client: this process's CPU per call (``time.process_time``: every thread, so a
client's own I/O threads count), calls per second, and the server's CPU per call (fewer
socket reads and writes when a client pipelines calls on few connections). The least of
``--rounds`` rounds, the clients' rounds interleaved.

- ``RedisStore.heartbeat``: what the replica runs (redis-py ``redis.asyncio`` with hiredis,
  one pooled connection per call in flight, plus the adapter's own work);
- redis-py ``evalsha`` alone (the same client without the adapter);
- coredis (``Redis.evalsha``) and valkey-glide (``invoke_script``; a Rust core multiplexing
  calls on one connection): installed in a throwaway environment, not in the project's
  locked requirements; rows say "not installed" without them
  (``pip install coredis valkey-glide`` into the environment that runs this);
- a minimal pipelined client (one asyncio ``Protocol`` per connection, hiredis as the reply
  parser, 4 connections): what the protocol itself costs, for reference only (the project
  keeps a maintained client).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import hiredis
import redis

from bench.ceiling_report import HERE, SUMMARY, splice
from bench.ceiling_store import PLACE, Server, pinned_redis, server_cpu
from bench.ceiling_versions import _record
from bench.common import CLIENT_CPU, SERVER_CPU, cpu_count
from waitroom_proxy.adapters.redis_store import RedisStore, load_script_source
from waitroom_proxy.ports import RoomLimits

ROOM = "rcb"
MARKERS = ("<!-- clients: begin -->", "<!-- clients: end -->")

Call = Callable[[str], Awaitable[Any]]
"""One heartbeat of a place id."""


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


# ----------------------------------------------------------------------------- the clients
@contextlib.asynccontextmanager
async def _adapter(url: str, cmd: list[str]) -> Any:
    store = RedisStore(url, timeout=5.0)
    try:
        yield lambda pid: store.heartbeat(ROOM, pid, 3_600_000)
    finally:
        await store.close()


def _parts(cmd: list[str]) -> tuple[str, list[str], list[str]]:
    """(sha, keys, args with PLACE) of a recorded EVALSHA command line."""
    n = int(cmd[2])
    return cmd[1], cmd[3 : 3 + n], cmd[3 + n :]


def _with(args: list[str], pid: str) -> list[str]:
    return [pid if a == PLACE else a for a in args]


@contextlib.asynccontextmanager
async def _redis_py(url: str, cmd: list[str]) -> Any:
    import redis.asyncio

    sha, keys, args = _parts(cmd)
    client = redis.asyncio.Redis.from_url(url)
    try:
        yield lambda pid: client.evalsha(sha, len(keys), *keys, *_with(args, pid))
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _coredis(url: str, cmd: list[str]) -> Any:
    import coredis

    sha, keys, args = _parts(cmd)
    client = coredis.Redis.from_url(url)
    async with client:
        yield lambda pid: client.evalsha(sha, keys=keys, args=_with(args, pid))


@contextlib.asynccontextmanager
async def _glide(url: str, cmd: list[str]) -> Any:
    from glide import GlideClient, GlideClientConfiguration, NodeAddress, Script

    _, keys, args = _parts(cmd)
    host, port = url.split("//")[1].split("/")[0].split(":")
    client = await GlideClient.create(GlideClientConfiguration([NodeAddress(host, int(port))]))
    script = Script(load_script_source("heartbeat"))
    try:
        yield lambda pid: client.invoke_script(script, keys=keys, args=_with(args, pid))
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def _lean(url: str, cmd: list[str]) -> Any:
    sha, keys, args = _parts(cmd)
    host, port = url.split("//")[1].split("/")[0].split(":")
    loop = asyncio.get_running_loop()
    conns = [(await loop.create_connection(LeanRedis, host, int(port)))[1] for _ in range(4)]
    i = 0

    async def call(pid: str) -> Any:
        nonlocal i
        i += 1
        reply = await conns[i % 4].call(_pack(b"EVALSHA", sha, len(keys), *keys,
                                             *_with(args, pid)))  # fmt: skip
        if isinstance(reply, Exception):
            raise reply
        return reply

    try:
        yield call
    finally:
        for c in conns:
            assert c.transport is not None
            c.transport.close()


CLIENTS: list[tuple[str, str | None, Callable[[str, list[str]], Any]]] = [
    ("RedisStore.heartbeat (redis-py asyncio + hiredis, the adapter)", None, _adapter),
    ("redis-py asyncio evalsha", None, _redis_py),
    ("coredis evalsha", "coredis", _coredis),
    ("valkey-glide invoke_script", "glide", _glide),
    ("lean pipelined client (asyncio Protocol + hiredis), reference", None, _lean),
]


async def _run(
    make: Callable[[str, list[str]], Any], server: Server, cmd: list[str], ids: list[str],
    calls: int, in_flight: int,
) -> tuple[float, float, float]:  # fmt: skip
    async with make(server.url, cmd) as call:
        await call(ids[0])
        counter = iter(range(calls))

        async def worker() -> None:
            for i in counter:
                await call(ids[i % len(ids)])

        sync = server.client()
        s0 = server_cpu(sync)
        c0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        s1 = server_cpu(sync)
        sync.close()
    return 1e6 * cpu / calls, calls / wall, 1e6 * (s1 - s0) / calls


async def _prepare(server: Server, n: int) -> tuple[list[str], list[str]]:
    store = RedisStore(server.url, timeout=5.0)
    try:
        limits = RoomLimits(capacity=1, abandon_after_ms=3_600_000, direct_admit=False)
        await store.arrive(ROOM, "holder", RoomLimits(capacity=1))
        ids = [secrets.token_urlsafe(12) for _ in range(n)]
        for pid in ids:
            await store.arrive(ROOM, pid, limits)
        cmd = await _record(store, "heartbeat", lambda: store.heartbeat(ROOM, PLACE, 3_600_000))
    finally:
        await store.close()
    return ids, cmd


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--calls", type=int, default=30_000)
    ap.add_argument("--in-flight", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write bench/results, RESULTS.md")
    args = ap.parse_args(argv)
    try:
        import uvloop

        run: Callable[[Any], Any] = uvloop.run
    except ImportError:
        run = asyncio.run
    pin = cpu_count() >= 2
    if pin:
        os.sched_setaffinity(0, {CLIENT_CPU})
    available = []
    for name, module, make in CLIENTS:
        try:
            if module:
                __import__(module)
            available.append((name, make))
        except ImportError:
            available.append((name, None))
    with pinned_redis(SERVER_CPU if pin else None) as server:
        ids, cmd = run(_prepare(server, 2_000))
        best: dict[str, tuple[float, float, float]] = {}
        for _ in range(args.rounds):
            for name, make in available:
                if make is None:
                    continue
                cpu, rate, scpu = run(_run(make, server, cmd, ids, args.calls, args.in_flight))
                old = best.get(name)
                if old is None or cpu < old[0]:
                    best[name] = (cpu, max(rate, old[1] if old else 0), scpu)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "## Store clients: CPU per call",
        "",
        f"`python -m bench.redis_client_bench` on {when}: "
        f"the heartbeat EVALSHA (the adapter's keys and arguments), {args.in_flight} in flight, "
        f"{args.calls:,} calls per client and round, least of {args.rounds} rounds, the "
        f"clients' rounds interleaved; redis-server pinned to one core, this process to the "
        f"other; client CPU is this process's (every thread); redis-py {redis.__version__}"
        f"{_versions()}.",
        "",
        "| client | client CPU µs / call | calls / s | server CPU µs / call |",
        "|---|---|---|---|",
    ]
    for name, make in available:
        if make is None:
            lines.append(f"| {name} | not installed | - | - |")
            continue
        cpu, rate, scpu = best[name]
        lines.append(f"| {name} | {cpu:.1f} | {rate:,.0f} | {scpu:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        out = HERE / "results" / "clients.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        splice(text, SUMMARY, MARKERS)


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("coredis", "valkey-glide"):
        with contextlib.suppress(PackageNotFoundError):
            out.append(f", {dist} {version(dist)}")
    return "".join(out)


if __name__ == "__main__":
    main()
