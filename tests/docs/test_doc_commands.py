"""Every command the documentation gives is run here, or rendered where it cannot run.

``test_every_doc_command_has_a_check`` extracts the commands from the docs
(:mod:`tests.docs.commands`) and fails on one that no check below covers, and on a registered
command the docs no longer give: ``CHECKS`` is the list of doc commands and the check of each.
The checks run the documented text itself, with free ports substituted for the documented ones
(textually, or through ``WAITROOM_PORT``/``WAITROOM_UPSTREAM`` where a config file holds them);
long-running commands are started, probed and stopped by process group.

What cannot run here is rendered or parsed instead, and the check says so in its docstring:
``helm install``/``helm test`` (no Kubernetes cluster: ``helm template``), ``docker compose``
(no Docker: the compose file is parsed and its proxy configuration loaded), ``scripts/test``
(it *is* this suite, as ``.ci/run`` runs it), ``scripts/lock`` (it re-resolves the lock from
the package index: syntax and the files it writes are checked) and ``pytest`` lines of test
directories this suite runs anyway (collected, not run twice).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.docs.commands import REPO, DocCommand, block_of, doc_commands
from tests.examples.procs import Proc, free_port, wait_http

# The check of each documented command (its text, spaces collapsed). One check may cover
# several commands; a command given in several docs is one entry.
CHECKS: dict[str, str] = {
    "scripts/install && .venv/bin/waitroom-proxy demo": "test_install_then_demo",
    "scripts/install": "test_install_then_demo",
    "scripts/install test": "test_install_test_is_what_the_suite_runs",
    "scripts/test": "test_scripts_test_is_what_ci_runs",
    'scripts/install && export PATH="$PWD/.venv/bin:$PATH"': "test_quick_start_in_front_of_a_site",
    "waitroom-proxy serve --upstream http://127.0.0.1:8000 --capacity 100 --admit-rate 300 "
    "--port 8080": "test_quick_start_in_front_of_a_site",
    "export WAITROOM_STORE_URL=redis://127.0.0.1:6379/0": "test_shared_store_block",
    "export WAITROOM_SECRET=\"$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\"":
        "test_shared_store_block",
    "waitroom-proxy serve --config examples/waitroom.toml": "test_shared_store_block",
    "helm install sale helm/waitroom-proxy --set upstream=http://shop.default.svc:8080 --set "
    "store.url=redis://dragonfly:6379 --set nats.url=nats://nats:4222 --set "
    'auth.secret="$(openssl rand -base64 32)" --set auth.adminToken="$(openssl rand -hex 16)"':
        "test_helm_install_renders",
    "helm install wr helm/waitroom-proxy --set image.repository=REGISTRY/waitroom-proxy --set "
    "upstream=http://shop.default.svc.cluster.local:8080 --set "
    "store.url=redis://dragonfly.data.svc.cluster.local:6379/0 --set "
    'auth.secret="$(openssl rand -hex 32)" --set auth.adminToken="$(openssl rand -hex 32)"':
        "test_helm_install_renders",
    "helm test wr": "test_helm_test_hook_renders",
    "UPDATE_GOLDEN=1 .venv/bin/pytest tests/helm && git diff tests/helm/golden":
        "test_golden_update_leaves_no_diff",
    ".venv/bin/pytest tests/unit": "test_pytest_lines_collect",
    ".venv/bin/pytest tests/examples": "test_pytest_lines_collect",
    "scripts/lock": "test_lock_script",
    "scripts/lock --upgrade": "test_lock_script",
    "examples/static-site/run.sh": "test_static_site_run_sh",
    "SITE_PORT=9000 PROXY_PORT=9080 examples/static-site/run.sh": "test_static_site_run_sh",
    "python3 -m http.server 8000 --bind 127.0.0.1 --directory examples/static-site/site":
        "test_static_site_by_hand",
    ".venv/bin/waitroom-proxy serve --config examples/static-site/waitroom.toml":
        "test_static_site_by_hand",
    "WAITROOM_CAPACITY=1 .venv/bin/uvicorn examples.fastapi_app:app --port 8000":
        "test_fastapi_app",
    "examples/cluster/run.sh": "test_cluster_run_sh",
    "examples/cluster/run.sh --port 8080 --capacity 5 --admit-rate 60": "test_cluster_run_sh",
    ".venv/bin/waitroom-proxy check-config examples/waitroom.toml": "test_check_config",
    "cd examples && docker compose up --build": "test_compose_file_parses_and_configures",
}  # fmt: skip

VENV_BIN = str(REPO / ".venv" / "bin")
TOOLS = str(REPO / ".tools")


def covered_by(check: str) -> list[str]:
    found = [text for text, name in CHECKS.items() if name == check]
    assert found, f"no doc command is registered for {check}"
    return found


def command(text: str) -> DocCommand:
    for found in doc_commands():
        if found.text == text:
            return found
    raise AssertionError(f"the docs no longer give: {text}")


def test_every_doc_command_has_a_check() -> None:
    extracted = doc_commands()
    assert len(extracted) >= 20, "the extractor found too few commands"
    uncovered = [f"{c.where()}: {c.text}" for c in extracted if c.text not in CHECKS]
    assert not uncovered, "doc commands without a check (add one to CHECKS):\n" + "\n".join(
        uncovered
    )
    stale = sorted(set(CHECKS) - {c.text for c in extracted})
    assert not stale, f"registered commands no doc gives any more: {stale}"
    names = {name for name in CHECKS.values()}
    defined = {name for name in globals() if name.startswith("test_")}
    assert names <= defined, names - defined


# --------------------------------------------------------------------------- helpers


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without WAITROOM_* settings and without this venv on PATH (a new
    user's shell), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITROOM_")}
    parts = [p for p in env.get("PATH", "").split(":") if p and Path(p) != Path(VENV_BIN)]
    env["PATH"] = ":".join(parts or ["/usr/bin", "/bin"])
    env.pop("VIRTUAL_ENV", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def substitute(text: str, ports: dict[int, int]) -> str:
    for old, new in ports.items():
        text = re.sub(rf"(?<![\d.]){old}(?!\d)", str(new), text)
    return text


def start(script: str, log: Path, *, cwd: Path = REPO, env: dict[str, str] | None = None) -> Proc:
    """Run ``script`` in bash, in its own process group (stopped with everything it started)."""
    return Proc(["bash", "-c", script], log, cwd=cwd, env=env or clean_env(), new_session=True)


def stop_group(proc: Proc, sig: int = signal.SIGTERM) -> int:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        code = proc.popen.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        code = proc.popen.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # children of the group end too
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"a process of the group was left running:\n{proc.output()[-2000:]}")
    return code


def assert_clean_stop(code: int, proc: Proc) -> None:
    """Stopped by our signal (bash itself may die of it) or exited 0, and no traceback."""
    out = proc.output()
    assert code in (0, -signal.SIGTERM, -signal.SIGINT, 130, 143), (code, out[-3000:])
    assert "Traceback" not in out, out[-3000:]


def wait_for(url: str, proc: Proc, check: Callable[[httpx.Response], bool], timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.get(url, timeout=5)
            if check(r):
                return r
        except httpx.TransportError:
            pass
        assert proc.alive(), f"exited ({proc.popen.returncode}):\n{proc.output()[-3000:]}"
        assert time.monotonic() < deadline, f"{url} not ready:\n{proc.output()[-3000:]}"
        time.sleep(0.2)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """The static example site, served on a free port (an origin for the quick starts)."""
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(REPO / "examples" / "static-site" / "site")],
        tmp_path / "site.log", env=clean_env(),
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def copy_repo(copy: Path) -> Path:
    """The repository's files (tracked, and new ones not ignored) copied to ``copy``."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files in a new directory, after the README's first step there:
    ``scripts/install`` makes a new venv from ``requirements/runtime.txt`` (as on a new
    machine), so the commands that follow it run without the test environment."""
    copy = copy_repo(tmp_path_factory.mktemp("fresh") / "waitroom-proxy")
    done = subprocess.run(
        ["bash", "-c", command("scripts/install").text], cwd=copy, env=clean_env(),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (copy / ".venv" / "bin" / "waitroom-proxy").is_file()
    return copy


# --------------------------------------------------------------------------- README.md


def test_install_then_demo(fresh_copy: Path, tmp_path: Path) -> None:
    """``scripts/install && .venv/bin/waitroom-proxy demo`` in the fresh copy, its port
    given through WAITROOM_PORT (the demo's own variable); two visitors in, the third waits."""
    (text,) = [t for t in covered_by("test_install_then_demo") if "demo" in t]
    port = free_port()
    proc = start(
        text, tmp_path / "demo.log", cwd=fresh_copy, env=clean_env(WAITROOM_PORT=str(port))
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        seen = []
        for _ in range(3):
            r = wait_for(url, proc, lambda r: r.status_code in (200, 202, 429, 503))
            seen.append("Demo shop" in r.text)
        assert seen == [True, True, False]
    finally:
        assert_clean_stop(stop_group(proc, signal.SIGINT), proc)
    assert "private window" in proc.output()


def test_quick_start_in_front_of_a_site(fresh_copy: Path, site: str, tmp_path: Path) -> None:
    """The block ``scripts/install && export PATH=...`` then ``waitroom-proxy serve --upstream
    http://127.0.0.1:8000 ... --port 8080``, in the fresh copy, ports substituted."""
    site_port = int(site.rsplit(":", 1)[1])
    port = free_port()
    block = block_of(command(covered_by("test_quick_start_in_front_of_a_site")[1]))
    script = "\n".join(substitute(c.text, {8000: site_port, 8080: port}) for c in block)
    proc = start(script, tmp_path / "serve.log", cwd=fresh_copy)
    try:
        r = wait_for(f"http://127.0.0.1:{port}/", proc, lambda r: r.status_code == 200)
        assert "<h1>Example Shop</h1>" in r.text
        assert "waitroom_session" in r.headers.get("set-cookie", "")
    finally:
        assert_clean_stop(stop_group(proc), proc)


@pytest.mark.redis
def test_shared_store_block(site: str, tmp_path: Path, redis_server: object) -> None:
    """``export WAITROOM_STORE_URL=...``, ``export WAITROOM_SECRET=...``, ``waitroom-proxy
    serve --config examples/waitroom.toml``: the test's Redis for the URL, the file's port and
    upstream through WAITROOM_PORT/WAITROOM_UPSTREAM (env outranks the file), PATH as the
    quick start's block leaves it. Its rooms match example.com hosts: it says so, queues
    requests for them, and lets localhost through untouched."""
    url = redis_server.url  # type: ignore[attr-defined]
    port = free_port()
    block = block_of(command("waitroom-proxy serve --config examples/waitroom.toml"))
    script = "\n".join(c.text.replace("redis://127.0.0.1:6379/0", url) for c in block)
    env = clean_env(WAITROOM_PORT=str(port), WAITROOM_UPSTREAM=site)
    env["PATH"] = f"{VENV_BIN}:{env['PATH']}"
    proc = start(script, tmp_path / "serve.log", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/_waitroom/healthz", proc, lambda r: r.status_code == 200)
        local = httpx.get(f"{base}/index.html", timeout=5)
        assert local.status_code == 200 and "waitroom" not in local.headers.get("set-cookie", "")
        matched = httpx.get(
            f"{base}/index.html", headers={"host": "tickets.example.com"}, timeout=5
        )
        assert matched.status_code == 200
        assert "waitroom_session" in matched.headers.get("set-cookie", "")
    finally:
        assert_clean_stop(stop_group(proc), proc)
    assert "no room matches every host" in proc.output()


def _helm(text: str) -> list[str]:
    """``helm install NAME CHART ARGS`` as the render of the same release and values."""
    assert text.startswith("helm install ")
    return ["bash", "-c", "helm template " + text.removeprefix("helm install ")]


def _helm_env() -> dict[str, str]:
    env = clean_env()
    env["PATH"] = f"{TOOLS}:{env['PATH']}"
    if shutil.which("helm", path=env["PATH"]) is None:
        pytest.fail("helm is not installed (bash scripts/install-helm.sh .tools)")
    return env


@pytest.mark.parametrize("text", covered_by("test_helm_install_renders"))
def test_helm_install_renders(text: str) -> None:
    """No Kubernetes cluster here: ``helm install`` is rendered with ``helm template`` and the
    same ``--set``s (their ``$(openssl ...)`` run for real); the values must wire through."""
    done = subprocess.run(_helm(text), cwd=REPO, env=_helm_env(), capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    assert {"secret", "admin-token"} <= set(secret["data"])
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    upstream = re.search(r"--set upstream=(\S+)", text)
    assert upstream and env["WAITROOM_UPSTREAM"]["value"] == upstream.group(1)


def test_helm_test_hook_renders() -> None:
    """``helm test wr`` needs a cluster: the test hook it runs is rendered (with the install
    line's values) and must GET ``/_waitroom/readyz`` through the Service."""
    (install,) = [
        t for t in covered_by("test_helm_install_renders") if t.startswith("helm install wr")
    ]
    done = subprocess.run(_helm(install), cwd=REPO, env=_helm_env(), capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    hooks = [
        d for d in yaml.safe_load_all(done.stdout)
        if d and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
    ]  # fmt: skip
    assert len(hooks) == 1
    assert "/_waitroom/readyz" in yaml.safe_dump(hooks[0])


def test_golden_update_leaves_no_diff(tmp_path: Path) -> None:
    """``UPDATE_GOLDEN=1 .venv/bin/pytest tests/helm && git diff tests/helm/golden``, literally,
    in a git copy of the repository (so the rewrite touches nothing here): it passes and the
    diff is empty, i.e. the golden renders are up to date."""
    (text,) = covered_by("test_golden_update_leaves_no_diff")
    copy = copy_repo(tmp_path / "repo")
    (copy / ".venv").symlink_to(REPO / ".venv")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    subprocess.run([*git, "add", "-A"], cwd=copy, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=copy, check=True)
    env = _helm_env()
    env["PATH"] = f"{VENV_BIN}:{env['PATH']}"
    done = subprocess.run(["bash", "-c", text], cwd=copy, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "passed" in done.stdout
    diff = subprocess.run(["git", "status", "--porcelain"], cwd=copy, capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    assert not [line for line in diff.splitlines() if "golden" in line], diff


@pytest.mark.parametrize("text", covered_by("test_pytest_lines_collect"))
def test_pytest_lines_collect(text: str) -> None:
    """These test directories run in this very suite; here the documented line is collected
    (``--collect-only``), so a wrong path or a broken import fails, without running them twice."""
    done = subprocess.run(["bash", "-c", f"{text} --collect-only -q -p no:cacheprovider"],
                          cwd=REPO, env=clean_env(), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert re.search(r"\d+ tests? collected", done.stdout), done.stdout[-500:]


def test_scripts_test_is_what_ci_runs() -> None:
    """``scripts/test`` is this suite: ``.ci/run`` executes it (so CI runs the documented
    command itself); here its syntax and that link are checked."""
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "test")]).returncode == 0
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^exec scripts/test\b", ci, re.M), ci
    assert os.access(REPO / "scripts" / "test", os.X_OK)


def test_install_test_is_what_the_suite_runs() -> None:
    """``scripts/install test`` made the environment this suite runs in (``scripts/test`` runs
    it first); its syntax, and that ``scripts/test`` calls it, are checked here."""
    assert subprocess.run(["bash", "-n", str(REPO / "scripts" / "install")]).returncode == 0
    assert re.search(r"^scripts/install test$", (REPO / "scripts" / "test").read_text(), re.M)
    done = subprocess.run([str(REPO / "scripts" / "install"), "nonsense"], capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert done.returncode == 2 and "runtime|test|bench" in done.stderr


def test_lock_script() -> None:
    """``scripts/lock`` re-resolves from the package index and rewrites the lock: not run here.
    Checked: its syntax, that it writes the three files the install reads, that those files
    name it as their command and pin every package with hashes, and that ``--upgrade`` is
    passed through to the resolver."""
    script = REPO / "scripts" / "lock"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert '"$@"' in text  # --upgrade reaches uv pip compile
    for name in ("runtime", "test", "bench"):
        lock = REPO / "requirements" / f"{name}.txt"
        assert f"requirements/{name}.txt" in text
        body = lock.read_text()
        assert "scripts/lock" in body.split("\n", 3)[1] or "scripts/lock" in body[:400]
        pins = re.findall(r"^[A-Za-z0-9_.\[\],-]+==\S+", body, re.M)
        assert pins and body.count("--hash=sha256:") >= len(pins)


# --------------------------------------------------------------------------- examples


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
            out = proc.output()
            admin = re.search(r" admin (http://\S+)/admin/", out)
            token = re.search(r"admin token:\s+(\S+)", out)
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
