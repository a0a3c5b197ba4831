"""Everything one process runs: the gatekeeper, its controller, and their background tasks.

Built by the composition root (``waitroom_proxy.bootstrap.build_engine``) and started by the
ASGI lifespan of whatever app it serves (the standalone proxy or a host app).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from waitroom_proxy.service.controller import Controller
from waitroom_proxy.service.gatekeeper import Gatekeeper
from waitroom_proxy.service.operations import RoomOperations

if TYPE_CHECKING:
    from waitroom_proxy.config import Settings

log = logging.getLogger(__name__)


class Engine:
    """The gatekeeper of one process, its controller loop and the operator's verbs.

    Args:
        settings: what the engine was built from (the ASGI layer reads its prefix, pages and
            trusted proxies there).
        gate: the gatekeeper.
        controller_interval: seconds between controller passes.
    """

    def __init__(
        self, settings: Settings, gate: Gatekeeper, *, controller_interval: float = 0.5
    ) -> None:
        self.settings = settings
        self.gate = gate
        self.controller = Controller(gate, interval=controller_interval)
        self.operations = RoomOperations(gate, self.controller)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False

    def __repr__(self) -> str:
        return f"Engine({self.gate!r}, started={self._started})"

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        gate = self.gate
        await gate.publisher.start()
        gate.emit("system.replica_started", None, {"replica": gate.replica_id})
        await self.controller.start()
        log.info(
            "waitroom engine started: %d room(s), store=%s, events=%s",
            len(gate.rooms),
            gate.store.kind,
            type(gate.publisher).__name__,
        )

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.controller.stop()
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=2)
        gate = self.gate
        gate.emit("system.replica_stopped", None, {"replica": gate.replica_id})
        await gate.publisher.close()
        await gate.store.close()
