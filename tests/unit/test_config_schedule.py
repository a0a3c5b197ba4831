"""The ``schedule`` room key: accepted from TOML and JSON, refused with one message per problem,
each under its key path (``rooms[i].schedule.<key>``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.unit.config_helpers import problems_of, write
from waitroom_proxy.config import load_settings
from waitroom_proxy.config.schema import RoomModel
from waitroom_proxy.domain.schedule import Phase


def test_a_schedule_in_toml_becomes_the_rooms_schedule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[rooms]]
        name = "sale"
        capacity = 10
        [rooms.schedule]
        prequeue_at = 2030-06-01T09:30:00Z
        start_at = "2030-06-01T12:00:00+02:00"
        end_at = "2030-06-01T18:00:00Z"
        shuffle_at_start = true
        """,
    )
    room = load_settings(path, env={}).rooms[0]
    assert room.schedule is not None
    assert room.schedule.start_at == datetime(2030, 6, 1, 10, tzinfo=UTC)
    assert room.schedule.shuffle_at_start is True
    start = room.schedule.start_at.timestamp()
    assert room.schedule.phase(start - 1) is Phase.PREQUEUE
    assert room.schedule.phase(start) is Phase.OPEN


def test_every_schedule_problem_is_reported_on_its_own_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[rooms]]
        name = "sale"
        capacity = 10
        schedule = { start_at = "2030-06-01T10:00:00", end_at = "soon", shuffle = true }

        [[rooms]]
        name = "late"
        capacity = 10
        match = ["late.example/"]
        schedule = { prequeue_at = "2030-06-01T11:00:00Z", start_at = "2030-06-01T10:00:00Z" }

        [[rooms]]
        name = "empty"
        capacity = 10
        match = ["empty.example/"]
        schedule = { shuffle_at_start = true }
        """,
    )
    assert problems_of(path, env={}) == [
        "rooms[0].schedule.shuffle: unknown key (expected one of prequeue_at, start_at, end_at, "
        "shuffle_at_start)",
        "rooms[0].schedule.start_at: 2030-06-01T10:00:00 has no time zone: add Z (UTC) or an "
        "offset such as +02:00",
        "rooms[0].schedule.end_at: 'soon' is not an RFC 3339 time: write e.g. "
        "2025-06-01T10:00:00Z or 2025-06-01T12:00:00+02:00",
        "rooms[1].schedule.prequeue_at: must be before start_at (2030-06-01T11:00:00Z >= "
        "2030-06-01T10:00:00Z)",
        "rooms[2].schedule: needs start_at, end_at or both",
        "rooms[2].schedule.shuffle_at_start: needs prequeue_at: without a pre-queue there is "
        "nobody to shuffle",
    ]


def test_the_room_model_validates_a_schedule_from_json() -> None:
    room = RoomModel.model_validate(
        {"name": "sale", "capacity": 1, "schedule": {"end_at": "2030-06-01T10:00:00Z"}}
    )
    assert room.schedule is not None and room.schedule.end_at is not None
    with pytest.raises(ValidationError, match=r"schedule\.end_at: must be after start_at"):
        RoomModel.model_validate(
            {
                "name": "sale",
                "capacity": 1,
                "schedule": {"start_at": "2030-06-01T10:00:00Z", "end_at": "2030-06-01T09:00:00Z"},
            }
        )
    schema = RoomModel.model_json_schema()["properties"]["schedule"]
    assert schema["anyOf"][0]["properties"]["start_at"]["format"] == "date-time"
