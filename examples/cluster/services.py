"""The services of ``examples/cluster`` and how each is started on a free loopback port: the
store, NATS, the origin, the replicas and nginx in front of them."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__:
    from examples.cluster.processes import HOST, Processes, free_port, http_ok, redis_ping, tail
else:  # run as a script: the directory of this file is on sys.path
    from processes import HOST, Processes, free_port, http_ok, redis_ping, tail  # type: ignore[no-redef]

__all__ = ["CONFIG", "ROOM", "SITE", "Cluster", "nginx_config"]

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "waitroom.toml"
SITE = HERE.parent / "static-site" / "site"
ROOM = "sale"
"""The room of ``waitroom.toml``."""


@dataclass
class Cluster(Processes):
    """A running cluster: its URLs, its processes (by PID) and ``stop()``."""

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

    def start_redis(self, binary: str, port: int | None = None) -> None:
        for _ in range(10):
            chosen = port or free_port()
            service = self._spawn(
                "redis",
                [binary, "--bind", HOST, "--port", str(chosen), "--save", "",
                 "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"],
            )  # fmt: skip
            if self._wait(service, functools.partial(redis_ping, chosen)):
                self.store_url = f"redis://{HOST}:{chosen}/0"
                return
            self._forget(service)  # lost the race for the port: try another
            if port:
                break
        raise RuntimeError(f"redis-server did not start:\n{tail(self.workdir / 'redis.log')}")

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
            return bool(self.nats_monitor_url) and http_ok(
                f"{self.nats_monitor_url}/healthz?js-enabled-only=true"
            )

        if not self._wait(service, ready):
            raise RuntimeError(f"nats-server exited:\n{tail(service.log)}")

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
            if self._wait(service, functools.partial(http_ok, url + "/")):
                self.origin_url = url
                return
            self._forget(service)
            if port:
                break
        raise RuntimeError(f"the origin did not start:\n{tail(self.workdir / 'origin.log')}")

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
                return http_ok(url + "/_waitroom/healthz") and http_ok(admin + "/metrics", auth)

            if self._wait(service, ready):
                self.replica_names.append(name)
                self.replica_urls.append(url)
                self.admin_urls.append(admin)
                return
            log = tail(service.log)
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
            if self._wait(service, functools.partial(http_ok, url + "/_waitroom/healthz")):
                self.url = url
                return
            self._forget(service)
            if port:
                break
        raise RuntimeError(f"nginx did not start:\n{tail(nginx_dir / 'error.log')}")


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
