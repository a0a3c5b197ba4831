"""The ``schedule`` room key as a settings value: a table checked by ``domain.schedule``.

The domain's :func:`~waitroom_proxy.domain.schedule.parse_schedule` holds every rule and
message; this module only adapts it to the schema (a pydantic validator and a JSON schema for
the admin API's OpenAPI document) and to the loader (one problem per line, each with its key
path, as for every other key).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from waitroom_proxy.config.problems import Problems, refuse
from waitroom_proxy.domain.schedule import Schedule, ScheduleError, parse_schedule

_TIME = {"type": "string", "format": "date-time"}
JSON_SCHEMA: dict[str, Any] = {
    "title": "Schedule",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "prequeue_at": _TIME,
        "start_at": _TIME,
        "end_at": _TIME,
        "shuffle_at_start": {"type": "boolean", "default": False},
    },
}


def check_schedule_value(value: Any) -> Schedule | None:
    """A ``Schedule`` from a table (TOML, JSON), or an existing one; None stays None."""
    if value is None or isinstance(value, Schedule):
        return value
    try:
        return parse_schedule(value, prefix="schedule")
    except ScheduleError as exc:
        refuse("; ".join(f"{path}: {message}" for path, message in exc.problems))


def schedule_problems(path: str, raw: Any, problems: Problems) -> Schedule | None:
    """The loader's check: each problem on its own line, under the key path ``path``
    (``rooms[0].schedule.end_at: must be after start_at ...``). None when refused."""
    try:
        return parse_schedule(raw, prefix=path)
    except ScheduleError as exc:
        for key, message in exc.problems:
            problems.add(key, message)
        return None


ScheduleValue = Annotated[
    Schedule | None,
    PlainValidator(check_schedule_value),
    PlainSerializer(lambda s: s.as_dict() if s is not None else None),
    WithJsonSchema({"anyOf": [JSON_SCHEMA, {"type": "null"}]}),
]
"""The ``schedule`` key's type: a validated ``Schedule`` or None (no schedule)."""
