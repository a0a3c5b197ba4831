"""The cache of verified session tokens and the revocations the hot path checks. Pure."""

from __future__ import annotations

from collections.abc import Callable

from waitroom_proxy.domain.cache import BoundedCache
from waitroom_proxy.domain.tokens import Session


class SessionCache:
    """Tokens already verified, so the hot path does no signature check.

    Bounded by entries and bytes (oldest first out). Revoked sessions (by place
    id) are refused even while their token is cached; whoever watches a place id (an open
    WebSocket of that session) is called back at once when it is revoked.
    """

    def __init__(self, max_entries: int = 100_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._entries: BoundedCache[str, Session] = BoundedCache(
            max_entries=max_entries, max_bytes=max_bytes
        )
        self.revoked: dict[str, float] = {}
        """place id → until when (unix seconds) it is refused."""
        self._watchers: dict[str, set[Callable[[], None]]] = {}

    def get(self, token: str, now: float) -> Session | None:
        s = self._entries.get(token)
        if s is None:
            return None
        if now >= s.expires_at or s.place_id in self.revoked:
            self._entries.pop(token)
            return None
        return s

    def put(self, token: str, session: Session) -> None:
        self._entries.put(token, session, len(token))

    def revoke(self, place_id: str, until: float) -> None:
        self.revoked[place_id] = max(until, self.revoked.get(place_id, until))
        for callback in list(self._watchers.get(place_id, ())):
            callback()

    def watch(self, place_id: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when ``place_id`` is revoked; returns the function that stops it."""
        self._watchers.setdefault(place_id, set()).add(callback)

        def unwatch() -> None:
            callbacks = self._watchers.get(place_id)
            if callbacks is not None:
                callbacks.discard(callback)
                if not callbacks:
                    del self._watchers[place_id]

        return unwatch

    def prune(self, now: float) -> None:
        """Forget revocations whose tokens have all expired."""
        for pid in [p for p, until in self.revoked.items() if until <= now]:
            del self.revoked[pid]

    def __len__(self) -> int:
        return len(self._entries)
