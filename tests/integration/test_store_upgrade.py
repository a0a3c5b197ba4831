"""An upgrade from version 0.1 with both versions' replicas on one real Redis.

Version 0.1 kept each waiter's last heartbeat in a sorted set (``wr:{room}:hb``); this version
keeps touches in a hash (``wr:{room}:seen``) and never creates the old set. During a rolling
upgrade both run side by side: a waiter may be queued by one version and polled through the
other, and either version's controller may tick. No place may be lost for it: a touch through
this version refreshes the old set where it exists (so a 0.1 tick does not abandon the waiter),
and this version's tick counts a touch recorded only in the old set (so it does not either).
The 0.1 scripts run here as they shipped (``tests/fixtures/lua_0_1``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from waitroom_proxy.adapters.redis_store import RedisStore, room_keys
from waitroom_proxy.ports import PlaceStatus, RoomLimits

pytestmark = pytest.mark.redis

OLD = Path(__file__).resolve().parent.parent / "fixtures" / "lua_0_1"
ROOM = "upgrade"
A_MS = 10_000
LIMITS = RoomLimits(capacity=1, abandon_after_ms=A_MS, claim_timeout_ms=5_000)
TTL = 86_400_000


class OldReplica:
    """A version 0.1 replica's store calls: its own scripts, its own key list."""

    def __init__(self, raw: redis.asyncio.Redis, clock: RedisStore) -> None:
        self.raw = raw
        self.clock = clock  # the new store whose test clock offset this replica shares
        self.k = room_keys(ROOM)
        self.src = {n: (OLD / f"{n}.lua").read_text() for n in ("arrive", "heartbeat", "tick")}

    async def _eval(self, name: str, keys: list[str], args: list[Any]) -> Any:
        offset = self.clock._clock_offset_ms
        return await self.raw.eval(self.src[name], len(keys), *keys, offset, *args)

    async def arrive(self, place_id: str) -> list[int]:
        k = self.k
        keys = [k.queue, k.hb, k.promoted, k.active, k.counters, k.spent]
        return list(
            await self._eval("arrive", keys, [place_id, 1, 0, 60_000, 10**6, 0, 0, "", TTL])
        )

    async def heartbeat(self, place_id: str) -> int:
        k = self.k
        keys = [k.queue, k.hb, k.promoted, k.active, k.spent]
        return int((await self._eval("heartbeat", keys, [place_id, TTL]))[0])

    async def tick(self) -> list[list[str]]:
        k = self.k
        keys = [k.queue, k.hb, k.promoted, k.active, k.counters, k.revoked, k.revoked_exp,
                k.meta, k.spent]  # fmt: skip
        args = [1, 0, A_MS, 5_000, 1, 0, 1000, TTL, 3_900_000]
        return [list(part) for part in await self._eval("tick", keys, args)]


async def test_no_place_is_lost_with_both_versions_side_by_side(redis_server: Any) -> None:
    redis_server.flush()
    new = RedisStore(redis_server.url, timeout=2.0)
    raw = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    old = OldReplica(raw, new)
    try:
        assert (await new.arrive(ROOM, "holder", LIMITS)).status is PlaceStatus.ACTIVE
        await old.arrive("old-then-new")  # queued by 0.1 (the old set only), polled here
        await old.arrive("old-only")  # queued and polled by 0.1 only
        await old.arrive("mixed")  # queued by 0.1, polled through both
        await old.arrive("silent-old")
        assert (await new.arrive(ROOM, "new-only", LIMITS)).status is PlaceStatus.WAITING
        assert (await new.arrive(ROOM, "silent-new", LIMITS)).status is PlaceStatus.WAITING
        abandoned: list[str] = []
        for step in range(60):  # 30 s: three times abandon_after
            new._advance_clock_for_tests(500)
            if step % 6 == 5:  # polls every 3 s
                assert await old.heartbeat("old-only") == 1
                for place_id in ("old-then-new", "new-only"):
                    view = await new.heartbeat(ROOM, place_id, A_MS)
                    assert view.status is PlaceStatus.WAITING, (place_id, view)
                if step % 12 == 5:
                    assert await old.heartbeat("mixed") == 1
                else:
                    assert (await new.heartbeat(ROOM, "mixed", A_MS)).status.value == "waiting"
            # Both versions' controllers tick (capacity is held: nobody is promoted).
            if step % 2:
                abandoned += (await old.tick())[3]
            else:
                abandoned += (await new.tick(ROOM, LIMITS)).abandoned
        assert sorted(abandoned) == ["silent-new", "silent-old"]
        assert (await new.stats(ROOM)).queue_length == 4
        for place_id in ("old-then-new", "old-only", "mixed", "new-only"):
            assert (await new.heartbeat(ROOM, place_id, A_MS)).status is PlaceStatus.WAITING
        # This version never adds to the old set: only a 0.1 replica's calls do.
        assert await raw.zscore(room_keys(ROOM).hb, "new-only") is None
    finally:
        await raw.aclose()
        await new.close()
