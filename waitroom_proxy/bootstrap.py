"""The composition root: builds the object graph from settings (DESIGN §9).

``build_engine(settings)`` wires real adapters (Redis store or the in-process store, NATS or log
events); tests pass their own store/publisher/clock. ``build_app(settings)`` is the standalone
proxy (``WaitroomMiddleware`` around an ``UpstreamProxy``); ``waitroom_proxy.serving`` serves
it (listeners, workers, the admin listener).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from prometheus_client import CollectorRegistry

from waitroom_proxy.asgi.headers import TrustedProxies
from waitroom_proxy.asgi.page import PageRenderer
from waitroom_proxy.config import Settings, config_warnings
from waitroom_proxy.domain.tokens import SessionSigner, TicketSigner
from waitroom_proxy.metrics import Metrics
from waitroom_proxy.ports import EventPublisher, Store
from waitroom_proxy.service import Gatekeeper

log = logging.getLogger(__name__)


class ClientInfo:
    """Client address and scheme, believing ``X-Forwarded-*`` only from trusted proxies."""

    def __init__(self, trusted: TrustedProxies) -> None:
        self.trusted = trusted

    def _peer(self, scope: Any) -> str | None:
        client = scope.get("client")
        return client[0] if client else None

    def client_ip(self, scope: Any) -> str | None:
        peer = self._peer(scope)
        if not self.trusted or peer not in self.trusted:
            return peer
        hops: list[str] = []
        for k, v in scope["headers"]:
            if k == b"x-forwarded-for":
                hops.extend(h.strip() for h in v.decode("latin-1").split(","))
        for hop in reversed(hops):  # the rightmost address not of a trusted proxy
            if hop and hop not in self.trusted:
                return hop
        return peer

    def scheme(self, scope: Any) -> str:
        scheme = str(scope.get("scheme", "http"))
        scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        peer = self._peer(scope)
        if self.trusted and peer in self.trusted:
            for k, v in scope["headers"]:
                if k == b"x-forwarded-proto":
                    proto = v.decode("latin-1").split(",")[0].strip().lower()
                    if proto in ("http", "https"):
                        return str(proto)
        return scheme


class Pages:
    """One renderer per operator template, the built-in one for the rest."""

    def __init__(self, settings: Settings) -> None:
        self.default = PageRenderer(prefix=settings.prefix)
        self._by_room: dict[str, PageRenderer] = {}
        for room in settings.rooms:
            if room.template:
                self._by_room[room.name] = PageRenderer(
                    prefix=settings.prefix, template_path=room.template
                )

    def for_room(self, name: str) -> PageRenderer:
        return self._by_room.get(name, self.default)


class Engine:
    """Everything one process runs: gatekeeper, controller, publisher, routes, pages."""

    def __init__(
        self,
        settings: Settings,
        gate: Gatekeeper,
        *,
        controller_interval: float = 0.5,
    ) -> None:
        from waitroom_proxy.asgi.routes import build_routes
        from waitroom_proxy.controller import Controller

        self.settings = settings
        self.gate = gate
        self.prefix = settings.prefix.rstrip("/")
        self.upstream = settings.upstream
        self.upstream_probe: Callable[[], Awaitable[None]] | None = None
        """Set by ``build_app``: connects to the origin as a request would (``/readyz``)."""
        self.trusted = ClientInfo(TrustedProxies(settings.trusted_proxies))
        self.pages = Pages(settings)
        self.controller = Controller(gate, interval=controller_interval)
        self.routes = build_routes(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await self.gate.publisher.start()
        self.gate.emit("system.replica_started", None, {"replica": self.gate.replica_id})
        await self.controller.start()
        log.info(
            "waitroom engine started: %d room(s), store=%s, events=%s",
            len(self.gate.rooms),
            type(self.gate.store).__name__,
            type(self.gate.publisher).__name__,
        )

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.controller.stop()
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=2)
        self.gate.emit("system.replica_stopped", None, {"replica": self.gate.replica_id})
        await self.gate.publisher.close()
        await self.gate.store.close()


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
    )
    return Engine(settings, gate, controller_interval=controller_interval)


def build_app(settings: Settings, *, access_log: bool = True, **engine_kwargs: Any) -> Any:
    """The standalone proxy app: the gatekeeper in front of the upstream origin."""
    from waitroom_proxy.asgi.middleware import WaitroomMiddleware
    from waitroom_proxy.asgi.proxy import UpstreamProxy

    if not settings.upstream:
        from waitroom_proxy.errors import ConfigError

        raise ConfigError(["server.upstream: required to serve (--upstream or WAITROOM_UPSTREAM)"])
    engine = build_engine(settings, **engine_kwargs)
    proxy = UpstreamProxy(
        settings.upstream,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        trusted_proxies=settings.trusted_proxies,
        error_page=_error_page(engine.pages.default),
        ca_file=settings.upstream_ca_file,
    )
    # /readyz checks the origin the way requests reach it (TLS with the same context).
    engine.upstream_probe = proxy.pool.probe
    from waitroom_proxy.asgi.chain import RequestContext
    from waitroom_proxy.asgi.hardening import HardeningGuard

    app = HardeningGuard(
        RequestContext(WaitroomMiddleware(proxy, engine=engine), access_log_enabled=access_log),
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
        trusted_proxies=settings.trusted_proxies,
    )
    app.engine = engine  # type: ignore[attr-defined]
    return app


_ERROR_TITLES = {
    502: "The site is not answering",
    503: "The site is unavailable",
    504: "The site is taking too long",
}


def _error_page(renderer: PageRenderer) -> Callable[[int, str], bytes]:
    def render(status: int, message: str) -> bytes:
        title = _ERROR_TITLES.get(status, "Something went wrong")
        return renderer.error_page(status, title, message).encode()

    return render


def app_factory() -> Any:
    """uvicorn ``--factory`` entry of a worker process (kept for ``uvicorn
    waitroom_proxy.bootstrap:app_factory --factory``): see ``serving.worker_app``."""
    from waitroom_proxy.serving import worker_app

    return worker_app()


def run(settings: Settings) -> None:
    """Serve the standalone proxy (and the admin listener) until interrupted: see
    ``waitroom_proxy.serving.run``."""
    from waitroom_proxy.serving import run as serve

    serve(settings)
