"""What a room does while the store does not answer: its ``fail_mode``.

``open``: newcomers pass at this replica's share of the admission rate, each on a session of
its own, which the store counts once it is back. ``closed``: the waiting page with 503.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from waitroom_proxy.domain.policy import FailMode
from waitroom_proxy.domain.tokens import Ticket, new_place_id
from waitroom_proxy.errors import StoreError
from waitroom_proxy.service.context import Context
from waitroom_proxy.service.outcome import SESSION_COOKIE, TICKET_COOKIE, Outcome, OutcomeKind
from waitroom_proxy.service.room import RoomRuntime
from waitroom_proxy.service.sessions import Sessions
from waitroom_proxy.service.status import status_dict

log = logging.getLogger(__name__)

FAIL_OPEN_IDS_MAX = 100_000
"""Most fail-open sessions remembered per room to be counted when the store is back."""


class FailOpen:
    """Applies a room's ``fail_mode`` and, when the store is back, counts what it let in.

    Args:
        replicas: this replica's estimate of how many replicas share the room
            (``service.sync.RoomSync``), to take only its share of the rate.
    """

    def __init__(self, ctx: Context, *, sessions: Sessions, replicas: Callable[[], int]) -> None:
        self.ctx = ctx
        self.sessions = sessions
        self.replicas = replicas

    def outcome(
        self,
        room: RoomRuntime,
        return_to: str,
        now: float,
        *,
        heartbeat: bool = False,
        ticket: Ticket | None = None,
        binding: str = "",
    ) -> Outcome:
        """The store is down: apply the room's fail_mode.

        A ticket is never re-signed here: its ``last_seen`` speaks for the store, which did not
        answer. Instead the room's outage record lets a holder seen alive when the outage began
        keep the place afterwards (``domain.lifecycle.may_keep``). A fail-open admission is a
        session (the visitor's next requests pass on it without spending the local rate) that
        the store counts once it is back (``store_back``).
        """
        room.outage.failed(now, room.policy)
        policy = room.policy
        if policy.fail_mode is FailMode.OPEN and not heartbeat and self._allow(room, now):
            place_id = ticket.place_id if ticket is not None else new_place_id()
            token, _ = self.sessions.issue(room, place_id, now, binding)
            if len(room.fail_open_ids) < FAIL_OPEN_IDS_MAX:
                room.fail_open_ids.append(place_id)
            max_age = int(policy.session_max)
            return Outcome(
                OutcomeKind.FAIL_OPEN,
                room,
                cookies=[(SESSION_COOKIE, token, max_age), (TICKET_COOKIE, "", 0)],
                session_token=token,
            )
        status = status_dict(room, "waiting", None, return_to, now)
        return Outcome(OutcomeKind.ERROR, room, status=status)

    def _allow(self, room: RoomRuntime, now: float) -> bool:
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
            self.ctx.metrics.fail_open.labels(room.name).set(1)
            self.ctx.emit("system.fail_open_engaged", None, {"room": room.name})
            log.error("room %s: store down, failing open", room.name)
        policy = room.policy
        replicas = self.replicas()
        if policy.admit_rate > 0:
            per_second = policy.admit_rate / 60.0 / replicas
        else:
            per_second = policy.capacity / policy.session_ttl / replicas
        room.fail_open_tokens = min(
            max(1.0, per_second), room.fail_open_tokens + (now - room.fail_open_at) * per_second
        )
        room.fail_open_at = now
        if room.fail_open_tokens >= 1.0:
            room.fail_open_tokens -= 1.0
            return True
        return False

    async def count_admitted(self, room: RoomRuntime) -> None:
        """The store answers again: count the sessions fail-open admitted (no capacity check:
        they are in), so capacity accounting includes them from now on.

        Raises:
            StoreError: not yet; the sessions are kept for the next call.
        """
        ids, room.fail_open_ids = room.fail_open_ids, []
        if not ids:
            return
        try:
            await self.ctx.store.restore(room.name, ids, room.limits.session_ttl_ms)
        except StoreError:
            room.fail_open_ids = ids + room.fail_open_ids  # next time
            raise

    def store_back(self, room: RoomRuntime) -> None:
        """A controller tick of the room succeeded: fail-open, if engaged, is over."""
        if room.fail_open_active:
            room.fail_open_active = False
            self.ctx.metrics.fail_open.labels(room.name).set(0)
            log.warning("room %s: store back, fail-open ended", room.name)
