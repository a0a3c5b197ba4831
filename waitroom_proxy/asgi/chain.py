"""The request middleware chain around the gatekeeper (pure ASGI).

Order, outermost first: ``RequestContext`` (request id, JSON access log, recovery) →
``WaitroomMiddleware`` → the proxy or host app. CORS for the ``/_waitroom`` JSON routes is
Starlette's ``CORSMiddleware`` on the routes app (configured origins only).

- **Request id**: a sane client ``X-Request-ID`` (1-128 of ``[A-Za-z0-9._-]``) is kept, anything
  else replaced by a fresh one; it is returned in the response and put on every log line of the
  request (``request_id`` attribute, through a contextvar and a logging filter).
- **Access log**: one JSON line per request on the ``waitroom_proxy.access`` logger.
- **Recovery**: an unhandled error becomes a plain 500 page (no traceback to the client), logged
  with the request id. If the response had already started, the connection is closed instead.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access_log = logging.getLogger("waitroom_proxy.access")
log = logging.getLogger(__name__)

_SANE_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")
_500 = (
    b"<!doctype html><html lang=en><meta charset=utf-8><title>Something went wrong</title>"
    b"<body style='font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto'>"
    b"<h1>Something went wrong</h1><p>Please try again in a moment.</p></body></html>"
)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every log record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """Structured log lines: one JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", request_id_var.get()),
            "msg": record.getMessage(),
        }
        extra = getattr(record, "access", None)
        if isinstance(extra, dict):
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


def configure_logging(level: str = "info", *, json_lines: bool = True) -> None:
    """Root logging for ``serve``: JSON lines with the request id."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RequestContext:
    """Request id + JSON access log + recovery, in one wrapper (one ``send`` closure)."""

    def __init__(self, app: ASGIApp, *, access_log_enabled: bool = True) -> None:
        self.app = app
        self.access_log_enabled = access_log_enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                request_id_var.set(self._request_id(scope))
            await self.app(scope, receive, send)
            return
        rid = self._request_id(scope)
        request_id_var.set(rid)
        rid_b = rid.encode()
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
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"text/html; charset=utf-8"),
                        (b"content-length", str(len(_500)).encode()),
                        (b"cache-control", b"no-store"),
                        (b"x-request-id", rid_b),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _500})
        finally:
            if self.access_log_enabled and access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_log.info(
                    "request",
                    extra={
                        "access": {
                            "method": scope.get("method"),
                            "path": scope.get("path"),
                            "status": state["status"],
                            "bytes": state["bytes"],
                            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                            "client": client[0] if client else None,
                        }
                    },
                )

    @staticmethod
    def _request_id(scope: Scope) -> str:
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                if _SANE_ID.match(v):
                    return str(v.decode("ascii"))
                break
        return secrets.token_hex(8)
