"""Session binding at the gate (``domain.binding``): the binding value of a request, and the
clear answer to a session used from another network or browser than the one it was issued
to: 403 with a page (or JSON ``status: "moved"``) that says so, and the session cookie
removed, so the visitor's next step is a place in the queue, taken knowingly."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from starlette.types import Scope, Send

from waitroom_proxy.asgi.edge import client_of
from waitroom_proxy.asgi.messages import negotiate
from waitroom_proxy.asgi.room_headers import cookie_header, single_header
from waitroom_proxy.domain.binding import binding_of
from waitroom_proxy.domain.rules import safe_return_to
from waitroom_proxy.domain.tokens import Session
from waitroom_proxy.service import SESSION_COOKIE, RoomRuntime

if TYPE_CHECKING:
    from waitroom_proxy.asgi.page import Pages


def request_binding(scope: Scope, room: RoomRuntime) -> str:
    """The binding value of this request's client under the room's ``session_binding``."""
    mode = room.policy.session_binding
    if mode == "none":
        return ""
    agent = single_header(scope["headers"], b"user-agent") or b""
    return binding_of(mode, client_of(scope).ip or "", agent.decode("latin-1"))


def moved(scope: Scope, room: RoomRuntime, session: Session) -> bool:
    """Is ``session`` used from another client than the one it is bound to? (A session the
    room issued before it bound sessions, or while the store was down, carries no binding.)"""
    return bool(session.binding) and session.binding != request_binding(scope, room)


async def answer_moved(
    scope: Scope, send: Send, pages: Pages, room: RoomRuntime, return_to: str, accept: bytes
) -> None:
    """403: this session belongs to another network or browser (see the module docstring)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    clear = cookie_header(SESSION_COOKIE, "", 0, secure=client_of(scope).secure)
    renderer = pages.for_room(room.name)
    language = single_header(scope["headers"], b"accept-language")
    lang = negotiate(language.decode("latin-1") if language else None, renderer.messages)
    t = renderer.messages[lang]
    if b"application/json" in accept and b"text/html" not in accept:
        body = json.dumps({"status": "moved", "room": room.name,
                           "message": t["moved_text"]}).encode()  # fmt: skip
        kind = b"application/json"
    else:
        body = renderer.error_page(
            403, t["moved_heading"], t["moved_text"], lang=lang,
            action_href=safe_return_to(return_to), action="rejoin",
        ).encode()  # fmt: skip
        kind = b"text/html; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), clear]  # fmt: skip
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})
