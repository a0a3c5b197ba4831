"""The gatekeeper: decides what happens to one request (DESIGN §1).

It knows rooms, tokens, the store and the event publisher through ports; it knows nothing of
HTTP. The ASGI layer (``waitroom_proxy.asgi``) turns its ``Outcome`` into responses.

Hot path: ``session_for`` answers from a cache of verified tokens and ``note_activity`` only
touches a dict; the store hears of activity in the background, coalesced per session
(``flush_activity``).

Tickets follow the lifecycle of ``waitroom_proxy.domain.lifecycle`` (its state table): a ticket
admits at most once; a session is issued only on the transition into ACTIVE; a replayed ticket
is a newcomer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from waitroom_proxy.domain import pacing
from waitroom_proxy.domain.eta import Eta, EtaEstimator
from waitroom_proxy.domain.events import new_event
from waitroom_proxy.domain.lifecycle import Outage, SpentLog, may_keep, spent_for
from waitroom_proxy.domain.matching import RoomMatcher
from waitroom_proxy.domain.policy import FailMode, Mode, RoomPolicy
from waitroom_proxy.domain.ratelimit import WindowTable, client_key
from waitroom_proxy.domain.rules import BypassRules, limits_for, refresh_seconds
from waitroom_proxy.domain.tokens import (
    Session,
    SessionCache,
    SessionSigner,
    Ticket,
    TicketSigner,
    new_place_id,
)
from waitroom_proxy.errors import StoreError, TokenError
from waitroom_proxy.metrics import Metrics
from waitroom_proxy.ports import (
    EventPublisher,
    PlaceStatus,
    QueueView,
    RoomLimits,
    RoomStats,
    Store,
)

log = logging.getLogger(__name__)

RESTORE_BATCH = 2_000
"""Most tombstones written back by one ``restore`` call (each is one Lua script run)."""

SESSION_COOKIE = "waitroom_session"
TICKET_COOKIE = "waitroom_ticket"
TICKET_MAX_AGE = 86_400

# Policy fields an operator may change at runtime (admin API); kept in the store's room meta.
MUTABLE_FIELDS = (
    "capacity",
    "admit_rate",
    "session_ttl",
    "session_renewal",
    "session_max",
    "heartbeat_interval",
    "abandon_after",
    "claim_timeout",
    "mode",
    "page_status",
    "max_queue_length",
    "fail_mode",
)


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

    def __post_init__(self) -> None:
        self.limits = limits_for(self.policy, paused=self.paused)

    @property
    def name(self) -> str:
        return self.base.name

    def apply(self, paused: bool, overrides: dict[str, Any], held: bool = False) -> bool:
        """Apply runtime state from the store; True if anything changed.

        ``held``: admissions are held after the store lost its state (see
        ``Gatekeeper.refresh_room_state``); like a pause, but not shown as one.
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
            limits = limits_for(policy, paused=paused or held)
        except (ValueError, TypeError, OverflowError) as exc:
            # The admin API validates overrides; this guards against a store edited by hand.
            log.error("room %s: ignoring invalid runtime overrides: %s", self.base.name, exc)
            policy = self.base
            limits = limits_for(policy, paused=paused or held)
        self.policy = policy
        self.paused = paused
        self.overrides = dict(overrides)
        self.limits = limits
        self.eta.prior_per_second = self.policy.admit_rate / 60.0
        return True


@dataclass(slots=True)
class Outcome:
    """What to do with a request that is not on the hot path.

    kind: ``pass`` (forward; maybe with a new session cookie), ``wait`` (waiting page / JSON),
    ``rejected`` (sold out), ``full`` (queue full), ``expired`` (place lost), ``fail_open``
    (the store is down and the room lets the request through), ``error`` (the store is down
    and the room fails closed).
    """

    kind: str
    room: RoomRuntime
    status: dict[str, Any] = field(default_factory=dict)
    cookies: list[tuple[str, str, int]] = field(default_factory=list)
    """(name, value, max_age); an empty value with max_age 0 deletes the cookie."""
    session_token: str | None = None


def _minutes(n: int) -> str:
    """Cloudflare's ``waitTimeFormatted`` wording: "1 minute", "5 minutes"."""
    return f"{n} minute" if n == 1 else f"{n} minutes"


def _reseal_after(room: RoomRuntime) -> float:
    """How stale a ticket's ``last_seen`` may get before a heartbeat re-signs it.

    ``last_seen`` only matters against ``abandon_after`` (a place survives a store loss while
    its holder was seen within it), so a sixth of that is precise enough, and most polls then
    cost no signing and send no cookie.
    """
    return min(room.policy.abandon_after / 6, 60.0)


HIT_BREAKER = ":hit"
"""Breaker key of the per-client rate limit (its keys spread over every shard of a cluster)."""
PROCESS_BREAKER = ":process"
"""Breaker key of store calls made for no room (the admin API's ping)."""
STORE_BREAKER = ":store"
"""The one breaker of a store that is a single failure domain (one server, Sentinel, memory)."""
RATE_LIMIT_PROBE = "breaker-probe"
"""The client name of the rate limit's background probe (not an address: no visitor has it)."""


class CircuitBreaker:
    """Stops calling a failing store for a short cool-down, so requests don't queue on timeouts.

    One per failure domain (``Gatekeeper.breaker_for``). A store whose ``sharded`` attribute is
    true (``RedisStore`` on a Redis Cluster) holds each room on one shard, so each room has its
    own breaker and the rate limit another: a shard that times out, refuses connections or
    answers READONLY / CLUSTERDOWN / endless MOVED opens the breakers of its own rooms only.
    Any other store is one server (or one Sentinel-managed master): every room fails with it,
    and one breaker stands for all (a request then never waits on two half-open probes).

    Opens after ``threshold`` consecutive failures; after ``cooldown`` seconds one call is let
    through (half-open: a single probe, the others still fail fast while it runs, so a slow
    store never holds more than one request); a success closes it.
    """

    def __init__(self, *, threshold: int = 3, cooldown: float = 1.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.open_until = 0.0
        self.probing = False

    def allow(self, now: float) -> bool:
        if self.failures < self.threshold:
            return True
        if now >= self.open_until and not self.probing:
            self.probing = True
            return True
        return False

    def success(self) -> bool:
        """Record a success; True if the breaker was open (the store came back)."""
        was_open = self.failures >= self.threshold
        self.failures = 0
        self.probing = False
        return was_open

    def failure(self, now: float) -> bool:
        """Record a failure; True if this failure opened the breaker."""
        self.failures += 1
        self.probing = False
        if self.failures >= self.threshold:
            self.open_until = now + self.cooldown
            return self.failures == self.threshold
        return False

    @property
    def is_open(self) -> bool:
        return self.failures >= self.threshold


class Gatekeeper:
    """Decides requests for every room of one process."""

    def __init__(
        self,
        rooms: tuple[RoomPolicy, ...],
        *,
        store: Store,
        publisher: EventPublisher,
        tickets: TicketSigner,
        sessions: SessionSigner,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        replica_id: str | None = None,
        replicas_hint: int = 1,
        client_rate_limit: int = 0,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.tickets = tickets
        self.signer = sessions
        self.metrics = metrics
        self.clock = clock
        self.replica_id = replica_id or secrets.token_hex(4)
        self.replicas_hint = max(1, replicas_hint)
        self.client_rate_limit = client_rate_limit
        self._hits_here = WindowTable()
        """This replica's count of every client's enqueues and heartbeats (``client_wait``)."""
        self.rooms: dict[str, RoomRuntime] = {
            p.name: RoomRuntime(
                base=p,
                policy=p,
                bypass=BypassRules.compile(p),
                eta=EtaEstimator(prior_per_minute=p.admit_rate),
            )
            for p in rooms
        }
        self.matcher = RoomMatcher(rooms)
        for p in rooms:
            metrics.room_store_up.labels(p.name).set(1)
        self.cache = SessionCache()
        self.spent = SpentLog()
        """Places this replica knows to be spent (``domain.lifecycle``)."""
        self.sharded = bool(getattr(store, "sharded", False))
        """Rooms fail one by one (a cluster: a breaker per room) or all together (one server)."""
        self.breakers: dict[str, CircuitBreaker] = {}
        """Per failure domain: room names, ``HIT_BREAKER``, ``PROCESS_BREAKER`` when sharded;
        else ``STORE_BREAKER`` alone."""
        self._store_down: set[str] = set()
        self._activity_reported: dict[tuple[str, str], float] = {}
        self._activity_pending: dict[str, set[str]] = {}
        self._mark_written: dict[str, float] = {}
        self._renewed: dict[str, tuple[str, Session]] = {}

    # ----------------------------------------------------------------- hot path helpers
    def room_for(self, host: str, path: str) -> RoomRuntime | None:
        policy = self.matcher.match(host, path)
        return None if policy is None else self.rooms[policy.name]

    def session_for(self, token: str, room: RoomRuntime, now: float) -> Session | None:
        """The valid session a token carries for this room, or None (never raises)."""
        s = self.cache.get(token, now)
        if s is not None:
            return s if s.room == room.name else None
        try:
            s = self.signer.verify(token, now=now, room=room.name)
        except TokenError:
            return None
        if s.place_id in self.cache.revoked:
            return None
        self.cache.put(token, s)
        self.spent.add(room.name, s.place_id, now)
        return s

    def note_activity(self, room: RoomRuntime, session: Session, now: float) -> None:
        """Record that a session was used; the store hears of it at most once per interval."""
        if not room.policy.session_renewal:
            return
        key = (room.name, session.place_id)
        last = self._activity_reported.get(key)
        if last is None or now - last >= room.policy.activity_interval:
            self._activity_reported[key] = now
            self._activity_pending.setdefault(room.name, set()).add(session.place_id)

    def session_deadline(self, room: RoomRuntime, session: Session, last_activity: float) -> float:
        """When a session ends as this replica knows it, if it was last used at
        ``last_activity`` (a WebSocket's last message): with renewal off its token's expiry;
        with renewal on ``session_ttl`` after its last use here, never past ``session_max``."""
        policy = room.policy
        if not policy.session_renewal:
            return float(session.expires_at)
        seen = max(last_activity, self._activity_reported.get((room.name, session.place_id), 0.0))
        return min(
            session.started_at + policy.session_max,
            max(float(session.expires_at), seen + policy.session_ttl),
        )

    def renewal_for(self, room: RoomRuntime, session: Session, now: float) -> str | None:
        """A fresh session token when a sliding session is past half its life, else None."""
        policy = room.policy
        if not policy.session_renewal:
            return None
        if session.expires_at - now > policy.session_ttl / 2:
            return None
        if session.expires_at >= session.started_at + policy.session_max:
            return None
        # A client that ignores the renewed cookie (a script, a cookie-less API client) keeps
        # sending the old token: hand out the same renewal instead of signing on every request.
        previous = self._renewed.get(session.place_id)
        if previous is not None and previous[1].expires_at - now > policy.session_ttl / 2:
            return previous[0]
        token, s = self.signer.issue(
            room.name,
            session.place_id,
            now=now,
            ttl=policy.session_ttl,
            started_at=session.started_at,
            max_age=policy.session_max,
        )
        self.cache.put(token, s)
        # The store must hear of every renewal: its deadline for the slot (now + session_ttl
        # + a 5 s grace) then always covers the newest token, whatever activity_interval is.
        key = (room.name, session.place_id)
        self._activity_reported[key] = now
        self._activity_pending.setdefault(room.name, set()).add(session.place_id)
        if len(self._renewed) >= 100_000:
            self._renewed.clear()
        self._renewed[session.place_id] = (token, s)
        # At most one renewal per session per half TTL, so this is sampled by construction.
        self.emit("session.renewed", room.name, {"place_id": s.place_id, "jti": s.jti})
        return token

    # ----------------------------------------------------------------- store calls
    def _domain(self, key: str | None) -> str:
        if not self.sharded:
            return STORE_BREAKER
        return key or PROCESS_BREAKER

    def breaker_for(self, key: str | None) -> CircuitBreaker:
        """The breaker a room's calls go through (``HIT_BREAKER``: the rate limit's; None:
        calls made for no room). On a store that is not sharded, the one breaker of all."""
        name = self._domain(key)
        breaker = self.breakers.get(name)
        if breaker is None:
            breaker = self.breakers[name] = CircuitBreaker()
        return breaker

    @property
    def store_ok(self) -> bool:
        """False while any breaker is open (some room, or the rate limit, has no store)."""
        return not self._store_down

    async def _call(self, op: str, fn: Callable[[], Any], room: str | None = None) -> Any:
        """One store call through the breaker of ``room`` (``HIT_BREAKER`` for the rate limit,
        None for calls made for no room; see ``breaker_for``)."""
        key = self._domain(room)
        breaker = self.breaker_for(key)
        now = time.monotonic()
        if not breaker.allow(now):
            raise StoreError(f"store circuit open ({key})")
        try:
            result = await fn()
        except StoreError:
            self.metrics.store_errors.labels(op).inc()
            if breaker.failure(time.monotonic()):
                self._store_state(key, False)
            raise
        except BaseException:
            breaker.probing = False  # a cancelled probe must not keep the breaker open
            raise
        self.metrics.store_seconds.labels(op).observe(time.monotonic() - now)
        if breaker.success() or key in self._store_down:
            self._store_state(key, True)
        return result

    def _store_state(self, key: str, up: bool) -> None:
        """A breaker opened or closed: gauges, a log line and ``system.store_down`` / ``_up``
        naming the room (or ``scope``: ``rate_limit`` / ``admin``)."""
        if up == (key not in self._store_down):
            return
        if up:
            self._store_down.discard(key)
        else:
            self._store_down.add(key)
        self.metrics.store_up.set(0 if self._store_down else 1)
        data: dict[str, Any] = {"replica": self.replica_id}
        if key == STORE_BREAKER:
            for name in self.rooms:
                self.metrics.room_store_up.labels(name).set(1 if up else 0)
            what, consequence = "every room", ": rooms apply their fail_mode"
        elif key in self.rooms:
            self.metrics.room_store_up.labels(key).set(1 if up else 0)
            data["room"] = key
            what, consequence = f"room {key}", ": it applies its fail_mode"
        else:
            data["scope"] = "rate_limit" if key == HIT_BREAKER else "admin"
            what, consequence = f"the {data['scope'].replace('_', ' ')}", ""
        if up:
            log.warning("store is reachable again for %s", what)
            self.emit("system.store_up", None, data)
        else:
            log.error("store unreachable for %s%s", what, consequence)
            self.emit("system.store_down", None, data)

    def emit(self, type_: str, room: str | None, data: dict[str, Any]) -> None:
        self.publisher.publish(new_event(type_, room, data, self.clock()))

    # ----------------------------------------------------------------- decisions
    def _issue_session(self, room: RoomRuntime, place_id: str, now: float) -> tuple[str, Session]:
        policy = room.policy
        ttl = policy.session_ttl if policy.session_renewal else policy.session_max
        token, s = self.signer.issue(
            room.name, place_id, now=now, ttl=ttl, max_age=policy.session_max
        )
        self.cache.put(token, s)
        self._activity_reported[(room.name, place_id)] = now
        self.spent.add(room.name, place_id, now)
        self.emit("session.started", room.name, {"place_id": place_id, "jti": s.jti})
        return token, s

    def _admitted(
        self, room: RoomRuntime, place_id: str, now: float, return_to: str, ticket: Ticket | None
    ) -> Outcome:
        token, _ = self._issue_session(room, place_id, now)
        if ticket is not None and ticket.joined:
            waited = max(0.0, now - ticket.joined)
            self.metrics.wait_seconds.labels(room.name).observe(waited)
            if ticket.eta_p50 >= 0:
                self.metrics.eta_error_seconds.labels(room.name).observe(ticket.eta_p50 - waited)
        max_age = int(room.policy.session_max)
        return Outcome(
            "pass",
            room,
            status=self.status_dict(room, "admitted", None, return_to),
            cookies=[(SESSION_COOKIE, token, max_age), (TICKET_COOKIE, "", 0)],
            session_token=token,
        )

    def read_ticket(self, value: str | None) -> Ticket | None:
        if not value:
            return None
        try:
            return self.tickets.loads(value)
        except TokenError:
            return None

    async def arrive(
        self, room: RoomRuntime, ticket: Ticket | None, return_to: str, now: float
    ) -> Outcome:
        """A visitor without a valid session asks for a protected URL."""
        policy = room.policy
        if policy.mode is Mode.REJECT:
            return Outcome("rejected", room, status=self.status_dict(room, "rejected", None, ""))
        if ticket is not None and not self._may_keep(room, ticket, now):
            ticket = None  # another room's, abandoned, or known spent: start afresh
        try:
            if ticket is not None:
                # The ticket's score keeps the place even if the store lost it; the store
                # refuses it (SPENT) if the place was admitted or given up.
                place_id = ticket.place_id
                view: QueueView = await self._call(
                    "arrive",
                    functools.partial(
                        self.store.arrive, room.name, place_id, room.limits, ticket.score
                    ),
                    room.name,
                )
                if view.status is PlaceStatus.SPENT:
                    log.debug("room %s: a spent ticket was replayed", room.name)
                    self.spent.add(room.name, place_id, now)
                    ticket = None
            if ticket is None:
                place_id = new_place_id()
                score = secrets.randbits(52) if policy.mode is Mode.RANDOM else None
                view = await self._call(
                    "arrive",
                    functools.partial(self.store.arrive, room.name, place_id, room.limits, score),
                    room.name,
                )
        except StoreError:
            return self._fail(room, return_to, now, ticket=ticket)
        return await self._after_view(room, place_id, view, ticket, return_to, now)

    def _may_keep(self, room: RoomRuntime, ticket: Ticket, now: float) -> bool:
        """May this ticket take its old place (``domain.lifecycle.may_keep``)?"""
        return (
            ticket.room == room.name
            and (room.name, ticket.place_id) not in self.spent
            and may_keep(ticket, now, room.policy, room.outage)
        )

    async def _after_view(
        self,
        room: RoomRuntime,
        place_id: str,
        view: QueueView,
        ticket: Ticket | None,
        return_to: str,
        now: float,
    ) -> Outcome:
        if view.status is PlaceStatus.ACTIVE:
            # Only the call that admitted the place answers ACTIVE: a direct admission.
            self.metrics.admissions.labels(room.name).inc()
            self.emit("position.admitted", room.name, {"place_id": place_id, "direct": True})
            return self._admitted(room, place_id, now, return_to, ticket)
        if view.status is PlaceStatus.PROMOTED:
            try:
                ok = await self._call(
                    "claim",
                    lambda: self.store.claim(room.name, place_id, room.limits.session_ttl_ms),
                    room.name,
                )
            except StoreError:
                return self._fail(room, return_to, now)
            if ok:
                return self._admitted(room, place_id, now, return_to, ticket)
            # Claimed already (a second tab, a replay): this ticket admits no more.
            view = QueueView(PlaceStatus.SPENT, queue_length=view.queue_length)
        if view.status is PlaceStatus.FULL:
            return Outcome("full", room, status=self.status_dict(room, "full", view, return_to))
        if view.status is PlaceStatus.WAITING:
            if room.policy.mode is Mode.FIFO and view.score > room.max_score:
                room.max_score = view.score
            eta = room.eta.estimate(view.ahead)
            epoch = pacing.epoch_of(room.incarnation)
            if ticket is None or ticket.place_id != place_id:
                ticket = Ticket(
                    room.name,
                    place_id,
                    view.score,
                    int(now),
                    int(now),
                    eta.p50 if eta is not None else -1,
                    return_to,
                )
                ticket = pacing.record_touch(ticket, view, epoch)  # for the polls that skip it
                self.emit(
                    "position.enqueued",
                    room.name,
                    {"place_id": place_id, "position": view.position},
                )
            elif (
                ticket.score == view.score
                and ticket.epoch == epoch
                and ticket.position > 0
                and now - ticket.last_seen < _reseal_after(room)
            ):
                # The ticket in the visitor's cookie is still good: no re-signing, no cookie
                # (its older touch only makes the next one come sooner).
                status = self.status_dict(room, "waiting", view, return_to, eta)
                return Outcome("wait", room, status=status)
            else:
                ticket = dataclasses.replace(ticket, score=view.score, last_seen=int(now))
                ticket = pacing.record_touch(ticket, view, epoch)
            status = self.status_dict(room, "waiting", view, return_to, eta)
            return Outcome(
                "wait",
                room,
                status=status,
                cookies=[(TICKET_COOKIE, self.tickets.dumps(ticket), TICKET_MAX_AGE)],
            )
        # UNKNOWN or SPENT: the place is gone, or this ticket was used.
        return Outcome(
            "expired",
            room,
            status=self.status_dict(room, "expired", None, return_to),
            cookies=[(TICKET_COOKIE, "", 0)],
        )

    async def heartbeat(self, ticket: Ticket | None, return_to: str, now: float) -> Outcome | None:
        """The waiting page polls. None when the ticket names no known room."""
        if ticket is None:
            return None
        room = self.rooms.get(ticket.room)
        if room is None:
            return None
        if (room.name, ticket.place_id) not in self.spent:
            # Pacing (domain.pacing): far from the front most polls are answered from the
            # ticket's last touch and the room's latest counts, without a store call.
            known = pacing.RoomNow(
                room.last_stats, room.stats_at, pacing.epoch_of(room.incarnation)
            )
            paced = pacing.answer(room.policy, ticket, known, now)
            if paced is not None:
                eta = room.eta.estimate(paced.ahead)
                status = self.status_dict(room, "waiting", paced, return_to, eta)
                return Outcome("wait", room, status=status)
        abandon_ms = room.limits.abandon_after_ms
        try:
            view: QueueView = await self._call(
                "heartbeat",
                lambda: self.store.heartbeat(room.name, ticket.place_id, abandon_ms),
                room.name,
            )
            if view.status is PlaceStatus.UNKNOWN and self._may_keep(room, ticket, now):
                # The store lost the place (restart, failover) but the holder kept polling:
                # re-enter with the score the signed ticket carries (the store refuses a
                # tombstoned place). Never admitted directly (an emptied queue looks free):
                # the controller promotes in score order.
                queued = dataclasses.replace(room.limits, direct_admit=False)
                view = await self._call(
                    "arrive",
                    lambda: self.store.arrive(room.name, ticket.place_id, queued, ticket.score),
                    room.name,
                )
        except StoreError:
            return self._fail(room, return_to, now, heartbeat=True)
        return await self._after_view(room, ticket.place_id, view, ticket, return_to, now)

    async def leave(self, ticket: Ticket | None, session: Session | None, now: float) -> bool:
        """Give up a place and end a session (both, when the visitor holds both); frees the
        slots at once. True if anything was left."""
        targets: list[tuple[RoomRuntime, str, bool]] = []
        if session is not None and session.room in self.rooms:
            targets.append((self.rooms[session.room], session.place_id, True))
        same = (
            session is not None
            and (ticket is not None)
            and ((ticket.room, ticket.place_id) == (session.room, session.place_id))
        )
        if ticket is not None and ticket.room in self.rooms and not same:
            targets.append((self.rooms[ticket.room], ticket.place_id, False))
        left = False
        for room, pid, is_session in targets:
            revoke_ms = int(room.policy.session_max * 1000)
            if is_session:
                self.cache.revoke(pid, now + room.policy.session_max)
            self.spent.add(room.name, pid, now)
            try:
                was = await self._call(
                    "leave",
                    functools.partial(self.store.leave, room.name, pid, revoke_ms),
                    room.name,
                )
            except StoreError:
                continue
            left = True
            if was is PlaceStatus.ACTIVE:
                self.emit("session.ended", room.name, {"place_id": pid, "reason": "left"})
            elif was in (PlaceStatus.WAITING, PlaceStatus.PROMOTED):
                self.emit("position.left", room.name, {"place_id": pid})
        return left

    async def end_session(self, room: RoomRuntime, session: Session, reason: str) -> None:
        """Origin command ``revoke``/``complete`` or admin revoke: end it everywhere."""
        now = self.clock()
        self.cache.revoke(session.place_id, now + room.policy.session_max)
        self.spent.add(room.name, session.place_id, now)
        with contextlib.suppress(StoreError):
            await self._call(
                "leave",
                lambda: self.store.leave(
                    room.name, session.place_id, int(room.policy.session_max * 1000)
                ),
                room.name,
            )
        verb = "session.revoked" if reason == "revoked" else "session.ended"
        self.emit(verb, room.name, {"place_id": session.place_id, "reason": reason})

    def _fail(
        self,
        room: RoomRuntime,
        return_to: str,
        now: float,
        *,
        heartbeat: bool = False,
        ticket: Ticket | None = None,
    ) -> Outcome:
        """The store is down: apply the room's fail_mode.

        A ticket is never re-signed here: its ``last_seen`` speaks for the store, which did not
        answer. Instead the room's outage record lets a holder seen alive when the outage began
        keep the place afterwards (``domain.lifecycle.may_keep``). A fail-open admission is a
        session (the visitor's next requests pass on it without spending the local rate) that
        the store counts once it is back (``fail_open_ended``).
        """
        room.outage.failed(now, room.policy)
        policy = room.policy
        if policy.fail_mode is FailMode.OPEN and not heartbeat and self._fail_open_allow(room, now):
            place_id = ticket.place_id if ticket is not None else new_place_id()
            token, _ = self._issue_session(room, place_id, now)
            if len(room.fail_open_ids) < 100_000:
                room.fail_open_ids.append(place_id)
            max_age = int(policy.session_max)
            return Outcome(
                "fail_open",
                room,
                cookies=[(SESSION_COOKIE, token, max_age), (TICKET_COOKIE, "", 0)],
                session_token=token,
            )
        status = self.status_dict(room, "waiting", None, return_to)
        return Outcome("error", room, status=status)

    async def fail_open_ended(self, room: RoomRuntime) -> None:
        """The store answers again: count the sessions fail-open admitted (no capacity check:
        they are in), so capacity accounting includes them from now on."""
        ids, room.fail_open_ids = room.fail_open_ids, []
        if not ids:
            return
        try:
            await self._call(
                "restore",
                functools.partial(self.store.restore, room.name, ids, room.limits.session_ttl_ms),
                room.name,
            )
        except StoreError:
            room.fail_open_ids = ids + room.fail_open_ids  # next time
            raise

    def _fail_open_allow(self, room: RoomRuntime, now: float) -> bool:
        """Fail-open admission limited by a local estimate: this replica's share of the rate.

        With ``admit_rate`` set, the share is ``admit_rate / replicas``. With no rate (capacity
        only), the estimate is the pace at which slots free up when sessions run their course:
        ``capacity / session_ttl`` per second, shared the same way, so an outage never opens
        the doors wide.
        """
        if not room.fail_open_active:
            room.fail_open_active = True
            room.fail_open_at = now
            room.fail_open_tokens = 1.0
            self.metrics.fail_open.labels(room.name).set(1)
            self.emit("system.fail_open_engaged", None, {"room": room.name})
            log.error("room %s: store down, failing open", room.name)
        policy = room.policy
        if policy.admit_rate > 0:
            per_second = policy.admit_rate / 60.0 / self.replicas_hint
        else:
            per_second = policy.capacity / policy.session_ttl / self.replicas_hint
        room.fail_open_tokens = min(
            max(1.0, per_second), room.fail_open_tokens + (now - room.fail_open_at) * per_second
        )
        room.fail_open_at = now
        if room.fail_open_tokens >= 1.0:
            room.fail_open_tokens -= 1.0
            return True
        return False

    async def client_wait(self, client_ip: str | None, *, shared: bool = True) -> float:
        """Per-client rate limit on enqueue and heartbeat: 0 to go on, else seconds to wait.

        Clients are counted per IPv4 address or IPv6 /64 (``domain.ratelimit.client_key``).
        Every request is counted by this replica; an enqueue (``shared``) is also counted in the
        store, where every replica's enqueues add up. A heartbeat is counted here only: most
        polls cost the store nothing (``domain.pacing``), and one store call to count each of
        them would cost the room's store core about as much as the heartbeats themselves
        (README, "One room's ceiling"); a client spreading heartbeats over R replicas gets R
        times the limit, each poll still costing the store at most one touch.

        A store failure never blocks a visitor here: the limit is a guard, not a gate. While its
        breaker is open no request waits on it, not even for the half-open probe (on a sharded
        store the request would then wait on two probes, this one and its room's): the
        background ``flush_activity`` probes it instead; on one server, the rooms' calls do.
        """
        if self.client_rate_limit <= 0 or not client_ip:
            return 0.0
        key = client_key(client_ip)
        here = self._hits_here.hit(key, int(self.clock() * 1000), self.client_rate_limit, 60_000)
        if here or not shared:
            return here / 1000.0
        if self.breaker_for(HIT_BREAKER).is_open:
            return 0.0
        try:
            wait_ms = await self._call(
                "hit", lambda: self.store.hit(key, self.client_rate_limit, 60_000), HIT_BREAKER
            )
        except StoreError:
            return 0.0
        return float(wait_ms) / 1000.0

    # ----------------------------------------------------------------- status
    def status_dict(
        self,
        room: RoomRuntime,
        status: str,
        view: QueueView | None,
        return_to: str,
        eta: Eta | None = None,
    ) -> dict[str, Any]:
        """The JSON status (DESIGN §4), a superset of Cloudflare Waiting Room's fields."""
        position = view.position if view is not None else 0
        ahead = view.ahead if view is not None else 0
        qlen = view.queue_length if view is not None else 0
        refresh = refresh_seconds(room.policy, ahead)
        waiting = status == "waiting"
        wait_min = (eta.p50 + 59) // 60 if eta is not None else 0
        return {
            "status": status,
            "room": room.name,
            "position": position,
            "ahead": ahead,
            "queue_length": qlen,
            "eta_seconds": eta.as_dict() if eta is not None else None,
            "refresh_seconds": refresh,
            "return_to": return_to,
            "cfWaitingRoom": {
                "inWaitingRoom": waiting,
                "waitTimeKnown": eta is not None,
                "waitTime": wait_min,
                "waitTime50Percentile": wait_min,
                "waitTime90Percentile": (eta.p90 + 59) // 60 if eta is not None else 0,
                "waitTimeFormatted": _minutes(wait_min) if eta is not None else "unavailable",
                "queueIsFull": status == "full",
                "queueAll": room.policy.mode is Mode.QUEUE_ALL or room.paused,
                "lastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock())),
                "refreshIntervalSeconds": refresh,
            },
        }

    # ----------------------------------------------------------------- background work
    async def flush_activity(self) -> None:
        """Report coalesced session activity to the store (called about once a second)."""
        pending, self._activity_pending = self._activity_pending, {}
        for name, ids in pending.items():
            room = self.rooms.get(name)
            if room is None or not ids:
                continue
            touch = functools.partial(
                self.store.touch, room.name, sorted(ids), room.limits.session_ttl_ms
            )
            try:
                await self._call("touch", touch, room.name)
            except StoreError:
                self._activity_pending.setdefault(name, set()).update(ids)
        if self.sharded and self.client_rate_limit > 0 and self.breaker_for(HIT_BREAKER).is_open:
            # The rate limit's half-open probe, off the request path (see client_wait).
            probe = functools.partial(
                self.store.hit, RATE_LIMIT_PROBE, self.client_rate_limit, 60_000
            )
            with contextlib.suppress(StoreError):
                await self._call("hit", probe, HIT_BREAKER)
        if len(self._activity_reported) > 200_000:
            cutoff = self.clock() - 3600
            self._activity_reported = {
                k: v for k, v in self._activity_reported.items() if v >= cutoff
            }

    async def refresh_room_state(self, room: RoomRuntime) -> None:
        """Follow runtime changes made through the admin API (kept in the store)."""
        meta = await self._call("meta", lambda: self.store.get_meta(room.name), room.name)
        now = self.clock()
        marker = meta.get("incarnation")
        if marker is None or marker != room.incarnation:
            if room.incarnation is not None:
                await self._after_store_loss(room, now, first=marker is None)
            if marker is None:
                # Write-if-absent: replicas (or worker processes) starting on an empty store
                # all get here at once; a plain write would let the last writer replace the
                # first one's marker, which the first would then take for a store loss.
                mark = secrets.token_hex(8)
                marker = await self._call(
                    "meta", lambda: self.store.init_meta(room.name, "incarnation", mark), room.name
                )
            room.incarnation = marker
        with contextlib.suppress(ValueError):
            room.held_until = max(room.held_until, float(meta.get("hold_until") or 0))
        held = now < room.held_until
        await self._count_replicas(room, meta, now)
        paused = meta.get("paused") == "1"
        try:
            overrides = json.loads(meta.get("overrides") or "{}")
        except ValueError:
            overrides = {}
        if not isinstance(overrides, dict):
            overrides = {}
        room.apply(paused, overrides, held)
        self.metrics.paused.labels(room.name).set(1 if paused else 0)

    async def _after_store_loss(self, room: RoomRuntime, now: float, *, first: bool) -> None:
        """The room's state vanished from the store (failover or restart without persistence).

        Admitted visitors keep passing (their tokens verify locally) but the store no longer
        counts them, and waiters re-enter one by one as they poll. So: count again the sessions
        this replica knows of, tombstone again the places it knows to be spent, put the arrival
        sequence back above every score it has seen, and hold admissions for two poll
        intervals so that waiters re-enter with their tickets' scores before anyone is promoted
        (the first replica to notice sets the hold for all).
        """
        policy = room.policy
        window = (
            policy.session_ttl + policy.session_grace
            if policy.session_renewal
            else policy.session_max
        )
        ids = [
            pid
            for (name, pid), seen in self._activity_reported.items()
            if name == room.name and now - seen <= window and pid not in self.cache.revoked
        ]
        # The tombstones went with the state: write back those of places this replica knows
        # (a replayed ticket of one of them must not take its old place again).
        self.spent.prune(room.name, now, spent_for(policy))
        known = set(ids)
        spent = [pid for pid in self.spent.ids(room.name) if pid not in known]
        restored = 0
        for i in range(0, max(1, len(spent)), RESTORE_BATCH):  # bounded script time
            restored += await self._call(
                "restore",
                functools.partial(
                    self.store.restore,
                    room.name,
                    ids if i == 0 else [],
                    room.limits.session_ttl_ms,
                    room.max_score,
                    spent[i : i + RESTORE_BATCH],
                ),
                room.name,
            )
        if first:
            until = now + 2 * refresh_seconds(policy, 0) + 1.0
            room.held_until = max(room.held_until, until)
            hold = {"hold_until": f"{until:.3f}"}
            await self._call("meta", lambda: self.store.set_meta(room.name, hold), room.name)
        log.warning(
            "room %s: the store lost its state; %d session(s) counted again, admissions held "
            "for waiters to re-enter",
            room.name,
            restored,
        )

    async def _count_replicas(self, room: RoomRuntime, meta: dict[str, str], now: float) -> None:
        """Keep this replica's mark in the room's meta map fresh and count the live marks.

        The count is the local estimate that fail-open uses to take only this replica's share
        of the admit rate. A mark is fresh for 15 s; marks older than an hour are removed.
        """
        key = f"replica:{self.replica_id}"
        alive = 0
        stale: dict[str, str] = {}
        for k, v in meta.items():
            if not k.startswith("replica:"):
                continue
            try:
                age = now - float(v)
            except ValueError:
                age = float("inf")
            if age < 15 or k == key:
                alive += 1
            elif age > 3600:
                stale[k] = ""
        if now - self._mark_written.get(room.name, 0.0) >= 5 or key not in meta:
            self._mark_written[room.name] = now
            values = {**stale, key: f"{now:.0f}"}
            await self._call("meta", lambda: self.store.set_meta(room.name, values), room.name)
        self.replicas_hint = max(1, alive if key in meta else alive + 1)
