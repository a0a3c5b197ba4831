"""Helpers of the example smoke tests: free ports, processes started and stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from tests.fixtures.redis_server import free_port, missing

__all__ = ["REPO", "Proc", "free_port", "missing", "venv_script", "wait_http"]

REPO = Path(__file__).resolve().parents[2]


def venv_script(name: str) -> str:
    """A console script of this environment (``waitroom-proxy``, ``uvicorn``, ``nats-server``)."""
    path = os.path.join(sysconfig.get_path("scripts"), name)
    if not os.access(path, os.X_OK):
        missing(f"{name} is not installed in this environment (pip install -e '.[test]')")
    return path


class Proc:
    """A child process whose output goes to a log file; stopped by its PID."""

    def __init__(
        self,
        args: Sequence[str],
        log: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        new_session: bool = False,
    ) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                list(args),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=new_session,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` (SIGKILL after ``timeout``) and return the exit status."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return int(self.popen.returncode)


def wait_http(url: str, proc: Proc, timeout: float = 20.0) -> None:
    """Wait until ``url`` answers any HTTP status; fail early if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            pass
        if not proc.alive():
            raise AssertionError(
                f"process exited early ({proc.popen.returncode}):\n{proc.output()[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer in {timeout} s:\n{proc.output()[-3000:]}")
        time.sleep(0.05)
