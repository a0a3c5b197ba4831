"""``GET /metrics``: a Prometheus registry in the text format, as an ASGI app of its own.

``metrics_app(registry)`` is the endpoint alone, for a host app that wants to mount it among
its own routes; it does no authentication of its own.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from waitroom_proxy.admin.auth import NO_STORE

__all__ = ["MetricsApp", "metrics_app"]


class MetricsApp:
    """ASGI app answering GET/HEAD with a registry in the Prometheus text format."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def __repr__(self) -> str:
        return f"MetricsApp({self.registry!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response: Response
        if scope["method"] not in ("GET", "HEAD"):
            response = JSONResponse(
                {"detail": "method not allowed"},
                status_code=405,
                headers={**NO_STORE, "allow": "GET, HEAD"},
            )
        else:
            response = Response(
                generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST, headers=NO_STORE
            )
        await response(scope, receive, send)


def metrics_app(registry: CollectorRegistry) -> ASGIApp:
    """The ``/metrics`` endpoint alone, for a host app to mount among its own routes.

    ``Mount("/metrics", metrics_app(engine.gate.metrics.registry))``; it does no
    authentication: protect it in the host app if it must not be public.
    """
    return MetricsApp(registry)
