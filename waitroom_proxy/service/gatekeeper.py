"""The gatekeeper: the parts that decide what happens to one request, wired for one process.

It knows rooms, tokens, the store and the event publisher through ports; it knows nothing of
HTTP. Each part has one job:

- ``store`` (:class:`~.guarded.GuardedStore`): the store behind its circuit breakers, the only
  caller of the store;
- ``sessions`` (:class:`~.sessions.Sessions`): verify (the hot path), renew, extend, end;
- ``admission`` (:class:`~.admission.Admission`): arrive, heartbeat, claim, leave;
- ``fail_open`` (:class:`~.failopen.FailOpen`): the room's ``fail_mode`` while the store is down;
- ``sync`` (:class:`~.sync.RoomSync`): runtime overrides, incarnation, replica marks;
- ``limit`` (:class:`~.limiter.ClientLimit`): the per-client rate limit;
- ``proofs`` (:class:`~.challenge.ProofOfWork`): proof of work before a ticket;
- ``census`` (:class:`~.census.SessionCensus`): live sessions re-assert themselves after a loss.
- ``lifecycle`` (:class:`~.lifecycle.Lifecycle`): a scheduled sale's phases and its draw.

The ASGI layer (``waitroom_proxy.asgi``) turns their ``Outcome`` into responses; the
controller (:mod:`.controller`) runs the background work; operators go through
:mod:`.operations`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from waitroom_proxy.domain.matching import RoomMatcher
from waitroom_proxy.domain.policy import RoomPolicy
from waitroom_proxy.domain.pow import PowSigner
from waitroom_proxy.domain.tokens import SessionSigner, TicketSigner
from waitroom_proxy.metrics import Metrics
from waitroom_proxy.ports import EventPublisher, Store
from waitroom_proxy.service.admission import Admission
from waitroom_proxy.service.census import SessionCensus
from waitroom_proxy.service.challenge import ProofOfWork
from waitroom_proxy.service.context import Context
from waitroom_proxy.service.emit import Emitter
from waitroom_proxy.service.failopen import FailOpen
from waitroom_proxy.service.guarded import GuardedStore
from waitroom_proxy.service.lifecycle import Lifecycle
from waitroom_proxy.service.limiter import ClientLimit
from waitroom_proxy.service.room import RoomRuntime
from waitroom_proxy.service.sessions import Sessions
from waitroom_proxy.service.sync import RoomSync


class Gatekeeper:
    """Decides requests for every room of one process (the parts are described above)."""

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
        proofs: PowSigner | None = None,
    ) -> None:
        self.clock = clock
        self.metrics = metrics
        self.publisher = publisher
        self.replica_id = replica_id or secrets.token_hex(4)
        self.rooms: dict[str, RoomRuntime] = {p.name: RoomRuntime.of(p) for p in rooms}
        self.matcher = RoomMatcher(rooms)
        self.emit = Emitter(publisher, clock)
        self.store = GuardedStore(
            store, metrics=metrics, rooms=self.rooms, emit=self.emit, replica_id=self.replica_id
        )
        ctx = Context(self.rooms, self.store, metrics, self.emit, clock)
        self.sessions = Sessions(ctx, sessions)
        self.sync = RoomSync(
            ctx, sessions=self.sessions, replica_id=self.replica_id, replicas_hint=replicas_hint
        )
        self.fail_open = FailOpen(ctx, sessions=self.sessions, replicas=self.sync.replicas)
        # Replicas must share the challenge key (bootstrap passes the process's secrets); a
        # random one serves a gatekeeper built alone (tests, one process).
        signer = proofs if proofs is not None else PowSigner([secrets.token_hex(32)])
        self.proofs = ProofOfWork(ctx, signer)
        self.lifecycle = Lifecycle(ctx, tickets)
        self.admission = Admission(
            ctx,
            tickets,
            sessions=self.sessions,
            fail_open=self.fail_open,
            proofs=self.proofs,
            lifecycle=self.lifecycle,
        )
        self.limit = ClientLimit(self.store, client_rate_limit, clock)
        self.census = SessionCensus(ctx, sessions=self.sessions, sync=self.sync)

    def __repr__(self) -> str:
        return f"Gatekeeper(rooms={list(self.rooms)!r}, store={self.store!r})"

    def room_for(self, host: str, path: str) -> RoomRuntime | None:
        """The room a request is for (the most specific match), or None (not protected)."""
        policy = self.matcher.match(host, path)
        return None if policy is None else self.rooms[policy.name]
