"""``{prefix}/status`` and ``{prefix}/heartbeat`` in raw ASGI (what the waiting page polls).

Both answer the same JSON; ``heartbeat`` is what the page polls (POST), ``status`` is the same
for clients that prefer GET. Both keep the place and, once the visitor is promoted, start the
session and set its cookie.

They answer for the room of the visitor's ticket: a session for another room (one session cookie
per host) is not "admitted" here, or the page would send the visitor back to a URL that queues
them again. A ticket is verified only after the per-client rate limit let the request through.

Every waiter polls, so this is the second hot path after the proxied request: it is served
without framework routing or response classes. The answers are byte for byte what Starlette's
``JSONResponse`` wrote for them before (its JSON and its header order), and the same handler is
the endpoint of the Starlette routes (:mod:`.routes`), which still serve the other methods
(``HEAD``, 405) and every request when CORS is configured. :func:`poll_answer` also stands in
for Starlette's error middleware: an unhandled error is a plain 500, then raised.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from http.cookies import _unquote
from typing import Any

from starlette.types import Receive, Scope, Send

from waitroom_proxy.asgi.answers import Caller, answer_for, rate_limited
from waitroom_proxy.asgi.binding import request_binding
from waitroom_proxy.asgi.edge import client_of
from waitroom_proxy.asgi.room_headers import cookie_header
from waitroom_proxy.service import SESSION_COOKIE, TICKET_COOKIE, Engine, RoomRuntime
from waitroom_proxy.service.status import status_dict

Headers = list[tuple[bytes, bytes]]

_EXPIRED_NO_TICKET = {
    "status": "expired", "room": None, "position": 0, "ahead": 0, "queue_length": 0,
    "eta_seconds": None, "refresh_seconds": 10, "return_to": "/",
}  # fmt: skip
_SERVER_ERROR = b"Internal Server Error"


def json_body(body: Any) -> bytes:
    """JSON as Starlette's ``JSONResponse`` renders it (compact, UTF-8, no NaN)."""
    return json.dumps(
        body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


async def send_json(send: Send, body: Any, status: int = 200, extra: Headers | None = None) -> None:
    """A ``no-store`` JSON answer, headers in the order ``JSONResponse`` gave them."""
    payload = json_body(body)
    headers = [
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(payload)).encode("latin-1")),
        (b"content-type", b"application/json"),
    ]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def request_cookies(scope: Scope) -> dict[str, str]:
    """The request's cookies as Starlette's ``Request.cookies`` reads them (every ``Cookie``
    header, a later value winning; names and values stripped, values unquoted)."""
    cookies: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name != b"cookie":
            continue
        for chunk in value.decode("latin-1").split(";"):
            if "=" in chunk:
                key, val = chunk.split("=", 1)
            else:
                key, val = "", chunk
            key, val = key.strip(), val.strip()
            if key or val:
                cookies[key] = _unquote(val)
    return cookies


class Poll:
    """The raw ASGI handler of ``status`` (GET) and ``heartbeat`` (POST).

    Args:
        engine: the gatekeeper's engine.
    """

    def __init__(self, engine: Engine) -> None:
        gate = self.gate = engine.gate
        self.sessions = gate.sessions
        self.admission = gate.admission

    def _admitted_in(
        self, token: str | None, rooms: Iterable[RoomRuntime], now: float
    ) -> RoomRuntime | None:
        """The room (of ``rooms``) that the session token is valid for, or None."""
        if token:
            session_for = self.sessions.session_for
            for room in rooms:
                if session_for(token, room, now) is not None:
                    return room
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, body, headers = await self.answer(scope)
        await send_json(send, body, status, headers)

    async def answer(self, scope: Scope) -> tuple[int, Any, Headers | None]:
        """(status, JSON body, headers after the JSON ones) of one poll."""
        gate = self.gate
        now = gate.clock()
        cookies = request_cookies(scope)
        session_token = cookies.get(SESSION_COOKIE)
        ticket_value = cookies.get(TICKET_COOKIE)
        if not ticket_value:
            room = self._admitted_in(session_token, gate.rooms.values(), now)
            if room is not None:
                return 200, status_dict(room, "admitted", None, "/", now), None
            return 200, _EXPIRED_NO_TICKET, None
        client = client_of(scope)
        # Counted by this replica only (no store call: service.limiter.ClientLimit.wait).
        wait = await gate.limit.wait(client.ip, shared=False)
        if wait > 0:
            limited = rate_limited(wait)
            retry = str(limited.retry_after).encode()
            body = {"status": "rate_limited", "retry_after": limited.retry_after}
            return limited.status, body, [(b"retry-after", retry)]
        admission = self.admission
        ticket = admission.read_ticket(ticket_value)
        if ticket is None:
            forget = cookie_header(TICKET_COOKIE, "", 0, secure=client.secure)
            return 200, {"status": "expired", "room": None}, [forget]
        room = gate.rooms.get(ticket.room)
        if room is not None and self._admitted_in(session_token, (room,), now) is not None:
            return 200, status_dict(room, "admitted", None, ticket.return_to, now), None
        binding = request_binding(scope, room) if room is not None else ""
        outcome = await admission.heartbeat(ticket, ticket.return_to, now, binding=binding)
        if outcome is None:
            forget = cookie_header(TICKET_COOKIE, "", 0, secure=client.secure)
            return 200, {"status": "expired", "room": ticket.room}, [forget]
        secure = client.secure
        headers = [cookie_header(n, v, a, secure=secure) for n, v, a in outcome.cookies]
        answer = answer_for(outcome, Caller.POLL)
        if answer.retry_after is not None:
            headers.append((b"retry-after", str(answer.retry_after).encode()))
        return answer.status, outcome.status, headers


async def poll_answer(poll: Poll, scope: Scope, send: Send) -> None:
    """Serve one poll outside Starlette, answering an unhandled error as its
    ``ServerErrorMiddleware`` did: a plain-text 500, then the error raised."""
    try:
        status, body, headers = await poll.answer(scope)
    except Exception:
        await send({"type": "http.response.start", "status": 500, "headers": [
            (b"content-length", str(len(_SERVER_ERROR)).encode()),
            (b"content-type", b"text/plain; charset=utf-8"),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": _SERVER_ERROR})
        raise
    await send_json(send, body, status, headers)
