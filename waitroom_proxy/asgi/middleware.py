"""``WaitroomMiddleware``: the gatekeeper as a pure ASGI middleware (DESIGN §1, §4, §9).

The same class serves a host app (Starlette, FastAPI, any ASGI app) and the standalone proxy,
where the wrapped app is an ``UpstreamProxy``. The hot path (a valid session) is raw ASGI: one
pass over the request headers, a dict lookup in the cache of verified tokens, no store command,
no framework routing. Starlette serves only the ``/_waitroom/*`` routes.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from waitroom_proxy.asgi.commands import extend_seconds, first_valid, take_commands
from waitroom_proxy.asgi.edge import Refusal, prepare, refuse, target_of
from waitroom_proxy.asgi.page import content_security_policy
from waitroom_proxy.asgi.room_headers import (
    ROOM_COOKIES,
    cookie_header,
    read_cookies,
    secret_headers,
    single_header,
    strip_room_cookies,
)
from waitroom_proxy.asgi.wsguard import run_session_bound
from waitroom_proxy.domain.rules import safe_return_to
from waitroom_proxy.domain.tokens import Session
from waitroom_proxy.service import SESSION_COOKIE, Outcome, RoomRuntime

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# ``cookie_header`` and ``read_cookies`` live in ``asgi.room_headers``; importable from here.
__all__ = ["WaitroomMiddleware", "cookie_header", "read_cookies", "request_url", "wants_json"]

_VERIFIED = b"waitroom-verified"


def wants_json(accept: bytes) -> bool:
    return b"application/json" in accept and b"text/html" not in accept


def request_url(scope: Scope) -> str:
    """The path and query the visitor asked for (used as the return URL)."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    qs = scope.get("query_string", b"")
    return safe_return_to(path + ("?" + qs.decode("latin-1") if qs else ""))


class WaitroomMiddleware:
    """Puts a waiting room in front of an ASGI app.

    Args:
        app: the protected app (a host app, or the standalone ``UpstreamProxy``).
        settings: process settings; the engine (store, events, signers, controller) is built
            from them by ``waitroom_proxy.bootstrap.build_engine``.
        engine: an engine already built (tests pass their own adapters this way).

    The engine starts on the ASGI lifespan startup of the host app (the host keeps its own
    lifespan handling), or on the first request when the server sends no lifespan events.
    """

    def __init__(self, app: ASGIApp, settings: Any = None, *, engine: Any = None) -> None:
        from waitroom_proxy.asgi.proxy import UpstreamProxy
        from waitroom_proxy.bootstrap import build_engine

        if engine is None:
            if settings is None:
                raise TypeError("WaitroomMiddleware needs settings or an engine")
            engine = build_engine(settings)
        self.app = app
        self.engine = engine
        self.gate = engine.gate
        self.metrics = engine.gate.metrics
        self.prefix = engine.prefix
        self._prefix_slash = self.prefix + "/"
        self.routes = engine.routes
        self.pages = engine.pages
        self.trusted = engine.trusted
        self._trusted_proxies = engine.trusted.trusted
        self._proxy = app if isinstance(app, UpstreamProxy) else None
        self._private = secret_headers(engine.gate.rooms.values())

        self._started = False

    # ------------------------------------------------------------------ ASGI entry
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        if not self._started:
            await self._start()
        try:
            scope = prepare(scope, self._trusted_proxies)
        except Refusal as refusal:
            await refuse(scope, send, refusal)
            return
        path: str = scope["path"]
        if path.startswith(self._prefix_slash) or path == self.prefix:
            await self.routes(scope, receive, send)
            return

        target = target_of(scope)
        accept = b""
        cookies: list[bytes] = []
        bypass_value: bytes | None = None
        gate = self.gate
        for name, value in scope["headers"]:
            if name == b"cookie":
                cookies.append(value)
            elif name == b"accept":
                accept = value
            elif name == b"waitroom-bypass":
                # Only a single secret header counts: a repeated one is ambiguous.
                bypass_value = value if bypass_value is None else b""
        room = gate.room_for(target.host, target.route_path)
        if room is None:
            await self._forward(scope, receive, send, None, None, None, None)
            return
        now = gate.clock()
        session_token, ticket_value = read_cookies(cookies) if cookies else (None, None)

        if session_token is not None:
            session = gate.session_for(session_token, room, now)
            if session is not None:
                gate.note_activity(room, session, now)
                renewed = gate.renewal_for(room, session, now)
                self.metrics.request(room.name, "passed")
                await self._forward(scope, receive, send, room, session, renewed or session_token,
                                    renewed)  # fmt: skip
                return

        rules = room.bypass
        if rules.prefixes or rules.globs or rules.methods or rules.networks or rules.secret:
            if rules.secret_header != b"waitroom-bypass":
                bypass_value = single_header(scope["headers"], rules.secret_header)
            client_ip = self.trusted.client_ip(scope)
            method = scope.get("method", "GET")
            if rules.matches(path, method, client_ip, bypass_value, target.route_path):
                self.metrics.request(room.name, "bypassed")
                await self._forward(scope, receive, send, room, None, None, None)
                return

        if gate.client_rate_limit:
            # Before the ticket is read: a flood of cookie values costs one counter each.
            wait = await gate.client_wait(self.trusted.client_ip(scope))
            if wait > 0:
                await self._too_many(scope, send, room, wait, accept)
                return
        ticket = gate.read_ticket(ticket_value)
        outcome = await gate.arrive(room, ticket, request_url(scope), now)
        await self._answer(scope, receive, send, outcome, accept)

    # ------------------------------------------------------------------ answers
    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, outcome: Outcome, accept: bytes
    ) -> None:
        room = outcome.room
        kind = outcome.kind
        if kind == "pass":
            self.metrics.request(room.name, "passed")
            session = self.gate.cache.get(outcome.session_token or "", self.gate.clock())
            await self._forward(scope, receive, send, room, session, outcome.session_token,
                                outcome.session_token, extra_cookies=outcome.cookies)  # fmt: skip
            return
        if kind == "fail_open":
            # A session like any other (the store counts it once it is back), so this
            # visitor's next requests pass on it instead of spending the local rate.
            self.metrics.request(room.name, "failed_open")
            session = self.gate.cache.get(outcome.session_token or "", self.gate.clock())
            await self._forward(scope, receive, send, room, session, outcome.session_token,
                                outcome.session_token, extra_cookies=outcome.cookies)  # fmt: skip
            return
        self.metrics.request(
            room.name,
            {"wait": "queued", "error": "failed_closed", "expired": "queued"}.get(kind, "rejected"),
        )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013})
            return
        secure = self.trusted.scheme(scope) == "https"
        headers = [cookie_header(n, v, a, secure=secure) for n, v, a in outcome.cookies]
        status = self._status_code(outcome)
        if status in (429, 503):
            retry = max(1, int(outcome.status.get("refresh_seconds") or 10))
            headers.append((b"retry-after", str(retry).encode()))
        if wants_json(accept):
            body = json.dumps(outcome.status).encode()
            await _respond(send, status, b"application/json", body, headers)
            return
        nonce = secrets.token_urlsafe(12)
        html = self.pages.for_room(room.name).waiting_page(outcome.status, nonce=nonce)
        headers.append((b"content-security-policy", content_security_policy(nonce).encode()))
        await _respond(send, status, b"text/html; charset=utf-8", html.encode(), headers)

    async def _too_many(
        self, scope: Scope, send: Send, room: RoomRuntime, wait: float, accept: bytes
    ) -> None:
        """429 with Retry-After: this client sent too many enqueue/heartbeat requests."""
        self.metrics.request(room.name, "rejected")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013})
            return
        retry = str(max(1, math.ceil(wait))).encode()
        if wants_json(accept):
            body = json.dumps({"status": "rate_limited", "room": room.name,
                               "retry_after": int(retry)}).encode()  # fmt: skip
            await _respond(send, 429, b"application/json", body, [(b"retry-after", retry)])
            return
        html = self.pages.default.error_page(
            429, "Too many requests", "Please wait a moment before trying again."
        )
        await _respond(send, 429, b"text/html; charset=utf-8", html.encode(),
                       [(b"retry-after", retry)])  # fmt: skip

    def _status_code(self, outcome: Outcome) -> int:
        if outcome.kind == "full" or outcome.kind == "error":
            return 503
        if outcome.kind == "rejected":
            return (
                403 if outcome.room.policy.page_status == 200 else outcome.room.policy.page_status
            )
        return outcome.room.policy.page_status

    # ------------------------------------------------------------------ forwarding
    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        room: RoomRuntime | None,
        session: Session | None,
        token: str | None,
        new_token: str | None,
        *,
        extra_cookies: list[tuple[str, str, int]] | None = None,
        bound: bool = False,
    ) -> None:
        """Pass the request on: every path (session, bypass, no room, fail-open) comes here,
        so the room's cookies never reach the app or origin, and ``Waitroom-Verified`` is
        only ever the proxy's own (the client's was dropped by ``asgi.edge``)."""
        if scope["type"] == "websocket" and session is not None and room is not None and not bound:
            # The connection lives no longer than its session (asgi.wsguard).
            async def guarded(rcv: Receive, snd: Send) -> None:
                await self._forward(scope, rcv, snd, room, session, token, new_token,
                                    extra_cookies=extra_cookies, bound=True)  # fmt: skip

            await run_session_bound(self.gate, room, session, guarded, receive, send)
            return
        set_cookies: list[tuple[bytes, bytes]] = []
        if room is not None and (new_token is not None or extra_cookies):
            secure = self.trusted.scheme(scope) == "https"
            cookies = list(extra_cookies or ())
            if new_token is not None and not any(c[0] == SESSION_COOKIE for c in cookies):
                cookies.append((SESSION_COOKIE, new_token, int(room.policy.session_max)))
            set_cookies = [cookie_header(n, v, a, secure=secure) for n, v, a in cookies]
        verified = token.encode("latin-1") if token else None

        count_status = self.metrics.upstream_response

        def on_response(
            status: int, headers: list[tuple[bytes, bytes]]
        ) -> list[tuple[bytes, bytes]]:
            count_status(status)
            headers, commands = take_commands(headers)
            if commands and session is not None and room is not None:
                command = first_valid(commands)
                if command is not None:
                    self._origin_command(room, session, command, set_cookies, scope)
            if set_cookies:
                headers = headers + set_cookies
            return headers

        if self._proxy is not None:
            await self._proxy.forward(
                scope,
                receive,
                send,
                add_headers=((_VERIFIED, verified),) if verified else (),
                strip_cookies=ROOM_COOKIES,
                response_hook=on_response,
                strip_headers=self._private,
            )
            return
        # A host app: rewrite the scope's headers and watch the response start.
        private = self._private
        headers = [
            (k, v)
            for k, v in scope["headers"]
            if k != b"cookie" and k != _VERIFIED and k not in private
        ]
        for k, v in scope["headers"]:
            if k == b"cookie":
                kept = strip_room_cookies(v)
                if kept:
                    headers.append((b"cookie", kept))
        if verified:
            headers.append((_VERIFIED, verified))
        inner = dict(scope)
        inner["headers"] = headers

        async def send_wrapper(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start" or kind == "websocket.http.response.start":
                message = dict(message)
                message["headers"] = on_response(
                    message["status"], list(message.get("headers", []))
                )
            elif kind == "websocket.accept" and message.get("headers"):
                # A handshake answer carries no command to act on, but none may reach the
                # visitor either.
                message = dict(message)
                message["headers"] = take_commands(list(message["headers"]))[0]
            await send(message)

        await self.app(inner, receive, send_wrapper)

    def _origin_command(
        self,
        room: RoomRuntime,
        session: Session,
        text: str,
        set_cookies: list[tuple[bytes, bytes]],
        scope: Scope,
    ) -> None:
        """Act on one valid ``Waitroom-Command`` (see :mod:`.commands`)."""
        secure = self.trusted.scheme(scope) == "https"
        gate = self.gate
        if text in ("revoke", "complete"):
            reason = "revoked" if text == "revoke" else "completed"
            self.engine.spawn(gate.end_session(room, session, reason))
            set_cookies.clear()
            set_cookies.append(cookie_header(SESSION_COOKIE, "", 0, secure=secure))
        else:
            seconds = extend_seconds(text)
            assert seconds is not None
            now = gate.clock()
            token, s = gate.signer.issue(
                room.name, session.place_id, now=now, ttl=seconds, started_at=int(now),
                max_age=seconds,
            )  # fmt: skip
            gate.cache.put(token, s)
            self.engine.spawn(
                gate.store.touch(room.name, [session.place_id], int((seconds + 35) * 1000))
            )
            set_cookies.clear()
            set_cookies.append(cookie_header(SESSION_COOKIE, token, seconds, secure=secure))

    # ------------------------------------------------------------------ lifespan
    async def _start(self) -> None:
        if not self._started:
            self._started = True
            await self.engine.start()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_wrapper() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
            elif message["type"] == "lifespan.shutdown":
                await self.engine.stop()
            return message

        # A host app without lifespan support raises here; servers treat that as "no lifespan"
        # and the engine starts on the first request instead.
        await self.app(scope, receive_wrapper, send)


async def _respond(
    send: Send, status: int, content_type: bytes, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
                (b"referrer-policy", b"same-origin"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
