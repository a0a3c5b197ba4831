"""The scheduled sale's store side in process memory (``ports.DrawStore``), mixed into
``MemoryStore``: the same semantics as ``lua/draw_*.lua``, checked by the same contract tests.
Each call runs without awaiting in the middle, so it is atomic on one event loop."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from waitroom_proxy.ports import DrawPhase, DrawState, PrequeueEntry

if TYPE_CHECKING:
    from waitroom_proxy.adapters.memory_room import MemoryRoom


@dataclass(slots=True)
class _Draw:
    prequeue: OrderedDict[str, int] = field(default_factory=OrderedDict)
    """Place id -> pre-queue arrival number, in arrival order."""
    state: dict[str, str] = field(default_factory=dict)
    audit: str | None = None


def phase_at(now: int, bounds: tuple[int, int, int]) -> DrawPhase:
    """The phase at ``now`` (ms) for ``bounds`` (ms, 0 = absent), as ``draw_step.lua``."""
    pre, start, end = bounds
    if end > 0 and now >= end:
        return DrawPhase.ENDED
    if start == 0 or now >= start:
        return DrawPhase.OPEN
    if pre > 0 and now >= pre:
        return DrawPhase.PREQUEUE
    return DrawPhase.IDLE


class MemoryDrawMixin:
    """``ports.DrawStore`` for ``MemoryStore`` (its ``_room`` and ``_now`` helpers)."""

    _draws: dict[str, _Draw]

    def _now(self) -> int:
        raise NotImplementedError

    def _room(self, room: str) -> MemoryRoom:
        raise NotImplementedError

    def _draw(self, room: str) -> _Draw:
        self._room(room)  # the same refusal of a bad room name
        draw = self._draws.get(room)
        if draw is None:
            draw = self._draws[room] = _Draw()
        return draw

    def _enqueue(self, room: str, ids: Sequence[str], now: int) -> None:
        """Put ``ids`` in the queue behind everyone, in this order (the release); a place
        tombstoned meanwhile (it left during the pre-queue) keeps its number but no place."""
        state = self._room(room)
        for place_id in ids:
            if place_id in state.spent:
                state.seq += 1
                continue
            state.seq += 1
            state.enqueue(place_id, state.seq, now)

    async def draw_step(
        self,
        room: str,
        bounds: tuple[int, int, int],
        place_id: str = "",
        max_length: int = 1_000_000,
    ) -> DrawState:
        """See ``waitroom_proxy.ports.DrawStore.draw_step``."""
        now = self._now()
        draw = self._draw(room)
        phase = phase_at(now, bounds)
        commitment = draw.state.get("commitment", "")
        entry = PrequeueEntry.NONE
        if phase is DrawPhase.PREQUEUE and place_id:
            if not commitment:
                entry = PrequeueEntry.UNCOMMITTED
            elif place_id in draw.prequeue:
                entry = PrequeueEntry.IN
            elif len(draw.prequeue) >= max_length:
                entry = PrequeueEntry.FULL
            else:
                n = int(draw.state.get("pseq", "0")) + 1
                draw.state["pseq"] = str(n)
                draw.prequeue[place_id] = n
                entry = PrequeueEntry.IN
        return DrawState(
            phase=phase,
            now_ms=now,
            commitment=commitment,
            released="released" in draw.state,
            ended="ended" in draw.state,
            prequeue_length=len(draw.prequeue),
            entry=entry,
        )

    async def draw_commit(self, room: str, seed: str, commitment: str, committed_at: str) -> bool:
        """See ``waitroom_proxy.ports.DrawStore.draw_commit``."""
        draw = self._draw(room)
        if "commitment" in draw.state:
            return False
        draw.state.update(seed=seed, commitment=commitment, committed_at=committed_at)
        return True

    async def draw_entries(self, room: str) -> tuple[list[str], dict[str, str]]:
        """See ``waitroom_proxy.ports.DrawStore.draw_entries``."""
        draw = self._draw(room)
        return list(draw.prequeue), dict(draw.state)

    async def draw_release(
        self, room: str, start_ms: int, order: Sequence[str], audit_json: str
    ) -> int:
        """See ``waitroom_proxy.ports.DrawStore.draw_release``."""
        now = self._now()
        draw = self._draw(room)
        if now < start_ms:
            return -2
        if "released" in draw.state:
            return -1
        if len(order) != len(draw.prequeue) or any(pid not in draw.prequeue for pid in order):
            return -3
        self._enqueue(room, order, now)
        draw.state.update(released="1", revealed_at=str(now))
        draw.audit = audit_json
        draw.prequeue.clear()
        return len(order)

    async def draw_mark(self, room: str, key: str, value: str) -> bool:
        """See ``waitroom_proxy.ports.DrawStore.draw_mark``."""
        draw = self._draw(room)
        if key in draw.state:
            return False
        draw.state[key] = value
        return True

    async def draw_audit(self, room: str) -> str | None:
        """See ``waitroom_proxy.ports.DrawStore.draw_audit``."""
        return self._draw(room).audit

    async def draw_reset(self, room: str) -> int:
        """See ``waitroom_proxy.ports.DrawStore.draw_reset``."""
        draw = self._draw(room)
        ids = list(draw.prequeue)
        self._enqueue(room, ids, self._now())
        self._draws.pop(room, None)
        return len(ids)
