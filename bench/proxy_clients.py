"""Side-by-side throughput of the reverse proxy: nginx origin, nginx proxy_pass, UpstreamProxy.

    python bench/proxy_clients.py [--duration 10] [--connections 64] [--runs 1]

Needs Debian ``nginx`` and ``wrk``, and 2+ cores: wrk runs on core 0, everything under test
(nginx with the origin and the ``proxy_pass`` server, and uvicorn with UpstreamProxy:
``--loop uvloop --http httptools``, 1 worker, access log off) on core 1. The origin answers
1 KiB from memory. Prints req/s, p99 and the share of nginx ``proxy_pass``; compare only
figures from the same run. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    upstream origin {{ server 127.0.0.1:{origin}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{origin};
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
    server {{
        listen 127.0.0.1:{proxy};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                r.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wrk(url: str, duration: int, connections: int) -> tuple[float, str]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"\s99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if errors:
        print(f"  note: {errors.group(0)}", file=sys.stderr)
    return rps, p99


def serve_proxy(upstream: str, port: int) -> None:
    import uvicorn

    from waitroom_proxy.asgi.proxy import UpstreamProxy

    uvicorn.run(
        UpstreamProxy(upstream),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        proxy_headers=False,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--serve-proxy", nargs=2, metavar=("UPSTREAM", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_proxy:
        serve_proxy(args.serve_proxy[0], int(args.serve_proxy[1]))
        return
    for tool in ("nginx", "wrk", "taskset"):
        if not shutil.which(tool) and not Path("/usr/sbin", tool).exists():
            sys.exit(f"{tool} not found")

    origin_port, nginx_proxy_port, our_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp, "nginx.conf")
        conf.write_text(
            NGINX_CONF.format(dir=tmp, origin=origin_port, proxy=nginx_proxy_port, body="x" * 1024)
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        try:
            procs.append(
                subprocess.Popen(["taskset", "-c", "1", nginx, "-c", str(conf), "-p", tmp])
            )
            root = str(Path(__file__).resolve().parent.parent)
            env = {**os.environ, "PYTHONPATH": root}
            procs.append(
                subprocess.Popen(
                    [
                        "taskset",
                        "-c",
                        "1",
                        sys.executable,
                        __file__,
                        "--serve-proxy",
                        f"http://127.0.0.1:{origin_port}",
                        str(our_port),
                    ],
                    env=env,
                )
            )
            targets = {
                "nginx origin (direct)": f"http://127.0.0.1:{origin_port}/",
                "nginx proxy_pass": f"http://127.0.0.1:{nginx_proxy_port}/",
                "UpstreamProxy (uvicorn)": f"http://127.0.0.1:{our_port}/",
            }
            for url in targets.values():
                wait_http(url)
                wrk(url, 2, args.connections)  # warm up
            results: dict[str, list[tuple[float, str]]] = {name: [] for name in targets}
            for _ in range(args.runs):
                for name, url in targets.items():
                    results[name].append(wrk(url, args.duration, args.connections))
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(10)

    base = statistics.median(r for r, _ in results["nginx proxy_pass"])
    print(f"1 KiB, wrk -t1 -c{args.connections} -d{args.duration}s, runs={args.runs} (median)")
    print(f"{'target':28} {'req/s':>10} {'p99':>10} {'% proxy_pass':>13}")
    for name, runs in results.items():
        rps = statistics.median(r for r, _ in runs)
        p99 = runs[len(runs) // 2][1]
        print(f"{name:28} {rps:10.0f} {p99:>10} {100 * rps / base:12.0f}%")


if __name__ == "__main__":
    main()
