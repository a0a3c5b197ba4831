"""Proof of work before a ticket (a room's ``pow_difficulty``; protocol in ``domain.pow``).

A newcomer to a room that asks for work gets a challenge instead of a place (the waiting page
solves it in a Web Worker, an API client with ``domain.pow.solve`` or its own solver) and sends
the solution to ``POST {prefix}/pow``. Verification is stateless (the challenge is signed); the
store accepts each challenge id once (``Store.once``), for as long as the challenge is valid,
so one solution buys one ticket. A visitor who already holds a place never needs one: only the
step that would create a place asks for work, so a refused solution never costs a place.
"""

from __future__ import annotations

from waitroom_proxy.domain.pow import PowError, PowSigner, Solved
from waitroom_proxy.service.context import Context
from waitroom_proxy.service.outcome import Outcome, OutcomeKind
from waitroom_proxy.service.room import RoomRuntime
from waitroom_proxy.service.status import status_dict

ONCE_PREFIX = "pow-"
"""Prefix of the one-time ids of solved challenges (``Store.once`` keys)."""


class ProofOfWork:
    """Issues and redeems the challenges of every room of one process.

    Args:
        signer: signs challenges; replicas must share its secrets (the process's ``secret``).
    """

    def __init__(self, ctx: Context, signer: PowSigner) -> None:
        self.ctx = ctx
        self.signer = signer

    def __repr__(self) -> str:
        return f"ProofOfWork({self.signer!r})"

    @staticmethod
    def required(room: RoomRuntime) -> bool:
        """Does ``room`` ask a newcomer for work (its runtime ``pow_difficulty``)?"""
        return room.policy.pow_difficulty > 0

    def challenge(self, room: RoomRuntime, return_to: str, now: float) -> Outcome:
        """The answer to a newcomer of a room that asks for work: a fresh challenge, carried
        by the JSON status (``status: "challenge"``, ``pow``) and the page."""
        issued = self.signer.issue(room.name, room.policy.pow_difficulty, now)
        status = status_dict(room, "challenge", None, return_to, now)
        status["pow"] = issued.as_json()
        return Outcome(OutcomeKind.CHALLENGE, room, status=status)

    async def redeem(
        self, room: RoomRuntime, challenge: object, counter: object, now: float
    ) -> Solved:
        """Check a solution and spend its challenge (once, in the store).

        Raises:
            PowError: the solution is refused (``domain.pow`` reasons, or ``replayed``).
            StoreError: the store did not answer (the room's ``fail_mode`` applies).
        """
        solved = self.signer.verify(
            challenge,
            counter,
            room=room.name,
            now=now,
            min_difficulty=room.policy.pow_difficulty,
        )
        ttl_ms = max(1, int((solved.expires_at - now) * 1000))
        if not await self.ctx.store.once(room.name, ONCE_PREFIX + solved.challenge_id, ttl_ms):
            raise PowError("replayed", "this proof of work was used already: solve a new one")
        return solved
