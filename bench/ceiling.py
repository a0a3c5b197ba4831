"""The one-room ceiling: how many waiters one room holds on one store core.

    python -m bench.ceiling                          # 0.1 (7dedbb2) beside this tree: 100k-2M
    python -m bench.ceiling --before none            # this tree only
    python -m bench.ceiling --before <rev>           # any other git revision beside it
    python -m bench.ceiling --sizes 2000000          # any sizes
    python -m bench.ceiling --smoke                  # tiny, for the test suite (seconds)

A room lives on one shard (its keys share one hash tag), so one Redis core bounds it. This
starts its own redis-server (Debian's, jemalloc) pinned with ``taskset`` to one core and drives
it from the other with ``redis-benchmark`` (C; one call in flight per connection, as a
replica's pooled redis-py client sends them), calling each version's own scripts with exactly
the keys and arguments its ``RedisStore`` sends: a subprocess imports that version's package
(``git archive`` of ``--before``) and records them, so the figures follow the code.

Measured per version and size: the server's CPU per call (``used_cpu_user + used_cpu_sys``
delta / calls: what the core spends, socket I/O included; the least of ``--rounds`` rounds,
the versions' rounds interleaved) for ``heartbeat``, ``arrive`` and the per-client ``hit``;
the script's own time (``INFO commandstats``); bytes per waiter (the ``used_memory`` delta over
filling the room); the controller's ``tick`` at twice a second (CPU per tick and share of the
core, the sweep of abandoned waiters included).

The ceiling: the most waiters whose store work fits in ``--budget`` of the core (default 50 %)
at the default schedule. A waiter ``a`` places from the front polls every
``rules.refresh_seconds(policy, a)`` and touches the store every
``pacing.touch_interval(policy, a)`` (every poll in versions without ``domain.pacing``):

    waiters = the largest N with  cpu_touch × Σ_{a<N} 1 / touch_interval(a)  ≤  budget

and, with the per-client rate limit on (the default, 600/min), versions that count every poll
in the store (``hit``) pay ``cpu_hit × Σ_{a<N} 1 / refresh_seconds(a)`` on top.

Writes ``bench/results/ceiling.md`` (the raw figures in ``ceiling.json``) and the matching
section of ``bench/RESULTS.md``. The machine must be otherwise idle for absolute figures; the
versions' ratio, measured side by side, is the robust part. Nothing here is asserted about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.ceiling_store import (
    PLACE,
    TICK_HZ,
    OpResult,
    Server,
    fill,
    load,
    pinned_redis,
    ticks,
    used_memory,
)
from bench.common import CLIENT_CPU, SERVER_CPU, cpu_count, loadavg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "ceiling.md"
SUMMARY = HERE / "RESULTS.md"
BEGIN, END = "<!-- ceiling: begin -->", "<!-- ceiling: end -->"
BASELINE = "7dedbb2"
"""Version 0.1 as it stood before this work (every poll touches the store, per-IP ``hit`` in
the store): the default ``--before``, measured beside the working tree."""
BLOCK = 1_000
"""The schedule is evaluated per block of places (its thresholds are multiples of it)."""
MAX_WAITERS = 20_000_000
TICK_SECONDS = 8.0


# ----------------------------------------------------------------------------- a version
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


async def _record(store: Any, name: str, call: Callable[[], Awaitable[Any]]) -> list[str]:
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


async def _describe(room: str, url: str) -> dict[str, Any]:
    """The calls this version's ``RedisStore`` makes, and its schedule of store touches."""
    from waitroom_proxy.adapters.redis_store import RedisStore
    from waitroom_proxy.domain.policy import RoomPolicy
    from waitroom_proxy.domain.rules import refresh_seconds
    from waitroom_proxy.ports import RoomLimits

    try:
        from waitroom_proxy.domain.pacing import touch_interval

        how = "every few polls far back (domain.pacing)"
    except ImportError:
        touch_interval = refresh_seconds
        how = "every poll"
    store = RedisStore(url, timeout=5.0)
    # (a room's default max_queue_length is 1M: a bigger room must be configured so)
    queue_only = RoomLimits(
        capacity=1, abandon_after_ms=3_600_000, direct_admit=False, max_queue_length=MAX_WAITERS
    )
    ticking = RoomLimits(capacity=1)  # the default abandon_after: the sweep's real pace
    beat: Callable[[], Awaitable[Any]] = lambda: store.heartbeat(room, PLACE)  # noqa: E731
    if "abandon_after_ms" in inspect.signature(store.heartbeat).parameters:
        # (a long abandon_after: the measured polls must not find their places silent)
        beat = lambda: store.heartbeat(room, PLACE, 3_600_000)  # type: ignore[call-arg]  # noqa: E731
    try:
        calls = {
            "holder": await _record(store, "arrive", lambda: store.arrive(room, PLACE, ticking)),
            "arrive": await _record(store, "arrive", lambda: store.arrive(room, PLACE, queue_only)),
            "heartbeat": await _record(store, "heartbeat", beat),
            "hit": await _record(store, "hit", lambda: store.hit(PLACE, 600, 60_000)),
            "tick": await _record(store, "tick", lambda: store.tick(room, ticking)),
        }
    finally:
        await store.close()
    policy = RoomPolicy(name="default", capacity=1)
    blocks = range(0, MAX_WAITERS, BLOCK)
    return {
        "calls": calls,
        "scripts": [s.source for s in store._scripts.values()],
        "touch": [touch_interval(policy, a) for a in blocks],
        "poll": [refresh_seconds(policy, a) for a in blocks],
        "how": how,
    }


@dataclass
class Version:
    label: str
    room: str
    calls: dict[str, list[str]]
    scripts: list[str]
    touch: list[float]
    poll: list[float]
    how: str
    results: dict[int, dict[str, Any]] = field(default_factory=dict)

    def rate(self, intervals: list[float], waiters: int) -> float:
        """Calls per second of ``waiters`` waiters at places 0 .. waiters-1."""
        full, rest = divmod(waiters, BLOCK)
        total = sum(BLOCK / i for i in intervals[:full])
        if rest:
            total += rest / intervals[full]
        return total

    def ceiling(self, budget: float, cost: Callable[[int], float]) -> int:
        """The most waiters (to a block) whose ``cost(n)`` (core seconds per second) fits."""
        lo, hi = 0, BLOCK
        while hi < MAX_WAITERS and cost(hi) <= budget:
            lo, hi = hi, min(MAX_WAITERS, hi * 2)
        while hi - lo > BLOCK:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid)
        return lo


@contextlib.contextmanager
def _tree(rev: str) -> Iterator[Path]:
    """The package of revision ``rev`` (``git archive``) in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="waitroom-ceiling-rev-") as tmp:
        archive = Path(tmp) / "tree.tar"
        with open(archive, "wb") as fh:
            subprocess.run(
                ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "waitroom_proxy"],
                stdout=fh, check=True, timeout=60,
            )  # fmt: skip
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def describe(label: str, room: str, url: str, tree: Path | None) -> Version:
    """Record a version's calls in a subprocess that imports that version's package."""
    path = os.pathsep.join(str(p) for p in (tree, ROOT) if p is not None)
    done = subprocess.run(
        [sys.executable, "-m", "bench.ceiling", "--describe", room, url],
        env={**os.environ, "PYTHONPATH": path}, cwd=tree or ROOT,  # (the cwd comes first)
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"describing {label} failed: {done.stderr[-2000:]}")
    return Version(label=label, room=room, **json.loads(done.stdout))


def measure(server: Server, versions: list[Version], sizes: list[int], args: Any) -> None:
    client = server.client()
    for n in sizes:
        client.flushall()
        for v in versions:
            for source in v.scripts:
                client.script_load(source)
            holder = list(v.calls["holder"])
            holder[holder.index(PLACE)] = "holder"
            client.execute_command(*holder)  # the one slot held: every arrival waits
            time.sleep(0.2)
            mem0 = used_memory(client)
            t0 = time.perf_counter()
            fill(client, v.calls["arrive"], n)
            filled = time.perf_counter() - t0
            res = v.results.setdefault(n, {})
            res["bytes_per_waiter"] = (used_memory(client) - mem0) / n
            res["fill_per_second"] = n / filled
            res["tick_us"], res["tick_share"] = ticks(server, v.calls["tick"], args.tick_seconds)
        for op, keyspace, share in (("heartbeat", n, 1), ("arrive", 10**11, 2), ("hit", 10**5, 1)):
            runs: dict[str, list[OpResult]] = {v.label: [] for v in versions}
            for _ in range(args.rounds):
                for v in versions:
                    cmd = v.calls[op]
                    if op == "arrive":  # new places at the back (ids beyond the filled range)
                        cmd = [a.replace(PLACE, "n" + PLACE) for a in cmd]
                    runs[v.label].append(
                        load(server, cmd, requests=args.requests // share,
                             keyspace=keyspace, clients=args.clients)
                    )  # fmt: skip
            for v in versions:
                rs = runs[v.label]
                v.results[n][op] = {
                    "cpu_us": min(r.cpu_us for r in rs),
                    "cpu_us_median": statistics.median(r.cpu_us for r in rs),
                    "script_us": min(r.script_us for r in rs),
                    "per_second": max(r.per_second for r in rs),
                }
        print(f"measured {n:,} waiters", file=sys.stderr, flush=True)
    client.close()


# ----------------------------------------------------------------------------- report
def ceilings(v: Version, n: int, budget: float) -> tuple[int, int]:
    """(heartbeats only: the formula; all the room's store work: with the per-client rate
    limit at its default and the controller's tick) at ``n``'s figures."""
    r = v.results[n]
    touch = r["heartbeat"]["cpu_us"] / 1e6
    hit = r["hit"]["cpu_us"] / 1e6
    # This version counts every poll in the store (a ``hit`` each) unless it paces polls:
    # then heartbeats are counted by each replica (Gatekeeper.client_wait).
    hit_per_poll = v.how == "every poll"
    alone = v.ceiling(budget, lambda w: touch * v.rate(v.touch, w))
    everything = v.ceiling(
        budget - r["tick_share"],
        lambda w: touch * v.rate(v.touch, w) + (hit * v.rate(v.poll, w) if hit_per_poll else 0),
    )
    return alone, everything


def per_waiter(v: Version, waiters: int) -> float:
    """Mean store touches per waiter per second when ``waiters`` wait (places 0 ..)."""
    return v.rate(v.touch, waiters) / max(1, waiters)


def render(versions: list[Version], sizes: list[int], args: Any, version: str, cpus: int) -> str:
    cols = [(n, v) for n in sizes for v in versions]
    head = "| measure | " + " | ".join(f"{n:,} · {v.label}" for n, v in cols) + " |"
    lines = [head, "|---|" + "---|" * len(cols)]

    def row(label: str, cell: Callable[[int, Version], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(n, v) for n, v in cols) + " |")

    for op in ("heartbeat", "arrive", "hit"):
        row(f"{op}: server CPU µs / call (least; median)",
            lambda n, v, op=op: f"{v.results[n][op]['cpu_us']:.1f} "
                                f"({v.results[n][op]['cpu_us_median']:.1f})")  # fmt: skip
        row(f"{op}: script µs / call (commandstats)",
            lambda n, v, op=op: f"{v.results[n][op]['script_us']:.1f}")  # fmt: skip
        row(f"{op}: calls / s ({args.clients} connections)",
            lambda n, v, op=op: f"{v.results[n][op]['per_second']:,.0f}")  # fmt: skip
    row("bytes / waiter (used_memory delta)",
        lambda n, v: f"{v.results[n]['bytes_per_waiter']:.0f}")  # fmt: skip
    row(f"controller tick at {TICK_HZ:g}/s: server CPU µs / tick (share of the core)",
        lambda n, v: f"{v.results[n]['tick_us']:,.0f} "
                     f"({v.results[n]['tick_share']:.1%})")  # fmt: skip
    row("store touches / s of these waiters at the default schedule",
        lambda n, v: f"{v.rate(v.touch, n):,.0f}")  # fmt: skip
    row("store touches / waiter / s at that ceiling (mean; the formula's denominator)",
        lambda n, v: f"{per_waiter(v, ceilings(v, n, args.budget)[0]):.4f}")  # fmt: skip
    row(f"**waiters held with ≤ {args.budget:.0%} of the core**: heartbeats",
        lambda n, v: f"**{ceilings(v, n, args.budget)[0]:,}**")  # fmt: skip
    row("the same with the per-client rate limit on (the default) and the tick",
        lambda n, v: f"{ceilings(v, n, args.budget)[1]:,}")  # fmt: skip
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    labels = "; ".join(f"**{v.label}**: store touches {v.how}" for v in versions)
    return "\n".join(
        [
            "## One room's ceiling",
            "",
            f"`python -m bench.ceiling` on {when}: redis-server {version} (jemalloc) pinned to "
            f"one core, `redis-benchmark` ({args.clients} connections, one call in flight "
            f"each) pinned to the other; {cpus} CPUs, Python {platform.python_version()}, load "
            f"average {loadavg()} at the end. {labels}. Each version's own scripts, called "
            f"with the arguments its `RedisStore` sends; {args.requests:,} calls per "
            f"operation and round, {args.rounds} rounds, the versions' rounds interleaved; "
            "place ids of 16 characters; a room at capacity (everybody waits); both "
            "versions' rooms are in the server at once, so at N waiters it holds 2N. Server CPU "
            "per call: the `used_cpu_user + used_cpu_sys` delta over the calls (socket I/O "
            "included). Waiters held: the largest N whose heartbeats (and, in the last row, "
            "the per-client `hit` of every poll, where a version counts polls in the store, and "
            "the controller's tick) "
            f"cost at most {args.budget:.0%} of the core at the default schedule, at the CPU "
            "per call measured at that size (the formula: `bench/ceiling.py`, README).",
            "",
            *lines,
            "",
        ]
    )


def splice(section: str, path: Path = SUMMARY, markers: tuple[str, str] = (BEGIN, END)) -> None:
    """Put ``section`` between the ``markers`` of ``path`` (appended the first time)."""
    begin, end = markers
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{begin}\n{section}{end}\n"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        text = before + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 2_000_000])
    ap.add_argument("--before", default=BASELINE, help=f"also this rev ({BASELINE}: 0.1; none)")
    ap.add_argument("--requests", type=int, default=200_000, help="calls per operation, round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=64, help="redis-benchmark connections")
    ap.add_argument("--budget", type=float, default=0.5, help="share of the store core")
    ap.add_argument("--tick-seconds", type=float, default=TICK_SECONDS)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; writes nothing")
    ap.add_argument("--out", type=Path, default=None, help="write the section here instead")
    ap.add_argument("--describe", nargs=2, metavar=("ROOM", "URL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.describe:
        print(json.dumps(asyncio.run(_describe(*args.describe))))
        return 0
    if args.smoke:
        args.sizes, args.requests, args.rounds, args.clients = [2_000], 2_000, 1, 8
        args.tick_seconds = 1.0
    cpus = cpu_count()
    core = SERVER_CPU if cpus >= 2 else None
    if core is not None:
        os.sched_setaffinity(0, {CLIENT_CPU})
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(pinned_redis(core))
        versions = []
        if args.before and args.before != "none":
            known = subprocess.run(
                ["git", "-C", str(ROOT), "cat-file", "-e", f"{args.before}^{{commit}}"],
                capture_output=True, check=False,
            )  # fmt: skip
            if known.returncode != 0:
                sys.exit(f"--before {args.before}: no such commit here (a shallow clone? "
                         "fetch it, or pass --before none)")  # fmt: skip
            tree = stack.enter_context(_tree(args.before))
            label = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", args.before],
                capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            versions.append(describe(f"before ({label})", "ceiling-before", server.url, tree))
        versions.append(describe("this version", "ceiling", server.url, None))
        for i, n in enumerate(args.sizes):
            measure(server, versions, [n], args)
            # written after each size: a long run that fails later keeps what it measured
            text = render(versions, args.sizes[: i + 1], args, server.version, cpus)
            if not args.smoke or args.out is not None:
                write(versions, text, args.out)
    print(text)
    return 0


def write(versions: list[Version], text: str, out: Path | None) -> None:
    """The section to ``out`` (or ``bench/results/ceiling.md`` and ``RESULTS.md``)."""
    path = out or RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    raw = {v.label: {"how": v.how, "sizes": {str(n): r for n, r in v.results.items()}}
           for v in versions}  # fmt: skip
    path.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n")
    if out is None:
        splice(text)


if __name__ == "__main__":
    sys.exit(main())
