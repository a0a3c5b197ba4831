"""One connection to NATS for the event publisher: the client and its reconnection logs, the
server list of a ``nats_url`` and the backoff between failed attempts.

Once connected the client never gives up (``max_reconnect_attempts=-1``): it fails over to
another node of a cluster in milliseconds and reconnects to a single server as soon as it is
back, while the publisher keeps events in its buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NatsClient

from waitroom_proxy.domain.redact import redact_url

__all__ = ["Backoff", "open_client", "servers_of"]

logger = logging.getLogger("waitroom_proxy.adapters.nats_events")


def servers_of(url: str) -> list[str]:
    """The server URLs of a ``nats_url`` (one URL, or several separated by commas)."""
    return [part.strip() for part in url.split(",") if part.strip()]


class Backoff:
    """Exponential backoff with jitter: uniform(c/2, c), c = min(cap, base * 2**n)."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)  # half jitter: never a zero-wait hot loop

    def reset(self) -> None:
        self.attempt = 0


async def open_client(
    servers: list[str],
    name: str,
    connect_timeout: float,
    on_disconnected: Callable[[], Awaitable[None]],
    on_reconnected: Callable[[], Awaitable[None]],
) -> NatsClient:
    """Connect to any of ``servers`` within ``connect_timeout`` (raises otherwise, with the
    half-open client closed); where it connected and reconnected is logged, password masked."""
    nc = NatsClient()

    async def on_error(exc: Exception) -> None:
        logger.debug("events: NATS error: %r", exc)

    async def reconnected() -> None:
        where = nc.connected_url
        logger.warning(
            "events: reconnected to NATS at %s",
            redact_url(where.geturl()) if where is not None else "?",
        )
        await on_reconnected()

    try:
        await asyncio.wait_for(
            nc.connect(
                servers=servers,
                name=name,
                connect_timeout=max(1, round(connect_timeout)),
                allow_reconnect=True,
                max_reconnect_attempts=-1,  # once connected, never give up
                reconnect_time_wait=1,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=reconnected,
            ),
            timeout=connect_timeout,
        )
    except BaseException:
        with contextlib.suppress(Exception):
            await nc.close()
        raise
    where = nc.connected_url
    logger.info(
        "events: connected to NATS at %s",
        redact_url(where.geturl() if where is not None else ",".join(servers)),
    )
    return nc
