"""Runtime overrides of a room's policy: a PATCH body checked with the settings schema.

Values are checked with the room fields of the settings schema (the same checks, bounds and
messages as the config file), then the schema's cross-field rules run on the policy that would
result; nothing is stored unless every field passes. Overrides merge: a PATCH changes only the
fields it names, and a ``null`` value removes that field's override.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from waitroom_proxy.config.problems import messages
from waitroom_proxy.config.schema import MUTABLE_FIELDS, RoomModel, field_adapter, room_rules
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.rules import limits_for

__all__ = ["Problem", "validate_overrides", "wire"]


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One refused field of a request."""

    field: str
    error: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "error": self.error}


def wire(value: Any) -> Any:
    """A policy value as JSON: enums by value, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [wire(v) for v in value]
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
    for key in sorted(k for k in patch if k not in MUTABLE_FIELDS):
        problems.append(
            Problem(key, f"unknown or read-only field (changeable: {', '.join(MUTABLE_FIELDS)})")
        )
    merged = {k: v for k, v in current.items() if k in MUTABLE_FIELDS}
    typed: dict[str, Any] = {}
    for key in MUTABLE_FIELDS:
        if key not in patch:
            continue
        if patch[key] is None:
            merged.pop(key, None)
            continue
        try:
            typed[key] = field_adapter(RoomModel, key).validate_python(patch[key])
        except ValidationError as exc:
            problems.extend(Problem(key + suffix, message) for suffix, message in messages(exc))
            continue
        merged[key] = wire(typed[key])
    if problems:
        return merged, problems
    try:
        # Stored overrides are JSON: their enums come back through the same checks.
        values = {k: field_adapter(RoomModel, k).validate_python(v) for k, v in merged.items()}
        effective = dataclasses.replace(base, **values)
        limits_for(effective)  # what the store will be given must be computable
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. a stored override no longer fits
        return merged, [Problem("body", f"overrides do not apply: {exc}")]
    problems.extend(Problem(key, message) for key, message in room_rules(effective))
    return merged, problems
