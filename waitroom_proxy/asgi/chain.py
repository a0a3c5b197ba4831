"""The request middleware chain around the gatekeeper (pure ASGI).

Order, outermost first: ``RequestContext`` (request id, JSON access log, recovery) →
``WaitroomMiddleware`` → the proxy or host app. CORS for the ``/_waitroom`` JSON routes is
Starlette's ``CORSMiddleware`` on the routes app (configured origins only).

- **Request id**: a sane client ``X-Request-ID`` (1-128 of ``[A-Za-z0-9._-]``) is kept, anything
  else replaced by a fresh one; it is returned in the response and put on every log line of the
  request (``request_id`` attribute, through a contextvar and the logging filter of
  :mod:`waitroom_proxy.logs`).
- **Access log**: one JSON line per request on the ``waitroom_proxy.access`` logger.
- **Recovery**: an unhandled error becomes a plain 500 page (no traceback to the client), logged
  with the request id. If the response had already started, the connection is closed instead.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import secrets
import sys
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from waitroom_proxy.asgi.page import default_error_page
from waitroom_proxy.logs import request_id_var

access_log = logging.getLogger("waitroom_proxy.access")
log = logging.getLogger(__name__)

_SANE_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")
_ID_PREFIX = secrets.token_hex(5) + "-"
_ID_COUNTER = itertools.count(1)


class AccessLogWriter:
    """Writes the access log as JSON lines, batched.

    The logging module costs ~17 µs per record (a LogRecord, handler locks, a formatter); an
    access line per proxied request at that price costs more than the whole gatekeeper. Lines
    have the same shape as ``JsonFormatter``'s (``ts``, ``level``, ``logger``, ``request_id``,
    ``msg`` + the request fields), are formatted directly and written in one batch per event
    loop turn (``stream`` defaults to standard error, where ``configure_logging`` logs).
    Enabled while the ``waitroom_proxy.access`` logger is enabled for INFO.
    """

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream
        self._lines: list[str] = []

    def write(
        self,
        rid: str,
        method: str,
        path: str,
        status: int,
        nbytes: int,
        duration_ms: float,
        client: str | None,
    ) -> None:
        dumps = json.dumps
        line = (
            f'{{"ts":{time.time():.3f},"level":"info","logger":"waitroom_proxy.access",'
            f'"request_id":{dumps(rid)},"msg":"request","method":{dumps(method)},'
            f'"path":{dumps(path)},"status":{status},"bytes":{nbytes},'
            f'"duration_ms":{duration_ms:.3f},"client":{dumps(client)}}}\n'
        )
        if not self._lines:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self._lines.append(line)
                self.flush()
                return
        self._lines.append(line)

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        if lines:
            stream = self._stream if self._stream is not None else sys.stderr
            try:
                stream.write("".join(lines))
                stream.flush()
            except (OSError, ValueError):  # a closed or broken log stream never fails requests
                pass


class RequestContext:
    """Request id + JSON access log + recovery, in one wrapper (one ``send`` closure)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        access_log_enabled: bool = True,
        writer: AccessLogWriter | None = None,
        error_page: bytes | None = None,
    ) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled
        self._writer = writer or AccessLogWriter()
        self._500 = error_page if error_page is not None else default_error_page(500, "")
        """The page of an unhandled error (rendered once: the failure path renders nothing)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                request_id_var.set(self._request_id(scope))
            await self.app(scope, receive, send)
            return
        rid = self._request_id(scope)
        request_id_var.set(rid)
        rid_b = rid.encode()
        if not self.access_log_enabled:
            await self._unlogged(scope, receive, send, rid_b)
            return
        started = time.perf_counter()
        state = {"status": 0, "bytes": 0}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid_b)]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if state["status"]:
                raise  # the response started: the server closes the connection
            state["status"] = 500
            await self._send_500(send, rid_b)
        finally:
            if self.access_log_enabled and access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                self._writer.write(
                    rid,
                    scope.get("method", ""),
                    scope.get("path", ""),
                    state["status"],
                    state["bytes"],
                    (time.perf_counter() - started) * 1000,
                    client[0] if client else None,
                )

    async def _unlogged(self, scope: Scope, receive: Receive, send: Send, rid_b: bytes) -> None:
        """The same without an access log: nothing to time or count, only the id to add."""
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid_b)]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # the response started: the server closes the connection
            await self._send_500(send, rid_b)

    async def _send_500(self, send: Send, rid_b: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(self._500)).encode()),
                    (b"cache-control", b"no-store"),
                    (b"x-request-id", rid_b),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self._500})

    @staticmethod
    def _request_id(scope: Scope) -> str:
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                if _SANE_ID.match(v):
                    return str(v.decode("ascii"))
                break
        # A random per-process prefix and a counter: unique, and no system call per request
        # (ids only need to be unique, not secret).
        return f"{_ID_PREFIX}{next(_ID_COUNTER):x}"
