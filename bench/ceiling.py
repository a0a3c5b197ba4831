"""The one-room ceiling: how many waiters one room holds on one store core.

    python -m bench.ceiling                      # 100k and 1M waiters (about 3 minutes)
    python -m bench.ceiling --sizes 2000000      # any sizes
    python -m bench.ceiling --smoke              # tiny, for the test suite (seconds)

A room lives on one shard (its keys share one hash tag), so one Redis core bounds it. This
starts its own redis-server (Debian's, jemalloc) pinned with ``taskset`` to one core, the load
generator (``redis-benchmark``: C, one call in flight per connection, as a replica's pooled
redis-py client sends them) pinned to the other, and measures the project's own scripts, called
with exactly the keys and arguments ``RedisStore`` sends (recorded from the adapter, so this
stays true when the scripts change):

- per operation (``heartbeat``, ``arrive``, the per-client ``hit``): the server's CPU per call,
  ``used_cpu_sys + used_cpu_user`` delta / calls (what the core spends, socket I/O included),
  the script's own time (``INFO commandstats`` ``usec_per_call``), and calls per second;
- bytes per waiter: the ``used_memory`` delta over filling the room / waiters;
- the ceiling: the most waiters whose store touches fit in ``--budget`` of the core (default
  50 %) at the room's default schedule. A waiter ``a`` places from the front polls every
  ``domain.rules.refresh_seconds(policy, a)`` and touches the store every
  ``domain.pacing.touch_interval(policy, a)`` (every poll where that function does not exist),
  so ``waiters = N`` such that ``cpu_per_touch × Σ_{a<N} 1 / touch_interval(a) = budget``.

Writes ``bench/results/ceiling.md`` and the matching section of ``bench/RESULTS.md``.
Measure on an otherwise idle machine: another process on the store's core inflates the CPU per
call. Nothing here is asserted about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.common import CLIENT_CPU, SERVER_CPU, cpu_count, free_port, loadavg, pinned
from waitroom_proxy.adapters.redis_store import RedisStore, room_keys
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.rules import refresh_seconds
from waitroom_proxy.ports import RoomLimits

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "ceiling.md"
SUMMARY = HERE / "RESULTS.md"
BEGIN, END = "<!-- ceiling: begin -->", "<!-- ceiling: end -->"
ROOM = "ceiling"
PLACE = "PLACEHOLDER-ID"
"""Stands for the place id while recording a call; replaced by ``wait__rand_int__``."""
ID_PREFIX = "wait"
"""Place ids are ``wait`` + 12 digits = 16 characters, the length of ``new_place_id()``."""


def _place_id(i: int) -> str:
    return f"{ID_PREFIX}{i:012d}"


# ----------------------------------------------------------------------------- the server
@dataclass
class Server:
    port: int
    pid: int
    version: str

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
    """Seconds of CPU the server has used (user + system, all its threads)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def script_stats(client: redis.Redis) -> tuple[int, int]:
    """(calls, usec) of EVALSHA so far (inner commands are part of its time)."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


# ----------------------------------------------------------------------------- the calls
class _Recorded(redis.RedisError):
    """Raised by the recorder so that the adapter call stops once its arguments are known."""


class _Recorder:
    def __init__(self, sha: str) -> None:
        self.sha = sha
        self.keys: list[str] = []
        self.args: list[str] = []

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        self.keys = [str(k) for k in keys]
        self.args = [str(a) for a in args]
        raise _Recorded


async def record(store: RedisStore, name: str, call: Callable[[], Awaitable[Any]]) -> list[str]:
    """The EVALSHA command line that ``call()`` (a ``RedisStore`` method) sends for script
    ``name``, with its place id replaced by ``PLACE``."""
    scripts: dict[str, Any] = store._scripts
    original = scripts[name]
    recorder = _Recorder(original.sha)
    scripts[name] = recorder
    try:
        with contextlib.suppress(Exception):
            await call()
    finally:
        scripts[name] = original
    if not recorder.keys:
        raise RuntimeError(f"the adapter made no {name} call")
    return ["EVALSHA", recorder.sha, str(len(recorder.keys)), *recorder.keys, *recorder.args]


def load_scripts(client: redis.Redis, store: RedisStore) -> None:
    for script in store._scripts.values():
        client.script_load(script.source)


def fill(client: redis.Redis, template: list[str], start: int, n: int, batch: int = 5_000) -> None:
    """Enqueue waiters ``start .. start+n-1`` with the recorded ``arrive`` call, pipelined."""
    where = template.index(PLACE)
    for lo in range(start, start + n, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(lo, min(start + n, lo + batch)):
            cmd = list(template)
            cmd[where] = _place_id(i)
            pipe.execute_command(*cmd)
        replies = pipe.execute()
        bad = [r for r in replies if not isinstance(r, list) or int(r[0]) != 1]
        if bad:
            raise RuntimeError(f"arrive did not queue: {bad[:3]}")


@dataclass
class OpResult:
    name: str
    calls: int
    seconds: float
    cpu_us: float
    """Server CPU (user + system) per call, µs."""
    script_us: float
    """EVALSHA's own time per call (INFO commandstats), µs."""

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def core_capacity(self) -> float:
        """Calls per second one core would run at this CPU per call."""
        return 1e6 / self.cpu_us if self.cpu_us else 0.0


def load(
    server: Server, name: str, cmd: list[str], *, requests: int, keyspace: int, clients: int
) -> OpResult:
    """Run ``cmd`` ``requests`` times with ``redis-benchmark`` (pinned to the client core), the
    place id (or client) drawn from ``keyspace``; the server's CPU and script time per call."""
    bench = shutil.which("redis-benchmark")
    if bench is None:
        sys.exit("redis-benchmark not found (apt-get install redis-tools)")
    line = [a.replace(PLACE, ID_PREFIX + "__rand_int__") for a in cmd]
    client = server.client()
    calls0, usec0 = script_stats(client)
    cpu0 = server_cpu(client)
    t0 = time.perf_counter()
    done = subprocess.run(
        pinned(CLIENT_CPU, [bench, "-h", "127.0.0.1", "-p", str(server.port), "-c", str(clients),
                            "-n", str(requests), "-r", str(keyspace), "-q", *line]),
        capture_output=True, text=True, timeout=3_600,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    cpu1 = server_cpu(client)
    calls1, usec1 = script_stats(client)
    client.close()
    if done.returncode != 0 or "ERR" in done.stdout:
        raise RuntimeError(f"redis-benchmark {name} failed: {done.stdout[-300:]}{done.stderr}")
    found = re.search(r"([\d.]+) requests per second", done.stdout)
    if found:
        seconds = requests / float(found.group(1))
    calls = calls1 - calls0
    # The INFO calls themselves cost the server a little; against 10^5 calls it is noise.
    return OpResult(
        name=name,
        calls=calls,
        seconds=seconds,
        cpu_us=1e6 * (cpu1 - cpu0) / calls,
        script_us=(usec1 - usec0) / calls,
    )


# ----------------------------------------------------------------------------- the ceiling
def _touch_interval() -> tuple[Callable[[RoomPolicy, int], float], str]:
    try:
        from waitroom_proxy.domain.pacing import touch_interval  # type: ignore[attr-defined]
    except ImportError:
        return refresh_seconds, "every poll (refresh_seconds)"
    return touch_interval, "pacing.touch_interval"


def touches_per_second(policy: RoomPolicy, waiters: int, step: int = 1_000) -> float:
    """Store touches per second of ``waiters`` waiters at places 0 .. waiters-1 (constant
    within each block of ``step`` places: the schedule's thresholds are multiples of it)."""
    interval, _ = _touch_interval()
    total = 0.0
    for lo in range(0, waiters, step):
        total += min(step, waiters - lo) / interval(policy, lo)
    return total


def ceiling(policy: RoomPolicy, cpu_us: float, budget: float) -> int:
    """The most waiters whose touches cost at most ``budget`` of one core."""
    limit = budget / (cpu_us / 1e6)  # touches per second the budget pays for
    lo, hi = 0, 1_000
    while touches_per_second(policy, hi) <= limit:
        lo, hi = hi, hi * 2
        if hi > 10**9:
            return hi
    while hi - lo > 1_000:
        mid = (lo + hi) // 2
        if touches_per_second(policy, mid) <= limit:
            lo = mid
        else:
            hi = mid
    return lo


# ----------------------------------------------------------------------------- one size
async def _calls(server: Server, client: redis.Redis) -> tuple[list[str], ...]:
    """The room at capacity (its one slot held: every arrival waits) and the recorded calls."""
    store = RedisStore(f"redis://127.0.0.1:{server.port}/0", timeout=5.0)
    try:
        load_scripts(client, store)
        queue_only = RoomLimits(
            capacity=1, abandon_after_ms=3_600_000, claim_timeout_ms=30_000, direct_admit=False
        )
        await store.arrive(ROOM, "holder", RoomLimits(capacity=1))
        return (
            await record(store, "arrive", lambda: store.arrive(ROOM, PLACE, queue_only)),
            await record(store, "heartbeat", lambda: store.heartbeat(ROOM, PLACE)),
            await record(store, "hit", lambda: store.hit(PLACE, 600, 60_000)),
        )
    finally:
        await store.close()


def measure_size(server: Server, n: int, requests: int, clients: int) -> dict[str, Any]:
    client = server.client()
    client.flushall()
    arrive, heartbeat, hit = asyncio.run(_calls(server, client))

    # Memory: the used_memory delta over the fill, one idle connection open.
    time.sleep(0.2)
    mem0 = int(client.info("memory")["used_memory"])
    fill(client, arrive, 0, n)
    mem1 = int(client.info("memory")["used_memory"])
    keys = room_keys(ROOM)
    usage = {
        piece: int(client.memory_usage(getattr(keys, piece), samples=0) or 0)
        for piece in keys._fields
    }

    hb = load(server, "heartbeat", heartbeat, requests=requests, keyspace=n, clients=clients)
    # New places (ids beyond the filled range): each call adds a waiter at the back.
    new_ids = [a.replace(PLACE, "n" + PLACE) for a in arrive]
    ar = load(server, "arrive", new_ids, requests=requests // 2, keyspace=10**11, clients=clients)
    rl = load(server, "hit", hit, requests=requests, keyspace=100_000, clients=clients)
    client.close()
    return {
        "waiters": n,
        "bytes_per_waiter": (mem1 - mem0) / n,
        "usage_per_waiter": sum(usage.values()) / n,
        "usage": usage,
        "ops": {r.name: r for r in (hb, ar, rl)},
    }


# ----------------------------------------------------------------------------- report
def render(rows: list[dict[str, Any]], args: argparse.Namespace, version: str, cpus: int) -> str:
    policy = RoomPolicy(name="default", capacity=1)
    _, how = _touch_interval()
    ops = ("heartbeat", "arrive", "hit")
    head = "| measure | " + " | ".join(f"{r['waiters']:,} waiters" for r in rows) + " |"
    lines = [head, "|---|" + "---|" * len(rows)]

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in rows) + " |")

    for op in ops:
        row(f"{op}: server CPU µs / call", lambda r, op=op: f"{r['ops'][op].cpu_us:.1f}")
        row(f"{op}: script µs / call (commandstats)",
            lambda r, op=op: f"{r['ops'][op].script_us:.1f}")  # fmt: skip
        row(f"{op}: calls / s (measured)", lambda r, op=op: f"{r['ops'][op].per_second:,.0f}")
    row("bytes / waiter (used_memory delta)", lambda r: f"{r['bytes_per_waiter']:.0f}")
    row("bytes / waiter (MEMORY USAGE of the room's keys)",
        lambda r: f"{r['usage_per_waiter']:.0f}")  # fmt: skip
    row(
        f"waiters held with ≤ {args.budget:.0%} of the core (heartbeats only)",
        lambda r: f"{ceiling(policy, r['ops']['heartbeat'].cpu_us, args.budget):,}",
    )
    row(
        f"the same with the per-client `hit` on the same core (one per poll, {how})",
        lambda r: f"{_with_hit(policy, r, args.budget):,}",
    )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return "\n".join(
        [
            "## One room's ceiling",
            "",
            f"`python -m bench.ceiling` on {when}: redis-server {version} (jemalloc) pinned to "
            f"one core, `redis-benchmark` ({args.clients} connections, one call in flight "
            f"each) on the other; Python {platform.python_version()}, {cpus} CPUs, load "
            f"average {loadavg()} at the end. {args.requests:,} calls per operation; place ids "
            "of 16 characters; a room at capacity (everybody waits). Server CPU per call is "
            "the `used_cpu_user + used_cpu_sys` delta over the calls (socket I/O included); "
            f"the ceiling uses the default schedule (store touches per waiter: {how}) and "
            "the heartbeat's server CPU per call.",
            "",
            *lines,
            "",
        ]
    )


def _with_hit(policy: RoomPolicy, r: dict[str, Any], budget: float) -> int:
    """The ceiling when every poll also costs one ``hit`` on the same core: the polls per
    second of N waiters are Σ 1 / refresh_seconds; the touches are Σ 1 / touch_interval."""
    hb_cpu = r["ops"]["heartbeat"].cpu_us / 1e6
    hit_cpu = r["ops"]["hit"].cpu_us / 1e6
    lo, hi = 0, 1_000

    def cost(n: int) -> float:
        polls = sum(min(1_000, n - lo) / refresh_seconds(policy, lo) for lo in range(0, n, 1_000))
        return touches_per_second(policy, n) * hb_cpu + polls * hit_cpu

    while cost(hi) <= budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1_000:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid)
    return lo


def splice(section: str, path: Path = SUMMARY) -> None:
    """Put ``section`` between the ceiling markers of ``path`` (appended the first time)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{BEGIN}\n{section}{END}\n"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        text = before + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--requests", type=int, default=200_000, help="calls per operation")
    ap.add_argument("--clients", type=int, default=64, help="redis-benchmark connections")
    ap.add_argument("--budget", type=float, default=0.5, help="share of the store core")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; writes nothing")
    ap.add_argument("--out", type=Path, default=None, help="write the section here instead")
    args = ap.parse_args(argv)
    if args.smoke:
        args.sizes, args.requests, args.clients = [2_000], 4_000, 8
    cpus = cpu_count()
    core = SERVER_CPU if cpus >= 2 else None
    if core is not None:
        os.sched_setaffinity(0, {CLIENT_CPU})
    with pinned_redis(core) as server:
        rows = [measure_size(server, n, args.requests, args.clients) for n in args.sizes]
        version = server.version
    text = render(rows, args, version, cpus)
    print(text)
    if args.smoke and args.out is None:
        return 0
    out = args.out or RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if args.out is None:
        splice(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
