"""The task that fills the console's history: one reading per room every ``interval`` seconds.

It reads what ``/admin/stats`` reads (the store's counts through the operator's verbs, the
policy in force) plus this process's ETA-error histogram, and hands each reading to the pure
:class:`~waitroom_proxy.admin.history.History`. With several replicas every admin listener
samples the shared store on its own, so their charts agree on the store's values (queue,
active, admissions) and differ only by the instants they sampled at; the ETA error is each
replica's own (see :mod:`waitroom_proxy.admin.history`).

**When it runs.** The admin app's lifespan starts and stops it when the server sends one. The
admin listener of ``waitroom-proxy serve`` runs without a lifespan (the engine's lifespan is
the proxy's; under ``--workers`` only the proxy app receives one), so the sampler also starts
when the admin app is built inside a running event loop (that is how ``serve`` builds it) and,
failing both, with the first request that reaches the admin listener. Started that way it runs
until its event loop ends. One failed reading is logged and skipped; the loop never dies of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from waitroom_proxy.admin.history import History, Reading
from waitroom_proxy.admin.rooms import Rooms

__all__ = ["Sampler", "StartSampler"]

log = logging.getLogger(__name__)

ETA_ERROR = "waitroom_eta_error_seconds"


def eta_error_buckets(registry: Any) -> dict[str, tuple[tuple[float, float], ...]]:
    """``{room: ((upper bound, cumulative count), ...)}`` of the ETA-error histogram in
    ``registry`` (this process), ascending."""
    found: dict[str, list[tuple[float, float]]] = {}
    for family in registry.collect():
        if family.name != ETA_ERROR:
            continue
        for sample in family.samples:
            room = sample.labels.get("room")
            if room is None or sample.name != f"{ETA_ERROR}_bucket":
                continue
            found.setdefault(room, []).append((float(sample.labels["le"]), float(sample.value)))
    return {room: tuple(sorted(pairs)) for room, pairs in found.items()}


class Sampler:
    """Reads every room into ``history`` every ``history.interval`` seconds.

    Args:
        rooms: the admin operations on the engine's rooms.
        history: where the samples go (its interval is the sampling period).
    """

    def __init__(self, rooms: Rooms, history: History) -> None:
        self.rooms = rooms
        self.history = history
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Sampler(interval={self.history.interval}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def sample_once(self) -> None:
        """One reading of every room (the store's counts, None for each while it is down)."""
        ops = self.rooms.ops
        up = await ops.store_up()
        eta = eta_error_buckets(self.rooms.registry)
        for room in list(ops.rooms.values()):
            stats = await ops.describe(room) if up else None
            reading = Reading(
                t=ops.now(),
                capacity=room.policy.capacity,
                paused=room.paused,
                queue_length=stats.queue_length if stats else None,
                active=stats.active if stats else None,
                promoted=stats.promoted if stats else None,
                admitted_total=stats.admitted_total if stats else None,
                eta_buckets=eta.get(room.name, ()),
            )
            self.history.record(room.name, reading)

    async def _run(self) -> None:
        while True:
            try:
                await self.sample_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad reading must not end the history
                log.exception("admin history: sampling failed")
            await asyncio.sleep(self.history.interval)

    def start(self) -> None:
        """Start sampling on the running loop (no-op if it already runs there)."""
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="admin-history")

    def start_if_in_loop(self) -> None:
        """Start when called inside a running event loop; otherwise wait for a lifespan or a
        request to start it."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self.start()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """The admin app's lifespan: sampling while it is up."""
        self.start()
        try:
            yield
        finally:
            await self.stop()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class StartSampler:
    """ASGI middleware: starts the sampler with the lifespan, else with the first request.

    Every request checks one attribute; a sampler that already runs is left alone.
    """

    def __init__(self, app: ASGIApp, sampler: Sampler) -> None:
        self.app = app
        self.sampler = sampler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and not self.sampler.running:
            self.sampler.start()
        await self.app(scope, receive, send)
