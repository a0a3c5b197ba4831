"""The memory store's small calls, mixed into ``MemoryStore``: the room's meta map, the
per-client rate limit and one-use ids (the same rules as ``set_meta.lua``, ``init_meta.lua``,
``hit.lua`` and ``once.lua``; the contract suite checks both stores the same way)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from waitroom_proxy.adapters.once_ids import OnceIds, check_once
from waitroom_proxy.domain.policy import ROOM_NAME_RE
from waitroom_proxy.domain.ratelimit import WindowTable

if TYPE_CHECKING:
    from waitroom_proxy.adapters.memory_room import MemoryRoom

__all__ = ["MemoryMetaMixin"]


class MemoryMetaMixin:
    """``get_meta``, ``set_meta``, ``init_meta``, ``hit`` and ``once`` of ``MemoryStore``."""

    _rooms: dict[str, MemoryRoom]
    _hits: WindowTable
    _once: OnceIds

    def _now(self) -> int:
        raise NotImplementedError

    def _room(self, room: str) -> MemoryRoom:
        raise NotImplementedError

    async def get_meta(self, room: str) -> dict[str, str]:
        """See ``waitroom_proxy.ports.Store.get_meta``."""
        state = self._rooms.get(room)
        return dict(state.meta) if state is not None else {}

    async def set_meta(self, room: str, values: dict[str, str]) -> None:
        """See ``waitroom_proxy.ports.Store.set_meta``."""
        meta = self._room(room).meta
        for key, value in values.items():
            if value == "":
                meta.pop(key, None)
            else:
                meta[key] = value

    async def init_meta(self, room: str, key: str, value: str) -> str:
        """See ``waitroom_proxy.ports.Store.init_meta``."""
        if not value:
            raise ValueError("init_meta needs a non-empty value")
        return self._room(room).meta.setdefault(key, value)

    async def hit(self, client: str, limit: int, window_ms: int) -> int:
        """See ``waitroom_proxy.ports.Store.hit``."""
        return self._hits.hit(client, self._now(), limit, window_ms)

    async def once(self, room: str, key: str, ttl_ms: int) -> bool:
        """See ``waitroom_proxy.ports.Store.once``."""
        if not ROOM_NAME_RE.fullmatch(room):
            raise ValueError(f"invalid room name: {room!r}")
        check_once(key, ttl_ms)
        return self._once.take(room, key, self._now(), ttl_ms)
