"""The admin API of a scheduled sale: read, set, preview and cancel a room's schedule.

Set and cancel are kept in the store (the room meta's ``schedule``), so every replica follows;
the phases themselves are decided by the store's clock (``service.lifecycle``). A preview
validates a schedule and tells what it would do now, storing nothing.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from waitroom_proxy.admin.auth import NO_STORE
from waitroom_proxy.admin.rooms import Rooms, StoreDown
from waitroom_proxy.config.schedule_value import JSON_SCHEMA
from waitroom_proxy.domain.schedule import (
    Schedule,
    ScheduleError,
    parse_schedule,
    rfc3339,
    schedule_warnings,
    seconds_until,
)
from waitroom_proxy.errors import StoreError
from waitroom_proxy.service import RoomRuntime

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
schedule_router = APIRouter()


def _rooms(request: Request) -> Rooms:
    rooms: Rooms = request.app.state.rooms
    return rooms


RoomsOf = Annotated[Rooms, Depends(_rooms)]
RoomName = Annotated[str, Path(description="The room's name")]
_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": JSON_SCHEMA}},
    }
}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "The schedule and where the room stands in it"},
    401: {"description": "Missing or wrong bearer token"},
    404: {"description": "Unknown room"},
    422: {"description": "Refused schedule, every problem listed with its key"},
    503: {"description": "The store does not answer"},
}


def _json(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status, headers=dict(NO_STORE))


def describe(schedule: Schedule | None, now: float) -> dict[str, Any]:
    """A schedule as the admin API shows it: its times, the phase at the store's clock
    (``now``), the next change and its countdown, and warnings."""
    if schedule is None:
        return {"schedule": None, "phase": "open", "next": None, "warnings": []}
    nxt = schedule.next_change(now)
    upcoming = None
    if nxt is not None:
        upcoming = {
            "phase": nxt[0].value,
            "at": rfc3339_at(nxt[1]),
            "in_seconds": seconds_until(nxt[1], now),
        }
    return {
        "schedule": schedule.as_dict(),
        "phase": schedule.phase(now).value,
        "store_time": rfc3339_at(now),
        "next": upcoming,
        "warnings": schedule_warnings(schedule, now),
    }


def rfc3339_at(ts: float) -> str:
    return rfc3339(datetime.fromtimestamp(ts, UTC))


async def _body_schedule(request: Request) -> Schedule | Response:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _json({"detail": f"body larger than {MAX_BODY_BYTES} bytes"}, 413)
    try:
        raw = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return _json({"detail": f"body must be a JSON object: {exc}"}, 400)
    try:
        return parse_schedule(raw)
    except ScheduleError as exc:
        detail = [{"field": key, "error": message} for key, message in exc.problems]
        return _json({"detail": detail}, 422)


def _view(rooms: Rooms, room: RoomRuntime, schedule: Schedule | None) -> dict[str, Any]:
    return {"room": room.name, **describe(schedule, rooms.ops.store_now(room))}


async def _store(rooms: Rooms, runtime: RoomRuntime, schedule: Schedule | None) -> Response:
    """Store the room's schedule (None: cancel it) for every replica; answer its view and how
    many pre-queue places joined the queue."""
    try:
        moved = await rooms.ops.set_schedule(runtime, schedule)
    except StoreError as exc:
        raise StoreDown(str(exc)) from None
    if schedule is None:
        log.info("room %s: schedule cancelled (%d pre-queue places queued)", runtime.name, moved)
    else:
        log.info("room %s: schedule set to %s", runtime.name, schedule.as_dict())
    return _json({**_view(rooms, runtime, schedule), "moved_to_queue": moved})


@schedule_router.get(
    "/admin/rooms/{room}/schedule",
    operation_id="getSchedule",
    summary="The room's schedule and its phase by the store's clock",
    responses=_ANSWERS,
)
async def get_schedule(rooms: RoomsOf, room: RoomName) -> Response:
    runtime = rooms.get(room)
    await rooms.describe(runtime)  # follow what other replicas changed
    return _json(_view(rooms, runtime, rooms.ops.schedule(runtime)))


@schedule_router.put(
    "/admin/rooms/{room}/schedule",
    operation_id="setSchedule",
    summary="Set the room's schedule (every replica follows)",
    responses=_ANSWERS,
    openapi_extra=_BODY,
)
async def set_schedule(request: Request, rooms: RoomsOf, room: RoomName) -> Response:
    runtime = rooms.get(room)
    schedule = await _body_schedule(request)
    if isinstance(schedule, Response):
        return schedule
    return await _store(rooms, runtime, schedule)


@schedule_router.post(
    "/admin/rooms/{room}/schedule/preview",
    operation_id="previewSchedule",
    summary="Validate a schedule and show what it would do now; nothing is stored",
    responses=_ANSWERS,
    openapi_extra=_BODY,
)
async def preview_schedule(request: Request, rooms: RoomsOf, room: RoomName) -> Response:
    runtime = rooms.get(room)
    schedule = await _body_schedule(request)
    if isinstance(schedule, Response):
        return schedule
    return _json({**_view(rooms, runtime, schedule), "stored": False})


@schedule_router.delete(
    "/admin/rooms/{room}/schedule",
    operation_id="cancelSchedule",
    summary="Cancel the schedule: the room is open; the pre-queue joins the queue in order",
    responses=_ANSWERS,
)
async def cancel_schedule(rooms: RoomsOf, room: RoomName) -> Response:
    return await _store(rooms, rooms.get(room), None)
