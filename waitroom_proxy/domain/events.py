"""Domain events and their wire form. Pure: no I/O; time is passed in.

An event is a small ``waitroom_proxy.ports.Event`` value. Adapters publish it as a
CloudEvents 1.0 JSON document on the NATS subject ``subject_for(event)``:

- room events: ``waitroom.<room>.<entity>.<verb>``, e.g. ``waitroom.shop.position.enqueued``
  (always four tokens);
- system events: ``waitroom.system.<verb>``, e.g. ``waitroom.system.store_down`` (three tokens).

A room may be called ``system``: its events still have four tokens, so the two never mix when a
consumer filters on ``waitroom.<room>.*.*``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from waitroom_proxy.domain.policy import ROOM_NAME_RE
from waitroom_proxy.ports import Event

# Room events (subject ``waitroom.<room>.<type>``).
POSITION_ENQUEUED: Final = "position.enqueued"
POSITION_ADMITTED: Final = "position.admitted"
POSITION_EXPIRED: Final = "position.expired"
POSITION_LEFT: Final = "position.left"
SESSION_STARTED: Final = "session.started"
SESSION_RENEWED: Final = "session.renewed"
"""Sampled by the caller: not every renewal is worth an event."""
SESSION_ENDED: Final = "session.ended"
SESSION_REVOKED: Final = "session.revoked"
QUEUE_PAUSED: Final = "queue.paused"
QUEUE_RESUMED: Final = "queue.resumed"
QUEUE_CONFIG_CHANGED: Final = "queue.config_changed"
QUEUE_PREQUEUE_OPENED: Final = "queue.prequeue_opened"
"""A scheduled room's pre-queue opened; ``data.commitment`` is the draw's commitment."""
QUEUE_SHUFFLED: Final = "queue.shuffled"
"""The pre-queue was released into the queue at ``start_at`` (drawn, or in arrival order)."""
QUEUE_ENDED: Final = "queue.ended"

# System events (subject ``waitroom.system.<verb>``; ``room`` is None).
SYSTEM_REPLICA_STARTED: Final = "system.replica_started"
SYSTEM_REPLICA_STOPPED: Final = "system.replica_stopped"
SYSTEM_STORE_DOWN: Final = "system.store_down"
SYSTEM_STORE_UP: Final = "system.store_up"
SYSTEM_FAIL_OPEN_ENGAGED: Final = "system.fail_open_engaged"

ROOM_EVENT_TYPES: Final[tuple[str, ...]] = (
    POSITION_ENQUEUED,
    POSITION_ADMITTED,
    POSITION_EXPIRED,
    POSITION_LEFT,
    SESSION_STARTED,
    SESSION_RENEWED,
    SESSION_ENDED,
    SESSION_REVOKED,
    QUEUE_PAUSED,
    QUEUE_RESUMED,
    QUEUE_CONFIG_CHANGED,
    QUEUE_PREQUEUE_OPENED,
    QUEUE_SHUFFLED,
    QUEUE_ENDED,
)
SYSTEM_EVENT_TYPES: Final[tuple[str, ...]] = (
    SYSTEM_REPLICA_STARTED,
    SYSTEM_REPLICA_STOPPED,
    SYSTEM_STORE_DOWN,
    SYSTEM_STORE_UP,
    SYSTEM_FAIL_OPEN_ENGAGED,
)
EVENT_TYPES: Final[frozenset[str]] = frozenset(ROOM_EVENT_TYPES + SYSTEM_EVENT_TYPES)

SUBJECT_PREFIX: Final = "waitroom"
"""First token of every subject; the stream captures ``waitroom.>``."""
CLOUDEVENT_TYPE_PREFIX: Final = "io.waitroom."
"""CloudEvents ``type`` = this + the event type, e.g. ``io.waitroom.position.enqueued``."""
CONTENT_TYPE: Final = "application/json"


def new_event(
    type: str,
    room: str | None,
    data: Mapping[str, Any] | None,
    now: float,
    *,
    id: str | None = None,
) -> Event:
    """Build an event.

    Args:
        type: one of ``EVENT_TYPES``, e.g. ``POSITION_ENQUEUED``.
        room: the room name for room events; must be None for ``system.*`` events.
        data: the payload (JSON-serialisable values); copied.
        now: Unix seconds.
        id: the event id; by default a fresh UUIDv7 built from ``now`` (time-ordered, unique).

    Raises:
        ValueError: unknown type, or a room that does not fit the type (a programming error).
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    if type.startswith("system."):
        if room is not None:
            raise ValueError(f"{type} is a system event: room must be None, got {room!r}")
    elif room is None or not ROOM_NAME_RE.fullmatch(room):
        raise ValueError(f"{type} needs a room name matching [a-z0-9_-]{{1,64}}, got {room!r}")
    return Event(
        type=type,
        room=room,
        data=dict(data or {}),
        id=id if id is not None else uuid7(now),
        time=now,
    )


def uuid7(now: float, rand: bytes | None = None) -> str:
    """A UUIDv7 string (RFC 9562): 48-bit Unix milliseconds, then 74 random bits.

    Ids made later sort after ids made earlier (at millisecond resolution), which keeps stream
    dumps readable. ``rand`` (10 bytes) makes the result deterministic for tests.
    """
    ms = int(now * 1000) & ((1 << 48) - 1)
    r = int.from_bytes(rand if rand is not None else os.urandom(10), "big") & ((1 << 80) - 1)
    rand_a = (r >> 64) & 0xFFF  # 12 bits
    rand_b = r & ((1 << 62) - 1)  # 62 bits
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def subject_for(event: Event) -> str:
    """The NATS subject of an event: ``waitroom.<room>.<entity>.<verb>`` or
    ``waitroom.system.<verb>``."""
    if event.room is None:
        return f"{SUBJECT_PREFIX}.{event.type}"
    return f"{SUBJECT_PREFIX}.{event.room}.{event.type}"


def rfc3339(ts: float) -> str:
    """Unix seconds → RFC 3339 UTC with milliseconds, e.g. ``2025-01-31T12:00:00.123Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_cloudevent(event: Event, source: str) -> dict[str, Any]:
    """The CloudEvents 1.0 (structured mode, JSON) form of an event.

    ``subject`` is the room; system events have none (the attribute is optional).
    ``source`` identifies the producer, e.g. ``waitroom-proxy/<replica-id>``.
    """
    ce: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "type": CLOUDEVENT_TYPE_PREFIX + event.type,
        "source": source,
        "time": rfc3339(event.time),
        "datacontenttype": CONTENT_TYPE,
        "data": event.data,
    }
    if event.room is not None:
        ce["subject"] = event.room
    return ce


def encode_cloudevent(event: Event, source: str) -> bytes:
    """``to_cloudevent`` as compact UTF-8 JSON. Values JSON cannot express become strings.

    Raises:
        ValueError: the data cannot be encoded at all (e.g. a circular reference).
    """
    return json.dumps(
        to_cloudevent(event, source),
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    ).encode()


def event_type_of(cloudevent_type: str) -> str:
    """``io.waitroom.position.enqueued`` → ``position.enqueued`` (other strings unchanged)."""
    return cloudevent_type.removeprefix(CLOUDEVENT_TYPE_PREFIX)
