"""Helpers shared by the harness: machine facts, server processes, wrk, the store's counters."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import redis

from bench.proxy_clients import free_port, wait_http

__all__ = [
    "CLIENT_CPU",
    "SERVER_CPU",
    "Proc",
    "WrkResult",
    "calls_total",
    "cpu_count",
    "free_port",
    "loadavg",
    "machine",
    "pinned",
    "python_cmd",
    "tool",
    "wait_http",
    "wrk",
]

ROOT = Path(__file__).resolve().parent.parent
CLIENT_CPU = 0
SERVER_CPU = 1


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def tool(name: str) -> str | None:
    """A binary on PATH or in /usr/sbin (Debian's nginx lives there)."""
    found = shutil.which(name)
    if found:
        return found
    candidate = Path("/usr/sbin", name)
    return str(candidate) if candidate.exists() else None


def pinned(cpu: int | None, cmd: Sequence[str]) -> list[str]:
    """``cmd`` under ``taskset -c cpu`` when pinning is possible (2+ cores and taskset)."""
    if cpu is None or cpu_count() < 2 or not shutil.which("taskset"):
        return list(cmd)
    return ["taskset", "-c", str(cpu), *cmd]


def python_cmd() -> list[str]:
    return [sys.executable]


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def _pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def _cmd_version(cmd: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "-"
    found = re.search(pattern, out.stdout + out.stderr)
    return found.group(1) if found else "-"


def machine() -> dict[str, str]:
    """What the figures were measured on (no host names or paths)."""
    mem = "-"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    cpu = platform.processor() or "-"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    nginx = tool("nginx")
    return {
        "cpu": f"{cpu_count()} × {cpu}",
        "memory": mem,
        "os": f"{os_name}, kernel {platform.release()}",
        "python": platform.python_version(),
        "nginx": _cmd_version([nginx, "-v"], r"nginx/(\S+)") if nginx else "-",
        "wrk": _cmd_version(["wrk", "-v"], r"wrk (\S+)") if shutil.which("wrk") else "-",
        "redis-server": _cmd_version(["redis-server", "--version"], r"v=(\S+)")
        if shutil.which("redis-server")
        else "-",
        "uvicorn": _pkg("uvicorn"),
        "granian": _pkg("granian"),
        "uvloop": _pkg("uvloop"),
    }


class Proc:
    """A server process this harness started; stopped by its own PID, never by name."""

    def __init__(
        self, name: str, cmd: Sequence[str], *, env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> None:  # fmt: skip
        self.name = name
        self.cmd = list(cmd)
        out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                self.cmd,
                env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if log is not None:
                out.close()  # type: ignore[union-attr]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        # Its own process group (start_new_session): granian's and uvicorn's workers go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)


@contextlib.contextmanager
def running(procs: list[Proc]) -> Iterator[list[Proc]]:
    try:
        yield procs
    finally:
        for p in reversed(procs):
            p.stop()


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    non2xx: int

    @property
    def all_errors(self) -> int:
        return self.errors + self.non2xx


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(out: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors = sum(int(x) for x in sock.groups())
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(rps, p50, p99, requests, errors, int(non.group(1)) if non else 0)


def wrk(
    url: str, *, duration: float, connections: int, headers: Sequence[str] = (),
    cpu: int | None = CLIENT_CPU,
) -> WrkResult:  # fmt: skip
    """One wrk run (1 thread, ``connections`` keep-alive connections), pinned to ``cpu``."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(
        pinned(cpu, [*cmd, url]), capture_output=True, text=True, check=True,
        timeout=duration + 60,
    ).stdout  # fmt: skip
    return parse_wrk(out)


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid`` (Linux)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        # fields[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def calls_total(client: redis.Redis) -> int:
    """Every command the server has run (``INFO commandstats``; script-internal ones included)."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def wait_until(pred: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(pred) and pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")
