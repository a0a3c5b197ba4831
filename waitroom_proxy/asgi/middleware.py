"""``WaitroomMiddleware``: the gatekeeper as a pure ASGI middleware.

The same class serves a host app (Starlette, FastAPI, any ASGI app) and the standalone proxy,
where the wrapped app is an ``UpstreamProxy``. The hot path (a valid session) is raw ASGI: one
pass over the request headers, one parse of the cookies (cached per raw value), a dict lookup
in the cache of verified tokens, no store command, no framework routing, and the proxy's
forwarder called directly with the final cookie and header rules. The waiting page's polls
(``status``, ``heartbeat``) are raw ASGI too (:mod:`.poll`); Starlette serves the other
``/_waitroom/*`` routes.

This class takes an engine already built; a host app builds one from settings with
``waitroom_proxy.WaitroomMiddleware(app, settings)`` (the composition root does it there, so
nothing here imports it).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from waitroom_proxy.asgi.answers import Caller, answer_for, rate_limited
from waitroom_proxy.asgi.binding import answer_moved, moved, request_binding
from waitroom_proxy.asgi.brand import Brand
from waitroom_proxy.asgi.commands import extend_seconds, first_valid, take_commands
from waitroom_proxy.asgi.edge import TARGET_KEY, Refusal, client_of, prepare, refuse
from waitroom_proxy.asgi.forward_auth import ForwardAuth
from waitroom_proxy.asgi.headers import Header, TrustedProxies
from waitroom_proxy.asgi.host_app import VERIFIED as _VERIFIED
from waitroom_proxy.asgi.host_app import host_app_scope, host_app_send
from waitroom_proxy.asgi.page import Pages
from waitroom_proxy.asgi.poll import Poll, poll_answer
from waitroom_proxy.asgi.proxy import UpstreamProxy
from waitroom_proxy.asgi.room_headers import (
    ROOM_COOKIES,
    cookie_header,
    read_cookies,
    room_cookies,
    secret_headers,
    single_header,
)
from waitroom_proxy.asgi.routes import build_routes
from waitroom_proxy.asgi.waiting_answers import (
    answer_too_many,
    answer_waiting,
    request_url,
    wants_json,
)
from waitroom_proxy.asgi.wsguard import run_session_bound
from waitroom_proxy.config.page_values import read_messages
from waitroom_proxy.domain.target import RequestTarget
from waitroom_proxy.domain.tokens import Session
from waitroom_proxy.service import SESSION_COOKIE, Engine, Outcome, RoomRuntime
from waitroom_proxy.service.outcome import Cookie

log = logging.getLogger(__name__)
_NO_COOKIES = (None, None, b"", 0)


# ``cookie_header`` and ``read_cookies`` live in ``asgi.room_headers``, ``request_url`` and
# ``wants_json`` in ``asgi.waiting_answers``; importable from here.
__all__ = ["WaitroomMiddleware", "cookie_header", "read_cookies", "request_url", "wants_json"]


def pages_for(engine: Engine) -> Pages:
    """The pages of an engine's rooms (operator templates where the settings name them)."""
    settings = engine.settings
    templates = {room.name: room.template for room in settings.rooms if room.template}
    brands = {room.name: Brand.of(room) for room in settings.rooms}
    messages = read_messages(settings.page_messages)
    return Pages(settings.prefix, templates, brands=brands, messages=messages)


class WaitroomMiddleware:
    """Puts a waiting room in front of an ASGI app.

    Args:
        app: the protected app (a host app, or the standalone ``UpstreamProxy``).
        engine: the engine (store, events, signers, controller), built by
            ``waitroom_proxy.bootstrap.build_engine``; tests pass their own adapters there.
        pages: the rendered pages (default: built from the engine's settings).
        upstream_probe: what ``/readyz`` calls to check the origin (default: the wrapped
            ``UpstreamProxy``'s, none for a host app).
        forward_auth: the handler of ``{prefix}/auth`` and ``{prefix}/wait`` (forward-auth
            mode, :mod:`.forward_auth`), which runs the edge again on the request described.

    The engine starts on the ASGI lifespan startup of the host app (the host keeps its own
    lifespan handling), or on the first request when the server sends no lifespan events.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: object = None,
        *,
        engine: Engine | None = None,
        pages: Pages | None = None,
        upstream_probe: Callable[[], Awaitable[None]] | None = None,
        forward_auth: ForwardAuth | None = None,
    ) -> None:
        if engine is None:
            raise TypeError(
                "WaitroomMiddleware needs an engine; build one from settings with "
                "waitroom_proxy.WaitroomMiddleware(app, settings)"
            )
        settings_ = engine.settings
        self.app = app
        self.engine = engine
        gate = self.gate = engine.gate
        self.metrics = gate.metrics
        self.prefix = settings_.prefix.rstrip("/")
        self._prefix_slash = self.prefix + "/"
        self.pages = pages if pages is not None else pages_for(engine)
        self._proxy = app if isinstance(app, UpstreamProxy) else None
        self._http = self._proxy.http if self._proxy is not None else None
        if upstream_probe is None and self._proxy is not None:
            upstream_probe = self._proxy.pool.probe
        self._poll = Poll(engine)
        self.routes = build_routes(engine, self.pages, upstream_probe, self._poll)
        # The polls skip Starlette unless it has CORS answers to add (asgi.poll).
        self._polls = (
            {(self.prefix + "/status", "GET"), (self.prefix + "/heartbeat", "POST")}
            if not settings_.cors_origins
            else set()
        )
        self._trusted_proxies = TrustedProxies(settings_.trusted_proxies)
        # The hot path's calls, bound once.
        self._room_for = gate.room_for
        self._session_for = gate.sessions.session_for
        self._note_activity = gate.sessions.note_activity
        self._renewal_for = gate.sessions.renewal_for
        self._count = self.metrics.request
        self._private = secret_headers(gate.rooms.values())
        # What never reaches the origin from the client: the proxy's own ``Waitroom-Verified``
        # goes in its place (the edge dropped the client's already).
        self._strip = self._private | {_VERIFIED}
        count_status = self._count_status = self.metrics.upstream_response

        def passed_on(status: int, headers: list[Header]) -> list[Header]:
            """The response hook of a request without a session or cookies to add."""
            count_status(status)
            return take_commands(headers)[0]

        self._passed_on = passed_on
        self._started = False
        self._auth = forward_auth
        self._auth_paths = (self.prefix + "/auth", self.prefix + "/wait")
        if forward_auth is not None:
            forward_auth.follow_up = self

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
        if self._auth is not None and scope["path"] in self._auth_paths and kind == "http":
            await self._auth(scope, receive, send)
            return
        try:
            scope = prepare(scope, self._trusted_proxies)
        except Refusal as refusal:
            await refuse(scope, send, refusal)
            return
        path: str = scope["path"]
        if path.startswith(self._prefix_slash) or path == self.prefix:
            if (path, scope.get("method")) in self._polls and not scope.get("root_path"):
                await poll_answer(self._poll, scope, send)
                return
            await self.routes(scope, receive, send)
            return

        target: RequestTarget = scope[TARGET_KEY]  # asgi.edge.target_of, without the call
        accept = b""
        cookies: list[bytes] = []
        bypass_value: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"cookie":
                cookies.append(value)
            elif name == b"accept":
                accept = value
            elif name == b"waitroom-bypass":
                # Only a single secret header counts: a repeated one is ambiguous.
                bypass_value = value if bypass_value is None else b""
        room = self._room_for(target.host, target.route_path)
        if room is None:
            await self._forward(scope, receive, send, None, None, None, None)
            return
        gate = self.gate
        now = gate.clock()
        # One parse: the room's cookies, and the Cookie value the origin gets (the rest).
        session_token, ticket_value, rest, _ = room_cookies(cookies) if cookies else _NO_COOKIES

        if session_token is not None:
            session = self._session_for(session_token, room, now)
            if session is not None:
                if session.binding and moved(scope, room, session):
                    await answer_moved(scope, send, self.pages, room, request_url(scope), accept)
                    return
                self._note_activity(room, session, now)
                renewed = self._renewal_for(room, session, now)
                self._count(room.name, "passed")
                if self._http is not None and kind == "http":
                    # The fast path: straight to the proxy's forwarder, what ``_forward`` does.
                    set_cookies = (
                        [] if renewed is None else [self._session_cookie(scope, room, renewed)]
                    )
                    hook = self._hook(scope, room, session, set_cookies)
                    verified = ((_VERIFIED, (renewed or session_token).encode("latin-1")),)
                    await self._http(scope, receive, send, verified, ROOM_COOKIES, hook,
                                     self._strip, rest)  # fmt: skip
                    return
                await self._forward(scope, receive, send, room, session, renewed or session_token,
                                    renewed, stripped_cookie=rest)  # fmt: skip
                return

        rules = room.bypass
        if rules.prefixes or rules.globs or rules.methods or rules.networks or rules.secret:
            if rules.secret_header != b"waitroom-bypass":
                bypass_value = single_header(scope["headers"], rules.secret_header)
            client_ip = client_of(scope).ip
            method = scope.get("method", "GET")
            if rules.matches(path, method, client_ip, bypass_value, target.route_path):
                self._count(room.name, "bypassed")
                await self._forward(scope, receive, send, room, None, None, None,
                                    stripped_cookie=rest)  # fmt: skip
                return

        if gate.limit.limit:
            # Before the ticket is read: a flood of cookie values costs one counter each.
            wait = await gate.limit.wait(client_of(scope).ip)
            if wait > 0:
                await self._too_many(scope, send, room, wait, accept)
                return
        admission = gate.admission
        ticket = admission.read_ticket(ticket_value)
        binding = request_binding(scope, room)
        outcome = await admission.arrive(room, ticket, request_url(scope), now, binding=binding)
        await self._answer(scope, receive, send, outcome, accept, rest)

    # ------------------------------------------------------------------ answers
    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, outcome: Outcome, accept: bytes,
        rest: bytes,
    ) -> None:  # fmt: skip
        room = outcome.room
        answer = answer_for(outcome, Caller.PAGE)
        if answer.metric is not None:
            self._count(room.name, answer.metric)
        if answer.forward:
            # A session like any other (a fail-open one too: the store counts it once it is
            # back), so this visitor's next requests pass on it.
            token = outcome.session_token
            session = self.gate.sessions.cache.get(token or "", self.gate.clock())
            await self._forward(scope, receive, send, room, session, token, token,
                                extra_cookies=outcome.cookies, stripped_cookie=rest)  # fmt: skip
            return
        await answer_waiting(self.pages, scope, send, outcome, answer, accept)

    async def _too_many(
        self, scope: Scope, send: Send, room: RoomRuntime, wait: float, accept: bytes
    ) -> None:
        """429 with Retry-After: this client sent too many enqueue/heartbeat requests."""
        answer = rate_limited(wait)
        self._count(room.name, answer.metric or "rejected")
        await answer_too_many(self.pages, scope, send, room, answer, accept)

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
        extra_cookies: list[Cookie] | None = None,
        bound: bool = False,
        stripped_cookie: bytes | None = None,
    ) -> None:
        """Pass the request on: every path (session, bypass, no room, fail-open) comes here,
        so the room's cookies never reach the app or origin, and ``Waitroom-Verified`` is
        only ever the proxy's own (the client's was dropped by ``asgi.edge``).

        ``stripped_cookie``: the request's ``Cookie`` without the room's, when the caller
        parsed the cookies already (``room_headers.room_cookies``)."""
        if scope["type"] == "websocket" and session is not None and room is not None and not bound:
            # The connection lives no longer than its session (asgi.wsguard).
            async def guarded(rcv: Receive, snd: Send) -> None:
                await self._forward(scope, rcv, snd, room, session, token, new_token,
                                    extra_cookies=extra_cookies, bound=True)  # fmt: skip

            await run_session_bound(self.gate, room, session, guarded, receive, send)
            return
        set_cookies: list[tuple[bytes, bytes]] = []
        if room is not None and (new_token is not None or extra_cookies):
            secure = client_of(scope).secure
            cookies = list(extra_cookies or ())
            if new_token is not None and not any(c[0] == SESSION_COOKIE for c in cookies):
                cookies.append((SESSION_COOKIE, new_token, int(room.policy.session_max)))
            set_cookies = [cookie_header(n, v, a, secure=secure) for n, v, a in cookies]
        verified = token.encode("latin-1") if token else None

        on_response = self._hook(scope, room, session, set_cookies)
        if self._proxy is not None:
            await self._proxy.forward(
                scope,
                receive,
                send,
                add_headers=((_VERIFIED, verified),) if verified else (),
                strip_cookies=ROOM_COOKIES,
                response_hook=on_response,
                strip_headers=self._strip,
                stripped_cookie=stripped_cookie,
            )
            return
        # A host app: rewrite the scope's headers and watch the response start.
        inner = host_app_scope(scope, self._private, verified)
        await self.app(inner, receive, host_app_send(send, on_response))

    def _session_cookie(self, scope: Scope, room: RoomRuntime, token: str) -> Header:
        max_age = int(room.policy.session_max)
        return cookie_header(SESSION_COOKIE, token, max_age, secure=client_of(scope).secure)

    def _hook(
        self,
        scope: Scope,
        room: RoomRuntime | None,
        session: Session | None,
        set_cookies: list[Header],
    ) -> Callable[[int, list[Header]], list[Header]]:
        """The response hook: counts the status, acts on an origin's command for a session,
        adds ``set_cookies``; no closure when there is nothing to act on or add."""
        if not set_cookies and session is None:
            return self._passed_on
        count_status = self._count_status

        def on_response(status: int, headers: list[Header]) -> list[Header]:
            count_status(status)
            headers, commands = take_commands(headers)
            if commands and session is not None and room is not None:
                command = first_valid(commands)
                if command is not None:
                    self._origin_command(room, session, command, set_cookies, scope)
            if set_cookies:
                headers = headers + set_cookies
            return headers

        return on_response

    def _origin_command(
        self,
        room: RoomRuntime,
        session: Session,
        text: str,
        set_cookies: list[tuple[bytes, bytes]],
        scope: Scope,
    ) -> None:
        """Act on one valid ``Waitroom-Command`` (see :mod:`.commands`)."""
        secure = client_of(scope).secure
        sessions = self.gate.sessions
        if text in ("revoke", "complete"):
            reason = "revoked" if text == "revoke" else "completed"
            self.engine.spawn(sessions.end_quietly(room, session.place_id, reason))
            set_cookies.clear()
            set_cookies.append(cookie_header(SESSION_COOKIE, "", 0, secure=secure))
        else:
            seconds = extend_seconds(text)
            assert seconds is not None
            token = sessions.extend(room, session, seconds)
            self.engine.spawn(sessions.store_extension(room, session.place_id, seconds))
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
