"""The value types of the settings schema: numbers, durations, choices, secrets, arrays.

Each type is an ``Annotated`` pydantic type written once: its bounds go to the JSON schema
(the admin API's OpenAPI document) as ``Field`` constraints, and its check, the outermost
validator, refuses with the precise message (``must be an integer 1-65535, got "abc"``) before
pydantic's own constraints are reached. Checks are strict: TOML and JSON values must already
have the right type (``capacity = "3"`` and ``true`` are refused); environment and flag text
is parsed by the loader first, as its type says.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from annotated_types import GroupedMetadata
from pydantic import BeforeValidator, Field, ValidationInfo

from waitroom_proxy.config.problems import kind_of, refuse, show

MAX_SECONDS = 31_536_000
"""Upper bound of every duration (one year): larger values overflow the store's millisecond
integers. The admin API and its OpenAPI document use the same bound (one schema)."""
MAX_INTEGER = 1_000_000_000
"""Upper bound of every count (capacity, rates, lengths)."""
MIN_SECRET_BYTES = 32
"""HS256 wants a 256-bit key (PyJWT warns below 32 bytes)."""
MIN_TOKEN_CHARS = 16
"""Admin token and bypass secret: long enough not to be guessed."""


class Check(GroupedMetadata):
    """One value type's rules, as ``Annotated`` metadata: ``Annotated[int, Check(...)]``.

    Pydantic unpacks it into the ``Field`` constraints (for the JSON schema) and, outermost,
    a ``BeforeValidator`` running ``check`` (so the precise refusal comes first).

    Args:
        check: ``check(value)`` or ``check(value, info)`` → the value as stored; refuses with
            :func:`~waitroom_proxy.config.problems.refuse`.
        expect: what a required key of this type expects ("an integer >= 1").
        constraints: ``Field`` keyword arguments (``ge``, ``le``, ``min_length``, ...).
    """

    def __init__(self, check: Callable[..., Any], expect: str = "a value", **constraints: Any):
        self.check = check
        self.expect = expect
        self.constraints = constraints

    def __iter__(self) -> Iterator[Any]:
        if self.constraints:
            yield Field(**self.constraints)
        yield BeforeValidator(self.check)

    def __repr__(self) -> str:
        return f"Check({getattr(self.check, '__name__', 'check')})"


def base_dir(info: ValidationInfo) -> Path:
    """The directory relative file paths are resolved against (the TOML file's, or the
    working directory for environment, flags and the admin API)."""
    context = info.context or {}
    base = context.get("base")
    return base if isinstance(base, Path) else Path.cwd()


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    """An integer in ``[lo, hi]``; without ``hi``, at most :data:`MAX_INTEGER`."""
    if lo is not None and hi is not None:
        desc = f"an integer {lo}-{hi}"
    elif lo is not None:
        desc = f"an integer >= {lo}"
    else:
        desc = "an integer"

    def check(value: Any) -> int:
        # bool is a subclass of int: `capacity = true` must not mean 1.
        if isinstance(value, bool) or not isinstance(value, int):
            refuse(f"must be {desc}, got {show(value)}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if hi is None and lo is not None:
                refuse(f"must be >= {lo}, got {show(value)}")
            refuse(f"must be {desc}, got {show(value)}")
        if hi is None and value > MAX_INTEGER:
            refuse(f"must be <= {MAX_INTEGER}, got {show(value)}")
        return value

    return Check(check, desc, ge=lo, le=MAX_INTEGER if hi is None else hi)


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        refuse(f"must be a number of seconds > 0, got {show(value)}")
    if value <= 0:
        refuse(f"must be > 0, got {show(value)}")
    if value > MAX_SECONDS:
        refuse(f"must be <= {MAX_SECONDS} (one year), got {show(value)}")
    return float(value)


Seconds = Annotated[float, Check(_seconds, "a number of seconds", gt=0, le=MAX_SECONDS)]
"""A duration in seconds, > 0 and at most a year."""


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        refuse(f"must be true or false, got {show(value)}")
    return value


Boolean = Annotated[bool, Check(_boolean, "true or false")]


def _choose(options: Sequence[str], value: Any) -> str:
    if isinstance(value, str) and value.strip().lower() in options:
        return value.strip().lower()
    refuse(f"must be one of {', '.join(options)}, got {show(value)}")


def choice(options: Sequence[str]) -> Check:
    """One of ``options``, given in any case."""
    return Check(lambda value: _choose(options, value), f"one of {', '.join(options)}")


def enum(options: type[StrEnum]) -> Check:
    """A member of a string enum, by its value in any case."""
    values = [member.value for member in options]
    return Check(lambda value: options(_choose(values, value)), f"one of {', '.join(values)}")


def one_of(options: Sequence[int]) -> Check:
    """One of a few integers (the waiting page's HTTP statuses)."""
    names = ", ".join(map(str, options))

    def check(value: Any) -> int:
        if isinstance(value, bool) or value not in options:
            refuse(f"must be one of {names}, got {show(value)}")
        return int(value)

    return Check(check, f"one of {names}", json_schema_extra={"enum": list(options)})


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        refuse(f"must be a non-empty string, got {show(value)}")
    return value.strip()


Text = Annotated[str, Check(_text, "a non-empty string", min_length=1)]
"""A non-empty string, trimmed."""


def secret(min_size: int, unit: str) -> Check:
    """A secret of at least ``min_size`` bytes or characters; never echoed, even refused."""

    def check(value: Any) -> str:
        if not isinstance(value, str):
            refuse(f"must be a string, got {kind_of(value)}")
        size = len(value.encode()) if unit == "bytes" else len(value)
        if size < min_size:
            refuse(
                f"must be at least {min_size} {unit} long, got {size} "
                '(generate one: python -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        return value

    return Check(check, f"a secret of at least {min_size} {unit}")


def _array(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        refuse(f"must be an array, got {show(value)}")
    return value


ARRAY = Check(_array, "an array")
"""An array (its items are each checked by their own type, each reported with its index):
``Annotated[tuple[Annotated[str, CIDR], ...], ARRAY]``."""
