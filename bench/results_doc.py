"""The report of ``python -m bench``: ``RESULTS.md`` from one run's results (the three parts,
the targets, the profiles, and the sections other harnesses write, carried over)."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from bench import report, scale
from bench.common import CLIENT_CPU, SERVER_CPU, cpu_count

__all__ = ["PROFILE_NOTES", "render"]


def _command(args: argparse.Namespace) -> str:
    cmd = "python -m bench"
    if args.mode != "full":
        cmd += f" --{args.mode}"
    if args.only:
        cmd += f" --only {args.only}"
    if args.waiters:
        cmd += f" --waiters {args.waiters}"
    return cmd


def render(
    args: argparse.Namespace,
    info: dict[str, str],
    results: dict[str, Any],
    scale_cfg: scale.ScaleConfig,
    plots_dir: Path,
    full: bool,
) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{_command(args)}` on {when} ({results['seconds'] / 60:.1f} min). "
        + ("" if full else "A short run: figures are indicative only. ")
        + "Loopback only. Compare only figures from the same run: the machine is shared and "
        "noisy, so the ratios matter more than the absolute numbers.",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in info.items()],
        f"| load average (1/5/15 min) at start | {results['load_start']} |",
        f"| load average at end | {results['load_end']} |",
        "",
    ]
    if "admitted" in results:
        res = results["admitted"]
        verdict, _ = report.granian_verdict(res)
        lines += [
            "## 1. Admitted traffic",
            "",
            f"wrk (`-t1`, keep-alive) pinned to core {CLIENT_CPU}; everything under test pinned "
            f"to core {SERVER_CPU}: nginx (1 worker, both the origin and the `proxy_pass` "
            "server), each Python server (1 worker; `uvicorn --loop uvloop --http httptools "
            "--no-access-log`, or `granian --interface asgi --loop uvloop`). The origin serves "
            "static files. The waiting room runs on a Redis store with a session cookie taken "
            "from its first response (`Cookie: waitroom_session=...` on every request, sent "
            "to every target alike). "
            "Store commands per admitted request: the waiting-room servers run with the "
            "admission controller paused (`BENCH_CONTROLLER_INTERVAL=3600`, it ticks once at "
            "start-up), and the `INFO commandstats` delta over each wrk run (INFO excluded) is "
            "divided by the requests. 'waitroom + access log' is the request chain fully on "
            "(JSON access-log lines at info, written to /dev/null), as `waitroom-proxy serve` "
            "runs by default; the other waitroom rows have the access log off. 'server CPU "
            "µs / req' is the user + system CPU time of the server's process group over the "
            "run divided by the requests: far less sensitive to other load on the machine than "
            "req/s (for the two nginx rows it is the one nginx worker, which for `proxy_pass` "
            "also serves the origin; for the Python rows the origin's CPU is not included).",
            "",
            f"Load average before / after this part: {res['load_before']} / {res['load_after']}.",
            "",
            report.admitted_tables(res),
            "",
            f"**uvicorn vs granian**: {verdict} The rule for offering granian as a server "
            "choice of `waitroom-proxy serve` is 'consistently faster'; until a run says yes, "
            "`serve` stays on uvicorn (granian remains an optional extra, locked with the bench "
            "extras, `scripts/install bench`, for running `bench.apps` or your own app factory).",
            "",
        ]
    if "waiting" in results:
        res = results["waiting"]
        lines += [
            "## 2. Waiting-room traffic per replica",
            "",
            "One waiting-room worker pinned to one core; the async load client "
            "(`bench/loadclient.py`: keep-alive connections, one request at a time each) and "
            "Redis on the other. A room of capacity 1 whose slot is held, so everybody queues. "
            "Heartbeats reuse the tickets of the places enqueued before. Store commands per "
            "operation: the INFO commandstats delta minus the admission controller's "
            "background rate measured just before (scripts' inner commands included).",
            "",
            f"Load average before / after: {res['load_before']} / {res['load_after']}.",
            "",
            report.waiting_table(res),
            "",
        ]
    if "scale" in results:
        res = results["scale"]
        c = scale_cfg
        try:
            plots = report.scale_plots(c, res, plots_dir, "")
        except ImportError:
            plots = []
        rel = "results/" if full else ""
        lines += [
            "## 3. Scale and fairness",
            "",
            f"{c.replicas} replicas (`uvicorn bench.apps:waitroom`, access log off) on one "
            "Redis and one NATS JetStream server, nginx as the origin, and one simulated "
            f"crowd, all on this machine's {cpu_count()} cores, unpinned. {c.waiters:,} "
            f"waiters arrive at {c.arrival_rate:,.0f}/s on random replicas and heart-beat as "
            f"the waiting page would (`heartbeat_interval` {c.heartbeat_interval:g} s, "
            "adaptive: 2× from 1,000 ahead, 3× from 10,000 ahead), multiplexed over "
            f"{c.connections_per_replica} keep-alive connections per replica. Room: capacity "
            f"{c.capacity}, admit_rate {c.admit_rate}/min; an admitted waiter claims on its next "
            f"heartbeat, holds the session {c.hold[0]:g}–{c.hold[1]:g} s and leaves. Phase A "
            f"({c.phase_a:g} s from the first arrival): the rate binds. Phase B ({c.phase_b:g} "
            "s): `admit_rate` overridden to 0 in the store's room meta, so capacity binds and "
            "every leave is refilled by a promotion. The run stops by itself "
            f"({res['duration']:.0f} s of traffic). Active sessions are sampled from the store "
            "every 100 ms; promotions are the replicas' `position.admitted` events on NATS.",
            "",
            f"Load average before / after: {res['load_before']} / {res['load_after']}.",
            "",
            report.scale_tables(c, res),
            "",
            *(
                [f"![scale run]({rel}{p})" for p in plots]
                or ["(plots skipped: matplotlib is not installed; `scripts/install bench`)"]
            ),
            "",
        ]
    lines += targets_section(results, scale_cfg)
    if "profiles" in results:
        lines += profile_section(results["profiles"])
    if full:
        lines += ceiling_section()
    return "\n".join(lines) + "\n"


def ceiling_section() -> list[str]:
    """The one-room ceiling and the store clients from the last ``python -m bench.ceiling``
    and ``python -m bench.redis_client_bench --write`` runs (they take minutes and a quiet
    machine, so a full run carries them over; each rewrites its part in place between its
    markers)."""
    from bench.ceiling_report import BEGIN, END, RESULTS
    from bench.redis_client_bench import MARKERS

    lines: list[str] = []
    for path, (begin, end) in ((RESULTS, (BEGIN, END)), (RESULTS.parent / "clients.md", MARKERS)):
        if path.exists():
            lines += [begin, path.read_text().rstrip("\n"), "", end, ""]
    return lines


def targets_section(results: dict[str, Any], c: scale.ScaleConfig) -> list[str]:
    rows: list[list[str]] = []

    def add(target: str, measured: str, ok: bool | None) -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "**missed**")
        rows.append([target, measured, verdict])

    if "admitted" in results:
        res = results["admitted"]
        cells = res["cells"]
        for server in ("uvicorn", "granian"):
            wr = f"waitroom, session ({server})"
            bare = f"bare UpstreamProxy ({server})"
            keys = [k for k in cells if k[0] == wr]
            if not keys:
                continue
            ratios = [cells[k].rps / cells[(bare, k[1], k[2])].rps for k in keys]
            per_nginx = [cells[k].rps / cells[("nginx proxy_pass", k[1], k[2])].rps for k in keys]
            add(f"admitted ≥ 1.0× bare proxy ({server})",
                f"{min(ratios):.2f}–{max(ratios):.2f}× (median {statistics.median(ratios):.2f})",
                min(ratios) >= 1.0)  # fmt: skip
            add(f"admitted ≥ 25 % of nginx per core ({server}; moonshot 40 %)",
                f"{100 * min(per_nginx):.0f}–{100 * max(per_nginx):.0f} %",
                min(per_nginx) >= 0.25)  # fmt: skip
            calls = sum(sum(cells[k].store_calls) for k in keys)
            requests = sum(sum(r.requests for r in cells[k].runs) for k in keys)
            add(f"store commands per admitted request = 0 ({server})",
                f"{calls} commands over {requests:,} requests", calls == 0)  # fmt: skip
            lat = res["latency"]
            if wr in lat and bare in lat:
                added = lat[wr].p99_ms - lat[bare].p99_ms
                add(f"added p99 ≤ 1 ms ({server}, 1 connection)", f"{added:+.3f} ms", added <= 1.0)
    if "waiting" in results:
        for server, ops in results["waiting"]["rows"].items():
            by = {r["op"]: r for r in ops}
            hb = by["heartbeat"]["per_s"]
            eq = by["enqueue (JSON)"]["per_s"]
            add(f"heartbeats ≥ 5k/s per replica core ({server})", f"{hb:,.0f}/s", hb >= 5000)
            add(f"enqueues ≥ 3k/s per replica core ({server})",
                f"{eq:,.0f}/s (JSON), {by['enqueue (HTML page)']['per_s']:,.0f}/s (HTML page)",
                eq >= 3000)  # fmt: skip
    if "scale" in results:
        res = results["scale"]
        s = scale.summary_numbers(res)
        add(
            f"{c.waiters:,} waiters, 0 capacity violations",
            f"{res['violations']} in {res['samples']:,} samples",
            res["violations"] == 0,
        )
        add("0 FIFO inversions", f"{res['inversions']} inversions, {res['skipped']} skipped",
            res["inversions"] == 0 and res["skipped"] == 0)  # fmt: skip
        errs = [w["error_pct"] for w in res["windows"]]
        if errs:
            add(
                "admission rate within ±2 % of target per window",
                ", ".join(f"{e:+.1f} %" for e in errs),
                all(abs(e) <= 2.0 for e in errs),
            )
        mem = res["memory"].get("used_per_waiter")
        if mem is not None:
            add("≤ 250 bytes of store memory per waiter",
                f"{mem:.0f} B (used_memory delta), {res['memory']['sets_per_waiter']:.0f} B "
                "(MEMORY USAGE of the queue set and the touch hash)", mem <= 250)  # fmt: skip
        if res["refill"]:
            add("freed slot refilled within 1 s (p99)",
                f"{s['refill_p99'] * 1000:.0f} ms", s["refill_p99"] <= 1.0)  # fmt: skip
    if not rows:
        return []
    return [
        "## Targets",
        "",
        "Reported, never asserted by the test suite.",
        "",
        report._table(["target", "measured", ""], rows),
        "",
    ]


def profile_section(profiles: dict[str, str]) -> list[str]:
    return [
        "## Where the time goes (profiles)",
        "",
        "**Admitted request, in-process** (`python -m bench.hotpath`: each layer around a stub "
        "app that answers at once, one core, uvloop; µs per request above the stub):",
        "",
        profiles.get("hotpath", "-"),
        "",
        "**One store call** (`python -m bench.redis_client_bench`: the heartbeat script, 64 in "
        "flight; the client's own CPU per call):",
        "",
        profiles.get("store_client", "-"),
        "",
        PROFILE_NOTES,
    ]


PROFILE_NOTES = """\
Notes from py-spy (`py-spy record -r 300` on the server under load, raw stacks aggregated by
function) and cProfile, taken while writing this harness; the tables above are re-measured on
every full run.

- **Admitted traffic** (target ≥ 1.0× the bare proxy). The waiting room runs the same
  `UpstreamProxy`; what it adds is Python work spread over many small calls per request, no
  single hot spot: two extra ASGI wrappers (`HardeningGuard`, `RequestContext`: a `send`
  wrapper each, the request id header), the middleware's header loop and `read_cookies`
  (the Cookie header is parsed again by `strip_cookie_names` when the proxy strips the room's
  cookies), a per-request `on_response` closure scanning the origin's headers for
  `Waitroom-Command`, and the added `Waitroom-Verified` header. Already done after the first
  profiles: a one-room catch-all matches without normalising host and path; the per-request
  counters are plain integers exported at scrape time (no `Counter.inc` lock); request ids
  come from a per-process prefix and a counter (no `os.urandom` per request); the access log
  is formatted directly and written once per loop turn instead of going through `logging`; a
  renewed session token is reused for clients that ignore the new cookie. What is left, in the
  order of gain: one fused fast path for "valid session, proxied" that hands the proxy the
  final header list (cookie parsed once, no closure when there is nothing to add), and
  folding the request id and the framing guard into that path. By construction the gatekeeper
  does work the bare proxy does not, so parity is not reachable; 0.85-0.9× looks within reach.
  `gc.freeze()` after start-up gave about 8 % less CPU per request in one side-by-side run
  (noisy; worth a try).
- **Heartbeats and enqueues** (targets 5k/s and 3k/s per core). About 40 % of the server's
  samples are the two socket writes (to Redis in redis-py's `StreamWriter.writelines`, to the
  client in uvicorn's `send`; on loopback the kernel does the receiver's work in the sender's
  context); Starlette routing, `Request` and `JSONResponse` about 10 %; redis-py's command
  machinery 10-15 % (see the store-call table: a pipelined asyncio-protocol client with hiredis
  costs a fraction of redis-py's CPU per call); itsdangerous `loads` + `dumps` of the ticket
  on every heartbeat about 11 % (since then verified tickets are cached and a ticket is
  re-signed only when its `last_seen` is a sixth of `abandon_after` old). To reach 5k/s: a
  lean pipelined store client and the heartbeat route in raw ASGI like the hot path.
  With `client_rate_limit` on (the default, 600/min per IP), every
  enqueue and heartbeat costs one more EVALSHA (`hit`); the harness turns it off because all
  its traffic comes from one address.
- **Store memory per waiter**: the queue set and the touch hash (MEMORY USAGE); the
  `used_memory` delta also counts the server's own buffers and is higher for small crowds
  (`python -m bench.ceiling` measures it at 100k-2M waiters).
"""
