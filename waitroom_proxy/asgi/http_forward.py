"""Forwarding one HTTP request to the origin and relaying its response (the proxied hot path).

Split from :mod:`.proxy` (which keeps the ASGI entry points and the WebSocket relay) so each
module keeps one job. The connection-level rules (framing, when a connection may be reused)
live in :mod:`.connection`; what is done to the response headers in :mod:`.response`.

Choices worth knowing:

- **Retries**: a request is retried once, on a fresh connection, only when it is idempotent,
  its body was already complete in memory, it went out on a *reused* keep-alive connection, and
  that connection died before a single response byte came back. A POST is never retried.
- **Early answers**: when the origin answers before the streamed request body has ended, the
  upload stops; the request then never ends on that connection, which is therefore closed,
  never pooled (a pooled connection owing body bytes is how requests get smuggled).
- **HTTP/1.0 clients** get a Content-Length: an unknown-length response is buffered (bounded)
  because the ASGI server would frame it as chunked, which HTTP/1.0 lacks.
- **Errors**: connection errors give a 502, timeouts a 504 (JSON when asked for, else the
  page from ``error_page(status, reason)``); details go to the log, never to the client. A
  failure after the response started closes the client connection (the client sees a truncated
  response, not a fake success).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any
from urllib.parse import quote

from starlette.types import Message, Receive, Scope, Send

from .commands import take_commands
from .edge import forwarded_headers
from .headers import Header, TrustedProxies
from .page import default_error_page
from .response import (
    HTTP10_BUFFER_MAX,
    REASONS,
    RedirectRewriter,
    accepts_json,
    error_response,
    error_text,
)
from .upstream import (
    Connection,
    UpstreamClosed,
    UpstreamError,
    UpstreamPool,
    UpstreamProtocolError,
    UpstreamTimeout,
)

# The proxy's logger name, as before the split: operators filter logs by it.
logger = logging.getLogger("waitroom_proxy.asgi.proxy")

ResponseHook = Callable[[int, list[Header]], list[Header]]
ErrorPage = Callable[[int, str], bytes]

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _ClientGone(Exception):
    """The client disconnected while the response was being relayed."""


class HttpForwarder:
    """Forwards one ``http`` scope to the origin behind ``pool``, streaming both ways.

    Args:
        pool: connections to the origin.
        read_timeout: seconds the origin may stay silent (see :class:`.proxy.UpstreamProxy`).
        trusted: proxies whose ``X-Forwarded-*`` headers are believed.
        error_page: ``(status, reason) -> HTML bytes`` for 502/504 pages.
    """

    def __init__(
        self,
        pool: UpstreamPool,
        *,
        read_timeout: float,
        trusted: TrustedProxies,
        error_page: ErrorPage,
    ) -> None:
        self.pool = pool
        self.read_timeout = read_timeout
        self.trusted = trusted
        self.error_page = error_page
        self.authority = pool.authority.encode("latin-1")
        self.prefix = pool.path_prefix
        self.redirects = RedirectRewriter(
            secure=pool.secure, host=pool.host, port=pool.port, prefix=pool.path_prefix
        )

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        add_headers: Sequence[Header],
        strip_cookies: Collection[str],
        response_hook: ResponseHook | None,
        strip_headers: Collection[bytes] = (),
        stripped_cookie: bytes | None = None,
    ) -> None:
        host, headers = forwarded_headers(
            scope, self.trusted, self.authority, add_headers, strip_cookies, "http",
            strip_headers, stripped_cookie,
        )  # fmt: skip
        method: str = scope["method"]

        msg = await receive()
        if msg["type"] != "http.request":
            return  # the client left before sending its request body
        body: bytes = msg.get("body", b"")
        more: bool = msg.get("more_body", False)
        chunked = False
        if more or body or method in _BODY_METHODS:
            has_length = any(n == b"content-length" for n, _ in headers)
            if not has_length:
                if more:
                    headers.append((b"transfer-encoding", b"chunked"))
                    chunked = True
                else:
                    headers.append((b"content-length", str(len(body)).encode()))

        target = scope.get("raw_path") or quote(scope["path"]).encode("ascii")
        if self.prefix:
            target = self.prefix + target
        qs = scope.get("query_string")
        parts = [method.encode(), b" ", target]
        if qs:
            parts += (b"?", qs)
        parts += (b" HTTP/1.1\r\nhost: ", host, b"\r\n")
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        request_head = b"".join(parts)

        is_head = method == "HEAD"
        loop = asyncio.get_running_loop()
        pool = self.pool
        conn: Connection | None = None
        try:
            conn = pool.acquire_idle(loop.time())
            if conn is None:
                conn = await pool.connect()
            conn.start(is_head)
            if not more:
                # The whole request is in memory: one write, and a retry is possible.
                conn.write(request_head + body if body else request_head)
                conn.end_request()
                try:
                    await conn.read_head(self.read_timeout)
                except UpstreamClosed:
                    if not (conn.reused and not conn.got_data and method in _IDEMPOTENT):
                        raise
                    # A pooled connection the origin had closed: retry once, fresh.
                    conn.close()
                    conn = await pool.connect()
                    conn.start(is_head)
                    conn.write(request_head + body if body else request_head)
                    conn.end_request()
                    await conn.read_head(self.read_timeout)
            else:
                conn.write(request_head)
                if not await self._upload(conn, body, chunked, receive):
                    conn.abort()
                    return  # the client left mid-upload
                await conn.read_head(self.read_timeout)
            if conn.exc is not None:
                # The response was already found invalid (e.g. a bad chunk right after the
                # head): a 502 now rather than a truncated success.
                raise conn.exc
            whole: bytes | None = None
            if (
                scope.get("http_version") == "1.0"
                and not is_head
                and conn.status not in (204, 304)
                and not any(n == b"content-length" for n, _ in conn.headers)
            ):
                whole = await self._whole(conn)
        except UpstreamError as exc:
            if conn is not None:
                conn.abort()
            status = 504 if isinstance(exc, UpstreamTimeout) else 502
            await self._error(send, status, exc, scope, response_hook)
            return
        except BaseException:
            if conn is not None:
                conn.abort()
            raise

        proto = next((v for n, v in headers if n == b"x-forwarded-proto"), b"http")
        try:
            await self._relay(conn, send, receive, response_hook, proto + b"://" + host, whole)
        except _ClientGone:
            conn.abort()
        except UpstreamError as exc:
            # Headers are out: all we can do is cut the response short.
            conn.abort()
            logger.warning("upstream failed mid-response for %s %s: %s", method, scope["path"], exc)
        except OSError:
            conn.abort()  # the ASGI server's send failed: the client is gone
        except BaseException:
            conn.abort()
            raise

    async def _upload(self, conn: Connection, body: bytes, chunked: bool, receive: Receive) -> bool:
        """Stream the request body upstream; False if the client disconnected.

        Stops as soon as the origin answers (or fails) before the body has ended, as nginx does,
        even while waiting for the client's next piece: the visitor gets the early answer (a
        401 or 413, say) at once. The request then never ends on this connection (no
        ``end_request``), so the connection is closed afterwards, never pooled.
        """
        timeout = self.read_timeout
        more = True
        while True:
            if body:
                conn.write(b"%x\r\n%b\r\n" % (len(body), body) if chunked else body)
                await conn.drain(timeout)  # also returns when the origin answers
            if not more:
                break
            msg = await self._next_piece(conn, receive)
            if msg is None:
                return True  # the origin answered (or failed) before the body ended
            if msg["type"] != "http.request":
                return False
            body = msg.get("body", b"")
            more = msg.get("more_body", False)
        if chunked:
            conn.write(b"0\r\n\r\n")
        conn.end_request()
        return True

    async def _next_piece(self, conn: Connection, receive: Receive) -> Message | None:
        """The client's next body message, or None once the origin has answered or failed."""
        if conn.headers_done or conn.exc is not None:
            return None
        piece = asyncio.ensure_future(receive())
        origin: asyncio.Future[None] | None = None
        try:
            while True:
                origin = asyncio.ensure_future(conn.wait(self.read_timeout))
                await asyncio.wait((piece, origin), return_when=asyncio.FIRST_COMPLETED)
                if origin.done():
                    _retrieve(origin)  # silent past read_timeout is no answer yet: wait again
                if conn.headers_done or conn.exc is not None:
                    return None
                if piece.done():
                    return piece.result()
        finally:
            # Cancelled, never awaited here (awaiting could swallow our own cancellation).
            for task in (piece, origin):
                if task is not None and not task.done():
                    task.cancel()
                if task is not None:
                    task.add_done_callback(_retrieve)

    async def _whole(self, conn: Connection) -> bytes:
        """The whole body of an unknown-length response, for an HTTP/1.0 client.

        HTTP/1.0 has no chunked coding and the ASGI server cannot send a close-delimited body,
        so such a response is buffered (bounded) and sent with a Content-Length.
        """
        parts: list[bytes] = []
        size = 0
        while True:
            if conn.chunks:
                data = conn.take()
                size += len(data)
                parts.append(data)
                if size > HTTP10_BUFFER_MAX:
                    raise UpstreamProtocolError("response too large to buffer for HTTP/1.0")
            if conn.complete:
                return b"".join(parts)
            if conn.exc is not None:
                raise conn.exc
            await conn.wait(self.read_timeout)

    async def _relay(
        self,
        conn: Connection,
        send: Send,
        receive: Receive,
        response_hook: ResponseHook | None,
        public: bytes,
        whole: bytes | None,
    ) -> None:
        headers = self.redirects.rewrite(conn.headers, public)
        if response_hook is not None:
            headers = response_hook(conn.status, headers)  # the room's hook takes commands
        else:
            # Bypass and no-room paths have no session to act on; the command still never
            # reaches the visitor.
            headers, _ = take_commands(headers)
        if whole is not None:
            headers = [*headers, (b"content-length", str(len(whole)).encode())]
            await send({"type": "http.response.start", "status": conn.status, "headers": headers})
            self.pool.release(conn)
            await send({"type": "http.response.body", "body": whole, "more_body": False})
            return
        await send({"type": "http.response.start", "status": conn.status, "headers": headers})

        if conn.complete:
            # Common case: the whole response is already here.
            data = conn.take() if conn.chunks else b""
            self.pool.release(conn)
            await send({"type": "http.response.body", "body": data, "more_body": False})
            return

        gone: list[bool] = []
        watcher: asyncio.Task[None] | None = None
        timeout = self.read_timeout
        try:
            while True:
                if gone:
                    raise _ClientGone
                if conn.chunks or conn.complete:
                    data = conn.take() if conn.chunks else b""
                    if conn.complete:
                        # Stop the watcher first: the server wakes it once the response ends,
                        # and it must not abort a connection that is back in the pool.
                        if watcher is not None:
                            watcher.cancel()
                        self.pool.release(conn)
                        await send({"type": "http.response.body", "body": data})
                        return
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                    continue
                if conn.exc is not None:
                    raise conn.exc
                if watcher is None:
                    # Only streamed responses pay for a task that notices a client leaving.
                    watcher = asyncio.create_task(_watch_disconnect(receive, conn, gone))
                try:
                    await conn.wait(timeout)
                except UpstreamError:
                    if gone:
                        raise _ClientGone from None
                    raise
                if gone:
                    raise _ClientGone
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def _error(
        self,
        send: Send,
        status: int,
        exc: BaseException,
        scope: Scope,
        response_hook: ResponseHook | None = None,
    ) -> None:
        """Answer a 502/504 (JSON when asked for). The response hook sees it too, so a visitor
        admitted by this very request still gets the session cookie: a failing origin must not
        cost the place (as nginx's ``$upstream_status``, it counts as a 5xx from upstream)."""
        logger.warning("upstream error (%d) for %s %s: %s", status, scope.get("method", "GET"),
                       scope.get("path", ""), exc)  # fmt: skip
        reason = REASONS.get(status, "Error")
        message = error_text(status)[1]
        json_wanted = accepts_json(scope.get("headers", ()))
        try:
            headers, body = error_response(
                status, reason, message, json_wanted=json_wanted, page=self.error_page
            )
        except Exception:
            logger.exception("error_page failed; using the default page")
            headers, body = error_response(
                status, reason, message, json_wanted=False, page=default_error_page
            )
        if response_hook is not None:
            headers = response_hook(status, headers)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Consume a helper task's outcome (no "exception was never retrieved" warning)."""
    if not task.cancelled():
        task.exception()


async def _watch_disconnect(receive: Receive, conn: Connection, gone: list[bool]) -> None:
    """Abort the upstream connection as soon as the client disconnects."""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            gone.append(True)
            conn.abort()
            return
