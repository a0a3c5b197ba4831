"""The reserved routes under ``/_waitroom``, served by Starlette.

``status`` and ``heartbeat`` answer the same JSON; ``heartbeat`` is what the waiting page polls
(POST), ``status`` is the same for clients that prefer GET. Both keep the place and, once the
visitor is promoted, start the session and set its cookie.

They answer for the room of the visitor's ticket: a session for another room (one session cookie
per host) is not "admitted" here, or the page would send the visitor back to a URL that queues
them again. A ticket is verified only after the per-client rate limit let the request through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from waitroom_proxy.asgi.answers import Caller, answer_for, rate_limited
from waitroom_proxy.asgi.binding import request_binding
from waitroom_proxy.asgi.edge import client_of
from waitroom_proxy.asgi.page import Pages
from waitroom_proxy.asgi.pow_routes import pow_routes
from waitroom_proxy.asgi.room_headers import cookie_header
from waitroom_proxy.domain.rules import safe_return_to
from waitroom_proxy.errors import StoreError, WaitroomError
from waitroom_proxy.service import SESSION_COOKIE, TICKET_COOKIE, Engine, RoomRuntime
from waitroom_proxy.service.status import status_dict

log = logging.getLogger(__name__)


def _json(
    body: dict[str, Any], status: int = 200, cookies: list[tuple[bytes, bytes]] | None = None
) -> Response:
    resp = JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})
    for k, v in cookies or ():
        resp.raw_headers.append((k, v))
    return resp


def build_routes(
    engine: Engine, pages: Pages, upstream_probe: Callable[[], Awaitable[None]] | None = None
) -> ASGIApp:
    """The Starlette app for ``{prefix}/*``.

    Args:
        engine: the gatekeeper's engine.
        pages: the rendered pages (the "You left" page of a form post).
        upstream_probe: connects to the origin as a request would, for ``/readyz`` (None: a
            host app, nothing to check).
    """
    gate = engine.gate
    sessions, admission = gate.sessions, gate.admission
    prefix = engine.settings.prefix.rstrip("/")

    def secure(request: Request) -> bool:
        return client_of(request.scope).secure

    def admitted_in(
        token: str | None, rooms: Iterable[RoomRuntime], now: float
    ) -> RoomRuntime | None:
        """The room (of ``rooms``) that the session token is valid for, or None."""
        if token:
            for room in rooms:
                if sessions.session_for(token, room, now) is not None:
                    return room
        return None

    async def status(request: Request) -> Response:
        now = gate.clock()
        session_token = request.cookies.get(SESSION_COOKIE)
        ticket_value = request.cookies.get(TICKET_COOKIE)
        if not ticket_value:
            room = admitted_in(session_token, gate.rooms.values(), now)
            if room is not None:
                return _json(status_dict(room, "admitted", None, "/", now))
            return _json({"status": "expired", "room": None, "position": 0, "ahead": 0,
                          "queue_length": 0, "eta_seconds": None, "refresh_seconds": 10,
                          "return_to": "/"})  # fmt: skip
        # Counted by this replica only (no store call: service.limiter.ClientLimit.wait).
        wait = await gate.limit.wait(client_of(request.scope).ip, shared=False)
        if wait > 0:
            limited = rate_limited(wait)
            retry = str(limited.retry_after)
            return _json({"status": "rate_limited", "retry_after": limited.retry_after},
                         limited.status, [(b"retry-after", retry.encode())])  # fmt: skip
        ticket = admission.read_ticket(ticket_value)
        if ticket is None:
            return _json({"status": "expired", "room": None}, cookies=[
                cookie_header(TICKET_COOKIE, "", 0, secure=secure(request))])  # fmt: skip
        room = gate.rooms.get(ticket.room)
        if room is not None and admitted_in(session_token, (room,), now) is not None:
            return _json(status_dict(room, "admitted", None, ticket.return_to, now))
        binding = request_binding(request.scope, room) if room is not None else ""
        outcome = await admission.heartbeat(ticket, ticket.return_to, now, binding=binding)
        if outcome is None:
            return _json({"status": "expired", "room": ticket.room}, cookies=[
                cookie_header(TICKET_COOKIE, "", 0, secure=secure(request))])  # fmt: skip
        cookies = [cookie_header(n, v, a, secure=secure(request)) for n, v, a in outcome.cookies]
        answer = answer_for(outcome, Caller.POLL)
        if answer.retry_after is not None:
            cookies.append((b"retry-after", str(answer.retry_after).encode()))
        return _json(outcome.status, answer.status, cookies)

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
        Route(prefix + "/status", status, methods=["GET"]),
        Route(prefix + "/heartbeat", status, methods=["POST"]),
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
