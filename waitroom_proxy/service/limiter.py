"""The per-client rate limit on enqueue and heartbeat requests: a guard, not a gate."""

from __future__ import annotations

import contextlib

from waitroom_proxy.domain.ratelimit import client_key
from waitroom_proxy.errors import StoreError
from waitroom_proxy.service.guarded import HIT_BREAKER, GuardedStore

RATE_LIMIT_PROBE = "breaker-probe"
"""The client name of the rate limit's background probe (not an address: no visitor has it)."""
WINDOW_MS = 60_000


class ClientLimit:
    """``limit`` requests per client per minute (0: off); counted in the store."""

    def __init__(self, store: GuardedStore, limit: int) -> None:
        self.store = store
        self.limit = limit

    async def wait(self, client_ip: str | None) -> float:
        """0 to go on, else seconds to wait.

        Clients are counted per IPv4 address or IPv6 /64 (``domain.ratelimit.client_key``). A
        store failure never blocks a visitor here. While the limit's breaker is open no request
        waits on it, not even for the half-open probe (on a sharded store the request would
        then wait on two probes, this one and its room's): ``probe`` runs it in the background
        instead; on one server, the rooms' calls do.
        """
        if self.limit <= 0 or not client_ip:
            return 0.0
        if self.store.breaker_for(HIT_BREAKER).is_open:
            return 0.0
        try:
            wait_ms = await self.store.hit(client_key(client_ip), self.limit, WINDOW_MS)
        except StoreError:
            return 0.0
        return float(wait_ms) / 1000.0

    async def probe(self) -> None:
        """The limit's half-open probe, off the request path (the controller calls it)."""
        if self.store.sharded and self.limit > 0 and self.store.breaker_for(HIT_BREAKER).is_open:
            with contextlib.suppress(StoreError):
                await self.store.hit(RATE_LIMIT_PROBE, self.limit, WINDOW_MS)
