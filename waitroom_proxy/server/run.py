"""``waitroom-proxy serve``: listeners, logging and worker processes.

One process (``workers = 1``): the proxy and, when configured, the admin listener run as two
uvicorn servers in one event loop.

``workers = N > 1``: uvicorn's supervisor starts N worker processes and hands each of them
every listener; each worker builds its settings from the environment (``serve`` exported its
flags there), configures logging like a single process, and serves both listeners
(:mod:`waitroom_proxy.server.workers`). The admin listener therefore works whatever the number
of workers, which the Helm chart relies on (it passes ``--admin-port`` and exposes
``workers``); ``GET /metrics`` answers for every worker.

Listeners are bound before anything else happens (:mod:`waitroom_proxy.listen`), so an address
in use ends the command with one line that names it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import tempfile
from typing import Any

from waitroom_proxy.config import Settings, config_warnings, room_coverage
from waitroom_proxy.listen import bind_listener, format_address
from waitroom_proxy.logs import configure_logging
from waitroom_proxy.server.apps import admin_app, admin_enabled, build_app

log = logging.getLogger(__name__)


def _common(settings: Settings) -> dict[str, Any]:
    """uvicorn settings shared by every listener and every worker."""
    from waitroom_proxy.asgi.hardening import http_protocol, limits_from

    return {
        "log_level": settings.log_level,
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
        "date_header": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
        "http": http_protocol(limits_from(settings)),
    }


def bind_all(settings: Settings) -> list[socket.socket]:
    """The proxy listener, then the admin listener if it is enabled.

    Raises:
        ListenError: one of them cannot be opened (the message names it).
    """
    sockets = [bind_listener(settings.host, settings.port, "host, port")]
    if admin_enabled(settings):
        assert settings.admin_port is not None
        try:
            sockets.append(
                bind_listener(settings.admin_host, settings.admin_port, "admin_host, admin_port")
            )
        except BaseException:
            sockets[0].close()
            raise
    return sockets


def run(settings: Settings) -> None:
    """Serve the proxy (and the admin listener) until interrupted.

    Raises:
        ListenError: a listener cannot be opened; nothing was started.
    """
    configure_logging(settings.log_level)
    sockets = bind_all(settings)
    log.info("proxy listening on http://%s/", format_address(settings.host, settings.port))
    if not settings.upstream:
        log.info(
            "forward-auth mode (no upstream): a load balancer asks GET %s/auth and proxies "
            "admitted requests itself",
            settings.prefix.rstrip("/"),
        )
    if len(sockets) > 1 and settings.admin_port is not None:
        where = format_address(settings.admin_host, settings.admin_port)
        log.info("admin listener on http://%s/ (metrics, admin API, dashboard)", where)
    for warning in config_warnings(settings):
        log.warning("%s", warning)
    note = room_coverage(settings)
    if note:
        log.info("%s", note)
    try:
        if settings.workers > 1:
            _run_workers(settings, sockets)
        else:
            app = build_app(settings, warn=False)
            asyncio.run(_serve(app, settings, sockets))
    finally:
        for sock in sockets:
            sock.close()


async def _serve(app: Any, settings: Settings, sockets: list[socket.socket]) -> None:
    import uvicorn

    common = _common(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, **common)
    serving = [uvicorn.Server(config).serve(sockets=sockets[:1])]
    admin = admin_app(app.engine, settings)
    if admin is not None and len(sockets) > 1:
        admin_config = uvicorn.Config(
            admin,
            host=settings.admin_host,
            port=settings.admin_port or 0,
            **{**common, "lifespan": "off"},
        )
        serving.append(uvicorn.Server(admin_config).serve(sockets=sockets[1:]))
    await asyncio.gather(*serving)


def _run_workers(settings: Settings, sockets: list[socket.socket]) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from waitroom_proxy.server.workers import WORKER_DIR_ENV

    common = _common(settings)
    # Workers are started afresh (spawn): they import the protocol by name and set its limits
    # from their own settings (worker_app).
    common["http"] = "waitroom_proxy.asgi.hardening:HardenedHttpToolsProtocol"
    workdir = tempfile.mkdtemp(prefix="waitroom-workers-")
    os.environ[WORKER_DIR_ENV] = workdir
    try:
        config = uvicorn.Config(
            "waitroom_proxy.server.run:worker_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            **common,
        )
        Multiprocess(config, sockets=sockets).run()
    finally:
        os.environ.pop(WORKER_DIR_ENV, None)
        shutil.rmtree(workdir, ignore_errors=True)


def worker_app() -> Any:
    """uvicorn ``--factory`` entry of each worker process: settings from the environment, the
    same logging as a single process, and both listeners (:class:`ByListener`)."""
    from waitroom_proxy.asgi.hardening import HardenedHttpToolsProtocol, limits_from
    from waitroom_proxy.config import load_settings
    from waitroom_proxy.server.workers import WORKER_DIR_ENV, ByListener, WorkerPeers

    settings = load_settings(os.environ.get("WAITROOM_CONFIG"), os.environ)
    configure_logging(settings.log_level)
    HardenedHttpToolsProtocol.limits = limits_from(settings)  # this worker process only
    # The supervisor already logged the configuration warnings once for all workers.
    app = build_app(settings, warn=False)
    if not admin_enabled(settings):
        return app
    directory = os.environ.get(WORKER_DIR_ENV)
    peers = WorkerPeers(directory, app.engine.gate.metrics.registry) if directory else None
    admin = admin_app(app.engine, settings, metrics=peers.metrics_app if peers else None)
    assert settings.admin_port is not None
    return ByListener(app, admin, settings.admin_port, peers)
