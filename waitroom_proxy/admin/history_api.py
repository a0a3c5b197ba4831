"""``GET /admin/rooms/{room}/history``: the last hour of a room, for the console's charts.

The samples come from this admin listener's own :class:`~waitroom_proxy.admin.history.History`
(kept in memory, filled by :mod:`waitroom_proxy.admin.sampler`): a listener that just started
has a short history, and each replica answers with its own samples of the shared store.
``?since=T`` answers only the samples taken after ``T`` (the ``t`` of the last sample a client
holds), so a console that polls fetches the whole hour once and then one or two points.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from waitroom_proxy.admin.auth import NO_STORE
from waitroom_proxy.admin.history import History
from waitroom_proxy.admin.models import Error, HistoryView
from waitroom_proxy.admin.rooms import Rooms
from waitroom_proxy.config.problems import refuse
from waitroom_proxy.config.values import Check

__all__ = ["history_router"]

MAX_SINCE = 1e11
"""Largest ``since`` accepted (year 5138): anything above is not a time."""

history_router = APIRouter()


def _since(value: Any) -> float:
    """``?since=`` is text: a finite number of seconds since the epoch, 0 to 10¹¹."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        refuse("must be a number of seconds since the epoch")
    if not math.isfinite(number) or not 0 <= number <= MAX_SINCE:
        refuse(f"must be a number of seconds since the epoch, 0 to {MAX_SINCE:.0e}")
    return number


Since = Annotated[float, Check(_since, "a time in seconds since the epoch", ge=0, le=MAX_SINCE)]


@history_router.get(
    "/admin/rooms/{room}/history",
    operation_id="roomHistory",
    summary="The room's samples of the last hour (the console's charts), oldest first",
    responses={
        200: {"description": "The samples", "model": HistoryView},
        404: {"description": "Unknown room", "model": Error},
        422: {"description": "Bad since", "model": Error},
    },
)
async def room_history(
    request: Request,
    room: Annotated[str, Path(description="The room's name")],
    since: Annotated[
        Since | None, Query(description="Only samples taken after this time (a sample's t)")
    ] = None,
) -> Response:
    rooms: Rooms = request.app.state.rooms
    history: History = request.app.state.history
    runtime = rooms.get(room)
    body = {
        "room": runtime.name,
        "replica": rooms.ops.replica_id,
        "time": rooms.ops.now(),
        "interval_seconds": history.interval,
        "points": history.points,
        "samples": [s.as_dict() for s in history.samples(runtime.name, since)],
    }
    return JSONResponse(body, headers=dict(NO_STORE))
