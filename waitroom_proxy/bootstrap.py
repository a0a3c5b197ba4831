"""The composition root: store, publisher and engine, built from settings.

Imported only by the entry points above it (``waitroom_proxy.server``, the host-app factory
``waitroom_proxy.WaitroomMiddleware``, tests and benchmarks): nothing it builds imports it back.
Real adapters by default (the Redis store or the in-process one, NATS or log events); tests
pass their own store, publisher and clock.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from waitroom_proxy.config import Settings, config_warnings
from waitroom_proxy.domain.pow import PowSigner
from waitroom_proxy.domain.tokens import SessionSigner, TicketSigner
from waitroom_proxy.metrics import Metrics
from waitroom_proxy.ports import EventPublisher, Store
from waitroom_proxy.service import Engine, Gatekeeper

log = logging.getLogger(__name__)


def _secrets(settings: Settings, *, warn: bool = True) -> list[str]:
    if settings.secret:
        return [settings.secret, *settings.previous_secrets]
    if warn:
        for warning in config_warnings(settings):
            if warning.startswith("secret "):
                log.warning("%s", warning)
    return [secrets.token_urlsafe(32), *settings.previous_secrets]


def build_store(settings: Settings) -> Store:
    if settings.store_url:
        from waitroom_proxy.adapters.redis_store import RedisStore

        return RedisStore.from_url(settings.store_url, timeout=settings.store_timeout)
    from waitroom_proxy.adapters.memory_store import MemoryStore

    return MemoryStore()


def build_publisher(settings: Settings, replica_id: str) -> EventPublisher:
    if settings.nats_url:
        from waitroom_proxy.adapters.nats_events import NatsPublisher

        return NatsPublisher(
            settings.nats_url,
            source=f"waitroom-proxy/{replica_id}",
            stream_replicas=settings.nats_stream_replicas,
        )
    from waitroom_proxy.adapters.log_events import LogPublisher

    return LogPublisher()


def build_engine(
    settings: Settings,
    *,
    store: Store | None = None,
    publisher: EventPublisher | None = None,
    clock: Callable[[], float] = time.time,
    registry: CollectorRegistry | None = None,
    controller_interval: float = 0.5,
    warn: bool = True,
) -> Engine:
    """Build the engine; pass ``store``/``publisher``/``clock`` to replace real adapters.

    ``warn=False``: the caller (``serve``) has already logged ``config_warnings``.
    """
    replica_id = os.environ.get("HOSTNAME") or secrets.token_hex(4)
    all_secrets = _secrets(settings, warn=warn)
    private_pem = None
    if settings.signing_key_file:
        with open(settings.signing_key_file, "rb") as fh:
            private_pem = fh.read()
    metrics = Metrics(registry)
    pub = publisher if publisher is not None else build_publisher(settings, replica_id)
    counters = getattr(pub, "counters", None)
    if callable(counters):
        metrics.watch_publisher(counters)
    gate = Gatekeeper(
        settings.rooms,
        store=store if store is not None else build_store(settings),
        publisher=pub,
        tickets=TicketSigner(all_secrets),
        sessions=SessionSigner(all_secrets, private_key_pem=private_pem, issuer=settings.issuer),
        metrics=metrics,
        clock=clock,
        replica_id=replica_id,
        client_rate_limit=settings.client_rate_limit,
        proofs=PowSigner(all_secrets),
    )
    return Engine(settings, gate, controller_interval=controller_interval)
