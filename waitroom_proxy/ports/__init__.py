"""Ports: the interfaces the gatekeeper needs from the outside world.

Adapters in ``waitroom_proxy.adapters`` implement them; tests may pass their own.

- ``ports.store``: the ``Store`` (queue, sessions, rate bucket, tombstones, meta) and the
  values its calls answer; its docstring holds the store model and the invariants.
- ``ports.draw``: the ``DrawStore``, the store's side of a scheduled sale.
- ``ports.events``: the ``EventPublisher`` and the ``Event`` it publishes.

Every public name is re-exported here: ``from waitroom_proxy.ports import Store``.
"""

from __future__ import annotations

from waitroom_proxy.ports.draw import DrawPhase, DrawState, DrawStore, PrequeueEntry
from waitroom_proxy.ports.events import Event, EventPublisher
from waitroom_proxy.ports.store import (
    PlaceStatus,
    QueueView,
    Reasserted,
    RoomLimits,
    RoomStats,
    Store,
    TickResult,
)

__all__ = [
    "DrawPhase",
    "DrawState",
    "DrawStore",
    "Event",
    "EventPublisher",
    "PlaceStatus",
    "PrequeueEntry",
    "QueueView",
    "Reasserted",
    "RoomLimits",
    "RoomStats",
    "Store",
    "TickResult",
]
