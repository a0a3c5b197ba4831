"""The pre-queue draw of a scheduled sale: commit, reveal, permute, verify. Pure.

At ``prequeue_at`` the room draws a secret 32-byte seed and publishes its SHA-256, the
*commitment*. During the pre-queue visitors get tickets without a position. At ``start_at`` the
entries are frozen, the seed is revealed, and the entries are ordered by a permutation that is a
pure function of the seed and the entries; ``GET {prefix}/audit?room=R`` serves the
:class:`AuditRecord`, from which anyone can recompute the order.

**Algorithm ``waitroom-draw-v1``** (what an auditor re-implements; nothing else is involved)::

    entry      = hex(SHA-256("waitroom-entry-v1\\0" + room + "\\0" + place_id))[:32]
    digest     = SHA-256("\\n".join(sorted(entries)))          # the frozen entry set
    key(e)     = HMAC-SHA256(key=seed, msg=digest + bytes.fromhex(e))
    order      = sorted(entries, key=lambda e: (key(e), e))   # first = admitted first
    commitment = hex(SHA-256(seed))

Recomputing it from the published document, with the standard library only::

    import hashlib, hmac, json
    doc = json.load(open("audit.json"))
    seed = bytes.fromhex(doc["seed"])
    assert hashlib.sha256(seed).hexdigest() == doc["commitment"]
    entries = sorted(doc["entries"])
    digest = hashlib.sha256("\\n".join(entries).encode()).digest()
    def key(e): return hmac.new(seed, digest + bytes.fromhex(e), "sha256").digest(), e
    assert sorted(entries, key=key) == doc["order"]

A visitor can find their own entry: their place id is in their ticket (signed, not encrypted).
Entries are hashed so the published list reveals no place id (a session's ``sub``); 128 bits
make a collision between two entries practically impossible, and ties in the sort key are
broken by the entry itself, so the order is total and the permutation is well defined.

**Why the draw is fair, and what the operator cannot bias.**

- *The seed cannot be chosen after seeing the entries.* The commitment is published when the
  pre-queue opens, before any entry exists; at the reveal anyone checks SHA-256(seed) against
  it. Changing the seed later means finding a second SHA-256 preimage.
- *Visitors cannot steer their place.* Until the reveal, nobody but the room knows the seed, so
  every entry's key is an unpredictable HMAC output; arriving early, late, or many times gives
  no better expected place than anyone else's.
- *Nothing can be moved, dropped or inserted after the start without it showing.* The entries
  are frozen at the start and published with the order; the order is recomputable, so a moved
  entry fails the check, and a visitor whose entry is missing can see it is missing.
- *One entry cannot be tuned on its own.* Every key covers the digest of the whole frozen set,
  so any change to the set re-draws every place: nobody can precompute "a good entry" during
  the pre-queue.

What remains trusted: the operator runs the server and knows the seed during the pre-queue, so
it could add entries of its own (fake visitors) at the last moment, trying candidates until one
ranks early; the audit shows every entry but cannot tell a fake from a real one. Closing that
needs randomness nobody knows before the start (a public beacon mixed into the key): a ``v2``
could add it as a field of the document; ``v1`` has none. The draw is also only as fair as the
seed's randomness: :func:`new_seed` uses the operating system's CSPRNG (``secrets``).

**The store's side.** :func:`plan_shuffle` turns the draw into new FIFO scores for the
pre-queue's place ids (``first_score``, ``first_score + 1``, ... in draw order) and the sequence
floor ``min_seq`` to raise the arrival counter to, so that everyone who arrives after the start
queues behind the whole pre-queue. A Lua script applies it atomically: check that the pre-queue
still holds exactly these place ids (entries frozen), set every score, raise the counter, mark
the room shuffled (so a second replica's attempt is a no-op), all in one call.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALGORITHM = "waitroom-draw-v1"
SEED_BYTES = 32
ENTRY_HEX = 32
_ENTRY_PREFIX = b"waitroom-entry-v1\x00"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ENTRY = re.compile(rf"^[0-9a-f]{{{ENTRY_HEX}}}$")
_SHOWN = 5
"""How many offending entries a verification problem quotes."""


@dataclass(frozen=True, slots=True)
class Seed:
    """The secret of one draw. Its ``repr`` never shows it (it must stay secret until start)."""

    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.value) != SEED_BYTES:
            raise ValueError(f"a seed is {SEED_BYTES} bytes, not {len(self.value)}")

    @classmethod
    def from_hex(cls, text: str) -> Seed:
        """The seed from its hex form (as kept in the store, or revealed)."""
        if not _HEX64.match(text):
            raise ValueError(f"a seed is {2 * SEED_BYTES} lower-case hex digits")
        return cls(bytes.fromhex(text))

    def hex(self) -> str:
        return self.value.hex()

    def commitment(self) -> str:
        """What is published at pre-queue time: hex SHA-256 of the seed."""
        return hashlib.sha256(self.value).hexdigest()


def new_seed() -> Seed:
    """A fresh seed from the operating system's CSPRNG."""
    return Seed(secrets.token_bytes(SEED_BYTES))


def entry_id(room: str, place_id: str) -> str:
    """The published, hashed form of a pre-queue place (see the module docstring)."""
    data = _ENTRY_PREFIX + room.encode() + b"\x00" + place_id.encode()
    return hashlib.sha256(data).hexdigest()[:ENTRY_HEX]


def entries_digest(entries: Iterable[str]) -> bytes:
    """SHA-256 of the sorted entries, one per line: what every sort key covers."""
    return hashlib.sha256("\n".join(sorted(entries)).encode()).digest()


def draw_order(seed: Seed, entries: Iterable[str]) -> list[str]:
    """The entries in admission order: ascending HMAC-SHA256(seed, digest + entry), then entry.

    Raises:
        ValueError: if an entry is malformed or appears twice (the input must be a set).
    """
    listed = sorted(entries)
    bad = [e for e in listed if not _ENTRY.match(e)]
    if bad:
        raise ValueError(f"malformed entries (expected {ENTRY_HEX} hex digits): {bad[:_SHOWN]}")
    dupes = sorted({a for a, b in itertools.pairwise(listed) if a == b})
    if dupes:
        raise ValueError(f"entries appear twice: {dupes[:_SHOWN]}")
    digest = hashlib.sha256("\n".join(listed).encode()).digest()
    mac = hmac.new(seed.value, digest, hashlib.sha256)

    def key(entry: str) -> tuple[bytes, str]:
        h = mac.copy()
        h.update(bytes.fromhex(entry))
        return h.digest(), entry

    return sorted(listed, key=key)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """What ``GET {prefix}/audit`` publishes: before the start only the commitment, after it
    the seed, the frozen entries (sorted) and the resulting order (first = admitted first)."""

    room: str
    commitment: str
    committed_at: str | None = None
    """RFC 3339 time the commitment was published (``schedule.rfc3339``)."""
    seed: str | None = None
    """Hex seed, once revealed."""
    revealed_at: str | None = None
    entries: tuple[str, ...] = ()
    order: tuple[str, ...] = ()
    algorithm: str = ALGORITHM

    @property
    def revealed(self) -> bool:
        return self.seed is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "room": self.room,
            "algorithm": self.algorithm,
            "commitment": self.commitment,
            "committed_at": self.committed_at,
            "seed": self.seed,
            "revealed_at": self.revealed_at,
            "entries": list(self.entries),
            "order": list(self.order),
        }


def commit(room: str, seed: Seed, committed_at: str | None = None) -> AuditRecord:
    """The document of the pre-queue: the commitment only."""
    return AuditRecord(room=room, commitment=seed.commitment(), committed_at=committed_at)


def reveal(
    record: AuditRecord, seed: Seed, entries: Iterable[str], revealed_at: str | None = None
) -> AuditRecord:
    """The document after the start: the seed, the frozen entries and the drawn order.

    Raises:
        ValueError: the seed does not match the commitment, or the entries are not a set.
    """
    if not hmac.compare_digest(seed.commitment(), record.commitment):
        raise ValueError("the seed does not match the published commitment")
    order = draw_order(seed, entries)
    return AuditRecord(
        room=record.room,
        commitment=record.commitment,
        committed_at=record.committed_at,
        seed=seed.hex(),
        revealed_at=revealed_at,
        entries=tuple(sorted(order)),
        order=tuple(order),
        algorithm=record.algorithm,
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of :func:`verify`: ``ok`` when nothing is wrong with what was published."""

    ok: bool
    revealed: bool
    problems: tuple[str, ...] = ()


def verify(doc: Mapping[str, Any] | AuditRecord) -> Verdict:
    """Check an audit document (as served, parsed from JSON) without trusting anything in it.

    Before the reveal only the commitment's shape can be checked (``ok`` with ``revealed``
    False). After it: the seed matches the commitment, the entries are a well-formed set, the
    order is a permutation of them, and it is exactly the draw of that seed.
    """
    if isinstance(doc, AuditRecord):
        doc = doc.to_json()
    if not isinstance(doc, Mapping):
        return Verdict(False, False, ("the audit document must be a JSON object",))
    problems: list[str] = []
    algorithm = doc.get("algorithm")
    if algorithm != ALGORITHM:
        problems.append(f"unknown algorithm {algorithm!r} (this verifier knows {ALGORITHM})")
    commitment = doc.get("commitment")
    if not isinstance(commitment, str) or not _HEX64.match(commitment):
        problems.append("commitment: expected 64 lower-case hex digits (SHA-256)")
        commitment = None
    seed_hex = doc.get("seed")
    entries = doc.get("entries") or []
    order = doc.get("order") or []
    if seed_hex is None:
        if order:
            problems.append("order: published without the seed, so nobody can check it")
        return Verdict(not problems, False, tuple(problems))
    seed: Seed | None = None
    if not isinstance(seed_hex, str) or not _HEX64.match(seed_hex):
        problems.append("seed: expected 64 lower-case hex digits (32 bytes)")
    else:
        seed = Seed.from_hex(seed_hex)
        if commitment is not None and seed.commitment() != commitment:
            problems.append("seed: its SHA-256 is not the published commitment")
    problems += _check_entries("entries", entries)
    problems += _check_entries("order", order)
    if problems:
        return Verdict(False, True, tuple(problems))
    missing = sorted(set(entries) - set(order))
    extra = sorted(set(order) - set(entries))
    if missing:
        problems.append(f"order: lacks {len(missing)} entries, e.g. {missing[:_SHOWN]}")
    if extra:
        problems.append(f"order: has {len(extra)} entries that are not entries: {extra[:_SHOWN]}")
    if not problems and seed is not None:
        drawn = draw_order(seed, entries)
        for i, (published, recomputed) in enumerate(zip(order, drawn, strict=True)):
            if published != recomputed:
                problems.append(f"order: place {i + 1} is {published}, the draw gives {recomputed}")
                break
    return Verdict(not problems, True, tuple(problems))


def _check_entries(name: str, values: object) -> list[str]:
    if not isinstance(values, list | tuple):
        return [f"{name}: expected a list of entries"]
    bad = [v for v in values if not isinstance(v, str) or not _ENTRY.match(v)]
    if bad:
        shown = [repr(v)[:40] for v in bad[:_SHOWN]]
        return [f"{name}: {len(bad)} malformed (expected {ENTRY_HEX} hex digits), e.g. {shown}"]
    seen: set[str] = set()
    repeated: set[str] = set()
    for v in values:
        (repeated if v in seen else seen).add(v)
    dupes = sorted(repeated)
    if dupes:
        return [f"{name}: {len(dupes)} appear more than once, e.g. {dupes[:_SHOWN]}"]
    return []


@dataclass(frozen=True, slots=True)
class ShufflePlan:
    """The draw in the store's terms, for one atomic script call."""

    audit: AuditRecord
    scores: tuple[tuple[str, int], ...]
    """(place id, new FIFO score) in admission order: strictly increasing scores."""
    min_seq: int
    """Raise the room's arrival counter to at least this, so later arrivals queue behind."""


def plan_shuffle(
    record: AuditRecord,
    seed: Seed,
    place_ids: Sequence[str],
    *,
    first_score: int,
    revealed_at: str | None = None,
) -> ShufflePlan:
    """Reveal the draw over the pre-queue's ``place_ids`` and give each its new score.

    Args:
        record: the committed document (from :func:`commit`).
        seed: the committed seed.
        place_ids: every place in the pre-queue, frozen (order does not matter).
        first_score: the score of the first place drawn; e.g. the lowest pre-queue score, or
            the arrival counter + 1. Places get ``first_score + i``; ``min_seq`` is the last.
        revealed_at: RFC 3339 time of the reveal, for the document.

    Raises:
        ValueError: a place id appears twice, or the seed does not match the commitment.
    """
    by_entry: dict[str, str] = {}
    for pid in place_ids:
        e = entry_id(record.room, pid)
        if e in by_entry:
            raise ValueError(f"place id appears twice in the pre-queue: {pid!r}")
        by_entry[e] = pid
    audit = reveal(record, seed, by_entry, revealed_at)
    scores = tuple((by_entry[e], first_score + i) for i, e in enumerate(audit.order))
    return ShufflePlan(audit, scores, first_score + len(scores) - 1)
