"""What the pieces of a store touch cost: ``heartbeat.lua`` beside copies of it without one
step each, at one room size, one call in flight per connection and pipelined.

    python -m bench.ceiling_parts                    # 2M waiters, -P 1 and 8, 3 rounds
    python -m bench.ceiling_parts --size 1000000 --depths 1 8 64

The copies are for measuring only (they answer wrongly): without the exact ``ZRANK``, without
the ``HGET`` of the last touch, and one that answers right after the ``ZSCORE`` (what the
call, its keys and the first lookup cost alone). The same harness as ``bench/ceiling.py``
(redis-server pinned to one core, ``redis-benchmark`` on the other, the least of the rounds,
interleaved); prints a table, writes nothing. Why it matters: ``domain/pacing.py``, "The exact
rank at every touch".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from bench.ceiling_store import PLACE, fill, load, pinned_redis
from bench.ceiling_versions import record_calls
from bench.common import CLIENT_CPU, SERVER_CPU, cpu_count
from waitroom_proxy.adapters.lua_source import load_script_source

STEPS = {
    "the script": ("", ""),
    "without ZRANK": (
        "local rank = redis.call('ZRANK', queue, id)",
        "local rank = 0",
    ),
    "without the HGET of the last touch": (
        "local last = redis.call('HGET', seen, id)",
        "local last = nil",
    ),
    "answering right after ZSCORE": (
        "if score then\n",
        "if score then\n  do return {1, 1, 1, 1, 1, 1} end\n",
    ),
}


def variants() -> dict[str, str]:
    source = load_script_source("heartbeat")
    out = {}
    for label, (old, new) in STEPS.items():
        if old and old not in source:
            raise SystemExit(f"heartbeat.lua changed: {old!r} not found; update STEPS")
        out[label] = source.replace(old, new) if old else source
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--size", type=int, default=2_000_000)
    ap.add_argument("--depths", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--requests", type=int, default=150_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=64)
    args = ap.parse_args(argv)
    core = SERVER_CPU if cpu_count() >= 2 else None
    if core is not None:
        os.sched_setaffinity(0, {CLIENT_CPU})
    with pinned_redis(core) as server:
        recorded = asyncio.run(record_calls("ceiling", server.url))
        client = server.client()
        for source in recorded["scripts"]:
            client.script_load(source)
        holder = list(recorded["calls"]["holder"])
        holder[holder.index(PLACE)] = "holder"
        client.execute_command(*holder)  # the one slot held: every arrival waits
        t0 = time.perf_counter()
        fill(client, recorded["calls"]["arrive"], args.size)
        print(f"filled {args.size:,} waiters in {time.perf_counter() - t0:.0f} s", flush=True)
        shas = {label: client.script_load(src) for label, src in variants().items()}
        client.close()
        least: dict[tuple[str, int], float] = {}
        for _ in range(args.rounds):
            for label, sha in shas.items():
                for depth in args.depths:
                    cmd = list(recorded["calls"]["heartbeat"])
                    cmd[1] = sha
                    r = load(server, cmd, requests=args.requests, keyspace=args.size,
                             clients=args.clients, depth=depth)  # fmt: skip
                    key = (label, depth)
                    least[key] = min(least.get(key, r.cpu_us), r.cpu_us)
    heads = " | ".join(f"-P {d}" for d in args.depths)
    print(f"\n| server CPU µs / call at {args.size:,} waiters | {heads} |")
    print("|---|" + "---|" * len(args.depths))
    for label in shas:
        cells = " | ".join(f"{least[(label, d)]:.1f}" for d in args.depths)
        print(f"| {label} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
