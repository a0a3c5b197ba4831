"""The admin API, served on its own listener (DESIGN §4, §8).

``build_admin(engine, token)`` returns the ASGI app that ``waitroom-proxy serve`` runs on
``admin_host:admin_port``. Routes:

================================================  =============================================
``GET    /metrics``                               Prometheus text format (this process)
``GET    /admin/rooms``                           every room: effective policy, pause, overrides,
                                                  counts, ETA of the last waiter, admissions/min
``GET    /admin/rooms/{room}``                    one room
``PATCH  /admin/rooms/{room}``                    change policy fields at runtime (JSON body)
``DELETE /admin/rooms/{room}/overrides``          back to the configured policy
``POST   /admin/rooms/{room}/pause`` / ``resume`` stop / restart admissions
``POST   /admin/rooms/{room}/admit?count=N``      promote N waiters now (even while paused)
``POST   /admin/rooms/{room}/sessions/{id}/revoke`` end one session on every replica
``GET    /admin/stats``                           all rooms + store and event-bus health
``GET    /admin/openapi.json``                    the OpenAPI 3.0 document of all of this
``GET    /admin/`` and ``/admin/dashboard``       the live dashboard page (see below)
================================================  =============================================

**Authentication.** Every route needs ``Authorization: Bearer <token>``. The check runs before
routing, so an unknown path without a valid token is a 401 too and nothing about the routes
leaks. The token is compared in constant time: both sides are hashed with SHA-256 and the
fixed-length digests compared with :func:`hmac.compare_digest`, so neither the content nor the
length of the configured token shows in the timing.

**The dashboard** is the one exception, a decision: a browser cannot attach a bearer header to
a page it navigates to, so ``GET /admin/`` (and ``/admin/dashboard``) serves a *shell* without
authentication. The shell holds no data — no room names, no counts, no token: it is the same
static document for everybody. It asks for the token once, keeps it in ``sessionStorage`` (gone
when the tab closes, never in a cookie, so no CSRF), and fetches ``/admin/stats`` every 2 s with
the ``Authorization`` header. The data is only ever served with a valid token. The page loads
nothing else and carries a strict Content-Security-Policy with a per-response nonce.

**Runtime changes** (PATCH, pause, resume) are written to the room's meta map in the store
(``overrides`` as a JSON object, ``paused`` as ``"1"``/absent). Every replica's controller
reads that map on each tick, so all replicas follow within about a second; the replica that
served the request applies the change at once. Overrides merge: a PATCH changes only the fields
it names, and a ``null`` value removes that field's override. Two operators patching the same
room at the same instant on different replicas may race (last write wins per request). Values
are checked with the config loader's own converters (same rules, same messages) and its
cross-field rules on the policy that would result, plus upper bounds (a year for durations,
10⁹ for counts) so nothing overflows the store's millisecond integers; nothing is stored unless
every field passes.

**Errors** are JSON ``{"detail": ...}``: 400 for a body that is not JSON, 422 for a value that
is refused (``detail`` lists every problem as ``{"field", "error"}``), 404 for an unknown room
or path, 405 for a wrong method, 503 when the store does not answer. Never a traceback.

``metrics_app(registry)`` is the ``/metrics`` endpoint alone, for a host app that wants to mount
it among its own routes (DESIGN §8); it does no authentication of its own.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from waitroom_proxy.asgi.page import _builtin_source, content_security_policy, new_nonce
from waitroom_proxy.config.problems import messages
from waitroom_proxy.config.schema import MUTABLE_FIELDS, RoomModel, field_adapter, room_rules
from waitroom_proxy.domain.policy import FailMode, Mode, RoomPolicy
from waitroom_proxy.domain.rules import limits_for
from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import PlaceStatus, RoomStats, TickResult
from waitroom_proxy.service import RoomRuntime

if TYPE_CHECKING:
    from waitroom_proxy.bootstrap import Engine

__all__ = [
    "BearerAuth",
    "MetricsApp",
    "build_admin",
    "metrics_app",
    "openapi_document",
    "validate_overrides",
]

log = logging.getLogger(__name__)

MAX_ADMIT = 10_000
MAX_BODY_BYTES = 64 * 1024
PUBLIC_PATHS = frozenset({"/admin/", "/admin/dashboard"})
"""The dashboard shell: static, data-free, served without a token (see the module docstring)."""
_PLACE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_MASK = "********"
_MAX_SECONDS = 366 * 86_400
_MAX_COUNT = 1_000_000_000
_UPPER_BOUNDS: dict[str, float] = {
    "capacity": _MAX_COUNT,
    "admit_rate": _MAX_COUNT,
    "max_queue_length": _MAX_COUNT,
    **{k: _MAX_SECONDS for k in ("session_ttl", "session_max", "heartbeat_interval",
                                 "abandon_after", "claim_timeout")},
}  # fmt: skip
"""Above these, values stop making sense and overflow the store's millisecond integers."""
_COUNTER_NAMES = ("published", "dropped", "retries", "buffered", "connected")
_NO_STORE = {"cache-control": "no-store"}


# --------------------------------------------------------------------------- authentication
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
            headers={"www-authenticate": 'Bearer realm="waitroom-admin"', **_NO_STORE},
        )
        await response(scope, receive, send)


# --------------------------------------------------------------------------- metrics
class MetricsApp:
    """ASGI app answering GET/HEAD with a registry in the Prometheus text format."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def __repr__(self) -> str:
        return f"MetricsApp({self.registry!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response: Response
        if scope["method"] not in ("GET", "HEAD"):
            response = _json({"detail": "method not allowed"}, 405, {"allow": "GET, HEAD"})
        else:
            response = Response(
                generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST, headers=_NO_STORE
            )
        await response(scope, receive, send)


def metrics_app(registry: CollectorRegistry) -> ASGIApp:
    """The ``/metrics`` endpoint alone, for a host app to mount among its own routes.

    ``Mount("/metrics", metrics_app(engine.gate.metrics.registry))``; it does no
    authentication: protect it in the host app if it must not be public.
    """
    return MetricsApp(registry)


# --------------------------------------------------------------------------- validation
@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One refused field of a request."""

    field: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "error": self.error}


def _wire(value: Any) -> Any:
    """A policy value as JSON: enums by value, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_wire(v) for v in value]
    return value


def validate_overrides(
    patch: Any, base: RoomPolicy, current: Mapping[str, Any]
) -> tuple[dict[str, Any], list[Problem]]:
    """Merge a PATCH body into the current overrides, validating like the config file does.

    Args:
        patch: the decoded JSON body: an object of ``MUTABLE_FIELDS``; ``null`` removes one.
        base: the room's configured policy (cross-field rules apply to the merged result).
        current: the overrides in force (as stored).

    Returns:
        The merged overrides (JSON-ready) and every problem found (empty when accepted).
    """
    if not isinstance(patch, dict):
        kind = "an array" if isinstance(patch, list) else type(patch).__name__
        return {}, [Problem("body", f"must be a JSON object of policy fields, got {kind}")]
    problems: list[Problem] = []
    unknown = sorted(k for k in patch if k not in MUTABLE_FIELDS)
    for key in unknown:
        problems.append(
            Problem(key, f"unknown or read-only field (changeable: {', '.join(MUTABLE_FIELDS)})")
        )
    merged = {k: v for k, v in current.items() if k in MUTABLE_FIELDS}
    for key in MUTABLE_FIELDS:
        if key not in patch:
            continue
        value = patch[key]
        if value is None:
            merged.pop(key, None)
            continue
        try:
            merged[key] = _wire(field_adapter(RoomModel, key).validate_python(value))
        except ValidationError as exc:
            problems.extend(Problem(key + suffix, msg) for suffix, msg in messages(exc))
    if problems:
        return merged, problems
    try:
        values = dict(merged)
        if "mode" in values:
            values["mode"] = Mode(values["mode"])
        if "fail_mode" in values:
            values["fail_mode"] = FailMode(values["fail_mode"])
        effective = dataclasses.replace(base, **values)
        limits_for(effective)  # what the store will be given must be computable
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. a stored override no longer fits
        return merged, [Problem("body", f"overrides do not apply: {exc}")]
    problems.extend(Problem(key, message) for key, message in room_rules(effective))
    return merged, problems


# --------------------------------------------------------------------------- views
def policy_json(policy: RoomPolicy) -> dict[str, Any]:
    """Every ``RoomPolicy`` field as JSON; the bypass secret is masked."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(policy):
        value = getattr(policy, f.name)
        if f.name == "bypass":
            bypass = {b.name: _wire(getattr(value, b.name)) for b in dataclasses.fields(value)}
            bypass["secret"] = _MASK if value.secret else None
            out["bypass"] = bypass
        else:
            out[f.name] = _wire(value)
    return out


def _stats_json(stats: RoomStats | None) -> dict[str, int] | None:
    if stats is None:
        return None
    return {
        "queue_length": stats.queue_length,
        "active": stats.active,
        "promoted": stats.promoted,
        "admitted_total": stats.admitted_total,
    }


def _finite(x: float) -> float | None:
    return round(x, 3) if math.isfinite(x) else None


def _room_json(room: RoomRuntime, stats: RoomStats | None) -> dict[str, Any]:
    eta = None
    if stats is not None and stats.queue_length > 0:
        estimate = room.eta.estimate(stats.queue_length - 1)  # the last waiter's
        eta = estimate.as_dict() if estimate is not None else None
    rates = room.eta.rates()
    return {
        "name": room.name,
        "paused": room.paused,
        "overrides": dict(room.overrides),
        "policy": policy_json(room.policy),
        "stats": _stats_json(stats),
        "eta_last_seconds": eta,
        "admissions_per_minute": _finite(rates[0] * 60) if rates is not None else None,
    }


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers={**_NO_STORE, **(headers or {})})


def _problems(problems: list[Problem], status: int = 422) -> Response:
    return _json({"detail": [p.as_dict() for p in problems]}, status)


class _StoreDown(Exception):
    pass


# --------------------------------------------------------------------------- the app
def build_admin(engine: Engine, token: str, *, metrics: ASGIApp | None = None) -> ASGIApp:
    """The admin ASGI app for one engine, behind bearer-token authentication.

    Args:
        engine: the running engine (its gatekeeper, controller, metrics registry).
        token: the admin bearer token (``WAITROOM_ADMIN_TOKEN``).
        metrics: the ``/metrics`` endpoint; default this process's registry (``serve
            --workers N`` passes one that answers for every worker).
    """
    gate = engine.gate
    store = gate.store
    registry = gate.metrics.registry
    # The controller's ``tick_room`` may or may not return its TickResult; both are handled.
    tick_room: Callable[..., Awaitable[object]] = engine.controller.tick_room

    def room_or_404(request: Request) -> RoomRuntime:
        name = request.path_params["room"]
        room = gate.rooms.get(name)
        if room is None:
            raise HTTPException(404, f"unknown room: {name!r}")
        return room

    async def store_call(op: str, fn: Callable[[], Awaitable[Any]], room: str | None = None) -> Any:
        try:
            return await gate._call(op, fn, room)
        except StoreError as exc:
            raise _StoreDown(str(exc)) from None

    async def fresh_room(room: RoomRuntime) -> dict[str, Any]:
        """Follow what other replicas changed, then describe the room (store down: last seen)."""
        stats = room.last_stats
        try:
            await gate.refresh_room_state(room)
            stats = await gate._call("stats", lambda: store.stats(room.name), room.name)
        except StoreError:
            pass
        return _room_json(room, stats)

    async def set_meta(room: RoomRuntime, values: dict[str, str]) -> None:
        """Write runtime state for every replica, and follow it here at once."""
        await store_call("meta", lambda: store.set_meta(room.name, values), room.name)
        try:
            await gate.refresh_room_state(room)
        except StoreError as exc:
            raise _StoreDown(str(exc)) from None

    # -- routes
    async def list_rooms(request: Request) -> Response:
        return _json({"rooms": [await fresh_room(r) for r in list(gate.rooms.values())]})

    async def get_room(request: Request) -> Response:
        return _json(await fresh_room(room_or_404(request)))

    async def patch_room(request: Request) -> Response:
        room = room_or_404(request)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _json({"detail": f"body larger than {MAX_BODY_BYTES} bytes"}, 413)
        try:
            patch = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
        except (UnicodeDecodeError, ValueError) as exc:
            return _json({"detail": f"body must be a JSON object: {exc}"}, 400)
        meta = await store_call("meta", lambda: store.get_meta(room.name), room.name)
        current = _decode_overrides(meta.get("overrides"))
        merged, problems = validate_overrides(patch, room.base, current)
        if problems:
            return _problems(problems)
        await set_meta(room, {"overrides": json.dumps(merged, sort_keys=True) if merged else ""})
        gate.emit("queue.config_changed", room.name, {"changes": patch, "overrides": merged})
        log.info("room %s: overrides now %s", room.name, merged)
        return _json(await fresh_room(room))

    async def reset_overrides(request: Request) -> Response:
        room = room_or_404(request)
        await set_meta(room, {"overrides": ""})
        gate.emit("queue.config_changed", room.name, {"changes": "reset", "overrides": {}})
        log.info("room %s: overrides reset", room.name)
        return _json(await fresh_room(room))

    async def pause(request: Request) -> Response:
        room = room_or_404(request)
        await set_meta(room, {"paused": "1"})
        gate.emit("queue.paused", room.name, {"replica": gate.replica_id})
        log.info("room %s: admissions paused", room.name)
        return _json(await fresh_room(room))

    async def resume(request: Request) -> Response:
        room = room_or_404(request)
        await set_meta(room, {"paused": ""})
        gate.emit("queue.resumed", room.name, {"replica": gate.replica_id})
        log.info("room %s: admissions resumed", room.name)
        return _json(await fresh_room(room))

    async def admit(request: Request) -> Response:
        room = room_or_404(request)
        raw = request.query_params.get("count", "1")
        try:
            count = int(raw)
        except ValueError:
            count = -1
        if not 1 <= count <= MAX_ADMIT:
            shown = raw if len(raw) <= 40 else raw[:37] + "..."
            return _problems([Problem("count", f"must be an integer 1-{MAX_ADMIT}, got {shown!r}")])
        sample = {"room": room.name}
        before = registry.get_sample_value("waitroom_admissions_total", sample) or 0.0
        try:
            result = await tick_room(room, force=count)
        except StoreError as exc:
            raise _StoreDown(str(exc)) from None
        if isinstance(result, TickResult):
            promoted = len(result.promoted)
        else:  # the controller counts its promotions in the admissions counter
            after = registry.get_sample_value("waitroom_admissions_total", sample) or 0.0
            promoted = int(after - before)
        log.info("room %s: operator admitted %d (asked %d)", room.name, promoted, count)
        return _json({"room": room.name, "requested": count, "promoted": promoted,
                      **(await fresh_room(room))})  # fmt: skip

    async def revoke(request: Request) -> Response:
        room = room_or_404(request)
        place_id = request.path_params["place_id"]
        if not _PLACE_ID_RE.fullmatch(place_id):
            return _problems(
                [Problem("place_id", "must be 1-128 characters of A-Z, a-z, 0-9, _ and -")]
            )
        session_max = room.policy.session_max
        # Locally at once; other replicas read the store's revoked set on their next tick.
        gate.cache.revoke(place_id, gate.clock() + session_max)
        was: PlaceStatus = await store_call(
            "leave", lambda: store.leave(room.name, place_id, int(session_max * 1000)), room.name
        )
        if was is PlaceStatus.ACTIVE:
            gate.metrics.sessions_ended.labels(room.name, "revoked").inc()
        gate.emit("session.revoked", room.name, {"place_id": place_id, "reason": "admin"})
        log.info("room %s: session revoked by operator (was %s)", room.name, was.value)
        return _json({"room": room.name, "place_id": place_id, "previous_status": was.value})

    async def stats(request: Request) -> Response:
        try:
            await gate._call("ping", store.ping)
            store_up = True
        except StoreError:
            store_up = False
        events = {"publisher": type(gate.publisher).__name__,
                  "counters": _publisher_counters(gate.publisher)}  # fmt: skip
        rooms = [await fresh_room(r) for r in list(gate.rooms.values())]
        return _json({
            "replica": gate.replica_id,
            "time": gate.clock(),
            "store": {"up": store_up, "kind": type(store).__name__},
            "events": events,
            "rooms": rooms,
        })  # fmt: skip

    async def openapi(request: Request) -> Response:
        return _json(openapi_document())

    async def dashboard(request: Request) -> Response:
        nonce = new_nonce()
        return HTMLResponse(
            _dashboard_template().render(nonce=nonce),
            headers={
                "content-security-policy": content_security_policy(nonce),
                "referrer-policy": "no-referrer",
                "x-content-type-options": "nosniff",
                "x-frame-options": "DENY",
                **_NO_STORE,
            },
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _json({"detail": exc.detail}, exc.status_code, exc.headers)

    async def store_down(request: Request, exc: Exception) -> Response:
        log.warning("admin: store unavailable: %s", exc)
        return _json({"detail": "store unavailable"}, 503, {"retry-after": "1"})

    routes = [
        Route("/metrics", metrics or metrics_app(registry), methods=["GET"]),
        Route("/admin/rooms", list_rooms, methods=["GET"]),
        Route("/admin/rooms/{room}", get_room, methods=["GET"]),
        Route("/admin/rooms/{room}", patch_room, methods=["PATCH"]),
        Route("/admin/rooms/{room}/overrides", reset_overrides, methods=["DELETE"]),
        Route("/admin/rooms/{room}/pause", pause, methods=["POST"]),
        Route("/admin/rooms/{room}/resume", resume, methods=["POST"]),
        Route("/admin/rooms/{room}/admit", admit, methods=["POST"]),
        Route("/admin/rooms/{room}/sessions/{place_id}/revoke", revoke, methods=["POST"]),
        Route("/admin/stats", stats, methods=["GET"]),
        Route("/admin/openapi.json", openapi, methods=["GET"]),
        Route("/admin/", dashboard, methods=["GET"]),
        Route("/admin/dashboard", dashboard, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, _StoreDown: store_down},
    )
    app.router.redirect_slashes = False
    return BearerAuth(app, token, public_paths=PUBLIC_PATHS)


def _publisher_counters(publisher: Any) -> dict[str, float] | None:
    """The event publisher's counters (``counters()``, else its plain attributes), or None."""
    try:
        counters = getattr(publisher, "counters", None)
        if callable(counters):
            raw = dict(counters())
        else:
            raw = {k: getattr(publisher, k) for k in _COUNTER_NAMES if hasattr(publisher, k)}
        out = {
            str(k): float(v)
            for k, v in raw.items()
            if isinstance(v, int | float) and math.isfinite(v)
        }
    except Exception:  # a broken publisher must not break the dashboard
        log.exception("event publisher counters failed")
        return None
    return out or None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _decode_overrides(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@cache
def _dashboard_template() -> Any:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(_builtin_source("dashboard.html"))


# --------------------------------------------------------------------------- OpenAPI
def _policy_schema() -> dict[str, Any]:
    seconds = {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": _MAX_SECONDS}
    count = {"type": "integer", "maximum": _MAX_COUNT}
    return {
        "capacity": {**count, "minimum": 1},
        "admit_rate": {**count, "minimum": 0, "description": "per minute; 0 = none"},
        "session_ttl": seconds,
        "session_renewal": {"type": "boolean"},
        "session_max": seconds,
        "heartbeat_interval": seconds,
        "abandon_after": seconds,
        "claim_timeout": seconds,
        "mode": {"type": "string", "enum": [m.value for m in Mode]},
        "page_status": {"type": "integer", "enum": [200, 202, 429, 503]},
        "max_queue_length": {**count, "minimum": 1},
        "fail_mode": {"type": "string", "enum": [m.value for m in FailMode]},
    }


@cache
def _openapi() -> str:
    mutable = _policy_schema()
    assert set(mutable) == set(MUTABLE_FIELDS), "keep the OpenAPI schema in step"
    policy_props: dict[str, Any] = {
        "name": {"type": "string"},
        "match": {"type": "array", "items": {"type": "string"}},
        **mutable,
        "bypass": {
            "type": "object",
            "properties": {
                "paths": {"type": "array", "items": {"type": "string"}},
                "methods": {"type": "array", "items": {"type": "string"}},
                "cidrs": {"type": "array", "items": {"type": "string"}},
                "secret_header": {"type": "string"},
                "secret": {"type": "string", "nullable": True, "description": "masked"},
            },
        },
        "template": {"type": "string", "nullable": True},
        "activity_interval": {"type": "number"},
    }
    eta = {
        "type": "object",
        "nullable": True,
        "properties": {"p50": {"type": "integer"}, "p90": {"type": "integer"}},
        "required": ["p50", "p90"],
    }
    room_schema = {
        "type": "object",
        "required": ["name", "paused", "overrides", "policy", "stats"],
        "properties": {
            "name": {"type": "string"},
            "paused": {"type": "boolean"},
            "overrides": {"type": "object", "additionalProperties": True},
            "policy": {"$ref": "#/components/schemas/Policy"},
            "stats": {
                "type": "object",
                "nullable": True,
                "properties": {
                    k: {"type": "integer", "minimum": 0}
                    for k in ("queue_length", "active", "promoted", "admitted_total")
                },
            },
            "eta_last_seconds": eta,
            "admissions_per_minute": {"type": "number", "nullable": True},
        },
    }
    patch_schema = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {k: {**v, "nullable": True} for k, v in mutable.items()},
        "description": "Fields to override; null removes an override.",
    }
    error = {
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["field", "error"],
                            "properties": {
                                "field": {"type": "string"},
                                "error": {"type": "string"},
                            },
                        },
                    },
                ]
            }
        },
    }

    def resp(description: str, ref: str | None = None, media: str = "application/json") -> Any:
        out: dict[str, Any] = {"description": description}
        if ref is not None:
            out["content"] = {media: {"schema": {"$ref": f"#/components/schemas/{ref}"}}}
        return out

    common = {
        "401": {"$ref": "#/components/responses/Unauthorized"},
    }
    with_room = {
        **common,
        "404": resp("Unknown room", "Error"),
        "503": resp("The store does not answer", "Error"),
    }
    room_param = {
        "name": "room",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }

    def room_op(op_id: str, summary: str, extra: dict[str, Any] | None = None) -> Any:
        return {
            "operationId": op_id,
            "summary": summary,
            "parameters": [room_param],
            "responses": {"200": resp("The room after the change", "Room"), **with_room},
            **(extra or {}),
        }

    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "waitroom-proxy admin API",
            "version": "1",
            "description": "Served on the admin listener. Every route needs the bearer token.",
        },
        "security": [{"bearerAuth": []}],
        "paths": {
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics of this process",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **common,
                    },
                }
            },
            "/admin/rooms": {
                "get": {
                    "operationId": "listRooms",
                    "summary": "Every room",
                    "responses": {"200": resp("Rooms", "RoomList"), **common},
                }
            },
            "/admin/rooms/{room}": {
                "get": {
                    "operationId": "getRoom",
                    "summary": "One room",
                    "parameters": [room_param],
                    "responses": {"200": resp("The room", "Room"), **with_room},
                },
                "patch": {
                    "operationId": "patchRoom",
                    "summary": "Override policy fields at runtime (all replicas follow)",
                    "parameters": [room_param],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PolicyPatch"}
                            }
                        },
                    },
                    "responses": {
                        "200": resp("The room after the change", "Room"),
                        "400": resp("The body is not JSON", "Error"),
                        "413": resp("The body is too large", "Error"),
                        "422": resp("Refused values, every problem listed", "Error"),
                        **with_room,
                    },
                },
            },
            "/admin/rooms/{room}/overrides": {
                "delete": room_op("resetOverrides", "Drop every runtime override"),
            },
            "/admin/rooms/{room}/pause": {
                "post": room_op("pauseRoom", "Stop admissions (newcomers queue)"),
            },
            "/admin/rooms/{room}/resume": {
                "post": room_op("resumeRoom", "Restart admissions"),
            },
            "/admin/rooms/{room}/admit": {
                "post": {
                    "operationId": "admitNow",
                    "summary": "Promote up to count waiters now, ignoring pause and rate",
                    "parameters": [
                        room_param,
                        {
                            "name": "count",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_ADMIT,
                                "default": 1,
                            },
                        },
                    ],
                    "responses": {
                        "200": resp("How many were promoted", "AdmitResult"),
                        "422": resp("Bad count", "Error"),
                        **with_room,
                    },
                }
            },
            "/admin/rooms/{room}/sessions/{place_id}/revoke": {
                "post": {
                    "operationId": "revokeSession",
                    "summary": "End a session (or place) on every replica",
                    "parameters": [
                        room_param,
                        {
                            "name": "place_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"},
                        },
                    ],
                    "responses": {
                        "200": resp("Revoked", "RevokeResult"),
                        "422": resp("Bad place id", "Error"),
                        **with_room,
                    },
                }
            },
            "/admin/stats": {
                "get": {
                    "operationId": "stats",
                    "summary": "Every room plus store and event-bus health (the dashboard's feed)",
                    "responses": {"200": resp("Stats", "Stats"), **common},
                }
            },
            "/admin/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **common,
                    },
                }
            },
            "/admin/": {
                "get": {
                    "operationId": "dashboard",
                    "summary": "Dashboard shell (no data; asks for the token, then polls stats)",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "HTML page",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/admin/dashboard": {
                "get": {
                    "operationId": "dashboardAlias",
                    "summary": "Same as /admin/",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "HTML page",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Unauthorized": {
                    "description": "Missing or wrong bearer token",
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
            },
            "schemas": {
                "Error": error,
                "Policy": {"type": "object", "properties": policy_props},
                "PolicyPatch": patch_schema,
                "Room": room_schema,
                "RoomList": {
                    "type": "object",
                    "required": ["rooms"],
                    "properties": {
                        "rooms": {"type": "array", "items": {"$ref": "#/components/schemas/Room"}}
                    },
                },
                "AdmitResult": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Room"},
                        {
                            "type": "object",
                            "required": ["requested", "promoted"],
                            "properties": {
                                "room": {"type": "string"},
                                "requested": {"type": "integer"},
                                "promoted": {"type": "integer", "minimum": 0},
                            },
                        },
                    ]
                },
                "RevokeResult": {
                    "type": "object",
                    "required": ["room", "place_id", "previous_status"],
                    "properties": {
                        "room": {"type": "string"},
                        "place_id": {"type": "string"},
                        "previous_status": {
                            "type": "string",
                            "enum": [s.value for s in PlaceStatus],
                        },
                    },
                },
                "Stats": {
                    "type": "object",
                    "required": ["replica", "store", "events", "rooms"],
                    "properties": {
                        "replica": {"type": "string"},
                        "time": {"type": "number"},
                        "store": {
                            "type": "object",
                            "properties": {
                                "up": {"type": "boolean"},
                                "kind": {"type": "string"},
                            },
                        },
                        "events": {
                            "type": "object",
                            "properties": {
                                "publisher": {"type": "string"},
                                "counters": {
                                    "type": "object",
                                    "nullable": True,
                                    "additionalProperties": {"type": "number"},
                                },
                            },
                        },
                        "rooms": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Room"},
                        },
                    },
                },
            },
        },
    }
    return json.dumps(doc)


def openapi_document() -> dict[str, Any]:
    """The admin API's OpenAPI 3.0 document (a fresh copy)."""
    result: dict[str, Any] = json.loads(_openapi())
    return result
