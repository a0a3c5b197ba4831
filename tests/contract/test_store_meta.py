"""The ``Store`` contract, run against every adapter: room meta, stats, independent rooms and
the client rate window (``hit``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.contract.conftest import StoreEnv
from tests.contract.helpers import ACTIVE, WAITING, R, fill, limits
from waitroom_proxy.ports import RoomStats

# -- meta and stats ------------------------------------------------------------------------------


async def test_meta(store_env: StoreEnv) -> None:
    s = store_env.store
    assert await s.get_meta(R) == {}
    await s.set_meta(R, {"paused": "1", "overrides": '{"capacity": 5}'})
    assert await s.get_meta(R) == {"paused": "1", "overrides": '{"capacity": 5}'}
    await s.set_meta(R, {"paused": "", "other": "x"})
    assert await s.get_meta(R) == {"overrides": '{"capacity": 5}', "other": "x"}
    await s.set_meta(R, {})
    await s.set_meta(R, {"overrides": "", "other": ""})
    assert await s.get_meta(R) == {}
    assert await s.get_meta("other-room") == {}


async def test_init_meta_writes_only_if_absent(store_env: StoreEnv) -> None:
    s = store_env.store
    assert await s.init_meta(R, "incarnation", "first") == "first"
    assert await s.init_meta(R, "incarnation", "second") == "first"
    assert await s.get_meta(R) == {"incarnation": "first"}
    await s.set_meta(R, {"paused": "1"})
    assert await s.init_meta(R, "incarnation", "third") == "first"
    assert await s.get_meta(R) == {"incarnation": "first", "paused": "1"}
    await s.set_meta(R, {"incarnation": ""})  # gone (a store that lost its state)
    assert await s.init_meta(R, "incarnation", "fourth") == "fourth"
    with pytest.raises(ValueError):
        await s.init_meta(R, "incarnation", "")


async def test_init_meta_racers_agree_on_one_value(store_env: StoreEnv) -> None:
    s = store_env.store
    answers = await asyncio.gather(*(s.init_meta(R, "incarnation", f"v{i}") for i in range(20)))
    assert len(set(answers)) == 1, answers
    assert (await s.get_meta(R))["incarnation"] == answers[0]


async def test_stats(store_env: StoreEnv) -> None:
    s = store_env.store
    empty = await s.stats(R)
    assert isinstance(empty, RoomStats)
    assert (empty.queue_length, empty.active, empty.promoted, empty.admitted_total) == (0, 0, 0, 0)
    lim = limits(capacity=2)
    await s.arrive(R, "a", lim)
    await fill(s, ["b", "c", "d"])
    await s.tick(R, lim)
    stats = await s.stats(R)
    assert (stats.queue_length, stats.active, stats.promoted, stats.admitted_total) == (2, 1, 1, 2)
    if store_env.kind != "memory":
        assert abs(stats.now_ms - time.time() * 1000) < 5_000
    store_env.advance(7_000)
    assert (await s.stats(R)).now_ms - stats.now_ms >= 7_000


async def test_rooms_are_independent(store_env: StoreEnv) -> None:
    s = store_env.store
    lim = limits(capacity=1)
    assert (await s.arrive("r-a", "x", lim)).status is ACTIVE
    assert (await s.arrive("r-b", "x", lim)).status is ACTIVE
    assert (await s.arrive("r-b", "y", lim)).status is WAITING
    assert (await s.stats("r-a")).queue_length == 0


async def test_client_rate_limit_hits(store_env: StoreEnv) -> None:
    """``hit``: the same sliding-window answers from every store."""
    store = store_env.store
    client = "198.51.100.7"
    for _ in range(3):
        assert await store.hit(client, 3, 60_000) == 0
    wait = await store.hit(client, 3, 60_000)
    assert 0 < wait <= 60_000
    assert await store.hit(client + "x", 3, 60_000) == 0, "clients are counted apart"
