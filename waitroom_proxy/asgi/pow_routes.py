"""The proof-of-work routes under the prefix (``service.challenge``; protocol in ``domain.pow``).

- ``POST {prefix}/pow``: a JSON body ``{"challenge": "...", "counter": "...", "return_to":
  "/path"}``. A good solution spends its challenge and answers as ``/heartbeat`` does (a
  ticket, or a session at once when the room is free). A refused one gets a 4xx with a stable
  ``reason`` (``malformed``, ``bad_signature``, ``wrong_room``, ``not_yet_valid``,
  ``expired``, ``too_easy``, ``wrong_solution``: 400; ``replayed``: 409), a message, and a fresh
  challenge to solve instead; it never touches the visitor's cookies, so nobody loses a place.
- ``GET {prefix}/pow-worker.js``: the Web Worker that solves challenges in the page (served
  from here, so the page's CSP needs only ``worker-src 'self'``; it fetches nothing).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from waitroom_proxy.asgi.answers import Caller, answer_for, rate_limited
from waitroom_proxy.asgi.binding import request_binding
from waitroom_proxy.asgi.edge import client_of
from waitroom_proxy.asgi.page import pow_worker_source
from waitroom_proxy.asgi.room_headers import cookie_header
from waitroom_proxy.domain.pow import PowError
from waitroom_proxy.domain.rules import safe_return_to
from waitroom_proxy.errors import StoreError
from waitroom_proxy.service import TICKET_COOKIE, Engine

MAX_BODY = 4096
"""A solution is a few hundred bytes: a larger body is refused before it is parsed."""
MAX_RETURN_TO = 2048


def _json(
    body: dict[str, Any], status: int = 200, headers: list[tuple[bytes, bytes]] | None = None
) -> Response:
    resp = JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})
    resp.raw_headers.extend(headers or ())
    return resp


async def _read(request: Request) -> dict[str, Any] | None:
    """The JSON object of the body (at most ``MAX_BODY`` bytes), or None."""
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            return None
    try:
        body = json.loads(data)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _room_named_in(challenge: object) -> str | None:
    """The room part of a ``wpow1`` challenge (checked for real by its signature later)."""
    if isinstance(challenge, str) and challenge.count(".") == 5:
        return challenge.split(".")[1]
    return None


def pow_routes(engine: Engine, prefix: str) -> list[Route]:
    """The routes of the module docstring, for ``asgi.routes``."""
    gate = engine.gate
    admission, proofs = gate.admission, gate.proofs
    worker = pow_worker_source().encode()

    def refused(reason: str, message: str, room_name: str | None, now: float) -> Response:
        body: dict[str, Any] = {"status": "refused", "reason": reason, "message": message}
        room = gate.rooms.get(room_name or "")
        if room is not None:
            body["room"] = room.name
            if proofs.required(room):
                body["pow"] = proofs.challenge(room, "/", now).status["pow"]
        return _json(body, 409 if reason == "replayed" else 400)

    async def solve(request: Request) -> Response:
        now = gate.clock()
        wait = await gate.limit.wait(client_of(request.scope).ip)
        if wait > 0:
            limited = rate_limited(wait)
            retry = str(limited.retry_after).encode()
            return _json({"status": "rate_limited", "retry_after": limited.retry_after},
                         limited.status, [(b"retry-after", retry)])  # fmt: skip
        body = await _read(request)
        if body is None:
            message = f"the body must be a JSON object of at most {MAX_BODY} bytes"
            return refused("malformed", message, None, now)
        challenge = body.get("challenge")
        room_name = _room_named_in(challenge)
        room = gate.rooms.get(room_name or "")
        if room is None:
            return refused("malformed", "the proof-of-work challenge is malformed", None, now)
        raw_return = body.get("return_to")
        return_to = safe_return_to(
            raw_return if isinstance(raw_return, str) and len(raw_return) <= MAX_RETURN_TO else None
        )
        try:
            solved = await proofs.redeem(room, challenge, body.get("counter"), now)
        except PowError as exc:
            return refused(exc.reason, str(exc), room.name, now)
        except StoreError:
            outcome = admission.fail_open.outcome(
                room, return_to, now, binding=request_binding(request.scope, room)
            )
        else:
            ticket = admission.read_ticket(request.cookies.get(TICKET_COOKIE))
            outcome = await admission.arrive(
                room, ticket, return_to, now, proof=solved,
                binding=request_binding(request.scope, room),
            )  # fmt: skip
        secure = client_of(request.scope).secure
        headers = [cookie_header(n, v, a, secure=secure) for n, v, a in outcome.cookies]
        answer = answer_for(outcome, Caller.POLL)
        if answer.retry_after is not None:
            headers.append((b"retry-after", str(answer.retry_after).encode()))
        return _json(outcome.status, answer.status, headers)

    async def worker_script(request: Request) -> Response:
        return Response(
            worker,
            media_type="text/javascript",
            headers={
                "cache-control": "public, max-age=3600",
                "content-security-policy": "default-src 'none'",
                "x-content-type-options": "nosniff",
            },
        )

    return [
        Route(prefix + "/pow", solve, methods=["POST"]),
        Route(prefix + "/pow-worker.js", worker_script, methods=["GET"]),
    ]
