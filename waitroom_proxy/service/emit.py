"""Publishing domain events, stamped with the gatekeeper's clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from waitroom_proxy.domain.events import new_event
from waitroom_proxy.ports import EventPublisher


class Emitter:
    """``emit(type, room, data)``: one event to the publisher (never blocks, never raises)."""

    __slots__ = ("clock", "publisher")

    def __init__(self, publisher: EventPublisher, clock: Callable[[], float]) -> None:
        self.publisher = publisher
        self.clock = clock

    def __call__(self, type_: str, room: str | None, data: dict[str, Any]) -> None:
        self.publisher.publish(new_event(type_, room, data, self.clock()))
