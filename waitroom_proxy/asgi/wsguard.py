"""A proxied WebSocket lives no longer than the session it was opened with.

The gate checks the session once, at the handshake; a connection may then stay open for hours.
Without a guard it would outlive a leave, a revocation (admin, origin command, another replica)
or the session's end, while the slot goes to the next visitor: capacity exceeded. So each
WebSocket opened on a session is watched:

- a revocation of its place (``SessionCache.watch``: local leaves and revocations at once, other
  replicas' within a controller tick) closes it at once;
- so does the session's end: with ``session_renewal`` off, the token's expiry
  (``session_max``); with it on, ``session_ttl`` after the last activity — a message either way,
  or a request of the same session seen by this replica — and never past ``session_max``;
- messages count as use of the session: the store hears of them like of requests
  (``note_activity``), so an active WebSocket keeps its slot counted.

The client gets close code 1008 (policy violation) with the reason ``session ended``; the
wrapped app (the upstream proxy, or a host app) sees a client disconnect with the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import Message, Receive, Send

from waitroom_proxy.domain.tokens import Session

if TYPE_CHECKING:
    from waitroom_proxy.service import Gatekeeper, RoomRuntime


CLOSE_CODE = 1008
CLOSE_REASON = "session ended"


@dataclass(slots=True)
class _State:
    active: float
    """When a message last went either way."""
    noted: float
    """The last activity reported to the gatekeeper."""
    accepted: bool = False
    closed: bool = False


async def run_session_bound(
    gate: Gatekeeper,
    room: RoomRuntime,
    session: Session,
    app: Callable[[Receive, Send], Awaitable[None]],
    receive: Receive,
    send: Send,
) -> None:
    """Run ``app(receive, send)`` for one WebSocket, ending it when ``session`` ends."""
    loop = asyncio.get_running_loop()
    ending: asyncio.Future[None] = loop.create_future()
    """Set when the session ends (revocation callback or the watcher's deadline)."""
    released: asyncio.Future[None] = loop.create_future()
    """Set once the client was told (close 1008): then the app sees the disconnect."""
    state = _State(active=gate.clock(), noted=gate.clock())

    def end() -> None:
        if not ending.done():
            ending.set_result(None)

    unwatch = gate.sessions.cache.watch(session.place_id, end)
    if session.place_id in gate.sessions.cache.revoked:
        end()
    pending: asyncio.Task[Message] | None = None

    async def guarded_receive() -> Message:
        nonlocal pending
        if not released.done():
            if pending is None:
                pending = asyncio.ensure_future(receive())
            waits: set[asyncio.Future[Any]] = {pending, released}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if pending.done():
                message, pending = pending.result(), None
                if message["type"] == "websocket.receive":
                    state.active = gate.clock()
                return message
        return {"type": "websocket.disconnect", "code": CLOSE_CODE, "reason": CLOSE_REASON}

    async def guarded_send(message: Message) -> None:
        kind = message["type"]
        if state.closed:
            return  # the client's side is closed: nothing more goes out
        if kind == "websocket.accept":
            state.accepted = True
        elif kind == "websocket.send":
            state.active = gate.clock()
        elif kind == "websocket.close":
            state.closed = True
        await send(message)

    async def watch() -> None:
        while not ending.done():
            now = gate.clock()
            deadline = gate.sessions.deadline(room, session, state.active)
            if now >= deadline:
                break
            if room.policy.session_renewal and state.active > state.noted:
                state.noted = state.active
                gate.sessions.note_activity(room, session, now)
            wait = min(deadline - now, room.policy.activity_interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(ending), timeout=max(0.05, wait))
        end()
        if state.accepted and not state.closed:
            state.closed = True
            with contextlib.suppress(Exception):  # the client may be gone already
                await send({"type": "websocket.close", "code": CLOSE_CODE, "reason": CLOSE_REASON})
        released.set_result(None)

    watcher = asyncio.create_task(watch())
    try:
        await app(guarded_receive, guarded_send)
    finally:
        unwatch()
        if not ending.done():
            watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(watcher, timeout=5.0)
        if pending is not None:
            pending.cancel()
