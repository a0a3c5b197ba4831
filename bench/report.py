"""Markdown tables and matplotlib plots from the harness's results."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from bench.scale import ScaleConfig, summary_numbers


def _f(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- part 1
def admitted_tables(res: dict[str, Any]) -> str:
    cells = res["cells"]
    kinds: dict[str, tuple[str, str]] = res["kinds"]
    out = []
    combos = sorted({(k[1], k[2]) for k in cells}, key=lambda c: (c[0] != "1 KiB", c[1]))
    for size, conns in combos:
        nginx = cells[("nginx proxy_pass", size, conns)].rps
        rows = []
        for name in res["targets"]:
            cell = cells[(name, size, conns)]
            kind, server = kinds[name]
            med = cell.median_run()
            bare_name = f"bare UpstreamProxy ({server})"
            vs_bare = "-"
            if kind == "waitroom" and (bare_name, size, conns) in cells:
                vs_bare = f"{cell.rps / cells[(bare_name, size, conns)].rps:.2f}×"
            cpu = statistics.median(cell.cpu_us)
            cpu_vs = "-"
            if kind == "waitroom" and (bare_name, size, conns) in cells:
                bare_cpu = statistics.median(cells[(bare_name, size, conns)].cpu_us)
                cpu_vs = f"{cpu / bare_cpu:.2f}×"
            calls = "-"
            if cell.store_calls:
                calls = f"{sum(cell.store_calls) / sum(r.requests for r in cell.runs):.4f}"
            rows.append(
                [name, _f(cell.rps), f"{100 * cell.rps / nginx:.0f} %", vs_bare,
                 _f(med.p50_ms, 2), _f(med.p99_ms, 2),
                 str(sum(r.all_errors for r in cell.runs)), _f(cpu, 1), cpu_vs, calls]
            )  # fmt: skip
        out.append(
            f"**{size}, {conns} connections** (median of {len(cell.runs)} run(s) of "
            f"{res['duration']:g} s)\n\n"
            + _table(
                [
                    "target",
                    "req/s",
                    "of nginx proxy_pass",
                    "× bare proxy",
                    "p50 ms",
                    "p99 ms",
                    "errors",
                    "server CPU µs / req",
                    "CPU × bare",
                    "store cmds / request",
                ],
                rows,
            )
        )
    if res["latency"]:
        rows = []
        for name in res["targets"]:
            w = res["latency"][name]
            kind, server = kinds[name]
            added = "-"
            bare = res["latency"].get(f"bare UpstreamProxy ({server})")
            if kind == "waitroom" and bare is not None:
                added = f"{w.p50_ms - bare.p50_ms:+.3f} / {w.p99_ms - bare.p99_ms:+.3f}"
            rows.append([name, _f(w.rps), _f(w.p50_ms, 3), _f(w.p99_ms, 3), added])
        out.append(
            "**Latency at 1 connection** (1 KiB, closed loop: the service time of one request)\n\n"
            + _table(["target", "req/s", "p50 ms", "p99 ms", "added p50 / p99 ms vs bare"], rows)
        )
    return "\n\n".join(out)


def granian_verdict(res: dict[str, Any]) -> tuple[str, list[float]]:
    cells = res["cells"]
    ratios = []
    for (name, size, conns), cell in cells.items():
        if name.endswith("(uvicorn)"):
            other = (name.replace("(uvicorn)", "(granian)"), size, conns)
            if other in cells:
                ratios.append(cells[other].rps / cell.rps)
    if not ratios:
        return "granian not measured", ratios
    faster = sum(1 for r in ratios if r > 1.0)
    text = (
        f"granian / uvicorn throughput over {len(ratios)} side-by-side cells: median "
        f"{statistics.median(ratios):.2f}×, range {min(ratios):.2f}–{max(ratios):.2f}×, "
        f"faster in {faster} of {len(ratios)}."
    )
    lat = res.get("latency") or {}
    slower_alone = [
        name
        for name in lat
        if name.endswith("(granian)")
        and name.replace("(granian)", "(uvicorn)") in lat
        and lat[name].p50_ms > lat[name.replace("(granian)", "(uvicorn)")].p50_ms
    ]
    consistent = faster == len(ratios) and not slower_alone
    text += (
        " Consistently faster (every cell, and no worse at 1 connection): "
        + ("yes." if consistent else "no")
        + (
            f" (slower p50 at 1 connection for {len(slower_alone)} of the granian rows)."
            if slower_alone
            else ("." if not consistent else "")
        )
    )
    return text, ratios


# ----------------------------------------------------------------------------- part 2
def waiting_table(res: dict[str, Any]) -> str:
    rows = []
    for server, ops in res["rows"].items():
        for r in ops:
            rows.append(
                [server, r["op"], _f(r["per_s"]), _f(r["p50_ms"], 1), _f(r["p99_ms"], 1),
                 str(r["errors"]), _f(r["server_cpu_us"]), f"{r['evalsha_per_op']:.2f}",
                 f"{r['commands_per_op']:.1f}",
                 f"{100 * r['client_cpu']:.0f} %"]
            )  # fmt: skip
    return _table(
        ["server", "operation", "per s", "p50 ms", "p99 ms", "errors", "server CPU µs / op",
         "EVALSHA / op",
         "store commands / op", "load client CPU"],
        rows,
    )  # fmt: skip


# ----------------------------------------------------------------------------- part 3
def scale_tables(cfg: ScaleConfig, res: dict[str, Any]) -> str:
    s = summary_numbers(res)
    mem = res["memory"]
    rows = [
        ["waiters arrived", f"{res['requests']['enqueue']:,} in {res['arrival_span']:.1f} s"],
        ["longest queue sampled", f"{res['max_queue']:,}"],
        ["requests (enqueue / heartbeat / leave)",
         f"{res['requests']['enqueue']:,} / {res['requests']['heartbeat']:,} / "
         f"{res['requests']['leave']:,}"],
        ["heartbeat lateness p99 (client scheduling backlog)", f"{s['late_p99']:.2f} s"],
        ["store samples (every 100 ms; gap p99)",
         f"{res['samples']:,} ({res['sample_gap_p99_ms']:.0f} ms)"],
        ["max active / capacity", f"{res['max_active']} / {cfg.capacity}"],
        ["samples with active > capacity", str(res["violations"])],
        ["samples with active + promoted > capacity", str(res["occupancy_violations"])],
        ["FIFO inversions (promoted in a later tick than a later arrival)",
         str(res["inversions"])],
        ["waiters skipped (still waiting behind a promoted later arrival)", str(res["skipped"])],
        ["promotions seen on NATS / store admitted_total",
         f"{res['promotions']:,} / {res['admitted_total']:,} ({res['direct']} direct)"],
        *_eta_rows(res),
        ["promotion → claim (next heartbeat) p50", f"{s['claim_lag_p50']:.2f} s"],
        ["freed slot refilled (leave → promotion) p50 / p99",
         f"{s['refill_p50'] * 1000:.0f} ms / {s['refill_p99'] * 1000:.0f} ms "
         f"({len(res['refill'])} refills)"],
        ["store memory per waiter: used_memory delta / MEMORY USAGE queue+seen",
         f"{mem.get('used_per_waiter', float('nan')):.0f} B / "
         f"{mem.get('sets_per_waiter', float('nan')):.0f} B "
         f"({mem.get('queued', 0):,} queued)"],
        ["waiter states at the end", ", ".join(f"{k} {v:,}" for k, v in res["states"].items())],
        ["client-side errors", ", ".join(f"{k}: {v}" for k, v in res["errors"].items()) or "0"],
    ]  # fmt: skip
    windows = [
        [f"{w['from']:.0f}–{w['from'] + cfg.window:.0f} s", str(int(w["count"])),
         _f(w["per_min"]), f"{w['error_pct']:+.1f} %"]
        for w in res["windows"]
    ]  # fmt: skip
    return (
        _table(["measure", "value"], rows)
        + f"\n\n**Admissions per {cfg.window:g} s window in phase A** (target "
        f"{cfg.admit_rate}/min; every promotion, direct admissions included)\n\n"
        + _table(["window", "admitted", "per minute", "vs target"], windows)
    )


def _eta_rows(res: dict[str, Any]) -> list[list[str]]:
    """ETA error (p50 predicted at arrival minus the actual wait) by phase: phase B changes
    the admission rate after the predictions were made, so its waiters get in early."""
    b = res["series"]["phase_b"]
    rows = []
    for label, keep in (("phase A", lambda t: t < b), ("phase B", lambda t: t >= b)):
        errs = [e[1] for e in res["eta"] if keep(e[0])]
        if not errs:
            continue
        abs_errs = sorted(abs(x) for x in errs)
        p90 = abs_errs[min(len(abs_errs) - 1, int(0.9 * len(abs_errs)))]
        within = sum(1 for e in res["eta"] if keep(e[0]) and e[2] <= e[4]) / len(errs)
        rows.append(
            [f"ETA p50 at arrival − actual wait, {label}: median error / p90 of abs. error",
             f"{statistics.median(errs):+.1f} s / {p90:.1f} s ({len(errs):,} waiters; actual "
             f"wait ≤ predicted p90 for {100 * within:.0f} %)"]
        )  # fmt: skip
    return rows


def scale_plots(cfg: ScaleConfig, res: dict[str, Any], out: Path, prefix: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = res["series"]
    samples = series["samples"]
    t = [s[0] for s in samples]
    names = []
    fig, axes = plt.subplots(4, 1, figsize=(9, 12), sharex=True)
    ax = axes[0]
    ax.plot(t, [s[1] for s in samples], color="tab:blue")
    ax.set_ylabel("queue length")
    ax.set_title(f"{cfg.waiters:,} waiters, 3 replicas, capacity {cfg.capacity}, "
                 f"admit_rate {cfg.admit_rate}/min")  # fmt: skip
    ax = axes[1]
    ax.plot(t, [s[2] for s in samples], label="active", color="tab:green")
    ax.plot(t, [s[2] + s[3] for s in samples], label="active + promoted", color="tab:olive")
    ax.axhline(cfg.capacity, color="tab:red", linestyle="--", label="capacity")
    ax.set_ylabel("sessions")
    ax.legend(loc="lower right")
    ax = axes[2]
    promos = sorted(series["promotions"])
    step = max(1.0, cfg.window / 6)
    edges = [i * step for i in range(int(max(t or [0]) / step) + 2)]
    rates = []
    for a in edges[:-1]:
        n = sum(1 for p in promos if a - cfg.window < p <= a)
        rates.append(n * 60.0 / cfg.window if a >= cfg.window else float("nan"))
    ax.plot(
        edges[:-1], rates, color="tab:purple", label=f"admissions/min (trailing {cfg.window:g} s)"
    )
    ax.axhline(cfg.admit_rate, color="tab:red", linestyle="--", label="target")
    ax.set_ylabel("admissions / min")
    ax.legend(loc="lower right")
    ax = axes[3]
    eta = res["eta"]
    ax.scatter([e[0] for e in eta], [e[1] for e in eta], s=4, color="tab:orange")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("ETA error s (predicted − actual)")
    ax.set_xlabel("seconds since the first arrival")
    for a in axes:
        a.axvline(series["phase_b"], color="grey", linestyle=":", linewidth=1)
    fig.tight_layout()
    name = f"{prefix}scale.png"
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    names.append(name)
    return names
