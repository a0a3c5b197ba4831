"""waitroom-proxy: a self-hosted virtual waiting room (reverse proxy and ASGI middleware).

In a host app: ``app = waitroom_proxy.WaitroomMiddleware(app, load_settings("waitroom.toml"))``
(``waitroom_proxy.server.apps.WaitroomMiddleware``, imported on first use so that importing
any part of the package does not load the server stack).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["WaitroomMiddleware", "__version__"]

if TYPE_CHECKING:
    from waitroom_proxy.server.apps import WaitroomMiddleware


def __getattr__(name: str) -> Any:
    if name == "WaitroomMiddleware":
        from waitroom_proxy.server.apps import WaitroomMiddleware

        return WaitroomMiddleware
    raise AttributeError(f"module 'waitroom_proxy' has no attribute {name!r}")
