"""``HardeningGuard``: the outermost ASGI wrapper of the standalone proxy.

Before any app or origin sees a request, it:

1. settles the request once (``asgi.edge.prepare``: one Host, one normalised path, headers
   the origin trusts removed; TRACE/CONNECT → 405) — an ambiguous request → 400 and close;
2. refuses ambiguous body framing (``framing_problem``) with 400 and ``Connection: close``
   (501 for a transfer coding before ``chunked`` that it does not implement, ``gzip, chunked``);
3. enforces ``max_body_bytes``: a declared ``Content-Length`` above it → 413 at once; a chunked
   body is counted while it streams → 413 if the response has not started, else the
   connection is cut (the app sees ``http.disconnect``);
4. enforces ``body_timeout``: the app waited longer than that for the next piece of the body
   (the client went silent mid-upload) → 408 and close if the response has not started, else
   the connection is cut. Without it a client trickling a body holds an upstream connection
   and an origin worker for as long as it likes (nginx: ``client_body_timeout``, 60 s).

Requests without a body pay for none of 3 and 4 (no wrapper around ``receive``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from waitroom_proxy.asgi.edge import Refusal, prepare, refuse
from waitroom_proxy.asgi.headers import TrustedProxies

DEFAULT_BODY_TIMEOUT = 60.0


def framing_problem(
    headers: Sequence[tuple[bytes, bytes]], http_version: str = "1.1"
) -> str | None:
    """Why a request's body framing is ambiguous, or None when it is sound.

    Refused (RFC 9112 §6.1, §6.3): ``Content-Length`` together with ``Transfer-Encoding``;
    more than one ``Content-Length`` (even equal), or one that is not a plain decimal;
    more than one ``Transfer-Encoding``, or one other than ``chunked``; ``Transfer-Encoding``
    in an HTTP/1.0 request. Header names are expected lowercased (as ASGI servers give them).
    """
    return _framing(headers, http_version)[0]


def _framing(
    headers: Sequence[tuple[bytes, bytes]], http_version: str
) -> tuple[str | None, int | None, bool]:
    """(problem, declared Content-Length, chunked), in one pass over the headers."""
    length: int | None = None
    lengths = 0
    encodings = 0
    for name, value in headers:
        if name == b"content-length":
            lengths += 1
            v = value.strip(b" \t")
            if not v or not v.isdigit() or len(v) > 19:
                return "invalid Content-Length", None, False
            length = int(v)
        elif name == b"transfer-encoding":
            encodings += 1
            if value.strip(b" \t").lower() != b"chunked":
                return _coding_problem(value), None, False
    if lengths > 1:
        return "more than one Content-Length", None, False
    if encodings:
        if encodings > 1:
            return "more than one Transfer-Encoding", None, False
        if lengths:
            return "both Content-Length and Transfer-Encoding", None, False
        if http_version == "1.0":
            return "Transfer-Encoding in an HTTP/1.0 request", None, False
        return None, None, True
    return None, length, False


NOT_IMPLEMENTED = "transfer coding not implemented"
"""The framing problem answered with 501 rather than 400 (see ``_coding_problem``)."""


def _coding_problem(value: bytes) -> str:
    """Why a ``Transfer-Encoding`` other than ``chunked`` is refused.

    RFC 9112 §6.3: when ``chunked`` is not the final coding the body length cannot be known
    (400 and close, a MUST); §6.1: a request whose final ``chunked`` follows a coding the
    server does not implement (``gzip, chunked``) SHOULD get 501, as nginx answers.
    """
    codings = [c.strip(b" \t").lower() for c in value.split(b",")]
    if len(codings) > 1 and codings[-1] == b"chunked" and all(codings[:-1]):
        return NOT_IMPLEMENTED
    return "unsupported Transfer-Encoding"


async def _plain(send: Send, status: int, message: str) -> None:
    await refuse({"type": "http"}, send, Refusal(status, message))


class BodyTooLarge(Exception):
    """A streamed request body passed the limit after the response had started."""


class BodyTimeout(Exception):
    """The client went silent mid-body after the response had started."""


class HardeningGuard:
    """The outermost ASGI wrapper: the edge, framing, body size and body deadline (see above).

    Args:
        app: the app behind (the request context, the gate, the proxy).
        max_body_bytes: request bodies above this are refused (None: no limit).
        body_timeout: seconds the app may wait for the next piece of a body (None: none).
        trusted_proxies: CIDRs whose ``X-Forwarded-*`` headers are kept (``asgi.edge``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int | None = None,
        body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.trusted = TrustedProxies(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        try:
            scope = prepare(scope, self.trusted)
        except Refusal as refusal:
            await refuse(scope, send, refusal)
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        problem, length, chunked = _framing(scope["headers"], scope.get("http_version", "1.1"))
        if problem is not None:
            await _plain(send, 501 if problem == NOT_IMPLEMENTED else 400, problem)
            return
        limit = self.max_body_bytes
        if length is not None and limit is not None and length > limit:
            await _plain(send, 413, f"request body larger than {limit} bytes")
            return
        if not chunked and not length:
            await self.app(scope, receive, send)  # no body: nothing to watch
            return
        # A declared length within the limit needs no counting: the parser stops at it.
        await self._guarded(scope, receive, send, limit if chunked else None)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, limit: int | None) -> None:
        timeout = self.body_timeout
        state = {"received": 0, "started": False, "refused": False, "body_done": False}
        failure: list[Exception] = []

        def refuse_body(exc: Exception) -> bool:
            """Mark the body refused; True when a status can still be sent."""
            state["refused"] = True
            if state["started"]:
                failure.append(exc)
                return False
            state["started"] = True
            return True

        async def guarded_receive() -> Message:
            if state["refused"]:
                return {"type": "http.disconnect"}
            if state["body_done"]:
                return await receive()  # waiting for a disconnect: no deadline
            try:
                async with asyncio.timeout(timeout):
                    message = await receive()
            except TimeoutError:
                if refuse_body(BodyTimeout(f"no request body bytes for {timeout} s")):
                    await _plain(send, 408, "request body not received in time")
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                if not message.get("more_body", False):
                    state["body_done"] = True
                state["received"] += len(message.get("body", b""))
                if limit is not None and state["received"] > limit:
                    too_large = BodyTooLarge(f"request body passed {limit} bytes mid-response")
                    if refuse_body(too_large):
                        await _plain(send, 413, f"request body larger than {limit} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message: Message) -> None:
            if state["refused"] and not failure:
                return  # our status went out; the app's answer is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, guarded_receive, watched_send)
        if failure:
            raise failure[0]


__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "BodyTimeout",
    "BodyTooLarge",
    "HardeningGuard",
    "framing_problem",
]
