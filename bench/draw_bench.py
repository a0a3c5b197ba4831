"""Speed of the pre-queue draw (``domain.draw``): what the start of a sale costs one replica.

    python -m bench.draw_bench                 # 1,000 / 10,000 / 100,000 entries
    python -m bench.draw_bench --sizes 10000

Per size, the median of a few runs of: hashing the place ids into entries, the draw itself
(``draw_order``), the whole store-side plan (``plan_shuffle``: entries, draw, audit record and
scores) and an auditor's ``verify`` of the published JSON; plus the audit document's size.
One core, this process; writes ``bench/results/draw.md``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from waitroom_proxy.domain.draw import commit, draw_order, entry_id, new_seed, plan_shuffle, verify

HERE = Path(__file__).resolve().parent


def timed(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(n: int, runs: int) -> tuple[int, float, float, float, float, int]:
    seed = new_seed()
    record = commit("bench", seed)
    place_ids = [f"place-{i:08d}" for i in range(n)]
    entries = [entry_id("bench", p) for p in place_ids]
    t_hash = timed(lambda: [entry_id("bench", p) for p in place_ids], runs)
    t_draw = timed(lambda: draw_order(seed, entries), runs)
    t_plan = timed(lambda: plan_shuffle(record, seed, place_ids, first_score=1), runs)
    doc = json.loads(
        json.dumps(plan_shuffle(record, seed, place_ids, first_score=1).audit.to_json())
    )
    t_verify = timed(lambda: verify(doc), runs)
    assert verify(doc).ok
    return n, t_hash, t_draw, t_plan, t_verify, len(json.dumps(doc))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.draw_bench", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "draw.md")
    args = ap.parse_args(argv)
    rows = [measure(int(n), args.runs) for n in args.sizes.split(",")]
    lines = [
        "# Pre-queue draw speed (`python -m bench.draw_bench`)",
        "",
        f"One core of {os.cpu_count()} (shared; load average {os.getloadavg()[0]:.1f}); median "
        f"of {args.runs} runs.",
        "",
        "| entries | hash place ids | draw | plan_shuffle (all) | verify (auditor) | audit JSON |",
        "|---|---|---|---|---|---|",
    ]
    for n, t_hash, t_draw, t_plan, t_verify, size in rows:
        lines.append(
            f"| {n:,} | {t_hash * 1000:.0f} ms | {t_draw * 1000:.0f} ms | {t_plan * 1000:.0f} ms "
            f"| {t_verify * 1000:.0f} ms | {size / 1e6:.2f} MB |"
        )
    text = "\n".join([*lines, ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
