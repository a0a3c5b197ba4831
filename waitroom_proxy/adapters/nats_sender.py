"""Sending the publisher's buffer to JetStream: a sliding window of acks, and the oldest event
alone after a failure (the delivery rules are in ``waitroom_proxy.adapters.nats_events``).

``BufferSender`` is a part of ``NatsPublisher``: it reads the publisher's buffer, connection and
counters, declared below, and is not used on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext, api

from waitroom_proxy.adapters.nats_connection import Backoff
from waitroom_proxy.domain.events import encode_cloudevent, subject_for
from waitroom_proxy.ports import Event

__all__ = ["MSG_ID_HEADER", "BufferSender", "Refused"]

MSG_ID_HEADER: Final = "Nats-Msg-Id"


class Refused(Exception):
    """The server refused the head event (not a transient failure)."""


class BufferSender:
    """The window and the probe of one publisher (a base of ``NatsPublisher``)."""

    source: str
    max_in_flight: int
    ack_timeout: float
    published: int
    retries: int
    _buf: deque[Event]
    _nc: NatsClient | None
    _js: JetStreamContext | None
    _wake: asyncio.Event
    _connected_evt: asyncio.Event
    _disconnected: asyncio.Future[None] | None
    _backoff: Backoff
    _probe: bool
    _head_refusals: int

    def _drop(self, n: int, why: str) -> None:
        raise NotImplementedError

    async def _pump(self) -> None:
        """Send the buffer in order with up to ``max_in_flight`` acks pending. Returns after a
        reconnection (so ``_run`` checks the streams again); raises on any failure (``_run``
        backs off and calls again)."""
        nc, js = self._nc, self._js
        assert nc is not None and js is not None
        buf = self._buf
        inflight: deque[asyncio.Future[api.PubAck]] = deque()
        loop = asyncio.get_running_loop()
        refill_at = self.max_in_flight // 2
        try:
            while True:
                if not nc.is_connected:
                    if await self._wait_connected(nc):
                        if buf:
                            self.retries += 1  # resuming after an outage
                        return  # back to _run: check the streams (the server may be new)
                    continue
                if self._probe and buf:
                    await self._send_head_alone(js)
                    continue
                # Take every acknowledged event off the head of the buffer, in order.
                while inflight and inflight[0].done():
                    inflight[0].result()  # raises on an error ack (the head is then probed)
                    inflight.popleft()
                    buf.popleft()
                    self.published += 1
                    self._head_refusals = 0
                    self._backoff.reset()
                # Refill once the window is half empty: acks then arrive in runs, and the loop
                # waits once per run instead of once per event.
                if len(inflight) <= refill_at:
                    await self._fill(js, inflight)
                if not inflight:
                    self._wake.clear()
                    if not buf:
                        await self._wake.wait()
                    continue
                head = inflight[0]
                if not head.done():
                    if self._disconnected is None or self._disconnected.done():
                        self._disconnected = loop.create_future()
                    done, _ = await asyncio.wait(
                        (head, self._disconnected),
                        timeout=self.ack_timeout,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if head not in done:
                        raise TimeoutError("no ack" if not done else "disconnected")
        finally:
            for fut in inflight:
                fut.cancel()

    async def _fill(
        self, js: JetStreamContext, inflight: deque[asyncio.Future[api.PubAck]]
    ) -> None:
        """Send events from the first one not yet sent until the window is full."""
        buf = self._buf
        while len(inflight) < self.max_in_flight and len(inflight) < len(buf):
            event = buf[len(inflight)]
            payload = self._payload(len(inflight))
            if payload is None:
                continue
            try:
                fut = await js.publish_async(
                    subject_for(event), payload, headers={MSG_ID_HEADER: event.id}
                )
            except nats.errors.MaxPayloadError:
                if not inflight:
                    self._probe = True  # the probe drops it after max_retries
                    raise
                return  # let the events before it go first
            inflight.append(fut)

    def _payload(self, index: int) -> bytes | None:
        """The wire form of the buffer's event at ``index``; None (and the event dropped, and
        counted) when its data cannot be encoded as JSON."""
        try:
            return encode_cloudevent(self._buf[index], self.source)
        except (ValueError, TypeError, RecursionError):
            del self._buf[index]
            self._drop(1, "data cannot be encoded as JSON")
            return None

    async def _send_head_alone(self, js: JetStreamContext) -> None:
        """After a failure, send the oldest event alone and wait for its ack.

        ``publish_async`` reports an error ack only as a missing ack (nats-py raises inside its
        reply handler instead of failing the future), so a refused event would look like a
        slow server forever. The request/reply ``publish`` reports it properly: a refusal counts
        towards ``max_retries`` for that event; 503 (JetStream not ready) and timeouts do not.
        """
        event = self._buf[0]
        payload = self._payload(0)
        if payload is None:
            return
        try:
            await js.publish(
                subject_for(event),
                payload,
                timeout=self.ack_timeout,
                headers={MSG_ID_HEADER: event.id},
            )
        except nats.errors.MaxPayloadError as exc:
            raise Refused(str(exc)) from exc
        except nats.js.errors.APIError as exc:
            if isinstance(exc, nats.js.errors.ServiceUnavailableError):
                raise  # JetStream not ready: transient
            raise Refused(str(exc)) from exc
        self._buf.popleft()
        self.published += 1
        self._probe = False
        self._head_refusals = 0
        self._backoff.reset()

    async def _wait_connected(self, nc: NatsClient) -> bool:
        """Wait (up to 1 s) for nats-py to reconnect. True once it has."""
        if nc.is_closed:
            raise nats.errors.ConnectionClosedError
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected_evt.wait(), timeout=1.0)
        return nc.is_connected


# -- tail ------------------------------------------------------------------------------------
