"""The benchmark and scale harness: ``python -m bench [--quick | --smoke] [--only PARTS]``.

1. admitted traffic: the waiting room with a session vs the bare proxy (same upstream client)
   vs nginx ``proxy_pass`` vs the origin, under wrk, with uvicorn and granian;
2. waiting-room traffic per replica: enqueues/s and heartbeats/s, store commands per operation;
3. scale and fairness: 3 replicas + Redis + NATS, a crowd of waiters, capacity, FIFO, rate,
   ETA, refill, memory; plots.

A full run (no flag) rewrites ``bench/RESULTS.md`` and ``bench/results/scale.png`` (about 15
minutes). ``--quick`` (under 2 minutes) and ``--smoke`` (CI, well under a minute) write their
report to ``--out`` (default ``bench/results/quick/``). Loopback only; every process it starts
is stopped by its own PID; nothing is asserted about speed.

Forward-auth rows (nginx in front; README, "Behind nginx, Caddy, Traefik or Envoy"):
``python -m bench.forward_auth --write`` (kept across full runs).

Install the locked test and bench extras first: ``scripts/install bench`` (then run it as
``.venv/bin/python -m bench``).
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import admitted, forward_auth, scale, waiting
from bench.common import CLIENT_CPU, SERVER_CPU, cpu_count, loadavg, machine, pinned, tool
from bench.results_doc import render

HERE = Path(__file__).resolve().parent
PARTS = ("admitted", "waiting", "scale")

MODES: dict[str, dict[str, Any]] = {
    "full": {
        "admitted": {"duration": 5, "connections": [64, 256], "sizes": ["1 KiB", "100 KiB"],
                     "rounds": 2, "with_logged": True, "latency_duration": 5},
        "waiting": {"duration": 8, "concurrency": 64, "idle": 2.0},
        "scale": scale.ScaleConfig(),
    },
    "quick": {
        "admitted": {"duration": 2, "connections": [64], "sizes": ["1 KiB"], "rounds": 1,
                     "with_logged": True, "latency_duration": 1},
        "waiting": {"duration": 2.5, "concurrency": 64, "idle": 1.0},
        "scale": scale.ScaleConfig(waiters=5_000, arrival_rate=1_000, phase_a=25, phase_b=10,
                                   window=10, hold=(3, 8), connections_per_replica=8),
    },
    "smoke": {
        "admitted": {"duration": 1, "connections": [16], "sizes": ["1 KiB"], "rounds": 1,
                     "with_logged": False, "latency_duration": 0},
        "waiting": {"duration": 1, "concurrency": 16, "idle": 0.5},
        "scale": scale.ScaleConfig(waiters=400, arrival_rate=400, capacity=50, phase_a=8,
                                   phase_b=4, window=4, hold=(1, 3), heartbeat_interval=2,
                                   connections_per_replica=4),
    },
}  # fmt: skip


def _servers(mode: str) -> list[str]:
    have_granian = True
    try:
        import granian  # noqa: F401
    except ImportError:
        have_granian = False
    if mode == "smoke" or not have_granian:
        return ["uvicorn"]
    return ["uvicorn", "granian"]


def _pin_self(cpu: int | None) -> None:
    if not hasattr(os, "sched_setaffinity"):
        return
    if cpu is None or cpu_count() < 2:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    else:
        os.sched_setaffinity(0, {cpu})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--quick", dest="mode", action="store_const", const="quick")
    group.add_argument("--smoke", dest="mode", action="store_const", const="smoke")
    ap.add_argument("--only", default="", help="comma-separated parts: " + ",".join(PARTS))
    ap.add_argument("--waiters", type=int, default=0, help="waiters in the scale run")
    ap.add_argument("--out", type=Path, default=None, help="report directory")
    ap.add_argument("--render-only", action="store_true", help="re-render the last run's report")
    args = ap.parse_args(argv)
    args.mode = args.mode or "full"
    if args.render_only:
        out = args.out or (HERE if args.mode == "full" else HERE / "results" / "quick")
        with open(out / "last-run.pickle", "rb") as fh:
            saved = pickle.load(fh)  # our own file, written by the run above
        full = saved["args"].mode == "full"
        text = render(saved["args"], saved["info"], saved["results"], saved["scale"],
                      out / "results" if full else out, full)  # fmt: skip
        (out / "RESULTS.md").write_text(text)
        print(text)
        return 0
    parts = [p for p in args.only.split(",") if p] or list(PARTS)
    if unknown := set(parts) - set(PARTS):
        ap.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    missing = [t for t in ("redis-server", "nginx", "wrk") if tool(t) is None]
    if missing:
        print(f"missing: {', '.join(missing)} (apt-get install redis-server nginx wrk)",
              file=sys.stderr)  # fmt: skip
        return 3
    full = args.mode == "full"
    out = args.out or (HERE if full else HERE / "results" / "quick")
    plots_dir = out / "results" if full else out
    plots_dir.mkdir(parents=True, exist_ok=True)
    cfg = MODES[args.mode]
    scale_cfg: scale.ScaleConfig = cfg["scale"]
    if args.waiters:
        scale_cfg.waiters = args.waiters
    servers = _servers(args.mode)

    from bench.events_bench import nats_server
    from bench.store_bench import redis_server

    started = time.time()
    info = machine()
    results: dict[str, Any] = {"load_start": loadavg()}
    pin = cpu_count() >= 2
    if "admitted" in parts or "waiting" in parts:
        # This process (the load client of part 2) and Redis on CLIENT_CPU, with wrk; the
        # servers under test on SERVER_CPU.
        _pin_self(CLIENT_CPU if pin else None)
        with redis_server() as (url, _version):
            if "admitted" in parts:
                print("part 1: admitted traffic ...", flush=True)
                results["admitted"] = admitted.run(
                    store_url=url, servers=servers, **cfg["admitted"]
                )
            if "waiting" in parts:
                print("part 2: waiting-room traffic ...", flush=True)
                results["waiting"] = waiting.run(store_url=url, servers=servers, **cfg["waiting"])
        _pin_self(None)
    if "scale" in parts:
        print(f"part 3: scale run with {scale_cfg.waiters:,} waiters ...", flush=True)
        with redis_server() as (url, _version), nats_server(None) as (nats_url, _nv):
            results["scale"] = scale.run(scale_cfg, nats_url=nats_url, store_url=url)
    if full and ("admitted" in parts or "waiting" in parts):
        print("profiles: in-process hot-path layers, store client ...", flush=True)
        results["profiles"] = _profiles()
    results["load_end"] = loadavg()
    results["seconds"] = time.time() - started

    # Keep the raw results, so that a report can be re-rendered (--render-only) without
    # re-running a quarter of an hour of measurements.
    with open(out / "last-run.pickle", "wb") as fh:
        pickle.dump({"args": args, "info": info, "results": results, "scale": scale_cfg}, fh)
    text = render(args, info, results, scale_cfg, plots_dir, full)
    name = "RESULTS.md"
    text = forward_auth.carry_over(text, out / name)  # python -m bench.forward_auth's rows
    (out / name).write_text(text)
    print(text)
    print(f"\nwrote {out / name}", flush=True)
    return 0


def _profiles() -> dict[str, str]:
    """The attribution tables (bench/hotpath.py, bench/redis_client_bench.py), each pinned to
    one core."""
    out = {}
    for name, args in (
        ("hotpath", ["-m", "bench.hotpath", "--n", "100000"]),
        ("store_client", ["-m", "bench.redis_client_bench", "--calls", "20000"]),
    ):
        cmd = pinned(SERVER_CPU, [sys.executable, *args])
        env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("|")]
        out[name] = "\n".join(lines) if lines else f"(failed: {done.stderr[-300:]})"
    return out


if __name__ == "__main__":
    sys.exit(main())
