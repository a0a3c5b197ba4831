"""What the parts of one gatekeeper share: the rooms, the guarded store, metrics, events and
the clock (one object, so that each part's constructor names only what is its own)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from waitroom_proxy.metrics import Metrics
from waitroom_proxy.service.emit import Emitter
from waitroom_proxy.service.guarded import GuardedStore
from waitroom_proxy.service.room import RoomRuntime


@dataclass(frozen=True, slots=True)
class Context:
    rooms: Mapping[str, RoomRuntime]
    """The rooms of this process, by name."""
    store: GuardedStore
    metrics: Metrics
    emit: Emitter
    clock: Callable[[], float]
