"""The admin API's bodies as pydantic models: what ``/admin/openapi.json`` describes.

The room policy, and the PATCH body that changes it, come from the settings schema itself
(``RoomModel`` and its runtime-mutable fields), so the document advertises exactly the values
the API accepts. The views below only describe answers: the API builds them as plain JSON.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from waitroom_proxy.config.schema import MUTABLE_FIELDS, RoomModel
from waitroom_proxy.ports import PlaceStatus

__all__ = [
    "MAX_ADMIT",
    "AdmitResult",
    "Error",
    "HistoryView",
    "PolicyPatch",
    "RevokeResult",
    "Room",
    "RoomList",
    "SampleView",
    "Stats",
]

MAX_ADMIT = 10_000
"""Most waiters one ``admit`` call promotes."""


def _patch_model() -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name in MUTABLE_FIELDS:
        info = RoomModel.model_fields[name]
        annotated: Any = Annotated[info.annotation, *info.metadata]
        fields[name] = (annotated | None, Field(None, description=info.description))
    return create_model(
        "PolicyPatch",
        __config__=ConfigDict(
            extra="forbid",
            json_schema_extra={
                "minProperties": 1,
                "description": "Fields to override; null removes an override.",
            },
        ),
        **fields,
    )


PolicyPatch = _patch_model()
"""The PATCH body: any runtime-mutable room field, or null to drop its override."""


class FieldProblem(BaseModel):
    field: str
    error: str


class Error(BaseModel):
    """Every error answer: a sentence, or every refused field."""

    detail: str | list[FieldProblem]


class RoomStatsView(BaseModel):
    queue_length: int = Field(ge=0)
    active: int = Field(ge=0)
    promoted: int = Field(ge=0)
    admitted_total: int = Field(ge=0)


class EtaView(BaseModel):
    p50: int
    p90: int


class Room(BaseModel):
    """A room as this replica sees it: policy in force, pause, overrides, counts, ETA."""

    name: str
    paused: bool
    overrides: dict[str, Any]
    policy: RoomModel = Field(description="The policy in force; the bypass secret is masked.")
    stats: RoomStatsView | None
    eta_last_seconds: EtaView | None = None
    admissions_per_minute: float | None = None


class RoomList(BaseModel):
    rooms: list[Room]


class AdmitResult(Room):
    room: str
    requested: int
    promoted: int = Field(ge=0)


class RevokeResult(BaseModel):
    room: str
    place_id: str
    previous_status: PlaceStatus


class StoreView(BaseModel):
    up: bool
    kind: str


class EventsView(BaseModel):
    publisher: str
    counters: dict[str, float] | None


class Stats(BaseModel):
    """Every room plus store and event-bus health (the dashboard's feed)."""

    replica: str
    time: float
    store: StoreView
    events: EventsView
    rooms: list[Room]


class SampleView(BaseModel):
    """One point of the console's charts (None: unknown, e.g. the store did not answer)."""

    t: float = Field(description="When it was taken (seconds since the epoch, this replica)")
    capacity: int = Field(ge=1, description="The capacity in force")
    paused: bool
    queue_length: int | None = Field(ge=0)
    active: int | None = Field(ge=0)
    promoted: int | None = Field(ge=0)
    admissions_per_minute: float | None = Field(
        ge=0, description="Admissions by every replica since the previous sample, per minute"
    )
    eta_error_seconds: float | None = Field(
        description="Median predicted minus actual wait of the admissions this replica served "
        "since the previous sample, within the histogram's buckets (positive: sooner than "
        "predicted)"
    )
    eta_admissions: int = Field(ge=0, description="How many admissions that median is of")


class HistoryView(BaseModel):
    """The last hour of one room, oldest sample first."""

    room: str
    replica: str
    time: float = Field(description="This replica's clock when it answered")
    interval_seconds: float = Field(gt=0)
    points: int = Field(ge=2, description="Samples kept (older ones fall off)")
    samples: list[SampleView]
