"""The event publisher port: domain events, published as CloudEvents without blocking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Event:
    """A domain event, published as a CloudEvent.

    ``type`` is the verb path, e.g. ``position.enqueued``; ``room`` is ``None`` for
    ``system.*`` events.
    """

    type: str
    room: str | None
    data: dict[str, Any]
    id: str
    time: float
    """Unix seconds."""


@runtime_checkable
class EventPublisher(Protocol):
    """Publishes events without ever blocking a request."""

    def publish(self, event: Event) -> None:
        """Queue an event for publishing; never blocks, never raises."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...
