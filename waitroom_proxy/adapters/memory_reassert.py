"""``MemoryStore.reassert``: live sessions re-assert themselves, recent ends are applied again.

Kept apart from ``memory_store`` so that module stays small; the rules are those of
``lua/reassert.lua`` (``waitroom_proxy.ports.Store.reassert``), and the contract suite checks
both the same way.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence

from waitroom_proxy.adapters.memory_room import MemoryRoom
from waitroom_proxy.ports import Reasserted


def reassert_room(
    state: MemoryRoom,
    now: int,
    leases: Sequence[tuple[str, int]],
    ended: Sequence[str],
    revoke_for_ms: int,
) -> Reasserted:
    """Apply one ``reassert`` call to a room (atomic: nothing here awaits)."""
    revoked = {place_id for _, place_id, _ in state.revoked}
    dropped = 0
    for place_id in ended:
        if state.active.pop(place_id, None) is not None:
            dropped += 1
        state.promoted.pop(place_id, None)
        state.remove_waiter(place_id)
        state.spend(place_id, now)
        if revoke_for_ms > 0 and place_id not in revoked:
            insort(state.revoked, (now, place_id, now + revoke_for_ms))
            revoked.add(place_id)
    kept = readded = refused = 0
    for place_id, lease_ms in leases:
        deadline = now + max(0, int(lease_ms))
        current = state.active.get(place_id)
        if current is not None:
            kept += 1
            if current < deadline:
                state.set_deadline(place_id, deadline)
        elif place_id in revoked:
            refused += 1
        elif place_id not in state.promoted:
            state.remove_waiter(place_id)  # a replayed ticket of it slipped into the queue
            state.set_deadline(place_id, deadline)
            state.spend(place_id, now)
            readded += 1
    return Reasserted(kept=kept, readded=readded, refused=refused, dropped=dropped)


class MemoryRecoveryMixin:
    """``restore`` and ``reassert`` of ``MemoryStore``: the state a replica writes back after a
    loss, and live sessions re-asserting themselves."""

    def _now(self) -> int:
        raise NotImplementedError

    def _room(self, room: str) -> MemoryRoom:
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
        state = self._room(room)
        state.seq = max(state.seq, min_seq)
        now = self._now()
        n = 0
        sessions = len(place_ids)
        for i, place_id in enumerate([*place_ids, *spent_ids]):
            if place_id in state.promoted:
                continue
            state.remove_waiter(place_id)  # a replayed ticket that slipped in
            if i < sessions and place_id not in state.active:
                state.set_deadline(place_id, now + session_ttl_ms)
                n += 1
            state.spend(place_id, now)
        return n

    async def reassert(
        self,
        room: str,
        leases: Sequence[tuple[str, int]],
        ended: Sequence[str] = (),
        revoke_for_ms: int = 0,
    ) -> Reasserted:
        """See ``waitroom_proxy.ports.Store.reassert`` (``memory_reassert``)."""
        if not leases and not ended:
            return Reasserted()
        return reassert_room(self._room(room), self._now(), leases, ended, revoke_for_ms)
