"""Proof-of-work cost: a visitor's solve time in Chromium vs a bot's CPU time per ticket.

    python -m bench.pow_bench            # difficulties 14-22, both worker engines
    python -m bench.pow_bench --quick    # fewer samples (report in bench/results/quick/)

Measures, on this machine:

1. **Chromium** (Debian's, headless, driven by Playwright; one Web Worker, as a page starts it):
   ``templates/pow-worker.js`` solving fresh ``domain.pow`` challenges, with each engine
   (``js``: its own SHA-256 with the midstate; ``subtle``: ``crypto.subtle.digest``, batched).
   Per difficulty: measured p50/p90 solve time over the samples, and the hash rate. Because a
   solve time is geometric (p90/p50 = 3.3), a few samples give a noisy p50; the table also gives
   the p50 expected from the measured rate, ``ln 2 * 2**d / rate``.
2. **A bot in Python**: ``domain.pow.solve`` (hashlib, midstate copied per try), hashes/s on one
   core, so CPU-seconds per ticket = ``2**d / rate``.
3. **A bot in native code**: ``openssl speed -evp sha256 -bytes 64`` (one core, the 64-byte
   message size of a challenge's tail), the same arithmetic. GPUs are faster still (not
   measured here: none on this machine).

Writes ``bench/results/pow.md``; nothing is asserted. Every process started here (Chromium) is
closed by Playwright; the HTTP server runs in this process on a free loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from waitroom_proxy.asgi.page import content_security_policy, new_nonce
from waitroom_proxy.domain.pow import DEFAULT_DIFFICULTY, PowSigner, solve

HERE = Path(__file__).resolve().parent
WORKER = (HERE.parent / "templates" / "pow-worker.js").read_text()
SIGNER = PowSigner(["pow-bench-" + "b" * 32])
CHROMIUM = os.environ.get("WAITROOM_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-dev-shm-usage"]  # fmt: skip
SOLVE_JS = """([challenge, difficulty, engine]) => new Promise((resolve, reject) => {
  const w = new Worker("/pow-worker.js");
  w.onerror = (e) => reject(new Error("worker failed: " + e.message));
  w.onmessage = (e) => {
    if (e.data.type === "solved" || e.data.type === "error") { w.terminate(); resolve(e.data); }
  };
  w.postMessage({challenge: challenge, difficulty: difficulty, engine: engine});
})"""
TARGET_P50 = (1.0, 2.0)
"""Seconds: the proposed default difficulty puts a visitor's expected p50 in this range."""


def app() -> Starlette:
    async def page(request: Request) -> Response:
        csp = content_security_policy(new_nonce()) + "; worker-src 'self'"
        return HTMLResponse("<!doctype html><title>pow</title>",
                            headers={"Content-Security-Policy": csp})  # fmt: skip

    async def worker(request: Request) -> Response:
        return Response(WORKER, media_type="text/javascript",
                        headers={"Content-Security-Policy": "default-src 'none'"})  # fmt: skip

    return Starlette(routes=[Route("/pow", page), Route("/pow-worker.js", worker)])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


async def chromium(difficulties: list[int], samples: dict[int, int]) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    config = uvicorn.Config(app(), host="127.0.0.1", port=0, log_level="warning",
                            lifespan="off", access_log=False)  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    out: dict[str, Any] = {"rows": [], "version": ""}
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=30_000)
            out["version"] = browser.version
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/pow")
            for engine in ("js", "subtle"):
                # crypto.subtle is an order of magnitude slower: its high rows would take minutes.
                for d in difficulties if engine == "js" else [d for d in difficulties if d <= 18]:
                    times: list[float] = []
                    hashes = 0
                    for _ in range(samples[d]):
                        c = SIGNER.issue("bench", d, time.time())
                        r = await page.evaluate(SOLVE_JS, [c.text, d, engine])
                        assert r["type"] == "solved", r
                        SIGNER.verify(c.text, r["counter"], room="bench", now=time.time())
                        times.append(r["ms"] / 1000)
                        hashes += r["hashes"]
                    rate = hashes / sum(times) if sum(times) > 0 else math.nan
                    out["rows"].append((engine, d, len(times), statistics.median(times),
                                        pct(times, 90), rate))  # fmt: skip
                    print(f"chromium {engine:6} d={d}: p50 {statistics.median(times):.2f} s, "
                          f"{rate / 1e6:.2f} M hashes/s", flush=True)  # fmt: skip
            await browser.close()
    finally:
        server.should_exit = True
        await task
    return out


def python_rate(seconds: float) -> float:
    """Hashes per second of ``domain.pow.solve`` (one core)."""
    c = SIGNER.issue("bench", 40, time.time()).text
    tries, start, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        with contextlib.suppress(ValueError):  # no solution at 40 bits: just count the tries
            solve(c, 40, start=start, limit=200_000)
        start += 200_001
        tries += 200_001
    return tries / (time.perf_counter() - t0)


def openssl_rate(seconds: int) -> float | None:
    """SHA-256 of 64-byte messages per second, one core, native (OpenSSL)."""
    exe = shutil.which("openssl")
    if exe is None:
        return None
    cmd = [exe, "speed", "-seconds", str(seconds), "-bytes", "64", "-evp", "sha256"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60 + seconds)
    m = re.search(
        r"Doing sha256 for \d+s on 64 size blocks: (\d+) sha256", proc.stdout + proc.stderr
    )
    return int(m.group(1)) / seconds if m else None


def expected_p50(d: int, rate: float) -> float:
    return math.log(2) * 2**d / rate


def report(result: dict[str, Any], py: float, native: float | None) -> str:
    rows = result["rows"]
    # A fresh worker per solve starts with a cold JIT, so short solves run slower: the
    # sustained rate is the one at the highest difficulty (the most hashes per solve).
    engine_rate = {
        e: max((r for r in rows if r[0] == e), key=lambda r: r[1])[5] for e in ("js", "subtle")
    }
    fastest = max(engine_rate.values())
    low, high = TARGET_P50
    pick = next((d for d in range(8, 33) if low <= expected_p50(d, fastest) <= high), None)
    load = os.getloadavg()[0]
    lines = [
        "# Proof-of-work cost (`python -m bench.pow_bench`)",
        "",
        f"Chromium {result['version']} headless, one Web Worker; load average {load:.1f} on "
        f"{os.cpu_count()} cores (shared). Solve time: from the worker's start to its answer.",
        "",
        "## A visitor: solve time in Chromium",
        "",
        "| engine | difficulty (bits) | samples | p50 measured | p90 measured "
        "| p50 expected from the rate | hashes/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for engine, d, n, p50, p90, rate in rows:
        lines.append(
            f"| {engine} | {d} | {n} | {p50:.2f} s | {p90:.2f} s | "
            f"{expected_p50(d, rate):.2f} s | {rate / 1e6:.2f} M |"
        )
    lines += [
        "",
        f"Sustained rate (at each engine's highest difficulty): `js` "
        f"{engine_rate['js'] / 1e6:.2f} M hashes/s, "
        f"`subtle` {engine_rate['subtle'] / 1e6:.2f} M hashes/s. Short solves include the "
        "worker's start and a cold JIT.",
        "",
        "## A bot: CPU time per ticket (expected 2^d hashes)",
        "",
        "| solver | hashes/s (one core) | d=18 | d=20 | d=21 | d=22 "
        f"| tickets per core-hour at d={DEFAULT_DIFFICULTY} (the default) |",
        "|---|---|---|---|---|---|---|",
    ]
    solvers = [("Chromium worker (best engine)", fastest), ("Python hashlib (`solve`)", py)]
    if native is not None:
        solvers.append(("native (OpenSSL, 64-byte messages)", native))
    for name, rate in solvers:
        cells = " | ".join(f"{2**d / rate:.2f} s" for d in (18, 20, 21, 22))
        per_hour = 3600 * rate / 2**DEFAULT_DIFFICULTY
        lines.append(f"| {name} | {rate / 1e6:.2f} M | {cells} | {per_hour:,.0f} |")
    lines.append("")
    if pick is None:
        lines.append(f"No difficulty puts the expected p50 in {low:g}-{high:g} s.")
    else:
        lines.append(
            f"Proposed default difficulty: **{pick}** bits (expected p50 "
            f"{expected_p50(pick, fastest):.2f} s for one worker at "
            f"{fastest / 1e6:.2f} M hashes/s)."
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.pow_bench", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="fewer samples, difficulties 12-20")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: bench/results/pow.md, or bench/results/quick/pow.md with --quick",
    )
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = HERE / "results" / ("quick" if args.quick else "") / "pow.md"
    if args.quick:
        difficulties = [12, 16, 20]
        samples = {12: 10, 16: 5, 20: 3}
    else:
        difficulties = [14, 16, 18, 20, 21, 22]
        samples = {14: 40, 16: 30, 18: 25, 20: 20, 21: 15, 22: 12}
    result = asyncio.run(chromium(difficulties, samples))
    py = python_rate(2.0 if args.quick else 5.0)
    print(f"python: {py / 1e6:.2f} M hashes/s", flush=True)
    native = openssl_rate(1 if args.quick else 3)
    print(f"openssl: {native / 1e6 if native else float('nan'):.2f} M hashes/s", flush=True)
    text = report(result, py, native)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
