"""The Redis store's recovery calls, mixed into ``RedisStore``: the state a replica writes back
after the store lost it (``restore``), and live sessions re-asserting themselves
(``reassert``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from waitroom_proxy.adapters.redis_keys import MAX_SCORE, SPENT_TTL_MS, key_ttl, room_keys
from waitroom_proxy.ports import Reasserted

__all__ = ["RedisRecoveryMixin"]


class RedisRecoveryMixin:
    """``restore`` and ``reassert`` of ``RedisStore`` (its script runner and clock offset)."""

    _clock_offset_ms: int

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        raise NotImplementedError

    async def restore(
        self,
        room: str,
        place_ids: Sequence[str],
        session_ttl_ms: int,
        min_seq: int = 0,
        spent_ids: Sequence[str] = (),
    ) -> int:
        """See ``waitroom_proxy.ports.Store.restore``."""
        k = room_keys(room)
        reply = await self._run(
            "restore",
            (k.active, k.queue, k.promoted, k.counters, k.seen, k.spent, k.hb),
            (
                self._clock_offset_ms,
                session_ttl_ms,
                key_ttl(session_ttl_ms, SPENT_TTL_MS),
                min(max(0, min_seq), MAX_SCORE),
                len(place_ids),
                *place_ids,
                *spent_ids,
            ),
        )
        return int(reply)

    async def reassert(
        self,
        room: str,
        leases: Sequence[tuple[str, int]],
        ended: Sequence[str] = (),
        revoke_for_ms: int = 0,
    ) -> Reasserted:
        """See ``waitroom_proxy.ports.Store.reassert``."""
        if not leases and not ended:
            return Reasserted()
        k = room_keys(room)
        flat = [x for pid, ms in leases for x in (pid, max(0, int(ms)))]
        longest = max((ms for _, ms in leases), default=0)
        reply = await self._run(
            "reassert",
            (k.active, k.promoted, k.queue, k.seen, k.spent, k.revoked, k.revoked_exp),
            (
                self._clock_offset_ms,
                key_ttl(longest, revoke_for_ms, SPENT_TTL_MS),
                revoke_for_ms,
                len(leases),
                *flat,
                *ended,
            ),
        )
        kept, readded, refused, dropped = (int(x) for x in reply)
        return Reasserted(kept=kept, readded=readded, refused=refused, dropped=dropped)
