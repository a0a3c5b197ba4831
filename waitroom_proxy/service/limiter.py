"""The per-client rate limit on enqueue and heartbeat requests: a guard, not a gate."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from waitroom_proxy.domain.ratelimit import WindowTable, client_key
from waitroom_proxy.errors import StoreError
from waitroom_proxy.service.guarded import HIT_BREAKER, GuardedStore

RATE_LIMIT_PROBE = "breaker-probe"
"""The client name of the rate limit's background probe (not an address: no visitor has it)."""
WINDOW_MS = 60_000


class ClientLimit:
    """``limit`` requests per client per minute (0: off); counted by this replica, and
    enqueues in the store as well."""

    def __init__(
        self, store: GuardedStore, limit: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.limit = limit
        self.clock = clock
        self._hits_here = WindowTable()
        """This replica's count of every client's enqueues and heartbeats."""

    async def wait(self, client_ip: str | None, *, shared: bool = True) -> float:
        """0 to go on, else seconds to wait.

        Clients are counted per IPv4 address or IPv6 /64 (``domain.ratelimit.client_key``).
        Every request is counted by this replica; an enqueue (``shared``) is also counted in the
        store, where every replica's enqueues add up. A heartbeat is counted here only: most
        polls cost the store nothing (``domain.pacing``), and one store call to count each of
        them would cost the room's store core about as much as the heartbeats themselves
        (README, "One room's ceiling"); a client spreading heartbeats over R replicas gets R
        times the limit, each poll still costing the store at most one touch.

        A store failure never blocks a visitor here. While the limit's breaker is open no request
        waits on it, not even for the half-open probe (on a sharded store the request would
        then wait on two probes, this one and its room's): ``probe`` runs it in the background
        instead; on one server, the rooms' calls do.
        """
        if self.limit <= 0 or not client_ip:
            return 0.0
        key = client_key(client_ip)
        here = self._hits_here.hit(key, int(self.clock() * 1000), self.limit, WINDOW_MS)
        if here or not shared:
            return here / 1000.0
        if self.store.breaker_for(HIT_BREAKER).is_open:
            return 0.0
        try:
            wait_ms = await self.store.hit(key, self.limit, WINDOW_MS)
        except StoreError:
            return 0.0
        return float(wait_ms) / 1000.0

    async def probe(self) -> None:
        """The limit's half-open probe, off the request path (the controller calls it)."""
        if self.store.sharded and self.limit > 0 and self.store.breaker_for(HIT_BREAKER).is_open:
            with contextlib.suppress(StoreError):
                await self.store.hit(RATE_LIMIT_PROBE, self.limit, WINDOW_MS)
