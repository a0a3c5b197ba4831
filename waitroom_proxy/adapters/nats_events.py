"""Events on NATS JetStream.

``NatsPublisher`` implements ``EventPublisher``: ``publish()`` only appends to a bounded
in-memory buffer; a background task sends the buffer, in order, to the ``WAITROOM`` stream with
JetStream acknowledgements and ``Nats-Msg-Id`` = event id, so a resent event is stored once
(within the stream's duplicate window).

Delivery, in short:

- up to ``max_in_flight`` events are on the wire at once (a sliding window of
  ``publish_async``); the buffer's head is removed only when its ack arrives;
- any failure (no ack in ``ack_timeout``, disconnection, no stream) cancels the window, waits
  (exponential backoff with jitter, capped at ``backoff_max``), sends the oldest event alone
  (``publish`` with a proper error reply) and then resumes the window from there. Events the
  server already stored are recognised by their id and not stored again, so a lost ack never
  makes a duplicate. Stream order = publish order, except if the server refused one event
  transiently and accepted the next (then the resent one lands after it);
- an event the server refuses outright (an API error, a payload above the server's limit) is
  tried ``max_retries`` more times, then dropped and counted, so one bad event cannot stall
  the rest; data that cannot be encoded as JSON is dropped at once;
- while NATS is down events stay in the buffer. **When the buffer is full, the new event is
  dropped** (and counted): the buffer keeps an unbroken run of history from the first event not
  yet delivered, the stream shows one gap where the outage overflowed, and ``publish()`` stays a
  bare ``deque.append`` with no interaction with events already on the wire.

Counters (public attributes, read by ``waitroom_proxy.metrics``): ``published`` (acknowledged
by JetStream), ``dropped`` (buffer full, refused by the server, or left over at close),
``retries`` (times sending resumed after a failure or an outage), ``buffered`` (property: events
waiting, including those in flight) and ``connected`` (property).

Streams: ``WAITROOM`` and ``WAITROOM_DLQ``, created on connect if missing, with
``stream_replicas`` copies; one that exists with another configuration is used as it is and
reported (``waitroom_proxy.adapters.nats_streams``).

``url`` may list several servers separated by commas (a cluster): the client connects to any of
them and, once connected, fails over to another node of the cluster in milliseconds.

``publish()`` must be called from the event loop's thread (as the gatekeeper does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Final

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from waitroom_proxy.adapters.log_events import counters_of
from waitroom_proxy.adapters.nats_connection import Backoff, open_client, servers_of
from waitroom_proxy.adapters.nats_sender import MSG_ID_HEADER, BufferSender, Refused
from waitroom_proxy.adapters.nats_streams import (
    DLQ_STREAM,
    DLQ_SUBJECTS,
    STREAM,
    STREAM_SUBJECTS,
    StreamSetupError,
    ensure_streams,
    stream_configs,
)
from waitroom_proxy.domain.redact import redact_url
from waitroom_proxy.ports import Event

__all__ = [
    "DLQ_STREAM",
    "DLQ_SUBJECTS",
    "MSG_ID_HEADER",
    "STREAM",
    "STREAM_SUBJECTS",
    "NatsPublisher",
    "ensure_streams",
    "servers_of",
    "stream_configs",
]

logger = logging.getLogger(__name__)

SETUP_ERROR_LOG_INTERVAL: Final = 60.0
"""Seconds between two error logs about streams JetStream refuses to create."""


class NatsPublisher(BufferSender):
    """Publishes events to JetStream from a bounded buffer; see the module docstring.

    Args:
        url: NATS server URL (``nats://host:4222``; user information allowed, never logged),
            or several separated by commas (the nodes of a cluster).
        source: CloudEvents ``source``, e.g. ``waitroom-proxy/<replica-id>``; also the NATS
            connection name.
        buffer_size: most events held while NATS is slow or down; beyond it new events are
            dropped and counted.
        max_retries: attempts for an event the server refuses before it is dropped (outages do
            not count: events wait in the buffer for as long as it has room).
        connect_timeout: seconds for one connection attempt.
        max_in_flight: events sent and not yet acknowledged, at most.
        ack_timeout: seconds to wait for the ack of the oldest event in flight.
        backoff_base: first retry delay in seconds (doubles, with jitter, up to ``backoff_max``).
        backoff_max: longest retry delay in seconds.
        close_timeout: seconds ``close()`` spends delivering what is left.
        stream_replicas: replicas of the streams when this publisher creates them (1-5).
    """

    def __init__(
        self,
        url: str,
        *,
        source: str,
        buffer_size: int = 10_000,
        max_retries: int = 5,
        connect_timeout: float = 2.0,
        max_in_flight: int = 64,
        ack_timeout: float = 2.0,
        backoff_base: float = 0.05,
        backoff_max: float = 5.0,
        close_timeout: float = 2.0,
        stream_replicas: int = 1,
    ) -> None:
        if buffer_size < 1 or max_in_flight < 1 or max_retries < 0:
            raise ValueError("buffer_size and max_in_flight must be >= 1, max_retries >= 0")
        if not 1 <= stream_replicas <= 5:
            raise ValueError("stream_replicas must be 1-5 (JetStream's limit)")
        self.url = url
        self.servers = servers_of(url)
        if not self.servers:
            raise ValueError("no NATS URL given")
        self.stream_replicas = stream_replicas
        self.source = source
        self.buffer_size = buffer_size
        self.max_retries = max_retries
        self.connect_timeout = connect_timeout
        self.max_in_flight = max_in_flight
        self.ack_timeout = ack_timeout
        self.close_timeout = close_timeout

        self.published = 0
        """Events acknowledged by JetStream (each counted once)."""
        self.dropped = 0
        """Events given up: buffer full, refused by the server, or undelivered at close."""
        self.retries = 0
        """Times sending resumed after a failure or an outage (with events waiting)."""
        self.stream_mismatches = 0
        """Streams found, at the last check, with a configuration other than this publisher's
        (each named in a warning); 0 when both are as wanted."""
        self._last_setup_error = -SETUP_ERROR_LOG_INTERVAL

        self._buf: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._backoff = Backoff(backoff_base, backoff_max)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._streams_ok = False
        self._head_refusals = 0
        self._probe = False
        self._connected_evt = asyncio.Event()
        self._disconnected: asyncio.Future[None] | None = None
        self._last_drop_log = 0.0
        self._drops_since_log = 0

    # -- EventPublisher ---------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Append the event to the buffer (O(1)); never blocks, never raises.

        Full buffer or closed publisher → the event is dropped and counted.
        """
        try:
            if self._closing or len(self._buf) >= self.buffer_size:
                self._drop(1, "buffer full" if not self._closing else "publisher closed")
                return
            self._buf.append(event)
            self._wake.set()
        except Exception:  # pragma: no cover - nothing above should raise; never fail a request
            self.dropped += 1

    async def start(self) -> None:
        """Start the background task and return at once (NATS may be down: it keeps trying)."""
        if self._task is None and not self._closing:
            self._task = asyncio.create_task(self._run(), name="waitroom-nats-publisher")

    async def close(self) -> None:
        """Deliver what can be delivered within ``close_timeout``, then stop and disconnect.

        Events still buffered afterwards are counted in ``dropped``.
        """
        if self._closing and self._task is None and self._nc is None:
            return
        self._closing = True
        if self._task is not None and self._buf and self.connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.close_timeout):
                    await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_connection()
        if self._buf:
            left = len(self._buf)
            self._buf.clear()
            self.dropped += left
            logger.warning("events: %d event(s) not delivered before close", left)

    # -- introspection ----------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Events waiting to be acknowledged (in flight included)."""
        return len(self._buf)

    @property
    def connected(self) -> bool:
        """True while connected to NATS."""
        return self._nc is not None and self._nc.is_connected

    def counters(self) -> dict[str, float]:
        """The counters as a dict (the shape ``Metrics.watch_publisher`` reads)."""
        return {**counters_of(self), "stream_mismatches": float(self.stream_mismatches)}

    async def flush(self) -> bool:
        """Wait until the buffer is empty (every event acknowledged or dropped). Bound it with
        ``asyncio.timeout``. Returns False at once if the background task is not running."""
        while self._buf:
            if self._task is None or self._task.done():
                return False
            await asyncio.sleep(0.005)
        return True

    def __repr__(self) -> str:
        return (
            f"NatsPublisher(url={redact_url(self.url)!r}, source={self.source!r}, "
            f"connected={self.connected}, buffered={self.buffered}, published={self.published}, "
            f"dropped={self.dropped})"
        )

    # -- background task --------------------------------------------------------------------

    def _drop(self, n: int, why: str) -> None:
        self.dropped += n
        self._drops_since_log += n
        now = time.monotonic()
        if now - self._last_drop_log >= 10.0:  # at most one warning per 10 s
            logger.warning(
                "events: dropped %d event(s) (%s); %d dropped in total",
                self._drops_since_log,
                why,
                self.dropped,
            )
            self._last_drop_log = now
            self._drops_since_log = 0

    async def _run(self) -> None:
        while True:
            try:
                if self._nc is None:
                    await self._connect()
                if not self._streams_ok:
                    assert self._js is not None
                    mismatches = await ensure_streams(self._js, self.stream_replicas)
                    self.stream_mismatches = len(mismatches)
                    self._streams_ok = True
                await self._pump()
                self._streams_ok = False  # reconnected: the server may be a new one
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._after_failure(exc)

    async def _after_failure(self, exc: BaseException) -> None:
        nc = self._nc
        self._probe = True
        if isinstance(exc, StreamSetupError):
            now = time.monotonic()
            if now - self._last_setup_error >= SETUP_ERROR_LOG_INTERVAL:
                self._last_setup_error = now
                logger.error("events: %s; events wait in the buffer (%d)", exc, len(self._buf))
        if isinstance(exc, nats.js.errors.NoStreamResponseError | nats.js.errors.NotFoundError):
            self._streams_ok = False  # stream missing (new server?): make it again
        if isinstance(exc, Refused):
            self._head_refusals += 1
            if self._head_refusals > self.max_retries and self._buf:
                self._buf.popleft()
                self._head_refusals = 0
                self._drop(1, f"refused by the server: {exc.__cause__!r}")
        if nc is not None and nc.is_closed:
            self._nc = self._js = None
        if self._buf:
            self.retries += 1
        delay = self._backoff.next()
        logger.debug("events: %r; retrying in %.2f s", exc, delay)
        await asyncio.sleep(delay)

    async def _connect(self) -> None:
        nc: NatsClient | None = None  # set once connected; a callback before that is no news

        async def on_disconnected() -> None:
            self._connected_evt.clear()
            if self._disconnected is not None and not self._disconnected.done():
                self._disconnected.set_result(None)
            if nc is not None and self._nc is nc and not self._closing:
                logger.warning("events: disconnected from NATS; buffering (%d)", len(self._buf))

        async def on_reconnected() -> None:
            self._connected_evt.set()

        nc = await open_client(
            self.servers, self.source, self.connect_timeout, on_disconnected, on_reconnected
        )
        self._nc = nc
        self._js = nc.jetstream(timeout=self.ack_timeout)
        self._connected_evt.set()

    async def _close_connection(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), timeout=1.0)
            except (TimeoutError, nats.errors.Error, OSError):
                logger.debug("events: NATS close did not finish cleanly", exc_info=True)
