"""Part 1: admitted traffic. wrk against the waiting room with a valid session, side by side with
the bare ``UpstreamProxy`` (same upstream client), nginx ``proxy_pass`` and the origin itself.

Layout (2+ cores): wrk on core 0; everything under test on core 1 — nginx (1 worker, serving
both the origin and the ``proxy_pass`` server), the Python servers (one worker each, idle when
not measured), Redis. Bodies of 1 KiB and 100 KiB are static files served by nginx.

Store commands per admitted request: the waiting-room servers run with the admission
controller paused (``BENCH_CONTROLLER_INTERVAL=3600``: it ticks once at start-up), so the
``INFO commandstats`` delta over a wrk run (``INFO`` itself excluded) is exactly what the
requests sent to the store.
"""

from __future__ import annotations

import secrets
import statistics
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.apps import server_cmd
from bench.common import (
    SERVER_CPU,
    Proc,
    WrkResult,
    free_port,
    group_cpu_seconds,
    loadavg,
    pinned,
    tool,
    wait_http,
    wrk,
)

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{origin};
        location / {{ root {dir}/www; default_type text/plain; }}
    }}
    server {{
        listen 127.0.0.1:{proxy};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }}
    }}
}}
"""

ROOM_TOML = """
[[rooms]]
name = "bench"
capacity = 100000
session_ttl = 3600
session_max = 7200
"""

SIZES = {"1 KiB": "1k", "100 KiB": "100k"}


@dataclass
class Target:
    name: str
    url: str
    kind: str  # origin | nginx | bare | waitroom
    server: str = ""
    cookie: str = ""
    proc: Proc | None = None
    pgid: int = 0  # the process group whose CPU time is charged to this target


@dataclass
class Cell:
    target: str
    size: str
    connections: int
    runs: list[WrkResult] = field(default_factory=list)
    store_calls: list[int] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # server CPU per request

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    def median_run(self) -> WrkResult:
        return sorted(self.runs, key=lambda r: r.rps)[len(self.runs) // 2]


def store_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))


def _session_cookie(base: str) -> str:
    with urllib.request.urlopen(base + "/1k", timeout=10) as r:
        r.read()
        for value in r.headers.get_all("Set-Cookie") or []:
            if value.startswith("waitroom_session="):
                return str(value.split(";", 1)[0].split("=", 1)[1])
    raise RuntimeError("no waitroom_session cookie: the room did not admit the first visitor")


def run(
    *,
    store_url: str,
    duration: float,
    connections: list[int],
    sizes: list[str],
    rounds: int,
    servers: list[str],
    with_logged: bool,
    latency_duration: float,
    workdir: Path | None = None,
) -> dict[str, Any]:
    nginx = tool("nginx")
    if nginx is None or tool("wrk") is None:
        raise RuntimeError("nginx and wrk are needed (apt-get install nginx wrk)")
    tmp = Path(workdir or tempfile.mkdtemp(prefix="waitroom-bench-admitted-"))
    www = tmp / "www"
    www.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o755)  # nginx workers run as an unprivileged user when started by root
    (www / "1k").write_bytes(b"x" * 1024)
    (www / "100k").write_bytes(b"x" * 102_400)
    origin_port, nginx_port = free_port(), free_port()
    (tmp / "nginx.conf").write_text(
        NGINX_CONF.format(dir=tmp, origin=origin_port, proxy=nginx_port)
    )
    (tmp / "room.toml").write_text(ROOM_TOML)
    env = {
        "WAITROOM_CONFIG": str(tmp / "room.toml"),
        "WAITROOM_UPSTREAM": f"http://127.0.0.1:{origin_port}",
        "WAITROOM_STORE_URL": store_url,
        "WAITROOM_SECRET": secrets.token_urlsafe(32),
        "WAITROOM_CLIENT_RATE_LIMIT": "0",
        "WAITROOM_LOG_LEVEL": "warning",
        "BENCH_CONTROLLER_INTERVAL": "3600",
    }
    targets = [
        Target("origin (nginx, direct)", f"http://127.0.0.1:{origin_port}", "origin"),
        Target("nginx proxy_pass", f"http://127.0.0.1:{nginx_port}", "nginx"),
    ]
    plan: list[tuple[str, str, str, str]] = []
    for server in servers:
        plan.append((f"bare UpstreamProxy ({server})", "bare", server, "bare"))
    for server in servers:
        plan.append((f"waitroom, session ({server})", "waitroom", server, "waitroom"))
    if with_logged:
        for server in servers:
            plan.append(
                (f"waitroom + access log ({server})", "waitroom", server, "waitroom_logged")
            )
    procs: list[Proc] = [
        Proc("nginx", pinned(SERVER_CPU, [nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)]))
    ]
    for t in targets:
        t.pgid = procs[0].pid
    sync = redis.Redis.from_url(store_url, decode_responses=True)
    sync.flushall()
    try:
        for name, kind, server, factory in plan:
            port = free_port()
            proc = Proc(
                name,
                pinned(SERVER_CPU, server_cmd(server, factory, port)),
                env=env,
                # The access log's lines go to /dev/null (they are written, just not kept).
                log=None if factory == "waitroom_logged" else tmp / f"{factory}-{server}.log",
            )
            procs.append(proc)
            targets.append(
                Target(name, f"http://127.0.0.1:{port}", kind, server, proc=proc, pgid=proc.pid)
            )
        for t in targets:
            probe = "/_waitroom/healthz" if t.kind == "waitroom" else "/1k"
            wait_http(t.url + probe, timeout=30)
            if t.kind == "waitroom":
                t.cookie = _session_cookie(t.url)
        # Every target gets the same request: the bare proxy and nginx forward the cookie to
        # the origin, the waiting room strips it and sends Waitroom-Verified instead.
        shared = next((t.cookie for t in targets if t.cookie), "")
        for t in targets:
            t.cookie = t.cookie or shared
        cells: dict[tuple[str, str, int], Cell] = {}
        for t in targets:  # warm up: connections, caches, the verified-token cache
            headers = [f"Cookie: waitroom_session={t.cookie}"] if t.cookie else []
            wrk(t.url + "/1k", duration=1, connections=max(connections), headers=headers)
        load_before = loadavg()
        started = time.time()
        for _ in range(rounds):
            for size in sizes:
                for conns in connections:
                    for t in targets:
                        cell = cells.setdefault((t.name, size, conns), Cell(t.name, size, conns))
                        headers = [f"Cookie: waitroom_session={t.cookie}"] if t.cookie else []
                        before = store_calls(sync) if t.kind == "waitroom" else 0
                        cpu0 = group_cpu_seconds(t.pgid)
                        result = wrk(
                            t.url + "/" + SIZES[size], duration=duration, connections=conns,
                            headers=headers,
                        )  # fmt: skip
                        cell.runs.append(result)
                        cpu = group_cpu_seconds(t.pgid) - cpu0
                        cell.cpu_us.append(1e6 * cpu / max(1, result.requests))
                        if t.kind == "waitroom":
                            cell.store_calls.append(store_calls(sync) - before)
        latency: dict[str, WrkResult] = {}
        if latency_duration > 0:
            for t in targets:
                headers = [f"Cookie: waitroom_session={t.cookie}"] if t.cookie else []
                latency[t.name] = wrk(
                    t.url + "/1k", duration=latency_duration, connections=1, headers=headers
                )
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} died during the run (see its log in {tmp})")
        return {
            "targets": [t.name for t in targets],
            "kinds": {t.name: (t.kind, t.server) for t in targets},
            "cells": cells,
            "latency": latency,
            "load_before": load_before,
            "load_after": loadavg(),
            "seconds": time.time() - started,
            "duration": duration,
            "rounds": rounds,
        }
    finally:
        for p in reversed(procs):
            p.stop()
        sync.close()
