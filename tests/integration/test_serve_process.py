"""``waitroom-proxy serve`` as a real process: workers, listeners, warnings.

- ``--workers 2`` on a real Redis: the admin listener runs (``/metrics`` answers for both
  workers, each sample labelled ``worker``), every log line of every worker is JSON with the
  access log among them, and no worker takes the other's incarnation marker for a store loss.
- ``--host "[::1]"`` binds ``::1``; an address in use or not available ends in one line naming
  it (exit 1), never a traceback.
- ``check-config`` and ``serve`` print the same warning for an admin port without a token.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.examples.procs import REPO, Proc, free_port, venv_script, wait_http

SITE = REPO / "examples" / "static-site" / "site"
SECRET = "serve-process-" + "p" * 32
TOKEN = "admin-token-" + "t" * 20


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITROOM_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(SITE)],
        tmp_path / "origin.log", env=clean_env(),
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line of a log, parsed; a line that is not JSON fails the test."""
    out = []
    for line in text.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"a log line is not JSON: {line!r}") from None
    return out


@pytest.mark.redis
def test_workers_serve_the_admin_listener_log_json_and_agree_on_the_marker(
    tmp_path: Path, origin: str, redis_server: object
) -> None:
    redis_server.flush()  # type: ignore[attr-defined]
    port, admin = free_port(), free_port()
    env = clean_env(
        WAITROOM_STORE_URL=redis_server.url,  # type: ignore[attr-defined]
        WAITROOM_SECRET=SECRET,
        WAITROOM_ADMIN_TOKEN=TOKEN,
    )
    proxy = Proc(
        [venv_script("waitroom-proxy"), "serve", "--upstream", origin, "--capacity", "5",
         "--port", str(port), "--admin-port", str(admin), "--workers", "2"],
        tmp_path / "proxy.log", env=env,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/_waitroom/healthz", proxy, timeout=60)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            for _ in range(6):
                assert c.get("/index.html").status_code == 200
            # The admin app is not reachable through the proxy port.
            assert "# TYPE" not in c.get("/metrics").text
        auth = {"authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{admin}", timeout=5) as a:
            assert a.get("/metrics").status_code == 401
            assert a.get("/admin/rooms", headers=auth).status_code == 200
            # Each scrape lands on one worker; it answers for both. Wait until both have
            # registered (a readiness wait, not a timed assertion).
            deadline = time.monotonic() + 30
            while True:
                text = a.get("/metrics", headers=auth).text
                if 'worker="0"' in text and 'worker="1"' in text:
                    break
                assert time.monotonic() < deadline, text[-2000:]
                time.sleep(0.2)
            assert "# TYPE waitroom_requests_total counter" in text
            assert text.count("# TYPE waitroom_requests_total") == 1, "one family, both workers"
            passed = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith('waitroom_requests_total{outcome="passed"')
            )
            assert passed >= 6
        time.sleep(1.5)  # a few controller ticks of both workers before the log is read
    finally:
        assert proxy.stop(signal.SIGTERM) == 0, proxy.output()[-3000:]
    lines = json_lines(proxy.output())
    access = [line for line in lines if line.get("logger") == "waitroom_proxy.access"]
    assert len(access) >= 6, "both workers write the access log"
    assert any("admin listener on" in str(line.get("msg")) for line in lines)
    lost = [line for line in lines if "lost its state" in str(line.get("msg"))]
    assert not lost, lost


def test_bracketed_ipv6_host_binds(tmp_path: Path, origin: str) -> None:
    port = free_port()
    proxy = Proc(
        [venv_script("waitroom-proxy"), "serve", "--upstream", origin, "--capacity", "2",
         "--host", "[::1]", "--port", str(port)],
        tmp_path / "proxy.log", env=clean_env(WAITROOM_SECRET=SECRET),
    )  # fmt: skip
    try:
        wait_http(f"http://[::1]:{port}/_waitroom/healthz", proxy)
        assert httpx.get(f"http://[::1]:{port}/index.html").status_code == 200
    finally:
        proxy.stop()
    assert f"listening on http://[::1]:{port}/" in proxy.output()


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    import subprocess

    done = subprocess.run(
        [venv_script("waitroom-proxy"), *args],
        capture_output=True, text=True, timeout=60, env=env or clean_env(),
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_an_address_in_use_is_named_in_one_line(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as busy:
        busy.bind((host, 0))
        busy.listen()
        port = busy.getsockname()[1]
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        code, out, err = run_cli(
            "serve", "--upstream", "http://127.0.0.1:9", "--capacity", "1",
            "--host", f"[{host}]" if ":" in host else host, "--port", str(port),
        )  # fmt: skip
    assert code == 1, (out, err)
    assert err.strip().splitlines() == [
        f"cannot listen on {shown} (host, port): address already in use: another process "
        "listens there; stop it or choose another port"
    ], err
    assert "Traceback" not in out + err


def test_an_admin_address_not_on_this_machine_is_named() -> None:
    code, out, err = run_cli(
        "serve", "--upstream", "http://127.0.0.1:9", "--capacity", "1",
        "--port", str(free_port()), "--admin-port", str(free_port()),
        env=clean_env(WAITROOM_ADMIN_HOST="192.0.2.1", WAITROOM_ADMIN_TOKEN=TOKEN),
    )  # fmt: skip
    assert code == 1, (out, err)
    assert "cannot listen on 192.0.2.1:" in err and "(admin_host, admin_port)" in err, err
    assert "Traceback" not in out + err


def test_a_bracketed_name_is_refused_before_binding() -> None:
    code, _, err = run_cli("serve", "--upstream", "http://127.0.0.1:9", "--capacity", "1",
                           "--host", "[localhost]")  # fmt: skip
    assert code == 2
    assert "--host: " in err and "brackets only enclose an IPv6 address" in err, err


def test_check_config_and_serve_warn_alike_about_an_admin_port_without_token(
    tmp_path: Path, origin: str
) -> None:
    port, admin = free_port(), free_port()
    config = tmp_path / "waitroom.toml"
    config.write_text(
        f'[server]\nupstream = "{origin}"\nport = {port}\nadmin_port = {admin}\n'
        f'secret = "{SECRET}"\n\n[[rooms]]\nname = "shop"\ncapacity = 2\n'
    )
    code, out, err = run_cli("check-config", str(config))
    assert code == 0, err
    warnings = [line.removeprefix("warning: ") for line in err.splitlines()]
    assert len(warnings) == 1 and "admin listener" in warnings[0], err
    proxy = Proc(
        [venv_script("waitroom-proxy"), "serve", "--config", str(config)],
        tmp_path / "proxy.log", env=clean_env(),
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/_waitroom/healthz", proxy)
    finally:
        proxy.stop()
    logged = [line["msg"] for line in json_lines(proxy.output()) if line.get("level") == "warning"]
    assert logged == warnings
