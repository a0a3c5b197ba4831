"""A room as this replica sees it: the configured policy, runtime overrides and local state."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from waitroom_proxy.config.schema import MUTABLE_FIELDS
from waitroom_proxy.domain.eta import EtaEstimator
from waitroom_proxy.domain.lifecycle import Outage
from waitroom_proxy.domain.policy import FailMode, Mode, RoomPolicy
from waitroom_proxy.domain.rules import BypassRules, limits_for
from waitroom_proxy.ports import RoomLimits, RoomStats

log = logging.getLogger(__name__)

__all__ = ["MUTABLE_FIELDS", "RoomRuntime", "decode_overrides"]


def decode_overrides(raw: str | None) -> dict[str, Any]:
    """The runtime overrides kept in the room's meta map (JSON), ``{}`` when unreadable."""
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(slots=True)
class RoomRuntime:
    """A room as this replica currently sees it (configured policy + runtime overrides)."""

    base: RoomPolicy
    policy: RoomPolicy
    bypass: BypassRules
    eta: EtaEstimator
    paused: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    limits: RoomLimits = field(init=False)
    fail_open_tokens: float = 0.0
    fail_open_at: float = 0.0
    fail_open_active: bool = False
    last_stats: RoomStats | None = None
    stats_at: float = 0.0
    """When ``last_stats`` arrived (this replica's clock): how old the counts are that polls
    answered without the store rely on (``domain.pacing``)."""
    incarnation: str | None = None
    """The store's marker of this room's state; a change means the store lost the state."""
    held_until: float = 0.0
    held: bool = False
    max_score: int = 0
    """Highest FIFO arrival score this replica has seen (re-established after a store loss)."""
    outage: Outage = field(default_factory=Outage)
    """Store failures this replica saw for the room (who keeps a place across an outage)."""
    fail_open_ids: list[str] = field(default_factory=list)
    """Sessions admitted while the store was down, to be counted when it is back."""
    schedule_meta: str | None = None
    """The operator's schedule from the store's room meta (``service.lifecycle``), if any."""

    def __post_init__(self) -> None:
        self.limits = limits_for(self.policy, paused=self.paused, marker=self._marker())

    def _marker(self) -> str:
        """The marker direct admissions require (``RoomLimits.marker``)."""
        return self.incarnation or ""

    def mark(self, incarnation: str) -> None:
        """The store's marker of the room's state, as read (or written) by ``RoomSync``."""
        self.incarnation = incarnation
        if self.limits.marker != incarnation:
            self.limits = dataclasses.replace(self.limits, marker=incarnation)

    @classmethod
    def of(cls, policy: RoomPolicy) -> RoomRuntime:
        """The runtime of a configured room, before any override."""
        return cls(
            base=policy,
            policy=policy,
            bypass=BypassRules.compile(policy),
            eta=EtaEstimator(prior_per_minute=policy.admit_rate),
        )

    @property
    def name(self) -> str:
        return self.base.name

    def apply(self, paused: bool, overrides: dict[str, Any], held: bool = False) -> bool:
        """Apply runtime state from the store; True if anything changed.

        ``held``: admissions are held after the store lost its state (see
        ``service.sync.RoomSync``); like a pause, but not shown as one.
        """
        if paused == self.paused and overrides == self.overrides and held == self.held:
            return False
        self.held = held
        values = {k: v for k, v in overrides.items() if k in MUTABLE_FIELDS}
        try:
            if "mode" in values:
                values["mode"] = Mode(values["mode"])
            if "fail_mode" in values:
                values["fail_mode"] = FailMode(values["fail_mode"])
            policy = dataclasses.replace(self.base, **values)
            limits = limits_for(policy, paused=paused or held, marker=self._marker())
        except (ValueError, TypeError, OverflowError) as exc:
            # The admin API validates overrides; this guards against a store edited by hand.
            log.error("room %s: ignoring invalid runtime overrides: %s", self.base.name, exc)
            policy = self.base
            limits = limits_for(policy, paused=paused or held, marker=self._marker())
        self.policy = policy
        self.paused = paused
        self.overrides = dict(overrides)
        self.limits = limits
        self.eta.prior_per_second = self.policy.admit_rate / 60.0
        return True
