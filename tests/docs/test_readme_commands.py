"""The commands of README.md and helm/waitroom-proxy/README.md, run (or rendered where
they cannot run here: see tests/docs/test_doc_coverage.py)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.docs.commands import block_of
from tests.docs.helpers import (
    assert_clean_stop,
    clean_env,
    copy_repo,
    start,
    stop_group,
    substitute,
    wait_for,
)
from tests.docs.registry import REPO, TOOLS, VENV_BIN, command, covered_by
from tests.examples.procs import free_port


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
