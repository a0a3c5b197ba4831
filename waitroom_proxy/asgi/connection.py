"""One HTTP/1.1 connection to the origin: an asyncio protocol around httptools.

The response is parsed as bytes arrive; headers are kept as a raw ``(name, value)`` list with
hop-by-hop headers (and trailers) already dropped; body chunks are queued, with
``pause_reading`` above a high-water mark so a slow client never makes the proxy buffer a fast
origin's body. Whether the connection may carry another request is decided here and only here
(:attr:`Connection.reusable`); :class:`.upstream.UpstreamPool` only reads it.
"""

from __future__ import annotations

import asyncio
import collections
from typing import cast

import httptools

from ..errors import WaitroomError
from .headers import HOP_BY_HOP, Header, connection_tokens

# Body bytes queued from the origin before the socket stops being read, and when it resumes.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class UpstreamError(WaitroomError):
    """The upstream origin could not give a complete response.

    ::

        UpstreamError
        ├── UpstreamConnectError   connection refused/unreachable (→ 502)
        ├── UpstreamTimeout        connect or read timeout (→ 504)
        ├── UpstreamClosed         connection closed before the response was complete (→ 502)
        └── UpstreamProtocolError  the origin's bytes are not valid HTTP/1.1 (→ 502)
    """


class UpstreamConnectError(UpstreamError):
    """The origin refused or could not be reached."""


class UpstreamTimeout(UpstreamError):
    """The origin did not connect, answer or accept bytes in time."""


class UpstreamClosed(UpstreamError):
    """The origin closed (or reset) the connection before the response was complete."""


class UpstreamProtocolError(UpstreamError):
    """The origin sent something that is not a valid HTTP/1.1 response."""


def _on_timeout(fut: asyncio.Future[None], what: str) -> None:
    if not fut.done():
        fut.set_exception(UpstreamTimeout(what))


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to the origin, used by one request at a time.

    Whether the connection may carry another request is one field, :attr:`reusable`, and only
    the protocol code below sets it (the shape of mitmproxy's ``_http1.py``): it becomes true
    only when the request was handed to the transport to its last byte (:meth:`end_request`)
    *and* the response ended exactly on a message boundary with both sides agreeing to keep
    the connection: no byte after it, no close, no error. Anything else (an upload stopped after
    an early answer, bytes after a 204, a close-delimited body, a parse error) leaves it false,
    and :meth:`UpstreamPool.release` closes the connection. That is what keeps the next request
    on a pooled connection from being read as the tail of the previous one.
    """

    __slots__ = (
        "_chunked",
        "_drain_waiter",
        "_head",
        "_interim",
        "_keep",
        "_loop",
        "_named",
        "_parser",
        "_parser_dirty",
        "_paused_reading",
        "_sent",
        "_stray",
        "_waiter",
        "_write_paused",
        "buffered",
        "chunks",
        "closed",
        "complete",
        "exc",
        "got_data",
        "headers",
        "headers_done",
        "idle_since",
        "reusable",
        "reused",
        "status",
        "transport",
        "until_eof",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._parser_dirty = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._paused_reading = False
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._reset(head=False)

    def _reset(self, *, head: bool) -> None:
        self._head = head
        self._chunked = False
        self._interim = False
        self._named: frozenset[bytes] | None = None
        self._sent = False
        self._keep = False
        self._stray = False
        self.reusable = False
        self.status = 0
        self.headers: list[Header] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.headers_done = False
        self.complete = False
        self.until_eof = True
        self.got_data = False
        self.exc: UpstreamError | None = None

    def _settle(self) -> None:
        """Decide reuse: the request fully sent and the response ended on a clean boundary."""
        self.reusable = (
            self._sent
            and self.complete
            and self._keep
            and not self._stray
            and not self.closed
            and self.exc is None
        )

    # -- request side -------------------------------------------------------------------------

    def start(self, head: bool) -> None:
        """Prepare for a new request/response exchange (``head``: the request is HEAD)."""
        if self._parser_dirty:
            # After a HEAD response the parser may still expect a body that never comes.
            self._parser = httptools.HttpResponseParser(self)
            self._parser_dirty = False
        self._reset(head=head)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def end_request(self) -> None:
        """The request's last byte has been written: only now may the connection be reused."""
        self._sent = True
        self._settle()

    async def drain(self, seconds: float) -> None:
        """Wait until the kernel accepts more bytes (or raise if the connection failed)."""
        if self.exc is not None:
            raise self.exc
        if not self._write_paused:
            return
        fut = self._loop.create_future()
        self._drain_waiter = fut
        handle = self._loop.call_later(seconds, _on_timeout, fut, "upstream stopped reading")
        try:
            await fut
        finally:
            handle.cancel()
            if self._drain_waiter is fut:
                self._drain_waiter = None
        if self.exc is not None:
            raise self.exc

    # -- response side ------------------------------------------------------------------------

    async def wait(self, seconds: float) -> None:
        """Wait for more response bytes (or the end); raise UpstreamTimeout after ``seconds``."""
        fut = self._loop.create_future()
        self._waiter = fut
        handle = self._loop.call_later(seconds, _on_timeout, fut, "upstream read timeout")
        try:
            await fut
        finally:
            handle.cancel()
            if self._waiter is fut:  # a cancelled earlier wait must not clear a newer one
                self._waiter = None

    async def read_head(self, seconds: float) -> None:
        """Wait until the response status and headers have arrived."""
        while not self.headers_done:
            if self.exc is not None:
                raise self.exc
            await self.wait(seconds)

    def take(self) -> bytes:
        """All queued body bytes (possibly empty); resumes reading if it was paused."""
        chunks = self.chunks
        if len(chunks) == 1:
            data = chunks.popleft()
        else:
            data = b"".join(chunks)
            chunks.clear()
        self.buffered = 0
        if self._paused_reading and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()
        return data

    def abort(self) -> None:
        """Close at once (RST), e.g. when the client went away mid-response."""
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _wake_drain(self) -> None:
        d = self._drain_waiter
        if d is not None and not d.done():
            d.set_result(None)

    def _fail(self, exc: UpstreamError) -> None:
        self.reusable = False
        if self.exc is None and not self.complete:
            self.exc = exc
        self._wake()
        self._wake_drain()

    def _protocol_error(self, message: str) -> None:
        self._stray = True
        self._fail(UpstreamProtocolError(message))

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check here.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self.got_data = True
        if self.complete or self.exc is not None:
            # Bytes after the response (or on an idle connection): not HTTP we can trust.
            self._stray = True
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._protocol_error("unexpected protocol upgrade")
        except httptools.HttpParserError as exc:
            self._protocol_error(f"invalid response: {exc}")
        if self._stray:
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self.headers_done and not self.complete and self.until_eof:
            # A response delimited by the connection's end (no length, not chunked).
            self.complete = True
        if not self.complete:
            reason = "connection closed by upstream" if exc is None else f"connection lost: {exc}"
            self._fail(UpstreamClosed(reason))
        else:
            self._wake()
        self._wake_drain()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            # A second message in the same read (e.g. after a 204): never part of this response.
            self._stray = True
            self.reusable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers_done or self._stray:
            return  # trailer fields (dropped, as nginx does) or a stray message's headers
        name = name.lower()
        if name in HOP_BY_HOP:
            if name == b"transfer-encoding":
                self.until_eof = False
                self._chunked = True
            elif name == b"connection" and value.lower() not in (b"keep-alive", b"close"):
                tokens = connection_tokens(value)
                self._named = tokens if self._named is None else self._named | tokens
            return
        if name == b"content-length":
            self.until_eof = False
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._stray:
            return
        status = self._parser.get_status_code()
        if status == 101 or not 100 <= status <= 599:
            # 101 answers no request this client sends; RFC 9110 §15 codes are 100-599.
            self._protocol_error(f"invalid status {status}")
            return
        if status < 200:
            self._interim = True  # 1xx: skipped, its headers dropped in on_message_complete
            return
        self.status = status
        if self._named:
            named = self._named
            self.headers = [h for h in self.headers if h[0] not in named]
        if status in (204, 304):
            # No body, whatever the headers say (RFC 9112 §6.3). A 204 must not carry a
            # Content-Length (RFC 9110 §8.6); on a 304 it is optional and would make the ASGI
            # server expect a body: drop it on both.
            self.until_eof = False
            self.headers = [h for h in self.headers if h[0] != b"content-length"]
        self.headers_done = True
        if self._head:
            # A HEAD response has no body whatever its headers say; httptools cannot be told
            # to skip it, so the response ends here and the parser is replaced before reuse.
            self.until_eof = False
            self._keep = self._parser.should_keep_alive()
            self.complete = True
            self._parser_dirty = True
            self._settle()
        self._wake()
        self._wake_drain()  # an upload waiting for the origin to read stops: it has answered

    def on_body(self, body: bytes) -> None:
        if self._stray:
            return
        if self._head:
            self._stray = True  # body bytes on a HEAD response: the framing is not trustworthy
            self.reusable = False
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self._paused_reading and self.transport:
            self._paused_reading = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self._named = None
            self.headers = []
            self.until_eof = True
            self._chunked = False
            return
        if self._head:
            if self._chunked:
                # A chunked HEAD response can only "end" on body bytes it must not have.
                self._stray = True
                self.reusable = False
            return
        if self._stray:
            return
        self._keep = self._parser.should_keep_alive()
        self.complete = True
        self._settle()
        self._wake()
