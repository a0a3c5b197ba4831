"""One-time ids for the in-process store (``ports.Store.once``): a dict of expiry times in
the order they were written, pruned from the front, so memory is bounded by the ids of the
last ``ttl`` (as the Redis keys' PX expiry bounds it there)."""

from __future__ import annotations

import re
from collections import OrderedDict

_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_once(key: str, ttl_ms: int) -> None:
    """Refuse a one-time id that is not 1-64 URL-safe characters (it becomes part of a key
    name on Redis: no ``:`` or braces that could leave the room's hash tag), or a TTL <= 0.

    Raises:
        ValueError: the same on every store.
    """
    if not _KEY_RE.match(key) or ttl_ms <= 0:
        raise ValueError("once: the key must be 1-64 URL-safe characters and ttl_ms > 0")


class OnceIds:
    """Ids seen once each until they expire."""

    def __init__(self) -> None:
        self._until: OrderedDict[tuple[str, str], int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def take(self, room: str, key: str, now_ms: int, ttl_ms: int) -> bool:
        """Record ``key`` of ``room`` until ``now_ms + ttl_ms``; False if it is recorded."""
        self._prune(now_ms)
        at = (room, key)
        until = self._until.get(at)
        if until is not None and until > now_ms:
            return False
        self._until.pop(at, None)
        self._until[at] = now_ms + ttl_ms
        return True

    def _prune(self, now_ms: int, budget: int = 64) -> None:
        # Entries are in write order, not expiry order (TTLs may differ): stop at the first
        # live one; a long-lived entry at the front only delays pruning, it never loses one.
        while self._until and budget > 0:
            at, until = next(iter(self._until.items()))
            if until > now_ms:
                return
            del self._until[at]
            budget -= 1
