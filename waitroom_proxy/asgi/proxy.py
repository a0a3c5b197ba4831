"""The streaming reverse proxy: a raw ASGI app forwarding HTTP and WebSocket to one origin.

The proxied request is the hot path, so it stays raw ASGI (no framework routing or response
classes) and uses the hand-written client in :mod:`.upstream` (see there for why).

Choices worth knowing:

- **Host**: the client's ``Host`` is passed to the origin unchanged (virtual-host origins and
  absolute URLs built by the origin keep working) and also sent as ``X-Forwarded-Host``. It never
  chooses where the connection goes: that is always the configured upstream. With no client Host
  (HTTP/1.0), the upstream's authority is sent.
- **Retries**: a request is retried once, on a fresh connection, only when it is idempotent,
  its body was already complete in memory, it went out on a *reused* keep-alive connection, and
  that connection died before a single response byte came back. A POST is never retried.
- **Errors**: connection errors give a 502 page, timeouts a 504 page, each from
  ``error_page(status, reason)``; details go to the log (no traceback), never to the client.
  A failure after the response started closes the client connection (the client sees a
  truncated response, not a fake success).
- **Client disconnect** mid-response aborts the upstream connection; it is never pooled.
- ``Expect`` is not forwarded: the proxy always sends the body, so an origin's interim
  ``100 Continue`` would only be skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Collection, MutableMapping, Sequence
from typing import Any
from urllib.parse import quote

from .headers import Header, TrustedProxies, filter_hop_by_hop, upstream_request_headers
from .response import HTTP10_BUFFER_MAX, RedirectRewriter, accepts_json, error_response
from .upstream import (
    Connection,
    UpstreamClosed,
    UpstreamError,
    UpstreamPool,
    UpstreamProtocolError,
    UpstreamTimeout,
)

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ResponseHook = Callable[[int, list[Header]], list[Header]]
ErrorPage = Callable[[int, str], bytes]

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_REASONS = {
    502: "Bad Gateway",
    504: "Gateway Timeout",
}
_MESSAGES = {
    502: "The site is not answering; try again in a moment.",
    504: "The site is taking too long to answer; try again in a moment.",
}
_ERROR_HEADERS_BASE = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
]
# Headers the WebSocket client library writes itself for the upstream handshake.
_WS_OWN = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"content-length",
    }
)
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
# Close codes that may not be sent in a close frame; the proxy substitutes 1014 (bad gateway)
# when the origin vanished without one, and 1000 when the client did.
_UNSENDABLE = frozenset({1005, 1006, 1015})


def default_error_page(status: int, reason: str) -> bytes:
    """A small self-contained HTML page for a proxy error (``reason`` is the short title)."""
    message = _MESSAGES.get(status, "The site could not answer; try again in a moment.")
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{status} {reason}</title>"
        "<style>body{font:1.1rem/1.5 system-ui,sans-serif;max-width:36rem;margin:15vh auto;"
        "padding:0 1rem;color:#222}h1{font-size:1.5rem}</style>"
        f"<h1>{status} {reason}</h1><p>{message}</p></html>"
    ).encode()


class _ClientGone(Exception):
    """The client disconnected while the response was being relayed."""


class UpstreamProxy:
    """Forward HTTP and WebSocket requests to one upstream origin, streaming both ways.

    Args:
        upstream: the origin, ``http://host:port`` (or ``https://``); a path is a prefix.
        connect_timeout: seconds to connect; past it the client gets a 504.
        read_timeout: seconds the origin may stay silent (before its response headers, between
            body bytes, or while not reading our upload); past it, a 504 (or a cut response).
        trusted_proxies: CIDRs of proxies in front of this one whose ``X-Forwarded-*`` headers
            are believed (appended to); from any other peer they are replaced.
        pool_size: idle keep-alive connections kept for reuse.
        error_page: ``(status, reason) -> HTML bytes`` for 502/504 pages.
    """

    def __init__(
        self,
        upstream: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        trusted_proxies: Sequence[str] = (),
        pool_size: int = 100,
        error_page: ErrorPage | None = None,
    ) -> None:
        self._pool = UpstreamPool(upstream, connect_timeout=connect_timeout, pool_size=pool_size)
        self.upstream = upstream
        self._authority = self._pool.authority.encode("latin-1")
        self._prefix = self._pool.path_prefix
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._trusted = TrustedProxies(trusted_proxies)
        self._error_page = error_page or default_error_page
        pool = self._pool
        self._redirects = RedirectRewriter(
            secure=pool.secure, host=pool.host, port=pool.port, prefix=pool.path_prefix
        )

    def __repr__(self) -> str:
        return f"UpstreamProxy({self.upstream!r}, trusted_proxies={self._trusted!r})"

    @property
    def pool(self) -> UpstreamPool:
        return self._pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        typ = scope["type"]
        if typ == "http":
            await self._http(scope, receive, send, (), (), None)
        elif typ == "websocket":
            await self._websocket(scope, receive, send, (), ())
        elif typ == "lifespan":
            await self._lifespan(receive, send)

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        add_headers: Sequence[Header] = (),
        strip_cookies: Collection[str] = (),
        response_hook: ResponseHook | None = None,
    ) -> None:
        """Forward one request (``http`` or ``websocket`` scope) to the origin.

        Args:
            add_headers: headers added to the upstream request; client headers of the same
                names are removed first, so a client cannot forge them.
            strip_cookies: cookie names removed from the upstream request's ``Cookie``.
            response_hook: ``(status, headers) -> headers``, called with the origin's status and
                header list (hop-by-hop headers already dropped); returns the list to send.
        """
        if scope["type"] == "http":
            await self._http(scope, receive, send, add_headers, strip_cookies, response_hook)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send, add_headers, strip_cookies)
        else:
            raise ValueError(f"cannot forward a {scope['type']!r} scope")

    async def aclose(self) -> None:
        """Close pooled upstream connections."""
        await self._pool.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- HTTP ---------------------------------------------------------------------------------

    async def _http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        add_headers: Sequence[Header],
        strip_cookies: Collection[str],
        response_hook: ResponseHook | None,
    ) -> None:
        client = scope.get("client")
        peer = client[0] if client else None
        host, headers = upstream_request_headers(
            scope["headers"],
            peer=peer,
            scheme=scope.get("scheme", "http"),
            trusted=peer in self._trusted,
            default_host=self._authority,
            add_headers=add_headers,
            strip_cookies=strip_cookies,
        )
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
        if self._prefix:
            target = self._prefix + target
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
        pool = self._pool
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
                    await conn.read_head(self._read_timeout)
                except UpstreamClosed:
                    if not (conn.reused and not conn.got_data and method in _IDEMPOTENT):
                        raise
                    # A pooled connection the origin had closed: retry once, fresh.
                    conn.close()
                    conn = await pool.connect()
                    conn.start(is_head)
                    conn.write(request_head + body if body else request_head)
                    conn.end_request()
                    await conn.read_head(self._read_timeout)
            else:
                conn.write(request_head)
                if not await self._upload(conn, body, chunked, receive):
                    conn.abort()
                    return  # the client left mid-upload
                await conn.read_head(self._read_timeout)
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
        """Stream the request body upstream; False if the client disconnected."""
        timeout = self._read_timeout
        more = True
        while True:
            if body:
                conn.write(b"%x\r\n%b\r\n" % (len(body), body) if chunked else body)
                await conn.drain(timeout)
            if not more:
                break
            if conn.headers_done or conn.exc is not None:
                # The origin answered (or failed) before the body ended: stop sending. The
                # request never ends on this connection (no end_request), so it is not reused.
                return True
            msg = await receive()
            if msg["type"] != "http.request":
                return False
            body = msg.get("body", b"")
            more = msg.get("more_body", False)
        if chunked:
            conn.write(b"0\r\n\r\n")
        conn.end_request()
        return True

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
            await conn.wait(self._read_timeout)

    async def _relay(
        self,
        conn: Connection,
        send: Send,
        receive: Receive,
        response_hook: ResponseHook | None,
        public: bytes,
        whole: bytes | None,
    ) -> None:
        headers = self._redirects.rewrite(conn.headers, public)
        if response_hook is not None:
            headers = response_hook(conn.status, headers)
        if whole is not None:
            headers = [*headers, (b"content-length", str(len(whole)).encode())]
            await send({"type": "http.response.start", "status": conn.status, "headers": headers})
            self._pool.release(conn)
            await send({"type": "http.response.body", "body": whole, "more_body": False})
            return
        await send({"type": "http.response.start", "status": conn.status, "headers": headers})

        if conn.complete:
            # Common case: the whole response is already here.
            data = conn.take() if conn.chunks else b""
            self._pool.release(conn)
            await send({"type": "http.response.body", "body": data, "more_body": False})
            return

        gone: list[bool] = []
        watcher: asyncio.Task[None] | None = None
        timeout = self._read_timeout
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
                        self._pool.release(conn)
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
        logger.warning(
            "upstream error (%d) for %s %s: %s",
            status,
            scope.get("method", "GET"),
            scope.get("path", ""),
            exc,
        )
        reason = _REASONS.get(status, "Error")
        message = _MESSAGES.get(status, "The site could not answer; try again in a moment.")
        json_wanted = accepts_json(scope.get("headers", ()))
        try:
            headers, body = error_response(
                status, reason, message, json_wanted=json_wanted, page=self._error_page
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

    # -- WebSocket ----------------------------------------------------------------------------

    async def _websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        add_headers: Sequence[Header],
        strip_cookies: Collection[str],
    ) -> None:
        from websockets.asyncio.client import ClientConnection, connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        msg = await receive()
        if msg["type"] != "websocket.connect":
            return
        client = scope.get("client")
        peer = client[0] if client else None
        host, headers = upstream_request_headers(
            scope["headers"],
            peer=peer,
            scheme=scope.get("scheme", "ws"),
            trusted=peer in self._trusted,
            default_host=self._authority,
            add_headers=add_headers,
            strip_cookies=strip_cookies,
        )
        extra = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers if n not in _WS_OWN]
        # The URI's authority becomes the handshake's Host (the client's); the TCP connection
        # goes to host/port below, always the configured upstream.
        host_s = host.decode("latin-1")
        if not _HOST_RE.match(host_s):
            host_s = self._pool.authority
        target = (scope.get("raw_path") or quote(scope["path"]).encode("ascii")).decode("latin-1")
        qs = scope.get("query_string") or b""
        uri = f"{'wss' if self._pool.secure else 'ws'}://{host_s}{self._prefix.decode()}{target}"
        if qs:
            uri += "?" + qs.decode("latin-1")
        kwargs: dict[str, Any] = {"host": self._pool.host, "port": self._pool.port}
        if self._pool.secure:
            kwargs["server_hostname"] = self._pool.host
        try:
            upstream: ClientConnection = await connect(
                uri,
                additional_headers=extra,
                user_agent_header=None,
                subprotocols=scope.get("subprotocols") or None,
                compression=None,
                open_timeout=self._connect_timeout,
                ping_interval=None,
                close_timeout=5,
                max_size=None,
                proxy=None,
                **kwargs,
            )
        except InvalidStatus as exc:
            logger.info("upstream refused WebSocket %s: %s", scope["path"], exc)
            await self._ws_deny(scope, send, exc.response.status_code, None)
            return
        except Exception as exc:  # refused, reset, timeout, bad handshake: never leak it
            status = 504 if isinstance(exc, TimeoutError) else 502
            logger.warning("upstream WebSocket error (%d) for %s: %s", status, scope["path"], exc)
            await self._ws_deny(scope, send, status, exc)
            return

        accept_headers = (
            [
                (n.lower().encode("latin-1"), v.encode("latin-1"))
                for n, v in upstream.response.headers.raw_items()
                if n.lower() in ("set-cookie", "cache-control")
            ]
            if upstream.response is not None
            else []
        )
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": upstream.subprotocol,
                "headers": accept_headers,
            }
        )

        async def client_to_upstream() -> None:
            while True:
                m = await receive()
                t = m["type"]
                if t == "websocket.receive":
                    text = m.get("text")
                    await upstream.send(text if text is not None else (m.get("bytes") or b""))
                elif t == "websocket.disconnect":
                    code = m.get("code", 1000)
                    await upstream.close(
                        1000 if code in _UNSENDABLE else code, m.get("reason") or ""
                    )
                    return

        async def upstream_to_client() -> None:
            try:
                async for data in upstream:
                    if isinstance(data, str):
                        await send({"type": "websocket.send", "text": data})
                    else:
                        await send({"type": "websocket.send", "bytes": data})
            except ConnectionClosed:
                pass
            rcvd = upstream.close_code
            code = 1014 if rcvd is None or rcvd in _UNSENDABLE else rcvd
            await send(
                {"type": "websocket.close", "code": code, "reason": upstream.close_reason or ""}
            )

        tasks = [
            asyncio.create_task(client_to_upstream()),
            asyncio.create_task(upstream_to_client()),
        ]
        try:
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                    await t
        finally:
            for t in tasks:
                t.cancel()
            await upstream.close()

    async def _ws_deny(
        self, scope: Scope, send: Send, status: int, exc: BaseException | None
    ) -> None:
        if "websocket.http.response" in scope.get("extensions", {}):
            reason = _REASONS.get(status, "Error")
            page = self._error_page(status, reason)
            headers = [*_ERROR_HEADERS_BASE, (b"content-length", str(len(page)).encode())]
            await send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
            await send({"type": "websocket.http.response.body", "body": page})
        else:
            await send({"type": "websocket.close", "code": 1014})


async def _watch_disconnect(receive: Receive, conn: Connection, gone: list[bool]) -> None:
    """Abort the upstream connection as soon as the client disconnects."""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            gone.append(True)
            conn.abort()
            return


__all__ = ["UpstreamProxy", "default_error_page", "filter_hop_by_hop"]
