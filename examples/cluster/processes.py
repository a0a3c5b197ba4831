"""The processes of ``examples/cluster``: each started in its own process group with its log in
the work directory, waited for until ready, and stopped by PID, last started first, with any
child left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["HOST", "Processes", "Service", "free_port", "http_ok", "redis_ping", "tail"]

HOST = "127.0.0.1"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free right now, and never one this process handed out before: the
    kernel may offer a port again once its probe socket is closed, and two services of one
    cluster given the same port would race for it (one of them answering for the other). A
    server started on it may still lose a race to another program."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def http_ok(url: str, headers: Mapping[str, str] | None = None) -> bool:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return bool(200 <= response.status < 300)
    except (OSError, urllib.error.URLError, ValueError):
        return False


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    """Child PIDs of ``pid`` (Linux ``/proc``; empty elsewhere)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


@dataclass
class Service:
    """One process of the cluster."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class Processes:
    """The processes started in ``workdir``, by PID, and ``stop()``."""

    workdir: Path
    services: list[Service] = field(default_factory=list)
    exit_codes: dict[str, int] = field(default_factory=dict)
    """After ``stop()``: each service's exit status."""
    leftovers: list[int] = field(default_factory=list)
    """After ``stop()``: PIDs that had to be killed after their parent exited (should be [])."""

    @property
    def pids(self) -> dict[str, int]:
        return {s.name: s.pid for s in self.services}

    def check_alive(self) -> list[str]:
        """Names of services that have exited."""
        return [s.name for s in self.services if s.popen.poll() is not None]

    def stop(self, timeout: float = 15.0) -> dict[str, int]:
        """Stop every process, last started first (SIGTERM, then SIGKILL after ``timeout``),
        and any child it left behind. Returns the exit status of each."""
        for service in reversed(self.services):
            if service.popen.poll() is not None:
                self.exit_codes[service.name] = int(service.popen.returncode)
                continue
            children = _children(service.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(service.pid, signal.SIGTERM)
            try:
                service.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                service.popen.kill()
                service.popen.wait(timeout=10)
            self.exit_codes[service.name] = int(service.popen.returncode)
            deadline = time.monotonic() + 5
            for child in children:
                while _running(child) and time.monotonic() < deadline:
                    time.sleep(0.02)
                if _running(child):
                    self.leftovers.append(child)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
        return dict(self.exit_codes)

    def _spawn(
        self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None
    ) -> Service:
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                list(args),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                # Its own process group: Ctrl-C reaches only this script, which then stops
                # every process in order (nginx first, the store last).
                process_group=0,
            )
        service = Service(name, popen, log)
        self.services.append(service)
        return service

    def _wait(self, service: Service, ready: Callable[[], bool], timeout: float = 20.0) -> bool:
        """Wait until ``ready()``; False if the process exited first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if service.popen.poll() is not None:
                return False
            if ready():
                return True
            time.sleep(0.05)
        raise RuntimeError(f"{service.name} not ready in {timeout} s:\n{tail(service.log)}")

    def _forget(self, service: Service) -> None:
        self.services.remove(service)
