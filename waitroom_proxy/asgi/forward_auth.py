"""Forward-auth mode: the gate for a load balancer that keeps proxying itself (README, "Behind
nginx, Caddy, Traefik or Envoy").

``GET {prefix}/auth`` judges the request that the load balancer describes, and the LB acts on
the answer: nginx ``auth_request`` and ingress-nginx ``auth-url`` (``X-Original-URI`` or
``X-Original-URL``, ``X-Original-Method``, the original ``Host``), Caddy ``forward_auth``,
Traefik ``ForwardAuth`` and Envoy ``ext_authz`` over HTTP (``X-Forwarded-Uri``,
``-Method``, ``-Host``, ``-Proto``); the visitor's ``Cookie`` and ``X-Forwarded-For`` in both.

The described request is rebuilt as an ASGI scope and goes through the same edge as a proxied
one (:func:`waitroom_proxy.asgi.edge.prepare`: one Host, one normalised path, the same 400s),
then through the same steps, in the same order, as :class:`~.middleware.WaitroomMiddleware`:
the room by host and path, a session verified from the token cache (no store call), the room's
bypass rules, and only then the store. The answers:

- ``200``: pass. ``Waitroom-Verified`` carries the session token for the LB to set on the
  upstream request; ``Waitroom-Target`` the canonical target the gate judged (the LB should
  forward that, so the origin serves exactly what was judged); ``Set-Cookie`` when a session
  starts or renews. A pass that depends only on the host, the path and the session cookie is
  cacheable for ``auth_cache_seconds`` (``Cache-Control: private, max-age=N`` and nginx's
  ``X-Accel-Expires``), never past the session's own expiry; every other answer says
  ``no-store`` (a bypass by method, address or secret header would otherwise be replayed to
  other visitors who share the cache key).
- ``401`` with an empty body: the visitor must wait. The LB sends the original request to
  waitroom-proxy itself (nginx ``error_page 401 = @waitroom``), where the ordinary gate answers
  the page and sets the ticket cookie: the place is taken there, once. ``/auth`` never takes
  one in this style, since an LB cannot relay a ticket cookie into the follow-up request.
- ``?style=page``: for LBs that relay the auth answer to the visitor (Traefik, Caddy without
  ``handle_response``): the visitor arrives here (a place, or a session at once when there is
  room) and gets the waiting page or its JSON with a non-2xx status.
- ``403`` with a one-line reason: the description cannot be believed (the peer is not a
  trusted proxy; two descriptions that could disagree; a target the edge refuses).

``GET {prefix}/wait?rd=PATH`` is the follow-up for LBs that can only redirect a 401
(ingress-nginx ``auth-signin``): the ordinary gate answers it as the request ``GET PATH`` on the
same host (the waiting page and its ticket, or a 307 back to ``PATH`` with a session).
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from waitroom_proxy.asgi.answers import Caller, answer_for, rate_limited
from waitroom_proxy.asgi.auth_request import describe
from waitroom_proxy.asgi.binding import moved, request_binding
from waitroom_proxy.asgi.edge import TARGET_KEY, Refusal, client_of, prepare
from waitroom_proxy.asgi.headers import TrustedProxies
from waitroom_proxy.asgi.page import Pages, content_security_policy
from waitroom_proxy.asgi.room_headers import cookie_header, room_cookies, single_header
from waitroom_proxy.domain.rules import is_safe_return_to, safe_return_to
from waitroom_proxy.domain.target import RequestTarget
from waitroom_proxy.service import SESSION_COOKIE, Engine, RoomRuntime

__all__ = ["AUTH_ROUTE", "LOOPBACK", "WAIT_ROUTE", "ForwardAuth", "ReturnToBalancer", "describe"]

AUTH_ROUTE = "/auth"
"""The route under the prefix."""
WAIT_ROUTE = "/wait"
"""The follow-up route for LBs that redirect a 401 (``?rd=`` the original path)."""
LOOPBACK = ("127.0.0.0/8", "::1/128")
"""Trusted for this route in addition to ``trusted_proxies``: an LB on the same host."""

Header = tuple[bytes, bytes]


class ForwardAuth:
    """The raw-ASGI handler of ``{prefix}/auth`` (see the module docstring).

    Args:
        engine: the gatekeeper's engine (the same one the inline gate of this process uses).
        pages: the rendered pages (``?style=page``).
    """

    def __init__(self, engine: Engine, pages: Pages) -> None:
        settings = engine.settings
        self.gate = gate = engine.gate
        self.pages = pages
        self.cache_seconds = settings.auth_cache_seconds
        self._trusted = TrustedProxies((*settings.trusted_proxies, *LOOPBACK))
        self._count = gate.metrics.request
        self._wait_path = settings.prefix.rstrip("/") + WAIT_ROUTE
        self.follow_up: ASGIApp | None = None
        """The gate that answers ``/wait`` (the middleware sets itself here)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == self._wait_path:
            await self._wait(scope, receive, send)
            return
        peer = scope.get("client")
        if peer is None or peer[0] not in self._trusted:
            who = peer[0] if peer else "unknown"
            await _plain(send, 403, f"forward-auth: the peer {who} is not in trusted_proxies")
            return
        page_style = b"style=page" in scope.get("query_string", b"").split(b"&")
        try:
            original = prepare(describe(scope), self._trusted)
        except Refusal as refusal:
            await _plain(send, 403, refusal.reason)
            return
        await self._judge(original, send, page_style)

    async def _wait(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/wait?rd=PATH``: the gate's answer to ``GET PATH`` on this host."""
        values = [v for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"))
                  if k == "rd"]  # fmt: skip
        if len(values) != 1 or not is_safe_return_to(values[0]):
            await _plain(send, 400, "wait: rd must be one same-site path")
            return
        original = {k: v for k, v in scope.items() if not k.startswith("waitroom.")}
        path, _, query = values[0].encode("latin-1").partition(b"?")
        original.update(method="GET", path=path.decode("latin-1"), raw_path=path,
                        query_string=query)  # fmt: skip
        original["waitroom.request_target"] = values[0].encode("latin-1")
        try:
            prepared = prepare(original, self._trusted)
        except Refusal as refusal:
            await _plain(send, 400, refusal.reason)
            return
        assert self.follow_up is not None, "ForwardAuth serves behind WaitroomMiddleware"
        await self.follow_up(prepared, receive, send)

    async def _judge(self, scope: Scope, send: Send, page_style: bool) -> None:
        """The inline gate's steps (``WaitroomMiddleware.__call__``), answered for an LB."""
        gate = self.gate
        target: RequestTarget = scope[TARGET_KEY]
        canonical = target.raw_path + (b"?" + target.query if target.query else b"")
        room = gate.room_for(target.host, target.route_path)
        if room is None:
            await self._pass(send, canonical, None, None, self.cache_seconds)
            return
        now = gate.clock()
        cookies = [v for k, v in scope["headers"] if k == b"cookie"]
        session_token, ticket_value, _, sessions_sent = (
            room_cookies(cookies) if cookies else (None, None, b"", 0)
        )
        if session_token is not None:
            sessions = gate.sessions
            session = sessions.session_for(session_token, room, now)
            if session is not None and session.binding and moved(scope, room, session):
                # Bound to another client (``session_binding``): no pass; the LB's follow-up
                # request gets the middleware's page that says so, and the cookie is removed.
                self._count(room.name, "rejected")
                await _empty(send, 401)
                return
            if session is not None:
                sessions.note_activity(room, session, now)
                renewed = sessions.renewal_for(room, session, now)
                self._count(room.name, "passed")
                left = int(session.expires_at - now)
                set_cookie = None
                if renewed is not None:
                    secure = client_of(scope).secure
                    max_age = int(room.policy.session_max)
                    set_cookie = cookie_header(SESSION_COOKIE, renewed, max_age, secure=secure)
                # Two session cookies: the LB's cache key holds the first (nginx
                # ``$cookie_waitroom_session``), the gate read the last: never cached.
                single = sessions_sent == 1
                # A bound session is never cached: the LB's cache key is the cookie alone, so a
                # copied cookie would pass from anywhere for as long as the answer is cached.
                cacheable = single and not renewed and not session.binding
                ttl = min(self.cache_seconds, left) if cacheable else 0
                if room.policy.session_renewal:
                    # Not past the renewal point either: a pass served from the LB's cache
                    # would keep the renewed cookie from the visitor until the token expired.
                    due = session.expires_at - room.policy.session_ttl / 2 - now
                    ttl = min(ttl, max(0, int(due)))
                await self._pass(send, canonical, renewed or session_token, set_cookie, ttl)
                return
        rules = room.bypass
        if rules.prefixes or rules.globs or rules.methods or rules.networks or rules.secret:
            bypass_value = single_header(scope["headers"], rules.secret_header)
            client_ip = client_of(scope).ip
            method = scope.get("method", "GET")
            if rules.matches(target.path, method, client_ip, bypass_value, target.route_path):
                self._count(room.name, "bypassed")
                # Cacheable only if the path alone decided it (not the method, address or
                # secret, which are not in the LB's cache key).
                by_path = rules.matches(target.path, "", None, None, target.route_path)
                await self._pass(send, canonical, None, None, self.cache_seconds if by_path else 0)
                return
        if not page_style:
            # The follow-up request (the LB's error page) takes the place, once.
            await _empty(send, 401)
            return
        await self._arrive(scope, send, room, ticket_value, now)

    async def _arrive(
        self, scope: Scope, send: Send, room: RoomRuntime, ticket_value: str | None, now: float
    ) -> None:
        """``?style=page``: the visitor arrives here, as at a protected URL of the proxy."""
        gate = self.gate
        accept = single_header(scope["headers"], b"accept") or b""
        if gate.limit.limit:
            wait = await gate.limit.wait(client_of(scope).ip)
            if wait > 0:
                limited = rate_limited(wait)
                self._count(room.name, limited.metric or "rejected")
                retry = [(b"retry-after", str(limited.retry_after).encode())]
                await _body(send, limited.status, b"text/plain; charset=utf-8",
                            b"too many requests\n", retry)  # fmt: skip
                return
        ticket = gate.admission.read_ticket(ticket_value)
        path = target_url(scope)
        binding = request_binding(scope, room)
        outcome = await gate.admission.arrive(room, ticket, path, now, binding=binding)
        answer = answer_for(outcome, Caller.AUTH)
        if answer.metric is not None:
            self._count(room.name, answer.metric)
        secure = client_of(scope).secure
        set_cookies = [cookie_header(n, v, a, secure=secure) for n, v, a in outcome.cookies]
        if answer.forward:
            target: RequestTarget = scope[TARGET_KEY]
            canonical = target.raw_path + (b"?" + target.query if target.query else b"")
            await self._pass(send, canonical, outcome.session_token, None, 0, set_cookies)
            return
        page = answer_for(outcome, Caller.PAGE)
        status = page.status if page.status >= 300 else answer.status
        headers = set_cookies
        if page.retry_after is not None and status == page.status:
            headers.append((b"retry-after", str(page.retry_after).encode()))
        if b"application/json" in accept and b"text/html" not in accept:
            body = json.dumps(outcome.status).encode()
            await _body(send, status, b"application/json", body, headers)
            return
        nonce = secrets.token_urlsafe(12)
        html = self.pages.for_room(room.name).waiting_page(outcome.status, nonce=nonce)
        headers.append((b"content-security-policy", content_security_policy(nonce).encode()))
        await _body(send, status, b"text/html; charset=utf-8", html.encode(), headers)

    async def _pass(
        self,
        send: Send,
        canonical: bytes,
        token: str | None,
        set_cookie: Header | None,
        ttl: int,
        extra: list[Header] | None = None,
    ) -> None:
        headers: list[Header] = [(b"content-length", b"0"), (b"waitroom-target", canonical)]
        if token:
            headers.append((b"waitroom-verified", token.encode("latin-1")))
        if set_cookie is not None:
            headers.append(set_cookie)
        headers += extra or ()
        if ttl > 0 and set_cookie is None and not extra:
            seconds = str(ttl).encode()
            headers.append((b"cache-control", b"private, max-age=" + seconds))
            headers.append((b"x-accel-expires", seconds))
        else:
            headers.append((b"cache-control", b"no-store"))
            headers.append((b"x-accel-expires", b"0"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def target_url(scope: Scope) -> str:
    """The canonical path and query of a prepared scope, as a return URL."""
    target: RequestTarget = scope[TARGET_KEY]
    raw = target.raw_path.decode("latin-1")
    return safe_return_to(raw + ("?" + target.query.decode("latin-1") if target.query else ""))


class ReturnToBalancer:
    """The app behind the gate in forward-auth mode, where there is no origin to forward to.

    It is reached only by the LB's follow-up request when the gate lets it pass there (a place
    promoted and claimed, room at once for a newcomer, fail-open): it sends the visitor back
    to the same URL (307 keeps the method and body), now with the session cookie that the gate
    adds to this answer, and the LB's ``/auth`` passes the next attempt.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1013})
            return
        location = target_url(scope).encode("latin-1")
        await _body(send, 307, b"text/plain; charset=utf-8", b"admitted\n",
                    [(b"location", location)])  # fmt: skip


async def _empty(send: Send, status: int) -> None:
    headers = [(b"content-length", b"0"), (b"cache-control", b"no-store"),
               (b"x-accel-expires", b"0")]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _plain(send: Send, status: int, reason: str) -> None:
    await _body(send, status, b"text/plain; charset=utf-8", reason.encode() + b"\n", [])


async def _body(
    send: Send, status: int, content_type: bytes, body: bytes, headers: list[Header]
) -> None:
    start = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-accel-expires", b"0"),
        (b"x-content-type-options", b"nosniff"),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})
