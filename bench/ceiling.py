"""The one-room ceiling: how many waiters one room holds on one store core.

    python -m bench.ceiling                          # 0.1 (7dedbb2) beside this tree: 100k-2M
    python -m bench.ceiling --before none            # this tree only
    python -m bench.ceiling --before <rev>           # any other git revision beside it
    python -m bench.ceiling --sizes 2000000          # any sizes
    python -m bench.ceiling --in-flight 64           # the own-client column's calls in flight
    python -m bench.ceiling --ids 2 4 8 16           # the gathered columns' ids per call
    python -m bench.ceiling --smoke                  # tiny, for the test suite (seconds)

A room lives on one shard (its keys share one hash tag), so one Redis core bounds it. This
starts its own redis-server (Debian's, jemalloc) pinned with ``taskset`` to one core and drives
it from the other with ``redis-benchmark`` (C; one call in flight per connection, as a
replica's pooled redis-py client sends them), calling each version's own scripts with exactly
the keys and arguments its ``RedisStore`` sends: a subprocess imports that version's package
(``git archive`` of ``--before``) and records them, so the figures follow the code
(``bench/ceiling_versions.py``). A column "this version, own client" drives the heartbeats
through this tree's own ``RedisStore`` from this process (pinned to the other core),
``--in-flight`` calls at a time, so that it gathers a turn's heartbeats into one call
(``adapters/redis_heartbeats.py``) as a replica does; its arrivals go through
``redis-benchmark -P`` at the ids per call it reached, and ``redis-benchmark`` with calls of
that many ids is run on the heartbeat too, as a check. The columns "this version, k ids a
call" (``--ids``) send heartbeat calls of k place ids each (the recorded call with k ids,
each drawn at random): the store's CPU per heartbeat as a function of how many one call
carries, which a replica's gathering decides (``domain.pacing.touch_linger``, README).

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
section of ``bench/RESULTS.md`` (``bench/ceiling_report.py``). The machine must be otherwise
idle for absolute figures; the versions' ratio, measured side by side, is the robust part.
Nothing here is asserted about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.ceiling_report import render, write
from bench.ceiling_store import (
    PLACE,
    OpResult,
    Server,
    drive,
    fill,
    load,
    pinned_redis,
    ticks,
    used_memory,
)
from bench.ceiling_versions import ROOT, Version, describe, record_calls, tree_of
from bench.common import CLIENT_CPU, SERVER_CPU, cpu_count

BASELINE = "7dedbb2"
"""Version 0.1 as it stood before this work (every poll touches the store, per-IP ``hit`` in
the store): the default ``--before``, measured beside the working tree."""
TICK_SECONDS = 8.0
IN_FLIGHT = 8
"""Heartbeats of one room in flight at once in the pipelined column (``--in-flight``)."""
IDS = (2, 8, 32)
"""Place ids per heartbeat call of the gathered columns (``--ids``)."""
OPS = (("heartbeat", 1), ("arrive", 2), ("hit", 1))
"""The calls measured, and the share of ``--requests`` each gets."""


def fill_room(server: Server, v: Version, n: int, args: Any) -> None:
    """Queue ``n`` waiters in ``v``'s room behind one admitted holder; memory."""
    client = server.client()
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
    client.close()


def one_round(server: Server, v: Version, op: str, n: int, requests: int, args: Any) -> OpResult:
    """One round of ``op`` for ``v`` at ``n`` waiters."""
    cmd = v.calls[op]
    keyspace = {"heartbeat": n, "arrive": 10**11, "hit": 10**5}[op]
    if op == "arrive":  # new places at the back (ids beyond the filled range)
        cmd = [a.replace(PLACE, "n" + PLACE) for a in cmd]
    res = v.results[n]
    if v.ids > 1 and op == "heartbeat":
        return load(server, cmd, requests=requests, keyspace=keyspace, clients=args.clients,
                    ids=v.ids)  # fmt: skip
    if v.in_flight and op == "heartbeat":
        result, depth = drive(server, v.room, n, requests=requests, in_flight=v.in_flight)
        res.setdefault("depths", []).append(depth)
        check = load(server, cmd, requests=requests, keyspace=keyspace, clients=args.clients,
                     ids=max(1, round(depth)))  # fmt: skip
        res.setdefault("heartbeat_benchmark_P", []).append(check.cpu_us)
        return result
    depth = max(1, round(statistics.mean(res["depths"]))) if v.in_flight and op == "arrive" else 1
    return load(server, cmd, requests=requests, keyspace=keyspace, clients=args.clients,
                depth=depth)  # fmt: skip


def base_of(v: Version, versions: list[Version]) -> Version:
    """The column whose room and recorded calls ``v`` shares."""
    return next(b for b in versions if b.room == v.room and not b.in_flight and b.ids == 1)


def measure(server: Server, versions: list[Version], sizes: list[int], args: Any) -> None:
    client = server.client()
    for n in sizes:
        client.flushall()
        for v in versions:
            if not v.in_flight:
                fill_room(server, v, n, args)
        for v in versions:  # the other columns share the room of their version
            if v.in_flight or v.ids > 1:
                v.results[n] = {
                    k: base_of(v, versions).results[n][k]
                    for k in ("bytes_per_waiter", "fill_per_second")
                }
        for op, share in OPS:
            runs: dict[str, list[OpResult]] = {v.label: [] for v in versions}
            mine = [v for v in versions if v.ids == 1 or op == "heartbeat"]
            for _ in range(args.rounds):
                for v in mine:
                    runs[v.label].append(one_round(server, v, op, n, args.requests // share, args))
            for v in versions:
                rs = runs[v.label]
                if not rs:  # an ids column: only its heartbeats differ
                    v.results[n][op] = base_of(v, versions).results[n][op]
                    continue
                v.results[n][op] = {
                    "cpu_us": min(r.cpu_us for r in rs),
                    "cpu_us_median": statistics.median(r.cpu_us for r in rs),
                    "script_us": min(r.script_us for r in rs),
                    "per_second": max(r.per_second for r in rs),
                }
        # The ticks last: their sweep abandons the places filled more than abandon_after
        # (120 s) ago, which a large room's filling takes; the calls above must find them.
        for v in versions:
            if not v.in_flight:
                tick = ticks(server, v.calls["tick"], args.tick_seconds)
                for w in versions:
                    if w.room == v.room:
                        w.results[n]["tick_us"], w.results[n]["tick_share"] = tick
        print(f"measured {n:,} waiters", file=sys.stderr, flush=True)
    client.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 2_000_000])
    ap.add_argument("--before", default=BASELINE, help=f"also this rev ({BASELINE}: 0.1; none)")
    ap.add_argument("--requests", type=int, default=200_000, help="calls per operation, round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=64, help="redis-benchmark connections")
    ap.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="pipelined column; 0: none")
    ap.add_argument("--ids", type=int, nargs="*", default=list(IDS),
                    help="columns: heartbeat calls of this many ids each")  # fmt: skip
    ap.add_argument("--budget", type=float, default=0.5, help="share of the store core")
    ap.add_argument("--tick-seconds", type=float, default=TICK_SECONDS)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; writes nothing")
    ap.add_argument("--out", type=Path, default=None, help="write the section here instead")
    ap.add_argument("--describe", nargs=2, metavar=("ROOM", "URL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.describe:
        print(json.dumps(asyncio.run(record_calls(*args.describe))))
        return 0
    if args.smoke:
        args.sizes, args.requests, args.rounds, args.clients = [2_000], 2_000, 1, 8
        args.ids = [4]
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
            tree = stack.enter_context(tree_of(args.before))
            label = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", args.before],
                capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            versions.append(describe(f"before ({label})", "ceiling-before", server.url, tree))
        versions.append(describe("this version", "ceiling", server.url, None))
        this = versions[-1]
        if args.in_flight > 0:
            versions.append(this.batched(args.in_flight))
        versions += [this.gathered(k) for k in args.ids if k > 1]
        for i, n in enumerate(args.sizes):
            measure(server, versions, [n], args)
            # written after each size: a long run that fails later keeps what it measured
            text = render(versions, args.sizes[: i + 1], args, server.version, cpus)
            if not args.smoke or args.out is not None:
                write(versions, text, args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
