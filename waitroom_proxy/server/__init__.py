"""The entry points' side of the house: the apps built from settings and the servers that run
them (uvicorn listeners, worker processes, the admin listener). Above ``asgi`` and
``bootstrap``; only ``cli`` (and the ``waitroom_proxy.WaitroomMiddleware`` factory) import it."""

from __future__ import annotations

from waitroom_proxy.server.apps import WaitroomMiddleware, admin_app, admin_enabled, build_app
from waitroom_proxy.server.run import run

__all__ = ["WaitroomMiddleware", "admin_app", "admin_enabled", "build_app", "run"]
