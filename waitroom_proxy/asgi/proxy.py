"""The streaming reverse proxy: a raw ASGI app forwarding HTTP and WebSocket to one origin.

The proxied request is the hot path, so it stays raw ASGI (no framework routing or response
classes) and uses the hand-written client in :mod:`.upstream` (see there for why).

Choices worth knowing:

- **Host**: the client's ``Host`` is passed to the origin unchanged (virtual-host origins and
  absolute URLs built by the origin keep working) and also sent as ``X-Forwarded-Host``. It never
  chooses where the connection goes: that is always the configured upstream. With no client Host
  (HTTP/1.0), the upstream's authority is sent.
- **HTTP** forwarding (retries, early answers, HTTP/1.0 clients, 502/504) is
  :class:`.http_forward.HttpForwarder`; this module keeps the entry points and the WebSocket
  relay.
- **Client disconnect** mid-response aborts the upstream connection; it is never pooled.
- ``Expect`` is not forwarded: the proxy always sends the body, so an origin's interim
  ``100 Continue`` would only be skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Collection, Sequence
from typing import Any
from urllib.parse import quote

from starlette.types import Receive, Scope, Send

from .edge import forwarded_headers
from .headers import Header, TrustedProxies, filter_hop_by_hop
from .http_forward import ErrorPage, HttpForwarder, ResponseHook
from .page import default_error_page
from .response import REASONS
from .upstream import UpstreamPool

logger = logging.getLogger(__name__)

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
        ca_file: PEM CA certificates an ``https://`` origin must chain to (HTTP and WebSocket).
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
        ca_file: str | None = None,
    ) -> None:
        self._pool = UpstreamPool(
            upstream, connect_timeout=connect_timeout, pool_size=pool_size, ca_file=ca_file
        )
        self.upstream = upstream
        self._authority = self._pool.authority.encode("latin-1")
        self._prefix = self._pool.path_prefix
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._trusted = TrustedProxies(trusted_proxies)
        self._error_page = error_page or default_error_page
        self._forwarder = HttpForwarder(
            self._pool,
            read_timeout=read_timeout,
            trusted=self._trusted,
            error_page=self._error_page,
        )

    def __repr__(self) -> str:
        return f"UpstreamProxy({self.upstream!r}, trusted_proxies={self._trusted!r})"

    @property
    def pool(self) -> UpstreamPool:
        return self._pool

    @property
    def http(self) -> HttpForwarder:
        """What :meth:`forward` calls for an ``http`` scope (the gate's fast path calls it
        directly, one coroutine fewer per request)."""
        return self._forwarder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        typ = scope["type"]
        if typ == "http":
            await self._forwarder(scope, receive, send, (), (), None)
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
        strip_headers: Collection[bytes] = (),
        stripped_cookie: bytes | None = None,
    ) -> None:
        """Forward one request (``http`` or ``websocket`` scope) to the origin.

        Args:
            add_headers: headers added to the upstream request; client headers of the same
                names are removed first, so a client cannot forge them.
            strip_cookies: cookie names removed from the upstream request's ``Cookie``.
            response_hook: ``(status, headers) -> headers``, called with the origin's status and
                header list (hop-by-hop headers already dropped); returns the list to send.
            strip_headers: request header names (lower case) that never reach the origin (the
                proxy's own, such as the bypass secret header).
            stripped_cookie: the ``Cookie`` value without ``strip_cookies``, when the caller
                parsed the cookies already (``headers.upstream_request_headers``).
        """
        if scope["type"] == "http":
            await self._forwarder(scope, receive, send, add_headers, strip_cookies,
                                  response_hook, strip_headers, stripped_cookie)  # fmt: skip
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send, add_headers, strip_cookies, strip_headers)
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

    # -- WebSocket ----------------------------------------------------------------------------

    async def _websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        add_headers: Sequence[Header],
        strip_cookies: Collection[str],
        strip_headers: Collection[bytes] = (),
    ) -> None:
        from websockets.asyncio.client import ClientConnection, connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        msg = await receive()
        if msg["type"] != "websocket.connect":
            return
        host, headers = forwarded_headers(
            scope, self._trusted, self._authority, add_headers, strip_cookies, "ws", strip_headers
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
            kwargs["ssl"] = self._pool.ssl_context  # the same trust as HTTP requests
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
            reason = REASONS.get(status, "Error")
            page = self._error_page(status, reason)
            headers = [*_ERROR_HEADERS_BASE, (b"content-length", str(len(page)).encode())]
            await send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
            await send({"type": "websocket.http.response.body", "body": page})
        else:
            await send({"type": "websocket.close", "code": 1014})


__all__ = ["UpstreamProxy", "default_error_page", "filter_hop_by_hop"]
