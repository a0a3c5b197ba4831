"""ASGI app factories for the server processes the harness starts (uvicorn or granian).

Both servers need an import string, so the apps are built here from the environment, the way
``waitroom-proxy serve`` builds them (``server.build_app`` on ``load_settings``):

- ``bare``: ``UpstreamProxy(WAITROOM_UPSTREAM)`` alone, the "bare proxy with the same client";
- ``waitroom``: the standalone waiting room (request chain on, access log off);
- ``waitroom_logged``: the same with JSON access-log lines at level info (the chain fully on).
"""

from __future__ import annotations

import os
from typing import Any


def _settings() -> Any:
    from waitroom_proxy.config import load_settings

    return load_settings(os.environ.get("WAITROOM_CONFIG"), os.environ)


def bare() -> Any:
    from waitroom_proxy.asgi.proxy import UpstreamProxy

    return UpstreamProxy(os.environ["WAITROOM_UPSTREAM"])


def _engine_kwargs() -> dict[str, Any]:
    # BENCH_CONTROLLER_INTERVAL=3600 pauses the admission controller (it ticks once at start-up)
    # so that INFO commandstats deltas count the requests' own store commands exactly.
    interval = os.environ.get("BENCH_CONTROLLER_INTERVAL")
    return {"controller_interval": float(interval)} if interval else {}


def waitroom() -> Any:
    from waitroom_proxy.server import build_app

    return build_app(_settings(), access_log=False, **_engine_kwargs())


def waitroom_logged() -> Any:
    from waitroom_proxy.logs import configure_logging
    from waitroom_proxy.server import build_app

    settings = _settings()
    configure_logging("info")
    return build_app(settings, access_log=True, **_engine_kwargs())


def server_cmd(server: str, factory: str, port: int) -> list[str]:
    """The command line serving ``bench.apps:<factory>`` on ``port`` with one worker."""
    import sys

    target = f"bench.apps:{factory}"
    if server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", target, "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning", "--no-server-header",
            "--no-date-header", "--no-proxy-headers", "--lifespan", "on",
        ]  # fmt: skip
    if server == "granian":
        return [
            sys.executable, "-m", "granian", "--interface", "asgi", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--loop", "uvloop", "--log-level", "warning", "--no-access-log", target,
        ]  # fmt: skip
    raise ValueError(f"unknown server {server!r}")


def waitroom_core() -> Any:
    """Diagnostics: ``WaitroomMiddleware`` around the proxy, without the request chain
    (``HardeningGuard``, ``RequestContext``): what the chain costs on the real server."""
    from waitroom_proxy.asgi.middleware import WaitroomMiddleware
    from waitroom_proxy.server import build_app

    app = build_app(_settings(), access_log=False, **_engine_kwargs())
    proxy = app.engine  # the engine; the proxy is rebuilt the way build_app does
    from waitroom_proxy.asgi.proxy import UpstreamProxy

    settings = proxy.settings
    upstream = UpstreamProxy(
        settings.upstream,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        trusted_proxies=settings.trusted_proxies,
    )
    return WaitroomMiddleware(upstream, engine=app.engine)


def waitroom_gc_frozen() -> Any:
    """Diagnostics: ``waitroom`` with ``gc.freeze()`` after start-up (the long-lived objects
    of the import graph moved out of the collector's generations)."""
    import gc

    app = waitroom()
    gc.collect()
    gc.freeze()
    return app
