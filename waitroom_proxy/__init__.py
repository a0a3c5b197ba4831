"""waitroom-proxy: a self-hosted virtual waiting room (reverse proxy and ASGI middleware)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
