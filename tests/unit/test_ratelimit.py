"""The sliding-window rule behind the per-client rate limit."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from waitroom_proxy.domain.ratelimit import WindowState, hit

WIN = 60_000


def test_allows_up_to_limit_then_waits() -> None:
    state: WindowState | None = None
    for _ in range(5):
        state, wait = hit(state, 1_000, 5, WIN)
        assert wait == 0
    refused, wait = hit(state, 1_000, 5, WIN)
    assert refused is None and wait == WIN - 1_000


def test_previous_window_weighs_in_and_decays() -> None:
    state: WindowState | None = None
    for _ in range(10):
        state, _ = hit(state, 59_000, 10, WIN)
    # Just after the window turns, the previous 10 still count almost fully.
    refused, wait = hit(state, 61_000, 10, WIN)
    assert refused is None and wait > 0
    # After the advertised wait, a hit succeeds.
    later, wait2 = hit(state, 61_000 + wait, 10, WIN)
    assert later is not None and wait2 == 0


@given(st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=200))
@settings(max_examples=200)
def test_never_more_than_limit_in_any_window(gaps: list[int]) -> None:
    """Accepted hits in any sliding window of WIN ms never exceed 2 x limit (the counter's
    known worst case) and never exceed limit within one fixed window."""
    limit = 7
    state: WindowState | None = None
    now = 0
    accepted: list[int] = []
    for gap in gaps:
        now += gap
        new, wait = hit(state, now, limit, WIN)
        if wait == 0:
            assert new is not None
            state = new
            accepted.append(now)
    for t in accepted:
        assert sum(1 for u in accepted if t // WIN == u // WIN) <= limit
        assert sum(1 for u in accepted if t <= u < t + WIN) <= 2 * limit


# -- who counts as one client, and what it costs to count many (issue 11, item 9) -----------


def test_clients_are_keyed_per_ipv4_address_and_per_ipv6_64() -> None:
    from waitroom_proxy.domain.ratelimit import client_key

    assert client_key("198.51.100.7") == "198.51.100.7"
    assert client_key("198.51.100.8") != client_key("198.51.100.7")
    one_host = [
        "2001:db8:1:2::1",
        "2001:db8:1:2:ffff:ffff:ffff:ffff",
        "2001:db8:1:2:abcd:1234:5678:9abc",
        "2001:0db8:0001:0002:0000:0000:0000:0001",
    ]
    assert {client_key(a) for a in one_host} == {"2001:db8:1:2::/64"}
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:198.51.100.7") == "198.51.100.7"
    assert client_key("fe80::1%eth0") == client_key("fe80::2")
    assert client_key("not an address") == "not an address"


async def test_memory_store_counts_an_ipv6_64_as_one_client() -> None:
    """Through the store's ``hit`` as the gatekeeper calls it: a /64 shares one limit."""
    from waitroom_proxy.adapters.memory_store import MemoryStore
    from waitroom_proxy.domain.ratelimit import client_key

    store = MemoryStore(clock=lambda: 1_000.0)
    waits = [await store.hit(client_key(f"2001:db8:7:7::{i:x}"), 5, WIN) for i in range(1, 9)]
    assert waits[:5] == [0] * 5 and all(w > 0 for w in waits[5:])


async def test_in_process_limiter_never_rebuilds_its_table_per_hit() -> None:
    """Above 100k clients the old limiter rebuilt its whole dict on every hit (~15 ms each, and
    a fresh 100k-entry dict allocated each time). Counting is O(1) amortised: 200 more hits past
    the bound allocate almost nothing (measured as memory, which load does not skew)."""
    import tracemalloc

    from waitroom_proxy.adapters.memory_store import MemoryStore

    now = [1_000.0]
    store = MemoryStore(clock=lambda: now[0])
    for i in range(100_050):
        await store.hit(f"c{i}", 10, WIN)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for i in range(200):
            await store.hit(f"new{i}", 10, WIN)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak} bytes allocated for 200 hits"
    # Windows that no longer count are forgotten as time moves on, oldest first.
    now[0] += 3 * WIN / 1000
    await store.hit("late", 10, WIN)
    assert len(store._hits) == 1


def test_window_table_bounds_live_clients() -> None:
    from waitroom_proxy.domain.ratelimit import WindowTable

    table = WindowTable(max_clients=1_000)
    for i in range(5_000):
        assert table.hit(f"c{i}", 1_000, 3, WIN) == 0
    assert len(table) == 1_000
    assert table.hit("c4999", 1_000, 3, WIN) == 0  # the most recent ones are kept
