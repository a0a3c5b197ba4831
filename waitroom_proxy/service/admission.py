"""Admission: a visitor without a session arrives, waits, polls, and claims the slot once.

Tickets follow the lifecycle of ``waitroom_proxy.domain.lifecycle`` (its state table): a ticket
admits at most once; a session is issued only on the transition into ACTIVE; a replayed ticket
is a newcomer.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets

from waitroom_proxy.domain import pacing
from waitroom_proxy.domain.lifecycle import may_keep
from waitroom_proxy.domain.policy import Mode
from waitroom_proxy.domain.pow import Solved
from waitroom_proxy.domain.tokens import Session, Ticket, TicketSigner, new_place_id
from waitroom_proxy.errors import StoreError, TokenError
from waitroom_proxy.ports import PlaceStatus, QueueView
from waitroom_proxy.service.challenge import ProofOfWork
from waitroom_proxy.service.context import Context
from waitroom_proxy.service.failopen import FailOpen
from waitroom_proxy.service.lifecycle import Lifecycle
from waitroom_proxy.service.outcome import (
    SESSION_COOKIE,
    TICKET_COOKIE,
    TICKET_MAX_AGE,
    Outcome,
    OutcomeKind,
)
from waitroom_proxy.service.room import RoomRuntime
from waitroom_proxy.service.sessions import Sessions
from waitroom_proxy.service.status import status_dict

log = logging.getLogger(__name__)


def _reseal_after(room: RoomRuntime) -> float:
    """How stale a ticket's ``last_seen`` may get before a heartbeat re-signs it.

    ``last_seen`` only matters against ``abandon_after`` (a place survives a store loss while
    its holder was seen within it), so a sixth of that is precise enough, and most polls then
    cost no signing and send no cookie.
    """
    return min(room.policy.abandon_after / 6, 60.0)


class Admission:
    """Arrive, heartbeat and claim, for every room of one process."""

    def __init__(
        self,
        ctx: Context,
        tickets: TicketSigner,
        *,
        sessions: Sessions,
        fail_open: FailOpen,
        proofs: ProofOfWork,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self.ctx = ctx
        self.tickets = tickets
        self.sessions = sessions
        self.fail_open = fail_open
        self.proofs = proofs
        self.lifecycle = lifecycle or Lifecycle(ctx, tickets)

    def read_ticket(self, value: str | None) -> Ticket | None:
        """The ticket a cookie value carries, or None (never raises)."""
        if not value:
            return None
        try:
            return self.tickets.loads(value)
        except TokenError:
            return None

    async def arrive(
        self,
        room: RoomRuntime,
        ticket: Ticket | None,
        return_to: str,
        now: float,
        *,
        proof: Solved | None = None,
        binding: str = "",
    ) -> Outcome:
        """A visitor without a valid session asks for a protected URL.

        ``proof``: a solved proof of work (``service.challenge``), spent already; without one
        a room that asks for work answers a challenge where a new place would be created.
        ``binding``: the client's binding value (``domain.binding``) for a session started here.
        """
        policy = room.policy
        if policy.mode is Mode.REJECT:
            status = status_dict(room, "rejected", None, "", now)
            return Outcome(OutcomeKind.REJECTED, room, status=status)
        scheduled = await self.lifecycle.gate(room, ticket, return_to, now)
        if scheduled is not None:
            return scheduled  # idle, pre-queue or ended: the store's clock says so
        if ticket is not None and not self._may_keep(room, ticket, now):
            ticket = None  # another room's, abandoned, or known spent: start afresh
        needs_work = proof is None and self.proofs.required(room)
        if ticket is None and needs_work:
            return self.proofs.challenge(room, return_to, now)
        try:
            if ticket is not None:
                # The ticket's score keeps the place even if the store lost it; the store
                # refuses it (SPENT) if the place was admitted or given up.
                place_id = ticket.place_id
                view = await self.ctx.store.arrive(room.name, place_id, room.limits, ticket.score)
                if view.status is PlaceStatus.SPENT:
                    log.debug("room %s: a spent ticket was replayed", room.name)
                    self.sessions.spent.add(room.name, place_id, now)
                    if needs_work:
                        return self.proofs.challenge(room, return_to, now)
                    ticket = None
            if ticket is None:
                place_id = new_place_id()
                score = secrets.randbits(52) if policy.mode is Mode.RANDOM else None
                view = await self.ctx.store.arrive(room.name, place_id, room.limits, score)
        except StoreError:
            return self.fail_open.outcome(room, return_to, now, ticket=ticket, binding=binding)
        return await self._after_view(room, place_id, view, ticket, return_to, now, binding)

    async def heartbeat(
        self, ticket: Ticket | None, return_to: str, now: float, *, binding: str = ""
    ) -> Outcome | None:
        """The waiting page polls. None when the ticket names no known room."""
        if ticket is None:
            return None
        room = self.ctx.rooms.get(ticket.room)
        if room is None:
            return None
        scheduled = await self.lifecycle.gate(room, ticket, return_to, now)
        if scheduled is not None:
            return scheduled
        if (room.name, ticket.place_id) not in self.sessions.spent:
            # Pacing (domain.pacing): far from the front most polls are answered from the
            # ticket's last touch and the room's latest counts, without a store call.
            known = pacing.RoomNow(
                room.last_stats, room.stats_at, pacing.epoch_of(room.incarnation)
            )
            paced = pacing.answer(room.policy, ticket, known, now)
            if paced is not None:
                eta = room.eta.estimate(paced.ahead)
                status = status_dict(
                    room, "waiting", paced, return_to, now, eta, first=ticket.first
                )
                return Outcome(OutcomeKind.WAIT, room, status=status)
        abandon_ms = room.limits.abandon_after_ms
        linger = pacing.touch_linger(ticket)
        try:
            view = await self.ctx.store.heartbeat(room.name, ticket.place_id, abandon_ms, linger)
            if view.status is PlaceStatus.UNKNOWN and self._may_keep(room, ticket, now):
                # The store lost the place (restart, failover) but the holder kept polling:
                # re-enter with the score the signed ticket carries (the store refuses a
                # tombstoned place). Never admitted directly (an emptied queue looks free):
                # the controller promotes in score order.
                queued = dataclasses.replace(room.limits, direct_admit=False)
                view = await self.ctx.store.arrive(room.name, ticket.place_id, queued, ticket.score)
        except StoreError:
            return self.fail_open.outcome(room, return_to, now, heartbeat=True)
        return await self._after_view(room, ticket.place_id, view, ticket, return_to, now, binding)

    async def leave(self, ticket: Ticket | None, session: Session | None) -> bool:
        """Give up a place and end a session (both, when the visitor holds both); frees the
        slots at once. True if the store heard of anything."""
        targets: list[tuple[RoomRuntime, str, bool]] = []
        if session is not None and session.room in self.ctx.rooms:
            targets.append((self.ctx.rooms[session.room], session.place_id, True))
        same = (
            session is not None
            and (ticket is not None)
            and ((ticket.room, ticket.place_id) == (session.room, session.place_id))
        )
        if ticket is not None and ticket.room in self.ctx.rooms and not same:
            targets.append((self.ctx.rooms[ticket.room], ticket.place_id, False))
        left = False
        for room, place_id, of_session in targets:
            try:
                await self.sessions.end(room, place_id, "left", session=of_session)
            except StoreError:
                continue
            left = True
        return left

    def _may_keep(self, room: RoomRuntime, ticket: Ticket, now: float) -> bool:
        """May this ticket take its old place (``domain.lifecycle.may_keep``)?"""
        return (
            ticket.room == room.name
            and (room.name, ticket.place_id) not in self.sessions.spent
            and may_keep(ticket, now, room.policy, room.outage)
        )

    def _admitted(
        self,
        room: RoomRuntime,
        place_id: str,
        now: float,
        return_to: str,
        ticket: Ticket | None,
        binding: str,
    ) -> Outcome:
        token, _ = self.sessions.issue(room, place_id, now, binding)
        if ticket is not None and ticket.joined:
            waited = max(0.0, now - ticket.joined)
            self.ctx.metrics.wait_seconds.labels(room.name).observe(waited)
            if ticket.eta_p50 >= 0:
                self.ctx.metrics.eta_error_seconds.labels(room.name).observe(
                    ticket.eta_p50 - waited
                )
        max_age = int(room.policy.session_max)
        return Outcome(
            OutcomeKind.PASS,
            room,
            status=status_dict(room, "admitted", None, return_to, now),
            cookies=[(SESSION_COOKIE, token, max_age), (TICKET_COOKIE, "", 0)],
            session_token=token,
        )

    async def _after_view(
        self,
        room: RoomRuntime,
        place_id: str,
        view: QueueView,
        ticket: Ticket | None,
        return_to: str,
        now: float,
        binding: str = "",
    ) -> Outcome:
        if view.status is PlaceStatus.ACTIVE:
            # Only the call that admitted the place answers ACTIVE: a direct admission.
            self.ctx.metrics.admissions.labels(room.name).inc()
            self.ctx.emit("position.admitted", room.name, {"place_id": place_id, "direct": True})
            return self._admitted(room, place_id, now, return_to, ticket, binding)
        if view.status is PlaceStatus.PROMOTED:
            try:
                ok = await self.ctx.store.claim(room.name, place_id, room.limits.session_ttl_ms)
            except StoreError:
                return self.fail_open.outcome(room, return_to, now, binding=binding)
            if ok:
                return self._admitted(room, place_id, now, return_to, ticket, binding)
            # Claimed already (a second tab, a copied cookie): the store's claim is atomic, so
            # exactly one caller got the session; this ticket admits no more.
            view = QueueView(PlaceStatus.SPENT, queue_length=view.queue_length)
        if view.status is PlaceStatus.FULL:
            status = status_dict(room, "full", view, return_to, now)
            return Outcome(OutcomeKind.FULL, room, status=status)
        if view.status is PlaceStatus.WAITING:
            if room.policy.mode is Mode.FIFO and view.score > room.max_score:
                room.max_score = view.score
            eta = room.eta.estimate(view.ahead)
            fresh = ticket is None or ticket.place_id != place_id
            first = view.position if fresh or ticket is None or not ticket.first else ticket.first
            status = status_dict(room, "waiting", view, return_to, now, eta, first=first)
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
                    first=first,
                )
                ticket = pacing.record_touch(ticket, view, epoch)  # for the polls that skip it
                self.ctx.emit(
                    "position.enqueued",
                    room.name,
                    {"place_id": place_id, "position": view.position},
                )
            elif (
                ticket.score == view.score
                and ticket.epoch == epoch
                and ticket.position > 0
                and ticket.first
                and now - ticket.last_seen < _reseal_after(room)
            ):
                # The ticket in the visitor's cookie is still good: no re-signing, no cookie
                # (its older touch only makes the next one come sooner).
                return Outcome(OutcomeKind.WAIT, room, status=status)
            else:
                # (A ticket from before ``first`` existed gets it now, once.)
                ticket = dataclasses.replace(
                    ticket, score=view.score, last_seen=int(now), first=first
                )
                ticket = pacing.record_touch(ticket, view, epoch)
            cookie = (TICKET_COOKIE, self.tickets.dumps(ticket), TICKET_MAX_AGE)
            return Outcome(OutcomeKind.WAIT, room, status=status, cookies=[cookie])
        # UNKNOWN: the place is gone. SPENT: this ticket was used (another client claimed it,
        # or the place was given up): say so, rather than "inactive too long", so a visitor
        # whose cookie was copied sees why, and a bot sharing one ticket learns it gets one
        # session for one place.
        state = "used" if view.status is PlaceStatus.SPENT else "expired"
        return Outcome(
            OutcomeKind.EXPIRED,
            room,
            status=status_dict(room, state, None, return_to, now),
            cookies=[(TICKET_COOKIE, "", 0)],
        )
