"""Forward-auth rows, side by side in one run: ``python -m bench.forward_auth [--write]``.

nginx ``proxy_pass`` alone; nginx with the shipped ``examples/nginx/nginx.conf`` in front of
waitroom-proxy in forward-auth mode, with its auth cache (as shipped) and without it; the
decisions ``/_waitroom/auth`` answers on its own (uncached, wrk straight at it); and the
inline proxy with a session for reference. Admitted traffic (a valid session cookie), 1 KiB
static files served by an nginx origin, ``wrk -t1`` on core 0, and everything under test on
core 1: the origin, the nginx under test and waitroom-proxy share the one core that nginx alone
has, so the ratio is fair. Redis (the store) runs on core 0 with wrk, as in part 1.

"nginx proxy_pass alone" is the shipped config with the auth lines removed (same upstream
keep-alive, headers and cookie maps), so the ratio prices the auth step and nothing else.
``--write`` replaces the forward-auth section of ``bench/RESULTS.md``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.common import (
    CLIENT_CPU,
    SERVER_CPU,
    Proc,
    WrkResult,
    cpu_count,
    free_port,
    group_cpu_seconds,
    loadavg,
    pinned,
    tool,
    wait_http,
    wrk,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "examples" / "nginx" / "nginx.conf"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN, END = "<!-- forward-auth rows -->", "<!-- /forward-auth rows -->"
ORIGIN_CONF = """
daemon off;
worker_processes 1;
pid {dir}/origin.pid;
error_log {dir}/origin-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/o-body;
    proxy_temp_path {dir}/o-proxy;
    fastcgi_temp_path {dir}/o-fastcgi;
    uwsgi_temp_path {dir}/o-uwsgi;
    scgi_temp_path {dir}/o-scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {dir}/www; default_type text/plain; }}
    }}
}}
"""
AUTH_LINES = re.compile(
    r"^\s*(auth_request|auth_request_set|error_page 401|add_header Set-Cookie|"
    r"proxy_set_header Waitroom-Verified)\b.*\n",
    re.M,
)


def lb_config(d: Path, name: str, port: int, origin: int, waitroom: int, mode: str) -> str:
    """The shipped config for ``mode``: ``cached`` (as shipped), ``uncached`` (no auth cache)
    or ``plain`` (no auth at all: ``proxy_pass`` alone)."""
    text = SHIPPED.read_text()
    subs = {
        "127.0.0.1:8000": f"127.0.0.1:{origin}",
        "127.0.0.1:8080": f"127.0.0.1:{waitroom}",
        "127.0.0.1:8088": f"127.0.0.1:{port}",
        "/tmp/waitroom-nginx.pid": str(d / f"{name}.pid"),
        "/tmp/waitroom-nginx-cache": str(d / f"{name}-cache"),
        "worker_processes auto;": "daemon off;\nworker_processes 1;\n"
        f"error_log {d / name}-error.log warn;",
        "http {": "http {\n    keepalive_requests 1000000;\n"
        + "".join(
            f"    {k}_temp_path {d}/{name}-{k};\n"
            for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ),
    }
    if mode == "uncached":
        subs["proxy_cache waitroom_auth;"] = "proxy_cache off;"
    for old, new in subs.items():
        if old not in text:
            raise RuntimeError(f"examples/nginx/nginx.conf no longer contains {old!r}")
        text = text.replace(old, new)
    if mode == "plain":
        text = AUTH_LINES.sub("", text).replace(
            "proxy_pass http://origin$waitroom_target;", "proxy_pass http://origin;"
        )
    return text


WAITROOM_TOML = """
[server]
store_url = "{store}"
secret = "{secret}"
admin_token = "{token}"
admin_port = {admin}
auth_cache_seconds = 5
{upstream}

[[rooms]]
name = "bench"
capacity = 100000
session_ttl = 3600
session_max = 7200
"""


@dataclass
class Row:
    name: str
    url: str
    pgids: list[int]
    headers: list[str] = field(default_factory=list)
    auth_port: int = 0  # the waitroom admin port whose decisions are counted (0: none)
    runs: list[WrkResult] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    decisions: list[float] = field(default_factory=list)
    store: list[float] = field(default_factory=list)

    def median(self) -> WrkResult:
        return sorted(self.runs, key=lambda r: r.rps)[len(self.runs) // 2]


def _decisions(admin_port: int, token: str) -> float:
    """Requests the waitroom process has judged (``waitroom_requests_total``, all outcomes)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{admin_port}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("waitroom_requests_total{")
    )


def _session(port: int, path: str) -> str:
    """A session cookie from the waitroom (the first visitor is admitted at once)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    conn.close()
    for name, value in response.getheaders():
        if name.lower() == "set-cookie" and value.startswith("waitroom_session="):
            return value.split(";", 1)[0]
    raise RuntimeError(f"no session cookie from 127.0.0.1:{port}{path}: {response.status}")


def run(*, duration: float, rounds: int, connections: int, store_url: str) -> list[Row]:
    nginx = tool("nginx")
    if nginx is None or tool("wrk") is None:
        sys.exit("needs nginx and wrk (apt-get install nginx wrk)")
    d = Path(tempfile.mkdtemp(prefix="waitroom-bench-fwd-"))
    d.chmod(0o755)  # nginx's workers run as another user: they read the files below
    (d / "www").mkdir(mode=0o755)
    (d / "www" / "1k").write_bytes(b"x" * 1024)
    token, secret = secrets.token_hex(16), secrets.token_hex(32)
    ports = {k: free_port() for k in ("origin", "plain", "cached", "uncached", "fa", "fa_admin",
                                      "inline", "inline_admin")}  # fmt: skip
    procs: list[Proc] = []

    def start(name: str, cmd: list[str], probe: str) -> Proc:
        proc = Proc(name, pinned(SERVER_CPU, cmd), log=d / f"{name}.log")
        procs.append(proc)
        wait_http(probe, timeout=30)
        return proc

    try:
        (d / "origin.conf").write_text(ORIGIN_CONF.format(dir=d, port=ports["origin"]))
        origin = start("origin", [nginx, "-p", str(d), "-c", str(d / "origin.conf")],
                       f"http://127.0.0.1:{ports['origin']}/1k")  # fmt: skip
        python = [sys.executable, "-m", "waitroom_proxy", "serve", "--config"]
        for name, upstream in (
            ("fa", ""),
            ("inline", f'upstream = "http://127.0.0.1:{ports["origin"]}"'),
        ):
            (d / f"{name}.toml").write_text(WAITROOM_TOML.format(
                store=store_url, secret=secret, token=token, admin=ports[f"{name}_admin"],
                upstream=upstream))  # fmt: skip
        fa = start("waitroom-fa", [*python, str(d / "fa.toml"), "--port", str(ports["fa"])],
                   f"http://127.0.0.1:{ports['fa']}/_waitroom/healthz")  # fmt: skip
        inline = start("waitroom-inline",
                       [*python, str(d / "inline.toml"), "--port", str(ports["inline"])],
                       f"http://127.0.0.1:{ports['inline']}/_waitroom/healthz")  # fmt: skip
        lbs = {}
        for mode in ("plain", "cached", "uncached"):
            conf = d / f"{mode}.conf"
            conf.write_text(lb_config(d, mode, ports[mode], ports["origin"], ports["fa"], mode))
            lbs[mode] = start(f"nginx-{mode}", [nginx, "-p", str(d), "-c", str(conf)],
                              f"http://127.0.0.1:{ports[mode]}/_waitroom/healthz")  # fmt: skip
        # One session each (both processes share the store and the secret: either would do).
        cookie_fa = _session(ports["cached"], "/1k")
        cookie_inline = _session(ports["inline"], "/1k")
        described = ["X-Original-URI: /1k", "X-Original-Method: GET", f"Cookie: {cookie_fa}"]
        rows = [
            Row("origin (nginx, direct)", f"http://127.0.0.1:{ports['origin']}/1k", [origin.pid]),
            Row("nginx proxy_pass alone", f"http://127.0.0.1:{ports['plain']}/1k",
                [lbs["plain"].pid], [f"Cookie: {cookie_fa}"]),
            Row("nginx + forward-auth, cached (as shipped)",
                f"http://127.0.0.1:{ports['cached']}/1k", [lbs["cached"].pid, fa.pid],
                [f"Cookie: {cookie_fa}"], ports["fa_admin"]),
            Row("nginx + forward-auth, uncached", f"http://127.0.0.1:{ports['uncached']}/1k",
                [lbs["uncached"].pid, fa.pid], [f"Cookie: {cookie_fa}"], ports["fa_admin"]),
            Row("/_waitroom/auth alone (uncached decisions)",
                f"http://127.0.0.1:{ports['fa']}/_waitroom/auth", [fa.pid], described,
                ports["fa_admin"]),
            Row("waitroom inline proxy, session", f"http://127.0.0.1:{ports['inline']}/1k",
                [inline.pid], [f"Cookie: {cookie_inline}"], ports["inline_admin"]),
        ]  # fmt: skip
        store = redis.Redis.from_url(store_url)
        for row in rows:  # warm-up: pools, caches, the first nginx cache fill
            wrk(row.url, duration=1, connections=connections, headers=row.headers)
        # The controllers' own ticks reach the store whatever the traffic: measured idle, taken
        # off every run, so the column is what the requests sent.
        calls0, t0 = _store_calls(store), time.monotonic()
        time.sleep(duration)
        idle_rate = (_store_calls(store) - calls0) / (time.monotonic() - t0)
        for _ in range(rounds):
            for row in rows:
                cpu0 = sum(group_cpu_seconds(p) for p in row.pgids)
                calls0 = _store_calls(store)
                dec0 = _decisions(row.auth_port, token) if row.auth_port else 0.0
                started = time.monotonic()
                result = wrk(row.url, duration=duration, connections=connections,
                             headers=row.headers)  # fmt: skip
                cpu = sum(group_cpu_seconds(p) for p in row.pgids) - cpu0
                idle = idle_rate * (time.monotonic() - started)
                row.runs.append(result)
                n = max(result.requests, 1)
                row.cpu_us.append(cpu * 1e6 / n)
                row.store.append(max(0.0, _store_calls(store) - calls0 - idle) / n)
                if row.auth_port:
                    # The metrics request itself is not a decision (the admin listener).
                    row.decisions.append((_decisions(row.auth_port, token) - dec0) / n)
        store.close()
        return rows
    finally:
        for proc in reversed(procs):
            proc.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(d, ignore_errors=True)


def _store_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def table(rows: list[Row], *, duration: float, rounds: int, connections: int) -> str:
    base = statistics.median(r.rps for r in rows[1].runs)
    lines = [
        f"**1 KiB, {connections} connections, admitted traffic** (median of {rounds} run(s) "
        f"of {duration:g} s; load average at the end {loadavg()})",
        "",
        "| target | req/s | × nginx proxy_pass | p50 ms | p99 ms | errors | server CPU µs / req "
        "| decisions / request | store cmds / request |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        m = row.median()
        rps = statistics.median(r.rps for r in row.runs)
        ratio = "-" if row is rows[0] else f"{rps / base:.2f}×"
        decisions = f"{statistics.median(row.decisions):.4f}" if row.decisions else "-"
        lines.append(
            f"| {row.name} | {rps:,.0f} | {ratio} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | "
            f"{m.all_errors} | {statistics.median(row.cpu_us):.1f} | {decisions} | "
            f"{statistics.median(row.store):.4f} |"
        )
    return "\n".join(lines)


def section(text: str) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return "\n".join([
        BEGIN,
        "## Forward-auth mode (nginx in front, `python -m bench.forward_auth`)",
        "",
        f"Written on {when}. {__doc__.split(chr(10) + chr(10))[1].replace(chr(10), ' ')}",
        "'server CPU µs / req' sums the process groups under test (the nginx in front and, "
        "for the forward-auth rows, waitroom-proxy; not the origin). 'decisions / request': "
        "requests waitroom-proxy judged (`waitroom_requests_total`) per request served: with the "
        "auth cache, one per session cookie and URL per `auth_cache_seconds` (5). 'store cmds "
        "/ request': the Redis `INFO commandstats` delta over the run, less the controllers' "
        "idle rate measured just before, per request.",
        "",
        text,
        END,
    ])  # fmt: skip


def write(text: str) -> None:
    current = RESULTS.read_text() if RESULTS.exists() else ""
    block = section(text)
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        current = head + block + rest.split(END, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS.write_text(current)


def carry_over(text: str, previous: Path) -> str:
    """``text`` (a full ``python -m bench`` report) with the forward-auth section of the report
    it replaces, so that a full run does not drop the rows of this sub-command."""
    old = previous.read_text() if previous.exists() else ""
    if BEGIN not in old or END not in old or BEGIN in text:
        return text
    block = BEGIN + old.split(BEGIN, 1)[1].split(END, 1)[0] + END
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.forward_auth", description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args(argv)
    if cpu_count() >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {CLIENT_CPU})  # Redis (started below) inherits it
    from bench.store_bench import redis_server

    with redis_server() as (url, _version):
        rows = run(duration=args.duration, rounds=args.rounds, connections=args.connections,
                   store_url=url)  # fmt: skip
    text = table(rows, duration=args.duration, rounds=args.rounds, connections=args.connections)
    print(text)
    if args.write:
        write(text)
        print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
