"""The request edge: one parse of the request written into the ASGI scope.

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
- ``scope["waitroom.client"]``: the :class:`Client`, resolved once here: the visitor's address
  and whether the visitor is on HTTPS, from ``X-Forwarded-For``/``-Proto`` when the peer is a
  trusted proxy, else from the connection. ``scope["client"]`` stays the TCP peer (the address
  the proxy adds to ``X-Forwarded-For``).
- ``TRACE`` and ``CONNECT`` are refused with 405 (``TRACE`` would reflect the session token
  in ``Waitroom-Verified``; nginx refuses ``TRACE`` with 405 too).

The raw request target comes from ``scope["waitroom.request_target"]`` when the hardened
uvicorn protocol set it (it keeps an absolute-form target's authority, which uvicorn's
httptools protocol drops), else from ``raw_path`` and ``query_string``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple
from urllib.parse import quote

from starlette.types import Scope, Send

from waitroom_proxy.asgi.headers import Header, TrustedProxies, upstream_request_headers
from waitroom_proxy.domain.target import BadRequest, RequestTarget, parse_target

TARGET_KEY = "waitroom.target"
"""Scope key of the parsed :class:`RequestTarget`."""
RAW_TARGET_KEY = "waitroom.request_target"
"""Scope key of the request target exactly as on the request line (set by the protocol)."""
CLIENT_KEY = "waitroom.client"
"""Scope key of the resolved :class:`Client`."""


class Client(NamedTuple):
    """Who the visitor is, as far as the proxy may believe (like uvicorn's
    ``ProxyHeadersMiddleware``, which rewrites ``scope["client"]`` and ``scope["scheme"]``)."""

    ip: str | None
    """The peer, or when the peer is a trusted proxy the rightmost ``X-Forwarded-For`` hop that
    is not one (None when the server knows no peer)."""
    secure: bool
    """The visitor is on HTTPS (``Secure`` cookies): the connection's scheme, or a trusted
    proxy's first ``X-Forwarded-Proto`` when it says ``http`` or ``https``."""
    from_proxy: bool = False
    """The peer is a trusted proxy: its ``X-Forwarded-*`` headers were kept (and the upstream
    request extends them)."""


_SECURE_SCHEMES = frozenset({"https", "wss"})
_CLIENTS: tuple[dict[str | None, Client], dict[str | None, Client]] = ({}, {})
"""Clients that are their own peer, by address (plain, then HTTPS): made once per address."""
_CLIENTS_MAX = 4096


def _forwarded_client(
    peer: str, secure: bool, headers: list[tuple[bytes, bytes]], trusted: TrustedProxies
) -> Client:
    """The client behind a trusted proxy, from the headers it forwarded."""
    hops: list[str] = []
    proto: str | None = None
    for k, v in headers:
        if k == b"x-forwarded-for":
            hops.extend(h.strip() for h in v.decode("latin-1").split(","))
        elif k == b"x-forwarded-proto" and proto is None:
            proto = v.decode("latin-1").split(",")[0].strip().lower()
    ip = peer
    for hop in reversed(hops):  # the rightmost address not of a trusted proxy
        if hop and hop not in trusted:
            ip = hop
            break
    if proto in ("http", "https"):
        secure = proto == "https"
    return Client(ip, secure, True)


REFUSED_METHODS = frozenset({"TRACE", "CONNECT"})
ALLOW = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

_VERIFIED = b"waitroom-verified"
_KEEP, _HOST, _DROP, _PROXY = range(4)
_PROXY_ONLY = frozenset({b"forwarded", b"x-real-ip"})


def _kind(name: bytes) -> int:
    """How the edge treats a header name (the slow path of ``prepare``)."""
    if b"_" in name:
        dashed = name.replace(b"_", b"-")
        if dashed == _VERIFIED or dashed.startswith(b"x-forwarded-") or dashed in _PROXY_ONLY:
            return _DROP  # a "_" spelling of a trusted name: never from anyone
        return _KEEP
    if name == _VERIFIED:
        return _DROP
    if name == b"host":
        return _HOST
    if name.startswith(b"x-forwarded-") or name in _PROXY_ONLY:
        return _PROXY  # only from a trusted proxy
    return _KEEP


_KINDS_MAX = 4096
"""Header names whose kind is memoised; past it (random names), the kind is computed."""
_KINDS: dict[bytes, int] = {
    name: _kind(name)
    for name in (
        b"host", _VERIFIED, b"forwarded", b"x-real-ip", b"x-forwarded-for",
        b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
    )
}  # fmt: skip


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
    peer = scope.get("client")
    from_proxy = bool(trusted) and peer is not None and peer[0] in trusted
    hosts: list[bytes] = []
    headers: list[tuple[bytes, bytes]] = []
    append = headers.append
    host_at = -1
    kinds = _KINDS
    # The hot path: one dict lookup per header (names repeat; their kind is memoised).
    for item in scope["headers"]:
        name = item[0]
        kind = kinds.get(name)
        if kind is None:
            kind = _kind(name)
            if len(kinds) < _KINDS_MAX:
                kinds[name] = kind
        if kind == _KEEP:
            append(item)
        elif kind == _HOST:
            hosts.append(item[1])
            if host_at < 0:
                host_at = len(headers)
                append(item)
        elif kind == _PROXY and from_proxy:
            append(item)
        # _DROP (and _PROXY from anyone else): the proxy's alone
    try:
        target = parse_target(_raw_target(scope), hosts, scope.get("http_version", "1.1"))
    except BadRequest as exc:
        raise Refusal(400, str(exc)) from None
    if host_at < 0:
        if target.authority:  # HTTP/1.0 in absolute-form, without Host
            headers.insert(0, (b"host", target.authority))
    elif headers[host_at][1] is not target.authority:
        headers[host_at] = (b"host", target.authority)  # an absolute-form target's authority
    out = dict(scope)
    out["headers"] = headers
    out["path"] = target.path
    out["raw_path"] = target.raw_path
    out["query_string"] = target.query
    out[TARGET_KEY] = target
    secure = scope.get("scheme") in _SECURE_SCHEMES
    if from_proxy:
        assert peer is not None
        out[CLIENT_KEY] = _forwarded_client(peer[0], secure, headers, trusted)
    else:
        # The hot path: the peer is the client; one dict lookup for a peer seen before.
        ip = peer[0] if peer else None
        known = _CLIENTS[secure]
        client = known.get(ip)
        if client is None:
            if len(known) >= _CLIENTS_MAX:
                known.clear()
            client = known[ip] = Client(ip, secure)
        out[CLIENT_KEY] = client
    return out


def target_of(scope: Scope) -> RequestTarget:
    """The :class:`RequestTarget` that ``prepare`` wrote into the scope."""
    target: RequestTarget = scope[TARGET_KEY]
    return target


def client_of(scope: Scope) -> Client:
    """The :class:`Client` that ``prepare`` wrote into the scope."""
    client: Client = scope[CLIENT_KEY]
    return client


def forwarded_headers(
    scope: Scope,
    trusted: TrustedProxies,
    default_host: bytes,
    add_headers: Sequence[Header],
    strip_cookies: Collection[str],
    default_scheme: str,
    strip_headers: Collection[bytes] = (),
    stripped_cookie: bytes | None = None,
) -> tuple[bytes, list[Header]]:
    """``upstream_request_headers`` for one request (HTTP or a WebSocket handshake): whether
    the peer is a trusted proxy is the edge's decision (``asgi.edge.Client``) when the request
    went through it, else decided here (an ``UpstreamProxy`` served bare)."""
    client = scope.get("client")
    peer = client[0] if client else None
    resolved = scope.get(CLIENT_KEY)
    return upstream_request_headers(
        scope["headers"],
        peer=peer,
        scheme=scope.get("scheme", default_scheme),
        trusted=resolved.from_proxy if resolved is not None else peer in trusted,
        default_host=default_host,
        add_headers=add_headers,
        strip_cookies=strip_cookies,
        strip_headers=strip_headers,
        stripped_cookie=stripped_cookie,
    )


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
    "CLIENT_KEY",
    "RAW_TARGET_KEY",
    "REFUSED_METHODS",
    "TARGET_KEY",
    "Client",
    "Refusal",
    "client_of",
    "forwarded_headers",
    "prepare",
    "refuse",
    "target_of",
]
