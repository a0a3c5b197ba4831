"""The distributed variants of ``examples/cluster``: a 3-master Redis Cluster and a 3-node NATS
JetStream cluster, started on free loopback ports (``cluster.py --redis-cluster --nats-cluster``).

- Redis Cluster: three ``redis-server --cluster-enabled yes`` processes (each with its own bus
  port and ``cluster-require-full-coverage no``, so a master lost stops only its own rooms),
  joined with plain commands (``CLUSTER ADDSLOTSRANGE``, ``SET-CONFIG-EPOCH``, ``MEET``) as
  ``redis-cli --cluster create`` would; the replicas get ``redis+cluster://h:p,h:p,h:p/0``.
- NATS cluster: three ``nats-server -js`` nodes routed to each other; the replicas get the three
  URLs as one comma-separated ``WAITROOM_NATS_URL`` and ``WAITROOM_NATS_STREAM_REPLICAS=3``, so
  the event streams live on every node and survive the loss of one.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import redis

if __package__:
    from examples.cluster.processes import HOST, free_port
else:  # run as a script: the directory of this file is on sys.path
    from processes import HOST, free_port  # type: ignore[no-redef]

if TYPE_CHECKING:
    from cluster import Cluster  # type: ignore[import-not-found]

SLOTS = 16_384


def _wait(check: object, timeout: float, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, redis.RedisError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready after {timeout} s")


def _ping(port: int) -> bool:
    with redis.Redis(port=port, socket_timeout=1) as c:
        return bool(c.ping())


def _distinct_ports(count: int) -> list[int]:
    return [free_port() for _ in range(count)]  # free_port never hands a port out twice


def _stop(cluster: Cluster, services: list[object]) -> None:
    """Stop and forget services that lost a port race, so that a retry starts clean."""
    for service in services:
        popen = service.popen  # type: ignore[attr-defined]
        if popen.poll() is None:
            popen.kill()
        popen.wait()
        cluster._forget(service)


def start_redis_cluster(cluster: Cluster, binary: str, masters: int = 3) -> None:
    """Start and join ``masters`` cluster nodes; set ``cluster.store_url``."""
    nodes: list[tuple[int, int]] = []
    for i in range(masters):
        work = cluster.workdir / f"redis-{i + 1}"
        work.mkdir(exist_ok=True)
        for _ in range(4):  # a port taken between its choice and the bind: try others
            port, bus = _distinct_ports(2)
            (work / "nodes.conf").unlink(missing_ok=True)
            service = cluster._spawn(
                f"redis-{i + 1}",
                [binary, "--bind", HOST, "--port", str(port), "--dir", str(work), "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-port", str(bus),
                 "--cluster-require-full-coverage", "no", "--cluster-node-timeout", "2000"],
            )  # fmt: skip
            if cluster._wait(service, lambda p=port: _ping(p)):
                break
            _stop(cluster, [service])
        else:
            raise RuntimeError(f"redis-{i + 1} exited:\n{service.log.read_text()[-2000:]}")
        nodes.append((port, bus))
    step = SLOTS // masters
    for i, (port, _) in enumerate(nodes):
        last = SLOTS - 1 if i == masters - 1 else (i + 1) * step - 1
        with redis.Redis(port=port) as c:
            c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * step, last)
            c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
    with redis.Redis(port=nodes[0][0]) as c:
        for port, bus in nodes[1:]:
            c.execute_command("CLUSTER", "MEET", HOST, port, bus)

    def joined() -> bool:
        for port, _ in nodes:
            with redis.Redis(port=port, decode_responses=True) as c:
                info = c.execute_command("CLUSTER", "INFO")
                if "cluster_state:ok" not in info or f"cluster_known_nodes:{masters}" not in info:
                    return False
                if len(c.execute_command("CLUSTER", "SLOTS")) != masters:
                    return False
        return True

    _wait(joined, 30, "the Redis Cluster")
    cluster.store_url = "redis+cluster://" + ",".join(f"{HOST}:{p}" for p, _ in nodes) + "/0"


def _healthy(monitor_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{monitor_port}/jsz", timeout=1) as r:
            meta = json.load(r).get("meta_cluster") or {}
        with urllib.request.urlopen(f"http://{HOST}:{monitor_port}/healthz", timeout=1) as r:
            return bool(json.load(r).get("status") == "ok" and meta.get("leader"))
    except (OSError, ValueError, urllib.error.URLError):
        return False


def start_nats_cluster(cluster: Cluster, binary: str, size: int = 3, attempts: int = 4) -> None:
    """Start ``size`` routed JetStream nodes; set ``cluster.nats_url`` (comma-separated),
    ``cluster.nats_monitor_url`` (the first node's) and ``cluster.nats_stream_replicas``.

    The ports are chosen free but bound only by the servers themselves, so another process (a
    Redis Cluster's gossip, say) can take one in between: a node that exits at start-up is
    retried with fresh ports, and its log is shown if every attempt fails."""
    failure = ""
    for _ in range(attempts):
        flat = _distinct_ports(3 * size)
        ports = [(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]) for i in range(size)]
        services = []
        for i, (client, route, monitor) in enumerate(ports):
            work = cluster.workdir / f"nats-{i + 1}"
            shutil.rmtree(work / "store", ignore_errors=True)  # a failed attempt's state
            work.mkdir(exist_ok=True)
            routes = ",".join(f"nats://{HOST}:{r}" for j, (_, r, _) in enumerate(ports) if j != i)
            args = [binary, "-a", HOST, "-p", str(client), "-m", str(monitor), "-js",
                    "-sd", str(work / "store"), "--server_name", f"n{i + 1}",
                    "--cluster_name", "waitroom", "--cluster", f"nats://{HOST}:{route}",
                    "--routes", routes]  # fmt: skip
            services.append(cluster._spawn(f"nats-{i + 1}", args))
        exited = next(
            (
                service
                for service, (_, _, monitor) in zip(services, ports, strict=True)
                if not cluster._wait(service, lambda m=monitor: _healthy(m), timeout=30)
            ),
            None,
        )
        if exited is None:
            break
        failure = f"{exited.name} exited:\n{exited.log.read_text(errors='replace')[-2000:]}"
        _stop(cluster, services)
    else:
        raise RuntimeError(failure)
    cluster.nats_url = ",".join(f"nats://{HOST}:{c}" for c, _, _ in ports)
    cluster.nats_monitor_url = f"http://{HOST}:{ports[0][2]}"
    cluster.nats_stream_replicas = min(3, size)
