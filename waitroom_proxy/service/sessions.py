"""Sessions: verified on the hot path, renewed, extended, ended (one way for every end).

Hot path: ``session_for`` answers from a cache of verified tokens and ``note_activity`` only
touches a dict; the store hears of activity in the background, coalesced per session
(``flush``). A session is issued only on the transition into ACTIVE (``domain.lifecycle``).

Re-assertion: the store can lose sessions (a restart without persistence, a cluster shard or a
failover to a replica that missed writes) while their tokens still verify here. So every
session this replica verified is remembered with its token's expiry (``alive``), and every end
it made or learned of (``ended``): the activity flush and the census (``service.census``) send
them with ``Store.reassert``, which counts again a session the store lost (never one it has
revoked) and applies again an end it lost. The rule when that puts the room over capacity: the
session keeps its right (it was admitted, and passes on its token anyway); the store admits
nobody until the room is back under capacity.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator

from waitroom_proxy.domain.lifecycle import SpentLog
from waitroom_proxy.domain.session_cache import SessionCache
from waitroom_proxy.domain.tokens import Session, SessionSigner
from waitroom_proxy.errors import StoreError, TokenError
from waitroom_proxy.ports import PlaceStatus, Reasserted
from waitroom_proxy.service.context import Context
from waitroom_proxy.service.room import RoomRuntime

log = logging.getLogger(__name__)

EXTEND_GRACE = 35
"""Seconds the store keeps an extended session's slot past the extension (``extend``)."""
LEASE_GRACE = 5.0
"""Seconds a re-asserted session's slot is kept past its token's expiry (``session_grace``)."""
ENDED_FOR = 600.0
"""Seconds an end is remembered to be applied again after a loss (failover detection and the
replication lag it may lose writes from both fit in this)."""
ENDED_MAX = 20_000
"""Most ends remembered per room (the oldest are forgotten first)."""


class Sessions:
    """Every session of one process: the token cache, activity, renewals and ends."""

    def __init__(self, ctx: Context, signer: SessionSigner) -> None:
        self.ctx = ctx
        self.signer = signer
        self.cache = SessionCache()
        self.spent = SpentLog()
        """Places this replica knows to be spent (``domain.lifecycle``)."""
        self._activity_reported: dict[tuple[str, str], float] = {}
        self._activity_pending: dict[str, set[str]] = {}
        self._renewed: dict[str, tuple[str, Session]] = {}
        self._alive: dict[str, dict[str, float]] = {}
        """room -> place id -> the expiry (unix s) of the newest token of it verified here."""
        self._ended: dict[str, OrderedDict[str, float]] = {}
        """room -> place id -> when this replica ended it or learned of its end."""
        self.on_reasserted: Callable[[str, Reasserted], None] | None = None
        """Told what each ``Store.reassert`` of the activity flush found (``service.census``)."""

    # ----------------------------------------------------------------- the hot path
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
        self._note_alive(s)
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
            binding=session.binding,
        )
        self.cache.put(token, s)
        self._note_alive(s)
        # The store must hear of every renewal: its deadline for the slot (now + session_ttl
        # + a 5 s grace) then always covers the newest token, whatever activity_interval is.
        self._activity_reported[(room.name, session.place_id)] = now
        self._activity_pending.setdefault(room.name, set()).add(session.place_id)
        if len(self._renewed) >= 100_000:
            self._renewed.clear()
        self._renewed[session.place_id] = (token, s)
        # At most one renewal per session per half TTL, so this is sampled by construction.
        self.ctx.emit("session.renewed", room.name, {"place_id": s.place_id, "jti": s.jti})
        return token

    def deadline(self, room: RoomRuntime, session: Session, last_activity: float) -> float:
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

    # ----------------------------------------------------------------- start, extend, end
    def issue(
        self, room: RoomRuntime, place_id: str, now: float, binding: str = ""
    ) -> tuple[str, Session]:
        """Start the session of a place that just became ACTIVE (or a fail-open admission),
        bound to ``binding`` (``domain.binding``) when the room binds sessions."""
        policy = room.policy
        ttl = policy.session_ttl if policy.session_renewal else policy.session_max
        token, s = self.signer.issue(
            room.name, place_id, now=now, ttl=ttl, max_age=policy.session_max, binding=binding
        )
        self.cache.put(token, s)
        self._note_alive(s)
        self._activity_reported[(room.name, place_id)] = now
        self.spent.add(room.name, place_id, now)
        self.ctx.emit("session.started", room.name, {"place_id": place_id, "jti": s.jti})
        return token, s

    def extend(self, room: RoomRuntime, session: Session, seconds: int) -> str:
        """The origin's ``extend=SECONDS``: a new token valid ``seconds`` from now (a fixed
        session); the store keeps the slot that long, plus a grace, in the background."""
        now = self.ctx.clock()
        token, s = self.signer.issue(
            room.name, session.place_id, now=now, ttl=seconds, started_at=int(now),
            max_age=seconds, binding=session.binding,
        )  # fmt: skip
        self.cache.put(token, s)
        self._note_alive(s)
        return token

    async def store_extension(self, room: RoomRuntime, place_id: str, seconds: int) -> None:
        """The store's half of ``extend``: the slot is kept ``seconds`` + a grace."""
        ttl_ms = int((seconds + EXTEND_GRACE) * 1000)
        try:
            await self.ctx.store.reassert(room.name, [(place_id, ttl_ms)])
        except StoreError as exc:
            log.warning("room %s: session extension not stored: %s", room.name, exc)

    async def end(
        self, room: RoomRuntime, place_id: str, reason: str, *, session: bool = True
    ) -> PlaceStatus:
        """End a place everywhere: a leave (``reason`` ``left``), the origin's ``complete`` or
        ``revoke`` (``completed``/``revoked``), the operator's revoke (``admin``).

        Here at once: the token is refused from now on (and a WebSocket on it closed), the place
        is known spent. In the store: the slot is freed, the place tombstoned, an ACTIVE session
        kept revoked for ``session_max`` so that every replica refuses it — also when the store
        no longer knew the session (it lost it: the end keeps it from being re-asserted);
        ``session=False`` (a waiter's ticket) revokes nothing in the store. The event and
        ``waitroom_sessions_ended_total`` follow the store's answer.

        Returns:
            The status the place had in the store.

        Raises:
            StoreError: the store did not answer (the local end stands).
        """
        now = self.ctx.clock()
        max_s = room.policy.session_max
        self.cache.revoke(place_id, now + max_s)
        self.spent.add(room.name, place_id, now)
        self._note_ended(room.name, place_id, now)
        revoke_ms = int(max_s * 1000) if session else 0
        was = await self.ctx.store.leave(room.name, place_id, revoke_ms)
        if was is PlaceStatus.ACTIVE:
            label = "revoked" if reason == "admin" else reason
            self.ctx.metrics.sessions_ended.labels(room.name, label).inc()
        data = {"place_id": place_id, "reason": reason}
        if reason != "left":
            verb = "session.revoked" if reason in ("revoked", "admin") else "session.ended"
            self.ctx.emit(verb, room.name, data)
        elif was is PlaceStatus.ACTIVE:
            self.ctx.emit("session.ended", room.name, data)
        elif was in (PlaceStatus.WAITING, PlaceStatus.PROMOTED):
            self.ctx.emit("position.left", room.name, {"place_id": place_id})
        return was

    async def end_quietly(self, room: RoomRuntime, place_id: str, reason: str) -> None:
        """``end`` for a background task (an origin command): a store failure is logged."""
        try:
            await self.end(room, place_id, reason)
        except StoreError as exc:
            log.warning("room %s: session end not stored (%s): %s", room.name, reason, exc)

    def revoke_known(self, place_ids: list[str], until: float) -> None:
        """Revocations other replicas made (read from the store by the controller)."""
        for pid in place_ids:
            self.cache.revoke(pid, until)
            for alive in self._alive.values():
                alive.pop(pid, None)

    # ----------------------------------------------------------------- background
    async def flush(self) -> None:
        """Report coalesced session activity to the store (called about once a second)."""
        pending, self._activity_pending = self._activity_pending, {}
        for name, ids in pending.items():
            room = self.ctx.rooms.get(name)
            if room is None or not ids:
                continue
            ttl_ms = room.limits.session_ttl_ms
            ids = {i for i in ids if i not in self.cache.revoked}  # ended since: not re-asserted
            try:
                found = await self.ctx.store.reassert(room.name, [(i, ttl_ms) for i in sorted(ids)])
            except StoreError:
                self._activity_pending.setdefault(name, set()).update(ids)
                continue
            if self.on_reasserted is not None and found.readded:
                self.on_reasserted(name, found)
        if len(self._activity_reported) > 200_000:
            cutoff = self.ctx.clock() - 3600
            self._activity_reported = {
                k: v for k, v in self._activity_reported.items() if v >= cutoff
            }

    def known_active(self, room: RoomRuntime, now: float, window: float) -> Iterator[str]:
        """Sessions of ``room`` this replica saw used within ``window`` and not revoked (to be
        counted again after the store lost the room's state)."""
        revoked = self.cache.revoked
        for (name, pid), seen in self._activity_reported.items():
            if name == room.name and now - seen <= window and pid not in revoked:
                yield pid

    # ----------------------------------------------------------------- re-assertion
    def _note_alive(self, s: Session) -> None:
        alive = self._alive.setdefault(s.room, {})
        if alive.get(s.place_id, 0.0) < s.expires_at:
            alive[s.place_id] = float(s.expires_at)

    def _note_ended(self, room: str, place_id: str, now: float) -> None:
        self._alive.get(room, {}).pop(place_id, None)
        ended = self._ended.setdefault(room, OrderedDict())
        ended[place_id] = now
        ended.move_to_end(place_id)
        while len(ended) > ENDED_MAX:
            ended.popitem(last=False)

    def note_ended(self, room: str, place_ids: list[str]) -> None:
        """Ends another replica made (its revocations, read from the store)."""
        now = self.ctx.clock()
        for pid in place_ids:
            self._note_ended(room, pid, now)

    def alive_count(self, room: str) -> int:
        """Sessions of ``room`` verified here whose tokens may not have expired (an upper bound:
        ``leases`` prunes)."""
        return len(self._alive.get(room, ()))

    def leases(self, room: str, now: float) -> list[tuple[str, int]]:
        """(place id, ms) of every session of ``room`` whose token verified here and has not
        expired or been revoked: the store keeps each slot until the token's expiry + 5 s."""
        alive = self._alive.get(room)
        if not alive:
            return []
        revoked = self.cache.revoked
        gone = [pid for pid, until in alive.items() if until <= now or pid in revoked]
        for pid in gone:
            del alive[pid]
        return [(pid, int((until - now + LEASE_GRACE) * 1000)) for pid, until in alive.items()]

    def ended(self, room: str, now: float) -> list[str]:
        """Place ids of ``room`` ended within the last ``ENDED_FOR`` seconds."""
        ended = self._ended.get(room)
        if not ended:
            return []
        while ended and next(iter(ended.values())) < now - ENDED_FOR:
            ended.popitem(last=False)
        return list(ended)
