"""The ticket lifecycle: a ticket admits at most once. Pure: no I/O, takes ``now``.

A ticket names one place (room, place id) and carries the place's score and ``last_seen``, the
time its holder was last seen waiting. ``last_seen`` is written only when the store has just
confirmed the place as WAITING, never on the word of the visitor alone (not during a store
outage either). The store knows where each place is (queue, promoted, active) and keeps a
*tombstone* for every place that left the queue by promotion, admission or leave, for
``spent_for(policy)`` seconds (``wr:{room}:spent``; removed by the controller's tick).

===========================  =====================================  ===========================
place (store) and ticket     event                                  outcome
===========================  =====================================  ===========================
none, no ticket              arrive; free slot, token, nobody waits ACTIVE + tombstone; session
                                                                    cookie, no ticket
none, no ticket              arrive otherwise                       WAITING (next sequence);
                                                                    ticket with its score
WAITING                      heartbeat, or arrive with the ticket   WAITING; position; ticket
                                                                    re-signed every A/6
WAITING                      tick: head of queue, slot, token       PROMOTED + tombstone
WAITING                      no heartbeat for ``abandon_after`` (A) gone (abandoned), no
                                                                    tombstone: the ticket ages
WAITING                      leave                                  gone + tombstone; cookies
                                                                    deleted
PROMOTED                     heartbeat / arrive with the ticket     ACTIVE (the one claim);
                                                                    session cookie, ticket
                                                                    deleted
PROMOTED                     no claim within ``claim_timeout``      gone (no-show), tombstone
                                                                    stays
PROMOTED or ACTIVE           leave / revoke / complete              gone, tombstone stays; the
                                                                    session is revoked
ACTIVE                       idle ``session_ttl``, ``session_max``  gone, tombstone stays
ACTIVE, or tombstone         the ticket replayed to the heartbeat   nothing changes; "used",
                                                                    ticket deleted
ACTIVE, or tombstone         the ticket replayed to a protected URL a newcomer: a new place at
                                                                    the back
gone, no tombstone           ticket seen within A (``may_keep``)    WAITING again with the
                                                                    ticket's score
gone, no tombstone           ticket older than A                    a newcomer at the back
===========================  =====================================  ===========================

A replay never mints a session: sessions start only on the transition into ACTIVE (a direct
admission or the one successful claim), so ``session_max`` counts from the admission and a
kept ticket is worth nothing once used.

**Store outages and losses.** During an outage tickets are not re-signed. A ticket whose holder
was seen alive when the outage began (``last_seen >= since - A``) keeps its place until A after
this replica last saw the store fail, never for longer than ``spent_for``: waiters who kept
polling through a long outage are not thrown out when it ends, and abandoned tickets cannot be
revived by one. When the store loses its data, the tombstones go with it; each replica records
again the places it knows to be spent (sessions it issued or served, places that left through
it) as it restores its sessions. A ticket of a place admitted by a replica that is gone as well,
seen within A before the loss, can take its old place once more: the price of keeping every
waiter's place across a total loss (README, "What survives a store loss").
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.tokens import CLOCK_SKEW, Ticket


def reentry_limit(policy: RoomPolicy) -> float:
    """The oldest ``last_seen`` (seconds ago) that may ever take its place again."""
    return max(policy.session_max, 2 * policy.abandon_after)


def spent_for(policy: RoomPolicy) -> float:
    """How long the store keeps a tombstone: longer than any ticket may re-enter, plus the
    clock skew tolerated between replicas (``last_seen`` is a replica's clock, the tombstone's
    time the store's)."""
    return reentry_limit(policy) + CLOCK_SKEW


@dataclass(slots=True)
class Outage:
    """Store failures one replica saw for one room: the first and the last of the current run."""

    since: float = 0.0
    last: float = float("-inf")

    def failed(self, now: float, policy: RoomPolicy) -> None:
        """A store call for this room failed at ``now``."""
        if now - self.last > policy.abandon_after:
            self.since = now  # a new outage: the previous one ended long enough ago
        self.last = now


def may_keep(ticket: Ticket, now: float, policy: RoomPolicy, outage: Outage | None) -> bool:
    """May this ticket take its old place (its score) when the store no longer has it?

    Yes when its holder was seen within ``abandon_after``; or when the holder was alive as an
    outage began and the outage ended less than ``abandon_after`` ago (never beyond
    ``reentry_limit``). The store still refuses a tombstoned place.
    """
    age = now - ticket.last_seen
    if age <= policy.abandon_after:
        return True
    if outage is None or age > reentry_limit(policy):
        return False
    alive_at_start = ticket.last_seen >= outage.since - policy.abandon_after
    return alive_at_start and now - outage.last <= policy.abandon_after


class SpentLog:
    """Place ids one replica knows to be spent (admitted, ended or given up), per room.

    The store's tombstones are the record every replica shares; this local copy answers for a
    replayed ticket while the store has lost its data, and is what a replica writes back
    (``Store.restore``) when it sees that loss. Kept in time order, pruned from the front (O(1)
    amortised), at most ``max_ids`` per room.
    """

    def __init__(self, max_ids: int = 50_000) -> None:
        self.max_ids = max_ids
        self._rooms: dict[str, OrderedDict[str, float]] = {}

    def add(self, room: str, place_id: str, now: float) -> None:
        ids = self._rooms.setdefault(room, OrderedDict())
        if place_id in ids:
            return
        ids[place_id] = now
        if len(ids) > self.max_ids:
            ids.popitem(last=False)

    def __contains__(self, key: tuple[str, str]) -> bool:
        ids = self._rooms.get(key[0])
        return ids is not None and key[1] in ids

    def ids(self, room: str) -> list[str]:
        return list(self._rooms.get(room, ()))

    def prune(self, room: str, now: float, keep_for: float) -> None:
        """Forget ids spent more than ``keep_for`` seconds ago."""
        ids = self._rooms.get(room)
        cutoff = now - keep_for
        while ids:
            _, spent_at = next(iter(ids.items()))
            if spent_at >= cutoff:
                break
            ids.popitem(last=False)
