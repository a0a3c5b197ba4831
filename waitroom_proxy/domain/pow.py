"""Proof-of-work before a ticket is issued (scalper defence). Pure; takes ``now``.

**Why.** A bot farm that opens thousands of connections gets thousands of places; a real visitor
opens one. A proof of work makes every ticket cost CPU time: about a second for a visitor's
browser, once, and the same per ticket for a bot, which wants many. It does not stop a bot with
a budget (see the figures below); it makes a thousand places cost a thousand CPU-seconds
instead of nothing, and it needs no third party (Queue-it ships one too; Turnstile is a
service).

**Protocol ``wpow1``.** The server issues a *challenge*, a short ASCII string::

    wpow1.<room>.<difficulty>.<issued_at>.<nonce>.<mac>

``difficulty`` is a number of leading zero bits, ``issued_at`` Unix seconds, ``nonce`` 16
random bytes and ``mac`` the first 16 bytes of HMAC-SHA256 over everything before it (both
base64url without padding), keyed with a key derived from the room secret. A *solution* is a
counter, written in decimal without leading zeros, such that::

    SHA-256(challenge + counter)        # ASCII bytes, no separator

starts with ``difficulty`` zero bits. Verification is stateless: the MAC proves the server issued
the challenge (with that room, difficulty and time), so nothing is stored when issuing.
Expected work is ``2**difficulty`` hashes; the solve time is geometric (p50 = 0.69x the mean,
p90 = 2.3x the mean).

**Replays are the store's job.** A valid solution stays valid until the challenge expires, so
one solved challenge could be presented for many tickets. :meth:`PowSigner.verify` returns a
:class:`Solved` with ``challenge_id`` (the nonce) and ``expires_at``: the store must accept an id
once, e.g. ``SET wr:{room}:pow:<id> 1 NX PXAT <expires_at ms>`` in the ticket-issuing script
(bounded memory: ids expire with their challenges). Until that exists, a solution can be
replayed within its ``ttl``.

**Solvers.** ``templates/pow-worker.js`` is a Web Worker (no external script, no network) with
two engines: its own SHA-256 with the challenge's whole blocks hashed once (the default, and the
only one where ``crypto.subtle`` is missing: a page over plain HTTP is not a secure context),
and ``crypto.subtle.digest`` (``engine: "subtle"``). Both find the same, first, counter.
:func:`solve` is the same for API clients and tests. The page needs ``worker-src 'self'`` in
its Content-Security-Policy to start the worker; the worker script can be served with
``default-src 'none'`` (it fetches nothing).

**Measured** (``python -m bench.pow_bench``, ``bench/results/pow.md``; this machine: 2 shared
cores under a load average of about 5, headless Chromium 156, one worker):

============== ============ ============ ============ ============================
difficulty     18 bits      20 bits      21 bits      22 bits
============== ============ ============ ============ ============================
visitor p50    0.12 s       0.53 s       1.3-2.1 s    3.0 s (p90 6.7 s)
bot, Python    0.42 s CPU   1.7 s CPU    3.3 s CPU    6.7 s CPU (0.63 M hashes/s)
bot, native    0.11 s CPU   0.45 s CPU   0.89 s CPU   1.8 s CPU (OpenSSL, 2.35 M/s)
============== ============ ============ ============ ============================

The worker's own SHA-256 runs at about 1.1-1.35 M hashes/s; ``crypto.subtle.digest`` at
0.05-0.07 M/s (every digest is a promise round trip), twenty times slower, so the worker uses
its own by default and ``subtle`` only when asked. **Default: 21 bits**, an expected p50 of
1.3 s for one worker (p90 about 4 s: the solve time is geometric). A page may start one worker
per core (``navigator.hardwareConcurrency``, with ``start``/``step``) to divide that. A phone
is several times slower than this machine's core: raise the difficulty only with that in
mind. What a bot pays: about one native CPU-second per ticket at the default, some 4,000
tickets per core-hour: a defence against free bulk places, not against a paid farm (and GPUs
do far better). Pair it with the per-client binding and one-place-one-session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from waitroom_proxy.domain.policy import ROOM_NAME_RE

VERSION = "wpow1"
DEFAULT_DIFFICULTY = 21
MAX_DIFFICULTY = 40
"""Beyond this a browser would need hours: refuse it as a configuration mistake."""
DEFAULT_TTL = 300.0
"""Seconds a challenge stays valid: a slow phone at the default difficulty has time to finish."""
CLOCK_SKEW = 30.0
"""A challenge issued up to this far in the future (another replica's clock) is accepted."""
MAX_COUNTER = 2**53 - 1
"""JavaScript's largest exact integer: the worker never goes beyond it."""
_KEY_LABEL = b"waitroom-pow-v1"
_MAC_BYTES = 16
_COUNTER = re.compile(r"^(0|[1-9][0-9]{0,15})$", re.ASCII)
_B64_22 = re.compile(r"^[A-Za-z0-9_-]{22}$", re.ASCII)
_INT = re.compile(r"^(0|[1-9][0-9]{0,11})$", re.ASCII)


class PowError(ValueError):
    """A challenge or solution refused; ``reason`` is a stable code for the JSON answer."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Challenge:
    """An issued challenge: what the page or API client is sent."""

    text: str
    room: str
    difficulty: int
    issued_at: int
    expires_at: int
    challenge_id: str

    def as_json(self) -> dict[str, object]:
        """The ``pow`` object of the JSON status (API clients solve it themselves)."""
        return {
            "algorithm": VERSION,
            "challenge": self.text,
            "difficulty": self.difficulty,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class Solved:
    """A verified solution; the store must accept ``challenge_id`` only once."""

    room: str
    challenge_id: str
    difficulty: int
    expires_at: int
    """Unix seconds; the replay record can be dropped then."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def leading_zero_bits(digest: bytes) -> int:
    """Number of leading zero bits of ``digest``."""
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def meets(challenge: str, counter: int, difficulty: int) -> bool:
    """Whether ``counter`` solves ``challenge`` at ``difficulty`` (no signature check)."""
    digest = hashlib.sha256(f"{challenge}{counter}".encode("ascii")).digest()
    return int.from_bytes(digest, "big") >> (256 - difficulty) == 0 if difficulty else True


class PowSigner:
    """Issues and verifies challenges for every room. The first secret signs; all verify."""

    def __init__(self, secrets_: Sequence[str | bytes], *, ttl: float = DEFAULT_TTL) -> None:
        if not secrets_:
            raise ValueError("PowSigner needs at least one secret")
        self._keys = [
            hmac.new(s.encode() if isinstance(s, str) else s, _KEY_LABEL, hashlib.sha256).digest()
            for s in secrets_
        ]
        self.ttl = ttl

    def __repr__(self) -> str:
        return f"PowSigner(keys={len(self._keys)}, ttl={self.ttl})"

    def _mac(self, key: bytes, body: str) -> str:
        return _b64(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()[:_MAC_BYTES])

    def issue(
        self, room: str, difficulty: int, now: float, nonce: bytes | None = None
    ) -> Challenge:
        """A fresh challenge for ``room`` (``nonce`` only for tests)."""
        if not ROOM_NAME_RE.fullmatch(room):
            raise ValueError(f"invalid room name {room!r}")
        if not 0 <= difficulty <= MAX_DIFFICULTY:
            raise ValueError(f"difficulty must be 0..{MAX_DIFFICULTY} leading zero bits")
        issued = int(now)
        nid = _b64(nonce if nonce is not None else secrets.token_bytes(16))
        body = f"{VERSION}.{room}.{difficulty}.{issued}.{nid}"
        text = f"{body}.{self._mac(self._keys[0], body)}"
        return Challenge(text, room, difficulty, issued, int(issued + self.ttl), nid)

    def verify(
        self,
        challenge: object,
        counter: object,
        *,
        room: str,
        now: float,
        min_difficulty: int = 0,
    ) -> Solved:
        """Check a solution without any state. Inputs come from the client: anything goes.

        Args:
            challenge: the challenge string as the client sent it back.
            counter: its solution (decimal string or int).
            room: the room the ticket is being issued for.
            now: current time (Unix seconds).
            min_difficulty: refuse challenges easier than this (the room raised its difficulty).

        Raises:
            PowError: ``malformed``, ``bad_signature``, ``wrong_room``, ``not_yet_valid``,
                ``expired``, ``too_easy`` or ``wrong_solution``, with a message for the visitor.
        """
        if not isinstance(challenge, str) or len(challenge) > 200 or not challenge.isascii():
            raise PowError("malformed", "the proof-of-work challenge is malformed")
        parts = challenge.split(".")
        if len(parts) != 6 or parts[0] != VERSION:
            raise PowError("malformed", "the proof-of-work challenge is malformed")
        _, c_room, c_diff, c_issued, nid, mac = parts
        if not (
            ROOM_NAME_RE.fullmatch(c_room)
            and _INT.match(c_diff)
            and _INT.match(c_issued)
            and _B64_22.match(nid)
            and _B64_22.match(mac)
        ):
            raise PowError("malformed", "the proof-of-work challenge is malformed")
        body = challenge[: -len(mac) - 1]
        if not any(hmac.compare_digest(self._mac(k, body), mac) for k in self._keys):
            raise PowError("bad_signature", "the proof-of-work challenge was not issued here")
        difficulty, issued = int(c_diff), int(c_issued)
        if c_room != room:
            raise PowError("wrong_room", "the proof-of-work challenge is for another room")
        if issued > now + CLOCK_SKEW:
            raise PowError("not_yet_valid", "the proof-of-work challenge is not valid yet")
        expires = int(issued + self.ttl)
        if now >= expires:
            raise PowError("expired", "the proof-of-work challenge expired: solve a new one")
        if difficulty < min_difficulty:
            raise PowError("too_easy", "the room now asks for more work: solve a new challenge")
        if isinstance(counter, bool) or not isinstance(counter, str | int):
            raise PowError("malformed", "the proof-of-work solution must be a decimal counter")
        text = str(counter)
        if not _COUNTER.match(text) or int(text) > MAX_COUNTER:
            raise PowError("malformed", "the proof-of-work solution must be a decimal counter")
        if not meets(challenge, int(text), difficulty):
            raise PowError("wrong_solution", "the proof-of-work solution is wrong")
        return Solved(c_room, nid, difficulty, expires)


def solve(challenge: str, difficulty: int, *, start: int = 0, limit: int | None = None) -> int:
    """The first counter from ``start`` that solves ``challenge`` (for API clients and tests).

    Hashes the fixed prefix once and copies its state per try, as any serious solver does.

    Raises:
        ValueError: no solution within ``limit`` tries.
    """
    prefix = hashlib.sha256(challenge.encode("ascii"))
    shift = 256 - difficulty
    end = MAX_COUNTER if limit is None else min(MAX_COUNTER, start + limit)
    for counter in range(start, end + 1):
        h = prefix.copy()
        h.update(str(counter).encode("ascii"))
        if difficulty == 0 or int.from_bytes(h.digest(), "big") >> shift == 0:
            return counter
    raise ValueError(f"no solution in {end - start + 1} tries")
