"""Names shared by the ``Store`` contract tests: one room, the statuses, limits and a queue filler."""

from __future__ import annotations

from waitroom_proxy.ports import PlaceStatus, RoomLimits, Store

R = "room-1"

WAITING, PROMOTED, ACTIVE, UNKNOWN, FULL, SPENT = (
    PlaceStatus.WAITING,
    PlaceStatus.PROMOTED,
    PlaceStatus.ACTIVE,
    PlaceStatus.UNKNOWN,
    PlaceStatus.FULL,
    PlaceStatus.SPENT,
)

# Durations of seconds: the Redis variants also see real time pass between calls.
LIM = RoomLimits(
    capacity=2, abandon_after_ms=10_000, claim_timeout_ms=10_000, session_ttl_ms=10_000
)

QUEUE_ONLY = RoomLimits(
    capacity=2,
    abandon_after_ms=10_000,
    claim_timeout_ms=10_000,
    session_ttl_ms=10_000,
    direct_admit=False,
)


def limits(**kw: object) -> RoomLimits:
    base: dict[str, object] = {
        "capacity": 2,
        "abandon_after_ms": 10_000,
        "claim_timeout_ms": 10_000,
        "session_ttl_ms": 10_000,
    }
    base.update(kw)
    return RoomLimits(**base)  # type: ignore[arg-type]


async def fill(store: Store, ids: list[str], lim: RoomLimits = QUEUE_ONLY) -> None:
    for place_id in ids:
        view = await store.arrive(R, place_id, lim)
        assert view.status is WAITING, (place_id, view)
