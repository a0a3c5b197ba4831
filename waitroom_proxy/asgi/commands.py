"""``Waitroom-Command``: how the origin ends or extends a visitor's session (pure, no I/O).

The origin answers ``Waitroom-Command: complete`` (or ``revoke``, ``extend=SECONDS``) on a
response; the proxy removes the header before the visitor sees it and acts on it. Every copy is
removed, whatever its case (two frameworks may each add one, and a copy left behind would tell
the visitor how the room is driven); the first one the room understands is acted on, and the
others are named in the log rather than ignored silently.
"""

from __future__ import annotations

import logging

Header = tuple[bytes, bytes]

COMMAND = b"waitroom-command"
_LEN = len(COMMAND)
EXTEND_MAX = 86_400

log = logging.getLogger("waitroom_proxy.asgi.middleware")


def take_commands(headers: list[Header]) -> tuple[list[Header], list[bytes]]:
    """``(headers without any Waitroom-Command, their values in order)``.

    Returns the same list object when there is none (the common case costs one pass).
    """
    values = [v for k, v in headers if len(k) == _LEN and k.lower() == COMMAND]
    if not values:
        return headers, values
    return [h for h in headers if not (len(h[0]) == _LEN and h[0].lower() == COMMAND)], values


def extend_seconds(text: str) -> int | None:
    """SECONDS of ``extend=SECONDS`` when it is a whole number in 1..86400, else None."""
    if not text.startswith("extend="):
        return None
    digits = text[7:].strip()
    if not digits.isdigit() or len(digits) > 6:
        return None
    seconds = int(digits)
    return seconds if 0 < seconds <= EXTEND_MAX else None


def first_valid(values: list[bytes]) -> str | None:
    """The first command the room understands (lowercased), logging every other one."""
    valid: list[str] = []
    for raw in values:
        text = raw.decode("latin-1").strip().lower()
        if text in ("revoke", "complete") or extend_seconds(text) is not None:
            valid.append(text)
        else:
            log.warning("origin sent an unknown or bad Waitroom-Command: %r", text[:64])
    if len(valid) > 1:
        log.warning(
            "origin sent %d Waitroom-Command headers; acting on the first: %r",
            len(valid),
            valid[0][:64],
        )
    return valid[0] if valid else None
