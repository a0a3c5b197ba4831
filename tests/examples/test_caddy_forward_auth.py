"""``examples/caddy/Caddyfile`` run by real Caddy, in front of a real origin, with
waitroom-proxy in forward-auth mode on real Redis: the same journey, revocation and crafted
requests as the nginx config (Caddy keeps no cache of the decisions: a revocation takes effect
on the next request)."""

from __future__ import annotations

from tests.examples.test_nginx_forward_auth import crafted, journey, renewal, revocation
from waitroom_proxy.adapters.redis_store import RedisStore


async def test_journey_through_shipped_caddy(redis_store: RedisStore) -> None:
    await journey(redis_store, "caddy")


async def test_revocation_through_shipped_caddy(redis_store: RedisStore) -> None:
    await revocation(redis_store, "caddy")


async def test_crafted_requests_never_reach_the_origin_through_caddy(
    redis_store: RedisStore,
) -> None:
    await crafted(redis_store, "caddy")


async def test_renewed_session_cookie_reaches_the_visitor_through_caddy(
    redis_store: RedisStore,
) -> None:
    await renewal(redis_store, "caddy")
