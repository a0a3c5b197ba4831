"""Shared by the NATS event tests: fresh room names, events, waiting, flushing and reading what a
stream stored."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from waitroom_proxy.adapters.nats_events import STREAM, NatsPublisher
from waitroom_proxy.domain import events as ev
from waitroom_proxy.ports import Event


def new_room() -> str:
    return "t" + uuid.uuid4().hex[:12]


def make(type_: str, room: str | None, **data: Any) -> Event:
    return ev.new_event(type_, room, data, time.time())


async def wait_for(cond: Any, timeout: float, step: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)


async def flushed(pub: NatsPublisher, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        assert await pub.flush()


async def count(js: JetStreamContext, subject: str, stream: str = STREAM) -> int:
    info = await js.stream_info(stream, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


async def read(js: JetStreamContext, subject: str, stream: str = STREAM) -> list[Msg]:
    """Every stored message on ``subject``, in stream order."""
    n = await count(js, subject, stream)
    if n == 0:
        return []
    sub = await js.subscribe(
        subject, stream=stream, ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL
    )
    try:
        return [await sub.next_msg(timeout=5) for _ in range(n)]
    finally:
        await sub.unsubscribe()
