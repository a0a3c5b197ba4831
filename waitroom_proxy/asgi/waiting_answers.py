"""The gate's own answers to a protected URL: the waiting page (or its JSON) and the 429 of a
client over its rate limit. Split from :mod:`.middleware`, which decides and forwards."""

from __future__ import annotations

import json
import secrets

from starlette.types import Scope, Send

from waitroom_proxy.asgi.answers import Answer
from waitroom_proxy.asgi.edge import client_of
from waitroom_proxy.asgi.page import Pages, content_security_policy
from waitroom_proxy.asgi.phase_page import PHASE_STATUSES, phase_page_of
from waitroom_proxy.asgi.room_headers import cookie_header, single_header
from waitroom_proxy.domain.rules import safe_return_to
from waitroom_proxy.service import Outcome, RoomRuntime

__all__ = ["answer_too_many", "answer_waiting", "request_url", "respond", "wants_json"]


def wants_json(accept: bytes) -> bool:
    return b"application/json" in accept and b"text/html" not in accept


def request_url(scope: Scope) -> str:
    """The path and query the visitor asked for (used as the return URL)."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    qs = scope.get("query_string", b"")
    return safe_return_to(path + ("?" + qs.decode("latin-1") if qs else ""))


async def answer_waiting(
    pages: Pages, scope: Scope, send: Send, outcome: Outcome, answer: Answer, accept: bytes
) -> None:
    """The visitor waits (or is refused): the waiting page or its JSON, with the outcome's
    cookies; a WebSocket is closed with 1013 (try again later)."""
    room = outcome.room
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013})
        return
    secure = client_of(scope).secure
    headers = [cookie_header(n, v, a, secure=secure) for n, v, a in outcome.cookies]
    headers += _retry_after(answer)
    if wants_json(accept):
        body = json.dumps(outcome.status).encode()
        await respond(send, answer.status, b"application/json", body, headers)
        return
    nonce = secrets.token_urlsafe(12)
    language = single_header(scope["headers"], b"accept-language")
    accept_language = language.decode("latin-1") if language else None
    if outcome.status.get("status") in PHASE_STATUSES:  # a scheduled room (asgi.phase_page)
        html = phase_page_of(pages, room.name, outcome.status, nonce=nonce,
                             accept_language=accept_language)  # fmt: skip
    else:
        html = pages.waiting(
            room.name, outcome.status, nonce=nonce, accept_language=accept_language
        )
    headers.append((b"content-security-policy", content_security_policy(nonce).encode()))
    await respond(send, answer.status, b"text/html; charset=utf-8", html.encode(), headers)


async def answer_too_many(
    pages: Pages, scope: Scope, send: Send, room: RoomRuntime, answer: Answer, accept: bytes
) -> None:
    """429 with Retry-After: this client sent too many enqueue/heartbeat requests."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013})
        return
    headers = _retry_after(answer)
    if wants_json(accept):
        body = json.dumps({"status": "rate_limited", "room": room.name,
                           "retry_after": answer.retry_after}).encode()  # fmt: skip
        await respond(send, answer.status, b"application/json", body, headers)
        return
    html = pages.default.status_page(answer.status)
    await respond(send, answer.status, b"text/html; charset=utf-8", html.encode(), headers)


def _retry_after(answer: Answer) -> list[tuple[bytes, bytes]]:
    if answer.retry_after is None:
        return []
    return [(b"retry-after", str(answer.retry_after).encode())]


async def respond(
    send: Send, status: int, content_type: bytes, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    """A ``no-store`` answer of the gate's own."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
                (b"referrer-policy", b"same-origin"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
