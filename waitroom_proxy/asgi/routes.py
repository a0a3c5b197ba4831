"""The reserved routes under ``/_waitroom``, served by Starlette.

``status`` and ``heartbeat`` (what the waiting page polls) are raw ASGI, :mod:`.poll`; they are
routed here too, for the methods and the CORS answers Starlette adds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from waitroom_proxy.asgi.edge import client_of
from waitroom_proxy.asgi.page import Pages
from waitroom_proxy.asgi.poll import Poll
from waitroom_proxy.asgi.pow_routes import pow_routes
from waitroom_proxy.asgi.room_headers import cookie_header
from waitroom_proxy.domain.rules import safe_return_to
from waitroom_proxy.errors import StoreError, WaitroomError
from waitroom_proxy.service import SESSION_COOKIE, TICKET_COOKIE, Engine

log = logging.getLogger(__name__)


def _json(
    body: dict[str, Any], status: int = 200, cookies: list[tuple[bytes, bytes]] | None = None
) -> Response:
    resp = JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})
    for k, v in cookies or ():
        resp.raw_headers.append((k, v))
    return resp


def build_routes(
    engine: Engine,
    pages: Pages,
    upstream_probe: Callable[[], Awaitable[None]] | None = None,
    poll: Poll | None = None,
) -> ASGIApp:
    """The Starlette app for ``{prefix}/*``.

    Args:
        engine: the gatekeeper's engine.
        pages: the rendered pages (the "You left" page of a form post).
        upstream_probe: connects to the origin as a request would, for ``/readyz`` (None: a
            host app, nothing to check).
        poll: the handler of ``status`` and ``heartbeat`` (default: a new one).
    """
    gate = engine.gate
    sessions, admission = gate.sessions, gate.admission
    prefix = engine.settings.prefix.rstrip("/")
    poll = poll if poll is not None else Poll(engine)

    def secure(request: Request) -> bool:
        return client_of(request.scope).secure

    async def leave(request: Request) -> Response:
        now = gate.clock()
        ticket = admission.read_ticket(request.cookies.get(TICKET_COOKIE))
        session = None
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            for room in gate.rooms.values():
                session = sessions.session_for(token, room, now)
                if session is not None:
                    break
        # Both, when the visitor holds a session and a ticket (of this room or another).
        left = await admission.leave(ticket, session)
        sec = secure(request)
        cookies = [
            cookie_header(SESSION_COOKIE, "", 0, secure=sec),
            cookie_header(TICKET_COOKIE, "", 0, secure=sec),
        ]
        if "text/html" in request.headers.get("accept", ""):
            # A plain form post (no JavaScript): answer with a page, not JSON. Its button
            # goes back to the page first asked for: reloading this URL would GET /leave.
            back = ticket.return_to if ticket is not None else "/"
            page = pages.default.error_page(
                200,
                "You left",
                "Your place is free for the next visitor.",
                action_href=safe_return_to(back),
                action="back_to_site",
            )
            resp = HTMLResponse(page, headers={"cache-control": "no-store"})
            resp.raw_headers.extend(cookies)
            return resp
        return _json({"status": "left" if left else "unknown"}, 200, cookies)

    async def audit(request: Request) -> Response:
        # Public: what anyone needs to check a scheduled sale's draw (domain.draw).
        name = request.query_params.get("room") or (
            next(iter(gate.rooms)) if len(gate.rooms) == 1 else ""
        )
        room = gate.rooms.get(name)
        if room is None:
            return _json({"error": "unknown room: pass ?room=NAME", "room": name or None}, 404)
        try:
            document = await gate.lifecycle.audit(room)
        except StoreError:
            return _json({"error": "store unavailable", "room": room.name}, 503,
                         [(b"retry-after", b"5")])  # fmt: skip
        if document is None:
            return _json({"error": "this room has no draw", "room": room.name}, 404)
        return _json(document)

    async def jwks(request: Request) -> Response:
        return JSONResponse(
            sessions.signer.jwks(), headers={"cache-control": "public, max-age=300"}
        )

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    readiness = _Readiness()

    async def readyz(request: Request) -> Response:
        # Public (probes and load balancers call it without credentials): it answers only
        # ok/down per check; what went wrong (hosts, ports, errors) goes to the log.
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(gate.store.ping_unguarded(), timeout=1.0)
            checks["store"] = readiness.ok("store")
        except (StoreError, TimeoutError) as exc:
            checks["store"] = readiness.down("store", exc)
        probe = upstream_probe
        if probe is not None:
            try:
                await asyncio.wait_for(probe(), timeout=1.0)
                checks["upstream"] = readiness.ok("upstream")
            except (OSError, TimeoutError, WaitroomError) as exc:
                checks["upstream"] = readiness.down("upstream", exc)
        ok = all(v == "ok" for v in checks.values())
        return _json(
            {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503
        )

    async def not_found(request: Request) -> Response:
        return _json({"error": "not found"}, 404)

    routes = [
        # Raw ASGI (asgi.poll); the gate calls it directly when no CORS is configured.
        Route(prefix + "/status", poll, methods=["GET"]),
        Route(prefix + "/heartbeat", poll, methods=["POST"]),
        Route(prefix + "/leave", leave, methods=["POST"]),
        Route(prefix + "/jwks.json", jwks, methods=["GET"]),
        Route(prefix + "/audit", audit, methods=["GET"]),
        Route(prefix + "/healthz", healthz, methods=["GET", "HEAD"]),
        Route(prefix + "/readyz", readyz, methods=["GET", "HEAD"]),
        *pow_routes(engine, prefix),
    ]
    app = Starlette(routes=routes)
    app.add_route(prefix + "/{rest:path}", not_found)
    origins = engine.settings.cors_origins
    if origins:
        # The JSON routes may be called from the site's own front-end on another origin
        # (a mobile web app, a separate SPA host): configured origins only, with cookies.
        return CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_credentials=True,
            allow_methods=["GET", "POST"],
            allow_headers=["content-type", "x-request-id"],
            max_age=600,
        )
    return app


class _Readiness:
    """Logs each readiness check's failure once, with its detail, and its recovery once: a
    probe polling every few seconds must not flood the log with the same line."""

    def __init__(self) -> None:
        self._down: dict[str, str] = {}

    def ok(self, name: str) -> str:
        if self._down.pop(name, None) is not None:
            log.info("readyz: %s is reachable again", name)
        return "ok"

    def down(self, name: str, exc: BaseException) -> str:
        detail = f"{type(exc).__name__}: {exc}"[:300]
        if self._down.get(name) != detail:
            self._down[name] = detail
            log.warning("readyz: %s is down: %s", name, detail)
        return "down"
