"""HTTP hardening at the proxy's edge: what uvicorn itself does not do.

Measured on uvicorn 0.54 (httptools 0.9 and h11 0.16), before this module:

- no deadline for the request head: a client sending one header byte a second (slowloris)
  holds a connection and a parser forever;
- httptools accepts a 4 MiB header block (h11 stops at 16 KiB, with a 400, not a 431);
- h11 serves a request with both ``Content-Length`` and ``Transfer-Encoding`` (a smuggled
  second request behind it is served too), and duplicate or listed ``Content-Length``;
  httptools serves ``Transfer-Encoding: gzip, chunked`` and hands the app a request with
  ``Transfer-Encoding: xchunked`` before failing; both serve ``Transfer-Encoding`` on HTTP/1.0;
- ``Settings.max_body_bytes`` had no enforcement anywhere;
- httptools' protocol appends the fields of a chunked body's trailer to the very list that is
  ``scope["headers"]``: when the whole message arrives in one read, the app sees trailer
  fields as request headers (a trailer ``Host``, ``X-Forwarded-For`` or bypass secret judged,
  and forwarded, as a header); when it arrives later, the list changes under the app's feet;
- httptools' protocol drops the authority of an absolute-form target
  (``GET http://other.test/x``): the app cannot honour RFC 9112 §3.2.2.

Two layers:

1. **Protocol** (``http_protocol(limits)``, a subclass of uvicorn's httptools or h11 protocol,
   passed as ``http=`` to ``uvicorn.Config``): a deadline for every request head
   (``header_timeout``, from the connection or from the request's first byte) → 408 and close;
   a limit on the head's size (``max_header_bytes``, request line included) → 431 and close.
   Both answer, half-close and discard what the client still sends for a moment ("lingering
   close"), so the client reads the status instead of a reset; so does every close uvicorn
   makes while a request body is still arriving (a 413 or 408 of the guard, an early answer).
   Trailer fields are dropped (they never act as headers: the proxy sends no trailers
   upstream either), and the request target exactly as received goes into
   ``scope["waitroom.request_target"]`` for the edge.
2. **ASGI** (``HardeningGuard`` in ``asgi.guard``, outermost): the request edge (one Host, one
   normalised path, headers the origin trusts), ambiguous framing → 400, ``max_body_bytes`` →
   413, ``body_timeout`` → 408.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from waitroom_proxy.asgi.edge import RAW_TARGET_KEY

# The ASGI layer lives in ``asgi.guard``; its names stay importable from here.
from waitroom_proxy.asgi.guard import (
    BodyTimeout,
    BodyTooLarge,
    HardeningGuard,
    framing_problem,
)
from waitroom_proxy.asgi.linger import Lingering

DEFAULT_MAX_HEADER_BYTES = 65_536
DEFAULT_HEADER_TIMEOUT = 10.0

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
}


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Limits applied by the hardened protocols."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    header_timeout: float = DEFAULT_HEADER_TIMEOUT


def _raw_response(status: int, message: str) -> bytes:
    body = message.encode() + b"\n"
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class _HeadGuard(Lingering):
    """Deadline and size limit of one connection's request heads (shared by both protocols);
    every close of the connection may linger (``asgi.linger``)."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def _guard_init(self) -> None:
        self._linger_init()
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None

    def _arm_deadline(self) -> None:
        if self._deadline is None and not self._refused:
            self._deadline = self.loop.call_later(self.limits.header_timeout, self._on_deadline)

    def _head_done(self) -> None:
        self._head_bytes = 0
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _guard_lost(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._linger_stop()

    # Both protocols: the mixin comes first in their bases, so ``super()`` is uvicorn's protocol.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(Any, super()).connection_made(self._wrap(cast(asyncio.Transport, transport)))
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard_lost()
        cast(Any, super()).connection_lost(exc)

    def _response_in_flight(self) -> bool:
        cycle = getattr(self, "cycle", None)  # uvicorn's current request cycle
        return cycle is not None and not cycle.response_complete

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._response_in_flight():
            self.transport.close()  # a pipelined head is late: no room for a status line
            return
        self._refuse(408, "request head not received in time")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status``, half-close, drop further input for a moment, then close."""
        self._refused = True
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        unset_keepalive = getattr(self, "_unset_keepalive_if_required", None)
        if unset_keepalive is not None:
            unset_keepalive()
        self.transport.write(_raw_response(status, message))
        self._linger_on()

    def _feed_head(
        self, data: bytes, feed: Callable[[bytes], None], in_head: Callable[[], bool]
    ) -> None:
        """Feed ``data`` while a head is being received, refusing it past the size limit."""
        room = self.limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            feed(data)
            return
        self._head_bytes = self.limits.max_header_bytes
        if room > 0:
            feed(data[:room])
        if self.transport.is_closing() or self._refused:
            return
        if in_head():
            self._refuse(431, f"request head larger than {self.limits.max_header_bytes} bytes")
            return
        feed(data[room:])


class HardenedHttpToolsProtocol(_HeadGuard, HttpToolsProtocol):
    """uvicorn's httptools protocol with a head deadline, a head size limit, no trailer fields
    among the headers, and the raw request target kept for the edge."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard_init()
        self._in_head = True

    def _body_pending(self) -> bool:
        return self.cycle is not None and self.cycle.more_body

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._arm_deadline()

    def on_header(self, name: bytes, value: bytes) -> None:
        # After the head, llhttp reports a chunked body's trailer fields through the same
        # callback; uvicorn would append them to scope["headers"]. Drop them.
        if self._in_head:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_done()
        self.scope[RAW_TARGET_KEY] = self.url  # type: ignore[literal-required]
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._dropped()
            return
        if self._in_head:
            self._feed_head(data, super().data_received, lambda: self._in_head)
        else:
            super().data_received(data)


class HardenedH11Protocol(_HeadGuard, H11Protocol):
    """uvicorn's h11 protocol with a head deadline and a head size limit (431, not 400)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard_init()
        # h11 refuses incomplete events above this with a 400; let our 431 come first.
        self.conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes + 1
        )

    def _body_pending(self) -> bool:
        return self.conn.their_state is h11.SEND_BODY

    def _in_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._dropped()
            return
        if not self._in_head():
            super().data_received(data)
            return
        self._arm_deadline()
        self._feed_head(data, super().data_received, self._in_head)
        if not self._in_head():
            self._head_done()


def http_protocol(limits: HttpLimits, kind: str = "auto") -> type[asyncio.Protocol]:
    """A hardened uvicorn HTTP protocol class with ``limits``.

    ``kind``: ``auto`` or ``httptools`` (the default server), or ``h11``.

    Pass it as ``http=`` to ``uvicorn.Config``.
    """
    if kind not in ("auto", "httptools", "h11"):
        raise ValueError(f"unknown HTTP protocol kind: {kind!r}")
    base: type[asyncio.Protocol] = (
        HardenedH11Protocol if kind == "h11" else HardenedHttpToolsProtocol
    )
    return type(base.__name__, (base,), {"limits": limits})


def limits_from(settings: Any) -> HttpLimits:
    """The protocol limits of ``Settings`` (``max_header_bytes``, ``header_timeout``)."""
    return HttpLimits(
        max_header_bytes=settings.max_header_bytes, header_timeout=settings.header_timeout
    )


__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_HEADER_BYTES",
    "BodyTimeout",
    "BodyTooLarge",
    "HardenedH11Protocol",
    "HardenedHttpToolsProtocol",
    "HardeningGuard",
    "HttpLimits",
    "framing_problem",
    "http_protocol",
    "limits_from",
]
