"""The scale run's figures (``bench.scale``): capacity samples, FIFO inversions, admissions
per window, ETA against the actual wait, refill after a leave; and the headline numbers."""

from __future__ import annotations

import itertools
import statistics
from typing import Any

from bench.scale_crowd import Crowd, ScaleConfig

__all__ = ["analyse", "summary_numbers"]


def analyse(cfg: ScaleConfig, raw: dict[str, Any], samples: list[Any]) -> dict[str, Any]:
    crowd: Crowd = raw["crowd"]
    start, phase_b_at, end = raw["start"], raw["phase_b_at"], raw["end"]
    by_place = {w.place_id: w for w in crowd.waiters if w.place_id}
    promos = sorted(raw["promotions"], key=lambda p: (p[0], p[1]))
    queued_promos = [p for p in promos if not p[3]]

    # Capacity: every 100 ms sample of the store.
    violations = sum(1 for s in samples if s[2] > cfg.capacity)
    occupancy_violations = sum(1 for s in samples if s[2] + s[3] > cfg.capacity)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(samples)]

    # FIFO: promoted in a later tick than someone who arrived after them.
    inversions = 0
    max_score = -1
    batch_time = None
    batch_max = -1
    for t, _, pid, _ in queued_promos:
        w = by_place.get(pid)
        if w is None:
            continue
        if t != batch_time:
            max_score = max(max_score, batch_max)
            batch_time, batch_max = t, -1
        if w.score < max_score:
            inversions += 1
        batch_max = max(batch_max, w.score)
    max_score = max(max_score, batch_max)
    promoted_ids = {p[2] for p in promos} | raw["end_state"]["promoted"]
    skipped = sum(
        1
        for w in crowd.waiters
        if w.state == "waiting" and w.place_id not in promoted_ids and 0 <= w.score < max_score
    )

    # Admissions per window in phase A (every promotion, direct ones included) vs the target.
    windows: list[dict[str, float]] = []
    w0 = start
    while w0 + cfg.window <= phase_b_at + 1e-6:
        n = sum(1 for p in promos if w0 <= p[0] < w0 + cfg.window)
        per_min = n * 60.0 / cfg.window
        windows.append(
            {"from": w0 - start, "count": n, "per_min": per_min,
             "error_pct": 100.0 * (per_min - cfg.admit_rate) / cfg.admit_rate}
        )  # fmt: skip
        w0 += cfg.window

    # ETA predicted at arrival vs actual wait (arrival -> promotion event).
    eta_rows = []
    for t, _, pid, direct in queued_promos:
        w = by_place.get(pid)
        if w is None or direct or w.eta_p50 is None:
            continue
        actual = t - w.arrived
        eta_rows.append((t - start, w.eta_p50 - actual, actual, w.eta_p50, w.eta_p90 or 0))
    claim_lag = []
    for t, _, pid, _ in queued_promos:
        w = by_place.get(pid)
        if w is not None and w.claimed:
            claim_lag.append(w.claimed - t)

    # Refill (phase B): once the room is full, k-th leave -> k-th promotion after it.
    full_at = next(
        (s[0] for s in samples if s[0] >= phase_b_at and s[2] + s[3] >= cfg.capacity), None
    )
    refill: list[float] = []
    if full_at is not None:
        leaves = sorted(w.left for w in crowd.waiters if w.left and full_at <= w.left < end - 2.0)
        later = [p[0] for p in promos if p[0] >= full_at]
        j = 0
        for t_leave in leaves:
            while j < len(later) and later[j] < t_leave - 0.002:  # ms-resolution event times
                j += 1
            if j >= len(later):
                break
            refill.append(max(0.0, later[j] - t_leave))
            j += 1

    late = [x for w in crowd.waiters for x in w.late]
    states: dict[str, int] = {}
    for w in crowd.waiters:
        states[w.state] = states.get(w.state, 0) + 1
    arrivals_done = [w.arrived for w in crowd.waiters if w.arrived]
    return {
        "samples": len(samples),
        "sample_gap_p99_ms": 1000 * _pct(gaps, 99),
        "max_active": max((s[2] for s in samples), default=0),
        "max_occupancy": max((s[2] + s[3] for s in samples), default=0),
        "max_queue": max((s[1] for s in samples), default=0),
        "violations": violations,
        "occupancy_violations": occupancy_violations,
        "inversions": inversions,
        "skipped": skipped,
        "promotions": len(promos),
        "direct": sum(1 for p in promos if p[3]),
        "admitted_total": raw["end_state"]["admitted_total"],
        "windows": windows,
        "eta": eta_rows,
        "claim_lag": claim_lag,
        "refill": refill,
        "late": late,
        "states": states,
        "requests": dict(crowd.requests),
        "errors": dict(crowd.errors),
        "arrival_span": (max(arrivals_done) - min(arrivals_done)) if arrivals_done else 0.0,
        "memory": raw["memory"],
        "queue_at_end": raw["end_state"]["queue"],
        "duration": end - start,
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    data = sorted(values)
    return data[min(len(data) - 1, int(q / 100 * len(data)))]


def summary_numbers(result: dict[str, Any]) -> dict[str, float]:
    """The headline figures (used by the report and the smoke test)."""
    eta_err = [abs(e[1]) for e in result["eta"]]
    return {
        "eta_abs_err_p50": statistics.median(eta_err) if eta_err else float("nan"),
        "eta_abs_err_p90": _pct(eta_err, 90),
        "refill_p50": _pct(result["refill"], 50),
        "refill_p99": _pct(result["refill"], 99),
        "late_p99": _pct(result["late"], 99),
        "claim_lag_p50": _pct(result["claim_lag"], 50),
    }
