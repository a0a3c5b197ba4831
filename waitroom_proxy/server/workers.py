"""``serve --workers N``: the admin listener in every worker, and metrics of all of them.

uvicorn's supervisor binds the listeners once and hands every socket to every worker process;
the kernel spreads connections over the workers. Each worker therefore serves the proxy *and*
the admin listener, and :class:`ByListener` sends each connection to the app of the socket it
arrived on. It knows that from the socket's own address (``scope["server"]``), never from
anything a client sends, so no request to the proxy port can reach the admin app.

The admin API reads and writes the store, so any worker answers it alike. Metrics are per
process, though, and a scrape lands on one worker at random: :class:`WorkerPeers` lets the
worker that answers ``GET /metrics`` collect the text of every live worker (each serves its own
registry on a Unix socket in a directory the supervisor creates) and return one exposition in
which every sample carries a ``worker`` label (``"0"`` … ``"N-1"``; a restarted worker takes
the free index again). Dashboards aggregate over it as they do over pods (``sum``/``max``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["WORKER_DIR_ENV", "ByListener", "WorkerPeers", "merge_expositions"]

log = logging.getLogger(__name__)

WORKER_DIR_ENV = "_WAITROOM_WORKER_DIR"
"""Set by the supervisor for its workers: the directory of their metrics sockets."""
PEER_TIMEOUT = 2.0
"""Seconds to wait for another worker's metrics; a worker that does not answer is left out."""


class ByListener:
    """Sends each connection to the admin app or the proxy, by the local port it arrived on.

    Lifespan events go to the proxy (it starts the engine) and start/stop ``peers``.
    """

    def __init__(
        self, main: ASGIApp, admin: ASGIApp, admin_port: int, peers: WorkerPeers | None
    ) -> None:
        self.main = main
        self.admin = admin
        self.admin_port = admin_port
        self.peers = peers
        self.engine = getattr(main, "engine", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.main(scope, self._lifespan_receive(receive), send)
            return
        server = scope.get("server")
        if server is not None and server[1] == self.admin_port:
            await self.admin(scope, receive, send)
        else:
            await self.main(scope, receive, send)

    def _lifespan_receive(self, receive: Receive) -> Receive:
        peers = self.peers

        async def wrapped() -> Any:
            message = await receive()
            if peers is not None:
                if message["type"] == "lifespan.startup":
                    await peers.start()
                elif message["type"] == "lifespan.shutdown":
                    await peers.stop()
            return message

        return wrapped


class WorkerPeers:
    """This worker's place among the workers of one ``serve``: an index and a metrics socket.

    Args:
        directory: created by the supervisor; holds ``worker-<i>.lock`` (an index is taken by
            holding its lock, which the kernel releases when the process dies) and
            ``worker-<i>.sock`` (that worker's metrics).
        registry: this worker's metrics.
    """

    def __init__(self, directory: str, registry: CollectorRegistry) -> None:
        self.directory = Path(directory)
        self.registry = registry
        self.index: int | None = None
        self._lock_fd: int | None = None
        self._server: asyncio.AbstractServer | None = None

    def __repr__(self) -> str:
        return f"WorkerPeers({str(self.directory)!r}, index={self.index})"

    def _claim_index(self) -> int:
        for index in itertools.count():
            fd = os.open(self.directory / f"worker-{index}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._lock_fd = fd
            return index
        raise AssertionError("unreachable")  # pragma: no cover

    async def start(self) -> None:
        """Take a free index and serve this worker's metrics on its socket."""
        if self._server is not None:
            return
        self.index = self._claim_index()
        path = self.directory / f"worker-{self.index}.sock"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # left by a worker that died with this index

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                writer.write(generate_latest(self.registry))
                await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_unix_server(answer, path=str(path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"worker-{self.index}.sock").unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _fetch(self, path: Path) -> str | None:
        try:
            async with asyncio.timeout(PEER_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(str(path))
                try:
                    data = await reader.read()
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:  # gone, or not answering: leave it out
            log.debug("worker metrics socket %s did not answer: %s", path.name, exc)
            return None
        return data.decode("utf-8", "replace")

    async def collect(self) -> dict[int, str]:
        """The metrics text of every live worker, by index (this one's read directly)."""
        own = generate_latest(self.registry).decode()
        texts: dict[int, str] = {} if self.index is None else {self.index: own}
        others: list[tuple[int, Path]] = []
        for path in self.directory.glob("worker-*.sock"):
            try:
                index = int(path.stem.removeprefix("worker-"))
            except ValueError:
                continue
            if index != self.index:
                others.append((index, path))
        fetched = await asyncio.gather(*(self._fetch(path) for _, path in others))
        for (index, _), text in zip(others, fetched, strict=True):
            if text is not None:
                texts[index] = text
        return texts

    @property
    def metrics_app(self) -> ASGIApp:
        """``GET /metrics`` of the admin listener: every worker's metrics in one answer."""
        return _MetricsEndpoint(self)


class _MetricsEndpoint:
    """An ASGI app object (Starlette calls plain functions as request handlers)."""

    def __init__(self, peers: WorkerPeers) -> None:
        self.peers = peers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            body, status = b'{"detail":"method not allowed"}', 405
            headers = [(b"content-type", b"application/json"), (b"allow", b"GET, HEAD")]
        else:
            body, status = merge_expositions(await self.peers.collect()), 200
            headers = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
        headers += [(b"cache-control", b"no-store"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def merge_expositions(texts: dict[int, str]) -> bytes:
    """One Prometheus exposition from several workers' ones, each sample labelled with its
    worker's index (families of one name are merged, so each appears once)."""
    families: dict[str, Metric] = {}
    for index in sorted(texts):
        for family in text_string_to_metric_families(texts[index]):
            into = families.get(family.name)
            if into is None:
                into = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = into
            for sample in family.samples:
                labels = {**sample.labels, "worker": str(index)}
                into.samples.append(
                    Sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
                )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families.values()))
    return generate_latest(registry)
