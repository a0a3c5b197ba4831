"""A scheduled sale's lifecycle (the ``schedule`` of a room). Pure: every function takes ``now``.

A room with a schedule goes through four phases, decided by the time alone::

    idle ──prequeue_at──▶ prequeue ──start_at──▶ open ──end_at──▶ ended

- ``idle`` (before ``prequeue_at``, or before ``start_at`` without a pre-queue): a countdown
  page; nobody is admitted, nobody gets a ticket.
- ``prequeue`` (``prequeue_at`` ≤ now < ``start_at``): visitors get tickets without a position;
  the commitment to the shuffle seed is published (``domain.draw``).
- ``open`` (``start_at`` ≤ now < ``end_at``): the room works as without a schedule; with
  ``shuffle_at_start`` the pre-queue was ordered once by the draw at ``start_at``.
- ``ended`` (``end_at`` ≤ now): the sold-out page; nobody new is admitted.

**Whose clock.** ``now`` must be the *store's* clock (``RoomStats.now_ms / 1000``, Redis
``TIME``), never the replica's ``time.time()``: a replica 90 s fast would otherwise open the
room 90 s early on its own. Boundaries are half-open (``[start_at, end_at)``), so at any instant
exactly one phase holds and every replica reading the same store time agrees. Where the store
itself must decide (the one shuffle at the start, refusing arrivals after the end),
:meth:`Schedule.store_args` gives the boundaries in milliseconds for the script to compare with
its ``TIME``.

**The keys and what is optional** (validated by :func:`parse_schedule`, one message per
problem, each with its key path, as the configuration does):

============== ========== =============================================================
key            required   rule
============== ========== =============================================================
prequeue_at    no         needs ``start_at``; strictly before it
start_at       see below  strictly before ``end_at``
end_at         see below  --
shuffle_at     no         (``shuffle_at_start``, bool, default false) needs ``prequeue_at``:
_start                    without a pre-queue there is nobody to shuffle
============== ========== =============================================================

At least one of ``start_at`` and ``end_at`` is required (an empty schedule is a mistake, not a
room without one). Times are RFC 3339 date-times *with* an offset (``2025-06-01T10:00:00Z``,
``2025-06-01T12:00:00+02:00``); a time without one is refused rather than read in the server's
zone, which differs between a laptop and a container. TOML offset date-times (unquoted) are
accepted as they are; TOML local date-times and dates are refused for the same reason. Leap
seconds (``:60``) are refused: Python cannot represent them, and no sale starts on one.
:func:`schedule_warnings` lists what is legal but probably not meant (a sale that has already
ended, a pre-queue of more than a week).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from waitroom_proxy.ports import DrawPhase

KEYS = ("prequeue_at", "start_at", "end_at", "shuffle_at_start")
_EXAMPLE = "write e.g. 2025-06-01T10:00:00Z or 2025-06-01T12:00:00+02:00"
_ADD_ZONE = "add Z (UTC) or an offset such as +02:00"
LONG_PREQUEUE = timedelta(days=7)

_RFC3339 = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:(?P<sec>\d{2})(?:\.\d{1,9})?)"
    r"(?P<tz>[Zz]|[+-]\d{2}:\d{2})?$",
    re.ASCII,  # \d is [0-9] only: no other scripts' digits
)


Phase = DrawPhase
"""Where a scheduled room is in its lifecycle: the phase the store's ``draw_step`` answers too."""


class ScheduleError(ValueError):
    """A schedule that cannot be used; ``problems`` holds (key path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {msg}" for key, msg in problems))


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated schedule. Times are timezone-aware; build one with :func:`parse_schedule`."""

    start_at: datetime | None = None
    end_at: datetime | None = None
    prequeue_at: datetime | None = None
    shuffle_at_start: bool = False
    _bounds: tuple[float | None, float | None, float | None] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        problems = check_schedule(
            self.prequeue_at, self.start_at, self.end_at, self.shuffle_at_start
        )
        if problems:
            raise ScheduleError(problems)
        bounds = tuple(
            t.timestamp() if t is not None else None
            for t in (self.prequeue_at, self.start_at, self.end_at)
        )
        object.__setattr__(self, "_bounds", bounds)  # computed once: phase() is per request

    def phase(self, now: float) -> Phase:
        """The phase at ``now`` (Unix seconds, store clock)."""
        pre, start, end = self._bounds
        if end is not None and now >= end:
            return Phase.ENDED
        if start is None or now >= start:
            return Phase.OPEN
        if pre is not None and now >= pre:
            return Phase.PREQUEUE
        return Phase.IDLE

    def store_args(self) -> tuple[int, int, int]:
        """(prequeue_at, start_at, end_at) in Unix milliseconds, 0 when absent: what a Lua
        script compares with the store's ``TIME``, so the store itself decides the phase (and
        runs the shuffle once its own clock passes ``start_at``), whatever a replica's clock."""
        pre, start, end = (round(b * 1000) if b is not None else 0 for b in self._bounds)
        return pre, start, end

    def next_change(self, now: float) -> tuple[Phase, float] | None:
        """The next phase and when it begins (Unix seconds), or None once ended."""
        for at, phase in (
            (self.prequeue_at, Phase.PREQUEUE),
            (self.start_at, Phase.OPEN),
            (self.end_at, Phase.ENDED),
        ):
            if at is not None and now < at.timestamp():
                return phase, at.timestamp()
        return None

    def status_fields(self, now: float) -> dict[str, Any]:
        """What the JSON status (and page) adds for the phase at ``now``.

        ``idle``: ``opens_at`` (when tickets are first given: the pre-queue, else the start)
        and ``starts_at``; ``prequeue``: ``starts_at``; ``ended``: ``ended_at``; ``open``:
        ``ends_at`` when there is an end. Times are RFC 3339 in UTC (``...Z``); ``status`` is
        included except while open (the room's own status applies then).
        """
        phase = self.phase(now)
        out: dict[str, Any] = {}
        if phase is Phase.IDLE:
            opens = self.prequeue_at or self.start_at
            assert opens is not None and self.start_at is not None  # idle needs a start
            out = {
                "status": "idle",
                "opens_at": rfc3339(opens),
                "starts_at": rfc3339(self.start_at),
            }
        elif phase is Phase.PREQUEUE:
            assert self.start_at is not None
            out = {"status": "prequeue", "starts_at": rfc3339(self.start_at)}
        elif phase is Phase.ENDED:
            assert self.end_at is not None
            out = {"status": "ended", "ended_at": rfc3339(self.end_at)}
        elif self.end_at is not None:
            out = {"ends_at": rfc3339(self.end_at)}
        return out

    def as_dict(self) -> dict[str, Any]:
        """The schedule as JSON (what the admin API shows and accepts back)."""
        return {
            "prequeue_at": rfc3339(self.prequeue_at) if self.prequeue_at else None,
            "start_at": rfc3339(self.start_at) if self.start_at else None,
            "end_at": rfc3339(self.end_at) if self.end_at else None,
            "shuffle_at_start": self.shuffle_at_start,
        }


def rfc3339(value: datetime) -> str:
    """``value`` as an RFC 3339 UTC time, whole seconds unless it has a fraction."""
    utc = value.astimezone(UTC)
    text = utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def parse_time(value: object, key: str = "time") -> datetime:
    """An RFC 3339 date-time with an offset (a string, or an aware ``datetime`` from TOML).

    Raises:
        ValueError: with a message that names ``key`` and says what to write instead.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{key}: {value.isoformat()} has no time zone: {_ADD_ZONE}")
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{key}: {value.isoformat()} is out of range") from None
        return value
    if isinstance(value, date | time):
        raise ValueError(f"{key}: {value.isoformat()} is not a date and time: {_EXAMPLE}")
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a time as text, got {type(value).__name__}: {_EXAMPLE}")
    text = value.strip()
    m = _RFC3339.match(text)
    if m is None:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise ValueError(f"{key}: {shown!r} is not an RFC 3339 time: {_EXAMPLE}")
    if m["tz"] is None:
        raise ValueError(f"{key}: {text} has no time zone: {_ADD_ZONE}")
    if m["sec"] == "60":
        raise ValueError(f"{key}: {text} is a leap second, which is not supported")
    iso = f"{m['date']}T{m['time']}{'+00:00' if m['tz'] in 'Zz' else m['tz']}"
    try:
        parsed = datetime.fromisoformat(iso)  # keeps microseconds; finer digits are dropped
        parsed.astimezone(UTC)
    except ValueError as exc:  # month 13, 25:00, offset +24:00...
        raise ValueError(f"{key}: {text} is not a valid time ({exc})") from None
    except OverflowError:
        raise ValueError(f"{key}: {text} is out of range") from None
    return parsed


def check_schedule(
    prequeue_at: datetime | None,
    start_at: datetime | None,
    end_at: datetime | None,
    shuffle_at_start: bool = False,
    *,
    prefix: str = "schedule",
) -> list[tuple[str, str]]:
    """The ordering and presence rules; returns (key path, message) pairs, empty if valid."""
    problems: list[tuple[str, str]] = []
    for key, at in (("prequeue_at", prequeue_at), ("start_at", start_at), ("end_at", end_at)):
        if at is not None and (at.tzinfo is None or at.utcoffset() is None):
            problems.append((f"{prefix}.{key}", "has no time zone"))
    if problems:
        return problems
    if start_at is None and end_at is None:
        problems.append((prefix, "needs start_at, end_at or both"))
    if prequeue_at is not None and start_at is None:
        problems.append((f"{prefix}.prequeue_at", "needs start_at: a pre-queue waits for a start"))
    if shuffle_at_start and prequeue_at is None:
        why = "needs prequeue_at: without a pre-queue there is nobody to shuffle"
        problems.append((f"{prefix}.shuffle_at_start", why))
    if prequeue_at is not None and start_at is not None and not prequeue_at < start_at:
        why = f"must be before start_at ({rfc3339(prequeue_at)} >= {rfc3339(start_at)})"
        problems.append((f"{prefix}.prequeue_at", why))
    if start_at is not None and end_at is not None and not start_at < end_at:
        why = f"must be after start_at ({rfc3339(end_at)} <= {rfc3339(start_at)})"
        problems.append((f"{prefix}.end_at", why))
    return problems


def parse_schedule(raw: object, *, prefix: str = "schedule") -> Schedule:
    """A :class:`Schedule` from TOML, JSON or environment values (strings or datetimes).

    Raises:
        ScheduleError: listing every problem with its key path (unknown keys, bad times,
            missing or misordered times).
    """
    if not isinstance(raw, Mapping):
        raise ScheduleError([(prefix, f"must be a table with the keys {', '.join(KEYS)}")])
    problems: list[tuple[str, str]] = []
    for key in raw:
        if key not in KEYS:
            problems.append((f"{prefix}.{key}", f"unknown key (expected one of {', '.join(KEYS)})"))
    times: dict[str, datetime | None] = {}
    for key in ("prequeue_at", "start_at", "end_at"):
        value = raw.get(key)
        if value is None:
            times[key] = None
            continue
        try:
            times[key] = parse_time(value, f"{prefix}.{key}")
        except ValueError as exc:
            path, _, message = str(exc).partition(": ")
            problems.append((path, message))
            times[key] = None
    shuffle = raw.get("shuffle_at_start", False)
    if not isinstance(shuffle, bool):
        problems.append((f"{prefix}.shuffle_at_start", "must be true or false"))
        shuffle = False
    if problems:
        raise ScheduleError(problems)
    # The ordering rules under this key path (the dataclass's own check names "schedule").
    problems = check_schedule(
        times["prequeue_at"], times["start_at"], times["end_at"], shuffle, prefix=prefix
    )
    if problems:
        raise ScheduleError(problems)
    return Schedule(
        start_at=times["start_at"],
        end_at=times["end_at"],
        prequeue_at=times["prequeue_at"],
        shuffle_at_start=shuffle,
    )


def schedule_warnings(schedule: Schedule, now: float, *, prefix: str = "schedule") -> list[str]:
    """Legal but probably unintended: worth a log line at start-up or from the admin API."""
    out: list[str] = []
    if schedule.end_at is not None and schedule.end_at.timestamp() <= now:
        out.append(f"{prefix}.end_at {rfc3339(schedule.end_at)} has passed: the room is ended")
    elif schedule.start_at is not None and schedule.start_at.timestamp() <= now:
        out.append(f"{prefix}.start_at {rfc3339(schedule.start_at)} has passed: the room is open")
    pre, start = schedule.prequeue_at, schedule.start_at
    if pre is not None and start is not None and start - pre > LONG_PREQUEUE:
        out.append(f"{prefix}: the pre-queue lasts more than {LONG_PREQUEUE.days} days")
    return out


def seconds_until(at: float, now: float) -> int:
    """Whole seconds left until ``at`` (for a countdown), never negative."""
    return max(0, math.ceil(at - now))
