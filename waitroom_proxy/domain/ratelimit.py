"""Per-client sliding-window rate limit (enqueue and heartbeat requests). Pure.

A sliding-window counter: the count of the current fixed window plus the previous window's count
weighted by how much of it still overlaps the sliding window. Two integers per client, no log
of timestamps; the Redis store runs the same arithmetic in ``lua/hit.lua``.
"""

from __future__ import annotations

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
