"""What of a request belongs to the room and never to the origin: its cookies, the secret
header of a bypass rule; and the room's own ``Set-Cookie``."""

from __future__ import annotations

from collections.abc import Iterable

from waitroom_proxy.service import SESSION_COOKIE, TICKET_COOKIE

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


def single_header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of a header sent exactly once (``b""`` when repeated: ambiguous)."""
    found: bytes | None = None
    for k, v in headers:
        if k == name:
            if found is not None:
                return b""
            found = bytes(v)
    return found
