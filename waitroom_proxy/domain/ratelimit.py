"""Per-client sliding-window rate limit (enqueue and heartbeat requests). Pure.

A sliding-window counter: the count of the current fixed window plus the previous window's count
weighted by how much of it still overlaps the sliding window. Two integers per client, no log
of timestamps; the Redis store runs the same arithmetic in ``lua/hit.lua``.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowState:
    index: int
    """Which fixed window ``current`` counts (``now // window_ms``)."""
    current: int
    previous: int


def hit(
    state: WindowState | None, now_ms: int, limit: int, window_ms: int
) -> tuple[WindowState | None, int]:
    """One request from a client.

    Returns the new state (None when the hit was refused and nothing changed) and 0 when the
    hit is allowed, otherwise the milliseconds to wait before a retry can succeed.
    """
    idx = now_ms // window_ms
    cur, prev = 0, 0
    if state is not None:
        if state.index == idx:
            cur, prev = state.current, state.previous
        elif state.index == idx - 1:
            prev = state.current
    elapsed = now_ms - idx * window_ms
    # weighted count scaled by window_ms to stay in integers
    weighted = prev * (window_ms - elapsed) + cur * window_ms
    if weighted + window_ms > limit * window_ms:
        if cur + 1 > limit or prev == 0:
            wait = window_ms - elapsed
        else:
            # smallest elapsed' with prev*(win-elapsed') + (cur+1)*win <= limit*win
            need = window_ms - ((limit - cur - 1) * window_ms) // prev
            wait = max(1, need - elapsed)
        return None, max(1, wait)
    return WindowState(idx, cur + 1, prev), 0


def client_key(ip: str) -> str:
    """The key a client is counted under: an IPv4 address, or the /64 of an IPv6 one.

    One IPv6 subscriber gets a whole /64 (SLAAC, privacy addresses) and may use any address in
    it at will: keyed per address, one host would be 2**64 clients. IPv4-mapped IPv6 addresses
    count as their IPv4 address. Anything that is not an address (a Unix socket peer) is its
    own key.
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:100]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(addr) >> 64 << 64, 64)))
    return str(addr)


class WindowTable:
    """The window states of many clients (the in-process store's rate limiter), bounded.

    Entries are kept in the order they were last counted (an ``OrderedDict``, moved to the end
    on each counted hit), so those whose windows no longer count are always at the front and
    are dropped there: O(1) amortised per hit, never a pass over every client. Past
    ``max_clients`` live clients the least recently counted one is forgotten (it starts a
    fresh window: a relaxation only under a flood of distinct clients).
    """

    def __init__(self, max_clients: int = 100_000) -> None:
        self.max_clients = max_clients
        self._states: OrderedDict[str, WindowState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def hit(self, client: str, now_ms: int, limit: int, window_ms: int) -> int:
        """Count one hit of ``client`` (see ``hit``): 0, or the ms to wait."""
        states = self._states
        new, wait = hit(states.get(client), now_ms, limit, window_ms)
        if new is not None:
            states[client] = new
            states.move_to_end(client)
        oldest = now_ms // window_ms - 1
        while states:
            key, first = next(iter(states.items()))
            if first.index >= oldest and len(states) <= self.max_clients:
                break
            del states[key]
        return wait
