"""The ceiling benchmark's report (``bench/ceiling.py``): the ceiling per version and size,
the table, and where it is written (``bench/results/ceiling.md``, ``ceiling.json`` and the
section of ``bench/RESULTS.md``).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.ceiling_store import TICK_HZ
from bench.ceiling_versions import Version
from bench.common import loadavg

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "ceiling.md"
SUMMARY = HERE / "RESULTS.md"
BEGIN, END = "<!-- ceiling: begin -->", "<!-- ceiling: end -->"


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


def pipelined(v: Version, sizes: list[int]) -> str:
    """What the prose says of the own-client column: who sent its calls, how gathered."""
    depth = ", ".join(f"{statistics.mean(v.results[n]['depths']):.1f}" for n in sizes)
    check = ", ".join(f"{min(v.results[n]['heartbeat_benchmark_P']):.1f}" for n in sizes)
    return (
        f" **{v.label}**: the heartbeats sent by this tree's own `RedisStore` from a Python "
        f"process on the other core, {v.in_flight} in flight, gathered into calls of many ids "
        f"(mean heartbeats per call {depth}, by size); its arrivals by `redis-benchmark -P` at "
        f"that depth, its `hit` one by one (not batched). `redis-benchmark` with calls of as "
        f"many ids: {check} µs of server CPU per heartbeat (least, by size)."
    )


def gathered(versions: list[Version]) -> str:
    """What the prose says of the ids columns."""
    ks = [v.ids for v in versions if v.ids > 1]
    if not ks:
        return ""
    return (
        f" **k ids a call** (k = {', '.join(map(str, ks))}): `redis-benchmark` sends heartbeat "
        "calls of k place ids each (each id drawn at random), as a replica gathers a room's "
        "heartbeats (`adapters/redis_heartbeats.py`); CPU and script time per heartbeat; the "
        "other calls are the lone column's."
    )


def render(versions: list[Version], sizes: list[int], args: Any, version: str, cpus: int) -> str:
    cols = [(n, v) for n in sizes for v in versions]
    head = "| measure | " + " | ".join(f"{n:,} · {v.label}" for n, v in cols) + " |"
    lines = [head, "|---|" + "---|" * len(cols)]

    def row(label: str, cell: Callable[[int, Version], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(n, v) for n, v in cols) + " |")

    for op in ("heartbeat", "arrive", "hit"):
        per = "heartbeat" if op == "heartbeat" else "call"
        row(f"{op}: server CPU µs / {per} (least; median)",
            lambda n, v, op=op: f"{v.results[n][op]['cpu_us']:.1f} "
                                f"({v.results[n][op]['cpu_us_median']:.1f})")  # fmt: skip
        row(f"{op}: script µs / {per} (commandstats)",
            lambda n, v, op=op: f"{v.results[n][op]['script_us']:.1f}")  # fmt: skip
        row(f"{op}: {per}s / s ({args.clients} connections)",
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
            "per call measured at that size (the formula: `bench/ceiling.py`, README)."
            + "".join(pipelined(v, sizes) for v in versions if v.in_flight)
            + gathered(versions),
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
