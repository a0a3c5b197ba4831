"""One Redis core for the ceiling benchmark (``bench/ceiling.py``): a pinned ``redis-server``,
its counters, and the calls driven at it by ``redis-benchmark`` (C, pinned to the other core),
so that the client's cost never lands on the core being measured.

A call is a recorded command line (``EVALSHA sha n keys... args...``) in which ``PLACE``
stands for the place id; ``fill`` and ``load`` substitute real ids (``wait`` + 12 digits, the
16 characters of ``new_place_id()``), ``load`` through ``redis-benchmark``'s ``__rand_int__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from bench.common import CLIENT_CPU, free_port, pinned

PLACE = "PLACEHOLDER-ID"
"""Stands for the place id while recording a call; replaced by ``wait__rand_int__``."""
ID_PREFIX = "wait"
"""Place ids are ``wait`` + 12 digits = 16 characters, the length of ``new_place_id()``."""
TICK_HZ = 2.0
"""The controller's default pace (``controller_interval`` 0.5 s)."""


def place_id(i: int) -> str:
    return f"{ID_PREFIX}{i:012d}"


# ----------------------------------------------------------------------------- the server
@dataclass
class Server:
    port: int
    pid: int
    version: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)


@contextlib.contextmanager
def pinned_redis(core: int | None) -> Iterator[Server]:
    """redis-server on a free loopback port, pinned to ``core``; stopped by its own PID."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found (apt-get install redis-server)")
    workdir = tempfile.mkdtemp(prefix="waitroom-ceiling-")
    proc: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(10):
            port = free_port()
            cmd = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                   "--appendonly", "no", "--dir", workdir, "--daemonize", "no"]  # fmt: skip
            proc = subprocess.Popen(
                pinned(core, cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
            for _ in range(250):
                if proc.poll() is not None:
                    break
                try:
                    info = client.info("server")
                except redis.ConnectionError:
                    time.sleep(0.02)
                    continue
                client.close()
                yield Server(port, int(info["process_id"]), str(info["redis_version"]))
                return
            client.close()
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        sys.exit("redis-server did not start")
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def server_cpu(client: redis.Redis) -> float:
    """Seconds of CPU the server has used (user + system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def script_stats(client: redis.Redis) -> tuple[int, int]:
    """(calls, usec) of EVALSHA so far (a script's inner commands are part of its time)."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


# ----------------------------------------------------------------------------- measuring
@dataclass
class OpResult:
    calls: int
    seconds: float
    cpu_us: float
    """Server CPU (user + system) per call, µs."""
    script_us: float
    """EVALSHA's own time per call (INFO commandstats), µs."""

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


def fill(client: redis.Redis, template: list[str], n: int, batch: int = 5_000) -> None:
    """Queue waiters ``0 .. n-1`` with the recorded ``arrive`` call, pipelined."""
    where = template.index(PLACE)
    for lo in range(0, n, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(lo, min(n, lo + batch)):
            cmd = list(template)
            cmd[where] = place_id(i)
            pipe.execute_command(*cmd)
        replies = pipe.execute()
        bad = [r for r in replies if not isinstance(r, list) or int(r[0]) != 1]
        if bad:
            raise RuntimeError(f"arrive did not queue: {bad[:3]}")


def with_ids(cmd: list[str], ids: int) -> list[str]:
    """A recorded heartbeat (its place id last) carrying ``ids`` place ids, as a gathered call
    (``adapters/redis_heartbeats.py``) does; ``redis-benchmark`` draws each one separately."""
    if cmd[-1] != PLACE:
        raise ValueError("the recorded call does not end with its place id")
    return [*cmd, *[PLACE] * (ids - 1)]


def load(
    server: Server, cmd: list[str], *, requests: int, keyspace: int, clients: int, depth: int = 1,
    ids: int = 1,
) -> OpResult:  # fmt: skip
    """Run ``cmd`` ``requests`` times with ``redis-benchmark`` pinned to the client core, the
    place id (or client) drawn from ``keyspace``, ``depth`` calls per pipeline (``-P``); with
    ``ids`` > 1 each call carries that many place ids (``with_ids``) and the figures are per id."""
    bench = shutil.which("redis-benchmark")
    if bench is None:
        sys.exit("redis-benchmark not found (apt-get install redis-tools)")
    if ids > 1:
        cmd, requests = with_ids(cmd, ids), max(1, requests // ids)
    line = [a.replace(PLACE, ID_PREFIX + "__rand_int__") for a in cmd]
    client = server.client()
    calls0, usec0 = script_stats(client)
    cpu0 = server_cpu(client)
    t0 = time.perf_counter()
    done = subprocess.run(
        pinned(CLIENT_CPU, [bench, "-h", "127.0.0.1", "-p", str(server.port), "-c", str(clients),
                            "-n", str(requests), "-r", str(keyspace), "-P", str(depth),
                            "-q", *line]),
        capture_output=True, text=True, timeout=3_600, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    cpu1 = server_cpu(client)
    calls1, usec1 = script_stats(client)
    client.close()
    if done.returncode != 0 or "ERR" in done.stdout:
        raise RuntimeError(f"redis-benchmark failed: {done.stdout[-300:]}{done.stderr}")
    found = re.search(r"([\d.]+) requests per second", done.stdout)
    if found:
        seconds = requests / float(found.group(1))
    calls = max(1, calls1 - calls0) * ids
    return OpResult(calls, seconds, 1e6 * (cpu1 - cpu0) / calls, (usec1 - usec0) / calls)


def drive(
    server: Server, room: str, n: int, *, requests: int, in_flight: int
) -> tuple[OpResult, float]:
    """``requests`` heartbeats of random waiters ``0 .. n-1`` through this tree's
    ``RedisStore`` (a room's heartbeats of one event-loop turn gathered into one call),
    ``in_flight`` callers at a time, from this process (pinned to the client core): the
    server's CPU per heartbeat and the mean number of heartbeats per call it reached."""
    from waitroom_proxy.adapters.redis_store import RedisStore

    async def run() -> float:
        store = RedisStore(server.url, timeout=5.0)
        rng = random.Random(n)
        left = requests

        async def caller() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                view = await store.heartbeat(room, place_id(rng.randrange(n)), 3_600_000)
                if view.position <= 0:
                    raise RuntimeError(f"a filled place is not waiting: {view}")

        try:
            await store.heartbeat(room, place_id(0), 3_600_000)  # connected, script cached
            ids0, calls0 = store._beats.stats.ids, store._beats.stats.calls
            await asyncio.gather(*(caller() for _ in range(in_flight)))
            stats = store._beats.stats
            return (stats.ids - ids0) / max(1, stats.calls - calls0)
        finally:
            await store.close()

    client = server.client()
    _calls0, usec0 = script_stats(client)
    cpu0 = server_cpu(client)
    t0 = time.perf_counter()
    depth = asyncio.run(run())
    seconds = time.perf_counter() - t0
    cpu1 = server_cpu(client)
    _calls1, usec1 = script_stats(client)
    client.close()
    beats = max(1, requests)
    return OpResult(beats, seconds, 1e6 * (cpu1 - cpu0) / beats, (usec1 - usec0) / beats), depth


def ticks(server: Server, cmd: list[str], seconds: float) -> tuple[float, float]:
    """The controller's tick at ``TICK_HZ`` for ``seconds``: (server CPU µs per tick, share of
    the core), the server's idle CPU over as long subtracted."""
    client = server.client()
    cpu0 = server_cpu(client)
    time.sleep(seconds)
    idle = server_cpu(client) - cpu0
    client.execute_command(*cmd)  # the first tick sweeps a whole slice: not counted
    n = int(seconds * TICK_HZ)
    cpu0 = server_cpu(client)
    for _ in range(n):
        client.execute_command(*cmd)
        time.sleep(1 / TICK_HZ)
    used = server_cpu(client) - cpu0 - idle
    client.close()
    return 1e6 * max(0.0, used) / n, max(0.0, used) / seconds
