"""The key names of the Redis store: a room's keys under one hash tag, the rate limit's keys
spread over the slots, and the TTLs and bounds the scripts are called with (the key table is in
``waitroom_proxy.adapters.redis_store``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

from waitroom_proxy.domain.policy import ROOM_NAME_RE

__all__ = [
    "KEY_PREFIX",
    "MAX_SCORE",
    "SPENT_TTL_MS",
    "SWEEP_LIMIT",
    "TICK_LIMIT",
    "RoomKeys",
    "key_ttl",
    "rate_limit_key",
    "room_keys",
    "text",
]

KEY_PREFIX = "wr"
TICK_LIMIT = 1000
"""Most ids one tick removes from each set, and most waiters it promotes (bounds script time)."""
SWEEP_LIMIT = 5000
"""Most waiters whose last touch one tick reads (about 2 ms of script time at a million
waiters). The sweep reads the whole queue once per ``abandon_after`` of store time, shared by
every replica's ticks: 2M waiters at 120 s are ~17k reads a second, ~8k per tick of one
replica ticking twice a second; past this limit a full sweep takes longer."""
KEY_TTL_MARGIN_MS = 86_400_000
"""Keys live this long past the longest duration of the call that last wrote them."""
MAX_SCORE = 2**53
"""Sorted-set scores are doubles: integer scores beyond this lose precision."""
SPENT_TTL_MS = 3_900_000
"""Key TTL floor for calls that write tombstones without the room's limits (leave, restore):
the default ``spent_for_ms``; the next tick sets the room's own."""


class RoomKeys(NamedTuple):
    """The keys of one room."""

    queue: str
    seen: str
    promoted: str
    active: str
    counters: str
    revoked: str
    revoked_exp: str
    meta: str
    spent: str
    hb: str
    """Version 0.1's heartbeat set (see the module docstring): read and refreshed, never
    created."""


@lru_cache(maxsize=4096)
def room_keys(room: str) -> RoomKeys:
    """The keys of ``room``, all with the room's hash tag.

    Raises:
        ValueError: ``room`` is not a valid room name (it could break the hash tag).
    """
    if not ROOM_NAME_RE.fullmatch(room):
        raise ValueError(f"invalid room name: {room!r}")
    base = f"{KEY_PREFIX}:{{{room}}}:"
    return RoomKeys(*(base + piece for piece in RoomKeys._fields))


def rate_limit_key(client: str) -> str:
    """The per-client rate-limit key: its own hash tag, so clients spread over the slots of a
    cluster instead of loading the shard of one room."""
    return f"{KEY_PREFIX}:{{rl:{client}}}"


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def key_ttl(*durations_ms: int) -> int:
    return max((0, *durations_ms)) + KEY_TTL_MARGIN_MS
