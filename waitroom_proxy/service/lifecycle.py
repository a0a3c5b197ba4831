"""A scheduled sale in the gate: idle → pre-queue → open → ended, by the store's clock.

Every replica follows the store (``ports.DrawStore``), never its own clock alone: the phase of
a request that could change anything (a ticket, an admission) comes from the store's ``TIME``
in the same atomic call that enters the pre-queue; a replica only skips that call once the
store has told it the room is open and released, and its estimate of the store's clock (the
offset measured at each call) is well before ``end_at``. So a replica 90 s fast opens nothing
early: the store says "idle" until its own clock reaches the time.

Each step that must happen once is decided by the store, and the replica whose call made it
publishes the event: the seed's commitment at the pre-queue's opening
(``queue.prequeue_opened``), the release of the pre-queue at ``start_at`` (``queue.shuffled``:
one atomic call applying the draw of ``domain.draw``, or arrival order without
``shuffle_at_start``), the end (``queue.ended``). The controller runs them every tick; a
request that meets a step not yet done runs it itself, so nobody waits for a tick.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from waitroom_proxy.domain.draw import (
    ALGORITHM,
    AuditRecord,
    Seed,
    entry_id,
    new_seed,
    plan_shuffle,
)
from waitroom_proxy.domain.schedule import Phase, Schedule, parse_schedule, rfc3339
from waitroom_proxy.domain.tokens import Ticket, TicketSigner, new_place_id
from waitroom_proxy.errors import StoreError
from waitroom_proxy.ports import DrawPhase, DrawState, PrequeueEntry, RoomLimits
from waitroom_proxy.service.context import Context
from waitroom_proxy.service.outcome import TICKET_COOKIE, TICKET_MAX_AGE, Outcome, OutcomeKind
from waitroom_proxy.service.room import RoomRuntime
from waitroom_proxy.service.status import status_dict

log = logging.getLogger(__name__)

END_MARGIN_MS = 5_000
"""Within this of ``end_at`` (by the estimated store clock) every request asks the store."""
RELEASE_ATTEMPTS = 5
"""A release that finds the pre-queue changed (a leave between read and write) reads again."""
CANCELLED = "off"
"""The room meta's ``schedule`` value of a schedule the operator cancelled."""


@dataclass(slots=True)
class _Seen:
    """What this replica knows of one scheduled room from the store."""

    offset_ms: int = 0
    """Store clock minus this replica's clock, at the last draw call."""
    open_confirmed: bool = False
    """The store said: open, and the pre-queue (if any) released."""
    key: str = ""
    """The schedule these facts are about (a new schedule forgets them)."""
    audit: dict[str, Any] | None = field(default=None, repr=False)


def effective_schedule(room: RoomRuntime) -> Schedule | None:
    """The room's schedule: the operator's (room meta ``schedule``, kept in the store, every
    replica follows it) over the configured one; cancelled (``off``) = none."""
    raw = room.schedule_meta
    if not raw:
        return room.base.schedule
    if raw == CANCELLED:
        return None
    try:
        return _parse_cached(raw)
    except (ValueError, TypeError):
        log.error("room %s: ignoring an unreadable schedule in the store", room.name)
        return room.base.schedule


_PARSED: dict[str, Schedule] = {}


def _parse_cached(raw: str) -> Schedule:
    schedule = _PARSED.get(raw)
    if schedule is None:
        schedule = parse_schedule(json.loads(raw))
        if len(_PARSED) > 64:
            _PARSED.clear()
        _PARSED[raw] = schedule
    return schedule


class Lifecycle:
    """The scheduled-sale phases of every room of one process."""

    def __init__(self, ctx: Context, tickets: TicketSigner) -> None:
        self.ctx = ctx
        self.tickets = tickets
        self._seen: dict[str, _Seen] = {}

    def _state(self, room: RoomRuntime, schedule: Schedule) -> _Seen:
        key = repr(schedule)
        seen = self._seen.get(room.name)
        if seen is None or seen.key != key:
            seen = self._seen[room.name] = _Seen(key=key)
        return seen

    def store_now(self, room: RoomRuntime, now: float) -> float:
        """This replica's estimate of the store's clock (seconds)."""
        seen = self._seen.get(room.name)
        return now + (seen.offset_ms / 1000 if seen is not None else 0.0)

    # ----------------------------------------------------------------- the request path
    async def gate(
        self, room: RoomRuntime, ticket: Ticket | None, return_to: str, now: float
    ) -> Outcome | None:
        """The outcome for a visitor of a scheduled room before it is open (idle, pre-queue)
        or after its end; None: the room is open, go on as without a schedule."""
        schedule = effective_schedule(room)
        if schedule is None:
            return None
        seen = self._state(room, schedule)
        bounds = schedule.store_args()
        if seen.open_confirmed and (
            bounds[2] == 0 or now * 1000 + seen.offset_ms < bounds[2] - END_MARGIN_MS
        ):
            return None
        mine = ticket is not None and ticket.room == room.name
        place_id = ticket.place_id if ticket is not None and mine else new_place_id()
        try:
            state = await self._step(room, seen, bounds, place_id)
            if state.entry is PrequeueEntry.UNCOMMITTED:
                await self._commit(room, state)
                state = await self._step(room, seen, bounds, place_id)
            if state.phase is DrawPhase.OPEN:
                if schedule.prequeue_at is not None and not state.released:
                    await self._release(room, schedule, state)
                seen.open_confirmed = True
                return None
        except StoreError:
            return self._without_store(room, schedule, ticket, return_to, now)
        store_now = state.now_ms / 1000
        if state.phase is DrawPhase.ENDED:
            return self._ended(room, schedule, return_to, now, store_now)
        if state.phase is DrawPhase.IDLE or state.entry is not PrequeueEntry.IN:
            kind = OutcomeKind.FULL if state.entry is PrequeueEntry.FULL else OutcomeKind.WAIT
            status = self._status(room, schedule, return_to, now, store_now)
            if kind is OutcomeKind.FULL:
                status["status"] = "full"
            return Outcome(kind, room, status=status)
        status = self._status(room, schedule, return_to, now, store_now)
        status["queue_length"] = state.prequeue_length
        status["commitment"] = state.commitment
        if mine and ticket is not None and now - ticket.last_seen < 60:
            return Outcome(OutcomeKind.WAIT, room, status=status)
        fresh = Ticket(room.name, place_id, 0, int(now), int(now), -1, return_to)
        if mine and ticket is not None:
            fresh = dataclasses.replace(ticket, last_seen=int(now))
        else:
            self.ctx.emit("position.enqueued", room.name, {"place_id": place_id, "prequeue": True})
        cookie = (TICKET_COOKIE, self.tickets.dumps(fresh), TICKET_MAX_AGE)
        return Outcome(OutcomeKind.WAIT, room, status=status, cookies=[cookie])

    def _status(
        self, room: RoomRuntime, schedule: Schedule, return_to: str, now: float, store_now: float
    ) -> dict[str, Any]:
        status = status_dict(room, "waiting", None, return_to, now)
        status.update(schedule.status_fields(store_now))
        nxt = schedule.next_change(store_now)
        if nxt is not None:
            status["seconds_to_change"] = max(0, round(nxt[1] - store_now))
            status["refresh_seconds"] = max(1, min(status["refresh_seconds"], nxt[1] - store_now))
        return status

    def _ended(
        self, room: RoomRuntime, schedule: Schedule, return_to: str, now: float, store_now: float
    ) -> Outcome:
        status = status_dict(room, "rejected", None, return_to, now)
        status.update(schedule.status_fields(store_now))
        return Outcome(OutcomeKind.REJECTED, room, status=status, cookies=[(TICKET_COOKIE, "", 0)])

    def _without_store(
        self,
        room: RoomRuntime,
        schedule: Schedule,
        ticket: Ticket | None,
        return_to: str,
        now: float,
    ) -> Outcome | None:
        """The store is down: the phase from the last known store clock. Before the start
        nobody enters (no ticket can be kept without the store); once open, the room's
        ``fail_mode`` applies as without a schedule (None)."""
        store_now = self.store_now(room, now)
        phase = schedule.phase(store_now)
        if phase is Phase.OPEN:
            return None
        if phase is Phase.ENDED:
            return self._ended(room, schedule, return_to, now, store_now)
        return Outcome(
            OutcomeKind.WAIT, room, status=self._status(room, schedule, return_to, now, store_now)
        )

    async def _step(
        self, room: RoomRuntime, seen: _Seen, bounds: tuple[int, int, int], place_id: str = ""
    ) -> DrawState:
        local = self.ctx.clock()
        state = await self.ctx.store.draws(room.name).step(
            bounds, place_id, room.policy.max_queue_length
        )
        seen.offset_ms = state.now_ms - round(local * 1000)
        return state

    # ----------------------------------------------------------------- the once-only steps
    async def tick(self, room: RoomRuntime) -> RoomLimits:
        """The controller's pass: run whichever step is due, by the store's clock; the limits
        of this tick (no promotion once the sale ended).

        Raises:
            StoreError: the store did not answer.
        """
        schedule = effective_schedule(room)
        if schedule is None:
            return room.limits
        seen = self._state(room, schedule)
        state = await self._step(room, seen, schedule.store_args())
        pending = schedule.prequeue_at is not None and not state.commitment
        if state.phase is not DrawPhase.IDLE and pending:
            await self._commit(room, state)
        if state.phase in (DrawPhase.OPEN, DrawPhase.ENDED):
            if schedule.prequeue_at is not None and not state.released:
                await self._release(room, schedule, state)
            seen.open_confirmed = state.phase is DrawPhase.OPEN
        if state.phase is DrawPhase.ENDED:
            if not state.ended and await self.ctx.store.draws(room.name).mark("ended", "1"):
                data = {"ended_at": rfc3339(schedule.end_at) if schedule.end_at else None}
                self.ctx.emit("queue.ended", room.name, data)
            return dataclasses.replace(room.limits, promote=False, direct_admit=False)
        return room.limits

    async def _commit(self, room: RoomRuntime, state: DrawState) -> None:
        seed = new_seed()
        at = rfc3339(datetime.fromtimestamp(state.now_ms / 1000, UTC))
        if await self.ctx.store.draws(room.name).commit(seed.hex(), seed.commitment(), at):
            data = {"commitment": seed.commitment(), "committed_at": at}
            self.ctx.emit("queue.prequeue_opened", room.name, data)
            log.info("room %s: pre-queue open, draw commitment %s", room.name, seed.commitment())

    async def _release(self, room: RoomRuntime, schedule: Schedule, state: DrawState) -> None:
        """Release the frozen pre-queue into the queue, drawn (``shuffle_at_start``) or in
        arrival order; once, whichever replica gets there first."""
        assert schedule.start_at is not None
        start_ms = schedule.store_args()[1]
        draws = self.ctx.store.draws(room.name)
        revealed_at = rfc3339(datetime.fromtimestamp(state.now_ms / 1000, UTC))
        for _ in range(RELEASE_ATTEMPTS):
            ids, meta = await draws.entries()
            if "released" in meta:
                return
            order, document = self._plan(room, schedule, ids, meta, revealed_at)
            n = await draws.release(start_ms, order, json.dumps(document))
            if n == -3:
                continue
            if n >= 0:
                data = {
                    "entries": n,
                    "shuffled": schedule.shuffle_at_start,
                    "commitment": document.get("commitment"),
                    "seed": document.get("seed"),
                }
                self.ctx.emit("queue.shuffled", room.name, data)
                log.info("room %s: pre-queue of %d released into the queue", room.name, n)
            return
        log.warning("room %s: the pre-queue kept changing; release retried next tick", room.name)

    @staticmethod
    def _plan(
        room: RoomRuntime,
        schedule: Schedule,
        ids: list[str],
        meta: dict[str, str],
        revealed_at: str,
    ) -> tuple[list[str], dict[str, Any]]:
        """The admission order and the audit document of a release."""
        record = AuditRecord(
            room=room.name,
            commitment=meta.get("commitment", ""),
            committed_at=meta.get("committed_at"),
        )
        if schedule.shuffle_at_start and meta.get("seed"):
            seed = Seed.from_hex(meta["seed"])
            plan = plan_shuffle(record, seed, ids, first_score=1, revealed_at=revealed_at)
            return [pid for pid, _ in plan.scores], plan.audit.to_json()
        entries = [entry_id(room.name, pid) for pid in ids]
        document = record.to_json() | {
            "algorithm": "arrival-order",
            "seed": meta.get("seed"),
            "revealed_at": revealed_at,
            "entries": sorted(entries),
            "order": entries,
        }
        return ids, document

    # ----------------------------------------------------------------- the audit route
    async def audit(self, room: RoomRuntime) -> dict[str, Any] | None:
        """What ``GET {prefix}/audit`` publishes: the commitment, then (once released) the
        seed, the entries and the order; None when the room has no draw.

        Raises:
            StoreError: the store did not answer.
        """
        schedule = effective_schedule(room)
        seen = self._seen.get(room.name)
        if seen is not None and seen.audit is not None:
            return seen.audit
        draws = self.ctx.store.draws(room.name)
        stored = await draws.audit()
        if stored is not None:
            document: dict[str, Any] = json.loads(stored)
            if seen is not None:
                seen.audit = document  # released: it never changes again
            return document
        if schedule is None or schedule.prequeue_at is None:
            return None
        _, meta = await draws.entries()
        if not meta.get("commitment"):
            return None
        record = AuditRecord(room.name, meta["commitment"], meta.get("committed_at"))
        return record.to_json() | {"algorithm": ALGORITHM if schedule.shuffle_at_start else
                                   "arrival-order"}  # fmt: skip

    def forget(self, room: RoomRuntime) -> None:
        """Drop what this replica knew (the operator changed the schedule)."""
        self._seen.pop(room.name, None)
