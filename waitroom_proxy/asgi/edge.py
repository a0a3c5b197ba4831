"""The request edge: one parse of the request written into the ASGI scope (DESIGN §4).

Like uvicorn's ``ProxyHeadersMiddleware`` resolves the client address once and writes it into
the scope, ``prepare`` resolves the request once and hands everything downstream (the gate,
the proxy, a host app) a scope in which it is already settled:

- ``scope["waitroom.target"]``: the :class:`~waitroom_proxy.domain.target.RequestTarget`;
- ``scope["path"]``, ``scope["raw_path"]``, ``scope["query_string"]``: its normalised path,
  the canonical encoded path (what the origin receives), the query;
- exactly one ``host`` header, holding the authority to forward (an absolute-form target's
  authority replaces the ``Host`` header, RFC 9112 §3.2.2); none for HTTP/1.0 without Host;
- headers the origin trusts are the proxy's alone: the client's ``Waitroom-Verified`` is
  dropped, ``X-Forwarded-*``, ``Forwarded`` and ``X-Real-IP`` are dropped unless the peer is
  a trusted proxy, and every spelling of those names with ``_`` for ``-`` (``X_Forwarded_For``,
  ``Waitroom_Verified``) is dropped always: CGI and WSGI origins read ``X_Forwarded_For`` and
  ``X-Forwarded-For`` as the same ``HTTP_X_FORWARDED_FOR``.
- ``TRACE`` and ``CONNECT`` are refused with 405 (``TRACE`` would reflect the session token
  in ``Waitroom-Verified``; nginx refuses ``TRACE`` with 405 too).

The raw request target comes from ``scope["waitroom.request_target"]`` when the hardened
uvicorn protocol set it (it keeps an absolute-form target's authority, which uvicorn's
httptools protocol drops), else from ``raw_path`` and ``query_string``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from waitroom_proxy.asgi.headers import TrustedProxies
from waitroom_proxy.domain.target import BadRequest, RequestTarget, parse_target

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

TARGET_KEY = "waitroom.target"
"""Scope key of the parsed :class:`RequestTarget`."""
RAW_TARGET_KEY = "waitroom.request_target"
"""Scope key of the request target exactly as on the request line (set by the protocol)."""

REFUSED_METHODS = frozenset({"TRACE", "CONNECT"})
ALLOW = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

_VERIFIED = b"waitroom-verified"
_PROXY_ONLY = frozenset({b"forwarded", b"x-real-ip"})


def _proxy_only(name: bytes) -> bool:
    """Headers only a trusted proxy may send (in their ``-`` spelling)."""
    return name.startswith(b"x-forwarded-") or name in _PROXY_ONLY


class Refusal(Exception):
    """The edge refuses a request: ``status`` and a one-line ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _raw_target(scope: Scope) -> bytes:
    target = scope.get(RAW_TARGET_KEY)
    if target is not None:
        return bytes(target)
    raw = scope.get("raw_path") or quote(scope.get("path", "/")).encode("ascii")
    query = scope.get("query_string")
    return bytes(raw) + b"?" + bytes(query) if query else bytes(raw)


def prepare(scope: Scope, trusted: TrustedProxies) -> Scope:
    """A copy of an ``http``/``websocket`` scope with the request settled, as described above.

    Returns the scope unchanged when it was prepared already.

    Raises:
        Refusal: 400 for an ambiguous or malformed request, 405 for TRACE/CONNECT.
    """
    if TARGET_KEY in scope:
        return scope
    method = scope.get("method", "GET")
    if method in REFUSED_METHODS:
        raise Refusal(405, f"{method} is not allowed")
    client = scope.get("client")
    from_proxy = bool(trusted) and client is not None and client[0] in trusted
    hosts: list[bytes] = []
    headers: list[tuple[bytes, bytes]] = []
    for name, value in scope["headers"]:
        if name == b"host":
            hosts.append(value)
            continue
        if name == _VERIFIED:
            continue
        if b"_" in name:
            dashed = name.replace(b"_", b"-")
            if dashed == _VERIFIED or _proxy_only(dashed):
                continue
        elif not from_proxy and _proxy_only(name):
            continue
        headers.append((name, value))
    try:
        target = parse_target(_raw_target(scope), hosts, scope.get("http_version", "1.1"))
    except BadRequest as exc:
        raise Refusal(400, str(exc)) from None
    if target.authority:
        headers.insert(0, (b"host", target.authority))
    out = dict(scope)
    out["headers"] = headers
    out["path"] = target.path
    out["raw_path"] = target.raw_path
    out["query_string"] = target.query
    out[TARGET_KEY] = target
    return out


def target_of(scope: Scope) -> RequestTarget:
    """The :class:`RequestTarget` that ``prepare`` wrote into the scope."""
    target: RequestTarget = scope[TARGET_KEY]
    return target


async def refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    """Answer a refusal: a plain-text status with ``Connection: close`` (a WebSocket is closed,
    or denied with the status when the server supports the denial extension)."""
    body = refusal.reason.encode() + b"\n"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if refusal.status == 405:
        headers.append((b"allow", ALLOW))
    if scope["type"] == "websocket":
        if "websocket.http.response" in scope.get("extensions", {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": refusal.status,
                    "headers": headers,
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
        return
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "RAW_TARGET_KEY",
    "REFUSED_METHODS",
    "TARGET_KEY",
    "Refusal",
    "prepare",
    "refuse",
    "target_of",
]
