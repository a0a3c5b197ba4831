"""The scheduled sale's store side on Redis (``ports.DrawStore``), mixed into ``RedisStore``.

Keys, with the room's hash tag like every other piece (``redis_store``):

============  ======  ====================================================================
piece         type    content
============  ======  ====================================================================
``prequeue``  zset    place id -> pre-queue arrival number (tickets without a position)
``draw``      hash    ``commitment``, ``seed`` (secret until the release), ``committed_at``,
                      ``released``, ``revealed_at`` (ms), ``ended``, ``pseq``
``audit``     string  the audit document served at ``{prefix}/audit`` once released
============  ======  ====================================================================

A pre-queue entry costs one ``prequeue`` member; the audit document about 70 bytes per entry
(its hashed id twice, in JSON). All three keys have the room's key TTL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from waitroom_proxy.ports import DrawPhase, DrawState, PrequeueEntry

DRAW_SCRIPTS = ("draw_step", "draw_commit", "draw_release", "draw_mark", "draw_reset")
DRAW_TTL_MS = 30 * 86_400_000
"""Key TTL of the draw's keys: a pre-queue may last days; the audit stays a month."""

_PHASES = (DrawPhase.IDLE, DrawPhase.PREQUEUE, DrawPhase.OPEN, DrawPhase.ENDED)
_ENTRIES = (
    PrequeueEntry.NONE,
    PrequeueEntry.IN,
    PrequeueEntry.FULL,
    PrequeueEntry.UNCOMMITTED,
)


class DrawKeys(NamedTuple):
    prequeue: str
    draw: str
    audit: str


def draw_keys(base: str) -> DrawKeys:
    """The draw's keys of the room whose key prefix is ``base`` (``wr:{room}:``)."""
    return DrawKeys(*(base + piece for piece in DrawKeys._fields))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisDrawMixin:
    """``ports.DrawStore`` on the scripts ``lua/draw_*.lua``; needs ``RedisStore``'s helpers."""

    _clock_offset_ms: int

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        raise NotImplementedError

    async def _plain(self, op: str, *args: Any) -> Any:
        raise NotImplementedError

    def _keys_of(self, room: str) -> tuple[DrawKeys, str, str, str, str]:
        """(draw keys, queue, heartbeats, counters, tombstones) of ``room``."""
        raise NotImplementedError

    async def draw_step(
        self,
        room: str,
        bounds: tuple[int, int, int],
        place_id: str = "",
        max_length: int = 1_000_000,
    ) -> DrawState:
        """See ``waitroom_proxy.ports.DrawStore.draw_step``."""
        d, *_ = self._keys_of(room)
        reply = await self._run(
            "draw_step",
            (d.prequeue, d.draw),
            (self._clock_offset_ms, *bounds, place_id, max_length, DRAW_TTL_MS),
        )
        phase, now, commitment, released, ended, length, entry = reply
        return DrawState(
            phase=_PHASES[int(phase)],
            now_ms=int(now),
            commitment=_text(commitment),
            released=int(released) == 1,
            ended=int(ended) == 1,
            prequeue_length=int(length),
            entry=_ENTRIES[int(entry)],
        )

    async def draw_commit(self, room: str, seed: str, commitment: str, committed_at: str) -> bool:
        """See ``waitroom_proxy.ports.DrawStore.draw_commit``."""
        d, *_ = self._keys_of(room)
        reply = await self._run(
            "draw_commit", (d.draw,), (seed, commitment, committed_at, DRAW_TTL_MS)
        )
        return int(reply) == 1

    async def draw_entries(self, room: str) -> tuple[list[str], dict[str, str]]:
        """See ``waitroom_proxy.ports.DrawStore.draw_entries``."""
        d, *_ = self._keys_of(room)
        ids = await self._plain("zrange", d.prequeue, 0, -1)
        state = await self._plain("hgetall", d.draw)
        return [_text(x) for x in ids], {_text(k): _text(v) for k, v in state.items()}

    async def draw_release(
        self, room: str, start_ms: int, order: Sequence[str], audit_json: str
    ) -> int:
        """See ``waitroom_proxy.ports.DrawStore.draw_release``."""
        d, queue, hb, counters, spent = self._keys_of(room)
        reply = await self._run(
            "draw_release",
            (d.prequeue, d.draw, queue, hb, counters, d.audit, spent),
            (self._clock_offset_ms, start_ms, DRAW_TTL_MS, audit_json, len(order), *order),
        )
        return int(reply)

    async def draw_mark(self, room: str, key: str, value: str) -> bool:
        """See ``waitroom_proxy.ports.DrawStore.draw_mark``."""
        d, *_ = self._keys_of(room)
        return int(await self._run("draw_mark", (d.draw,), (key, value, DRAW_TTL_MS))) == 1

    async def draw_audit(self, room: str) -> str | None:
        """See ``waitroom_proxy.ports.DrawStore.draw_audit``."""
        d, *_ = self._keys_of(room)
        value = await self._plain("get", d.audit)
        return None if value is None else _text(value)

    async def draw_reset(self, room: str) -> int:
        """See ``waitroom_proxy.ports.DrawStore.draw_reset``."""
        d, queue, hb, counters, spent = self._keys_of(room)
        reply = await self._run(
            "draw_reset",
            (d.prequeue, d.draw, queue, hb, counters, d.audit, spent),
            (self._clock_offset_ms, DRAW_TTL_MS),
        )
        return int(reply)
