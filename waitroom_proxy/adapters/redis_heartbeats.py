"""A room's heartbeats gathered into one script call with many place ids.

A room lives on one store core (README, "One room's ceiling"), and most of a lone heartbeat's
cost there is the call around the script: reading the request, starting the script, reading
the clock and the room's counters, writing the reply. ``heartbeat.lua`` takes many ids and
does that once a call, so the store's CPU per heartbeat falls with the ids a call carries
(``python -m bench.ceiling``: ≈ 0.4× a lone call at 8 ids).

``Gather.call`` collects the heartbeats of one room (and one ``abandon_after_ms``) and sends
them as one call:

- ``linger`` 0 (a waiter near the front, whose answer must be fresh): the call goes at the end
  of this event-loop turn, with the others made in the same turn;
- ``linger`` > 0 (a waiter far from the front, polled every 20 s: ``domain.pacing``): the call
  may wait up to ``linger`` seconds for others; a call of the room that may not wait takes the
  waiting ones with it;
- at ``MAX_IDS`` ids a call is sent at once and the next one begins.

A call's ids are touched in the order their heartbeats were made (an id given twice is
touched twice). What a caller sees is what a lone call would give it: its own view, or its
own exception when the whole call fails (each caller raises its own copy, so a room's circuit
breaker counts the failed heartbeats it counted before). A caller that is cancelled leaves
the others alone: the call runs in a task of its own; its place is still touched, which is
harmless (a heartbeat may run twice). Not thread-safe (one event loop), like the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from waitroom_proxy.adapters.redis_batch import own_copy
from waitroom_proxy.errors import StoreError

__all__ = ["MAX_IDS", "Gather", "GatherStats"]

MAX_IDS = 64
"""Place ids in one heartbeat call at most."""

Send = Callable[[str, int, Sequence[str]], Awaitable[Sequence[Any]]]
"""(room, abandon_after_ms, ids) → the script's flat reply, six integers per id."""
Parse = Callable[[Sequence[Any]], Any]
"""Six integers → the caller's view."""


@dataclass(slots=True)
class _Open:
    ids: list[str] = field(default_factory=list)
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    due: float = 0.0
    """Loop time by which this call must be sent."""
    handle: asyncio.Handle | None = None


@dataclass(slots=True)
class GatherStats:
    """What was sent: ``ids`` heartbeats in ``calls`` store calls."""

    ids: int = 0
    calls: int = 0
    sizes: dict[int, int] = field(default_factory=dict)
    """How many calls carried how many ids."""

    @property
    def mean_ids(self) -> float:
        return self.ids / self.calls if self.calls else 0.0


class Gather:
    """Heartbeats of one room gathered into one call (module docstring).

    Args:
        send: Sends one call (its failures are the caller's to translate).
        parse: One id's six integers to its view.
        max_ids: Ids per call at most.
    """

    def __init__(self, send: Send, parse: Parse, max_ids: int = MAX_IDS) -> None:
        if max_ids < 1:
            raise ValueError("max_ids must be at least 1")
        self._send = send
        self._parse = parse
        self.max_ids = max_ids
        self.stats = GatherStats()
        self._open: dict[tuple[str, int], _Open] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, room: str, abandon_after_ms: int, place_id: str, linger: float) -> Any:
        """The view of ``place_id``'s heartbeat, sent with the room's others (at most
        ``linger`` seconds later)."""
        loop = asyncio.get_running_loop()
        key = (room, abandon_after_ms)
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = _Open(due=float("inf"))
        due = loop.time() + max(0.0, linger)
        if due < batch.due:
            if batch.handle is not None:
                batch.handle.cancel()
            batch.due = due
            if linger <= 0:
                batch.handle = loop.call_soon(self._close, key, batch)
            else:
                batch.handle = loop.call_at(due, self._close, key, batch)
        future: asyncio.Future[Any] = loop.create_future()
        batch.ids.append(place_id)
        batch.futures.append(future)
        if len(batch.ids) >= self.max_ids:
            self._close(key, batch)
        return await future

    def _close(self, key: tuple[str, int], batch: _Open) -> None:
        """Send ``batch`` (once: a full one is sent before its time)."""
        if self._open.get(key) is not batch:
            return
        del self._open[key]
        if batch.handle is not None:
            batch.handle.cancel()
        task = asyncio.ensure_future(self._run(key, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: tuple[str, int], batch: _Open) -> None:
        n = len(batch.ids)
        self.stats.ids += n
        self.stats.calls += 1
        self.stats.sizes[n] = self.stats.sizes.get(n, 0) + 1
        try:
            reply = await self._send(key[0], key[1], batch.ids)
            if len(reply) != 6 * n:
                raise StoreError(f"store returned {len(reply)} integers for {n} heartbeats")
            views = [self._parse(reply[6 * i : 6 * i + 6]) for i in range(n)]
        except asyncio.CancelledError:
            for future in batch.futures:
                future.cancel()
            raise
        except Exception as exc:
            for future in batch.futures:
                if not future.done():
                    future.set_exception(own_copy(exc))
            return
        for future, view in zip(batch.futures, views, strict=True):
            if not future.done():
                future.set_result(view)
