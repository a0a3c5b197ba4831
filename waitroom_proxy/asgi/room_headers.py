"""What of a request belongs to the room and never to the origin: its cookies and the bypass
secret header, and the ``Set-Cookie`` of the room.

Split from :mod:`.middleware` so the gate's entry point stays one job; the names stay
importable from there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from waitroom_proxy.service import SESSION_COOKIE, TICKET_COOKIE, RoomRuntime

ROOM_COOKIES = (SESSION_COOKIE, TICKET_COOKIE)
_SESSION_PREFIX = SESSION_COOKIE.encode() + b"="
_TICKET_PREFIX = TICKET_COOKIE.encode() + b"="


def read_cookies(cookie_headers: list[bytes]) -> tuple[str | None, str | None]:
    """(session, ticket) cookie values from the request's Cookie headers; never raises."""
    session = ticket = None
    for raw in cookie_headers:
        for part in raw.split(b";"):
            part = part.strip()
            if part.startswith(_SESSION_PREFIX):
                session = part[len(_SESSION_PREFIX) :].decode("latin-1").strip('"')
            elif part.startswith(_TICKET_PREFIX):
                ticket = part[len(_TICKET_PREFIX) :].decode("latin-1").strip('"')
    return session, ticket


_ROOM_NAMES = frozenset(name.encode() for name in ROOM_COOKIES)
RoomCookies = tuple[str | None, str | None, bytes, int]
_PARSED: dict[bytes, RoomCookies] = {}
"""Cookie header values parsed before (one header per request, as HTTP/1.1 clients send it):
a keep-alive client sends the same value on every request. Bounded, as the values are."""
_PARSED_MAX = 1024
_PARSED_BYTES = 2048


def room_cookies(cookie_headers: list[bytes]) -> RoomCookies:
    """``(session, ticket, rest, sessions)`` in one parse of the request's Cookie headers: the
    room's cookies as :func:`read_cookies` reads them; the rest, the ``Cookie`` value that the
    origin receives (``headers.strip_cookie_names`` without the room's; ``b""``: none left);
    how many session cookies were sent (the last one counts). Never raises."""
    if len(cookie_headers) == 1:
        raw = cookie_headers[0]
        hit = _PARSED.get(raw)
        if hit is not None:
            return hit
        parsed = _room_cookies(cookie_headers)
        if len(raw) <= _PARSED_BYTES:
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[bytes(raw)] = parsed
        return parsed
    return _room_cookies(cookie_headers)


def _room_cookies(cookie_headers: list[bytes]) -> RoomCookies:
    session = ticket = None
    kept: list[bytes] = []
    sessions = 0
    for raw in cookie_headers:
        for part in raw.split(b";"):
            pair = part.strip()
            if not pair:
                continue
            if pair.startswith(_SESSION_PREFIX):
                session = pair[len(_SESSION_PREFIX) :].decode("latin-1").strip('"')
                sessions += 1
            elif pair.startswith(_TICKET_PREFIX):
                ticket = pair[len(_TICKET_PREFIX) :].decode("latin-1").strip('"')
            elif pair.split(b"=", 1)[0].strip() not in _ROOM_NAMES:
                kept.append(pair)
    return session, ticket, b"; ".join(kept), sessions


def cookie_header(name: str, value: str, max_age: int, *, secure: bool) -> tuple[bytes, bytes]:
    """A ``Set-Cookie`` header: HttpOnly, SameSite=Lax, Path=/, Secure over HTTPS."""
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if secure:
        parts.append("Secure")
    return b"set-cookie", "; ".join(parts).encode("latin-1")


def strip_room_cookies(value: bytes) -> bytes:
    """A ``Cookie`` value without the room's cookies (other cookies are the origin's)."""
    kept = [
        p.strip()
        for p in value.split(b";")
        if p.strip() and not p.strip().startswith((_SESSION_PREFIX, _TICKET_PREFIX))
    ]
    return b"; ".join(kept)


def secret_headers(rooms: Iterable[RoomRuntime]) -> frozenset[bytes]:
    """Request headers that are the proxy's alone: each room's bypass secret header (when the
    room has a secret) and its ``_`` spelling (CGI and WSGI read both as one variable).

    The secret lets a request past the room; the origin has no use for it, and every copy
    forwarded is one more place it can leak from (origin logs, error reports, a reflected
    request). So it is removed on every path, whichever room (if any) the request is for.
    """
    names: set[bytes] = set()
    for room in rooms:
        if room.bypass.secret is not None:
            names.add(room.bypass.secret_header)
            names.add(room.bypass.secret_header.replace(b"-", b"_"))
    return frozenset(names)


def single_header(headers: Sequence[Any], name: bytes) -> bytes | None:
    """The value of a header sent exactly once (``b""`` when repeated: ambiguous)."""
    found: bytes | None = None
    for k, v in headers:
        if k == name:
            if found is not None:
                return b""
            found = bytes(v)
    return found
