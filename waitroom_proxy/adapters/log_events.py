"""Event publishers without a bus: the embedded default (log) and one for tests (memory).

Both have the same interface and counters as ``NatsPublisher`` (``published``, ``dropped``,
``retries``, ``buffered``, ``connected``) so the metrics module can read any of them.
"""

from __future__ import annotations

import logging
from typing import Any

from waitroom_proxy.domain.events import encode_cloudevent, subject_for
from waitroom_proxy.ports import Event

logger = logging.getLogger("waitroom_proxy.events")

DEFAULT_SOURCE = "waitroom-proxy"


def counters_of(publisher: Any) -> dict[str, float]:
    """A publisher's counters as a dict (the shape ``Metrics.watch_publisher`` reads)."""
    return {
        "published": publisher.published,
        "dropped": publisher.dropped,
        "retries": publisher.retries,
        "buffered": publisher.buffered,
        "connected": 1.0 if publisher.connected else 0.0,
    }


class LogPublisher:
    """Writes each event to the ``waitroom_proxy.events`` logger at DEBUG level.

    Used when no NATS URL is configured. A line reads
    ``<subject> <CloudEvent JSON>``. When DEBUG is off for that logger, ``publish`` only counts.
    Never raises: an event whose data cannot be encoded is counted in ``dropped``.
    """

    def __init__(self, *, source: str = DEFAULT_SOURCE) -> None:
        self.source = source
        self.published = 0
        self.dropped = 0
        self.retries = 0
        self.connected = True
        """Always True: the log is always there."""

    @property
    def buffered(self) -> int:
        """Always 0: nothing is buffered."""
        return 0

    def publish(self, event: Event) -> None:
        """Log the event (if DEBUG is enabled) and count it."""
        try:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s %s", subject_for(event), encode_cloudevent(event, self.source).decode()
                )
            self.published += 1
        except Exception:  # never fail the caller (a request) because of an event
            self.dropped += 1
            logger.warning(
                "event %s dropped: cannot encode", getattr(event, "id", "?"), exc_info=True
            )

    def counters(self) -> dict[str, float]:
        """The counters as a dict (the shape ``Metrics.watch_publisher`` reads)."""
        return counters_of(self)

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to close."""

    def __repr__(self) -> str:
        return f"LogPublisher(source={self.source!r}, published={self.published})"


class MemoryPublisher:
    """Records events in ``events`` (in order), for tests."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.published = 0
        self.dropped = 0
        self.retries = 0
        self.connected = True
        self.started = False
        self.closed = False

    @property
    def buffered(self) -> int:
        """Always 0: nothing is buffered."""
        return 0

    def publish(self, event: Event) -> None:
        """Record the event."""
        self.events.append(event)
        self.published += 1

    def counters(self) -> dict[str, float]:
        """The counters as a dict (the shape ``Metrics.watch_publisher`` reads)."""
        return counters_of(self)

    async def start(self) -> None:
        """Mark as started."""
        self.started = True

    async def close(self) -> None:
        """Mark as closed (events are kept)."""
        self.closed = True

    def types(self) -> list[str]:
        """The types of the recorded events, in order."""
        return [e.type for e in self.events]

    def of_type(self, type: str) -> list[Event]:
        """The recorded events of one type, in order."""
        return [e for e in self.events if e.type == type]

    def clear(self) -> None:
        """Forget the recorded events (counters are kept)."""
        self.events.clear()

    def __repr__(self) -> str:
        return f"MemoryPublisher(events={len(self.events)})"
