"""Running documented commands: a new user's environment, ports substituted, process groups
started and stopped (everything a command starts is stopped with it)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.docs.registry import REPO, VENV_BIN
from tests.examples.procs import Proc


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
