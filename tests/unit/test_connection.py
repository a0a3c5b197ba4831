"""Connection (the upstream protocol) in isolation: wake-ups of concurrent waits."""

from __future__ import annotations

import asyncio

from waitroom_proxy.asgi.connection import Connection


async def test_a_cancelled_wait_does_not_swallow_the_next_wake_up() -> None:
    # The proxy waits for an early answer while it waits for the client; when the client's
    # piece wins, that wait is cancelled, and the wait for the response starts at once in the
    # same task, before the cancelled one has unwound. Its wake-up must still arrive.
    loop = asyncio.get_running_loop()
    conn = Connection(loop)
    early = asyncio.ensure_future(conn.wait(5))
    await asyncio.sleep(0)
    early.cancel()
    loop.call_soon(conn._wake)  # the response head arrives
    await conn.wait(5)  # returns at once when woken; a lost wake-up would wait the 5 s out
    assert early.cancelled()
