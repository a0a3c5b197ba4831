"""The commands of examples/README.md and examples/*/README.md, run (the compose file parsed:
no Docker here)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.docs.forward_auth_checks import test_forward_auth_by_hand  # noqa: F401 (a check)
from tests.docs.helpers import (
    assert_clean_stop,
    clean_env,
    start,
    stop_group,
    substitute,
    wait_for,
)
from tests.docs.registry import REPO, covered_by
from tests.examples.procs import free_port


@pytest.mark.parametrize("text", covered_by("test_static_site_run_sh"))
def test_static_site_run_sh(text: str, tmp_path: Path) -> None:
    """``examples/static-site/run.sh`` as a new user runs it after ``scripts/install`` (no venv
    on PATH, no WAITROOM_PROXY), its ports through SITE_PORT/PROXY_PORT (or substituted in the
    documented ones); the site through the proxy, then Ctrl-C-like SIGTERM stops both."""
    site_port, proxy_port = free_port(), free_port()
    script = substitute(text, {9000: site_port, 9080: proxy_port})
    env = clean_env(SITE_PORT=str(site_port), PROXY_PORT=str(proxy_port))
    proc = start(script, tmp_path / "run.log", env=env)
    try:
        r = wait_for(f"http://127.0.0.1:{proxy_port}/", proc, lambda r: r.status_code == 200)
        assert "<h1>Example Shop</h1>" in r.text
    finally:
        code = stop_group(proc)
    assert code == 0 and "stopped" in proc.output(), proc.output()[-3000:]


def test_static_site_by_hand(tmp_path: Path) -> None:
    """The two commands of the static-site README, each started as written (the site's port
    substituted; the proxy's port and upstream through WAITROOM_PORT/WAITROOM_UPSTREAM, since
    the config file holds them)."""
    site_cmd, proxy_cmd = covered_by("test_static_site_by_hand")
    site_port, proxy_port = free_port(), free_port()
    site_proc = start(substitute(site_cmd, {8000: site_port}), tmp_path / "site.log")
    env = clean_env(
        WAITROOM_PORT=str(proxy_port), WAITROOM_UPSTREAM=f"http://127.0.0.1:{site_port}"
    )
    proxy_proc = start(proxy_cmd, tmp_path / "proxy.log", env=env)
    try:
        wait_for(f"http://127.0.0.1:{site_port}/", site_proc, lambda r: r.status_code == 200)
        r = wait_for(f"http://127.0.0.1:{proxy_port}/", proxy_proc, lambda r: r.status_code == 200)
        assert "<h1>Example Shop</h1>" in r.text
    finally:
        assert_clean_stop(stop_group(proxy_proc), proxy_proc)
        stop_group(site_proc)


def test_fastapi_app(tmp_path: Path) -> None:
    """``WAITROOM_CAPACITY=1 .venv/bin/uvicorn examples.fastapi_app:app --port 8000`` from the
    repository root, port substituted: the shop answers, a second visitor waits."""
    (text,) = covered_by("test_fastapi_app")
    port = free_port()
    proc = start(substitute(text, {8000: port}), tmp_path / "app.log")
    try:
        first = wait_for(f"http://127.0.0.1:{port}/", proc, lambda r: r.status_code == 200)
        assert "waitroom_session" in first.headers.get("set-cookie", "")
        second = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert 'id="wr-waiting-h"' in second.text
    finally:
        stop_group(proc)


@pytest.mark.parametrize("text", covered_by("test_cluster_run_sh"))
def test_cluster_run_sh(text: str, tmp_path: Path) -> None:
    """``examples/cluster/run.sh`` (nginx over three replicas, Redis, NATS), nginx's port given
    with ``--port`` (substituted where the README gives one); a visitor gets the site through
    nginx; Ctrl-C (SIGINT) stops everything."""
    port = free_port()
    script = substitute(text, {8080: port}) if "--port" in text else f"{text} --port {port}"
    proc = start(script, tmp_path / "cluster.log")
    try:
        r = wait_for(f"http://127.0.0.1:{port}/index.html", proc, lambda r: r.status_code == 200,
                     timeout=120)  # fmt: skip
        assert "x-waitroom-replica" in r.headers
        if "--capacity" in text:  # the flag reached the room (read through the admin API)
            # nginx may answer before the script has printed its banner: wait for it.
            deadline = time.monotonic() + 30
            while True:
                out = proc.output()
                admin = re.search(r" admin (http://\S+)/admin/", out)
                token = re.search(r"admin token:\s+(\S+)", out)
                if (admin and token) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert admin and token, out[-3000:]
            room = httpx.get(
                f"{admin.group(1)}/admin/rooms/sale",
                timeout=5,
                headers={"authorization": f"Bearer {token.group(1)}"},
            ).json()
            wanted = re.search(r"--capacity (\d+)", text)
            assert wanted and room["policy"]["capacity"] == int(wanted.group(1)), room
    finally:
        assert_clean_stop(stop_group(proc, signal.SIGINT), proc)


def test_check_config() -> None:
    """``.venv/bin/waitroom-proxy check-config examples/waitroom.toml`` from the root."""
    (text,) = covered_by("test_check_config")
    done = subprocess.run(["bash", "-c", text], cwd=REPO, env=clean_env(), capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("examples/waitroom.toml: OK, 2 rooms")
    assert "no room matches every host" in done.stderr


def test_compose_file_parses_and_configures(tmp_path: Path) -> None:
    """``cd examples && docker compose up --build``: no Docker here. The compose file is parsed
    instead: the proxy service builds the repository's Dockerfile, its command and environment
    (defaults of ``${VAR:-default}`` applied) and its inline ``waitroom.toml`` load with the real
    settings loader, and every file it mounts exists."""
    compose = yaml.safe_load((REPO / "examples" / "docker-compose.yml").read_text())
    proxy = compose["services"]["waitroom-proxy"]
    build = proxy["build"]
    assert (REPO / "examples" / build["context"] / build["dockerfile"]).is_file()
    config = compose["configs"][proxy["configs"][0]["source"]]
    toml = tmp_path / "waitroom.toml"
    toml.write_text(config["content"])
    env = {
        key: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
        for key, value in proxy["environment"].items()
    }
    from waitroom_proxy.config import load_settings

    args = proxy["command"]
    assert args[0] == "serve"
    flags = {
        args[i].removeprefix("--").replace("-", "_"): args[i + 1] for i in range(3, len(args), 2)
    }
    settings = load_settings(str(toml), env=env, flags=flags, require_upstream=True)
    assert settings.admin_port == 9090 and settings.admin_token
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / "examples" / source).exists(), source
        for item in service.get("configs", []):
            assert item["source"] in compose["configs"], item
    for item in compose["configs"].values():
        if "file" in item:
            assert (REPO / "examples" / item["file"]).exists(), item["file"]
