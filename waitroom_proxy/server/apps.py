"""The apps the entry points serve, built from settings: the standalone proxy, the admin
listener, and the waiting room as middleware of a host app."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp

from waitroom_proxy.admin import build_admin
from waitroom_proxy.asgi import middleware as _middleware
from waitroom_proxy.asgi.chain import RequestContext
from waitroom_proxy.asgi.forward_auth import LOOPBACK, ForwardAuth, ReturnToBalancer
from waitroom_proxy.asgi.hardening import HardeningGuard
from waitroom_proxy.asgi.page import proxy_error_page
from waitroom_proxy.asgi.proxy import UpstreamProxy
from waitroom_proxy.bootstrap import build_engine
from waitroom_proxy.config import Settings
from waitroom_proxy.service import Engine


class WaitroomMiddleware(_middleware.WaitroomMiddleware):
    """A waiting room in front of a host app (Starlette, FastAPI, any ASGI app), built from
    settings: ``app = WaitroomMiddleware(app, load_settings("waitroom.toml"))``.

    Args:
        app: the host app; it keeps its routes and its lifespan.
        settings: the rooms and the server settings (``store_url``, ``secret``, ...).
        **engine_kwargs: passed to ``waitroom_proxy.bootstrap.build_engine`` (tests replace
            the store, the publisher or the clock this way).
    """

    def __init__(self, app: ASGIApp, settings: Settings, **engine_kwargs: Any) -> None:
        if not isinstance(settings, Settings):
            raise TypeError("WaitroomMiddleware(app, settings): settings from load_settings()")
        super().__init__(app, engine=build_engine(settings, **engine_kwargs))


def build_app(settings: Settings, *, access_log: bool = True, **engine_kwargs: Any) -> Any:
    """The standalone proxy: the gatekeeper in front of the upstream origin or, without
    ``upstream``, in forward-auth mode (README, "Behind nginx, Caddy, Traefik or Envoy":
    ``{prefix}/auth`` for a load balancer that proxies admitted traffic itself,
    :mod:`waitroom_proxy.asgi.forward_auth`).

    The returned app has an ``engine`` attribute (the admin listener and tests use it).
    """
    engine = build_engine(settings, **engine_kwargs)
    pages = _middleware.pages_for(engine)
    if not settings.upstream:
        gate = _middleware.WaitroomMiddleware(
            ReturnToBalancer(), engine=engine, pages=pages, forward_auth=ForwardAuth(engine, pages)
        )
        # The load balancer is the client here: on this host it is trusted (README, forward-auth).
        return _outer(gate, settings, engine, access_log, (*settings.trusted_proxies, *LOOPBACK))
    proxy = UpstreamProxy(
        settings.upstream,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        trusted_proxies=settings.trusted_proxies,
        error_page=proxy_error_page(pages.default),
        ca_file=settings.upstream_ca_file,
    )
    gate = _middleware.WaitroomMiddleware(proxy, engine=engine, pages=pages)
    return _outer(gate, settings, engine, access_log, settings.trusted_proxies)


def _outer(
    gate: ASGIApp, settings: Settings, engine: Engine, access_log: bool, trusted: tuple[str, ...]
) -> Any:
    app = HardeningGuard(
        RequestContext(gate, access_log_enabled=access_log),
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
        trusted_proxies=trusted,
    )
    app.engine = engine  # type: ignore[attr-defined]
    return app


def admin_enabled(settings: Settings) -> bool:
    return settings.admin_port is not None and bool(settings.admin_token)


def admin_app(engine: Engine, settings: Settings, *, metrics: ASGIApp | None = None) -> Any:
    """The admin app on ``engine``, or None when the admin listener is off."""
    if not admin_enabled(settings):
        return None
    assert settings.admin_token is not None
    return build_admin(engine, settings.admin_token, metrics=metrics)
