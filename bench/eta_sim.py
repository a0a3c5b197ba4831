"""ETA simulation: the p50 a waiter is told at joining vs the wait it really has.

    python -m bench.eta_sim            # every scenario, 3 seeds, before and after
    python -m bench.eta_sim --quick    # one seed (report in bench/results/quick/)

A discrete-event simulation on a virtual clock that drives the real ``MemoryStore`` (the same
semantics as the Redis store, by the contract suite): visitors arrive (Poisson, piecewise
rates), join the queue or get in directly, poll every ``refresh_seconds``, claim on the poll
after their promotion, browse for a while reporting activity every ``activity_interval``, and
then either leave (``POST /leave``) or walk away (the session idles out after
``session_ttl`` + grace). The admission controller ticks every 0.5 s and feeds the estimator
from ``store.stats`` exactly as ``controller.py`` does. The two estimators compared:

- **before**: version 0.1's, kept in ``bench/eta_legacy.py``;
- **after**: ``waitroom_proxy.domain.eta.EtaEstimator``.

Each waiter's error is ``(p50 told at joining - actual wait) / actual wait``, where the actual
wait runs from joining to the promotion (as ``bench/scale.py`` measures it). The report gives
the p50 and p90 of the absolute relative error, the median signed error (the bias), how often
the actual wait was within the p90 told, and how many waiters were told "calculating". Nothing
is timed on the real clock: figures are the same on any machine for a given seed. Writes
``bench/results/eta.md``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.eta_estimators import ESTIMATORS
from bench.eta_scenarios import SCENARIOS, Scenario
from bench.eta_simulation import Result, Simulation

HERE = Path(__file__).resolve().parent


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass(frozen=True)
class Summary:
    waiters: int
    unknown: int
    abs_p50: float
    abs_p90: float
    bias: float
    covered: float
    mean_ahead: float
    mean_wait: float


def summarise(results: list[Result]) -> Summary:
    rel: list[float] = []
    signed: list[float] = []
    covered = 0
    unknown = 0
    ahead: list[int] = []
    waits: list[float] = []
    for r in results:
        for w in r.waiters:
            if w.promoted is None:
                continue
            actual = max(1.0, w.promoted - w.joined)
            waits.append(actual)
            ahead.append(w.ahead)
            if w.eta is None:
                unknown += 1
                continue
            err = (w.eta.p50 - actual) / actual
            rel.append(abs(err))
            signed.append(err)
            covered += actual <= w.eta.p90
    n = len(rel)
    return Summary(
        waiters=n + unknown,
        unknown=unknown,
        abs_p50=statistics.median(rel) if rel else math.nan,
        abs_p90=pct(rel, 90),
        bias=statistics.median(signed) if signed else math.nan,
        covered=covered / n if n else math.nan,
        mean_ahead=statistics.fmean(ahead) if ahead else math.nan,
        mean_wait=statistics.fmean(waits) if waits else math.nan,
    )


def simulate(scenario: Scenario, estimator: str, seeds: int) -> Summary:
    return summarise([Simulation(scenario, estimator, s).run() for s in range(seeds)])


def table(rows: list[tuple[Scenario, str, Summary]]) -> str:
    lines = [
        '| scenario | traffic | estimator | waiters (told "calculating") | mean ahead | '
        "mean wait | p50 abs. error | p90 abs. error | median signed error | within p90 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, name, m in rows:
        lines.append(
            f"| {s.name} | {s.traffic} | {name} | {m.waiters:,} ({m.unknown:,}) | "
            f"{m.mean_ahead:.1f} | {m.mean_wait:.0f} s | {m.abs_p50:.0%} | {m.abs_p90:.0%} | "
            f"{m.bias:+.0%} | {m.covered:.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.eta_sim", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="runs per scenario (default 3)")
    ap.add_argument("--quick", action="store_true", help="one seed per scenario")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: bench/results/eta.md, or bench/results/quick/eta.md with --quick",
    )
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = HERE / "results" / ("quick" if args.quick else "") / "eta.md"
    seeds = 1 if args.quick else args.seeds
    wanted = {n for n in args.only.split(",") if n}
    rows: list[tuple[Scenario, str, Summary]] = []
    for scenario in SCENARIOS:
        if wanted and scenario.name not in wanted:
            continue
        for name in ESTIMATORS:
            rows.append((scenario, name, simulate(scenario, name, seeds)))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = "\n".join(
        [
            "# ETA: the p50 told at joining vs the actual wait (`python -m bench.eta_sim`)",
            "",
            f"{seeds} seed(s) per scenario; error = (p50 told - actual) / actual; actual wait "
            "= joining to promotion. Scenarios:",
            "",
            *[f"- **{s.name}** ({s.traffic}): {s.description}" for s in SCENARIOS],
            "",
            table(rows),
            "",
        ]
    )
    if not wanted:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
