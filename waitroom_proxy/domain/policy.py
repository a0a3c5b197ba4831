"""Room policy values: what an operator configures for one room.

These are plain, immutable values. ``waitroom_proxy.config`` builds them from TOML, environment
and CLI flags and validates them; everything downstream trusts them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from waitroom_proxy.domain.schedule import Schedule

ROOM_NAME_RE = re.compile(r"^[a-z0-9_-]{1,64}$")


class Mode(StrEnum):
    """How a room admits visitors."""

    FIFO = "fifo"
    """First come, first served."""
    RANDOM = "random"
    """Lottery: each waiter draws a random place at arrival; admission follows the draw."""
    PASSTHROUGH = "passthrough"
    """Everyone passes at once; sessions are still counted (observe before enforcing)."""
    REJECT = "reject"
    """Sold out: nobody new gets in; existing sessions keep passing."""
    QUEUE_ALL = "queue_all"
    """Admissions paused: everyone new queues, nobody is promoted."""


class FailMode(StrEnum):
    """What a room does for newcomers while the store is unreachable."""

    OPEN = "open"
    CLOSED = "closed"


SESSION_GRACE = 5.0
"""Seconds the store keeps a session past its token's expiry (see ``RoomPolicy.session_grace``)."""


@dataclass(frozen=True, slots=True)
class Bypass:
    """Requests that skip the waiting room entirely."""

    paths: tuple[str, ...] = ()
    """Path prefixes (``/static/``) or globs (``*.css``, ``/assets/*``)."""
    methods: tuple[str, ...] = ()
    """HTTP methods, upper case (``OPTIONS``)."""
    cidrs: tuple[str, ...] = ()
    """Client networks (``10.0.0.0/8``, ``::1/128``)."""
    secret_header: str = "waitroom-bypass"  # noqa: S105 (a header name)
    """Header name (lower case) that carries the bypass secret."""
    secret: str | None = field(default=None, repr=False)
    """Value of the bypass header that lets a request through; ``None`` disables it."""


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    """One room's configuration. Durations are in seconds."""

    name: str
    capacity: int
    match: tuple[str, ...] = ("*/",)
    admit_rate: int = 0
    """Max new admissions per minute; 0 = bounded by capacity only."""
    session_ttl: float = 300.0
    session_renewal: bool = True
    session_max: float = 3600.0
    heartbeat_interval: float = 10.0
    abandon_after: float = 120.0
    claim_timeout: float = 30.0
    mode: Mode = Mode.FIFO
    bypass: Bypass = field(default_factory=Bypass)
    fail_mode: FailMode = FailMode.OPEN
    page_status: int = 200
    template: str | None = None
    max_queue_length: int = 1_000_000
    activity_interval: float = 30.0
    """Session activity is reported to the store at most this often per session."""
    pow_difficulty: int = 0
    """Proof of work before a ticket (leading zero bits, ``domain.pow``); 0 = off."""
    message: str | None = None
    """A notice to waiters on the page and in the JSON (set live from the admin API)."""
    page_title: str | None = None
    """The page's title and heading label instead of "Waiting room" (the operator's brand)."""
    page_logo: str | None = None
    """An image file inlined in the page (a ``data:`` URI: the page still loads nothing)."""
    page_accent: str | None = None
    page_background: str | None = None
    page_text: str | None = None
    """Colours (``#rrggbb``) of the page's accent, background and text."""
    page_links: tuple[tuple[str, str], ...] = ()
    """(label, href) links in the page's footer (help, terms, the operator's home)."""
    session_binding: str = "none"
    """Bind sessions to the client: ``none``, ``ip`` (/24, /64), ``ua`` or ``ip+ua``."""
    schedule: Schedule | None = None
    """A scheduled sale (``domain.schedule``): idle, pre-queue, open, ended; None = always
    open."""

    @property
    def session_grace(self) -> float:
        """Extra time the store keeps an idle session beyond ``session_ttl``: 5 s.

        The store must never end a session whose token is still valid (tokens are checked
        without the store, so that would let more than ``capacity`` visitors through). A
        token lives ``session_ttl`` from its signing, and every renewal is reported to the
        store (``Gatekeeper.renewal_for``), so the store's deadline is always at least the
        latest token's expiry; the grace only covers the report's trip (the controller flushes
        about every 0.5 s) and small clock differences between replicas. So the slot is freed
        at most ``session_ttl + 5`` s after the visitor's last request.
        """
        return SESSION_GRACE
