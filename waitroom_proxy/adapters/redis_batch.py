"""Script calls for one room gathered into one pipeline: fewer round trips, less store CPU.

A room lives on one store core (README, "One room's ceiling"), and a call's cost there is
mostly the round trip around the script (reading the request, the event loop, writing the
reply). ``Batcher.call`` gathers the calls made for one room (one hash slot: one ``group``) in
one event-loop turn and sends them as one non-transactional pipeline, at most ``MAX_BATCH`` a
pipeline. The server spends ≈ 25-35 % less CPU per heartbeat at 8 calls a pipeline than at one
(``bench/ceiling.py``, the pipelined column). How many calls one turn gathers depends on the
replica's load: a replica answering heartbeats as fast as its core allows gathered ≈ 1.1-1.2
per round trip, more when its core was contended (longer turns; ``bench/ceiling_depth.py``).
Waiting longer than a turn to gather more is not done: it would delay every call.

What a caller sees is what a lone call would give it:

- its own reply, or its own exception: a call the script refuses (an error reply) fails alone,
  the others in the pipeline get their replies;
- ``NOSCRIPT`` (the server lost its script cache: a restart, ``SCRIPT FLUSH``): the affected
  calls run again, in their order, as ``EVAL`` (which caches the script again on that node);
- a broken connection: the plain and Sentinel clients retry the whole pipeline once, as they
  retry a lone call (every script is safe to run twice); a timeout is never retried;
- on a Redis Cluster nothing is pipelined: its pipeline reads each reply with its own timeout,
  so on a frozen node a pipeline of n calls would wait n timeouts; each call goes alone;
- a failure of the whole pipeline (the store down, a timeout) reaches every caller in it, each
  as its own exception, so a room's circuit breaker counts the failed calls it counts today.

A lone call (nobody else ready in the same turn) is sent as it always was, through its
``Script``. A caller that is cancelled leaves the others alone: the pipeline runs in a task of
its own. Not thread-safe (one event loop), like the client under it.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from waitroom_proxy.adapters.redis_clients import Script, StoreClient

__all__ = ["MAX_BATCH", "BatchStats", "Batcher", "own_copy"]

MAX_BATCH = 64
"""Calls per pipeline at most: a full batch is sent at once and the next one begins."""


@dataclass(slots=True)
class _Call:
    script: Script
    keys: Sequence[str]
    args: Sequence[Any]
    future: asyncio.Future[Any]


@dataclass(slots=True)
class BatchStats:
    """What the batcher sent: ``calls`` in ``sends`` round trips (lone calls included)."""

    calls: int = 0
    sends: int = 0
    pipelines: int = 0
    """Sends of two calls or more."""
    noscript_reruns: int = 0
    depths: dict[int, int] = field(default_factory=dict)
    """How many sends carried how many calls."""

    @property
    def mean_depth(self) -> float:
        return self.calls / self.sends if self.sends else 0.0


class Batcher:
    """Gathers script calls per group (a room's hash slot) into pipelines (module docstring).

    Args:
        client: Any redis-py async client: plain, Sentinel-managed, cluster, fakeredis.
        max_batch: Calls per pipeline at most.
    """

    def __init__(self, client: StoreClient, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.client = client
        self.max_batch = max_batch
        self.stats = BatchStats()
        self.cluster = isinstance(client, RedisCluster)
        """A cluster's pipeline reads each reply with its own timeout: on a frozen node a
        pipeline of n calls took n timeouts (n × 0.5 s). There every call is sent alone."""
        self._open: dict[str, list[_Call]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(
        self, group: str, script: Script, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        """Run ``script`` with ``keys`` and ``args``, in one pipeline with the other calls of
        ``group`` made in this event-loop turn; its own reply, or its own exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        calls = self._open.get(group)
        if calls is None:
            calls = self._open[group] = []
            loop.call_soon(self._close, group, calls)
        calls.append(_Call(script, keys, args, future))
        if len(calls) >= self.max_batch:
            self._close(group, calls)
        return await future

    def _close(self, group: str, calls: list[_Call]) -> None:
        """Send ``calls`` (once: a full batch is sent before its turn ends)."""
        if self._open.get(group) is not calls:
            return
        del self._open[group]
        task = asyncio.ensure_future(self._send(calls))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, calls: list[_Call]) -> None:
        stats = self.stats
        stats.calls += len(calls)
        stats.sends += 1
        stats.depths[len(calls)] = stats.depths.get(len(calls), 0) + 1
        if len(calls) == 1 or self.cluster:
            await asyncio.gather(*(self._alone(c) for c in calls))
            return
        stats.pipelines += 1
        try:
            results = await self._pipeline(calls, evalsha=True)
            lost = [c for c, r in zip(calls, results, strict=True) if isinstance(r, NoScriptError)]
            if lost:
                stats.noscript_reruns += len(lost)
                rerun = dict(zip(map(id, lost), await self._pipeline(lost, False), strict=True))
                results = [rerun.get(id(c), r) for c, r in zip(calls, results, strict=True)]
        except asyncio.CancelledError:
            for call in calls:
                call.future.cancel()
            raise
        except Exception as exc:
            for call in calls:
                _settle(call, own_copy(exc))
            return
        for call, result in zip(calls, results, strict=True):
            _settle(call, result)

    async def _alone(self, call: _Call) -> None:
        """``call`` sent alone, as it always was, through its ``Script``."""
        try:
            _settle(call, await call.script(call.keys, call.args))
        except asyncio.CancelledError:
            call.future.cancel()
            raise
        except Exception as exc:
            _settle(call, exc)

    async def _pipeline(self, calls: list[_Call], evalsha: bool) -> list[Any]:
        """One non-transactional pipeline of ``calls``: a reply or an exception for each."""
        pipe = self.client.pipeline(transaction=False)
        for c in calls:
            # (execute_command: the cluster pipeline blocks its evalsha() and eval() methods,
            # not the commands, which it routes by their keys like any other)
            if evalsha:
                pipe.execute_command("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)
            else:
                pipe.execute_command("EVAL", c.script.source, len(c.keys), *c.keys, *c.args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results


def own_copy(exc: Exception) -> Exception:
    """A copy of ``exc`` for one caller (each raises its own: tracebacks never mix)."""
    try:
        return copy.copy(exc)
    except Exception:
        return exc


def _settle(call: _Call, result: Any) -> None:
    """Give ``call``'s caller its ``result`` (raised when an exception), unless it left."""
    if call.future.done():
        return
    if isinstance(result, Exception):
        call.future.set_exception(result)
    else:
        call.future.set_result(result)
