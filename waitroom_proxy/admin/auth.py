"""Bearer-token authentication of the admin listener (pure ASGI, before routing).

The check runs before routing, so an unknown path without a valid token is a 401 too and
nothing about the routes leaks. The token is compared in constant time: both sides are hashed
with SHA-256 and the fixed-length digests compared with :func:`hmac.compare_digest`, so neither
the content nor the length of the configured token shows in the timing.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["NO_STORE", "BearerAuth"]

NO_STORE = {"cache-control": "no-store"}
"""Admin answers describe live state: never cached."""


class BearerAuth:
    """Refuses every request without ``Authorization: Bearer <token>`` (pure ASGI).

    Args:
        app: the app to protect.
        token: the expected token (non-empty).
        public_paths: exact paths served without a token (GET/HEAD only).
    """

    def __init__(self, app: ASGIApp, token: str, *, public_paths: frozenset[str]) -> None:
        if not token:
            raise ValueError("the admin token must not be empty")
        self.app = app
        self._digest = hashlib.sha256(token.encode()).digest()
        self._public = public_paths

    def __repr__(self) -> str:
        return "BearerAuth(token=<hidden>)"

    def authorized(self, scope: Scope) -> bool:
        """True if the request carries the token (constant time in the token's content)."""
        given = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = credentials.strip()
                break
        # Hash both sides: compare_digest then sees two 32-byte values, whatever was sent.
        return hmac.compare_digest(hashlib.sha256(given).digest(), self._digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        public = scope["path"] in self._public and scope.get("method") in ("GET", "HEAD")
        if public or self.authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = JSONResponse(
            {"detail": "missing or invalid bearer token"},
            status_code=401,
            headers={"www-authenticate": 'Bearer realm="waitroom-admin"', **NO_STORE},
        )
        await response(scope, receive, send)
