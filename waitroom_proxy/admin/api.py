"""The admin listener's app: routes, error answers and the OpenAPI document (FastAPI).

FastAPI serves this listener only (it is off the hot path): its routes carry the models of
:mod:`waitroom_proxy.admin.models`, so ``/admin/openapi.json`` is generated from the same
schema that checks the values. Request parameters are checked by their schema types too
(``count``, ``place_id``); the PATCH body is read and checked by the API itself, so a body that
is not JSON is a 400, an oversized one a 413 and refused values a 422 listing every field.

**Errors** are JSON ``{"detail": ...}``: 400 for a body that is not JSON, 422 for a value that
is refused (``detail`` lists every problem as ``{"field", "error"}``), 404 for an unknown room
or path, 405 for a wrong method, 503 when the store does not answer. Never a traceback.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from waitroom_proxy.admin.auth import NO_STORE, BearerAuth
from waitroom_proxy.admin.dashboard import PUBLIC_PATHS, dashboard
from waitroom_proxy.admin.history import DEFAULT_INTERVAL, History
from waitroom_proxy.admin.history_api import history_router
from waitroom_proxy.admin.metrics import metrics_app
from waitroom_proxy.admin.models import (
    MAX_ADMIT,
    AdmitResult,
    Error,
    RevokeResult,
    Room,
    RoomList,
    Stats,
)
from waitroom_proxy.admin.openapi import document
from waitroom_proxy.admin.overrides import Problem
from waitroom_proxy.admin.rooms import Rooms, StoreDown, UnknownRoom
from waitroom_proxy.admin.sampler import Sampler, StartSampler
from waitroom_proxy.admin.schedule import schedule_router
from waitroom_proxy.config.problems import error_messages, refuse
from waitroom_proxy.config.values import Check, integer
from waitroom_proxy.service import RoomRuntime

if TYPE_CHECKING:
    from waitroom_proxy.service import Engine

__all__ = ["build_admin", "openapi_document"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
PLACE_ID = r"^[A-Za-z0-9_-]{1,128}$"
_COUNT = integer(1, MAX_ADMIT)
_PLACE_ID_RE = re.compile(PLACE_ID[1:-1])


def _count(value: Any) -> int:
    """``?count=`` is text: parsed, then checked as the integer it must be."""
    text = str(value).strip()
    try:
        number: Any = int(text, 10)
    except ValueError:
        number = text[:37] + "..." if len(text) > 40 else text
    checked: int = _COUNT.check(number)
    return checked


def _place_id(value: Any) -> str:
    if not isinstance(value, str) or not _PLACE_ID_RE.fullmatch(value):
        refuse("must be 1-128 characters of A-Z, a-z, 0-9, _ and -")
    return value


Count = Annotated[int, Check(_count, "an integer", ge=1, le=MAX_ADMIT)]
PlaceId = Annotated[str, Check(_place_id, "a place id", pattern=PLACE_ID)]


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def _problems(problems: list[Problem], status: int = 422) -> Response:
    return _json({"detail": [p.as_dict() for p in problems]}, status)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _responses(answers: dict[int, tuple[str, type[Any]]]) -> dict[int | str, dict[str, Any]]:
    """The answers of a route on one room: its own, and the errors every such route has."""
    common = {
        404: ("Unknown room", Error),
        422: ("Refused values, every problem listed", Error),
        503: ("The store does not answer", Error),
    }
    return {
        status: {"description": description, "model": model}
        for status, (description, model) in {**common, **answers}.items()
    }


def _rooms(request: Request) -> Rooms:
    rooms: Rooms = request.app.state.rooms
    return rooms


RoomsOf = Annotated[Rooms, Depends(_rooms)]
"""The rooms of the app's engine, for a route (one app per engine; the routes are shared)."""
RoomName = Annotated[str, Path(description="The room's name")]
CHANGED = _responses({200: ("The room after the change", Room)})
router = APIRouter()


def _read(view: Callable[[Rooms], Awaitable[dict[str, Any]]]) -> Callable[..., Any]:
    """A route that reads the rooms (no parameters)."""

    async def read(rooms: RoomsOf) -> Response:
        return _json(await view(rooms))

    return read


async def _all_rooms(rooms: Rooms) -> dict[str, Any]:
    return {"rooms": await rooms.describe_all()}


for _path, _op, _summary, _model, _view in (
    ("/admin/rooms", "listRooms", "Every room", RoomList, _all_rooms),
    ("/admin/stats", "stats", "Every room plus store and event-bus health (the dashboard's feed)",
     Stats, Rooms.stats),
):  # fmt: skip
    router.add_api_route(
        _path,
        _read(_view),
        methods=["GET"],
        operation_id=_op,
        summary=_summary,
        responses={200: {"description": _summary, "model": _model}},
    )


@router.get(
    "/admin/rooms/{room}",
    operation_id="getRoom",
    summary="One room",
    responses=_responses({200: ("The room", Room)}),
)
async def get_room(rooms: RoomsOf, room: RoomName) -> Response:
    return _json(await rooms.describe(rooms.get(room)))


@router.patch(
    "/admin/rooms/{room}",
    operation_id="patchRoom",
    summary="Override policy fields at runtime (all replicas follow)",
    responses=_responses(
        {
            200: ("The room after the change", Room),
            400: ("The body is not JSON", Error),
            413: ("The body is too large", Error),
            422: ("Refused values, every problem listed", Error),
        }
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PolicyPatch"}}
            },
        }
    },
)
async def patch_room(request: Request, rooms: RoomsOf, room: RoomName) -> Response:
    runtime = rooms.get(room)
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _json({"detail": f"body larger than {MAX_BODY_BYTES} bytes"}, 413)
    try:
        patch = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        return _json({"detail": f"body must be a JSON object: {exc}"}, 400)
    except RecursionError:  # within the size limit, but nested deeper than the decoder goes
        return _json({"detail": "body must be a JSON object: nested too deeply"}, 400)
    problems = await rooms.patch(runtime, patch)
    if problems:
        return _problems(problems)
    return _json(await rooms.describe(runtime))


def _change(action: Callable[[Rooms, RoomRuntime], Awaitable[None]]) -> Callable[..., Any]:
    """A route that changes a room's runtime state, then describes the room."""

    async def change(rooms: RoomsOf, room: RoomName) -> Response:
        runtime = rooms.get(room)
        await action(rooms, runtime)
        return _json(await rooms.describe(runtime))

    return change


async def _pause(rooms: Rooms, room: RoomRuntime) -> None:
    await rooms.pause(room, True)


async def _resume(rooms: Rooms, room: RoomRuntime) -> None:
    await rooms.pause(room, False)


for _path, _method, _op, _summary, _action in (
    ("overrides", "DELETE", "resetOverrides", "Drop every runtime override", Rooms.reset),
    ("pause", "POST", "pauseRoom", "Stop admissions (newcomers queue)", _pause),
    ("resume", "POST", "resumeRoom", "Restart admissions", _resume),
):
    router.add_api_route(
        f"/admin/rooms/{{room}}/{_path}",
        _change(_action),
        methods=[_method],
        operation_id=_op,
        summary=_summary,
        responses=CHANGED,
    )


@router.post(
    "/admin/rooms/{room}/admit",
    operation_id="admitNow",
    summary="Promote up to count waiters now, ignoring pause and rate",
    responses=_responses({200: ("How many were promoted", AdmitResult), 422: ("Bad count", Error)}),
)
async def admit(rooms: RoomsOf, room: RoomName, count: Annotated[Count, Query()] = 1) -> Response:
    runtime = rooms.get(room)
    promoted = await rooms.admit(runtime, count)
    described = await rooms.describe(runtime)
    return _json({"room": runtime.name, "requested": count, "promoted": promoted, **described})


@router.post(
    "/admin/rooms/{room}/sessions/{place_id}/revoke",
    operation_id="revokeSession",
    summary="End a session (or place) on every replica",
    responses=_responses({200: ("Revoked", RevokeResult), 422: ("Bad place id", Error)}),
)
async def revoke(rooms: RoomsOf, room: RoomName, place_id: Annotated[PlaceId, Path()]) -> Response:
    runtime = rooms.get(room)
    was = await rooms.revoke(runtime, place_id)
    return _json({"room": runtime.name, "place_id": place_id, "previous_status": was.value})


@router.get(
    "/admin/openapi.json",
    operation_id="openapi",
    summary="This document",
    responses={
        200: {
            "description": "OpenAPI document",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def openapi() -> Response:
    return _json(openapi_document())


for _path, _op, _summary in (
    ("/admin/", "dashboard", "Dashboard shell (no data; asks for the token, then polls stats)"),
    ("/admin/dashboard", "dashboardAlias", "Same as /admin/"),
):
    router.add_api_route(
        _path,
        dashboard,
        methods=["GET"],
        operation_id=_op,
        summary=_summary,
        response_class=HTMLResponse,
        openapi_extra={"security": []},
        responses={200: {"description": "HTML page"}},
    )


router.routes.extend(schedule_router.routes)  # a scheduled sale (admin.schedule)
router.routes.extend(history_router.routes)  # the console's charts (admin.history_api)


# HEAD wherever GET is answered, as Starlette's own routes do (FastAPI's do not); left out of
# the document, which describes the GET.
for _route in list(router.routes):
    if isinstance(_route, APIRoute) and _route.methods == {"GET"}:
        router.add_api_route(
            _route.path,
            _route.endpoint,
            methods=["HEAD"],
            response_class=_route.response_class,
            include_in_schema=False,
        )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _json({"detail": exc.detail}, exc.status_code, exc.headers)


async def _bad_parameter(request: Request, exc: Exception) -> Response:
    """FastAPI's parameter errors in the API's own form: ``{"field", "error"}`` each."""
    assert isinstance(exc, RequestValidationError)
    errors = [{**item, "loc": tuple(item["loc"])[1:]} for item in exc.errors()]  # drop "query"
    problems = [
        Problem(suffix.lstrip(".") or "request", message)
        for suffix, message in error_messages(errors)
    ]
    return _problems(problems)


async def _unknown_room(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UnknownRoom)
    return _json({"detail": f"unknown room: {exc.args[0]!r}"}, 404)


async def _store_down(request: Request, exc: Exception) -> Response:
    log.warning("admin: store unavailable: %s", exc)
    return _json({"detail": "store unavailable"}, 503, {"retry-after": "1"})


def build_admin(
    engine: Engine,
    token: str,
    *,
    metrics: ASGIApp | None = None,
    history_interval: float = DEFAULT_INTERVAL,
    history: History | None = None,
) -> ASGIApp:
    """The admin ASGI app for one engine, behind bearer-token authentication.

    Args:
        engine: the running engine (its gatekeeper, controller, metrics registry).
        token: the admin bearer token (``WAITROOM_ADMIN_TOKEN``).
        metrics: the ``/metrics`` endpoint; default this process's registry (``serve
            --workers N`` passes one that answers for every worker).
        history_interval: seconds between two samples of the console's charts (tests
            shorten it); the history keeps the last 360 samples.
        history: the history to fill and serve (default a new one at ``history_interval``).
    """
    rooms = Rooms(engine)
    history = history if history is not None else History(interval=history_interval)
    sampler = Sampler(rooms, history)
    app = FastAPI(
        lifespan=sampler.lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        routes=[Route("/metrics", metrics or metrics_app(rooms.registry), methods=["GET"])],
        exception_handlers={
            HTTPException: _http_error,
            RequestValidationError: _bad_parameter,
            UnknownRoom: _unknown_room,
            StoreDown: _store_down,
        },
    )
    app.state.rooms = rooms
    app.state.history = history
    app.state.sampler = sampler
    app.add_middleware(StartSampler, sampler=sampler)
    # The shared route objects themselves (they find their engine through request.app), so
    # the app's route table is the one the OpenAPI document describes.
    app.router.routes.extend(router.routes)
    sampler.start_if_in_loop()  # serve runs this listener without a lifespan (admin.sampler)
    return BearerAuth(app, token, public_paths=PUBLIC_PATHS)


@cache
def _openapi() -> str:
    return json.dumps(document(router.routes))


def openapi_document() -> dict[str, Any]:
    """The admin API's OpenAPI document (a fresh copy), generated from the routes' models."""
    result: dict[str, Any] = json.loads(_openapi())
    return result
