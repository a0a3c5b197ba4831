"""The ETA simulation's scenarios (``bench.eta_sim``): a room, its arrivals and its visitors'
behaviour, low and high traffic."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SCENARIOS", "Scenario"]


@dataclass(frozen=True)
class Scenario:
    name: str
    traffic: str
    """``low`` or ``high``."""
    description: str
    capacity: int
    arrivals: tuple[tuple[float, float], ...]
    """(duration in s, arrivals per s) segments, repeated until ``duration``."""
    hold: tuple[float, float]
    """Browsing time after admission, uniform in this range (s)."""
    leave_prob: float
    """Share of visitors who press "leave" when done; the others walk away (idle-out)."""
    duration: float
    admit_rate: int = 0
    session_ttl: float = 300.0
    patience: float | None = None
    """Mean time (s, exponential) after which a waiter gives up; None: nobody does."""


SCENARIOS = (
    Scenario(
        "shop",
        "low",
        "capacity 3, a visitor every ~80 s, browse 20-120 s, half leave, half idle out",
        capacity=3,
        arrivals=((1.0, 1 / 80),),
        hold=(20, 120),
        leave_prob=0.5,
        duration=4 * 3600,
    ),
    Scenario(
        "lulls",
        "low",
        "capacity 2, quiet 10 min, then 6 visitors in a minute; browse 30-90 s and leave",
        capacity=2,
        arrivals=((600.0, 1 / 300), (60.0, 0.1)),
        hold=(30, 90),
        leave_prob=1.0,
        session_ttl=120.0,
        duration=4 * 3600,
    ),
    Scenario(
        "quiet",
        "low",
        "capacity 20, a visitor every ~28 s, browse 1-10 min, 30 % leave, some give up (3 h)",
        capacity=20,
        arrivals=((1.0, 1 / 28),),
        hold=(60, 600),
        leave_prob=0.3,
        patience=3 * 3600.0,
        duration=4 * 3600,
    ),
    Scenario(
        "rate-bound",
        "high",
        "capacity 5,000, admit_rate 600/min, 20 arrivals/s for 5 min, browse 1-5 min",
        capacity=5000,
        admit_rate=600,
        arrivals=((300.0, 20.0), (1200.0, 0.0)),
        hold=(60, 300),
        leave_prob=0.5,
        duration=1500,
    ),
    Scenario(
        "rate-then-capacity",
        "high",
        "capacity 2,000, admit_rate 600/min, 20 arrivals/s for 5 min, browse 1-5 min: the "
        "room fills at the rate, then capacity binds",
        capacity=2000,
        admit_rate=600,
        arrivals=((300.0, 20.0), (1200.0, 0.0)),
        hold=(60, 300),
        leave_prob=0.5,
        duration=1500,
    ),
    Scenario(
        "capacity-bound",
        "high",
        "capacity 300, 12 arrivals/s for 5 min, browse 20-60 s and leave",
        capacity=300,
        arrivals=((300.0, 12.0), (1200.0, 0.0)),
        hold=(20, 60),
        leave_prob=1.0,
        duration=1500,
    ),
)
