"""What a host app (the middleware in front of an ASGI app, not the proxy) sees and answers:
the request's scope without the room's cookies, the client's ``Waitroom-Verified`` or a bypass
secret header, and a ``send`` that lets the room act on the response's head (commands,
cookies) and never passes a ``Waitroom-Command`` on to the visitor."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from starlette.types import Message, Scope, Send

from waitroom_proxy.asgi.commands import take_commands
from waitroom_proxy.asgi.room_headers import strip_room_cookies

__all__ = ["VERIFIED", "host_app_scope", "host_app_send"]

VERIFIED = b"waitroom-verified"
Headers = list[tuple[bytes, bytes]]


def host_app_scope(
    scope: Scope, private: Collection[bytes], verified: bytes | None
) -> dict[str, Any]:
    """A copy of ``scope`` whose headers the host app may see; ``verified``: the proxy's own
    session token, added as ``Waitroom-Verified``."""
    headers: Headers = []
    origin_cookies: Headers = []
    for item in scope["headers"]:  # one pass; the origin's cookies go last, as before
        name = item[0]
        if name == b"cookie":
            kept = strip_room_cookies(item[1])
            if kept:
                origin_cookies.append((b"cookie", kept))
        elif name != VERIFIED and name not in private:
            headers.append(item)
    if origin_cookies:
        headers += origin_cookies
    if verified:
        headers.append((VERIFIED, verified))
    inner = dict(scope)
    inner["headers"] = headers
    return inner


def host_app_send(send: Send, on_response: Callable[[int, Headers], Headers]) -> Send:
    """``send`` with the response head (HTTP, or a WebSocket denial) passed through
    ``on_response``; a WebSocket ``accept`` loses any ``Waitroom-Command``."""

    async def send_wrapper(message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start" or kind == "websocket.http.response.start":
            message = dict(message)
            message["headers"] = on_response(message["status"], list(message.get("headers", [])))
        elif kind == "websocket.accept" and message.get("headers"):
            # A handshake answer carries no command to act on, but none may reach the
            # visitor either.
            message = dict(message)
            message["headers"] = take_commands(list(message["headers"]))[0]
        await send(message)

    return send_wrapper
